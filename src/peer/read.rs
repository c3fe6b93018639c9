//! Reads: GETs by soul, key and lex, answered from the cache or the store (always with a reply),
//! and soul-range GETs answered page by page.

use super::{ConnId, ConnRef, OpPurpose, Peer, Stream};
use crate::graph::Node;
use crate::lex::Range;
use crate::store::{select_fields, ReadQuery, StoreOp, StoreResult};
use crate::wire::{self, Get, KeyQuery};

const BUSY: &str = "Server busy: storage is behind, retry later.";

impl Peer {
    pub(super) fn on_get(&mut self, conn: ConnId, msg_id: String, get: Get) {
        match get {
            Get::Souls {
                range,
                reverse,
                budget,
            } => self.on_souls_get(conn, msg_id, range, reverse, budget),
            node_get => self.on_node_get(conn, msg_id, node_get),
        }
    }

    fn on_node_get(&mut self, conn: ConnId, msg_id: String, get: Get) {
        let Get::Node {
            soul,
            keys,
            reverse,
            budget,
        } = &get
        else {
            unreachable!("soul-range GETs are handled by on_souls_get");
        };
        if !self.subs.subscribe(conn, soul) {
            self.refuse(
                conn,
                "subscription limit reached; GET answered without live updates".into(),
            );
        }
        let budget = budget.unwrap_or(self.limits.max_lex_reply_bytes);
        if let Some(cached) = self.cache.node(soul) {
            let node = Node {
                soul: soul.clone(),
                fields: select_fields(cached.iter(), keys, *reverse, budget),
            };
            if !self.answer_get(conn, &msg_id, &[node]) {
                self.forward_get(conn, &msg_id, &get);
            }
            return;
        }
        if self.storage_busy() {
            let id = self.new_id();
            self.send(conn, wire::error_reply(&id, &msg_id, BUSY));
            return;
        }
        let query = ReadQuery::Node {
            soul: soul.clone(),
            keys: keys.clone(),
            reverse: *reverse,
            budget,
        };
        let purpose = OpPurpose::Get {
            conn: self.conn_ref(conn),
            msg_id,
            cache_as: (*keys == KeyQuery::All).then(|| soul.clone()),
            forward: Some(get),
        };
        self.issue(purpose, |op| StoreOp::Read { op, query });
    }

    fn on_souls_get(
        &mut self,
        conn: ConnId,
        msg_id: String,
        range: Range,
        reverse: bool,
        budget: Option<u64>,
    ) {
        if !self.subs.subscribe_range(conn, &range) {
            self.refuse(
                conn,
                "subscription limit reached; GET answered without live updates".into(),
            );
        }
        if range.is_everything() {
            self.linked_by(conn);
        }
        let streams = self.streams.values().filter(|s| s.conn == conn).count();
        if self.storage_busy() || streams >= self.limits.max_streams_per_connection {
            let id = self.new_id();
            self.send(conn, wire::error_reply(&id, &msg_id, BUSY));
            return;
        }
        if reverse {
            // Descending answers are one page: they are small by nature (`%` is how they are used).
            let query = ReadQuery::Souls {
                range,
                reverse,
                budget: budget.unwrap_or(self.limits.max_lex_reply_bytes),
                after: None,
            };
            let purpose = OpPurpose::Get {
                conn: self.conn_ref(conn),
                msg_id,
                cache_as: None,
                forward: None,
            };
            self.issue(purpose, |op| StoreOp::Read { op, query });
            return;
        }
        let id = self.next_stream;
        self.next_stream += 1;
        self.streams.insert(
            id,
            Stream {
                conn,
                msg_id,
                range,
                budget_left: budget,
                after: None,
                sent_any: false,
            },
        );
        self.next_page(id);
    }

    fn next_page(&mut self, stream: u64) {
        let Some(s) = self.streams.get(&stream) else {
            return;
        };
        // Budgets count value bytes; half a batch frame of them leaves room for keys and states.
        let page = (self.limits.batch_frame_bytes / 2) as u64;
        let query = ReadQuery::Souls {
            range: s.range.clone(),
            reverse: false,
            budget: s.budget_left.map_or(page, |b| b.min(page)),
            after: s.after.clone(),
        };
        self.issue(OpPurpose::Page(stream), |op| StoreOp::Read { op, query });
    }

    pub(super) fn on_page_done(&mut self, stream: u64, result: StoreResult) {
        // A stream whose connection closed was dropped; its last page is simply discarded.
        let Some(mut s) = self.streams.remove(&stream) else {
            return;
        };
        let nodes = match result {
            StoreResult::Read { nodes } => nodes,
            StoreResult::Failed { reason } => {
                let id = self.new_id();
                self.send(
                    s.conn,
                    wire::error_reply(&id, &s.msg_id, &format!("Storage failed: {reason}")),
                );
                return;
            }
            StoreResult::Merged { .. } => unreachable!("a read op got a merge result"),
        };
        let last = nodes.last().and_then(|n| {
            n.fields
                .keys()
                .next_back()
                .map(|k| (n.soul.clone(), k.clone()))
        });
        let Some(last) = last else {
            if !s.sent_any {
                self.answer_get(s.conn, &s.msg_id, &[]);
            }
            return;
        };
        let spent: u64 = nodes
            .iter()
            .flat_map(|n| n.fields.values())
            .map(|f| f.value.budget_bytes())
            .sum();
        self.send_nodes(s.conn, &s.msg_id, &nodes);
        if !s.sent_any {
            self.stats.gets_answered += 1;
        }
        s.sent_any = true;
        s.after = Some(last);
        if let Some(left) = s.budget_left {
            if left <= spent {
                return;
            }
            s.budget_left = Some(left - spent);
        }
        self.streams.insert(stream, s);
        self.next_page(stream);
    }

    /// Answers a GET: the nodes found, or "not found". Returns whether anything was found.
    pub(super) fn answer_get(&mut self, conn: ConnId, msg_id: &str, nodes: &[Node]) -> bool {
        self.stats.gets_answered += 1;
        if self.send_nodes(conn, msg_id, nodes) {
            return true;
        }
        let id = self.new_id();
        self.send(conn, wire::not_found(&id, msg_id));
        false
    }

    /// Sends a reply carrying the nodes that have fields; returns false if none had.
    fn send_nodes(&mut self, conn: ConnId, msg_id: &str, nodes: &[Node]) -> bool {
        let nodes: Vec<&Node> = nodes.iter().filter(|n| !n.fields.is_empty()).collect();
        if nodes.is_empty() {
            return false;
        }
        let id = self.new_id();
        let reply = wire::put_message(&id, Some(msg_id), |out| {
            out.push('{');
            for (i, node) in nodes.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                crate::json::write_string(out, node.soul.as_str());
                out.push(':');
                node.write_json(out);
            }
            out.push('}');
        });
        self.send(conn, reply);
        true
    }

    pub(super) fn on_read_done(
        &mut self,
        conn: ConnRef,
        msg_id: &str,
        cache_as: Option<crate::graph::Soul>,
        forward: Option<Get>,
        result: StoreResult,
    ) {
        match result {
            StoreResult::Read { nodes } => {
                if let Some(soul) = cache_as {
                    let fields = nodes.first().map(|n| n.fields.clone()).unwrap_or_default();
                    self.cache.insert(soul, fields);
                }
                if !self.is_current(conn) {
                    return; // the asker has gone; its connection id may belong to another now
                }
                if !self.answer_get(conn.id, msg_id, &nodes) {
                    if let Some(get) = forward {
                        self.forward_get(conn.id, msg_id, &get);
                    }
                }
            }
            StoreResult::Failed { reason } => {
                let id = self.new_id();
                self.send_to(
                    conn,
                    wire::error_reply(&id, msg_id, &format!("Storage failed: {reason}")),
                );
            }
            StoreResult::Merged { .. } => unreachable!("a read op got a merge result"),
        }
    }
}
