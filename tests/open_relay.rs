//! A relay open to the public, bounded by the operator's rules: signed-only writes, space quotas,
//! write rates per key, bans and takedowns (kept in reserved souls only the operator reaches).
//! Every refusal is an `err`, counted by rule; relay links are bound as clients are.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use fibergun::access::Principal;
use fibergun::moderation::{BANS, TAKEDOWNS};
use fibergun::sea::{KeyPair, SignedValue};
use fibergun::testing::{put_frame, Harness, START_WALL_MS};
use fibergun::{Config, Event, Rule, WritePolicy};
use serde_json::{json, Value as Json};

const CLIENT: u64 = 1;
const WATCHER: u64 = 2;
const ADMIN: u64 = 3;
const LINK: u64 = 4;

fn pair(seed: u8) -> KeyPair {
    KeyPair::from_private(&URL_SAFE_NO_PAD.encode([seed; 32])).unwrap()
}

fn put(id: &str, soul: &str, fields: &[(&str, Json)]) -> String {
    put_at(id, soul, fields, START_WALL_MS)
}

/// A put at `state` (the operator's lists change by HAM: a later state wins).
fn put_at(id: &str, soul: &str, fields: &[(&str, Json)], state: f64) -> String {
    put_frame(id, soul, fields, state)
}

fn get(id: &str, soul: &str) -> String {
    json!({"#": id, "get": {"#": soul}}).to_string()
}

fn signed(owner: &KeyPair, soul: &str, key: &str, value: Json) -> Json {
    json!(SignedValue::sign(owner, soul, key, &value, START_WALL_MS))
}

/// `owner`'s put of `key` = `value` into its own space.
fn own_put(id: &str, owner: &KeyPair, key: &str, value: Json) -> String {
    let soul = format!("~{}", owner.public().as_str());
    put(id, &soul, &[(key, signed(owner, &soul, key, value))])
}

fn relay(writes: WritePolicy) -> Harness {
    let mut h = Harness::new(Config {
        seed: 11,
        writes,
        ..Config::default()
    });
    for conn in [CLIENT, WATCHER, ADMIN, LINK] {
        h.connect(conn);
    }
    h.authenticate(ADMIN, Principal::Admin);
    h.authenticate(LINK, Principal::Peer);
    for conn in [CLIENT, WATCHER, ADMIN, LINK] {
        h.take(conn);
    }
    h
}

fn reply(h: &mut Harness, conn: u64, id: &str) -> Json {
    let replies = h.replies_to(conn, id);
    assert_eq!(replies.len(), 1, "{replies:?}");
    replies[0].clone()
}

fn refused_by(h: &Harness, rule: Rule) -> u64 {
    h.peer.stats().refusals.of(rule)
}

#[test]
fn a_signed_only_relay_refuses_public_writes_from_clients_and_links_and_takes_signed_ones() {
    let mut h = relay(WritePolicy {
        signed_only: true,
        ..WritePolicy::default()
    });
    for (conn, id) in [(CLIENT, "p1"), (LINK, "p2")] {
        h.frame(conn, &put(id, "chat", &[("text", json!("spam"))]));
        let err = reply(&mut h, conn, id);
        assert!(
            err["err"].as_str().unwrap().contains("signed writes only"),
            "{err}"
        );
    }
    assert!(h.store.nodes.is_empty());
    assert_eq!(refused_by(&h, Rule::SignedOnly), 2);
    assert!(h.events.iter().any(|e| matches!(
        e,
        Event::RuleRefused { rule: Rule::SignedOnly, subject, .. } if subject == "chat"
    )));
    // A user's own signed writes, an alias list and content-addressed data are taken.
    let alice = pair(1);
    h.frame(CLIENT, &own_put("s1", &alice, "name", json!("Alice")));
    assert_eq!(reply(&mut h, CLIENT, "s1")["ok"], true);
    let alias = "~@alice";
    let link = format!("~{}", alice.public().as_str());
    h.frame(CLIENT, &put("s2", alias, &[(&link, json!({"#": link}))]));
    assert_eq!(reply(&mut h, CLIENT, "s2")["ok"], true);
    let text = "hello";
    let hash = fibergun::sea::rules::content_hash(text);
    h.frame(CLIENT, &put("s3", "posts#", &[(&hash, json!(text))]));
    assert_eq!(reply(&mut h, CLIENT, "s3")["ok"], true);
}

#[test]
fn a_key_past_its_rate_is_refused_while_another_key_writes_on() {
    let mut h = relay(WritePolicy {
        writes_per_key_per_sec: 5.0,
        ..WritePolicy::default()
    });
    let (flood, quiet) = (pair(1), pair(2));
    for i in 0..5 {
        let id = format!("f{i}");
        h.frame(CLIENT, &own_put(&id, &flood, &format!("k{i}"), json!(i)));
        assert_eq!(reply(&mut h, CLIENT, &id)["ok"], true);
    }
    h.frame(CLIENT, &own_put("f5", &flood, "k5", json!(5)));
    let err = reply(&mut h, CLIENT, "f5");
    assert!(
        err["err"].as_str().unwrap().contains("Too many writes"),
        "{err}"
    );
    // Over a relay link too: the bucket is the key's, whatever the connection.
    h.frame(LINK, &own_put("f6", &flood, "k6", json!(6)));
    assert!(reply(&mut h, LINK, "f6")["err"].is_string());
    // Forgeries naming the quiet key are refused by SEA and spend none of its rate.
    let quiet_soul = format!("~{}", quiet.public().as_str());
    for i in 0..10 {
        let id = format!("x{i}");
        let forged = signed(&flood, &quiet_soul, "k", json!(i));
        h.frame(CLIENT, &put(&id, &quiet_soul, &[("k", forged)]));
        assert_eq!(reply(&mut h, CLIENT, &id)["err"], "Unverified data.");
    }
    h.frame(WATCHER, &own_put("q1", &quiet, "k", json!(1)));
    assert_eq!(reply(&mut h, WATCHER, "q1")["ok"], true);
    assert_eq!(refused_by(&h, Rule::Rate), 2);
    assert_eq!(refused_by(&h, Rule::Sea), 10);
    // A second later the flooding key may write again.
    h.advance(1_000);
    h.frame(CLIENT, &own_put("f7", &flood, "k7", json!(7)));
    assert_eq!(reply(&mut h, CLIENT, "f7")["ok"], true);
}

#[test]
fn a_user_past_its_quota_is_refused_while_other_users_and_the_public_space_go_on() {
    let mut h = relay(WritePolicy {
        user_space_bytes: 100,
        shared_space_bytes: 50,
        ..WritePolicy::default()
    });
    let (big, small) = (pair(1), pair(2));
    let mut refused = None;
    for i in 0..20 {
        let id = format!("b{i}");
        h.frame(
            CLIENT,
            &own_put(&id, &big, &format!("k{i}"), json!("x".repeat(40))),
        );
        let answer = reply(&mut h, CLIENT, &id);
        if let Some(err) = answer["err"].as_str() {
            refused = Some((i, err.to_owned()));
            break;
        }
    }
    let (at, err) = refused.expect("the quota never bit");
    assert!(err.contains("its quota is 100"), "{err}");
    // The space passed its quota with the last write taken; nothing after it is.
    assert!((1..=3).contains(&at), "refused at write {at}");
    h.frame(CLIENT, &own_put("s1", &small, "k", json!("fine")));
    assert_eq!(reply(&mut h, CLIENT, "s1")["ok"], true);
    // The public space has a quota of its own.
    let mut public_refused = false;
    for i in 0..10 {
        let id = format!("p{i}");
        h.frame(
            CLIENT,
            &put(&id, &format!("pub{i}"), &[("v", json!("y".repeat(20)))]),
        );
        if reply(&mut h, CLIENT, &id)["err"].is_string() {
            public_refused = true;
            break;
        }
    }
    assert!(public_refused);
    assert_eq!(refused_by(&h, Rule::UserQuota), 1);
    assert_eq!(refused_by(&h, Rule::SharedQuota), 1);
}

#[test]
fn a_banned_key_writes_nothing_and_its_space_is_neither_served_nor_pushed_until_the_ban_is_lifted()
{
    let mut h = relay(WritePolicy::default());
    let alice = pair(1);
    let key = alice.public().as_str().to_owned();
    let soul = format!("~{key}");
    h.frame(CLIENT, &own_put("a1", &alice, "name", json!("Alice")));
    assert_eq!(reply(&mut h, CLIENT, "a1")["ok"], true);
    h.frame(WATCHER, &get("w1", &soul));
    h.take(WATCHER);
    // The operator bans the key.
    h.frame(
        ADMIN,
        &put_at("ban", BANS, &[(&key, json!(true))], START_WALL_MS - 10.0),
    );
    assert_eq!(reply(&mut h, ADMIN, "ban")["ok"], true);
    assert!(h.peer.moderation().is_banned(&key));
    h.frame(CLIENT, &own_put("a2", &alice, "name", json!("Again")));
    let err = reply(&mut h, CLIENT, "a2");
    assert!(err["err"].as_str().unwrap().contains("is banned"), "{err}");
    h.frame(WATCHER, &get("w2", &soul));
    let err = reply(&mut h, WATCHER, "w2");
    assert!(err["put"].is_null() && err["err"].is_string(), "{err}");
    assert_eq!(refused_by(&h, Rule::Banned), 2);
    // Lifted: served again, nothing lost.
    h.frame(
        ADMIN,
        &put_at("lift", BANS, &[(&key, Json::Null)], START_WALL_MS - 5.0),
    );
    assert_eq!(reply(&mut h, ADMIN, "lift")["ok"], true);
    h.frame(WATCHER, &get("w3", &soul));
    assert!(reply(&mut h, WATCHER, "w3")["put"][&soul]["name"].is_string());
}

#[test]
fn a_taken_down_soul_is_kept_but_neither_served_written_nor_relayed_and_clients_cannot_reach_the_lists(
) {
    let mut h = relay(WritePolicy::default());
    h.frame(CLIENT, &put("p1", "bad", &[("v", json!("illegal"))]));
    assert_eq!(reply(&mut h, CLIENT, "p1")["ok"], true);
    // The link subscribes to everything, as a relay link does.
    h.frame(
        LINK,
        &json!({"#": "all", "get": {"#": {"*": ""}}}).to_string(),
    );
    h.take(LINK);
    h.frame(
        ADMIN,
        &put_at(
            "td",
            TAKEDOWNS,
            &[("bad", json!(true))],
            START_WALL_MS - 10.0,
        ),
    );
    assert_eq!(reply(&mut h, ADMIN, "td")["ok"], true);
    h.frame(WATCHER, &get("g1", "bad"));
    let err = reply(&mut h, WATCHER, "g1");
    assert!(err["err"].as_str().unwrap().contains("taken down"), "{err}");
    h.frame(CLIENT, &put("p2", "bad", &[("v", json!("again"))]));
    assert!(reply(&mut h, CLIENT, "p2")["err"].is_string());
    // The admin changes it: nothing reaches the link.
    h.frame(ADMIN, &put("p3", "bad", &[("v", Json::Null)]));
    assert_eq!(reply(&mut h, ADMIN, "p3")["ok"], true);
    assert!(h.take(LINK).iter().all(|m| m["put"].get("bad").is_none()));
    // Kept: restored, it is served.
    h.frame(
        ADMIN,
        &put_at("rs", TAKEDOWNS, &[("bad", Json::Null)], START_WALL_MS - 5.0),
    );
    assert_eq!(reply(&mut h, ADMIN, "rs")["ok"], true);
    h.frame(WATCHER, &get("g2", "bad"));
    assert!(reply(&mut h, WATCHER, "g2")["put"]["bad"].is_object());
    // The lists are the operator's alone.
    h.frame(CLIENT, &get("g3", BANS));
    assert!(reply(&mut h, CLIENT, "g3")["err"].is_string());
    h.frame(LINK, &put("p4", BANS, &[("x", json!(true))]));
    assert!(reply(&mut h, LINK, "p4")["err"].is_string());
    assert_eq!(refused_by(&h, Rule::Reserved), 2);
    assert_eq!(refused_by(&h, Rule::TakenDown), 2);
}

#[test]
fn the_lists_are_restored_from_the_store_at_start() {
    let mut h = relay(WritePolicy::default());
    h.frame(ADMIN, &put("td", TAKEDOWNS, &[("gone", json!(true))]));
    assert_eq!(reply(&mut h, ADMIN, "td")["ok"], true);
    let mut store = h.store.clone();
    let lists = fibergun::moderation::Moderation::from_results(fibergun::Store::apply(
        &mut store,
        fibergun::moderation::Moderation::load_ops(),
    ))
    .unwrap();
    assert_eq!(lists.taken_down().collect::<Vec<_>>(), vec!["gone"]);
}

#[test]
fn a_ban_made_through_another_relay_on_a_shared_store_holds_here_after_a_feed_gap_too() {
    use fibergun::{Field, Key, Soul, State, Value};
    let mut h = relay(WritePolicy::default());
    let alice = pair(1);
    let key = alice.public().as_str().to_owned();
    let ban = |value: Value, state: f64| {
        let field = Field {
            value,
            state: State::new(state).unwrap(),
        };
        (Key::new(&key).unwrap(), field)
    };
    // Another relay commits the ban; the feed tells of it.
    let banned = ban(Value::Bool(true), START_WALL_MS - 10.0);
    let list = Soul::new(BANS).unwrap();
    h.store
        .nodes
        .entry(list.clone())
        .or_default()
        .insert(banned.0.clone(), banned.1.clone());
    h.store_changed(BANS, vec![banned]);
    assert!(h.peer.moderation().is_banned(&key));
    h.frame(CLIENT, &own_put("a1", &alice, "name", json!("Alice")));
    assert!(reply(&mut h, CLIENT, "a1")["err"]
        .as_str()
        .unwrap()
        .contains("banned"));
    // It lifts the ban while this relay's feed is away: the gap's re-read finds the lift.
    let lifted = ban(Value::Null, START_WALL_MS - 5.0);
    h.store
        .nodes
        .entry(list)
        .or_default()
        .insert(lifted.0, lifted.1);
    assert!(h.peer.moderation().is_banned(&key));
    h.feed_gap();
    assert!(!h.peer.moderation().is_banned(&key));
    h.frame(CLIENT, &own_put("a2", &alice, "name", json!("Alice")));
    assert_eq!(reply(&mut h, CLIENT, "a2")["ok"], true);
}
