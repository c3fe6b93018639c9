//! A client that stops reading cannot make the relay hold unbounded memory for it: once more than
//! `--max-outbound-queue-bytes` wait for it, it is disconnected, and everyone else carries on.

use crate::BINARY;

use std::time::{Duration, Instant};

use fibergun_testkit::{get_msg, put_msg, temp_data_dir, Peer, Server};
use serde_json::json;

/// Sockets the process holds open.
fn sockets(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|dir| {
            dir.filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
                .filter(|target| target.to_string_lossy().starts_with("socket:"))
                .count()
        })
        .unwrap_or(0)
}

#[test]
fn a_client_that_does_not_read_is_disconnected() {
    let dir = temp_data_dir();
    let mut server = Server::start(
        BINARY,
        dir.path(),
        &["--max-outbound-queue-bytes", "262144"],
    );
    // The slow client subscribes, then never reads again.
    let mut slow = Peer::connect(&server.ws_url());
    slow.send_json(&get_msg("sub", "firehose", None));
    slow.expect_reply("sub", Duration::from_secs(5));
    let mut writer = Peer::connect(&server.ws_url());
    // Once the writer is answered, the relay holds both connections.
    writer.get("ready", "firehose", None, Duration::from_secs(5));
    let with_both = sockets(server.pid().expect("running"));
    let big = "x".repeat(64 << 10);
    let started = Instant::now();
    let mut state = 1_700_000_000_000.0;
    let mut disconnected = false;
    // Each put pushes 64 KiB to the slow client; its socket buffers fill, then the relay's queue.
    for i in 0..2_000 {
        state += 1.0;
        writer.put_ok(
            &put_msg(&format!("w{i}"), "firehose", &[("blob", json!(big))], state),
            Duration::from_secs(5),
        );
        if i % 50 == 49 && server.log().contains("does not read its frames") {
            disconnected = true;
            break;
        }
    }
    assert!(
        disconnected,
        "the slow client was never dropped\n{}",
        server.log()
    );
    server.assert_alive("after dropping a slow client");
    // The relay really let go of it while it still reads nothing: its socket is closed on the
    // server's side, not kept open behind a writer blocked on the full socket.
    let pid = server.pid().expect("running");
    let end = Instant::now() + Duration::from_secs(10);
    while sockets(pid) >= with_both && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        sockets(pid) < with_both,
        "the dropped client's socket is still held by the relay"
    );
    drop(slow);
    // The relay still serves others.
    let mut other = Peer::connect(&server.ws_url());
    let reply = other.get("g", "firehose", Some("blob"), Duration::from_secs(5));
    assert_eq!(
        reply["put"]["firehose"]["blob"].as_str().map(str::len),
        Some(big.len())
    );
    eprintln!("slow client dropped after {:?}", started.elapsed());
}
