//! Microbenchmarks of the hot path: frame parse and serialize, HAM merge, the core's handling of
//! one put and one cached GET, SEA's write rules and one signature check, and one store batch. Each case runs for a fixed time several times
//! and reports the median time per operation.

use std::hint::black_box;
use std::time::{Duration, Instant};

use fibergun::{
    ham, wire, ConnId, Direction, Field, Input, Key, Limits, MemStore, Now, Output, Peer, Soul,
    State, Store, StoreOp, StoreResult, Value,
};

/// One measured case.
pub struct Case {
    /// What was measured.
    pub name: &'static str,
    /// Median nanoseconds per operation.
    pub ns_per_op: f64,
}

/// Runs `op` in rounds for about `budget` in all; returns the median ns per call over the rounds.
fn measure(budget: Duration, op: &mut dyn FnMut()) -> f64 {
    // Calibrate: how many calls fill a tenth of the budget; then seven rounds of that.
    let mut calls = 1u64;
    loop {
        let t = Instant::now();
        for _ in 0..calls {
            op();
        }
        if t.elapsed() >= budget / 10 || calls >= 1 << 30 {
            break;
        }
        calls *= 2;
    }
    let mut rounds: Vec<f64> = (0..7)
        .map(|_| {
            let t = Instant::now();
            for _ in 0..calls {
                op();
            }
            t.elapsed().as_nanos() as f64 / calls as f64
        })
        .collect();
    rounds.sort_by(f64::total_cmp);
    rounds[rounds.len() / 2]
}

const PUT: &str = r##"{"#":"m1","put":{"chat/room/1":{"_":{"#":"chat/room/1",">":{"text":1700000000000,"who":1700000000000}},"text":"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef","who":"alice"}}}"##;
const GET: &str = r##"{"#":"g1","get":{"#":"chat/room/1"}}"##;

fn field(value: &str, state: f64) -> Field {
    Field {
        value: Value::String(value.into()),
        state: State::new(state).expect("a valid state"),
    }
}

/// Every case whose name contains `only`, each given about `budget` of time.
pub fn run(budget: Duration, only: &str) -> Vec<Case> {
    let limits = Limits::default();
    let mut cases = Vec::new();
    let mut case = |name: &'static str, op: &mut dyn FnMut()| {
        if name.contains(only) {
            let ns_per_op = measure(budget, op);
            cases.push(Case { name, ns_per_op });
        }
    };

    case("parse a put frame (1 node, 2 fields)", &mut || {
        black_box(wire::parse_frame(black_box(PUT), &limits, || "x".into()).ok());
    });
    case("parse a GET frame", &mut || {
        black_box(wire::parse_frame(black_box(GET), &limits, || "x".into()).ok());
    });
    let parsed = wire::parse_frame(PUT, &limits, || "x".into())
        .ok()
        .and_then(|mut msgs| msgs.pop())
        .and_then(Result::ok)
        .expect("the put parses");
    case("serialize a put message (1 node, 2 fields)", &mut || {
        black_box(wire::write_message(black_box(&parsed)));
    });
    // HAM: the four outcomes in turn (newer, older, equal state with each value order).
    let current = field("m", 100.0);
    let incoming = [
        field("m", 101.0),
        field("m", 99.0),
        field("z", 100.0),
        field("a", 100.0),
    ];
    let mut turn = 0;
    case("HAM merge of one field", &mut || {
        turn = (turn + 1) & 3;
        black_box(ham::merge(black_box(&incoming[turn]), Some(&current)));
    });

    case("core: one put, frame in to ack out", &mut core_put());
    case(
        "core: one cached GET, frame in to reply out",
        &mut core_get(),
    );

    // SEA: the rules for one field written into a user's space, and its signature check.
    let pair = fibergun::sea::KeyPair::from_private("rSRdCZ2OxJ1NT2VZ14drp-GWZLw1O50eCW0s41EAhVk")
        .expect("a valid private key");
    let soul = format!("~{}", pair.public().as_str());
    let value = serde_json::json!("0123456789abcdef0123456789abcdef");
    let stored = Value::String(
        fibergun::sea::SignedValue::sign(&pair, &soul, "name", &value, 1.7e12).into(),
    );
    case(
        "SEA: the write rules for one signed field (no crypto)",
        &mut || {
            black_box(fibergun::sea::rules::plan(&soul, "name", &stored, 1.7e12, 1.8e12).ok());
        },
    );
    let check = match fibergun::sea::rules::plan(&soul, "name", &stored, 1.7e12, 1.8e12) {
        Ok(fibergun::sea::rules::Plan::Verify { mut checks, .. }) => checks.remove(0),
        other => panic!("a signed field needs a signature check: {other:?}"),
    };
    case("SEA: verify one signature (P-256)", &mut || {
        assert!(black_box(&check).holds());
    });

    let mut mem = MemStore::new();
    let mut batch_no = 0u64;
    case("MemStore: a batch of 100 merges", &mut || {
        batch_no += 1;
        black_box(mem.apply(merges(batch_no, 100)));
    });
    let dir = std::env::temp_dir().join(format!("fibergun-micro-{}", std::process::id()));
    match fibergun_lmdb::LmdbStore::open(&dir, 8 << 30) {
        Ok(mut store) => case(
            "LMDB: a batch of 100 merges, committed and fsync'd",
            &mut || {
                batch_no += 1;
                black_box(store.apply(merges(batch_no, 100)));
            },
        ),
        Err(e) => eprintln!("fibergun-bench: LMDB batch skipped: {}", e.0),
    }
    let _ = std::fs::remove_dir_all(&dir);
    cases
}

/// `n` merges of one 64-byte field each, to souls no earlier batch used.
fn merges(batch: u64, n: u64) -> Vec<StoreOp> {
    let key = Key::new("v").expect("a valid key");
    (0..n)
        .map(|i| StoreOp::Merge {
            op: fibergun::OpId(batch * n + i),
            soul: Soul::new(&format!("micro/{batch}/{i}")).expect("a valid soul"),
            fields: vec![(key.clone(), field(&"x".repeat(64), 1.7e12))],
        })
        .collect()
}

/// A peer with one connected client, and a clock that moves 1 ms per call (so dedup entries
/// expire as they would in a real run, and the table stays at its steady size).
struct Core {
    peer: Peer,
    start: Instant,
    ms: u64,
}

impl Core {
    fn new() -> Core {
        let start = Instant::now();
        let mut core = Core {
            peer: Peer::new(
                fibergun::Config::default(),
                Now {
                    mono: start,
                    wall_ms: 1.8e12,
                },
            ),
            start,
            ms: 0,
        };
        let now = core.tick();
        core.peer
            .handle_input(
                now,
                Input::Connected {
                    conn: ConnId(1),
                    direction: Direction::Inbound,
                },
            )
            .expect("connect");
        core.drain(&mut Vec::new());
        core
    }

    fn tick(&mut self) -> Now {
        self.ms += 1;
        Now {
            mono: self.start + Duration::from_millis(self.ms),
            wall_ms: 1.8e12 + self.ms as f64,
        }
    }

    /// Drains outputs; store ops are collected into `ops`. Returns the frames sent.
    fn drain(&mut self, ops: &mut Vec<StoreOp>) -> usize {
        let mut sent = 0;
        while let Some(out) = self.peer.poll_output() {
            match out {
                Output::Send { .. } => sent += 1,
                Output::Store(op) => ops.push(op),
                // The timed paths close nothing, dial nothing and write unsigned data.
                Output::Close { .. }
                | Output::Event(_)
                | Output::Verify { .. }
                | Output::Dial { .. } => {}
            }
        }
        sent
    }

    fn frame(&mut self, text: &str) {
        let now = self.tick();
        self.peer
            .handle_input(
                now,
                Input::Frame {
                    conn: ConnId(1),
                    text,
                },
            )
            .expect("a frame is never a misuse");
    }
}

/// Frames with distinct ids (a repeated id would be dropped as a duplicate).
fn frames(n: usize, make: impl Fn(usize) -> String) -> Vec<String> {
    (0..n).map(make).collect()
}

fn core_put() -> impl FnMut() {
    let mut core = Core::new();
    let puts = frames(20_000, |i| {
        format!(
            r##"{{"#":"p{i}","put":{{"s/{i}":{{"_":{{"#":"s/{i}",">":{{"v":1700000000000}}}},"v":"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"}}}}}}"##
        )
    });
    let mut next = 0;
    let mut ops = Vec::new();
    move || {
        core.frame(&puts[next % puts.len()]);
        next += 1;
        ops.clear();
        core.drain(&mut ops);
        // The store's answer, as if every field changed.
        for op in ops.drain(..) {
            let StoreOp::Merge { op, fields, .. } = op else {
                continue;
            };
            let now = core.tick();
            core.peer
                .handle_input(
                    now,
                    Input::StoreDone {
                        op,
                        result: StoreResult::Merged {
                            changed: fields,
                            space_bytes: None,
                        },
                    },
                )
                .expect("a result for an op in flight");
        }
        black_box(core.drain(&mut ops));
    }
}

fn core_get() -> impl FnMut() {
    let mut core = Core::new();
    // Write the node, answer the store's merge and the first read, so later GETs hit the cache.
    core.frame(PUT);
    let mut ops = Vec::new();
    let mut store = MemStore::new();
    for _ in 0..4 {
        core.frame(r##"{"#":"warm","get":{"#":"chat/room/1"}}"##);
        ops.clear();
        core.drain(&mut ops);
        let ids: Vec<_> = ops.iter().map(StoreOp::id).collect();
        for (op, result) in ids.into_iter().zip(store.apply(std::mem::take(&mut ops))) {
            let now = core.tick();
            core.peer
                .handle_input(now, Input::StoreDone { op, result })
                .expect("a result for an op in flight");
        }
        core.drain(&mut ops);
    }
    let gets = frames(20_000, |i| {
        format!(r##"{{"#":"g{i}","get":{{"#":"chat/room/1"}}}}"##)
    });
    let mut next = 0;
    move || {
        core.frame(&gets[next % gets.len()]);
        next += 1;
        ops.clear();
        let sent = core.drain(&mut ops);
        debug_assert!(
            ops.is_empty() && sent == 1,
            "a cached GET is answered at once"
        );
        black_box(sent);
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_case_runs_and_measures_something() {
        let cases = super::run(std::time::Duration::from_millis(20), "");
        assert_eq!(cases.len(), 10, "a case is missing");
        for c in &cases {
            assert!(c.ns_per_op.is_finite() && c.ns_per_op > 0.0, "{}", c.name);
        }
    }
}
