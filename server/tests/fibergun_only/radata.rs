//! Moving a GUN JS relay's data to fibergun: the stock GUN JS relay (radisk on) stores a graph
//! written by a GUN JS client; `fibergun import-radata` merges its `radata` folder into a new
//! store; fibergun then serves every node intact, with GUN JS's states.

use crate::BINARY;

use std::process::Command;
use std::time::Duration;

use fibergun_testkit::gunjs::{expect_success, run_node, GunJsRelay};
use fibergun_testkit::{reply_node, temp_data_dir, Peer, Server};
use serde_json::{json, Value};

#[test]
fn a_radata_folder_written_by_gun_js_imports_with_every_node_intact() {
    let relay = GunJsRelay::start(&[], true);
    let seeded = run_node("radata_seed.js", &[&relay.gun_url()]);
    expect_success(&seeded, "node radata_seed.js");
    // What the GUN JS relay itself answers, to compare with.
    let mut gunjs = Peer::connect(&relay.gun_url().replace("http://", "ws://"));
    let souls = [
        "rd-flat",
        "rd-person",
        "rd-person/address",
        "rd-person/address/geo",
        "rd-list",
    ];
    let expected: Vec<Value> = souls
        .iter()
        .map(|s| {
            let reply = gunjs.get(&format!("js-{s}"), s, None, Duration::from_secs(10));
            reply_node(&reply, s)
                .cloned()
                .unwrap_or_else(|| panic!("GUN JS lacks {s}: {reply}"))
        })
        .collect();
    let radata = relay.stop_keeping_data();

    let data = temp_data_dir();
    let store = data.path().join("store");
    let out = Command::new(BINARY)
        .args(["import-radata", "--data"])
        .arg(&store)
        .arg(radata.path())
        .output()
        .expect("run fibergun import-radata");
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{said}");
    assert!(said.contains("imported"), "{said}");

    let server = Server::start(BINARY, &store, &[]);
    let mut peer = Peer::connect(&server.ws_url());
    for (soul, gun) in souls.iter().zip(&expected) {
        let reply = peer.get(&format!("fg-{soul}"), soul, None, Duration::from_secs(10));
        let node =
            reply_node(&reply, soul).unwrap_or_else(|| panic!("fibergun lacks {soul}: {reply}"));
        assert_eq!(node, gun, "{soul} differs from what GUN JS served");
    }
    let flat = &expected[0];
    assert_eq!(flat["n"], json!(43), "the later write wins");
    assert_eq!(flat["s"], json!("héllo ☃"));
    let list = expected[4].as_object().unwrap();
    assert_eq!(list.len(), 4, "three items and the metadata: {list:?}");
}
