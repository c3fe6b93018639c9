//! The mesh in the core: configured peers dialled and redialled with backoff, kept in step across
//! reconnects, and routing with `><` so that requests do not travel twice.

use fibergun::testing::{Harness, START_WALL_MS};
use fibergun::{Config, ConnId, Limits, RemoteId, RemoteState};
use serde_json::{json, Value as Json};

fn put(id: &str, soul: &str, key: &str, value: Json, state: f64) -> String {
    json!({"#": id, "put": {soul: {"_": {"#": soul, ">": {key: state}}, key: value}}}).to_string()
}

fn hello(id: &str, pid: &str) -> String {
    json!({"#": id, "dam": "?", "pid": pid}).to_string()
}

/// A relay configured to dial one peer, with fixed reconnect bounds.
fn dialling(min_ms: u64, max_ms: u64) -> Harness {
    Harness::new(Config {
        seed: 7,
        pid: Some("me".into()),
        peers: vec!["ws://127.0.0.1:9/gun".into()],
        limits: Limits {
            reconnect_min_ms: min_ms,
            reconnect_max_ms: max_ms,
            ..Limits::default()
        },
        ..Config::default()
    })
}

const R: RemoteId = RemoteId(0);

/// A relay whose configured peer ("them") is connected on connection 1 and has greeted it, with a
/// client on connection 2; what was sent so far to the peer is forgotten.
fn linked_with_a_client() -> Harness {
    let mut h = dialling(100, 1_000);
    h.dialled(R, 1);
    h.frame(1, &hello("h1", "them"));
    h.connect(2);
    h.take(1);
    h
}

fn state(h: &Harness) -> RemoteState {
    h.peer.remotes()[0].state
}

/// Fails the dial in progress and returns how long the peer waits before dialling again.
fn fail_and_measure(h: &mut Harness) -> u64 {
    let dials = h.dials.len();
    h.dial_failed(R);
    let RemoteState::Waiting(at) = state(h) else {
        panic!("a failed dial waits: {:?}", state(h));
    };
    let wait = at.saturating_duration_since(h.now.mono).as_millis() as u64;
    h.advance(wait);
    assert_eq!(
        h.dials.len(),
        dials + 1,
        "dialled again when the wait was over"
    );
    wait
}

#[test]
fn configured_peers_are_dialled_at_start_and_again_with_capped_exponential_backoff() {
    let mut h = dialling(100, 1_000);
    // The first poll of a new peer asks for the dial.
    h.advance(0);
    assert_eq!(h.dials, vec![(R, "ws://127.0.0.1:9/gun".to_string())]);
    assert_eq!(state(&h), RemoteState::Dialing);
    let waits: Vec<u64> = (0..8).map(|_| fail_and_measure(&mut h)).collect();
    // Doubling from 100 ms, capped at 1 s, each less up to half of it at random.
    let full = [100, 200, 400, 800, 1_000, 1_000, 1_000, 1_000];
    for (wait, full) in waits.iter().zip(full) {
        assert!(
            (full / 2..=full).contains(wait),
            "wait {wait} ms outside {}..={full} ({waits:?})",
            full / 2
        );
    }
    assert!(
        waits[4..].windows(2).any(|w| w[0] != w[1]),
        "jitter varies the capped waits: {waits:?}"
    );
    assert_eq!(h.peer.remotes()[0].failures, 8);
    // A connection that completes the handshake resets the count.
    h.dialled(R, 1);
    h.frame(1, &hello("h1", "them"));
    assert_eq!(h.peer.remotes()[0].failures, 0);
    assert_eq!(state(&h), RemoteState::Open(ConnId(1)));
    // Losing it waits the shortest backoff again.
    h.disconnect(1);
    let RemoteState::Waiting(at) = state(&h) else {
        panic!("a lost connection is redialled later");
    };
    assert!(at.saturating_duration_since(h.now.mono).as_millis() <= 100);
}

#[test]
fn a_dialled_peer_is_asked_for_everything_and_gets_every_change() {
    let mut h = dialling(100, 1_000);
    h.advance(0);
    h.dialled(R, 1);
    let sent = h.take(1);
    assert!(
        sent.iter()
            .any(|m| m["get"] == json!({"#": {"*": ""}}) && m.get("dam").is_none()),
        "asks the peer for every soul: {sent:?}"
    );
    // We dialled, so we do not greet: the server side greets and we answer.
    assert!(!sent.iter().any(|m| m["dam"] == "?"));
    h.frame(1, &hello("h1", "them"));
    let answer = h.replies_to(1, "h1");
    assert_eq!(answer[0]["pid"], "me");
    h.connect(2);
    h.frame(2, &put("p1", "a", "x", json!(1), START_WALL_MS));
    let pushed = h.take(1);
    assert_eq!(pushed.len(), 1, "{pushed:?}");
    assert_eq!(pushed[0]["put"]["a"]["x"], 1);
}

#[test]
fn changes_not_acknowledged_and_changes_made_while_away_are_sent_on_return() {
    let mut h = linked_with_a_client();
    h.frame(2, &put("p1", "a", "x", json!("acked"), START_WALL_MS));
    h.frame(2, &put("p2", "b", "x", json!("unacked"), START_WALL_MS));
    let pushed = h.take(1);
    let id_of = |soul: &str| {
        pushed
            .iter()
            .find(|m| m["put"].get(soul).is_some())
            .and_then(|m| m["#"].as_str())
            .expect("pushed")
            .to_string()
    };
    h.frame(
        1,
        &json!({"#": "ack1", "@": id_of("a"), "ok": true}).to_string(),
    );
    assert_eq!(h.peer.remotes()[0].pending, 1, "only b waits for its ack");
    h.disconnect(1);
    h.frame(2, &put("p3", "c", "x", json!("while away"), START_WALL_MS));
    assert_eq!(h.peer.remotes()[0].pending, 2);
    h.advance(1_000);
    assert_eq!(h.dials.len(), 2);
    h.dialled(R, 3);
    let resent = h.take(3);
    let souls: Vec<&str> = resent
        .iter()
        .filter_map(|m| m["put"].as_object())
        .flat_map(|g| g.keys().map(String::as_str))
        .collect();
    assert_eq!(souls, vec!["b", "c"], "{resent:?}");
    // Acks of the resent changes end their redelivery.
    for m in &resent {
        if m.get("put").is_some() {
            let id = m["#"].as_str().unwrap();
            h.frame(
                3,
                &json!({"#": format!("a-{id}"), "@": id, "ok": true}).to_string(),
            );
        }
    }
    assert_eq!(h.peer.remotes()[0].pending, 0);
}

#[test]
fn redelivery_is_bounded_in_bytes() {
    let mut h = Harness::new(Config {
        seed: 7,
        peers: vec!["ws://127.0.0.1:9/gun".into()],
        limits: Limits {
            max_redelivery_bytes: 1_000,
            ..Limits::default()
        },
        ..Config::default()
    });
    h.connect(2);
    for i in 0..100 {
        let soul = format!("s{i}");
        h.frame(
            2,
            &put(&format!("p{i}"), &soul, "x", json!("v"), START_WALL_MS),
        );
    }
    let kept = h.peer.remotes()[0].pending;
    assert!(kept > 0 && kept < 100, "kept {kept}");
    h.advance(0);
    h.dialled(R, 1);
    let resent: Vec<Json> = h
        .take(1)
        .into_iter()
        .filter(|m| m.get("put").is_some())
        .collect();
    assert_eq!(resent.len(), kept);
    // The newest are the ones kept.
    assert!(resent.last().unwrap()["put"].get("s99").is_some());
}

#[test]
fn forwarded_gets_are_renewed_with_a_returning_peer() {
    let mut h = linked_with_a_client();
    h.frame(2, &json!({"#": "g1", "get": {"#": "far"}}).to_string());
    let forwarded = h.take(1);
    assert!(forwarded
        .iter()
        .any(|m| m["#"] == "g1" && m["get"]["#"] == "far"));
    h.disconnect(1);
    h.advance(1_000);
    h.dialled(R, 3);
    let renewed = h.take(3);
    let again = renewed
        .iter()
        .find(|m| m["get"] == json!({"#": "far"}))
        .unwrap_or_else(|| panic!("the GET is sent again: {renewed:?}"));
    // Its answer is for this peer, not routed to anyone.
    let id = again["#"].as_str().unwrap().to_string();
    let answer = json!({"#": "r1", "@": id, "put": {"far": {"_": {"#": "far", ">": {"k": START_WALL_MS}}, "k": 1}}});
    h.frame(3, &answer.to_string());
    assert!(h.store.nodes.contains_key("far"), "the answer is stored");
    let to_client: Vec<Json> = h.take(2);
    assert!(
        !to_client.iter().any(|m| m["@"] == json!(id)),
        "{to_client:?}"
    );
}

#[test]
fn a_connection_to_itself_is_closed_and_never_dialled_again() {
    let mut h = dialling(100, 1_000);
    h.advance(0);
    h.dialled(R, 1);
    h.frame(1, &hello("h1", "me"));
    assert_eq!(h.closed, vec![ConnId(1)]);
    h.disconnect(1);
    assert_eq!(state(&h), RemoteState::Stopped);
    h.advance(60_000);
    assert_eq!(h.dials.len(), 1);
}

#[test]
fn of_two_connections_to_one_peer_both_ends_keep_the_same_one() {
    // We are "me"; the peer "zz" has the larger pid, so the connection we dialled stays.
    let mut h = dialling(100, 1_000);
    h.advance(0);
    h.dialled(R, 1);
    h.frame(1, &hello("h1", "zz"));
    h.connect(2); // it dialled us too
    h.frame(
        2,
        &json!({"#": "h2", "@": "x", "dam": "?", "pid": "zz"}).to_string(),
    );
    assert_eq!(h.closed, vec![ConnId(2)]);
    assert_eq!(state(&h), RemoteState::Open(ConnId(1)));

    // Against "aa" (a smaller pid) the connection it dialled stays, and ours is covered by it.
    let mut h = dialling(100, 1_000);
    h.advance(0);
    h.dialled(R, 1);
    h.frame(1, &hello("h1", "aa"));
    h.connect(2);
    h.frame(
        2,
        &json!({"#": "h2", "@": "x", "dam": "?", "pid": "aa"}).to_string(),
    );
    assert_eq!(h.closed, vec![ConnId(1)]);
    h.disconnect(1);
    assert_eq!(state(&h), RemoteState::Covered(ConnId(2)));
    // When that one goes, we dial at once.
    let dials = h.dials.len();
    h.disconnect(2);
    assert_eq!(h.dials.len(), dials + 1);
    assert_eq!(state(&h), RemoteState::Dialing);
}

#[test]
fn a_client_that_reconnects_replaces_its_old_connection() {
    let mut h = Harness::with_seed(1);
    h.connect(1);
    h.frame(
        1,
        &json!({"#": "h1", "@": "x", "dam": "?", "pid": "browser"}).to_string(),
    );
    h.connect(2);
    h.frame(
        2,
        &json!({"#": "h2", "@": "y", "dam": "?", "pid": "browser"}).to_string(),
    );
    assert_eq!(h.closed, vec![ConnId(1)], "the older one goes");
}

/// A relay with three links (connections that asked for everything), pids l1..l3, and a client.
fn relay_with_links() -> Harness {
    let mut h = Harness::with_seed(3);
    for (conn, pid) in [(1, "l1"), (2, "l2"), (3, "l3")] {
        h.connect(conn);
        h.frame(
            conn,
            &json!({"#": format!("h{conn}"), "@": "x", "dam": "?", "pid": pid}).to_string(),
        );
        h.frame(
            conn,
            &json!({"#": format!("all{conn}"), "get": {"#": {"*": ""}}}).to_string(),
        );
    }
    h.connect(9);
    for c in [1, 2, 3, 9] {
        h.take(c);
    }
    h
}

#[test]
fn forwarded_gets_skip_the_peers_named_in_their_skip_list_and_name_where_they_go() {
    let mut h = relay_with_links();
    h.frame(
        1,
        &json!({"#": "g1", "get": {"#": "nowhere"}, "><": "l1,l2"}).to_string(),
    );
    assert!(h.take(2).is_empty(), "l2 already has it");
    let to_l3 = h.take(3);
    let fwd = to_l3
        .iter()
        .find(|m| m["#"] == "g1")
        .expect("forwarded to l3");
    let skip: Vec<&str> = fwd["><"].as_str().unwrap().split(',').collect();
    assert_eq!(skip, vec![h.peer.pid(), "l3"]);
    // A client's GET goes to all three, each named.
    h.frame(9, &json!({"#": "g2", "get": {"#": "nowhere"}}).to_string());
    for c in [1, 2, 3] {
        let got = h.take(c);
        let fwd = got.iter().find(|m| m["#"] == "g2").expect("forwarded");
        let skip = fwd["><"].as_str().unwrap();
        assert!(skip.contains("l1") && skip.contains("l2") && skip.contains("l3"));
    }
}

#[test]
fn changes_are_not_pushed_to_peers_the_put_names_in_its_skip_list() {
    let mut h = relay_with_links();
    h.frame(
        1,
        &json!({"#": "p1", "><": "l2", "put": {"a": {"_": {"#": "a", ">": {"x": START_WALL_MS}}, "x": 1}}})
            .to_string(),
    );
    assert!(
        h.take(1).iter().all(|m| m.get("put").is_none()),
        "not back to the writer"
    );
    assert!(h.take(2).is_empty(), "l2 already has it");
    assert_eq!(h.take(3).len(), 1);
}

#[test]
fn a_write_travels_round_a_ring_once() {
    // Three relays in a ring, each a link of the other two: a write made at one is merged by each
    // of the others and then stops, because a merge that changes nothing pushes nothing.
    let mut relays: Vec<Harness> = (0..3).map(|i| Harness::with_seed(10 + i)).collect();
    // Connection ids: relay i reaches relay j on connection 10 + j.
    for (i, relay) in relays.iter_mut().enumerate() {
        for j in 0..3 {
            if j != i {
                relay.connect(10 + j as u64);
                relay.frame(
                    10 + j as u64,
                    &json!({"#": format!("all{i}{j}"), "get": {"#": {"*": ""}}}).to_string(),
                );
            }
        }
        relay.frames.clear();
    }
    relays[0].connect(99);
    relays[0].frame(99, &put("w1", "ring", "x", json!("v"), START_WALL_MS));
    let mut delivered = 0;
    for _round in 0..10 {
        let mut in_flight = Vec::new();
        for (i, relay) in relays.iter_mut().enumerate() {
            for (conn, text) in relay.frames.drain(..) {
                if conn.0 >= 10 && conn.0 < 13 {
                    in_flight.push((conn.0 as usize - 10, i, text));
                }
            }
        }
        if in_flight.is_empty() {
            break;
        }
        for (to, from, text) in in_flight {
            delivered += 1;
            relays[to].frame(10 + from as u64, &text);
        }
    }
    for relay in &relays {
        assert!(relay.store.nodes.contains_key("ring"));
    }
    assert!(
        delivered <= 12,
        "the write stopped going round: {delivered} frames"
    );
}

#[test]
fn a_dialled_relay_that_pushes_only_what_it_is_asked_is_asked_for_every_soul_read_here() {
    // A GUN JS relay we dialled never asks us for everything; it pushes changes only for souls we
    // asked it for. So GETs answered here are asked of it too, once each.
    let mut h = dialling(100, 1_000);
    h.dialled(R, 1);
    h.frame(1, &hello("h1", "gunjs"));
    h.connect(2);
    h.frame(2, &put("p1", "local", "x", json!(1), START_WALL_MS));
    h.take(1);
    h.frame(2, &json!({"#": "g1", "get": {"#": "local"}}).to_string());
    assert!(h
        .replies_to(2, "g1")
        .iter()
        .any(|m| m["put"]["local"]["x"] == 1));
    let asked = h.take(1);
    assert!(
        asked
            .iter()
            .any(|m| m["#"] == "g1" && m["get"]["#"] == "local"),
        "{asked:?}"
    );
    // Once per distinct GET.
    h.frame(2, &json!({"#": "g2", "get": {"#": "local"}}).to_string());
    assert!(h.take(1).is_empty());
    // A miss goes out once too, not twice under the same id.
    h.frame(
        2,
        &json!({"#": "g3", "get": {"#": "elsewhere"}}).to_string(),
    );
    let asked: Vec<Json> = h.take(1).into_iter().filter(|m| m["#"] == "g3").collect();
    assert_eq!(asked.len(), 1, "{asked:?}");
    // A change it pushes for that soul reaches our subscriber.
    h.advance(10);
    let push = json!({"#": "push1", "put": {"local": {"_": {"#": "local", ">": {"x": START_WALL_MS + 1.0}}, "x": 2}}});
    h.frame(1, &push.to_string());
    assert!(h.take(2).iter().any(|m| m["put"]["local"]["x"] == 2));
}

#[test]
fn a_relay_that_asked_for_everything_is_not_asked_soul_by_soul() {
    let mut h = dialling(100, 1_000);
    h.dialled(R, 1);
    h.frame(1, &hello("h1", "fibergun"));
    h.frame(1, &json!({"#": "all", "get": {"#": {"*": ""}}}).to_string());
    h.connect(2);
    h.frame(2, &put("p1", "local", "x", json!(1), START_WALL_MS));
    h.take(1);
    h.frame(2, &json!({"#": "g1", "get": {"#": "local"}}).to_string());
    assert!(!h.take(1).iter().any(|m| m.get("get").is_some()));
}

#[test]
fn a_long_answer_waits_while_its_connection_is_congested() {
    let mut h = Harness::new(Config {
        seed: 5,
        limits: Limits {
            batch_frame_bytes: 1_024,
            ..Limits::default()
        },
        ..Config::default()
    });
    h.connect(1);
    let filler = "x".repeat(100);
    for i in 0..40 {
        h.frame(
            1,
            &put(
                &format!("p{i}"),
                &format!("n{i:02}"),
                "v",
                json!(filler),
                START_WALL_MS,
            ),
        );
    }
    h.connect(2);
    h.take(2);
    h.auto_store = false;
    h.frame(
        2,
        &json!({"#": "all", "get": {"#": {"*": "n"}}}).to_string(),
    );
    let souls_received = |h: &mut Harness| -> usize {
        h.take(2)
            .iter()
            .filter(|m| m["@"] == "all")
            .filter_map(|m| m["put"].as_object().map(|g| g.len()))
            .sum()
    };
    h.commit(); // the first page
    let mut received = souls_received(&mut h);
    assert!(received > 0 && received < 40, "{received}");
    assert_eq!(h.held.len(), 1, "the second page is being read");
    h.congested(2);
    h.commit(); // the second page goes out; the third waits
    received += souls_received(&mut h);
    assert!(h.held.is_empty(), "no page is read while congested");
    h.advance(60_000);
    assert!(h.held.is_empty());
    h.drained(2);
    assert_eq!(h.held.len(), 1, "reading goes on once drained");
    while !h.held.is_empty() {
        h.commit();
    }
    received += souls_received(&mut h);
    assert_eq!(received, 40);
}
