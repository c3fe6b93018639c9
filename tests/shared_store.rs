//! A peer on a store shared with other writers (relays on one database): changes they commit
//! reach its subscribers through the store's change feed; its cache never keeps a node older
//! than a change it was told of; after a gap in the feed, subscribed nodes are read again.

use fibergun::testing::{Harness, START_WALL_MS};
use fibergun::{Field, Key, Soul, State, Store, Value};
use serde_json::{json, Value as Json};

const CLIENT: u64 = 1;
const OTHER: u64 = 2;

fn field(value: &str, state: f64) -> (Key, Field) {
    let field = Field {
        value: Value::String(value.into()),
        state: State::new(state).unwrap(),
    };
    (Key::new("x").unwrap(), field)
}

/// What another relay commits to the shared database.
fn commit_elsewhere(h: &mut Harness, soul: &str, value: &str, state: f64) {
    let (key, f) = field(value, state);
    h.store
        .nodes
        .entry(Soul::new(soul).unwrap())
        .or_default()
        .insert(key, f);
}

fn relay() -> Harness {
    let mut h = Harness::with_seed(3);
    h.connect(CLIENT);
    h.connect(OTHER);
    h.take(CLIENT);
    h.take(OTHER);
    h
}

/// `x` of `soul` as a GET from OTHER answers it.
fn read_x(h: &mut Harness, id: &str, soul: &str) -> Json {
    h.frame(OTHER, &json!({"#": id, "get": {"#": soul}}).to_string());
    let replies = h.replies_to(OTHER, id);
    replies[0]["put"][soul]["x"].clone()
}

fn pushed_x(h: &mut Harness, conn: u64) -> Vec<Json> {
    h.take(conn)
        .into_iter()
        .filter(|m| m.get("@").is_none())
        .filter_map(|m| {
            m["put"]
                .as_object()
                .and_then(|g| g.values().next().cloned())
        })
        .map(|node| node["x"].clone())
        .collect()
}

#[test]
fn a_change_committed_elsewhere_reaches_subscribers_and_reads() {
    let mut h = relay();
    commit_elsewhere(&mut h, "a", "one", START_WALL_MS - 10.0);
    assert_eq!(read_x(&mut h, "g1", "a"), json!("one"));
    h.frame(CLIENT, &json!({"#": "sub", "get": {"#": "a"}}).to_string());
    h.take(CLIENT);
    commit_elsewhere(&mut h, "a", "two", START_WALL_MS - 5.0);
    h.store_changed("a", vec![field("two", START_WALL_MS - 5.0)]);
    assert_eq!(pushed_x(&mut h, CLIENT), vec![json!("two")]);
    // The cached node was brought up to date.
    assert_eq!(read_x(&mut h, "g2", "a"), json!("two"));
    // A change older than what is held is no news: nothing is pushed.
    h.store_changed("a", vec![field("older", START_WALL_MS - 8.0)]);
    assert!(pushed_x(&mut h, CLIENT).is_empty());
    assert_eq!(read_x(&mut h, "g3", "a"), json!("two"));
}

#[test]
fn a_read_issued_before_a_change_elsewhere_is_answered_but_not_cached() {
    let mut h = relay();
    commit_elsewhere(&mut h, "a", "old", START_WALL_MS - 10.0);
    // The read goes to the database and runs there before the other relay's commit; its answer
    // comes back after the feed reported that commit.
    h.auto_store = false;
    h.frame(OTHER, &json!({"#": "g1", "get": {"#": "a"}}).to_string());
    h.store_changed("a", vec![field("new", START_WALL_MS - 5.0)]);
    h.commit();
    h.auto_store = true;
    let replies = h.replies_to(OTHER, "g1");
    assert_eq!(replies[0]["put"]["a"]["x"], "old");
    commit_elsewhere(&mut h, "a", "new", START_WALL_MS - 5.0);
    // Had the old answer been cached, this would be "old".
    assert_eq!(read_x(&mut h, "g2", "a"), json!("new"));
}

#[test]
fn after_a_gap_in_the_feed_subscribed_nodes_are_read_again_and_pushed() {
    let mut h = relay();
    for soul in ["a", "b"] {
        commit_elsewhere(&mut h, soul, "one", START_WALL_MS - 10.0);
        h.frame(CLIENT, &json!({"#": soul, "get": {"#": soul}}).to_string());
    }
    h.take(CLIENT);
    assert_eq!(read_x(&mut h, "g1", "a"), json!("one"));
    // Changes the feed never reported.
    commit_elsewhere(&mut h, "a", "two", START_WALL_MS - 5.0);
    commit_elsewhere(&mut h, "b", "two", START_WALL_MS - 5.0);
    h.feed_gap();
    assert_eq!(pushed_x(&mut h, CLIENT), vec![json!("two"), json!("two")]);
    assert_eq!(read_x(&mut h, "g2", "a"), json!("two"));
    assert_eq!(h.peer.stats().feed_gaps, 1);
}

#[test]
fn this_peer_s_own_merge_answered_after_a_newer_change_elsewhere_does_not_roll_the_cache_back() {
    let mut h = relay();
    commit_elsewhere(&mut h, "a", "first", START_WALL_MS - 20.0);
    assert_eq!(read_x(&mut h, "g1", "a"), json!("first"));
    // This peer's write commits first; before its result is back, another relay commits a
    // newer one and the feed reports it.
    h.auto_store = false;
    let put = json!({"#": "p1", "put": {"a": {"_": {"#": "a", ">": {"x": START_WALL_MS - 10.0}}, "x": "mine"}}});
    h.frame(CLIENT, &put.to_string());
    let mine = std::mem::take(&mut h.held);
    let results = h.store.apply(mine.clone());
    commit_elsewhere(&mut h, "a", "newer", START_WALL_MS - 5.0);
    h.store_changed("a", vec![field("newer", START_WALL_MS - 5.0)]);
    for (op, result) in mine.iter().zip(results) {
        h.store_done(op.id(), result);
    }
    h.auto_store = true;
    assert_eq!(read_x(&mut h, "g2", "a"), json!("newer"));
}
