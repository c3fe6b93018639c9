//! Durability: a put that was acked survives `kill -9`.
//!
//! fibergun acks a put only after its LMDB commit was fsync'd. This test streams puts over several raw
//! connections at once (pipelined: the writers never wait for acks), records which puts were acked, kills
//! the server with SIGKILL in the middle of the stream, restarts it on the same data directory and GETs
//! every acked put: each must be there with exactly the acked value. Puts that were sent but not acked may
//! or may not be there, but if one is, it must hold the value that was sent (no torn or mixed-up data).
//!
//! SIGKILL loses the process, not the OS page cache, so this checks "acked ⇒ committed" at the process
//! level (the ack was not sent before the commit); it cannot check the fsync itself.

use crate::BINARY;

use std::collections::HashMap;
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tungstenite::protocol::{Role, WebSocket};
use tungstenite::Message;

use fibergun_testkit::{get_msg, is_ok_ack, put_msg, reply_node, temp_data_dir, Peer, Server};

/// Parallel connections.
const CONNS: usize = 4;
/// Upper bound of puts per connection (the server is normally killed long before).
const MAX_PUTS_PER_CONN: usize = 3_000;
/// Kill the server once this many puts have been acked...
const KILL_AFTER_ACKS: usize = 2_000;
/// ...or after this long, whichever comes first.
const KILL_DEADLINE: Duration = Duration::from_secs(8);
/// GETs in flight at once after the restart.
const GET_WINDOW: usize = 200;

fn soul(conn: usize, i: usize) -> String {
    format!("dur-{conn}-{i}")
}

/// The value put number `i` of connection `conn` writes.
fn value(conn: usize, i: usize) -> String {
    format!("value {conn}/{i} {}", "d".repeat(i % 50))
}

fn put_id(conn: usize, i: usize) -> String {
    format!("p{conn}x{i}")
}

#[derive(Default)]
struct Shared {
    /// put id -> (conn, i) of every put that got an ok ack.
    acked: Mutex<HashMap<String, (usize, usize)>>,
    /// Replies that were errors, or not understood.
    bad_replies: Mutex<Vec<String>>,
    acks: AtomicUsize,
    sent: AtomicUsize,
    stop: AtomicBool,
}

#[test]
fn acked_puts_survive_kill_9() {
    let data = temp_data_dir();
    let mut server = Server::start(BINARY, data.path(), &[]);
    let url = server.ws_url();
    let shared = Arc::new(Shared::default());
    let sent_per_conn: Vec<Arc<AtomicUsize>> =
        (0..CONNS).map(|_| Arc::new(AtomicUsize::new(0))).collect();

    let mut threads = Vec::new();
    for (conn, sent_here) in sent_per_conn.iter().enumerate() {
        let peer = Peer::connect(&url);
        // The handshaken socket reads (it may already hold bytes that followed the handshake); a second
        // WebSocket on a clone of the same TCP stream only writes, so writes never wait for reads.
        let write_stream: TcpStream = peer.stream().try_clone().expect("clone tcp stream");
        write_stream.set_nodelay(true).ok();
        let mut writer = WebSocket::from_raw_socket(write_stream, Role::Client, None);
        let mut reader = peer;

        let sh = shared.clone();
        let sent_here = sent_here.clone();
        threads.push(thread::spawn(move || {
            for i in 0..MAX_PUTS_PER_CONN {
                if sh.stop.load(Ordering::Relaxed) {
                    break;
                }
                let m = put_msg(
                    &put_id(conn, i),
                    &soul(conn, i),
                    &[("v", json!(value(conn, i))), ("n", json!(i))],
                    1_700_000_000_000.0 + i as f64,
                );
                if writer.send(Message::text(m.to_string())).is_err() {
                    break; // the server is gone
                }
                sent_here.store(i + 1, Ordering::Relaxed);
                sh.sent.fetch_add(1, Ordering::Relaxed);
                if i % 4 == 3 {
                    // Keep the stream going for a while (~1 s per connection) so that the kill lands while
                    // puts are still arriving, not after everything was sent.
                    thread::sleep(Duration::from_millis(1));
                }
            }
        }));

        let sh = shared.clone();
        threads.push(thread::spawn(move || {
            while reader.is_open() {
                reader.pump(Duration::from_millis(200));
                for m in reader.take_inbox() {
                    let Some(to) = m.get("@").and_then(Value::as_str) else {
                        continue; // greeting, heartbeat, pushes
                    };
                    let Some((c, i)) = to
                        .strip_prefix('p')
                        .and_then(|r| r.split_once('x'))
                        .and_then(|(c, i)| Some((c.parse().ok()?, i.parse().ok()?)))
                    else {
                        sh.bad_replies
                            .lock()
                            .unwrap()
                            .push(format!("reply to unknown id: {m}"));
                        continue;
                    };
                    if is_ok_ack(&m) {
                        sh.acked.lock().unwrap().insert(to.to_owned(), (c, i));
                        sh.acks.fetch_add(1, Ordering::Relaxed);
                    } else {
                        sh.bad_replies
                            .lock()
                            .unwrap()
                            .push(format!("not an ok ack: {m}"));
                    }
                }
                if sh.stop.load(Ordering::Relaxed) && !reader.is_open() {
                    break;
                }
            }
        }));
    }

    // Kill mid-stream.
    let start = Instant::now();
    while shared.acks.load(Ordering::Relaxed) < KILL_AFTER_ACKS && start.elapsed() < KILL_DEADLINE {
        server.assert_alive("while streaming puts");
        thread::sleep(Duration::from_millis(2));
    }
    let acks_at_kill = shared.acks.load(Ordering::Relaxed);
    let sent_at_kill = shared.sent.load(Ordering::Relaxed);
    server.kill_hard();
    shared.stop.store(true, Ordering::Relaxed);
    let killed_after = start.elapsed();
    for t in threads {
        t.join().expect("client thread panicked");
    }
    let acked: HashMap<String, (usize, usize)> = shared.acked.lock().unwrap().clone();
    let sent: Vec<usize> = sent_per_conn
        .iter()
        .map(|s| s.load(Ordering::Relaxed))
        .collect();
    println!(
        "killed after {killed_after:?}: {sent_at_kill} puts sent, {acks_at_kill} acked at the kill, \
         {} acks recorded in all; sent per connection {sent:?}",
        acked.len()
    );
    let bad = shared.bad_replies.lock().unwrap().clone();
    assert!(bad.is_empty(), "unexpected replies to valid puts: {bad:#?}");
    assert!(
        !acked.is_empty(),
        "no put was acked within {KILL_DEADLINE:?} ({sent_at_kill} sent)"
    );
    if acked.len() == sent.iter().sum::<usize>() {
        println!(
            "note: every sent put was acked before the kill (the kill did not land mid-stream)"
        );
    }

    // Restart on the same data and read everything back.
    let mut server = Server::start(BINARY, data.path(), &[]);
    let mut peer = Peer::connect(&server.ws_url());
    let mut to_check: Vec<(usize, usize, bool)> = Vec::new();
    for (conn, &n) in sent.iter().enumerate() {
        for i in 0..n {
            to_check.push((conn, i, acked.contains_key(&put_id(conn, i))));
        }
    }
    let mut missing = Vec::new();
    let mut wrong = Vec::new();
    let mut unacked_present = 0usize;
    let read_start = Instant::now();
    for chunk in to_check.chunks(GET_WINDOW) {
        for &(conn, i, _) in chunk {
            assert!(
                peer.send_json(&get_msg(&format!("g{conn}x{i}"), &soul(conn, i), None)),
                "connection to the restarted server closed: {:?}",
                peer.closed
            );
        }
        for &(conn, i, was_acked) in chunk {
            let id = format!("g{conn}x{i}");
            let r = peer.expect_reply(&id, Duration::from_secs(10));
            peer.inbox
                .retain(|m| m.get("@").and_then(Value::as_str) != Some(&id));
            let s = soul(conn, i);
            match reply_node(&r, &s) {
                None if was_acked => missing.push(s),
                None => {}
                Some(node) => {
                    if !was_acked {
                        unacked_present += 1;
                    }
                    let want_v = json!(value(conn, i));
                    if node.get("v") != Some(&want_v) || node.get("n") != Some(&json!(i)) {
                        wrong.push(format!("{s}: {node}"));
                    }
                }
            }
        }
    }
    println!(
        "after restart: read {} souls in {:?}; {} acked, {} of them missing; {unacked_present} unacked \
         puts are present too; {} wrong values",
        to_check.len(),
        read_start.elapsed(),
        acked.len(),
        missing.len(),
        wrong.len()
    );
    assert!(
        missing.is_empty(),
        "{} acked puts are missing after kill -9 and restart, e.g. {:?}",
        missing.len(),
        &missing[..missing.len().min(20)]
    );
    assert!(
        wrong.is_empty(),
        "{} puts read back with wrong values, e.g. {:#?}",
        wrong.len(),
        &wrong[..wrong.len().min(20)]
    );
    server.assert_alive("after reading everything back");
}
