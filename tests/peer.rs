//! The relay behaviour of the core, driven through its public inputs and outputs.

use fibergun::testing::{Harness, START_WALL_MS};
use fibergun::{Config, Event, Limits};
use serde_json::{json, Value as Json};

fn put(id: &str, soul: &str, key: &str, value: Json, state: f64) -> String {
    json!({"#": id, "put": {soul: {"_": {"#": soul, ">": {key: state}}, key: value}}}).to_string()
}

fn get(id: &str, soul: &str) -> String {
    json!({"#": id, "get": {"#": soul}}).to_string()
}

fn relay() -> Harness {
    let mut h = Harness::with_seed(1);
    h.connect(1);
    h.connect(2);
    h.take(1);
    h.take(2);
    h
}

#[test]
fn greets_inbound_connections_and_answers_dam_hello() {
    let mut h = Harness::with_seed(1);
    h.connect(1);
    let hello = h.take(1);
    assert_eq!(hello.len(), 1);
    assert_eq!(hello[0]["dam"], "?");
    assert_eq!(hello[0]["pid"], h.peer.pid());
    h.frame(1, r##"{"#":"c1","dam":"?","pid":"client"}"##);
    let reply = h.replies_to(1, "c1");
    assert_eq!(reply.len(), 1);
    assert_eq!(reply[0]["pid"], h.peer.pid());
    // A `?` that is itself a reply gets no answer; `hi` and unknown verbs get none either.
    h.frame(1, r##"[{"#":"c2","dam":"?","pid":"client","@":"x"},{"#":"c3","dam":"hi"},{"#":"c4","dam":"zzz"}]"##);
    assert!(h.take(1).is_empty());
}

#[test]
fn put_is_acked_only_after_the_store_commits() {
    let mut h = relay();
    h.auto_store = false;
    h.frame(1, &put("p1", "a", "x", json!(1), START_WALL_MS));
    assert!(h.take(1).is_empty(), "no ack before the commit");
    assert_eq!(h.held.len(), 1);
    h.commit();
    let ack = h.replies_to(1, "p1");
    assert_eq!(ack.len(), 1);
    assert_eq!(ack[0]["ok"], true);
    assert!(h.store.nodes.contains_key("a"));
}

#[test]
fn a_put_that_changes_nothing_is_acked_too() {
    let mut h = relay();
    h.frame(1, &put("p1", "a", "x", json!("b"), 5.0));
    h.frame(1, &put("p2", "a", "x", json!("b"), 5.0)); // identical
    h.frame(1, &put("p3", "a", "x", json!("a"), 5.0)); // loses the tie-break
    h.frame(1, &put("p4", "a", "x", json!("z"), 4.0)); // historical
    let msgs = h.take(1);
    for id in ["p1", "p2", "p3", "p4"] {
        assert!(
            msgs.iter().any(|m| m["@"] == id && m["ok"] == true),
            "{id} acked: {msgs:?}"
        );
    }
    assert_eq!(
        h.store.nodes["a"]["x"].value,
        fibergun::Value::String("b".into())
    );
}

#[test]
fn invalid_put_gets_an_error_and_changes_nothing() {
    let mut h = relay();
    let bad = r##"{"#":"p1","put":{"a":{"_":{"#":"a",">":{"x":1}},"x":1},"b":{"_":{"#":"b",">":{}},"y":2}}}"##;
    h.frame(1, bad);
    let reply = h.replies_to(1, "p1");
    assert_eq!(reply.len(), 1);
    assert!(reply[0]["err"]
        .as_str()
        .unwrap()
        .contains("key 'y' of 'b' has no state"));
    assert!(h.store.nodes.is_empty());
    assert!(h.held.is_empty());
}

#[test]
fn changes_are_pushed_to_subscribers_but_not_back_to_the_writer() {
    let mut h = relay();
    h.connect(3);
    h.take(3);
    h.frame(2, &get("g2", "room"));
    h.frame(1, &get("g1", "room")); // the writer has asked too
    h.take(1);
    h.take(2);
    h.frame(1, &put("p1", "room", "msg", json!("hi"), START_WALL_MS));
    let to_writer = h.take(1);
    assert!(
        to_writer.iter().all(|m| m.get("put").is_none()),
        "{to_writer:?}"
    );
    let pushed = h.take(2);
    assert_eq!(pushed.len(), 1);
    assert_eq!(pushed[0]["put"]["room"]["msg"], "hi");
    assert!(pushed[0].get("@").is_none());
    assert!(h.take(3).is_empty(), "conn 3 never asked for 'room'");
    // A push carries only what changed, and nothing is pushed for a no-op.
    h.frame(1, &put("p2", "room", "msg", json!("hi"), START_WALL_MS));
    assert!(h.take(2).is_empty());
    // A closed subscriber is forgotten.
    h.disconnect(2);
    h.frame(
        1,
        &put("p3", "room", "msg", json!("bye"), START_WALL_MS + 1.0),
    );
    assert!(h.take(2).is_empty());
}

#[test]
fn gets_are_always_answered() {
    let mut h = relay();
    h.frame(1, &put("p1", "a", "x", json!(1), 5.0));
    h.take(1);
    h.frame(1, &get("g1", "missing"));
    let r = h.replies_to(1, "g1");
    assert_eq!(r, vec![json!({"#": r[0]["#"], "@": "g1"})]);
    h.frame(1, r##"{"#":"g2","get":{"#":"a",".":"nope"}}"##);
    let r = h.replies_to(1, "g2");
    assert_eq!(r.len(), 1);
    assert!(r[0].get("put").is_none());
    h.frame(1, r##"{"#":"g3","get":{"#":"a",".":"x"}}"##);
    let r = h.replies_to(1, "g3");
    assert_eq!(
        r[0]["put"],
        json!({"a": {"_": {"#": "a", ">": {"x": 5}}, "x": 1}})
    );
}

#[test]
fn whole_node_reads_are_cached_and_kept_coherent() {
    let mut h = relay();
    h.frame(1, &put("p1", "a", "x", json!(1), 5.0));
    h.frame(1, &get("g1", "a"));
    h.auto_store = false;
    h.frame(1, &get("g2", "a"));
    assert!(h.held.is_empty(), "answered from the cache");
    let g2 = h.replies_to(1, "g2");
    assert_eq!(g2[0]["put"]["a"]["x"], 1);
    // The node as written for g2 answers the GETs after it, word for word, until it changes.
    h.frame(1, &get("g2b", "a"));
    assert!(h.held.is_empty());
    let g2b = h.replies_to(1, "g2b");
    assert_eq!(g2b.len(), 1);
    assert_eq!(g2b[0]["put"], g2[0]["put"]);
    assert_eq!(
        g2b[0]["put"],
        json!({"a": {"_": {"#": "a", ">": {"x": 5}}, "x": 1}})
    );
    h.frame(2, &put("p2", "a", "x", json!(2), 6.0));
    h.commit();
    h.frame(1, &get("g3", "a"));
    assert!(h.held.is_empty());
    assert_eq!(h.replies_to(1, "g3")[0]["put"]["a"]["x"], 2);
    h.frame(1, &get("g3b", "a"));
    assert_eq!(h.replies_to(1, "g3b")[0]["put"]["a"]["x"], 2);
    // A losing write changes nothing; a new key does.
    h.frame(2, &put("p3", "a", "x", json!(3), 4.0));
    h.frame(2, &put("p4", "a", "y", json!("new"), 7.0));
    h.commit();
    h.frame(1, &get("g4", "a"));
    let g4 = h.replies_to(1, "g4");
    assert_eq!(g4[0]["put"]["a"]["x"], 2);
    assert_eq!(g4[0]["put"]["a"]["y"], "new");
    // Parts of the node are not answered with the whole of it.
    h.frame(
        1,
        &json!({"#": "g5", "get": {"#": "a", ".": "y"}}).to_string(),
    );
    let g5 = h.replies_to(1, "g5");
    assert_eq!(g5[0]["put"]["a"]["y"], "new");
    assert!(g5[0]["put"]["a"].get("x").is_none(), "{g5:?}");
}

#[test]
fn a_cached_node_too_big_for_one_reply_goes_in_several_each_time() {
    let mut h = Harness::new(Config {
        limits: Limits {
            batch_frame_bytes: 2_000,
            ..Limits::default()
        },
        seed: 1,
        ..Config::default()
    });
    h.connect(1);
    h.take(1);
    let fields: serde_json::Map<String, Json> = (0..40)
        .map(|i| (format!("k{i:02}"), json!("v".repeat(100))))
        .collect();
    let states: serde_json::Map<String, Json> =
        fields.keys().map(|k| (k.clone(), json!(5.0))).collect();
    let mut node = fields.clone();
    node.insert("_".into(), json!({"#": "big", ">": states}));
    h.frame(1, &json!({"#": "p", "put": {"big": node}}).to_string());
    for id in ["g1", "g2", "g3"] {
        h.frame(1, &get(id, "big"));
        let replies = h.replies_to(1, id);
        assert!(replies.len() > 1, "{id}: {} replies", replies.len());
        let keys: usize = replies
            .iter()
            .map(|r| r["put"]["big"].as_object().unwrap().len() - 1)
            .sum();
        assert_eq!(keys, 40, "{id}");
    }
}

#[test]
fn lex_gets() {
    let mut h = relay();
    let node = json!({"#": "p", "put": {"lexlist": {"_": {"#": "lexlist", ">": {"a-z": 1, "apple": 1, "apricot": 1, "banana": 1}},
        "a-z": 4, "apple": 1, "apricot": 2, "banana": 3}}});
    h.frame(1, &node.to_string());
    let keys = |h: &mut Harness, id: &str, get: Json| -> Vec<String> {
        h.frame(1, &json!({"#": id, "get": get}).to_string());
        let r = h.replies_to(1, id);
        r[0].get("put")
            .map(|p| {
                p["lexlist"]
                    .as_object()
                    .unwrap()
                    .keys()
                    .filter(|k| *k != "_")
                    .cloned()
                    .collect()
            })
            .unwrap_or_default()
    };
    let cases = [
        (
            json!({"#": "lexlist", ".": {"*": "ap"}}),
            vec!["apple", "apricot"],
        ),
        (json!({"#": "lexlist", ".": {">": "b"}}), vec!["banana"]),
        (
            json!({"#": "lexlist", ".": {">": "a", "<": "b"}}),
            vec!["a-z", "apple", "apricot"],
        ),
        (
            json!({"#": "lexlist", ".": {"=": "banana"}}),
            vec!["banana"],
        ),
        (
            json!({"#": "lexlist", ".": {">": "a"}, "%": 20}),
            vec!["a-z", "apple", "apricot"],
        ),
        (
            json!({"#": "lexlist", ".": {">": "a", "-": 1}, "%": 1}),
            vec!["banana"],
        ),
        (json!({"#": "lexlist", ".": {"*": "zz"}}), vec![]),
    ];
    for (i, (q, want)) in cases.into_iter().enumerate() {
        let mut got = keys(&mut h, &format!("q{i}"), q.clone());
        got.sort();
        assert_eq!(got, want, "case {i}: {q}");
    }
}

#[test]
fn duplicate_message_ids_are_handled_once() {
    let mut h = relay();
    h.frame(1, &get("g1", "a"));
    h.frame(1, &get("g1", "a"));
    h.frame(2, &get("g1", "a"));
    assert_eq!(h.replies_to(1, "g1").len(), 1);
    assert!(h.take(2).is_empty());
    // After the dedup window the id is new again.
    h.advance(Limits::default().dedup_ttl_ms + 1);
    h.frame(1, &get("g1", "a"));
    assert_eq!(h.replies_to(1, "g1").len(), 1);
}

#[test]
fn future_states_wait_for_their_time_then_apply_and_ack() {
    let mut h = relay();
    h.frame(2, &get("g", "a"));
    h.take(2);
    h.frame(
        1,
        &put("p1", "a", "x", json!("later"), START_WALL_MS + 3_000.0),
    );
    assert!(h.take(1).is_empty(), "not acked before its time");
    assert!(h.store.nodes.is_empty());
    h.advance(2_999);
    assert!(h.store.nodes.is_empty());
    h.advance(2);
    assert_eq!(
        h.store.nodes["a"]["x"].value,
        fibergun::Value::String("later".into())
    );
    assert_eq!(h.replies_to(1, "p1")[0]["ok"], true);
    assert_eq!(h.take(2)[0]["put"]["a"]["x"], "later");
}

#[test]
fn states_too_far_ahead_are_refused() {
    let mut h = relay();
    h.frame(
        1,
        &put("p1", "a", "x", json!(1), START_WALL_MS + 2.0 * 86_400_000.0),
    );
    let r = h.replies_to(1, "p1");
    assert!(r[0]["err"]
        .as_str()
        .unwrap()
        .contains("ahead of this relay's clock"));
    assert!(h.held.is_empty() && h.store.nodes.is_empty());
}

#[test]
fn storage_failure_is_reported_as_an_error() {
    let mut h = relay();
    h.auto_store = false;
    h.frame(1, &put("p1", "a", "x", json!(1), 5.0));
    let op = h.held.pop().unwrap();
    h.peer
        .handle_input(
            h.now,
            fibergun::Input::StoreDone {
                op: op.id(),
                result: fibergun::StoreResult::Failed {
                    reason: "disk full".into(),
                },
            },
        )
        .unwrap();
    let mut sent = Vec::new();
    while let Some(out) = h.peer.poll_output() {
        if let fibergun::Output::Send { text, .. } = out {
            sent.push(text);
        }
    }
    assert!(
        sent.iter()
            .any(|t| t.contains(r##""@":"p1","err":"Storage failed: disk full""##)),
        "{sent:?}"
    );
}

/// A relay allowed two storage ops in flight, holding its ops until `commit`, with a client on
/// connection 1.
fn storage_limited_to_two_ops() -> Harness {
    let mut h = Harness::new(Config {
        limits: Limits {
            max_pending_store_ops: 2,
            ..Limits::default()
        },
        ..Config::default()
    });
    h.connect(1);
    h.take(1);
    h.auto_store = false;
    h
}

#[test]
fn work_beyond_the_pending_storage_limit_is_refused() {
    let mut h = storage_limited_to_two_ops();
    for i in 0..3 {
        h.frame(1, &put(&format!("p{i}"), "a", "x", json!(i), 5.0));
    }
    let r = h.replies_to(1, "p2");
    assert!(r[0]["err"].as_str().unwrap().contains("busy"));
    h.commit();
    let acks = h.take(1);
    assert_eq!(acks.iter().filter(|m| m["ok"] == true).count(), 2);
}

#[test]
fn a_frame_is_admitted_or_refused_whole() {
    let mut h = storage_limited_to_two_ops();
    h.frame(1, &put("p0", "a", "x", json!(0), 5.0));
    // Below the limit when it arrives: every put in it is taken, though they pass the limit.
    let batch: Vec<Json> = (1..4)
        .map(|i| {
            serde_json::from_str(&put(&format!("p{i}"), &format!("s{i}"), "x", json!(i), 5.0))
                .unwrap()
        })
        .collect();
    h.frame(1, &Json::Array(batch).to_string());
    assert!(h.take(1).iter().all(|m| m.get("err").is_none()));
    assert_eq!(h.peer.pending_store_ops(), 4);
    assert!(h.peer.is_backlogged());
    // At the limit when it arrives: refused.
    h.frame(1, &put("p9", "b", "x", json!(9), 5.0));
    assert!(h.replies_to(1, "p9")[0]["err"]
        .as_str()
        .unwrap()
        .contains("busy"));
    h.commit();
    assert!(!h.peer.is_backlogged());
    let acks = h.take(1);
    assert_eq!(acks.iter().filter(|m| m["ok"] == true).count(), 4);
}

#[test]
fn dam_opt_is_refused() {
    let mut h = relay();
    h.frame(
        1,
        r##"{"#":"o1","dam":"opt","opt":{"peers":"http://127.0.0.1:9/gun"}}"##,
    );
    let r = h.replies_to(1, "o1");
    assert_eq!(r.len(), 1);
    assert!(r[0]["err"].as_str().unwrap().starts_with("Refused"));
    assert!(h.held.is_empty());
}

#[test]
fn malformed_frames_get_a_dam_error_and_the_connection_stays() {
    let mut h = Harness::new(Config {
        limits: Limits {
            max_frame_bytes: 100,
            max_json_depth: 8,
            ..Limits::default()
        },
        ..Config::default()
    });
    h.connect(1);
    h.take(1);
    for (frame, why) in [
        ("hello world", "JSON object"),
        ("{\"#\":\"bad1\",\"get\":", "parse error"),
        (&"x".repeat(101) as &str, "too big"),
        (&"[".repeat(9) as &str, "nested deeper"),
    ] {
        h.frame(1, frame);
        let r = h.take(1);
        assert_eq!(r.len(), 1, "{frame}");
        assert_eq!(r[0]["dam"], "!");
        assert!(
            r[0]["err"].as_str().unwrap().contains(why),
            "{frame}: {}",
            r[0]["err"]
        );
    }
    assert!(h.closed.is_empty());
    assert!(h.events.iter().all(|e| matches!(e, Event::Refused { .. })));
}

#[test]
fn keepalive_every_twenty_seconds() {
    let mut h = relay();
    h.advance(19_999);
    assert!(h.frames.is_empty());
    h.advance(1);
    let frames: Vec<_> = h.frames.iter().map(|(c, t)| (c.0, t.as_str())).collect();
    assert_eq!(frames, vec![(1, "[]"), (2, "[]")]);
}

#[test]
fn connections_over_the_limit_are_closed() {
    let mut h = Harness::new(Config {
        limits: Limits {
            max_connections: 1,
            ..Limits::default()
        },
        ..Config::default()
    });
    h.connect(1);
    h.connect(2);
    assert_eq!(h.closed, vec![fibergun::ConnId(2)]);
}

#[test]
fn same_seed_same_output() {
    let run = || {
        let mut h = Harness::with_seed(42);
        h.connect(1);
        h.frame(1, &put("p1", "a", "x", json!(1), 5.0));
        h.frame(1, &get("g1", "a"));
        h.frames.clone()
    };
    assert_eq!(run(), run());
}

#[test]
fn stats_count_traffic_errors_by_kind_and_latencies() {
    use fibergun::LATENCY_BOUNDS;
    let mut h = relay();
    h.auto_store = false;
    let bytes_before = h.peer.stats().bytes_in;
    // A put that waits 7 ms for its commit, and a GET of a node that is not cached.
    h.frame(1, &put("p1", "a", "k", json!(1), START_WALL_MS));
    h.advance(7);
    h.commit();
    assert_eq!(h.replies_to(1, "p1")[0]["ok"], true);
    h.frame(2, &put("p2", "b", "k", json!(2), START_WALL_MS));
    h.commit();
    h.frame(1, &get("g1", "fresh"));
    h.advance(3);
    h.commit();
    // Errors of each kind the wire can cause.
    h.frame(1, "not json");
    h.frame(1, &put("p3", "c", "k", json!(1), START_WALL_MS + 1e10));
    h.frame(
        1,
        &put("p4", "~abc.def", "k", json!("unsigned"), START_WALL_MS),
    );
    h.commit();
    let s = h.peer.stats();
    assert!(s.bytes_in > bytes_before);
    assert!(s.bytes_out > 0);
    assert_eq!((s.puts_received, s.gets_received), (4, 1));
    assert_eq!(s.errors.malformed, 1);
    assert_eq!(s.errors.invalid, 1);
    assert_eq!(s.errors.unauthorized, 1);
    assert_eq!(s.put_latency.count, 2);
    // 7 ms lands in the bucket up to 10 ms; the other put took no time.
    let ten_ms = LATENCY_BOUNDS.iter().position(|b| *b == 0.01).unwrap();
    assert_eq!(s.put_latency.buckets[ten_ms], 1);
    assert_eq!(s.put_latency.buckets[0], 1);
    assert_eq!(s.put_latency.sum_nanos, 7_000_000);
    let five_ms = LATENCY_BOUNDS.iter().position(|b| *b == 0.005).unwrap();
    assert_eq!(s.get_latency.count, 1);
    assert_eq!(s.get_latency.buckets[five_ms], 1);
    assert_eq!(h.peer.connections(), 2);
    assert_eq!(h.peer.links(), 0);
}
