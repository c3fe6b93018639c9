//! `get`, `put` and `watch` against a running relay, through the binary under test, with their
//! exit codes (0 done, 1 nothing there or refused, 2 unreachable or silent): against a relay of
//! the binary under test and against a stock GUN JS relay.

use crate::BINARY;

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use fibergun_testkit::gunjs::GunJsRelay;
use fibergun_testkit::{temp_data_dir, Server};
use serde_json::{json, Value as Json};

/// Runs `BINARY ARGS…` to its end.
fn run(args: &[&str]) -> Output {
    Command::new(BINARY)
        .args(args)
        .output()
        .expect("run the command")
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// What `get` prints, parsed; panics unless it exits 0.
fn get(url: &str, path: &str, depth: &str) -> Json {
    let out = run(&["get", "--peer", url, path, "--depth", depth]);
    assert_eq!(out.status.code(), Some(0), "get {path}: {}", stderr(&out));
    serde_json::from_str(stdout(&out).trim()).expect("get prints JSON")
}

fn put(url: &str, path: &str, json: &str) {
    let out = run(&["put", "--peer", url, path, json]);
    assert_eq!(out.status.code(), Some(0), "put {path}: {}", stderr(&out));
    assert!(stdout(&out).is_empty());
}

/// The whole contract against one relay at `url`.
fn the_commands_work_against(url: &str) {
    put(
        url,
        "cli/room1",
        r#"{"title":"hello","owner":{"name":"ann"}}"#,
    );
    let room = get(url, "cli/room1", "0");
    assert_eq!(room["title"], "hello");
    assert_eq!(room["owner"], json!({"#": "cli/room1/owner"}), "{room}");
    let deep = get(url, "cli/room1", "1");
    assert_eq!(deep["owner"], json!({"name": "ann"}), "{deep}");
    assert_eq!(get(url, "cli/room1/title", "0"), json!("hello"));

    // Nothing there: exit 1, nothing on stdout, why on stderr.
    let missing = run(&["get", "--peer", url, "cli/nowhere/at-all"]);
    assert_eq!(missing.status.code(), Some(1), "{}", stderr(&missing));
    assert!(stdout(&missing).is_empty());
    assert!(
        stderr(&missing).contains("nothing at"),
        "{}",
        stderr(&missing)
    );

    // A value that cannot be written is refused before it is sent: exit 1.
    let refused = run(&["put", "--peer", url, "cli", "[1,2]"]);
    assert_eq!(refused.status.code(), Some(1), "{}", stderr(&refused));

    // watch: the node now, then each change, one JSON line each, until interrupted.
    let mut watch = Command::new(BINARY)
        .args(["watch", "--peer", url, "cli/room1"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start watch");
    let mut lines = BufReader::new(watch.stdout.take().expect("stdout")).lines();
    let first: Json = serde_json::from_str(&lines.next().expect("a line").expect("read")).unwrap();
    assert_eq!(first["title"], "hello", "{first}");
    put(url, "cli/room1/title", r#""changed""#);
    let end = Instant::now() + Duration::from_secs(10);
    let mut seen = false;
    while Instant::now() < end && !seen {
        let line = lines.next().expect("another line").expect("read");
        let node: Json = serde_json::from_str(&line).expect("a JSON line");
        seen = node["title"] == "changed";
    }
    assert!(seen, "watch printed the change");
    // An interrupt ends the watch, with exit 0.
    let interrupted = Command::new("kill")
        .args(["-INT", &watch.id().to_string()])
        .status()
        .expect("kill -INT");
    assert!(interrupted.success());
    let status = watch.wait().expect("watch ends");
    assert_eq!(status.code(), Some(0));
}

#[test]
fn get_put_and_watch_work_against_this_relay_and_gun_js() {
    let data = temp_data_dir();
    let relay = Server::start(BINARY, data.path(), &[]);
    the_commands_work_against(&relay.gun_url());
    let gunjs = GunJsRelay::start(&[], true);
    the_commands_work_against(&gunjs.gun_url());
}

#[test]
fn refusals_exit_1_with_the_relay_s_text_and_silence_exits_2() {
    // A relay that takes writes from token holders only refuses an anonymous put, saying why.
    let data = temp_data_dir();
    let token = "cli-writer=s3cret-token-0123456789";
    let relay = Server::start(BINARY, data.path(), &["--write", "token", "--token", token]);
    let url = relay.gun_url();
    let refused = run(&["put", "--peer", &url, "locked/doc", r#"{"a":1}"#]);
    assert_eq!(refused.status.code(), Some(1), "{}", stderr(&refused));
    assert!(
        stderr(&refused).to_lowercase().contains("denied"),
        "the relay's text: {}",
        stderr(&refused)
    );
    let with_token = run(&[
        "put",
        "--peer",
        &url,
        "--token",
        "s3cret-token-0123456789",
        "locked/doc",
        r#"{"a":1}"#,
    ]);
    assert_eq!(with_token.status.code(), Some(0), "{}", stderr(&with_token));

    // Nobody listening: exit 2, saying why.
    let closed = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let unreachable = run(&[
        "get",
        "--peer",
        &format!("http://127.0.0.1:{port}/gun"),
        "a",
    ]);
    assert_eq!(
        unreachable.status.code(),
        Some(2),
        "{}",
        stderr(&unreachable)
    );
    assert!(!stderr(&unreachable).is_empty());

    // Something listening that never answers: exit 2 once --timeout has passed.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!(
        "http://127.0.0.1:{}/gun",
        silent.local_addr().unwrap().port()
    );
    let started = Instant::now();
    let out = run(&["get", "--peer", &url, "--timeout", "1", "a"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "it waited {:?}",
        started.elapsed()
    );
    let out = run(&["watch", "--peer", &url, "--timeout", "1", "a"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));

    // A request that cannot be made: exit 2.
    let bad = run(&["put", "--peer", "ftp://nowhere", "a/b", "1"]);
    assert_eq!(bad.status.code(), Some(2));
    let bad = run(&["put", "--peer", &relay.gun_url(), "a/b", "not json"]);
    assert_eq!(bad.status.code(), Some(2));
}
