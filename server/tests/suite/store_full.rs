//! When the store cannot take a write (here: an LMDB map that is full), the write is answered with
//! an error, never acknowledged, and the relay keeps serving what it has.

use crate::BINARY;

use std::time::Duration;

use fibergun_testkit::{put_msg, temp_data_dir, Peer, Server};
use serde_json::json;

#[test]
fn a_full_store_refuses_writes_with_errors_and_keeps_serving() {
    let dir = temp_data_dir();
    let server = Server::start(BINARY, dir.path(), &["--map-size", "1048576"]);
    let mut peer = Peer::connect(&server.ws_url());
    let blob = "x".repeat(16 << 10);
    let state = 1_700_000_000_000.0;
    let mut acked = Vec::new();
    let mut refused = None;
    for i in 0..200 {
        let id = format!("p{i}");
        peer.send_json(&put_msg(
            &id,
            &format!("full{i}"),
            &[("v", json!(blob))],
            state,
        ));
        let reply = peer.expect_reply(&id, Duration::from_secs(5));
        if reply["ok"] == true {
            acked.push(i);
        } else {
            let err = reply["err"]
                .as_str()
                .expect("a refused write says why")
                .to_owned();
            assert!(err.contains("Storage failed"), "{err}");
            refused = Some(i);
            break;
        }
    }
    let refused = refused.expect("a 1 MiB store must fill up with 3 MiB of writes");
    assert!(!acked.is_empty());
    // What was acknowledged is still there, and what was refused is not.
    for i in [acked[0], *acked.last().unwrap()] {
        let reply = peer.get(
            &format!("g{i}"),
            &format!("full{i}"),
            Some("v"),
            Duration::from_secs(5),
        );
        assert_eq!(
            reply["put"][format!("full{i}")]["v"].as_str().map(str::len),
            Some(blob.len())
        );
    }
    let reply = peer.get(
        "gr",
        &format!("full{refused}"),
        Some("v"),
        Duration::from_secs(5),
    );
    assert!(
        reply.get("put").is_none(),
        "a refused write was stored: {reply}"
    );
}
