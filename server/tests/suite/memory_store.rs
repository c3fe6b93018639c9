//! `--store memory`: a relay that keeps its graph in memory only (for tests and ephemeral
//! relays): it serves and acknowledges writes, touches no data folder, and starts empty after a
//! restart. Declared by each runtime's package.

use crate::BINARY;

use std::time::Duration;

use fibergun_testkit::{now_ms, put_msg, reply_node, temp_data_dir, Peer, Server};
use serde_json::json;

const WAIT: Duration = Duration::from_secs(10);

#[test]
fn a_memory_relay_serves_and_forgets_on_restart() {
    let data = temp_data_dir();
    let folder = data.path().join("never-created");
    let mut server = Server::start(BINARY, &folder, &["--store", "memory"]);
    let mut peer = Peer::connect(&server.ws_url());
    peer.put_ok(&put_msg("p", "mem", &[("v", json!(1))], now_ms()), WAIT);
    let mut other = Peer::connect(&server.ws_url());
    let reply = other.get("g", "mem", None, WAIT);
    assert_eq!(
        reply_node(&reply, "mem").map(|n| n["v"].clone()),
        Some(json!(1))
    );
    assert!(!folder.exists(), "the memory store wrote a data folder");
    server.restart();
    let mut after = Peer::connect(&server.ws_url());
    let reply = after.get("g2", "mem", None, WAIT);
    assert!(
        reply_node(&reply, "mem").is_none(),
        "a memory relay kept data over a restart: {reply}"
    );
}

#[test]
fn a_quota_is_refused_for_the_memory_store() {
    let data = temp_data_dir();
    let err = fibergun_testkit::serve_must_fail(
        BINARY,
        data.path(),
        &["--store", "memory", "--storage-quota", "1M"],
    );
    assert!(err.contains("lmdb store only"));
}
