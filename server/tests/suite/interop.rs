//! Interop with the real GUN JavaScript client (npm `gun@0.2020.1241`).
//!
//! Each test starts its own `fibergun serve` on a free 127.0.0.1 port with a fresh data directory and runs
//! one node scenario script from `testkit/gunjs/` against `http://127.0.0.1:PORT/gun`. The scripts use GUN's
//! browser build (`gun/gun.js` + `ws`), so no multicast/radisk/AXE code is ever loaded; each exits 0 on
//! success and non-zero with a message otherwise, and has its own 20 s deadline. See the header comment of
//! each script for what exactly it checks.
//!
//! Needs `node` and `npm` on PATH. Before the first scenario, `npm ci` is run in `testkit/gunjs` if
//! `testkit/gunjs/node_modules/gun` is missing (once per test binary, serialised). Set `NODE` to use another
//! node binary, and `GUN_WIRE_LOG=1` to have the scripts print every frame their GUN clients exchange.
//!
//! The same scripts can be run against the stock GUN JS relay to check the scripts themselves:
//! `cd testkit/gunjs && node validate-gunjs.js`.

use crate::BINARY;

use fibergun_testkit::gunjs::{ensure_node_deps, expect_success, run_node};

use std::time::Duration;

use fibergun::sea::{verify_field, KeyPair, SignedValue};
use fibergun::Value;
use fibergun_testkit::{now_ms, put_msg, reply_node, temp_data_dir, Peer, Server};
use serde_json::json;

/// Start a fresh fibergun, run one scenario against it, and require exit 0 with the server still alive.
fn scenario(script: &str) {
    ensure_node_deps();
    let data = temp_data_dir();
    let mut server = Server::start(BINARY, data.path(), &[]);
    let url = server.gun_url();
    let run = run_node(script, &[&url]);
    expect_success(&run, &format!("node {script} {url}"));
    server.assert_alive(&format!("after scenario {script}"));
}

/// Put a flat object; a second, fresh client reads it back (whole node, single keys, raw GET).
#[test]
fn put_flat_object_read_back_by_fresh_client() {
    scenario("put_flat.js");
}

/// Put a nested object; a fresh client reads `get(x).get('nested').get('deep')` through the links.
#[test]
fn put_nested_object_read_through_links() {
    scenario("put_nested.js");
}

/// `.on()` on one client sees another client's updates, live (whole-node and single-key subscriptions).
#[test]
fn on_sees_other_clients_update() {
    scenario("on_update.js");
}

/// `.set()` several items; a fresh client's `.map().once()` gets all of them.
#[test]
fn set_items_then_map_once_from_fresh_client() {
    scenario("set_map.js");
}

/// `.once()` on a missing soul fires with `undefined` quickly (the relay answers "not found" at once).
#[test]
fn get_missing_soul_answers_at_once() {
    scenario("get_missing.js");
}

/// Concurrent writes to one key converge on the HAM winner on both writers and on the relay, including
/// equal-state ties broken by JSON text order.
#[test]
fn concurrent_writes_converge_on_ham_winner() {
    scenario("ham_conflict.js");
}

/// SEA with GUN JS's own `gun/sea`: a user is created, logs in from a fresh client (the `~@alias`
/// lookup), writes a profile that a second client reads, and certifies another user's writes; forged
/// writes (wrong key, tampered, replayed at another state, key or user, a certificate for someone else, a
/// writer without a certificate, a bad alias entry, a put with one forged field) are refused and leave
/// nothing behind.
#[test]
fn sea_user_space_is_writable_only_by_its_owner() {
    scenario("sea_user.js");
}

/// Signatures cross both ways between the Rust API and GUN JS: a value signed here is read by a GUN JS
/// client and verified by `SEA.verify`; a value GUN JS's `SEA.sign` made with the same pair is read
/// back here and verified by `sea::verify_field`.
#[test]
fn sea_signatures_cross_between_rust_and_gun_js() {
    ensure_node_deps();
    let data = temp_data_dir();
    let mut server = Server::start(BINARY, data.path(), &[]);
    let private = "rSRdCZ2OxJ1NT2VZ14drp-GWZLw1O50eCW0s41EAhVk";
    let pair = KeyPair::from_private(private).unwrap();
    let public = pair.public().as_str().to_owned();
    let soul = format!("~{public}");
    let wait = Duration::from_secs(10);
    let state = now_ms();
    let mut peer = Peer::connect(&server.ws_url());
    let name = SignedValue::sign(&pair, &soul, "name", &json!("Rusty"), state);
    peer.put_ok(
        &put_msg("rust", &soul, &[("name", json!(name))], state),
        wait,
    );

    let pair_json = json!({ "pub": public, "priv": private }).to_string();
    let run = run_node("sea_cross.js", &[&server.gun_url(), &pair_json]);
    expect_success(&run, "node sea_cross.js");

    let reply = peer.get("read", &soul, None, wait);
    let node = reply_node(&reply, &soul).unwrap_or_else(|| panic!("no node: {reply}"));
    let city = node["city"].as_str().expect("GUN JS wrote city");
    let city_state = node["_"][">"]["city"].as_f64().expect("city has a state");
    let stored = Value::String(city.into());
    let read = verify_field(&soul, "city", &stored, city_state, now_ms()).unwrap();
    assert_eq!(read.value, json!("Lisbon"));
    assert_eq!(read.signer.as_deref(), Some(public.as_str()));
    let replayed = verify_field(&soul, "name", &stored, city_state, now_ms());
    assert!(
        replayed.is_err(),
        "a GUN JS signature must not verify under another key"
    );
    server.assert_alive("after the SEA round trip");
}
