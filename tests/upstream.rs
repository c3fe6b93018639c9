//! Upstreams in the core: an edge peer syncs with a relay on demand. Its local writes are
//! acknowledged locally, kept in the outbox and sent to the relay until it acknowledges them
//! (surviving a restart); what its clients read is asked of the relay, stored and kept live; what
//! nobody here asked for is not held. Two harnesses, wired frame by frame.

use fibergun::testing::{Harness, START_WALL_MS};
use fibergun::{Config, Event, Limits, RemoteId, UpstreamStatus};
use serde_json::{json, Value as Json};

const UP: &str = "ws://relay.test/gun";
const R: RemoteId = RemoteId(0);
/// The edge's connection to the relay, and the relay's to the edge.
const EDGE_SIDE: u64 = 1;
const RELAY_SIDE: u64 = 10;
/// A client of the edge, and one of the relay.
const EDGE_CLIENT: u64 = 2;
const RELAY_CLIENT: u64 = 20;

/// A put; states at or before the harnesses' clock (`START_WALL_MS`), which writes ahead of it
/// would wait for.
fn put(id: &str, soul: &str, key: &str, value: Json, state: f64) -> String {
    json!({"#": id, "put": {soul: {"_": {"#": soul, ">": {key: state}}, key: value}}}).to_string()
}

fn get(id: &str, soul: &str) -> String {
    json!({"#": id, "get": {"#": soul}}).to_string()
}

fn edge_config() -> Config {
    Config {
        seed: 5,
        pid: Some("edge".into()),
        upstreams: vec![UP.into()],
        ..Config::default()
    }
}

fn edge() -> Harness {
    Harness::new(edge_config())
}

fn relay() -> Harness {
    let mut relay = Harness::new(Config {
        seed: 6,
        pid: Some("relay".into()),
        ..Config::default()
    });
    relay.connect(RELAY_CLIENT);
    relay.take(RELAY_CLIENT);
    relay
}

/// Connects the edge to the relay (the edge dialled it).
fn connect(edge: &mut Harness, relay: &mut Harness) {
    edge.dialled(R, EDGE_SIDE);
    relay.connect(RELAY_SIDE);
    carry(edge, relay);
}

/// Carries every message between the edge and the relay until both are quiet; `drop_acks`
/// leaves out the relay's acknowledgements (a relay that does not send them).
fn carry_filtered(edge: &mut Harness, relay: &mut Harness, drop_acks: bool) {
    for _ in 0..100 {
        let up = edge.take(EDGE_SIDE);
        let down: Vec<Json> = relay
            .take(RELAY_SIDE)
            .into_iter()
            .filter(|m| !(drop_acks && m.get("ok").is_some()))
            .collect();
        if up.is_empty() && down.is_empty() {
            return;
        }
        for m in up {
            relay.frame(RELAY_SIDE, &m.to_string());
        }
        for m in down {
            edge.frame(EDGE_SIDE, &m.to_string());
        }
    }
    panic!("the edge and the relay never went quiet");
}

fn carry(edge: &mut Harness, relay: &mut Harness) {
    carry_filtered(edge, relay, false);
}

fn status(edge: &Harness) -> UpstreamStatus {
    edge.peer.upstreams()[0].clone()
}

fn value(h: &Harness, soul: &str, key: &str) -> Option<Json> {
    let node = h.store.nodes.iter().find(|(s, _)| s.as_str() == soul)?.1;
    let (_, field) = node.iter().find(|(k, _)| k.as_str() == key)?;
    Some(field.value.to_json())
}

#[test]
fn a_local_write_is_acknowledged_here_sent_up_and_leaves_the_outbox_when_acknowledged() {
    let (mut edge, mut relay) = (edge(), relay());
    connect(&mut edge, &mut relay);
    edge.connect(EDGE_CLIENT);
    edge.frame(
        EDGE_CLIENT,
        &put("w1", "doc", "x", json!("hi"), START_WALL_MS),
    );
    assert_eq!(edge.replies_to(EDGE_CLIENT, "w1")[0]["ok"], true);
    assert_eq!(status(&edge).waiting, Some(1), "sent, not yet acknowledged");
    carry(&mut edge, &mut relay);
    assert_eq!(value(&relay, "doc", "x"), Some(json!("hi")));
    assert_eq!(status(&edge).waiting, Some(0));
    assert!(
        edge.store.outbox.entries.is_empty(),
        "trimmed once acknowledged"
    );
    assert_eq!(edge.store.outbox.marks.get(UP), Some(&1));
}

#[test]
fn writes_made_offline_are_kept_through_a_restart_and_sent_in_order_when_the_upstream_is_back() {
    let mut edge = edge();
    edge.dial_failed(R);
    edge.connect(EDGE_CLIENT);
    for (i, v) in ["a", "b", "c"].iter().enumerate() {
        let id = format!("w{i}");
        edge.frame(
            EDGE_CLIENT,
            &put(&id, "doc", "x", json!(v), START_WALL_MS - 100.0 + i as f64),
        );
        assert_eq!(
            edge.replies_to(EDGE_CLIENT, &id)[0]["ok"],
            true,
            "offline, acked here"
        );
    }
    assert_eq!(status(&edge).waiting, Some(3));
    assert!(!status(&edge).connected);
    // A restart on what was committed: the outbox is still there.
    let store = std::mem::take(&mut edge.store);
    let mut edge = Harness::with_store(edge_config(), store);
    assert_eq!(edge.store.outbox.entries.len(), 3);
    let mut relay = relay();
    connect(&mut edge, &mut relay);
    assert_eq!(
        value(&relay, "doc", "x"),
        Some(json!("c")),
        "the last write wins"
    );
    assert_eq!(status(&edge).waiting, Some(0));
    assert!(edge.store.outbox.entries.is_empty());
}

#[test]
fn a_read_is_asked_upstream_answered_stored_and_kept_live() {
    let (mut edge, mut relay) = (edge(), relay());
    relay.frame(
        RELAY_CLIENT,
        &put("r1", "far", "x", json!(1), START_WALL_MS - 100.0),
    );
    connect(&mut edge, &mut relay);
    edge.connect(EDGE_CLIENT);
    edge.take(EDGE_CLIENT);
    edge.frame(EDGE_CLIENT, &get("g1", "far"));
    // Nothing here: the "not found" waits for the upstream's answer.
    assert!(edge.replies_to(EDGE_CLIENT, "g1").is_empty());
    carry(&mut edge, &mut relay);
    let answer = edge.replies_to(EDGE_CLIENT, "g1");
    assert!(
        answer.iter().any(|m| m["put"]["far"]["x"] == 1),
        "the upstream's answer reaches the asker: {answer:?}"
    );
    assert_eq!(value(&edge, "far", "x"), Some(json!(1)), "and is stored");
    // A change made at the relay is pushed to the edge and on to its client.
    relay.frame(
        RELAY_CLIENT,
        &put("r2", "far", "x", json!(2), START_WALL_MS - 50.0),
    );
    carry(&mut edge, &mut relay);
    let pushed = edge.take(EDGE_CLIENT);
    assert!(
        pushed.iter().any(|m| m["put"]["far"]["x"] == 2),
        "{pushed:?}"
    );
    assert_eq!(value(&edge, "far", "x"), Some(json!(2)));
}

#[test]
fn a_read_of_nothing_anywhere_is_answered_not_found_by_the_upstream_or_after_the_wait() {
    let (mut edge, mut relay) = (edge(), relay());
    connect(&mut edge, &mut relay);
    edge.connect(EDGE_CLIENT);
    edge.take(EDGE_CLIENT);
    edge.frame(EDGE_CLIENT, &get("g1", "nowhere"));
    carry(&mut edge, &mut relay);
    let answer = edge.replies_to(EDGE_CLIENT, "g1");
    assert_eq!(answer.len(), 1, "one not-found, the upstream's: {answer:?}");
    assert!(answer[0].get("put").is_none());
    // An upstream that does not answer: the local not-found comes after the wait.
    edge.frame(EDGE_CLIENT, &get("g2", "nowhere-either"));
    edge.take(EDGE_SIDE);
    assert!(edge.replies_to(EDGE_CLIENT, "g2").is_empty());
    edge.advance(Limits::default().upstream_wait_ms + 1);
    assert_eq!(edge.replies_to(EDGE_CLIENT, "g2").len(), 1);
    // Offline, the local answer is immediate.
    edge.disconnect(EDGE_SIDE);
    edge.frame(EDGE_CLIENT, &get("g3", "nowhere-at-all"));
    assert_eq!(edge.replies_to(EDGE_CLIENT, "g3").len(), 1);
}

#[test]
fn an_upstream_s_puts_for_souls_nobody_here_asked_for_are_not_held() {
    let (mut edge, mut relay) = (edge(), relay());
    connect(&mut edge, &mut relay);
    // The relay (a GUN JS mesh, say) sends what nobody here asked for.
    edge.frame(
        EDGE_SIDE,
        &put("x1", "unasked", "x", json!(1), START_WALL_MS - 100.0),
    );
    assert!(value(&edge, "unasked", "x").is_none());
    // Once a client here reads it, it is held.
    edge.connect(EDGE_CLIENT);
    edge.frame(EDGE_CLIENT, &get("g1", "unasked"));
    edge.frame(
        EDGE_SIDE,
        &put("x2", "unasked", "x", json!(2), START_WALL_MS - 50.0),
    );
    assert_eq!(value(&edge, "unasked", "x"), Some(json!(2)));
    // And the upstream's writes do not go back into the outbox.
    assert_eq!(status(&edge).waiting, Some(0));
}

#[test]
fn a_reconnected_upstream_is_asked_again_what_was_read_here_and_misses_no_change() {
    let (mut edge, mut relay) = (edge(), relay());
    relay.frame(
        RELAY_CLIENT,
        &put("r1", "watched", "x", json!(1), START_WALL_MS - 100.0),
    );
    connect(&mut edge, &mut relay);
    edge.connect(EDGE_CLIENT);
    edge.frame(EDGE_CLIENT, &get("g1", "watched"));
    carry(&mut edge, &mut relay);
    edge.take(EDGE_CLIENT);
    // Apart: a change at the relay the edge does not see.
    edge.disconnect(EDGE_SIDE);
    relay.disconnect(RELAY_SIDE);
    relay.frame(
        RELAY_CLIENT,
        &put("r2", "watched", "x", json!(2), START_WALL_MS - 50.0),
    );
    // Back: the edge asks again, and its client sees the change.
    let wait = Limits::default().reconnect_max_ms;
    edge.advance(wait);
    connect(&mut edge, &mut relay);
    assert_eq!(value(&edge, "watched", "x"), Some(json!(2)));
    let pushed = edge.take(EDGE_CLIENT);
    assert!(
        pushed.iter().any(|m| m["put"]["watched"]["x"] == 2),
        "{pushed:?}"
    );
}

#[test]
fn an_entry_never_acknowledged_is_read_back_and_counts_as_done_when_the_upstream_holds_it() {
    let (mut edge, mut relay) = (edge(), relay());
    connect(&mut edge, &mut relay);
    edge.connect(EDGE_CLIENT);
    edge.frame(
        EDGE_CLIENT,
        &put("w1", "doc", "x", json!("hi"), START_WALL_MS),
    );
    // A relay that applies the write but never acknowledges it (GUN JS, for a put that changes
    // nothing there).
    carry_filtered(&mut edge, &mut relay, true);
    assert_eq!(value(&relay, "doc", "x"), Some(json!("hi")));
    assert_eq!(status(&edge).waiting, Some(1));
    // After the wait the edge reads the node back, sees the write there, and is done with it.
    edge.advance(Limits::default().upstream_ack_ms + 1);
    let asked = edge.take(EDGE_SIDE);
    assert!(asked.iter().any(|m| m["get"]["#"] == "doc"), "{asked:?}");
    for m in asked {
        relay.frame(RELAY_SIDE, &m.to_string());
    }
    carry_filtered(&mut edge, &mut relay, true);
    assert_eq!(status(&edge).waiting, Some(0));
    assert!(edge.store.outbox.entries.is_empty());
}

#[test]
fn an_entry_read_back_and_not_found_is_sent_again() {
    let (mut edge, mut relay) = (edge(), relay());
    connect(&mut edge, &mut relay);
    edge.connect(EDGE_CLIENT);
    edge.frame(
        EDGE_CLIENT,
        &put("w1", "doc", "x", json!("hi"), START_WALL_MS),
    );
    // The put is lost on its way.
    edge.take(EDGE_SIDE);
    edge.advance(Limits::default().upstream_ack_ms + 1);
    // The read-back finds nothing there: the entry is sent again, and then acknowledged.
    carry(&mut edge, &mut relay);
    assert_eq!(value(&relay, "doc", "x"), Some(json!("hi")));
    assert_eq!(status(&edge).waiting, Some(0));
}

#[test]
fn an_entry_read_back_with_a_losing_value_at_the_same_state_is_sent_again() {
    let (mut edge, mut relay) = (edge(), relay());
    connect(&mut edge, &mut relay);
    // The relay holds "a" at the state the edge writes 2 at; 2 wins the tie (its JSON text is
    // greater), so the relay holding "a" does not hold the edge's write.
    relay.frame(
        RELAY_CLIENT,
        &put("r1", "doc", "x", json!("a"), START_WALL_MS),
    );
    relay.take(RELAY_CLIENT);
    edge.connect(EDGE_CLIENT);
    edge.frame(EDGE_CLIENT, &put("w1", "doc", "x", json!(2), START_WALL_MS));
    // The put is lost on its way; the read-back sees "a" at the same state.
    edge.take(EDGE_SIDE);
    edge.advance(Limits::default().upstream_ack_ms + 1);
    carry(&mut edge, &mut relay);
    assert_eq!(value(&relay, "doc", "x"), Some(json!(2)));
    assert_eq!(status(&edge).waiting, Some(0));
}

#[test]
fn a_local_write_ahead_of_the_clock_is_queued_for_the_upstream_when_it_is_merged() {
    let (mut edge, mut relay) = (edge(), relay());
    connect(&mut edge, &mut relay);
    edge.connect(EDGE_CLIENT);
    edge.take(EDGE_CLIENT);
    edge.frame(
        EDGE_CLIENT,
        &put("w1", "doc", "x", json!("later"), START_WALL_MS + 1000.0),
    );
    // Held in memory only: nothing is stored, queued or acknowledged yet.
    carry(&mut edge, &mut relay);
    assert!(edge.store.outbox.entries.is_empty());
    assert_eq!(value(&relay, "doc", "x"), None);
    assert!(edge.take(EDGE_CLIENT).is_empty());
    // At its time it is merged and queued together, acknowledged, and sent up.
    edge.advance(1001);
    relay.advance(1001);
    carry(&mut edge, &mut relay);
    assert_eq!(value(&edge, "doc", "x"), Some(json!("later")));
    assert_eq!(value(&relay, "doc", "x"), Some(json!("later")));
    let replies = edge.take(EDGE_CLIENT);
    assert!(
        replies.iter().any(|m| m["@"] == "w1" && m["ok"] == true),
        "{replies:?}"
    );
    assert_eq!(status(&edge).waiting, Some(0));
}

#[test]
fn an_upstream_refusal_is_told_and_the_entry_is_not_sent_again() {
    let (mut edge, mut relay) = (edge(), relay());
    connect(&mut edge, &mut relay);
    edge.connect(EDGE_CLIENT);
    edge.frame(
        EDGE_CLIENT,
        &put("w1", "doc", "x", json!("hi"), START_WALL_MS),
    );
    let sent = edge.take(EDGE_SIDE);
    let put_id = sent
        .iter()
        .find(|m| m.get("put").is_some())
        .and_then(|m| m["#"].as_str())
        .expect("the entry went up")
        .to_owned();
    let refusal = json!({"#": "e1", "@": put_id, "err": "Unverified data."}).to_string();
    edge.frame(EDGE_SIDE, &refusal);
    assert!(edge.events.iter().any(
        |e| matches!(e, Event::UpstreamRefused { reason, .. } if reason == "Unverified data.")
    ));
    assert_eq!(status(&edge).waiting, Some(0));
}

#[test]
fn every_upstream_gets_every_write_and_the_outbox_keeps_it_until_the_last_has_it() {
    let mut edge = Harness::new(Config {
        upstreams: vec![UP.into(), "ws://second.test/gun".into()],
        ..edge_config()
    });
    let mut relay = relay();
    connect(&mut edge, &mut relay);
    edge.dial_failed(RemoteId(1));
    edge.connect(EDGE_CLIENT);
    edge.frame(
        EDGE_CLIENT,
        &put("w1", "doc", "x", json!("hi"), START_WALL_MS),
    );
    carry(&mut edge, &mut relay);
    let statuses = edge.peer.upstreams();
    assert_eq!(
        (statuses[0].waiting, statuses[1].waiting),
        (Some(0), Some(1))
    );
    assert_eq!(
        edge.store.outbox.entries.len(),
        1,
        "the second has not got it"
    );
    // The second upstream connects (on connection 3) and acknowledges.
    let mut second = relay_named("second");
    edge.advance(Limits::default().reconnect_max_ms);
    edge.dialled(RemoteId(1), 3);
    second.connect(RELAY_SIDE);
    for _ in 0..10 {
        for m in edge.take(3) {
            second.frame(RELAY_SIDE, &m.to_string());
        }
        for m in second.take(RELAY_SIDE) {
            edge.frame(3, &m.to_string());
        }
    }
    assert_eq!(value(&second, "doc", "x"), Some(json!("hi")));
    assert_eq!(edge.peer.upstreams()[1].waiting, Some(0));
    assert!(edge.store.outbox.entries.is_empty());
}

fn relay_named(pid: &str) -> Harness {
    Harness::new(Config {
        seed: 8,
        pid: Some(pid.into()),
        ..Config::default()
    })
}

#[test]
fn a_local_write_whose_outbox_append_fails_is_refused_whole() {
    // A store that cannot take the append (full, or keeping no outbox): the write is refused
    // with the store's reason, not acknowledged and lost.
    let mut edge = edge();
    edge.connect(EDGE_CLIENT);
    edge.auto_store = false;
    edge.frame(
        EDGE_CLIENT,
        &put("w1", "doc", "x", json!("hi"), START_WALL_MS),
    );
    assert!(edge
        .held
        .iter()
        .any(|op| matches!(op, fibergun::StoreOp::OutboxAppend { .. })));
    edge.fail_held("the storage quota is used up");
    let reply = edge.replies_to(EDGE_CLIENT, "w1");
    assert!(
        reply[0]["err"]
            .as_str()
            .is_some_and(|e| e.contains("quota")),
        "{reply:?}"
    );
    assert_eq!(status(&edge).waiting, Some(0));
}

#[test]
fn a_read_made_while_the_upstream_is_dialled_waits_for_the_dial() {
    // Connected once the dial completes: the GET goes up with its own id, the answer reaches
    // the asker.
    let (mut edge, mut relay) = (edge(), relay());
    relay.frame(
        RELAY_CLIENT,
        &put("r1", "far", "x", json!(1), START_WALL_MS - 100.0),
    );
    edge.connect(EDGE_CLIENT);
    edge.take(EDGE_CLIENT);
    edge.frame(EDGE_CLIENT, &get("g1", "far"));
    assert!(
        edge.replies_to(EDGE_CLIENT, "g1").is_empty(),
        "waits for the dial"
    );
    connect(&mut edge, &mut relay);
    let answer = edge.replies_to(EDGE_CLIENT, "g1");
    assert!(
        answer.iter().any(|m| m["put"]["far"]["x"] == 1),
        "{answer:?}"
    );
    // A dial that fails answers what waits for it at once.
    let mut edge = self::edge();
    edge.connect(EDGE_CLIENT);
    edge.take(EDGE_CLIENT);
    edge.frame(EDGE_CLIENT, &get("g2", "far"));
    assert!(edge.replies_to(EDGE_CLIENT, "g2").is_empty());
    edge.dial_failed(R);
    assert_eq!(
        edge.replies_to(EDGE_CLIENT, "g2").len(),
        1,
        "not found, here"
    );
}

#[test]
fn a_soul_written_here_is_kept_up_to_date_by_the_upstream() {
    let (mut edge, mut relay) = (edge(), relay());
    connect(&mut edge, &mut relay);
    edge.connect(EDGE_CLIENT);
    edge.frame(
        EDGE_CLIENT,
        &put("w1", "mine", "x", json!(1), START_WALL_MS - 100.0),
    );
    carry(&mut edge, &mut relay);
    // Another client of the relay writes to the same node: the edge hears of it.
    relay.frame(
        RELAY_CLIENT,
        &put("r1", "mine", "y", json!(2), START_WALL_MS - 50.0),
    );
    carry(&mut edge, &mut relay);
    assert_eq!(value(&edge, "mine", "y"), Some(json!(2)));
}
