//! Writes: puts validated whole, split into what can be merged now and what waits for its state's
//! time, merged by the store, acknowledged after the commit, and pushed to subscribers.

use std::collections::BTreeMap;
use std::time::Instant;

use super::mesh::skip_list_names;
use super::{ConnId, ConnRef, Deferred, ErrorKind, Event, OpPurpose, Output, Peer, PendingPut};
use crate::graph::{write_graph_entry, Field, Graph, Key, Node, Soul, State};
use crate::store::{StoreOp, StoreResult};
use crate::wire;

impl Peer {
    /// A put from `conn`; `skip` is its `><`, the peers it was already sent to.
    pub(super) fn on_put(
        &mut self,
        conn: ConnId,
        msg_id: String,
        graph: Graph,
        skip: Option<String>,
    ) {
        let refusal = graph
            .nodes
            .iter()
            .find_map(|n| self.write_refusal(conn, n.soul.as_str()))
            .or_else(|| self.quota_refusal(conn, &graph));
        if let Some(refusal) = refusal {
            return self.put_refused_by(conn, &msg_id, refusal);
        }
        let wall = self.now.wall_ms;
        let max_ahead = self.limits.max_future_state_ms;
        let mut deferred_count = 0;
        for node in &graph.nodes {
            for (key, field) in &node.fields {
                let ahead = field.state.ms() - wall;
                if ahead > max_ahead {
                    let text = format!(
                        "State of key '{key}' of '{}' is {ahead:.0} ms ahead of this relay's clock, over the limit of {max_ahead:.0} ms.",
                        node.soul
                    );
                    return self.put_refused(conn, &msg_id, text, ErrorKind::Invalid);
                }
                if ahead > 0.0 {
                    deferred_count += 1;
                }
            }
        }
        if self.deferred_fields + deferred_count > self.limits.max_deferred_writes {
            let text = "Too many writes with future states are waiting; retry later.".to_string();
            return self.put_refused(conn, &msg_id, text, ErrorKind::Busy);
        }
        if self.storage_busy() {
            let text = "Server busy: storage is behind, retry later.".to_string();
            return self.put_refused(conn, &msg_id, text, ErrorKind::Busy);
        }
        // A banned writer, or one already past its rate, is refused before its signatures are
        // checked; the rate is charged once they hold.
        if let Some(refusal) = self.writer_refusal(conn, &graph) {
            return self.put_refused_by(conn, &msg_id, refusal);
        }
        self.authorise_put(conn, msg_id, graph, skip);
    }

    /// Takes a put that passed every check: merges what can be merged now, holds what waits for
    /// its state's time, and acknowledges it when all of it has committed.
    pub(super) fn take_put(
        &mut self,
        conn: ConnRef,
        msg_id: String,
        graph: Graph,
        skip: Option<String>,
        received: Instant,
    ) {
        let wall = self.now.wall_ms;
        let put = self.next_put;
        self.next_put += 1;
        let mut parts = 0;
        // A local write goes to the outbox too, each part in the transaction of its merge (an
        // upstream's own writes came from there). A part waiting for its state's time is
        // appended when it is merged: until then it is held in memory only, and so may be lost.
        let outboxed =
            self.has_upstreams() && !self.is_upstream_conn(conn.id) && !graph.nodes.is_empty();
        if outboxed {
            for node in &graph.nodes {
                self.written_here(&node.soul);
            }
        }
        let now_state = State::new(wall).unwrap_or(State::new(0.0).expect("0 is a finite state"));
        let mut ready_now = Graph::default();
        for node in graph.nodes {
            let mut ready = Vec::with_capacity(node.fields.len());
            let mut later: BTreeMap<State, Vec<(Key, Field)>> = BTreeMap::new();
            for (key, field) in node.fields {
                if field.state > now_state {
                    later.entry(field.state).or_default().push((key, field));
                } else {
                    ready.push((key, field));
                }
            }
            if !ready.is_empty() {
                parts += 1;
                if outboxed {
                    ready_now.nodes.push(Node {
                        soul: node.soul.clone(),
                        fields: ready.iter().cloned().collect(),
                    });
                }
                let soul = node.soul.clone();
                let purpose = OpPurpose::PutPart {
                    put,
                    soul: soul.clone(),
                };
                self.issue(purpose, |op| StoreOp::Merge {
                    op,
                    soul,
                    fields: ready,
                });
            }
            for (state, fields) in later {
                parts += 1;
                let deferred = Deferred {
                    put,
                    soul: node.soul.clone(),
                    fields,
                    outboxed,
                };
                self.defer(state.ms() - wall, deferred);
            }
        }
        if !ready_now.nodes.is_empty() {
            parts += 1;
            self.append_to_outbox(put, &ready_now);
        }
        let pending = PendingPut {
            conn,
            msg_id,
            received,
            parts_left: parts,
            failure: None,
            skip,
        };
        if parts == 0 {
            // Nothing to write (nodes without fields): there is nothing to wait for.
            self.finish_put(pending);
        } else {
            self.puts.insert(put, pending);
        }
    }

    /// A put refused by one of the operator's rules (see `policy`).
    pub(super) fn put_refused_by(
        &mut self,
        conn: ConnId,
        msg_id: &str,
        refusal: super::policy::Refusal,
    ) {
        self.stats.puts_refused += 1;
        let text = refusal.text.clone();
        self.refused_by(conn, msg_id, refusal);
        self.refuse(conn, text);
    }

    pub(super) fn put_refused(
        &mut self,
        conn: ConnId,
        msg_id: &str,
        text: String,
        kind: ErrorKind,
    ) {
        self.stats.puts_refused += 1;
        self.stats.errors.count(kind);
        if kind == ErrorKind::Unauthorized {
            self.stats.refusals.count(crate::Rule::Sea);
        }
        let id = self.new_id();
        self.send(conn, wire::error_reply(&id, msg_id, &text));
        self.refuse(conn, text);
    }

    pub(super) fn finish_put(&mut self, put: PendingPut) {
        let id = self.new_id();
        match put.failure {
            None => {
                self.stats.puts_acked += 1;
                self.stats
                    .put_latency
                    .observe(self.now.mono.saturating_duration_since(put.received));
                self.send_to(put.conn, wire::ack(&id, &put.msg_id));
            }
            Some(reason) => {
                self.stats.puts_refused += 1;
                self.stats.errors.count(ErrorKind::Storage);
                self.send_to(put.conn, wire::error_reply(&id, &put.msg_id, &reason));
            }
        }
    }

    pub(super) fn on_merge_done(&mut self, put: u64, soul: Soul, result: StoreResult) {
        match result {
            StoreResult::Merged {
                changed,
                space_bytes,
            } => {
                if let Some(bytes) = space_bytes {
                    self.learn_space(soul.as_str(), bytes);
                }
                if !changed.is_empty() {
                    let (sender, skip) = match self.puts.get_mut(&put) {
                        Some(p) => (Some(p.conn.id), p.skip.clone()),
                        None => (None, None),
                    };
                    self.publish(sender, skip.as_deref(), soul, changed);
                }
            }
            StoreResult::Failed { reason } => {
                // Whether this node's merge landed is uncertain (a commit whose answer was
                // lost): its reads go back to the store. Other cached nodes stay true, so reads
                // of them go on while the store is failing.
                self.cache.forget(&soul);
                self.outputs.push_back(Output::Event(Event::StoreFailed {
                    reason: reason.clone(),
                }));
                if let Some(p) = self.puts.get_mut(&put) {
                    p.failure.get_or_insert(format!("Storage failed: {reason}"));
                }
            }
            // A store bug; never report it as success.
            _ => {
                if let Some(p) = self.puts.get_mut(&put) {
                    p.failure.get_or_insert(
                        "Storage failed: the store answered a merge with something else".into(),
                    );
                }
            }
        }
        self.put_part_done(put, None);
    }

    /// One part of a put is done (with its failure, if it failed); the put is answered when its
    /// last part is.
    pub(super) fn put_part_done(&mut self, put: u64, failure: Option<String>) {
        let done = self.puts.get_mut(&put).is_some_and(|p| {
            if let Some(reason) = failure {
                p.failure.get_or_insert(reason);
            }
            p.parts_left -= 1;
            p.parts_left == 0
        });
        if done {
            let p = self.puts.remove(&put).expect("entry was just found");
            self.finish_put(p);
        }
    }

    /// Pushes a committed change to the subscribers of its node, except the connection it came
    /// from and the peers its `><` says already have it.
    pub(super) fn publish(
        &mut self,
        sender: Option<ConnId>,
        skip: Option<&str>,
        soul: Soul,
        changed: Vec<(Key, Field)>,
    ) {
        self.cache.apply(&soul, &changed);
        // The operator's lists follow their reserved souls, whoever committed the change.
        self.moderation.apply(soul.as_str(), &changed);
        // Nothing hidden is kept for relays that are away (those connected are filtered below).
        let hidden = self.moderation.hidden(soul.as_str()).is_some();
        let conns = &self.conns;
        let subscribers: Vec<ConnId> = self
            .subs
            .subscribers(&soul)
            .into_iter()
            .filter(|c| Some(*c) != sender)
            .filter(|c| self.may_read(*c, soul.as_str()))
            .filter(|c| {
                skip.is_none()
                    || !skip_list_names(skip, conns.get(c).and_then(|s| s.pid.as_deref()))
            })
            .collect();
        let absent_remotes = !hidden && self.has_absent_remotes();
        if !subscribers.is_empty() || absent_remotes {
            let mut graph = String::with_capacity(64 + changed.len() * 32);
            graph.push('{');
            write_graph_entry(&mut graph, &soul, changed.iter().map(|(k, f)| (k, f)));
            graph.push('}');
            for conn in subscribers {
                self.stats.fields_pushed += changed.len() as u64;
                let id = self.new_id();
                let msg = wire::put_message(&id, None, graph.len(), |out| out.push_str(&graph));
                self.send(conn, msg);
                // A configured peer gets it again after a reconnect until it acknowledges it.
                if let Some(remote) = self.conns.get(&conn).and_then(|c| c.remote) {
                    self.keep(remote, &graph, Some(id));
                }
            }
            if absent_remotes {
                self.keep_for_absent_remotes(&graph);
            }
        }
        if self.emit_changes {
            self.outputs.push_back(Output::Event(Event::Changed {
                soul,
                fields: changed,
            }));
        }
    }
}
