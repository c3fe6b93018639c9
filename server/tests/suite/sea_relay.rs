//! SEA on the server: a raw client writes into a user's space with a key pair (signed as GUN JS
//! signs), and forgeries sent over the wire are refused with GUN's error texts and never stored.
//! Declared by each runtime's package.

use crate::BINARY;

use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use fibergun::sea::{KeyPair, SignedValue};
use fibergun_testkit::{now_ms, put_msg, reply_node, temp_data_dir, Peer, Server};
use serde_json::json;

const WAIT: Duration = Duration::from_secs(10);

#[test]
fn only_the_owner_s_signed_writes_reach_a_user_space() {
    let data = temp_data_dir();
    let server = Server::start(BINARY, data.path(), &[]);
    let owner = KeyPair::from_private(&URL_SAFE_NO_PAD.encode([5u8; 32])).unwrap();
    let mallory = KeyPair::from_private(&URL_SAFE_NO_PAD.encode([6u8; 32])).unwrap();
    let soul = format!("~{}", owner.public().as_str());
    let state = now_ms();
    let mut client = Peer::connect(&server.ws_url());
    let good = SignedValue::sign(&owner, &soul, "name", &json!("Alice"), state);
    client.put_ok(
        &put_msg("good", &soul, &[("name", json!(good))], state),
        WAIT,
    );

    let forged = SignedValue::sign(&mallory, &soul, "name", &json!("Mallory"), state + 1.0);
    let attempts = [
        ("unsigned", json!("Mallory")),
        ("signed by another key", json!(forged)),
        ("tampered", json!(good.replace("Alice", "Mallory"))),
    ];
    for (i, (what, value)) in attempts.into_iter().enumerate() {
        let id = format!("forged{i}");
        assert!(client.send_json(&put_msg(&id, &soul, &[("name", value)], state + 1.0)));
        let reply = client.expect_reply(&id, WAIT);
        assert_eq!(reply["err"], "Unverified data.", "{what}: {reply}");
    }
    let reply = client.get("read", &soul, None, WAIT);
    let name = reply_node(&reply, &soul)
        .and_then(|n| n.get("name"))
        .cloned();
    assert_eq!(name, Some(json!(good)), "{reply}");
}
