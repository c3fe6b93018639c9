//! A harness that drives one [`Peer`] against the in-memory store with a hand-moved clock: the
//! drive loop of the crate docs, in a form tests (and embedders' tests) can step through.
//!
//! Storage runs in one of two modes: applied as soon as ops appear ([`Harness::auto_store`], the
//! default), or held until [`Harness::commit`], to observe what happens before a commit.

use std::time::{Duration, Instant};

use serde_json::Value as Json;

use crate::peer::{Config, ConnId, Direction, Event, Input, Now, Output, Peer, RemoteId, VerifyId};
use crate::sea::rules::SignatureCheck;
use crate::store::{MemStore, Store, StoreOp, StoreResult};

/// One peer, its store, its clock, and everything it sent.
#[derive(Debug)]
pub struct Harness {
    /// The peer under test.
    pub peer: Peer,
    /// Its store.
    pub store: MemStore,
    /// The current time.
    pub now: Now,
    /// Every frame sent, in order, with its connection.
    pub frames: Vec<(ConnId, String)>,
    /// Events the peer emitted.
    pub events: Vec<Event>,
    /// Connections the peer closed.
    pub closed: Vec<ConnId>,
    /// Dials the peer asked for, in order.
    pub dials: Vec<(RemoteId, String)>,
    /// Signature checks asked for and not yet run (at once while pumping, with `auto_verify`).
    pub verifying: Vec<(VerifyId, Vec<SignatureCheck>)>,
    /// Run signature checks as soon as they are asked for; when off, [`Harness::verify`] runs
    /// them (a runtime slow to answer, or one that never does).
    pub auto_verify: bool,
    /// Ops emitted and not yet applied (only when `auto_store` is off).
    pub held: Vec<StoreOp>,
    /// Apply storage ops as soon as they are emitted.
    pub auto_store: bool,
}

/// The wall clock harnesses start at: 2023-11-14T22:13:20Z.
pub const START_WALL_MS: f64 = 1_700_000_000_000.0;

impl Harness {
    /// A harness around a peer made from `config`.
    pub fn new(config: Config) -> Harness {
        Harness::with_store(config, MemStore::new())
    }

    /// A harness around a peer made from `config`, on `store` (a restart on what a previous
    /// peer committed).
    pub fn with_store(config: Config, store: MemStore) -> Harness {
        let now = Now {
            mono: Instant::now(),
            wall_ms: START_WALL_MS,
        };
        let mut h = Harness {
            peer: Peer::new(config, now),
            store,
            now,
            frames: Vec::new(),
            events: Vec::new(),
            closed: Vec::new(),
            dials: Vec::new(),
            verifying: Vec::new(),
            auto_verify: true,
            held: Vec::new(),
            auto_store: true,
        };
        // A new peer may already want something done (dial its configured peers).
        h.pump();
        h
    }

    /// A harness with the default config and `seed`.
    pub fn with_seed(seed: u64) -> Harness {
        Harness::new(Config {
            seed,
            ..Config::default()
        })
    }

    fn input(&mut self, input: Input<'_>) {
        self.peer
            .handle_input(self.now, input)
            .expect("the harness follows the driving contract");
        self.pump();
    }

    fn pump(&mut self) {
        loop {
            self.drain_outputs();
            if self.auto_verify && !self.verifying.is_empty() {
                self.run_verifications();
                continue;
            }
            if !self.auto_store || self.held.is_empty() {
                return;
            }
            self.apply_held();
        }
    }

    /// Runs the signature checks asked for, in order, and reports their results.
    fn run_verifications(&mut self) {
        for (id, checks) in std::mem::take(&mut self.verifying) {
            let results: Vec<bool> = checks.iter().map(SignatureCheck::holds).collect();
            self.peer
                .handle_input(
                    self.now,
                    Input::Verified {
                        id,
                        results: &results,
                    },
                )
                .expect("verification results name their checks");
            self.drain_outputs();
        }
    }

    fn drain_outputs(&mut self) {
        while let Some(out) = self.peer.poll_output() {
            match out {
                Output::Send { conn, text } => self.frames.push((conn, text)),
                Output::Close { conn, .. } => self.closed.push(conn),
                Output::Store(op) => self.held.push(op),
                Output::Event(e) => self.events.push(e),
                Output::Dial { remote, url } => self.dials.push((remote, url)),
                Output::Verify { id, checks } => self.verifying.push((id, checks)),
            }
        }
    }

    fn apply_held(&mut self) {
        let ops = std::mem::take(&mut self.held);
        let ids: Vec<_> = ops.iter().map(StoreOp::id).collect();
        for (op, result) in ids.into_iter().zip(self.store.apply(ops)) {
            self.peer
                .handle_input(self.now, Input::StoreDone { op, result })
                .expect("results are fed in op order");
            self.drain_outputs();
        }
    }

    /// Runs the signature checks waiting (with `auto_verify` off) and reports their results.
    pub fn verify(&mut self) {
        self.run_verifications();
        self.pump();
    }

    /// Fails every held op (a batch whose transaction could not commit) with `reason`, and
    /// feeds the failures back.
    pub fn fail_held(&mut self, reason: &str) {
        for op in std::mem::take(&mut self.held) {
            let result = StoreResult::Failed {
                reason: reason.to_owned(),
            };
            self.peer
                .handle_input(
                    self.now,
                    Input::StoreDone {
                        op: op.id(),
                        result,
                    },
                )
                .expect("results are fed in op order");
            self.drain_outputs();
        }
        self.pump();
    }

    /// Applies every held op as one committed batch and feeds the results back.
    pub fn commit(&mut self) {
        self.apply_held();
        self.pump();
    }

    /// Hands the peer the result of op `op` (held with `auto_store` off, and applied by the
    /// test itself, to order results against other inputs).
    pub fn store_done(&mut self, op: crate::OpId, result: StoreResult) {
        self.input(Input::StoreDone { op, result });
    }

    /// Another writer committed `fields` of `soul` to the shared store (the change feed reports
    /// them). The harness's store is not touched: write them there too to model the database.
    pub fn store_changed(&mut self, soul: &str, fields: Vec<(crate::Key, crate::Field)>) {
        let soul = crate::Soul::new(soul).expect("a valid soul");
        self.input(Input::StoreChanged { soul, fields });
    }

    /// The shared store's change feed had a gap.
    pub fn feed_gap(&mut self) {
        self.input(Input::StoreFeedGap);
    }

    /// Opens an inbound connection.
    pub fn connect(&mut self, conn: u64) {
        self.input(Input::Connected {
            conn: ConnId(conn),
            direction: Direction::Inbound,
        });
    }

    /// Reports who is at the other end of connection `conn`.
    pub fn authenticate(&mut self, conn: u64, principal: crate::access::Principal) {
        self.input(Input::Authenticated {
            conn: ConnId(conn),
            principal,
        });
    }

    /// Reports that the dial of `remote` connected, as connection `conn`.
    pub fn dialled(&mut self, remote: RemoteId, conn: u64) {
        self.input(Input::Dialled {
            remote,
            conn: ConnId(conn),
        });
    }

    /// Reports that the dial of `remote` failed.
    pub fn dial_failed(&mut self, remote: RemoteId) {
        self.input(Input::DialFailed { remote });
    }

    /// Reports that frames for `conn` are piling up unsent.
    pub fn congested(&mut self, conn: u64) {
        self.input(Input::Congested { conn: ConnId(conn) });
    }

    /// Reports that the queue for `conn` has drained.
    pub fn drained(&mut self, conn: u64) {
        self.input(Input::Drained { conn: ConnId(conn) });
    }

    /// Closes a connection.
    pub fn disconnect(&mut self, conn: u64) {
        self.input(Input::Disconnected { conn: ConnId(conn) });
    }

    /// Delivers a text frame from `conn`.
    pub fn frame(&mut self, conn: u64, text: &str) {
        self.input(Input::Frame {
            conn: ConnId(conn),
            text,
        });
    }

    /// Delivers a binary frame of `bytes` bytes from `conn`.
    pub fn binary(&mut self, conn: u64, bytes: usize) {
        self.input(Input::Binary {
            conn: ConnId(conn),
            bytes,
        });
    }

    /// Moves both clocks forward by `ms`, delivering the timeouts that fall due on the way.
    pub fn advance(&mut self, ms: u64) {
        let end = self.now.mono + Duration::from_millis(ms);
        let wall_end = self.now.wall_ms + ms as f64;
        while let Some(at) = self.peer.poll_timeout().filter(|at| *at <= end) {
            let step = at.saturating_duration_since(self.now.mono);
            self.now.mono = self.now.mono.max(at);
            self.now.wall_ms += step.as_secs_f64() * 1000.0;
            self.input(Input::Timeout);
        }
        self.now.mono = end;
        self.now.wall_ms = wall_end;
    }

    /// Every message sent to `conn` so far (array frames flattened), and forgets them.
    pub fn take(&mut self, conn: u64) -> Vec<Json> {
        let mut out = Vec::new();
        self.frames.retain(|(c, text)| {
            if c.0 != conn {
                return true;
            }
            match serde_json::from_str::<Json>(text).expect("the peer sends JSON") {
                Json::Array(items) => out.extend(items),
                one => out.push(one),
            }
            false
        });
        out
    }

    /// The messages sent to `conn` that answer message `id` (their `@`), and forgets all sent.
    pub fn replies_to(&mut self, conn: u64, id: &str) -> Vec<Json> {
        self.take(conn)
            .into_iter()
            .filter(|m| m.get("@").and_then(Json::as_str) == Some(id))
            .collect()
    }
}

/// A put frame of one node: `fields` (key, value as stored) of `soul`, all at `state`.
pub fn put_frame(id: &str, soul: &str, fields: &[(&str, Json)], state: f64) -> String {
    let mut node = serde_json::Map::new();
    let mut states = serde_json::Map::new();
    for (key, value) in fields {
        states.insert((*key).into(), Json::from(state));
        node.insert((*key).into(), value.clone());
    }
    let meta = serde_json::json!({"#": soul, ">": states});
    node.insert("_".into(), meta);
    serde_json::json!({"#": id, "put": {soul: node}}).to_string()
}
