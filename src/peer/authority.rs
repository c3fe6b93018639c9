//! Who may write what: SEA's rules, applied to every put before anything of it is stored
//! (see [`crate::sea::rules`]). The rules that need no cryptography run here at once; signature
//! checks go out as [`Output::Verify`] for the runtime to run away from its socket loops, and
//! certificates' write-block lists are read from the store. A put is taken only when every field
//! passes, and refused whole, with the first reason, when one does not. A put whose answers have
//! not all come within [`Limits::max_verify_ms`](crate::Limits::max_verify_ms) is refused as
//! busy, and late answers are ignored.

use std::time::{Duration, Instant};

use super::{ConnId, ConnRef, ErrorKind, OpPurpose, Output, Peer};
use crate::graph::{Graph, Value};
use crate::lex::KeyQuery;
use crate::sea::rules::{plan, BlockList, Plan};
use crate::sea::SignedValue;
use crate::store::{ReadQuery, StoreOp, StoreResult};
use crate::{Key, Soul};

/// Identifies one batch of signature checks, for [`Input::Verified`](super::Input::Verified).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct VerifyId(pub u64);

/// A put waiting for its signature checks and block-list reads.
#[derive(Debug)]
pub(super) struct Parked {
    conn: ConnRef,
    /// When the put arrived, for its latency.
    received: Instant,
    msg_id: String,
    graph: Graph,
    skip: Option<String>,
    /// The error for each signature check, in the order they went out.
    refusals: Vec<&'static str>,
    /// Answers still to come: the checks (as one) and each block-list read.
    waiting: usize,
    failure: Option<String>,
    /// When it is refused if answers are still missing.
    deadline: Instant,
}

impl Peer {
    /// Applies the write rules to a put that passed every other check: takes it, parks it for
    /// its signature checks, or refuses it.
    pub(super) fn authorise_put(
        &mut self,
        conn: ConnId,
        msg_id: String,
        mut graph: Graph,
        skip: Option<String>,
    ) {
        if self.trust_all_writes {
            let conn = self.conn_ref(conn);
            return self.take_verified(conn, msg_id, graph, skip, self.now.mono);
        }
        let wall = self.now.wall_ms;
        let mut checks = Vec::new();
        let mut blocks: Vec<BlockList> = Vec::new();
        for node in &mut graph.nodes {
            let soul = node.soul.clone();
            let mut dropped = Vec::new();
            for (key, field) in &node.fields {
                match plan(
                    soul.as_str(),
                    key.as_str(),
                    &field.value,
                    field.state.ms(),
                    wall,
                ) {
                    Err(reason) => {
                        self.tell_refusal(conn, crate::Rule::Sea, soul.as_str().to_owned());
                        return self.put_refused(conn, &msg_id, reason, ErrorKind::Unauthorized);
                    }
                    Ok(Plan::Accept) => {}
                    Ok(Plan::Drop) => dropped.push(key.clone()),
                    Ok(Plan::Verify {
                        checks: more,
                        block_list,
                    }) => {
                        checks.extend(more);
                        blocks.extend(block_list);
                    }
                }
            }
            for key in dropped {
                node.fields.remove(&key);
            }
        }
        if checks.is_empty() && blocks.is_empty() {
            let conn = self.conn_ref(conn);
            return self.take_verified(conn, msg_id, graph, skip, self.now.mono);
        }
        if self.parked.len() >= self.limits.max_puts_verifying {
            let text = "Server busy: signatures are being checked, retry later.".to_string();
            return self.put_refused(conn, &msg_id, text, ErrorKind::Busy);
        }
        let id = self.next_verify;
        self.next_verify += 1;
        let refusals = checks.iter().map(|c| c.refusal).collect();
        let waiting = usize::from(!checks.is_empty()) + blocks.len();
        let deadline = self.now.mono + Duration::from_millis(self.limits.max_verify_ms);
        let parked = Parked {
            conn: self.conn_ref(conn),
            received: self.now.mono,
            msg_id,
            graph,
            skip,
            refusals,
            waiting,
            failure: None,
            deadline,
        };
        self.parked.insert(id, parked);
        self.verify_deadlines.insert((deadline, id));
        if !checks.is_empty() {
            self.outputs.push_back(Output::Verify {
                id: VerifyId(id),
                checks,
            });
        }
        for block in blocks {
            let (Ok(soul), Ok(key)) = (Soul::new(&block.soul), Key::new(&block.key)) else {
                self.answered(id, Some(format!("Certificant {} blocked.", block.key)));
                continue;
            };
            let query = ReadQuery::Node {
                soul,
                keys: KeyQuery::One(key),
                reverse: false,
                budget: 1 << 10,
            };
            self.issue(OpPurpose::BlockList { put: id }, |op| StoreOp::Read {
                op,
                query,
            });
        }
    }

    /// The runtime ran the checks of `id`: one result per check, in order.
    pub(super) fn on_verified(&mut self, id: VerifyId, results: &[bool]) {
        let Some(parked) = self.parked.get_mut(&id.0) else {
            return;
        };
        let failure = if results.len() != parked.refusals.len() {
            Some("Signature checks answered wrongly by the runtime.".to_string())
        } else {
            results
                .iter()
                .position(|ok| !ok)
                .map(|i| parked.refusals[i].to_owned())
        };
        self.answered(id.0, failure);
    }

    /// A certificate's write-block list was read: the writer is blocked if its key is `true` or
    /// `1` there.
    pub(super) fn on_block_read(&mut self, put: u64, result: StoreResult) {
        // Values in user space are stored signed; the list's entry is the value inside.
        let blocks = |value: &Value| match value {
            Value::Bool(true) => true,
            Value::Number(n) => *n == 1.0,
            Value::String(text) => SignedValue::parse(text)
                .is_ok_and(|s| s.value.as_bool() == Some(true) || s.value.as_f64() == Some(1.0)),
            _ => false,
        };
        let blocked = match &result {
            StoreResult::Read { nodes } => nodes
                .iter()
                .flat_map(|n| n.fields.iter())
                .find(|(_, field)| blocks(&field.value))
                .map(|(key, _)| key.as_str().to_owned()),
            _ => None,
        };
        let failure = match result {
            StoreResult::Failed { reason } => Some(format!("Storage failed: {reason}")),
            _ => blocked.map(|writer| format!("Certificant {writer} blocked.")),
        };
        self.answered(put, failure);
    }

    fn answered(&mut self, id: u64, failure: Option<String>) {
        let Some(parked) = self.parked.get_mut(&id) else {
            return;
        };
        parked.waiting = parked.waiting.saturating_sub(1);
        if parked.failure.is_none() {
            parked.failure = failure;
        }
        if parked.waiting > 0 {
            return;
        }
        let parked = self.parked.remove(&id).expect("found above");
        self.verify_deadlines.remove(&(parked.deadline, id));
        self.settle(parked);
    }

    /// When the oldest parked put runs out of time, if one is parked.
    pub(super) fn next_verify_deadline(&self) -> Option<Instant> {
        self.verify_deadlines.first().map(|(at, _)| *at)
    }

    /// Refuses the parked puts whose answers did not all come in time.
    pub(super) fn expire_verifications(&mut self) {
        while let Some(&(at, id)) = self.verify_deadlines.first() {
            if at > self.now.mono {
                break;
            }
            self.verify_deadlines.pop_first();
            if let Some(mut parked) = self.parked.remove(&id) {
                parked.failure = Some(
                    "Server busy: signature checks did not finish in time, retry later.".into(),
                );
                self.settle(parked);
            }
        }
    }

    /// Takes a put whose signatures hold, once its writers' rates are charged for it.
    fn take_verified(
        &mut self,
        conn: ConnRef,
        msg_id: String,
        graph: Graph,
        skip: Option<String>,
        received: Instant,
    ) {
        match self.charge_writers(conn.id, &graph) {
            None => self.take_put(conn, msg_id, graph, skip, received),
            Some(refusal) if self.is_current(conn) => {
                self.put_refused_by(conn.id, &msg_id, refusal)
            }
            // Its connection closed while its signatures were checked: no one to answer.
            Some(refusal) => {
                self.stats.puts_refused += 1;
                self.tell_refusal(conn.id, refusal.rule, refusal.subject);
            }
        }
    }

    /// Answers a put whose checks are over: refused with its failure, or taken.
    fn settle(&mut self, parked: Parked) {
        match parked.failure {
            Some(reason) => {
                self.stats.puts_refused += 1;
                let kind = if reason.starts_with("Storage failed") {
                    ErrorKind::Storage
                } else if reason.starts_with("Server busy") {
                    ErrorKind::Busy
                } else {
                    let soul = parked.graph.nodes.first();
                    let subject = soul.map_or(String::new(), |n| n.soul.as_str().to_owned());
                    self.tell_refusal(parked.conn.id, crate::Rule::Sea, subject);
                    ErrorKind::Unauthorized
                };
                self.stats.errors.count(kind);
                let reply = self.new_id();
                self.send_to(
                    parked.conn,
                    crate::wire::error_reply(&reply, &parked.msg_id, &reason),
                );
                self.refuse(parked.conn.id, reason);
            }
            None => self.take_verified(
                parked.conn,
                parked.msg_id,
                parked.graph,
                parked.skip,
                parked.received,
            ),
        }
    }
}
