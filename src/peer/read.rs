//! Reads: GETs by soul, key and lex, answered from the cache or the store (always with a reply).
//! Whole nodes and soul ranges are read and sent page by page, so no answer is too big to send.

use std::time::Instant;

use super::mesh::Forward;
use super::{ConnId, ConnRef, ErrorKind, OpPurpose, Peer, Stream};
use crate::graph::{write_graph_entry, Field, Key};
use crate::graph::{Node, Soul};
use crate::lex::KeyQuery;
use crate::lex::Range;
use crate::store::{selected_fields, ReadQuery, StoreOp, StoreResult};
use crate::wire::{self, Get};

const BUSY: &str = "Server busy: storage is behind, retry later.";

impl Peer {
    /// A GET from `conn`; `skip` is its `><`, the peers it was already sent to.
    pub(super) fn on_get(&mut self, conn: ConnId, msg_id: String, get: Get, skip: Option<String>) {
        match get {
            Get::Souls {
                range,
                reverse,
                budget,
            } => self.on_souls_get(conn, msg_id, range, reverse, budget),
            node_get => self.on_node_get(conn, msg_id, Forward::new(node_get, skip)),
        }
    }

    fn on_node_get(&mut self, conn: ConnId, msg_id: String, forward: Forward) {
        let Get::Node {
            soul,
            keys,
            reverse,
            budget,
        } = &forward.get
        else {
            unreachable!("soul-range GETs are handled by on_souls_get");
        };
        if let Some(refusal) = self.read_refusal(conn, soul.as_str()) {
            return self.refused_by(conn, &msg_id, refusal);
        }
        if !self.subs.subscribe(conn, soul) {
            self.refuse(
                conn,
                "subscription limit reached; GET answered without live updates".into(),
            );
        }
        self.subscribe_upstream(conn, &msg_id, &forward);
        self.ask_upstreams(conn, &msg_id, &forward);
        let budget_given = *budget;
        let budget = budget.unwrap_or(self.limits.max_lex_reply_bytes);
        // The whole node, as most GETs ask: answered in one reply when it fits, and then the
        // node as written for it is kept for the next such GET until the node changes.
        let whole = *keys == KeyQuery::All && !*reverse && budget_given.is_none();
        let started = self.now.mono;
        if let Some(written) = self.cache.written(soul).filter(|_| whole) {
            let mut id = [0; 9];
            self.rng.fill_id(&mut id);
            let id = std::str::from_utf8(&id).expect("the id alphabet is ASCII");
            let reply = whole_node_reply(id, &msg_id, written);
            self.answer_get_with(conn, &msg_id, std::iter::once(reply), started);
            return;
        }
        if let Some(cached) = self.cache.node(soul) {
            // Written straight from the cache: a hot GET copies no field.
            let mut fields = selected_fields(cached.iter(), keys, *reverse, budget);
            if *reverse {
                fields.reverse(); // a node's fields go out in key order
            }
            let max_bytes = self.limits.batch_frame_bytes;
            let rng = &mut self.rng;
            let one_reply = whole
                && !fields.is_empty()
                && fields.len() == cached.len()
                && fits_one_reply(soul, &fields, max_bytes);
            let (replies, written) = if one_reply {
                let mut written = String::new();
                write_graph_entry(&mut written, soul, fields.iter().map(|(k, f)| (*k, *f)));
                let reply = whole_node_reply(&rng.id(9), &msg_id, &written);
                (vec![reply], Some(written))
            } else {
                let replies = node_replies([(soul, fields.as_slice())], max_bytes, &msg_id, || {
                    rng.id(9)
                });
                (replies, None)
            };
            if let Some(written) = written {
                self.cache.keep_written(soul, written.into());
            }
            if !self.answer_get_with(conn, &msg_id, replies, started) {
                self.forward_get(conn, &msg_id, &forward);
            }
            return;
        }
        if self.storage_busy() {
            let id = self.new_id();
            self.stats.errors.count(ErrorKind::Busy);
            self.send(conn, wire::error_reply(&id, &msg_id, BUSY));
            return;
        }
        if *keys == KeyQuery::All && !*reverse {
            // A whole node can be large: it is read and sent page by page.
            let exact = Range {
                prefix: None,
                lower: Some(soul.as_str().to_owned()),
                upper: Some(soul.as_str().to_owned()),
            };
            let soul = soul.clone();
            self.start_stream(Stream {
                conn,
                msg_id,
                started: self.now.mono,
                range: exact,
                cache_as: Some(soul),
                forward: Some(forward),
                pages: 0,
                budget_left: budget_given,
                after: None,
                last_sent: None,
                sent_any: false,
                paused: false,
            });
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
            started: self.now.mono,
            cache_as: None,
            forward: Some(forward),
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
            self.stats.errors.count(ErrorKind::Busy);
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
                started: self.now.mono,
                cache_as: None,
                forward: None,
            };
            self.issue(purpose, |op| StoreOp::Read { op, query });
            return;
        }
        self.start_stream(Stream {
            conn,
            msg_id,
            started: self.now.mono,
            range,
            cache_as: None,
            forward: None,
            pages: 0,
            budget_left: budget,
            after: None,
            last_sent: None,
            sent_any: false,
            paused: false,
        });
    }

    fn start_stream(&mut self, stream: Stream) {
        let id = self.next_stream;
        self.next_stream += 1;
        self.streams.insert(id, stream);
        self.next_page(id);
    }

    /// The value bytes one page reads: half a batch frame, leaving room for keys and states.
    pub(super) fn page_bytes(&self) -> u64 {
        (self.limits.batch_frame_bytes / 2).max(1) as u64
    }

    fn next_page(&mut self, stream: u64) {
        let page = self.page_bytes();
        let Some(s) = self.streams.get(&stream) else {
            return;
        };
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
                let text = format!("Storage failed: {reason}");
                self.stats.errors.count(ErrorKind::Storage);
                self.send(s.conn, wire::error_reply(&id, &s.msg_id, &text));
                return;
            }
            // A store bug: never report it as an answer.
            _ => {
                let id = self.new_id();
                let text = "Storage failed: the store answered a read with something else";
                self.send(s.conn, wire::error_reply(&id, &s.msg_id, text));
                return;
            }
        };
        let first_page = s.pages == 0;
        s.pages += 1;
        let last = nodes.last().and_then(|n| {
            n.fields
                .keys()
                .next_back()
                .map(|k| (n.soul.clone(), k.clone()))
        });
        let Some(last) = last else {
            if let (Some(soul), true) = (s.cache_as.take(), first_page) {
                self.cache.insert(soul, Default::default(), self.done_op);
            }
            if let (true, Some(soul)) = (s.sent_any, &s.last_sent) {
                // The previous page said more would come; it was the last.
                let id = self.new_id();
                let end = wire::end_of_answer(&id, &s.msg_id, soul.as_str());
                self.send(s.conn, end);
            } else if !self.answer_get(s.conn, &s.msg_id, &[], s.started) {
                if let Some(forward) = &s.forward {
                    self.forward_get(s.conn, &s.msg_id, forward);
                }
            }
            return;
        };
        let spent: u64 = nodes
            .iter()
            .flat_map(|n| n.fields.values())
            .map(|f| f.value.budget_bytes())
            .sum();
        // A page the store did not fill is the last one.
        let complete = spent < self.page_bytes().min(s.budget_left.unwrap_or(u64::MAX));
        if let (Some(soul), true, true) = (s.cache_as.take(), first_page, complete) {
            if let Some(node) = nodes.first() {
                self.cache.insert(soul, node.fields.clone(), self.done_op);
            }
        }
        let budget_spent = s.budget_left.is_some_and(|left| left <= spent);
        let more_pages = !complete && !budget_spent;
        // Souls the asker may not read are left out of a range answer.
        let mut visible = nodes;
        let conn = s.conn;
        visible.retain(|n| self.may_read(conn, n.soul.as_str()));
        if let Some(shown) = visible.last() {
            s.last_sent = Some(shown.soul.clone());
            for reply in self.replies_for(&s.msg_id, &visible, more_pages) {
                self.send(s.conn, reply);
            }
            if !s.sent_any {
                self.stats.gets_answered += 1;
                self.stats
                    .get_latency
                    .observe(self.now.mono.saturating_duration_since(s.started));
            }
            s.sent_any = true;
        } else if !more_pages {
            // Everything on the last page was hidden: end the answer as if it were empty.
            match &s.last_sent {
                Some(soul) if s.sent_any => {
                    let id = self.new_id();
                    let end = wire::end_of_answer(&id, &s.msg_id, soul.as_str());
                    self.send(s.conn, end);
                }
                _ => {
                    self.answer_get(s.conn, &s.msg_id, &[], s.started);
                }
            }
        }
        s.after = Some(last);
        if !more_pages {
            return;
        }
        if let Some(left) = s.budget_left {
            s.budget_left = Some(left - spent);
        }
        // A connection that is not reading fast enough gets the next page once it has drained,
        // so a long answer (a whole graph for a link) never overflows its queue.
        if self.conns.get(&s.conn).is_some_and(|c| c.congested) {
            s.paused = true;
            self.streams.insert(stream, s);
            return;
        }
        self.streams.insert(stream, s);
        self.next_page(stream);
    }

    /// The runtime's queue for `conn` drained: its paused answers go on, oldest first.
    pub(super) fn on_drained(&mut self, conn: ConnId) {
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        c.congested = false;
        let mut paused: Vec<u64> = self
            .streams
            .iter()
            .filter(|(_, s)| s.conn == conn && s.paused)
            .map(|(id, _)| *id)
            .collect();
        paused.sort_unstable();
        for id in paused {
            if let Some(s) = self.streams.get_mut(&id) {
                s.paused = false;
            }
            self.next_page(id);
        }
    }

    /// Answers a GET: the nodes found, or "not found". Returns whether anything was found.
    pub(super) fn answer_get(
        &mut self,
        conn: ConnId,
        msg_id: &str,
        nodes: &[Node],
        started: Instant,
    ) -> bool {
        let replies = self.unmarked_replies(msg_id, nodes);
        self.answer_get_with(conn, msg_id, replies, started)
    }

    /// Answers a GET with replies already written, or "not found" when there are none.
    /// Sends a whole answer: all its replies but the last marked as having more to come.
    fn answer_get_with<R>(
        &mut self,
        conn: ConnId,
        msg_id: &str,
        replies: R,
        started: Instant,
    ) -> bool
    where
        R: IntoIterator<Item = String>,
        R::IntoIter: ExactSizeIterator,
    {
        let replies = replies.into_iter();
        self.stats.gets_answered += 1;
        self.stats
            .get_latency
            .observe(self.now.mono.saturating_duration_since(started));
        if replies.len() == 0 {
            // An upstream asked too may know: its answer (or the wait's end) says "not found".
            if !self.hold_not_found(msg_id) {
                let id = self.new_id();
                self.send(conn, wire::not_found(&id, msg_id));
            }
            return false;
        }
        self.answered_from_anywhere(msg_id);
        let last = replies.len() - 1;
        for (i, mut reply) in replies.enumerate() {
            if i < last {
                wire::mark_more(&mut reply);
            }
            self.send(conn, reply);
        }
        true
    }

    /// The replies carrying `nodes` to the GET `msg_id`. All but the last are marked as having
    /// more to come, and the last too when `more_pages` (see [`wire::mark_more`]).
    fn replies_for(&mut self, msg_id: &str, nodes: &[Node], more_pages: bool) -> Vec<String> {
        let mut replies = self.unmarked_replies(msg_id, nodes);
        let marked = if more_pages {
            replies.len()
        } else {
            replies.len().saturating_sub(1)
        };
        replies[..marked].iter_mut().for_each(wire::mark_more);
        replies
    }

    fn unmarked_replies(&mut self, msg_id: &str, nodes: &[Node]) -> Vec<String> {
        let fields: Vec<Vec<(&Key, &Field)>> =
            nodes.iter().map(|n| n.fields.iter().collect()).collect();
        let rng = &mut self.rng;
        node_replies(
            nodes
                .iter()
                .map(|n| &n.soul)
                .zip(fields.iter().map(Vec::as_slice)),
            self.limits.batch_frame_bytes,
            msg_id,
            || rng.id(9),
        )
    }

    pub(super) fn on_read_done(
        &mut self,
        conn: ConnRef,
        msg_id: &str,
        started: Instant,
        cache_as: Option<Soul>,
        forward: Option<Forward>,
        result: StoreResult,
    ) {
        let nodes = match result {
            StoreResult::Read { nodes } => nodes,
            StoreResult::Failed { reason } => {
                let id = self.new_id();
                self.stats.errors.count(ErrorKind::Storage);
                self.send_to(
                    conn,
                    wire::error_reply(&id, msg_id, &format!("Storage failed: {reason}")),
                );
                return;
            }
            // A store bug: never report it as an answer.
            _ => {
                let id = self.new_id();
                let text = "Storage failed: the store answered a read with something else";
                self.send_to(conn, wire::error_reply(&id, msg_id, text));
                return;
            }
        };
        if let Some(soul) = cache_as {
            let fields = nodes.first().map(|n| n.fields.clone()).unwrap_or_default();
            self.cache.insert(soul, fields, self.done_op);
        }
        if !self.is_current(conn) {
            return; // the asker has gone; its connection id may belong to another now
        }
        let mut nodes = nodes;
        nodes.retain(|n| self.may_read(conn.id, n.soul.as_str()));
        if !self.answer_get(conn.id, msg_id, &nodes, started) {
            if let Some(forward) = forward {
                self.forward_get(conn.id, msg_id, &forward);
            }
        }
    }
}

/// What a field adds to a reply, roughly: its key (twice: in the node and its states), value,
/// state and punctuation.
fn field_cost(key: &Key, field: &Field) -> usize {
    2 * key.as_str().len() + field.value.budget_bytes() as usize + 40
}

/// What a node's soul adds to a reply (twice: as its key and in its metadata), roughly.
fn soul_cost(soul: &Soul) -> usize {
    soul.as_str().len() * 2 + 24
}

/// Whether [`node_replies`] sends one node's `fields` in one reply: they fit, or there is one.
fn fits_one_reply(soul: &Soul, fields: &[(&Key, &Field)], max_bytes: usize) -> bool {
    fields.len() == 1
        || fields
            .iter()
            .try_fold(soul_cost(soul), |size, (k, f)| {
                Some(size + field_cost(k, f)).filter(|&size| size <= max_bytes)
            })
            .is_some()
}

/// The one reply carrying a whole node, `written` as [`write_graph_entry`] writes it, to the GET
/// `msg_id`: what [`node_replies`] makes of it.
fn whole_node_reply(id: &str, msg_id: &str, written: &str) -> String {
    wire::put_message(id, Some(msg_id), written.len() + 2, |out| {
        out.push('{');
        out.push_str(written);
        out.push('}');
    })
}

/// The replies carrying `nodes`' fields to the GET `msg_id`, cut into messages of about
/// `max_bytes` each (GUN sends several replies to one GET too; a single field larger than that goes
/// alone). Empty when no node has a field. Written from borrowed fields: nothing is copied.
fn node_replies<'a>(
    nodes: impl IntoIterator<Item = (&'a Soul, &'a [(&'a Key, &'a Field)])>,
    max_bytes: usize,
    msg_id: &str,
    mut new_id: impl FnMut() -> String,
) -> Vec<String> {
    let mut replies = Vec::new();
    // The current message's nodes, each a run of fields.
    let mut current: Vec<(&Soul, &[(&Key, &Field)])> = Vec::new();
    let mut size = 0;
    let mut flush = |current: &mut Vec<(&Soul, &[(&Key, &Field)])>, size: usize| {
        if current.is_empty() {
            return;
        }
        let reply = wire::put_message(&new_id(), Some(msg_id), size + 2, |out| {
            out.push('{');
            for (i, (soul, fields)) in current.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_graph_entry(out, soul, fields.iter().map(|(k, f)| (*k, *f)));
            }
            out.push('}');
        });
        replies.push(reply);
        current.clear();
    };
    for (soul, fields) in nodes {
        let mut start = 0;
        for (i, (key, field)) in fields.iter().enumerate() {
            let cost = field_cost(key, field);
            if size + cost > max_bytes && size > 0 {
                if i > start {
                    current.push((soul, &fields[start..i]));
                }
                flush(&mut current, size);
                start = i;
                size = 0;
            }
            if i == start {
                size += soul_cost(soul);
            }
            size += cost;
        }
        if fields.len() > start {
            current.push((soul, &fields[start..]));
        }
    }
    flush(&mut current, size);
    replies
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::{Field, Key, State, Value};

    #[test]
    fn replies_respect_the_size_and_keep_every_field() {
        let node = |soul: &str, n: usize| Node {
            soul: Soul::new(soul).unwrap(),
            fields: (0..n)
                .map(|i| {
                    let f = Field {
                        value: Value::String("x".repeat(100).into()),
                        state: State::new(1.0).unwrap(),
                    };
                    (Key::new(&format!("k{i:03}")).unwrap(), f)
                })
                .collect(),
        };
        let nodes = [node("a", 50), node("b", 1), node("c", 0)];
        let fields: Vec<Vec<(&Key, &Field)>> =
            nodes.iter().map(|n| n.fields.iter().collect()).collect();
        let mut ids = 0;
        let replies = node_replies(
            nodes
                .iter()
                .map(|n| &n.soul)
                .zip(fields.iter().map(Vec::as_slice)),
            1000,
            "get",
            || {
                ids += 1;
                format!("r{ids}")
            },
        );
        assert!(replies.len() > 5);
        let mut seen = 0;
        for reply in &replies {
            let msg: serde_json::Value = serde_json::from_str(reply).unwrap();
            assert_eq!(msg["@"], "get");
            let graph = crate::graph::Graph::from_json(&msg["put"], &Default::default()).unwrap();
            seen += graph.field_count();
            let put_len = msg["put"].to_string().len();
            assert!(put_len <= 1000, "{put_len} bytes");
        }
        assert_eq!(seen, 51, "every field is sent once");
    }

    #[test]
    fn one_whole_node_reply_is_what_node_replies_makes_of_it() {
        let soul = Soul::new("chat/room").unwrap();
        for n in 1..40 {
            let fields: Vec<(Key, Field)> = (0..n)
                .map(|i| {
                    let f = Field {
                        value: Value::String("x\"y".repeat(i % 7 * 10).into()),
                        state: State::new(1.0 + (i / 3) as f64).unwrap(),
                    };
                    (Key::new(&format!("k{i:03}")).unwrap(), f)
                })
                .collect();
            let borrowed: Vec<(&Key, &Field)> = fields.iter().map(|(k, f)| (k, f)).collect();
            for max_bytes in [50, 500, 1_000, 2_000, 5_000] {
                let replies = node_replies([(&soul, borrowed.as_slice())], max_bytes, "g", || {
                    "r".into()
                });
                let fits = fits_one_reply(&soul, &borrowed, max_bytes);
                assert_eq!(fits, replies.len() == 1, "{n} fields, {max_bytes} bytes");
                if fits {
                    let mut written = String::new();
                    write_graph_entry(&mut written, &soul, borrowed.iter().map(|(k, f)| (*k, *f)));
                    assert_eq!(whole_node_reply("r", "g", &written), replies[0]);
                }
            }
        }
    }
}
