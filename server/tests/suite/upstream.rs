//! An edge relay (`serve --upstream URL`, the binary under test) syncing on demand with an
//! upstream that is either a relay of the binary under test or a stock GUN JS relay: GUN JS
//! clients on each side see each other's writes, live; writes made while the upstream is down
//! survive a `kill -9` of the edge and reach it; two edges that wrote the same fields offline
//! converge to the HAM winner; a full outbox refuses new writes and keeps the queued ones; what
//! nobody on the edge asked for is not held there; and an
//! upstream sending garbage, huge frames and no acknowledgements does not stop the edge serving
//! its own clients.

use crate::BINARY;

use std::net::TcpListener;
use std::path::Path;
use std::time::{Duration, Instant};

use fibergun_testkit::gunjs::{expect_success, run_node, GunJsRelay};
use fibergun_testkit::{
    fill_until_refused, holds_numbered_at, now_ms, peak_rss_mib, put_msg, reply_node,
    temp_data_dir, write_numbered, Peer, Server,
};
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(15);

/// Fast redials, so the edge finds a returning upstream at once.
const REDIAL: [&str; 4] = ["--reconnect-min-ms", "100", "--reconnect-max-ms", "500"];

/// An upstream of either kind, that can be stopped and started again on its address.
enum Upstream {
    /// The relay, and its data folder (kept while it runs).
    Fibergun(Server, #[allow(dead_code)] tempfile::TempDir),
    GunJs(GunJsRelay),
}

impl Upstream {
    fn fibergun() -> Upstream {
        let data = temp_data_dir();
        Upstream::Fibergun(Server::start(BINARY, data.path(), &[]), data)
    }

    fn gun_js() -> Upstream {
        Upstream::GunJs(GunJsRelay::start(&[], true))
    }

    fn both() -> [Upstream; 2] {
        [Upstream::fibergun(), Upstream::gun_js()]
    }

    fn name(&self) -> &'static str {
        match self {
            Upstream::Fibergun(..) => "a fibergun upstream",
            Upstream::GunJs(_) => "a GUN JS upstream",
        }
    }

    fn url(&self) -> String {
        match self {
            Upstream::Fibergun(server, _) => server.gun_url(),
            Upstream::GunJs(relay) => relay.gun_url(),
        }
    }

    fn ws_url(&self) -> String {
        self.url().replacen("http://", "ws://", 1)
    }

    fn kill(&mut self) {
        match self {
            Upstream::Fibergun(server, _) => server.kill_hard(),
            Upstream::GunJs(relay) => relay.kill(),
        }
    }

    fn restart(&mut self) {
        match self {
            Upstream::Fibergun(server, _) => server.restart(),
            Upstream::GunJs(relay) => relay.restart(),
        }
    }
}

fn edge(data: &Path, upstream: &str) -> Server {
    let mut args = REDIAL.to_vec();
    args.extend(["--upstream", upstream]);
    Server::start(BINARY, data, &args)
}

/// The value of `soul.key` as a GET through `url` answers it, once it equals `expected`; the
/// last value seen otherwise. An edge answers from its store and then with its upstream's
/// answer, which it merges, so asking again converges.
fn read_until(url: &str, soul: &str, key: &str, expected: &Value) -> Value {
    let end = Instant::now() + WAIT;
    let mut last = Value::Null;
    let mut asked = 0;
    while Instant::now() < end {
        let mut peer = Peer::connect(&url.replacen("http://", "ws://", 1));
        asked += 1;
        let id = format!("read-{asked}");
        peer.send_json(&json!({"#": id, "get": {"#": soul}}));
        let stop = Instant::now() + Duration::from_secs(2);
        while Instant::now() < stop {
            peer.pump(Duration::from_millis(100));
            for m in peer.take_inbox() {
                if let Some(v) = reply_node(&m, soul).and_then(|n| n.get(key)) {
                    last = v.clone();
                }
            }
            if last == *expected {
                return last;
            }
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    last
}

/// Lines of an export of the store in `data` (one node each), read beside its running relay.
fn exported_nodes(data: &Path) -> usize {
    let out = std::process::Command::new(BINARY)
        .args(["export", "--data", data.to_str().unwrap()])
        .output()
        .expect("export");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).lines().count()
}

#[test]
fn gun_js_clients_on_an_edge_and_on_its_upstream_see_each_other_s_writes_live() {
    for upstream in Upstream::both() {
        let data = temp_data_dir();
        let mut edge = edge(data.path(), &upstream.url());
        expect_success(
            &run_node("mesh_two_sides.js", &[&edge.gun_url(), &upstream.url()]),
            &format!("an edge and {}", upstream.name()),
        );
        edge.assert_alive(upstream.name());
    }
}

#[test]
fn writes_made_while_the_upstream_is_down_survive_a_kill_of_the_edge_and_reach_it() {
    for mut upstream in Upstream::both() {
        let data = temp_data_dir();
        let mut edge = edge(data.path(), &upstream.url());
        upstream.kill();
        // Acknowledged by the edge alone: durable there, queued for the upstream.
        let mut client = Peer::connect(&edge.ws_url());
        write_numbered(&mut client, "offline", 40);
        drop(client);
        edge.restart(); // kill -9, and start again on the same store
        upstream.restart();
        let end = Instant::now() + Duration::from_secs(30);
        let mut held = 0;
        while Instant::now() < end {
            held = holds_numbered_at(&upstream.url(), "offline", 40);
            if held == 40 {
                break;
            }
            std::thread::sleep(Duration::from_millis(300));
        }
        assert_eq!(
            held,
            40,
            "{}: the upstream got them all\n{}",
            upstream.name(),
            edge.log()
        );
        edge.assert_alive(upstream.name());
    }
}

#[test]
fn a_full_outbox_refuses_new_writes_and_keeps_every_queued_one() {
    let mut upstream = Upstream::fibergun();
    let data = temp_data_dir();
    let mut args = REDIAL.to_vec();
    let url = upstream.url();
    args.extend(["--upstream", &url, "--storage-quota", "256K"]);
    let mut edge = Server::start(BINARY, data.path(), &args);
    upstream.kill();
    // Written while the upstream is down, until the store (graph and outbox) is full.
    let mut client = Peer::connect(&edge.ws_url());
    let (err, written) = fill_until_refused(&mut client, "full", 1000);
    assert!(err.contains("quota"), "{err}");
    assert!(written.len() > 5, "{written:?}");
    // Every write acknowledged before the refusal reaches the upstream when it is back.
    upstream.restart();
    let mut reader = Peer::connect(&upstream.ws_url());
    for (i, soul) in written.iter().enumerate() {
        let end = Instant::now() + Duration::from_secs(30);
        loop {
            let reply = reader.get(&format!("full-check-{i}-{}", now_ms()), soul, None, WAIT);
            if reply_node(&reply, soul).is_some_and(|n| n["v"].as_str().map(str::len) == Some(4000))
            {
                break;
            }
            assert!(
                Instant::now() < end,
                "{soul} never reached the upstream\n{}",
                edge.log()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    edge.assert_alive("with a full outbox");
}

#[test]
fn two_edges_that_wrote_the_same_fields_offline_converge_to_the_ham_winner() {
    for mut upstream in Upstream::both() {
        let (d1, d2) = (temp_data_dir(), temp_data_dir());
        let e1 = edge(d1.path(), &upstream.url());
        let e2 = edge(d2.path(), &upstream.url());
        upstream.kill();
        let state = fibergun_testkit::now_ms() - 1000.0;
        let soul = format!("contested-{}", std::process::id());
        // `x`: the later state wins. `y`: equal states, the greater value wins.
        let mut c1 = Peer::connect(&e1.ws_url());
        c1.put_ok(&put_msg("c1x", &soul, &[("x", json!("one"))], state), WAIT);
        c1.put_ok(
            &put_msg("c1y", &soul, &[("y", json!("apple"))], state),
            WAIT,
        );
        let mut c2 = Peer::connect(&e2.ws_url());
        c2.put_ok(
            &put_msg("c2x", &soul, &[("x", json!("two"))], state + 10.0),
            WAIT,
        );
        c2.put_ok(
            &put_msg("c2y", &soul, &[("y", json!("banana"))], state),
            WAIT,
        );
        upstream.restart();
        for (url, who) in [
            (upstream.url(), "the upstream"),
            (e1.gun_url(), "the first edge"),
            (e2.gun_url(), "the second edge"),
        ] {
            assert_eq!(
                read_until(&url, &soul, "x", &json!("two")),
                json!("two"),
                "{who}, {}",
                upstream.name()
            );
            assert_eq!(
                read_until(&url, &soul, "y", &json!("banana")),
                json!("banana"),
                "{who}, {}",
                upstream.name()
            );
        }
    }
}

#[test]
fn nodes_written_upstream_that_nobody_on_the_edge_asked_for_are_not_held_there() {
    for upstream in Upstream::both() {
        let data = temp_data_dir();
        let edge = edge(data.path(), &upstream.url());
        let mut reader = Peer::connect(&edge.ws_url());
        // Settle the edge's link before the flood, then read one node of it through the edge.
        std::thread::sleep(Duration::from_millis(300));
        let mut writer = Peer::connect(&upstream.ws_url());
        let n = 2_000;
        let state = fibergun_testkit::now_ms();
        for i in 0..n {
            writer.send_json(&put_msg(
                &format!("bulk{i}"),
                &format!("bulk/{i}"),
                &[("v", json!(i))],
                state,
            ));
        }
        // Wait for the acknowledgements to stop coming (GUN JS does not send them all).
        let end = Instant::now() + Duration::from_secs(60);
        let (mut acked, mut quiet_since) = (0, Instant::now());
        while acked < n && Instant::now() < end && quiet_since.elapsed() < Duration::from_secs(5) {
            writer.pump(Duration::from_millis(200));
            let more = writer
                .take_inbox()
                .iter()
                .filter(|m| m.get("ok").is_some())
                .count();
            if more > 0 {
                quiet_since = Instant::now();
            }
            acked += more;
        }
        assert!(
            acked > n / 2,
            "{}: {acked} of {n} acknowledged",
            upstream.name()
        );
        let got = read_until(&edge.gun_url(), "bulk/7", "v", &json!(7));
        assert_eq!(
            got,
            json!(7),
            "{}: a read through the edge",
            upstream.name()
        );
        drop(reader.take_inbox());
        std::thread::sleep(Duration::from_secs(1));
        let held = exported_nodes(data.path());
        assert!(
            held <= 5,
            "{}: the edge holds {held} nodes; only what was read belongs there",
            upstream.name()
        );
    }
}

/// A hostile upstream: it accepts every WebSocket, and sends garbage, a frame over the edge's
/// limit, a frame over twice it (the socket's limit), and a put for a soul nobody asked for;
/// it never acknowledges anything.
fn hostile_upstream(listener: TcpListener, stop: std::sync::Arc<std::sync::atomic::AtomicBool>) {
    listener.set_nonblocking(true).unwrap();
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        let Ok((stream, _)) = listener.accept() else {
            std::thread::sleep(Duration::from_millis(20));
            continue;
        };
        stream.set_nonblocking(false).unwrap();
        std::thread::spawn(move || {
            let Ok(mut ws) = tungstenite::accept(stream) else {
                return;
            };
            let frames = [
                "not json at all {{{".to_owned(),
                format!("[{}]", "1,".repeat(8 << 20)),
                json!({"#": "h1", "put": {"unasked": {"_": {"#": "unasked", ">": {"x": 1}}, "x": 1}}})
                    .to_string(),
                "x".repeat(40 << 20),
            ];
            for frame in frames {
                if ws.send(tungstenite::Message::text(frame)).is_err() {
                    return;
                }
            }
            // Read (and never answer) whatever the edge sends, until it hangs up.
            while ws.read().is_ok() {}
        });
    }
}

#[test]
fn an_upstream_that_sends_garbage_and_never_acknowledges_does_not_stop_the_edge() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("ws://{}/gun", listener.local_addr().unwrap());
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let hostile = {
        let stop = stop.clone();
        std::thread::spawn(move || hostile_upstream(listener, stop))
    };
    let data = temp_data_dir();
    let mut edge = edge(data.path(), &url);
    let started = Instant::now();
    let mut client = Peer::connect(&edge.ws_url());
    let mut rounds = 0;
    // For a few seconds of redials and hostile frames, the edge's own clients are served.
    while started.elapsed() < Duration::from_secs(4) {
        rounds += 1;
        let soul = format!("local/{rounds}");
        client.put_ok(
            &put_msg(
                &format!("p{rounds}"),
                &soul,
                &[("v", json!(rounds))],
                fibergun_testkit::now_ms(),
            ),
            WAIT,
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(rounds > 5);
    assert_eq!(
        read_until(&edge.gun_url(), "local/1", "v", &json!(1)),
        json!(1)
    );
    edge.assert_alive("under a hostile upstream");
    let log = edge.log();
    assert!(
        log.contains("a peer this relay dialled sent something refused"),
        "the edge says what happened: {log}"
    );
    if let Some(pid) = edge.pid() {
        let rss = peak_rss_mib(pid);
        assert!(rss < 400.0, "memory stays bounded: peak {rss:.0} MiB");
    }
    assert_eq!(
        exported_nodes(data.path()),
        rounds,
        "the unasked soul is not held"
    );
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let _ = hostile.join();
}
