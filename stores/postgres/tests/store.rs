//! The PostgreSQL store against a real PostgreSQL server (started by the test on a private
//! folder and port): the schema, HAM and reads exactly as the reference store answers them,
//! hostile names, relays writing one field at once, the change feed, the database going away,
//! and the quota.

use std::collections::BTreeMap;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use fibergun::graph::{Field, Key, Soul, State, Value};
use fibergun::lex::{KeyQuery, Range};
use fibergun::store::ReadQuery;
use fibergun::{FeedEvent, MemStore, OpId, Store, StoreOp, StoreResult};
use fibergun_postgres::PgStore;
use fibergun_testkit::postgres::PgServer;

fn soul(s: &str) -> Soul {
    Soul::new(s).unwrap()
}

fn key(k: &str) -> Key {
    Key::new(k).unwrap()
}

fn field(value: Value, state: f64) -> Field {
    Field {
        value,
        state: State::new(state).unwrap(),
    }
}

fn merge(op: u64, s: &str, fields: &[(&str, Field)]) -> StoreOp {
    StoreOp::Merge {
        op: OpId(op),
        soul: soul(s),
        fields: fields.iter().map(|(k, f)| (key(k), f.clone())).collect(),
    }
}

fn read_node(op: u64, s: &str) -> StoreOp {
    StoreOp::Read {
        op: OpId(op),
        query: ReadQuery::Node {
            soul: soul(s),
            keys: KeyQuery::All,
            reverse: false,
            budget: u64::MAX,
        },
    }
}

/// Every row of the store, through a read of every soul.
fn everything(store: &mut impl Store) -> BTreeMap<Soul, BTreeMap<Key, Field>> {
    let results = store.apply(vec![StoreOp::Read {
        op: OpId(0),
        query: ReadQuery::Souls {
            range: Range::default(),
            reverse: false,
            budget: u64::MAX,
            after: None,
        },
    }]);
    let StoreResult::Read { nodes } = &results[0] else {
        panic!("{results:?}");
    };
    nodes
        .iter()
        .map(|n| (n.soul.clone(), n.fields.clone()))
        .collect()
}

#[test]
fn the_schema_is_made_once_checked_after_and_a_foreign_one_is_refused() {
    let pg = PgServer::start();
    drop(PgStore::open(&pg.url()).expect("creates the schema"));
    drop(PgStore::open(&pg.url()).expect("finds it"));
    assert_eq!(pg.psql("SELECT version FROM fibergun_schema").trim(), "1");
    pg.psql("UPDATE fibergun_schema SET version = 99");
    let err = PgStore::open(&pg.url()).err().expect("refused");
    assert!(err.contains("version 99"), "{err}");
    // A table of the same name that fibergun did not make.
    pg.psql("DROP VIEW fibergun_graph; DROP TABLE fibergun_fields; DROP TABLE fibergun_schema");
    pg.psql("CREATE TABLE fibergun_fields (x int)");
    let err = PgStore::open(&pg.url()).err().expect("refused");
    assert!(err.contains("not made by fibergun"), "{err}");
    // Nothing to reach.
    let err = PgStore::open("postgres://postgres@127.0.0.1:1/gun")
        .err()
        .expect("refused");
    assert!(err.contains("PostgreSQL"), "{err}");
    let err = PgStore::open("postgres://[bad").err().expect("refused");
    assert!(err.contains("does not parse"), "{err}");
}

#[test]
fn merges_and_reads_answer_as_the_reference_store_does() {
    let pg = PgServer::start();
    let mut store = PgStore::open(&pg.url()).unwrap();
    let mut reference = MemStore::new();
    // Equal states tie-break on the JSON text in UTF-16 order: U+FFFF sorts above an astral
    // character there, below it in UTF-8.
    let texts = ["a", "b", "\u{ffff}", "😀", "\u{e000}x", "", "\"q\""];
    let values: Vec<Value> = texts
        .iter()
        .map(|t| Value::String((*t).into()))
        .chain([
            Value::Null,
            Value::Bool(true),
            Value::Number(0.5),
            Value::Number(-3.0),
            Value::Link(soul("n1")),
        ])
        .collect();
    // A fixed pseudo-random walk of batches: merges and reads interleaved.
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = |n: u64| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x % n
    };
    let mut op = 0;
    for _ in 0..60 {
        let mut batch = Vec::new();
        for _ in 0..1 + next(8) {
            op += 1;
            let s = format!("n{}", next(4));
            if next(4) == 0 {
                batch.push(read_node(op, &s));
                continue;
            }
            let fields: Vec<(String, Field)> = (0..1 + next(3))
                .map(|_| {
                    let v = values[next(values.len() as u64) as usize].clone();
                    // Few states, so ties are common; some fractional.
                    let state = 1000.0 + next(3) as f64 + if next(2) == 0 { 0.25 } else { 0.0 };
                    (format!("k{}", next(5)), field(v, state))
                })
                .collect();
            let fields: Vec<(&str, Field)> = fields
                .iter()
                .map(|(k, f)| (k.as_str(), f.clone()))
                .collect();
            batch.push(merge(op, &s, &fields));
        }
        let expected = reference.apply(batch.clone());
        assert_eq!(store.apply(batch), expected);
    }
    assert_eq!(everything(&mut store), reference.nodes);
    // Ranges, prefixes, reverse reads and budgets, of a node and of souls.
    let queries = [
        ReadQuery::Node {
            soul: soul("n1"),
            keys: KeyQuery::Range(Range {
                prefix: None,
                lower: Some("k1".into()),
                upper: Some("k3".into()),
            }),
            reverse: true,
            budget: 20,
        },
        ReadQuery::Node {
            soul: soul("n2"),
            keys: KeyQuery::Range(Range {
                prefix: Some("k".into()),
                ..Range::default()
            }),
            reverse: false,
            budget: 10,
        },
        ReadQuery::Node {
            soul: soul("n0"),
            keys: KeyQuery::One(key("k2")),
            reverse: false,
            budget: 1,
        },
        ReadQuery::Souls {
            range: Range {
                prefix: None,
                lower: Some("n1".into()),
                upper: Some("n2".into()),
            },
            reverse: false,
            budget: 30,
            after: Some((soul("n1"), key("k1"))),
        },
        ReadQuery::Souls {
            range: Range::default(),
            reverse: true,
            budget: 40,
            after: None,
        },
    ];
    for query in queries {
        let read = vec![StoreOp::Read {
            op: OpId(0),
            query: query.clone(),
        }];
        assert_eq!(
            store.apply(read.clone()),
            reference.apply(read),
            "{query:?}"
        );
    }
    // The rows are readable in plain SQL.
    let shown = pg.psql("SELECT count(*) FROM fibergun_graph WHERE soul LIKE 'n%'");
    let rows: usize = reference.nodes.values().map(BTreeMap::len).sum();
    assert_eq!(shown.trim(), rows.to_string());
}

#[test]
fn hostile_souls_keys_and_values_round_trip_exactly() {
    let pg = PgServer::start();
    let mut store = PgStore::open(&pg.url()).unwrap();
    let names = [
        "'; DROP TABLE fibergun_fields; --",
        "back\\slash \"quote\" 'single'",
        "nul \u{0} inside",
        "astral 😀 𝄞 and \u{ffff}",
        "$1 $$ %s ?",
        "\n\t\r",
    ];
    let mut op = 0;
    for name in names {
        op += 1;
        let value = Value::String(format!("{name} as a value").into());
        let batch = vec![merge(op, name, &[(name, field(value.clone(), 5.0))])];
        assert!(
            matches!(&store.apply(batch)[0], StoreResult::Merged { changed, .. } if changed.len() == 1)
        );
        let results = store.apply(vec![read_node(op, name)]);
        let StoreResult::Read { nodes } = &results[0] else {
            panic!("{results:?}");
        };
        assert_eq!(nodes[0].soul.as_str(), name);
        assert_eq!(nodes[0].fields[&key(name)].value, value);
    }
    assert_eq!(everything(&mut store).len(), names.len());
    assert_eq!(pg.psql("SELECT count(*) FROM fibergun_fields").trim(), "6");
    // The view shows what it can (a NUL is not text in PostgreSQL).
    assert_eq!(
        pg.psql("SELECT count(*) FROM fibergun_graph WHERE soul IS NULL")
            .trim(),
        "1"
    );
}

#[test]
fn relays_writing_the_same_fields_at_once_end_with_the_ham_winner() {
    let pg = PgServer::start();
    drop(PgStore::open(&pg.url()).unwrap());
    // Four writers, each its own store (a relay), each writing every field of the same nodes
    // with its own values and states, in batches, at the same time.
    let writers: Vec<_> = (0..4u64)
        .map(|w| {
            let url = pg.url();
            std::thread::spawn(move || {
                let mut store = PgStore::open(&url).unwrap();
                let mut mine = Vec::new();
                for round in 0..40u64 {
                    let mut batch = Vec::new();
                    for n in 0..3 {
                        let state = 1000.0 + ((round * 7 + w * 3 + n) % 11) as f64;
                        let value = Value::String(format!("w{w}r{round}").into());
                        let f = field(value, state);
                        mine.push((format!("s{n}"), f.clone()));
                        batch.push(merge(round * 3 + n, &format!("s{n}"), &[("k", f)]));
                    }
                    for result in store.apply(batch) {
                        assert!(matches!(result, StoreResult::Merged { .. }), "{result:?}");
                    }
                }
                mine
            })
        })
        .collect();
    let mut reference = MemStore::new();
    for writer in writers {
        for (s, f) in writer.join().unwrap() {
            reference.apply(vec![merge(0, &s, &[("k", f)])]);
        }
    }
    let mut store = PgStore::open(&pg.url()).unwrap();
    assert_eq!(everything(&mut store), reference.nodes);
}

/// Waits for the feed to hand over `soul`.`k` with `expected`.
fn wait_feed(rx: &mpsc::Receiver<FeedEvent>, s: &str, expected: &Value) {
    let end = Instant::now() + Duration::from_secs(15);
    loop {
        let left = end.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(FeedEvent::Changed { soul, fields }) if soul.as_str() == s => {
                if fields
                    .iter()
                    .any(|(k, f)| k.as_str() == "k" && f.value == *expected)
                {
                    return;
                }
            }
            Ok(_) => {}
            Err(_) => panic!("the feed never brought {s}.k = {expected:?}"),
        }
    }
}

#[test]
fn the_feed_brings_what_other_relays_commit_and_says_when_it_had_a_gap() {
    let mut pg = PgServer::start();
    let mut a = PgStore::open(&pg.url()).unwrap();
    let mut b = PgStore::open(&pg.url()).unwrap();
    let (tx, rx) = mpsc::channel();
    b.start_feed(Box::new(move |e| {
        let _ = tx.send(e);
    }));
    let wait_listening = |b: &PgStore| {
        let end = Instant::now() + Duration::from_secs(15);
        while !b.stats().read().feed_connected {
            assert!(Instant::now() < end, "the feed never listened");
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    wait_listening(&b);
    // What was committed before it first listened was announced to no one here: that first
    // connection, too, is reported as a gap, so its subscribed nodes are read again.
    assert!(matches!(
        rx.recv_timeout(Duration::from_secs(15)),
        Ok(FeedEvent::Gap)
    ));
    a.apply(vec![merge(
        1,
        "chat",
        &[("k", field(Value::Number(1.0), 10.0))],
    )]);
    wait_feed(&rx, "chat", &Value::Number(1.0));
    // Its own commits are not handed back.
    b.apply(vec![merge(
        1,
        "own",
        &[("k", field(Value::Number(2.0), 10.0))],
    )]);
    a.apply(vec![merge(
        2,
        "chat",
        &[("k", field(Value::Number(3.0), 11.0))],
    )]);
    wait_feed(&rx, "chat", &Value::Number(3.0));
    assert!(rx
        .try_iter()
        .all(|e| !matches!(e, FeedEvent::Changed { soul, .. } if soul.as_str() == "own")));
    // The database restarts: writes fail meanwhile, then go on; the feed reports its gap.
    pg.stop();
    let failed = a.apply(vec![merge(
        3,
        "chat",
        &[("k", field(Value::Number(4.0), 12.0))],
    )]);
    assert!(
        matches!(&failed[0], StoreResult::Failed { reason } if reason.contains("PostgreSQL")),
        "{failed:?}"
    );
    pg.start_again();
    let end = Instant::now() + Duration::from_secs(30);
    loop {
        match rx.recv_timeout(end.saturating_duration_since(Instant::now())) {
            Ok(FeedEvent::Gap) => break,
            Ok(_) => {}
            Err(_) => panic!("no gap reported"),
        }
    }
    wait_listening(&b);
    let ok = a.apply(vec![merge(
        4,
        "chat",
        &[("k", field(Value::Number(5.0), 13.0))],
    )]);
    assert!(matches!(&ok[0], StoreResult::Merged { .. }), "{ok:?}");
    wait_feed(&rx, "chat", &Value::Number(5.0));
    assert!(b.stats().read().feed_gaps >= 1);
}

#[test]
fn past_the_quota_merges_are_refused_and_reads_go_on() {
    let pg = PgServer::start();
    let mut store = PgStore::open(&pg.url()).unwrap();
    store.set_quota(Some(256 << 10));
    let big = Value::String("v".repeat(4000).into());
    let mut refused = None;
    for i in 0..2000u64 {
        let batch = vec![merge(
            i,
            &format!("q{i}"),
            &[("k", field(big.clone(), 1.0))],
        )];
        match &store.apply(batch)[0] {
            StoreResult::Merged { .. } => {}
            StoreResult::Failed { reason } => {
                refused = Some((i, reason.clone()));
                break;
            }
            other => panic!("{other:?}"),
        }
        // The size is measured at most once a second.
        std::thread::sleep(Duration::from_millis(2));
    }
    let (at, reason) = refused.expect("the quota never bit");
    assert!(reason.contains("quota"), "{reason}");
    assert!(at > 10);
    let results = store.apply(vec![read_node(0, "q0")]);
    assert!(
        matches!(&results[0], StoreResult::Read { nodes } if nodes.len() == 1),
        "{results:?}"
    );
}
