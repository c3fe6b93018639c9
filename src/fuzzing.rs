//! Entry points for the fuzz targets under `fuzz/`, kept in the crate so that every input a fuzzer
//! ever found can be replayed by a plain test (`tests/fuzz_regressions.rs`). Each function takes
//! raw bytes and panics only when an invariant breaks.

use serde_json::Value as Json;

use crate::graph::{Field, State, Value};
use crate::ham::{self, Decision};
use crate::json::stringify;
use crate::limits::Limits;
use crate::testing::Harness;
use crate::wire;
use crate::{Config, ConnId, RemoteId, RemoteState};

/// Reads structured choices out of fuzz bytes; runs dry as zeros.
pub struct Bytes<'a> {
    data: &'a [u8],
}

impl<'a> Bytes<'a> {
    /// Wraps fuzz input.
    pub fn new(data: &'a [u8]) -> Bytes<'a> {
        Bytes { data }
    }

    /// Whether any input is left.
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// One byte.
    pub fn byte(&mut self) -> u8 {
        let Some((&b, rest)) = self.data.split_first() else {
            return 0;
        };
        self.data = rest;
        b
    }

    /// A number in `0..n` (n > 0).
    pub fn below(&mut self, n: u32) -> u32 {
        let v = u32::from_le_bytes([self.byte(), self.byte(), self.byte(), self.byte()]);
        v % n.max(1)
    }

    /// Up to `max` bytes as (lossy) text.
    pub fn text(&mut self, max: usize) -> String {
        let len = (self.byte() as usize).min(max).min(self.data.len());
        let (head, rest) = self.data.split_at(len);
        self.data = rest;
        String::from_utf8_lossy(head).into_owned()
    }

    /// A value of every kind, with small alphabets so that ties happen.
    pub fn value(&mut self) -> Value {
        match self.below(6) {
            0 => Value::Null,
            1 => Value::Bool(self.byte() & 1 == 1),
            2 => Value::Number(f64::from(self.below(5))),
            3 => {
                let f = f64::from_bits(u64::from_le_bytes(std::array::from_fn(|_| self.byte())));
                Value::Number(if f.is_finite() && f != 0.0 { f } else { 1.5 })
            }
            4 => Value::Link(crate::Soul::new(&format!("l{}", self.text(3))).expect("non-empty")),
            _ => Value::String(self.text(4).into()),
        }
    }

    /// A state near a few fixed points, so that equal states are common.
    pub fn state(&mut self) -> State {
        let base = [0.0, 1.0, 1_700_000_000_000.0, 1_700_000_000_000.5][self.below(4) as usize];
        State::new(base + f64::from(self.below(3))).expect("finite")
    }
}

/// Frame parsing from raw bytes never panics, reads exactly the JSON serde_json reads, and
/// whatever parses re-serialises to JSON.
pub fn parse_frame(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let limits = Limits {
        max_frame_bytes: 1 << 16,
        ..Limits::default()
    };
    let parsed = wire::parse_frame(&text, &limits, || "generated".into());
    reads_what_serde_json_reads(&text, &parsed);
    if let Ok(items) = parsed {
        agrees_with_the_json_tree(&text, &items, &limits);
        for msg in items.into_iter().flatten() {
            if let wire::Body::Put(graph) = msg.body {
                let mut out = String::new();
                graph.write_json(&mut out);
                let back: Json = serde_json::from_str(&out).expect("graphs are written as JSON");
                let again =
                    crate::Graph::from_json(&back, &limits).expect("a parsed graph stays valid");
                assert_eq!(again.nodes.len(), graph.nodes.len());
            }
        }
    }
}

/// A one-message frame is read as JSON exactly when serde_json reads it (escapes of lone UTF-16
/// surrogates first made U+FFFD, as the wire reader reads them).
fn reads_what_serde_json_reads(text: &str, parsed: &Result<Vec<wire::Parsed>, wire::FrameError>) {
    if !text
        .trim_start_matches([' ', '\t', '\n', '\r'])
        .starts_with('{')
    {
        return;
    }
    let by_serde = serde_json::from_str::<Json>(&wire::replace_lone_surrogates(text));
    match parsed {
        Ok(_) => assert!(by_serde.is_ok(), "read, but not JSON: {text:?}"),
        Err(wire::FrameError::BadJson(e)) => {
            assert!(by_serde.is_err(), "refused ({e}), but JSON: {text:?}")
        }
        Err(_) => {}
    }
}

/// A put read straight from a one-message frame's text gives what its JSON tree gives: the same
/// graph, or the same refusal.
fn agrees_with_the_json_tree(text: &str, items: &[wire::Parsed], limits: &Limits) {
    let (Ok(Json::Object(message)), [item]) = (serde_json::from_str::<Json>(text), items) else {
        return;
    };
    let Some(put) = message.get("put") else {
        return;
    };
    let by_tree = crate::Graph::from_json(put, limits);
    match item {
        Ok(wire::Message {
            body: wire::Body::Put(graph),
            ..
        }) => assert_eq!(by_tree.as_ref(), Ok(graph), "{text}"),
        Err(e) if e.reason.starts_with("invalid graph") => {
            assert_eq!(by_tree.map_err(|e| e.0), Err(e.reason.clone()), "{text}")
        }
        _ => {}
    }
}

/// HAM's merge against a straightforward reference: higher state wins; at equal states the value
/// whose JSON text is greater by UTF-16 code units wins.
pub fn ham_merge(data: &[u8]) {
    let mut b = Bytes::new(data);
    let current = Field {
        value: b.value(),
        state: b.state(),
    };
    let incoming = Field {
        value: b.value(),
        state: b.state(),
    };
    let reference = if incoming.state != current.state {
        incoming.state > current.state
    } else {
        let a: Vec<u16> = stringify(&incoming.value.to_json())
            .encode_utf16()
            .collect();
        let c: Vec<u16> = stringify(&current.value.to_json()).encode_utf16().collect();
        a > c
    };
    let decision = ham::merge(&incoming, Some(&current));
    assert_eq!(
        decision == Decision::Accept,
        reference,
        "{incoming:?} against {current:?}"
    );
    // A join: merging the winner again changes nothing, whichever side it came from.
    let winner = if reference { &incoming } else { &current };
    assert_ne!(ham::merge(winner, Some(winner)), Decision::Accept);
    assert_ne!(ham::merge(&incoming, Some(winner)), Decision::Accept);
    assert_ne!(ham::merge(&current, Some(winner)), Decision::Accept);
}

/// The peer fed arbitrary inputs: connections, frames (raw bytes, or messages built from the
/// bytes), handshakes naming itself or other peers, the outcomes of dials of its configured peer,
/// storage completions held or released, and time. It must not panic, every frame it sends must
/// be JSON, every put it acknowledges must be in the store, and its pending work must stay within
/// its limits.
pub fn peer_ops(data: &[u8]) {
    let mut b = Bytes::new(data);
    let mut h = Harness::new(Config {
        seed: u64::from(b.byte()),
        pid: Some("fz".into()),
        peers: vec!["ws://fuzz.invalid/gun".into()],
        limits: Limits {
            reconnect_min_ms: 10,
            reconnect_max_ms: 1_000,
            ..Limits::default()
        },
        ..Config::default()
    });
    let limits = h.peer.limits().clone();
    let mut acked_puts: Vec<(String, String, Field)> = Vec::new();
    let mut sent_puts: Vec<(String, String, String, Field)> = Vec::new();
    let mut steps = 0;
    while !b.is_empty() && steps < 200 {
        steps += 1;
        let conn = u64::from(b.below(3));
        match b.below(11) {
            0 if !h.peer.is_open(ConnId(conn)) => h.connect(conn),
            0 => {}
            1 => h.disconnect(conn),
            2 => {
                let text = b.text(200);
                if h.peer.is_open(ConnId(conn)) {
                    h.frame(conn, &text);
                }
            }
            3 | 4 => {
                if !h.peer.is_open(ConnId(conn)) {
                    continue;
                }
                let id = format!("p{steps}");
                let soul = format!("s{}", b.below(3));
                let key = format!("k{}", b.below(3));
                let field = Field {
                    value: b.value(),
                    state: State::new(h.now.wall_ms - f64::from(b.below(3))).expect("finite"),
                };
                let msg = serde_json::json!({"#": id, "put": {&soul: {"_": {"#": &soul, ">": {&key: field.state.ms()}}, &key: field.value.to_json()}}});
                h.frame(conn, &msg.to_string());
                sent_puts.push((id, soul, key, field));
            }
            5 => {
                if h.peer.is_open(ConnId(conn)) {
                    let msg = serde_json::json!({"#": format!("g{steps}"), "get": {"#": format!("s{}", b.below(3))}});
                    h.frame(conn, &msg.to_string());
                }
            }
            6 => h.auto_store = !h.auto_store,
            7 => h.commit(),
            8 => {
                // A dial the peer asked for connects (as `conn`) or fails.
                if h.peer.remotes()[0].state == RemoteState::Dialing {
                    if b.byte() & 1 == 1 && !h.peer.is_open(ConnId(conn)) {
                        h.dialled(RemoteId(0), conn);
                    } else {
                        h.dial_failed(RemoteId(0));
                    }
                }
            }
            9 => {
                if h.peer.is_open(ConnId(conn)) {
                    let pid = ["fz", "other", "third"][b.below(3) as usize];
                    let reply_to = (b.byte() & 1 == 1).then_some("x");
                    h.frame(conn, &wire::dam_hello(&format!("h{steps}"), reply_to, pid));
                }
            }
            _ => h.advance(u64::from(b.below(30_000))),
        }
        // Invariants after every step.
        assert!(h.peer.pending_store_ops() <= limits.max_pending_store_ops);
        for (conn, text) in std::mem::take(&mut h.frames) {
            assert!(conn.0 < 3, "a frame to a connection that never opened");
            let msgs = match serde_json::from_str::<Json>(&text).expect("the peer sends JSON") {
                Json::Array(items) => items,
                one => vec![one],
            };
            for reply in msgs.iter().filter(|m| m["ok"] == true) {
                if let Some(p) = sent_puts.iter().find(|p| reply["@"] == p.0.as_str()) {
                    acked_puts.push((p.1.clone(), p.2.clone(), p.3.clone()));
                }
            }
        }
        h.events.clear();
    }
    // Every acknowledged put is durable: the store holds it or something HAM ranks above it.
    for (soul, key, field) in acked_puts {
        let stored = h
            .store
            .nodes
            .get(soul.as_str())
            .and_then(|n| n.get(key.as_str()))
            .expect("an acked put is in the store");
        assert_ne!(
            ham::merge(&field, Some(stored)),
            Decision::Accept,
            "an acked write was lost"
        );
    }
}
