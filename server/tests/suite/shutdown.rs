//! SIGTERM and SIGINT stop the server cleanly: writes already taken in finish committing and are
//! acknowledged, the process exits with success, and after a restart the store holds exactly the
//! acknowledged writes.

use crate::BINARY;

use std::collections::BTreeSet;
use std::process::Command;
use std::time::{Duration, Instant};

use fibergun_testkit::{put_msg, temp_data_dir, Peer, Server};
use serde_json::json;

const PUTS: usize = 400;

fn stop_cleanly(signal: &str) {
    let dir = temp_data_dir();
    let mut server = Server::start(BINARY, dir.path(), &[]);
    let mut peer = Peer::connect(&server.ws_url());
    let state = 1_700_000_000_000.0;
    for i in 0..PUTS {
        let msg = put_msg(
            &format!("s{i}"),
            &format!("shut{i}"),
            &[("v", json!(i))],
            state,
        );
        assert!(peer.send_json(&msg), "connection closed while sending");
    }
    // Signal only once the server has taken some in, so the stop lands while writes are in flight
    // rather than before the first frame was read.
    let first_ack = Instant::now() + Duration::from_secs(10);
    while !peer.inbox.iter().any(|m| m["ok"] == true) && Instant::now() < first_ack {
        peer.pump(Duration::from_millis(1));
    }
    let pid = server.pid().expect("server running").to_string();
    let killed = Command::new("kill")
        .args([signal, &pid])
        .status()
        .expect("run kill");
    assert!(killed.success());

    // Read until the server closes the connection.
    let end = Instant::now() + Duration::from_secs(15);
    while peer.is_open() && Instant::now() < end {
        peer.pump(Duration::from_millis(200));
    }
    assert!(
        !peer.is_open(),
        "the server did not close the connection on {signal}"
    );
    let acked: BTreeSet<usize> = peer
        .inbox
        .iter()
        .filter(|m| m["ok"] == true)
        .filter_map(|m| m["@"].as_str()?.strip_prefix('s')?.parse().ok())
        .collect();

    let status = server.wait_exit(Duration::from_secs(10));
    assert!(
        status.success(),
        "fibergun exited with {status} on {signal}\n{}",
        server.log()
    );
    assert!(
        server.log().contains("store closed"),
        "no orderly close in the log:\n{}",
        server.log()
    );

    let mut again = Server::start(BINARY, dir.path(), &[]);
    let mut reader = Peer::connect(&again.ws_url());
    let mut present = BTreeSet::new();
    for i in 0..PUTS {
        let reply = reader.get(
            &format!("r{i}"),
            &format!("shut{i}"),
            None,
            Duration::from_secs(5),
        );
        if let Some(v) = reply["put"][format!("shut{i}")]["v"].as_u64() {
            assert_eq!(v as usize, i);
            present.insert(i);
        }
    }
    again.assert_alive("after reading back");
    assert!(!acked.is_empty(), "no put was acknowledged before the stop");
    assert_eq!(
        acked,
        present,
        "after {signal}: every committed write must have been acknowledged, and every acknowledged one kept"
    );
    eprintln!(
        "{signal}: {} of {PUTS} puts taken in, committed and acked before the stop",
        acked.len()
    );
}

#[test]
fn sigterm_finishes_in_flight_writes() {
    stop_cleanly("-TERM");
}

#[test]
fn sigint_finishes_in_flight_writes() {
    stop_cleanly("-INT");
}
