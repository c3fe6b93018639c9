//! Property tests: HAM is a join (commutative, associative, idempotent) over random graphs; the
//! codec round-trips; and the peer, driven by random
//! operations, behaves like a simple model. Failures are saved in proptest-regressions/.

use std::collections::BTreeMap;

use fibergun::store::merge_into;
use fibergun::testing::Harness;
use fibergun::{Field, Graph, Key, Limits, Node, Soul, State, Value};
use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;
use serde_json::{json, Value as Json};

fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct(
            "proptest-regressions/proptests.txt",
        ))),
        ..ProptestConfig::default()
    }
}

fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-c]{1,3}",
        any::<String>().prop_filter("non-empty", |s| !s.is_empty()),
        "[\"\\\\\u{0}-\u{1f}😀｢é]{1,4}",
    ]
}

fn soul() -> impl Strategy<Value = Soul> {
    text().prop_map(|s| Soul::new(&s).expect("non-empty"))
}

fn key() -> impl Strategy<Value = Key> {
    text().prop_filter_map("not the metadata key", |s| Key::new(&s).ok())
}

fn value() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        prop_oneof![
            any::<f64>().prop_filter("finite", |f| f.is_finite()),
            (0i32..10).prop_map(f64::from)
        ]
        .prop_map(|f| Value::Number(if f == 0.0 { 0.0 } else { f })),
        text().prop_map(|s| Value::String(s.into())),
        soul().prop_map(Value::Link),
    ]
}

fn state() -> impl Strategy<Value = State> {
    prop_oneof![
        (0u8..4).prop_map(f64::from),
        any::<f64>().prop_filter("finite", |f| f.is_finite()),
        (1_700_000_000_000u64..1_700_000_000_010).prop_map(|s| s as f64 + 0.001),
    ]
    .prop_map(|s| State::new(s).expect("finite"))
}

fn field() -> impl Strategy<Value = Field> {
    (value(), state()).prop_map(|(value, state)| Field { value, state })
}

/// Writes to a small set of souls and keys, so that they collide often.
fn writes() -> impl Strategy<Value = Vec<(u8, u8, Field)>> {
    prop::collection::vec((0u8..3, 0u8..3, field()), 0..12)
}

type Graphish = BTreeMap<(u8, u8), Field>;

fn join(a: &Graphish, b: &[(u8, u8, Field)]) -> Graphish {
    let mut out = a.clone();
    for (s, k, f) in b {
        let key = Key::new(&format!("k{k}")).expect("valid");
        let mut node: BTreeMap<Key, Field> = out
            .get(&(*s, *k))
            .map(|f| (key.clone(), f.clone()))
            .into_iter()
            .collect();
        merge_into(&mut node, &[(key.clone(), f.clone())]);
        out.insert((*s, *k), node.remove(&key).expect("merge keeps a field"));
    }
    out
}

fn flat(g: &Graphish) -> Vec<(u8, u8, Field)> {
    g.iter().map(|((s, k), f)| (*s, *k, f.clone())).collect()
}

proptest! {
    #![proptest_config(config(512))]

    #[test]
    fn ham_join_is_commutative(a in writes(), b in writes()) {
        let empty = Graphish::new();
        prop_assert_eq!(join(&join(&empty, &a), &b), join(&join(&empty, &b), &a));
    }

    #[test]
    fn ham_join_is_associative(a in writes(), b in writes(), c in writes()) {
        let empty = Graphish::new();
        let ab_c = join(&join(&join(&empty, &a), &b), &c);
        let bc = join(&join(&empty, &b), &c);
        let a_bc = join(&join(&empty, &a), &flat(&bc));
        prop_assert_eq!(ab_c, a_bc);
    }

    #[test]
    fn ham_join_is_idempotent(a in writes()) {
        let once = join(&Graphish::new(), &a);
        prop_assert_eq!(join(&once, &a), once.clone());
        prop_assert_eq!(join(&once, &flat(&once)), once);
    }

    #[test]
    fn any_order_of_the_same_writes_gives_the_same_graph(a in writes(), seed in any::<u64>()) {
        let mut shuffled = a.clone();
        let mut rng = fibergun::rng::Rng::new(seed);
        for i in (1..shuffled.len()).rev() {
            let j = rng.below(i as u64 + 1) as usize;
            shuffled.swap(i, j);
        }
        prop_assert_eq!(join(&Graphish::new(), &a), join(&Graphish::new(), &shuffled));
    }

    #[test]
    fn graphs_round_trip_through_json(nodes in prop::collection::btree_map(soul(), prop::collection::btree_map(key(), field(), 0..5), 1..4)) {
        let graph = Graph { nodes: nodes.into_iter().map(|(soul, fields)| Node { soul, fields }).collect() };
        let mut text = String::new();
        graph.write_json(&mut text);
        let parsed: Json = serde_json::from_str(&text).expect("we write JSON");
        let back = Graph::from_json(&parsed, &Limits::default()).expect("we write valid graphs");
        prop_assert_eq!(back, graph);
    }

    #[test]
    fn messages_round_trip(id in "[A-Za-z0-9]{1,12}", to in text(), err in any::<String>()) {
        let limits = Limits::default();
        for text in [
            fibergun::wire::ack(&id, &to),
            fibergun::wire::error_reply(&id, &to, &err),
            fibergun::wire::not_found(&id, &to),
        ] {
            let msg = fibergun::wire::parse_frame(&text, &limits, String::new).expect("a frame")
                .pop().expect("one message").expect("a message");
            prop_assert_eq!(&msg.id, &id);
            prop_assert_eq!(msg.reply_to.as_deref(), Some(to.as_str()));
        }
    }

}

// The peer against a model.

#[derive(Clone, Debug)]
enum Op {
    Put {
        conn: u64,
        soul: u8,
        key: u8,
        value: Value,
        ahead_ms: i64,
    },
    Get {
        conn: u64,
        soul: u8,
    },
    Advance {
        ms: u64,
    },
    Reconnect {
        conn: u64,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (1u64..4, 0u8..3, 0u8..3, value(), prop_oneof![(-5i64..5), (-100_000i64..5_000)])
            .prop_map(|(conn, soul, key, value, ahead_ms)| Op::Put { conn, soul, key, value, ahead_ms }),
        3 => (1u64..4, 0u8..3).prop_map(|(conn, soul)| Op::Get { conn, soul }),
        1 => (0u64..4_000).prop_map(|ms| Op::Advance { ms }),
        1 => (1u64..4).prop_map(|conn| Op::Reconnect { conn }),
    ]
}

/// What the peer should hold: HAM over every write whose time has come.
#[derive(Default)]
struct Model {
    graph: BTreeMap<(u8, u8), Field>,
    deferred: Vec<(u8, u8, Field)>,
}

impl Model {
    fn apply(&mut self, soul: u8, key: u8, f: Field) {
        let k = Key::new("k").expect("valid");
        let mut node: BTreeMap<Key, Field> = self
            .graph
            .get(&(soul, key))
            .map(|f| (k.clone(), f.clone()))
            .into_iter()
            .collect();
        merge_into(&mut node, &[(k.clone(), f)]);
        self.graph
            .insert((soul, key), node.remove(&k).expect("kept"));
    }

    fn catch_up(&mut self, wall: f64) {
        let due: Vec<_> = self
            .deferred
            .iter()
            .filter(|(_, _, f)| f.state.ms() <= wall)
            .cloned()
            .collect();
        self.deferred.retain(|(_, _, f)| f.state.ms() > wall);
        for (s, k, f) in due {
            self.apply(s, k, f);
        }
    }

    fn node(&self, soul: u8) -> BTreeMap<String, (String, f64)> {
        self.graph
            .iter()
            .filter(|((s, _), _)| *s == soul)
            .map(|((_, k), f)| (format!("k{k}"), (f.value.json_text(), f.state.ms())))
            .collect()
    }
}

/// A node of a reply, values as JavaScript's JSON text (so `1` and `1.0` compare equal).
fn reply_node(reply: &Json, soul: &str) -> BTreeMap<String, (String, f64)> {
    let Some(node) = reply
        .get("put")
        .and_then(|p| p.get(soul))
        .and_then(Json::as_object)
    else {
        return BTreeMap::new();
    };
    node.iter()
        .filter(|(k, _)| *k != "_")
        .map(|(k, v)| {
            (
                k.clone(),
                (
                    fibergun::json::stringify(v),
                    node["_"][">"][k].as_f64().expect("a state"),
                ),
            )
        })
        .collect()
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn the_peer_behaves_like_the_model(ops in prop::collection::vec(op(), 1..60)) {
        let mut h = Harness::with_seed(9);
        let mut model = Model::default();
        for conn in 1..4 {
            h.connect(conn);
        }
        let mut n = 0;
        for op in ops {
            n += 1;
            match op {
                Op::Put { conn, soul, key, value, ahead_ms } => {
                    let state = (h.now.wall_ms + ahead_ms as f64).round();
                    let id = format!("p{n}");
                    let msg = json!({"#": id, "put": {format!("s{soul}"): {"_": {"#": format!("s{soul}"), ">": {format!("k{key}"): state}}, format!("k{key}"): value.to_json()}}});
                    h.frame(conn, &msg.to_string());
                    let f = Field { value, state: State::new(state).expect("finite") };
                    let replies = h.replies_to(conn, &id);
                    if state > h.now.wall_ms {
                        prop_assert!(replies.is_empty(), "a future write was answered before its time");
                        model.deferred.push((soul, key, f));
                    } else {
                        prop_assert_eq!(replies.len(), 1, "exactly one answer to {}", id);
                        prop_assert_eq!(&replies[0]["ok"], &json!(true));
                        model.apply(soul, key, f);
                    }
                }
                Op::Get { conn, soul } => {
                    let id = format!("g{n}");
                    h.frame(conn, &json!({"#": id, "get": {"#": format!("s{soul}")}}).to_string());
                    let replies = h.replies_to(conn, &id);
                    prop_assert_eq!(replies.len(), 1, "exactly one answer to {}", id);
                    prop_assert_eq!(reply_node(&replies[0], &format!("s{soul}")), model.node(soul));
                }
                Op::Advance { ms } => {
                    h.advance(ms);
                    model.catch_up(h.now.wall_ms);
                }
                Op::Reconnect { conn } => {
                    h.disconnect(conn);
                    h.connect(conn);
                }
            }
            for conn in 1..4 {
                h.take(conn);
            }
        }
        // Everything deferred comes due eventually, and then the peer holds exactly the model.
        h.advance(10_000);
        model.catch_up(h.now.wall_ms);
        for soul in 0..3u8 {
            let stored: BTreeMap<String, (String, f64)> = h.store.nodes.get(format!("s{soul}").as_str())
                .map(|n| n.iter().map(|(k, f)| (k.to_string(), (f.value.json_text(), f.state.ms()))).collect())
                .unwrap_or_default();
            prop_assert_eq!(stored, model.node(soul));
        }
    }
}
