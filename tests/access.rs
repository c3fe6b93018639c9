//! The access hook: the peer asks the policy for every put, every GET and every push, with the
//! principal the runtime reported for the connection.

use std::sync::Arc;

use fibergun::access::{AccessPolicy, Open, Principal, TokenAccess};
use fibergun::testing::{Harness, START_WALL_MS};
use fibergun::Config;
use serde_json::{json, Value as Json};

fn put(id: &str, soul: &str, value: Json) -> String {
    put_at(id, soul, value, START_WALL_MS)
}

fn put_at(id: &str, soul: &str, value: Json, state: f64) -> String {
    json!({"#": id, "put": {soul: {"_": {"#": soul, ">": {"k": state}}, "k": value}}}).to_string()
}

fn get(id: &str, soul: &str) -> String {
    json!({"#": id, "get": {"#": soul}}).to_string()
}

fn relay(policy: impl AccessPolicy + 'static) -> Harness {
    let mut h = Harness::new(Config {
        seed: 3,
        access: Some(Arc::new(policy)),
        ..Config::default()
    });
    for conn in [1, 2, 3] {
        h.connect(conn);
        h.take(conn);
    }
    h
}

#[test]
fn writes_only_with_a_token() {
    let mut h = relay(TokenAccess {
        read: Open::Everyone,
        write: Open::TokenHolders,
    });
    h.authenticate(2, Principal::Token("ci".into()));
    h.frame(1, &put("anon", "doc", json!(1)));
    let refused = h.replies_to(1, "anon");
    assert_eq!(
        refused[0]["err"],
        "Access denied: this connection may not write 'doc'."
    );
    h.frame(2, &put("holder", "doc", json!(2)));
    assert_eq!(h.replies_to(2, "holder")[0]["ok"], true);
    // Everyone reads; the refused write left nothing.
    h.frame(1, &get("g", "doc"));
    assert_eq!(h.replies_to(1, "g")[0]["put"]["doc"]["k"], 2);
    assert_eq!(h.peer.stats().errors.unauthorized, 1);
}

#[test]
fn a_read_only_relay_takes_writes_only_from_peers_it_dialled() {
    let mut h = Harness::new(Config {
        seed: 3,
        access: Some(Arc::new(TokenAccess {
            read: Open::Everyone,
            write: Open::Nobody,
        })),
        peers: vec!["ws://upstream.test/gun".into()],
        ..Config::default()
    });
    let (remote, _) = h.dials[0].clone();
    h.dialled(remote, 9);
    h.connect(1);
    h.authenticate(1, Principal::Token("ci".into()));
    h.take(1);
    h.frame(1, &put("client", "doc", json!(1)));
    assert!(h.replies_to(1, "client")[0]["err"]
        .as_str()
        .unwrap()
        .starts_with("Access denied"));
    h.frame(9, &put("upstream", "doc", json!(7)));
    assert_eq!(h.replies_to(9, "upstream")[0]["ok"], true);
    h.frame(1, &get("g", "doc"));
    assert_eq!(h.replies_to(1, "g")[0]["put"]["doc"]["k"], 7);
}

/// Souls under `private/` are for token holders only.
#[derive(Debug)]
struct PrivatePrefix;

impl AccessPolicy for PrivatePrefix {
    fn may_read(&self, who: &Principal, soul: &str) -> bool {
        !soul.starts_with("private/") || matches!(who, Principal::Token(_) | Principal::Peer)
    }
    fn may_write(&self, who: &Principal, soul: &str) -> bool {
        self.may_read(who, soul)
    }
}

#[test]
fn reads_range_answers_and_pushes_leave_out_what_may_not_be_read() {
    let mut h = relay(PrivatePrefix);
    h.authenticate(2, Principal::Token("ci".into()));
    h.frame(2, &put("p1", "private/a", json!("secret")));
    h.frame(2, &put("p2", "public/b", json!("open")));
    h.take(2);
    // A direct GET is refused with a reason.
    h.frame(1, &get("g1", "private/a"));
    assert!(h.replies_to(1, "g1")[0]["err"]
        .as_str()
        .unwrap()
        .starts_with("Access denied"));
    // A range GET over every soul shows only what may be read.
    h.frame(1, r##"{"#":"all","get":{"#":{"*":""}}}"##);
    let replies = h.replies_to(1, "all");
    let souls: Vec<&str> = replies
        .iter()
        .filter_map(|r| r["put"].as_object())
        .flat_map(|g| g.keys().map(String::as_str))
        .collect();
    assert_eq!(souls, vec!["public/b"]);
    // Connection 1 subscribed to everything with that GET; a change to a private soul is
    // pushed to the token holder's subscription (conn 3 gets authenticated) but not to it.
    h.authenticate(3, Principal::Token("other".into()));
    h.frame(3, r##"{"#":"all3","get":{"#":{"*":""}}}"##);
    h.take(3);
    h.frame(
        2,
        &put_at("p3", "private/a", json!("changed"), START_WALL_MS + 1.0),
    );
    h.advance(2); // the state was a millisecond ahead of the relay's clock
    let pushed_to = |h: &mut Harness, conn: u64| {
        h.take(conn)
            .iter()
            .any(|m| m["put"].get("private/a").is_some())
    };
    assert!(
        !pushed_to(&mut h, 1),
        "a private change reached an anonymous subscriber"
    );
    assert!(
        pushed_to(&mut h, 3),
        "the token holder's subscription missed the change"
    );
}
