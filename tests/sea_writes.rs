//! SEA's write rules on the core's put path: a put into a user's space is taken only when every
//! field is signed by the owner (or by a certified writer); otherwise it is refused whole with
//! the reason, and nothing of it is stored or pushed.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use fibergun::sea::{KeyPair, SignedValue};
use fibergun::testing::{put_frame, Harness, START_WALL_MS};
use fibergun::Config;
use serde_json::{json, Value as Json};

fn pair(seed: u8) -> KeyPair {
    KeyPair::from_private(&URL_SAFE_NO_PAD.encode([seed; 32])).unwrap()
}

/// A put of `fields` (key, stored value) into `soul`, all at `state`.
fn put(id: &str, soul: &str, fields: &[(&str, Json)], state: f64) -> String {
    put_frame(id, soul, fields, state)
}

fn relay() -> Harness {
    let mut h = Harness::with_seed(9);
    h.connect(1);
    h.connect(2);
    // The second client watches the user's node.
    h.take(1);
    h.take(2);
    h
}

fn signed(owner: &KeyPair, soul: &str, key: &str, value: Json) -> Json {
    json!(SignedValue::sign(owner, soul, key, &value, START_WALL_MS))
}

#[test]
fn the_owner_s_signed_writes_are_taken_and_pushed() {
    let mut h = relay();
    let owner = pair(1);
    let soul = format!("~{}", owner.public().as_str());
    h.frame(2, &json!({"#": "g1", "get": {"#": &soul}}).to_string());
    h.take(2);
    let fields = [
        ("pub", json!(owner.public().as_str())),
        ("name", signed(&owner, &soul, "name", json!("Alice"))),
    ];
    h.frame(1, &put("p1", &soul, &fields, START_WALL_MS));
    let ack = h.replies_to(1, "p1");
    assert_eq!(ack[0]["ok"], true, "{ack:?}");
    assert!(h.store.nodes[soul.as_str()].contains_key("name"));
    let pushed = h.take(2);
    assert!(pushed.iter().any(|m| m["put"][&soul]["name"].is_string()));
}

#[test]
fn forgeries_are_refused_whole_and_nothing_of_them_is_stored_or_pushed() {
    let owner = pair(1);
    let mallory = pair(2);
    let soul = format!("~{}", owner.public().as_str());
    let good = signed(&owner, &soul, "name", json!("Alice"));
    let forgeries = [
        ("unsigned", vec![("name", json!("Mallory"))]),
        (
            "another key",
            vec![("name", signed(&mallory, &soul, "name", json!("M")))],
        ),
        (
            "tampered",
            vec![(
                "name",
                json!(good.as_str().unwrap().replace("Alice", "Mallory")),
            )],
        ),
        ("moved to another key", vec![("nick", good.clone())]),
        ("a number", vec![("age", json!(3))]),
        (
            "one good, one bad",
            vec![("name", good.clone()), ("bio", json!("unsigned"))],
        ),
        (
            "the account's pub",
            vec![("pub", json!(mallory.public().as_str()))],
        ),
    ];
    for (what, fields) in forgeries {
        let mut h = relay();
        h.frame(2, &json!({"#": "g1", "get": {"#": &soul}}).to_string());
        h.take(2);
        h.frame(1, &put("p1", &soul, &fields, START_WALL_MS));
        let reply = h.replies_to(1, "p1");
        assert!(reply[0]["err"].is_string(), "{what}: {reply:?}");
        assert!(!h.store.nodes.contains_key(soul.as_str()), "{what}: stored");
        assert!(
            h.take(2).iter().all(|m| m.get("put").is_none()),
            "{what}: pushed"
        );
    }
    // Replayed at another state.
    let mut h = relay();
    h.frame(1, &put("p1", &soul, &[("name", good)], START_WALL_MS - 1.0));
    assert_eq!(h.replies_to(1, "p1")[0]["err"], "Unverified data.");
}

#[test]
fn alias_lists_and_hashed_souls_are_checked_and_public_souls_are_open() {
    let mut h = relay();
    h.frame(
        1,
        &put(
            "a1",
            "~@alice",
            &[("~X.Y", json!({"#": "~P.Q"}))],
            START_WALL_MS,
        ),
    );
    assert_eq!(h.replies_to(1, "a1")[0]["err"], "Alias not same!");
    h.frame(
        1,
        &put(
            "a2",
            "~@alice",
            &[("~X.Y", json!({"#": "~X.Y"}))],
            START_WALL_MS,
        ),
    );
    assert_eq!(h.replies_to(1, "a2")[0]["ok"], true);
    let hash = "uU0nuZNNPgilLlLX2n2r+sSE7+N6U4DukIj3rOLvzek=";
    h.frame(
        1,
        &put("h1", "#", &[(hash, json!("hello world!"))], START_WALL_MS),
    );
    assert_eq!(
        h.replies_to(1, "h1")[0]["err"],
        "Data hash not same as hash!"
    );
    h.frame(
        1,
        &put("h2", "#", &[(hash, json!("hello world"))], START_WALL_MS),
    );
    assert_eq!(h.replies_to(1, "h2")[0]["ok"], true);
    h.frame(
        1,
        &put("c1", "chat", &[("msg", json!("hi"))], START_WALL_MS),
    );
    assert_eq!(h.replies_to(1, "c1")[0]["ok"], true);
}

#[test]
fn a_write_block_list_stops_a_certified_writer() {
    let owner = pair(1);
    let writer = pair(3);
    let me = owner.public().as_str().to_owned();
    let them = writer.public().as_str().to_owned();
    let inbox = format!("~{me}/inbox");
    let terms = json!({"c": "*", "w": {"*": "inbox"}, "wb": "blocked"});
    let cert = json!({"m": terms, "s": owner.sign(&fibergun::json::stringify(&terms))});
    let key = "from-writer";
    let signature = writer.sign(&fibergun::sea::field_text(
        &inbox,
        key,
        &json!("hi"),
        START_WALL_MS,
    ));
    let value = json!({":": "hi", "~": signature, "+": cert, "*": &them});
    let stored = json!(fibergun::json::stringify(&value));
    let mut h = relay();
    h.frame(
        1,
        &put("w1", &inbox, &[(key, stored.clone())], START_WALL_MS),
    );
    assert_eq!(h.replies_to(1, "w1")[0]["ok"], true, "not blocked yet");
    // The owner blocks the writer.
    let blocked = format!("~{me}/blocked");
    let block = signed(&owner, &blocked, &them, json!(true));
    h.frame(1, &put("b1", &blocked, &[(&them, block)], START_WALL_MS));
    assert_eq!(h.replies_to(1, "b1")[0]["ok"], true);
    h.frame(1, &put("w2", &inbox, &[(key, stored)], START_WALL_MS));
    let reply = h.replies_to(1, "w2");
    assert!(
        reply[0]["err"].as_str().unwrap().contains("blocked"),
        "{reply:?}"
    );
}

#[test]
fn a_relay_that_trusts_every_client_takes_anything() {
    let mut h = Harness::new(Config {
        trust_all_writes: true,
        ..Config::default()
    });
    h.connect(1);
    h.frame(
        1,
        &put("p1", "~X.Y", &[("name", json!("unsigned"))], START_WALL_MS),
    );
    assert_eq!(h.replies_to(1, "p1")[0]["ok"], true);
}

#[test]
fn a_put_whose_signature_checks_are_never_answered_is_refused_in_time_and_late_answers_change_nothing(
) {
    let mut h = relay();
    h.auto_verify = false;
    let owner = pair(1);
    let soul = format!("~{}", owner.public().as_str());
    let fields = [("name", signed(&owner, &soul, "name", json!("Alice")))];
    h.frame(1, &put("p1", &soul, &fields, START_WALL_MS));
    assert_eq!(h.verifying.len(), 1, "the checks went out");
    assert_eq!(h.peer.puts_verifying(), 1);
    let limit = fibergun::Limits::default().max_verify_ms;
    h.advance(limit - 1);
    assert!(h.replies_to(1, "p1").is_empty(), "still within its time");
    h.advance(2);
    let refused = h.replies_to(1, "p1");
    assert_eq!(refused.len(), 1, "{refused:?}");
    let err = refused[0]["err"].as_str().unwrap_or_default();
    assert!(err.starts_with("Server busy"), "{err}");
    assert_eq!(h.peer.puts_verifying(), 0, "nothing is left waiting");
    assert_eq!(h.peer.stats().errors.busy, 1);
    // The runtime answers at last: nothing is stored, nothing more is said.
    h.verify();
    assert!(h.take(1).is_empty());
    assert!(!h.store.nodes.contains_key(soul.as_str()));
    // Writes go on being checked and taken.
    h.auto_verify = true;
    h.frame(1, &put("p2", &soul, &fields, START_WALL_MS));
    assert_eq!(h.replies_to(1, "p2")[0]["ok"], true);
}
