//! The offline-first todo program against a relay started here: what one copy adds another
//! (with an empty store) lists through the relay; added while the relay is down, a todo is kept
//! and reaches the relay once it is back.

use std::net::SocketAddr;
use std::process::{Command, Output};

use fibergun_drive::RelayConfig;
use fibergun_threads::Relay;

fn todo(data: &std::path::Path, upstream: &str, args: &[&str]) -> Output {
    let out = Command::new(env!("CARGO_BIN_EXE_offline-todo"))
        .arg("--data")
        .arg(data)
        .args(["--upstream", upstream])
        .args(args)
        .output()
        .expect("run offline-todo");
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn said(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn relay_on(listen: SocketAddr) -> Relay {
    let config = RelayConfig {
        listen,
        threads: 1,
        verify_threads: 1,
        ..RelayConfig::default()
    };
    Relay::start(config, fibergun::MemStore::new()).expect("the relay starts")
}

#[test]
fn todos_sync_through_a_relay_and_wait_for_it_when_it_is_down() {
    let relay = relay_on("127.0.0.1:0".parse().unwrap());
    let addr = relay.local_addr();
    let url = format!("http://{addr}/gun");
    let (laptop, phone, tablet) = (
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );

    let added = todo(laptop.path(), &url, &["add", "buy milk"]);
    assert!(said(&added).contains("synced"), "{}", said(&added));
    let listed = todo(phone.path(), &url, &["list"]);
    assert!(said(&listed).contains("[ ] buy milk"), "{}", said(&listed));

    // The relay goes away: the laptop still adds, and keeps the write.
    relay.shutdown();
    let offline = todo(laptop.path(), &url, &["add", "buy eggs"]);
    assert!(
        said(&offline).contains("1 write(s) waiting"),
        "{}",
        said(&offline)
    );
    // Its own list has both, offline.
    let local = todo(laptop.path(), &url, &["list"]);
    assert!(said(&local).contains("buy eggs") && said(&local).contains("buy milk"));

    // A relay is back on the same address (empty: a new one): the next command sends what waits.
    let relay = relay_on(addr);
    let synced = todo(laptop.path(), &url, &["sync"]);
    assert!(said(&synced).contains("synced"), "{}", said(&synced));
    let listed = todo(tablet.path(), &url, &["list"]);
    assert!(said(&listed).contains("buy eggs"), "{}", said(&listed));
    relay.shutdown();
}
