//! Relays in a mesh, as real processes on loopback: fibergun relays dialling each other in a line
//! and a triangle, a relay killed and restarted while writes go on around it, catch-up after an
//! absence, and mixed meshes with the stock GUN JS relay, read and written by GUN JS clients.
//!
//! Declared by each runtime's package, so every test runs against each runtime's binary.

use crate::BINARY;

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use fibergun_testkit::gunjs::{expect_success, run_node, GunJsRelay};
use fibergun_testkit::{
    free_port, free_ports, get_msg, is_ok_ack, now_ms, put_msg, reply_node, temp_data_dir, Peer,
    Server,
};
use serde_json::{json, Value};

/// Quick redials, so a restarted relay is found again within a second.
const REDIAL: [&str; 4] = ["--reconnect-min-ms", "100", "--reconnect-max-ms", "1000"];

/// A fibergun relay with its own data folder, dialling `peers`.
struct Relay {
    server: Server,
    _data: tempfile::TempDir,
}

impl Relay {
    fn start(peers: &[&Relay]) -> Relay {
        let urls: Vec<String> = peers.iter().map(|p| p.server.ws_url()).collect();
        Self::start_dialling(&urls, None)
    }

    /// A relay dialling these URLs, on `port` if given.
    fn start_dialling(urls: &[String], port: Option<u16>) -> Relay {
        Self::start_with(urls, port, &[])
    }

    /// A relay dialling these URLs, on `port` if given, with more flags.
    fn start_with(urls: &[String], port: Option<u16>, extra: &[&str]) -> Relay {
        let data = temp_data_dir();
        let mut args: Vec<&str> = REDIAL.to_vec();
        args.extend_from_slice(extra);
        for url in urls {
            args.push("--peer");
            args.push(url);
        }
        Relay {
            server: Server::start_on(BINARY, data.path(), &args, port),
            _data: data,
        }
    }

    /// How many times it has connected to a peer it dials, by its log.
    fn dials_made(&self) -> usize {
        self.server.log().matches("connected to peer").count()
    }

    fn client(&self) -> Peer {
        Peer::connect(&self.server.ws_url())
    }
}

fn put(relay: &Relay, soul: &str, key: &str, value: &str) {
    let mut c = relay.client();
    let id = fresh_id("put");
    c.put_ok(
        &put_msg(&id, soul, &[(key, json!(value))], now_ms()),
        Duration::from_secs(10),
    );
    c.close();
}

/// Asks `relay` for `soul` until `key` has `value`, at most `timeout`. Returns how long it took.
fn wait_value(
    relay: &Relay,
    soul: &str,
    key: &str,
    value: impl Into<Value>,
    timeout: Duration,
) -> Duration {
    let value: Value = value.into();
    let start = Instant::now();
    let mut c = relay.client();
    loop {
        let id = fresh_id("w");
        let reply = c.get(&id, soul, None, Duration::from_secs(5));
        let got = reply_node(&reply, soul)
            .and_then(|node| node.get(key))
            .cloned();
        if got.as_ref() == Some(&value) {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < timeout,
            "relay on port {} still has {soul}.{key} = {got:?}, not {value}, after {timeout:?}\n--- its log ---\n{}",
            relay.server.port,
            relay.server.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

const SETTLE: Duration = Duration::from_secs(15);

/// A message id never used before in this test process: relays drop a repeated id as a
/// duplicate for a while, whichever connection it comes on.
fn fresh_id(prefix: &str) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    format!("{prefix}{}", NEXT.fetch_add(1, Ordering::Relaxed))
}

#[test]
fn line_of_three_a_write_at_one_end_is_read_at_the_other() {
    let r1 = Relay::start(&[]);
    let r2 = Relay::start(&[&r1]);
    let r3 = Relay::start(&[&r2]);
    put(&r1, "line", "from1", "one");
    let took = wait_value(&r3, "line", "from1", "one", SETTLE);
    println!("r1 to r3 across two hops: {took:?}");
    put(&r3, "line", "from3", "three");
    wait_value(&r1, "line", "from3", "three", SETTLE);
    wait_value(&r2, "line", "from3", "three", SETTLE);
}

#[test]
fn triangle_converges_and_pushes_each_change_to_a_subscriber_once() {
    let r1 = Relay::start(&[]);
    let r2 = Relay::start(&[&r1]);
    let r3 = Relay::start(&[&r1, &r2]);
    // Links are up once a write at one corner shows at the others.
    put(&r1, "warm", "x", "up");
    wait_value(&r2, "warm", "x", "up", SETTLE);
    wait_value(&r3, "warm", "x", "up", SETTLE);

    let mut subscriber = r2.client();
    subscriber.get(&fresh_id("sub"), "tri", None, Duration::from_secs(5));
    put(&r1, "tri", "x", "v1");
    wait_value(&r3, "tri", "x", "v1", SETTLE);
    wait_value(&r2, "tri", "x", "v1", SETTLE);
    // Whichever way it came round, the subscriber is told once.
    subscriber.drain(Duration::from_millis(500));
    let pushes = subscriber
        .inbox
        .iter()
        .filter(|m| m.get("@").is_none())
        .filter(|m| reply_node(m, "tri").and_then(|n| n.get("x")) == Some(&json!("v1")))
        .count();
    assert_eq!(pushes, 1, "{}", subscriber.inbox_summary());
    // Writes at every corner meet everywhere.
    put(&r2, "tri", "y", "from2");
    put(&r3, "tri", "z", "from3");
    for r in [&r1, &r2, &r3] {
        wait_value(r, "tri", "y", "from2", SETTLE);
        wait_value(r, "tri", "z", "from3", SETTLE);
    }
}

#[test]
fn middle_relay_killed_writes_on_both_sides_then_restarted_all_converge() {
    let mut middle = Relay::start(&[]);
    let left = Relay::start(&[&middle]);
    let right = Relay::start(&[&middle]);
    put(&left, "across", "before", "kill");
    wait_value(&right, "across", "before", "kill", SETTLE);

    middle.server.kill_hard();
    put(&left, "across", "left", "while away");
    put(&right, "across", "right", "while away");
    put(&left, "only-left", "x", "l");
    put(&right, "only-right", "x", "r");
    middle.server.restart();

    let start = Instant::now();
    for r in [&left, &middle, &right] {
        wait_value(r, "across", "left", "while away", SETTLE);
        wait_value(r, "across", "right", "while away", SETTLE);
        wait_value(r, "only-left", "x", "l", SETTLE);
        wait_value(r, "only-right", "x", "r", SETTLE);
    }
    println!("converged {:?} after the restart", start.elapsed());
}

/// Writes `n` one-field nodes `{prefix}{i:05}` (`v`: i) through one connection, in frames of 100
/// puts, and waits for every ack.
fn write_many(relay: &Relay, prefix: &str, n: usize) {
    write_many_with(relay, prefix, n, |i| json!(i));
}

/// [`write_many`] with the value of each node's `v` made by `value`.
fn write_many_with(relay: &Relay, prefix: &str, n: usize, value: impl Fn(usize) -> Value) {
    let mut c = relay.client();
    let state = now_ms();
    for chunk in (0..n).collect::<Vec<_>>().chunks(100) {
        let frame: Vec<Value> = chunk
            .iter()
            .map(|i| {
                put_msg(
                    &format!("m{i:05}"),
                    &format!("{prefix}{i:05}"),
                    &[("v", value(*i))],
                    state,
                )
            })
            .collect();
        assert!(c.send_json(&Value::Array(frame)));
        for i in chunk {
            let ack = c.expect_reply(&format!("m{i:05}"), Duration::from_secs(30));
            assert!(is_ok_ack(&ack), "{ack}");
        }
        // Replies are searched from the start of the inbox: keep it short.
        c.take_inbox();
    }
    c.close();
}

/// How many of the nodes `{prefix}{i:05}` the relay has, asked in frames of 100 GETs.
fn count_present(relay: &Relay, prefix: &str, n: usize) -> usize {
    let mut c = relay.client();
    let mut present = 0;
    for chunk in (0..n).collect::<Vec<_>>().chunks(100) {
        let frame: Vec<Value> = chunk
            .iter()
            .map(|i| get_msg(&format!("c{i:05}"), &format!("{prefix}{i:05}"), None))
            .collect();
        assert!(c.send_json(&Value::Array(frame)));
        for i in chunk {
            let reply = c.expect_reply(&format!("c{i:05}"), Duration::from_secs(30));
            if reply_node(&reply, &format!("{prefix}{i:05}")).is_some() {
                present += 1;
            }
        }
        c.take_inbox();
    }
    c.close();
    present
}

/// A relay that was away while `FIBERGUN_CATCHUP_NODES` nodes (default 10,000) changed gets them
/// all when it returns. Prints how long that took.
#[test]
fn a_relay_back_from_an_absence_catches_up_on_every_change() {
    let n: usize = std::env::var("FIBERGUN_CATCHUP_NODES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let hub = Relay::start(&[]);
    let mut away = Relay::start(&[&hub]);
    put(&hub, "before", "x", "1");
    wait_value(&away, "before", "x", "1", SETTLE);

    away.server.kill_hard();
    let written = Instant::now();
    write_many(&hub, "cu-", n);
    let write_time = written.elapsed();
    away.server.restart();
    let back = Instant::now();
    // Changes arrive in soul order (the link's page-by-page exchange) and in write order (the
    // changes kept for it): the last node is the last either way.
    let last = format!("cu-{:05}", n - 1);
    let mut c = away.client();
    loop {
        let reply = c.get(&fresh_id("p"), &last, None, Duration::from_secs(5));
        if reply_node(&reply, &last).is_some() {
            break;
        }
        assert!(
            back.elapsed() < Duration::from_secs(60),
            "not caught up after 60 s\n{}",
            away.server.log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let caught_up = back.elapsed();
    assert_eq!(count_present(&away, "cu-", n), n, "every node arrived");
    println!(
        "catch-up: {n} nodes written in {write_time:?} while a relay was away; \
         all on it {caught_up:?} after its restart (reconnect included)"
    );
}

fn mixed_mesh(url_a: &str, url_b: &str, what: &str) {
    expect_success(&run_node("mesh_two_sides.js", &[url_a, url_b]), what);
}

#[test]
fn fibergun_dialling_a_gunjs_relay_clients_on_each_side_see_each_other() {
    // The stock relay, AXE on.
    let gunjs = GunJsRelay::start(&[], true);
    let data = temp_data_dir();
    let mut args = REDIAL.to_vec();
    let gun_url = gunjs.gun_url();
    args.extend(["--peer", gun_url.as_str()]);
    let mut fibergun = Server::start(BINARY, data.path(), &args);
    mixed_mesh(
        &fibergun.gun_url(),
        &gunjs.gun_url(),
        "fibergun dials GUN JS",
    );
    fibergun.assert_alive("after the mixed mesh");
}

#[test]
fn a_gunjs_relay_dialling_fibergun_clients_on_each_side_see_each_other() {
    let data = temp_data_dir();
    let mut fibergun = Server::start(BINARY, data.path(), &REDIAL);
    // A GUN JS relay dials its peers only in flood mode (AXE off).
    let gunjs = GunJsRelay::start(&[fibergun.gun_url()], false);
    mixed_mesh(
        &gunjs.gun_url(),
        &fibergun.gun_url(),
        "GUN JS dials fibergun",
    );
    fibergun.assert_alive("after the mixed mesh");
}

#[test]
fn three_peers_write_on_one_read_on_the_others_with_gunjs_clients() {
    let r0 = Relay::start(&[]);
    let r1 = Relay::start(&[&r0]);
    let r2 = Relay::start(&[&r0, &r1]);
    let urls = [
        r0.server.gun_url(),
        r1.server.gun_url(),
        r2.server.gun_url(),
    ];
    let run = run_node("mesh_sync.js", &[&urls[0], &urls[1], &urls[2]]);
    expect_success(&run, "three-peer sync");
}

/// A TCP proxy on loopback standing for the network between two relays: it can be cut (every
/// connection through it is broken, and new ones are refused) and healed.
struct Proxy {
    port: u16,
    cut: Arc<AtomicBool>,
    open: Arc<Mutex<Vec<TcpStream>>>,
}

impl Proxy {
    fn to(target_port: u16) -> Proxy {
        Self::throttled(target_port, None)
    }

    /// A proxy that passes at most `bytes_per_sec` from the target back to the dialler (a slow
    /// network, or a slow reader).
    fn throttled(target_port: u16, bytes_per_sec: Option<usize>) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the proxy");
        let port = listener.local_addr().expect("proxy address").port();
        let cut = Arc::new(AtomicBool::new(false));
        let open: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
        let (cut2, open2) = (cut.clone(), open.clone());
        std::thread::spawn(move || {
            for client in listener.incoming().map_while(Result::ok) {
                if cut2.load(Ordering::SeqCst) {
                    let _ = client.shutdown(Shutdown::Both);
                    continue;
                }
                let Ok(server) = TcpStream::connect(("127.0.0.1", target_port)) else {
                    continue;
                };
                let mut open = open2.lock().unwrap();
                for s in [&client, &server] {
                    if let Ok(s) = s.try_clone() {
                        open.push(s);
                    }
                }
                drop(open);
                pipe(
                    client.try_clone().unwrap(),
                    server.try_clone().unwrap(),
                    None,
                );
                pipe(server, client, bytes_per_sec);
            }
        });
        Proxy { port, cut, open }
    }

    fn url(&self) -> String {
        format!("ws://127.0.0.1:{}/gun", self.port)
    }

    fn cut(&self) {
        self.cut.store(true, Ordering::SeqCst);
        for s in self.open.lock().unwrap().drain(..) {
            let _ = s.shutdown(Shutdown::Both);
        }
    }

    fn heal(&self) {
        self.cut.store(false, Ordering::SeqCst);
    }
}

/// Copies bytes one way until either side ends, at most `bytes_per_sec` if given.
fn pipe(mut from: TcpStream, mut to: TcpStream, bytes_per_sec: Option<usize>) {
    std::thread::spawn(move || {
        let mut buf = [0u8; 16 << 10];
        while let Ok(n) = from.read(&mut buf) {
            if n == 0 || to.write_all(&buf[..n]).is_err() {
                break;
            }
            if let Some(rate) = bytes_per_sec {
                std::thread::sleep(Duration::from_secs_f64(n as f64 / rate as f64));
            }
        }
        let _ = to.shutdown(Shutdown::Both);
        let _ = from.shutdown(Shutdown::Both);
    });
}

/// Two running relays lose their link (a network partition, not a restart): writes go on at both,
/// and once the network is back each has everything. 10,000 nodes cross (`FIBERGUN_CATCHUP_NODES`).
#[test]
fn after_a_partition_both_sides_catch_up() {
    let n: usize = std::env::var("FIBERGUN_CATCHUP_NODES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let a = Relay::start(&[]);
    let proxy = Proxy::to(a.server.port);
    let b = Relay::start_dialling(&[proxy.url()], None);
    put(&a, "pre", "x", "linked");
    wait_value(&b, "pre", "x", "linked", SETTLE);

    proxy.cut();
    write_many(&a, "pa-", n);
    put(&b, "from-b", "x", "during the partition");
    proxy.heal();
    let healed = Instant::now();
    wait_value(&b, &format!("pa-{:05}", n - 1), "v", n - 1, SETTLE);
    let caught_up = healed.elapsed();
    wait_value(&a, "from-b", "x", "during the partition", SETTLE);
    assert_eq!(count_present(&b, "pa-", n), n, "every node crossed");
    println!("partition: {n} nodes written on one side; all across {caught_up:?} after the heal");
}

#[test]
fn a_relay_told_to_dial_itself_stops_after_one_try() {
    let port = free_port();
    let me = format!("ws://127.0.0.1:{port}/gun");
    let relay = Relay::start_dialling(&[me], Some(port));
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(relay.dials_made(), 1, "{}", relay.server.log());
    // It serves as usual.
    put(&relay, "self", "x", "fine");
    wait_value(&relay, "self", "x", "fine", SETTLE);
}

#[test]
fn two_relays_dialling_each_other_keep_one_connection() {
    let ports = free_ports(2);
    let (pa, pb) = (ports[0], ports[1]);
    let url = |p: u16| format!("ws://127.0.0.1:{p}/gun");
    let a = Relay::start_dialling(&[url(pb)], Some(pa));
    let b = Relay::start_dialling(&[url(pa)], Some(pb));
    put(&a, "both", "from_a", "a");
    put(&b, "both", "from_b", "b");
    wait_value(&a, "both", "from_b", "b", SETTLE);
    wait_value(&b, "both", "from_a", "a", SETTLE);
    // The surplus connection is dropped once, and nobody redials it in a loop.
    std::thread::sleep(Duration::from_secs(2));
    let dials = a.dials_made() + b.dials_made();
    assert!(
        dials <= 3,
        "{dials} dials\n{}\n{}",
        a.server.log(),
        b.server.log()
    );
    put(&a, "both", "later", "still linked");
    wait_value(&b, "both", "later", "still linked", SETTLE);
}

/// How many souls starting with `prefix` the relay itself holds, by one soul-range GET (which,
/// unlike a GET by soul, is never forwarded to other relays). Replies come page by page; the
/// count is taken when they stop.
fn count_souls(relay: &Relay, prefix: &str) -> usize {
    let mut c = relay.client();
    let id = fresh_id("range");
    assert!(c.send_json(&json!({"#": id, "get": {"#": {"*": prefix}}})));
    c.expect_reply(&id, Duration::from_secs(10));
    c.drain(Duration::from_millis(500));
    let souls: std::collections::BTreeSet<String> = c
        .inbox
        .iter()
        .filter(|m| m.get("@").and_then(Value::as_str) == Some(id.as_str()))
        .filter_map(|m| m.get("put").and_then(Value::as_object))
        .flat_map(|graph| graph.keys().cloned())
        .collect();
    c.close();
    souls.len()
}

/// Waits (at most 60 s from `start`) until `relay` holds `n` souls starting with `prefix`; on
/// failure shows `witness`'s log.
fn wait_souls(relay: &Relay, prefix: &str, n: usize, start: Instant, witness: &Relay) {
    loop {
        let have = count_souls(relay, prefix);
        if have == n {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "{have} of {n} after 60 s\n{}",
            witness.server.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// A graph many times bigger than a connection may have queued crosses a slow link whole: the
/// sending relay reads its next page only once the socket has drained (without that, its queue
/// would overflow and the link be dropped as a reader that does not keep up).
#[test]
fn a_graph_bigger_than_the_outbound_queue_crosses_a_slow_link() {
    let mut hub = Relay::start_with(&[], None, &["--max-outbound-queue-bytes", "262144"]);
    let n = 8_000;
    let filler = "g".repeat(2_000);
    write_many_with(&hub, "big-", n, |i| json!(format!("{i}{filler}")));
    // About 4 MB/s from the hub to the newcomer: far slower than the hub reads its store.
    let slow = Proxy::throttled(hub.server.port, Some(4 << 20));
    let start = Instant::now();
    let newcomer = Relay::start_dialling(&[slow.url()], None);
    wait_souls(&newcomer, "big-", n, start, &hub);
    let took = start.elapsed();
    println!(
        "{} MB crossed a 4 MB/s link with a 256 KiB queue in {took:?}",
        n * 2_000 / 1_000_000
    );
    assert_eq!(
        newcomer.dials_made(),
        1,
        "the link was never dropped\n{}",
        hub.server.log()
    );
    // Every node is on the newcomer itself, with its value.
    let hub_log = hub.server.log();
    hub.server.kill_hard();
    assert_eq!(count_present(&newcomer, "big-", n), n, "{hub_log}");
    wait_value(
        &newcomer,
        &format!("big-{:05}", n - 1),
        "v",
        format!("{}{filler}", n - 1),
        SETTLE,
    );
}

/// A relay whose storage falls behind stops reading its sockets until it catches up, so a relay
/// streaming its graph to it slows down instead of having pages refused as "busy".
#[test]
fn a_relay_with_storage_behind_slows_its_link_down_and_loses_nothing() {
    let hub = Relay::start(&[]);
    let n = 5_000;
    write_many(&hub, "slow-", n);
    let start = Instant::now();
    let newcomer = Relay::start_with(
        &[hub.server.ws_url()],
        None,
        &["--max-pending-store-ops", "64"],
    );
    wait_souls(&newcomer, "slow-", n, start, &newcomer);
    println!(
        "{n} nodes into a relay allowed 64 storage ops in flight: {:?}",
        start.elapsed()
    );
}
