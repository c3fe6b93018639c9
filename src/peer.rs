//! The peer: a deterministic state machine that turns inputs (connections, frames, storage results,
//! time) into outputs (frames, closes, storage ops, events). See the crate docs for the drive loop.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use crate::cache::NodeCache;
use crate::dedup::Dedup;
use crate::graph::{write_node, Field, Graph, Key, Node, Soul, State};
use crate::limits::Limits;
use crate::outbox::Outbox;
use crate::rng::Rng;
use crate::store::{select_fields, OpId, ReadQuery, StoreOp, StoreResult};
use crate::subscriptions::Subscriptions;
use crate::wire::{self, Body, FrameError, Get, KeyQuery, Message, MessageError};
use crate::HashMap;

/// Identifies one connection. Chosen by the runtime; unique while the connection is open.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ConnId(pub u64);

/// Who opened a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// A client or peer dialled us.
    Inbound,
    /// We dialled a configured peer.
    Outbound,
}

/// The two clocks: a monotonic instant for timers, and the wall clock for HAM.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Now {
    /// Monotonic time; drives every timer.
    pub mono: Instant,
    /// Milliseconds since the Unix epoch; HAM defers states ahead of it.
    pub wall_ms: f64,
}

/// How a peer is set up.
#[derive(Clone, Debug, Default)]
pub struct Config {
    /// Seeds every random choice (message ids, the peer id).
    pub seed: u64,
    /// The peer id sent in the DAM handshake; random from the seed when `None`.
    pub pid: Option<String>,
    /// Every bound the peer enforces.
    pub limits: Limits,
    /// Emit [`Event::Changed`] for every committed change (for embedders that watch the graph).
    pub emit_changes: bool,
}

/// Something that happened outside the core.
#[derive(Debug)]
pub enum Input<'a> {
    /// A connection opened.
    Connected {
        /// Its id.
        conn: ConnId,
        /// Who dialled.
        direction: Direction,
    },
    /// A text frame arrived.
    Frame {
        /// From where.
        conn: ConnId,
        /// The frame's text.
        text: &'a str,
    },
    /// A binary frame arrived. GUN speaks text only; the peer answers with an error.
    Binary {
        /// From where.
        conn: ConnId,
        /// Its size.
        bytes: usize,
    },
    /// A connection closed (either side).
    Disconnected {
        /// Which.
        conn: ConnId,
    },
    /// A storage op finished (committed, or failed). Results must arrive in op order.
    StoreDone {
        /// The op.
        op: OpId,
        /// Its outcome.
        result: StoreResult,
    },
    /// The deadline from [`Peer::poll_timeout`] passed (early or spurious calls are harmless).
    Timeout,
}

/// Something the runtime must do.
#[must_use]
#[non_exhaustive]
#[derive(Debug, PartialEq)]
pub enum Output {
    /// Send a text frame.
    Send {
        /// To whom.
        conn: ConnId,
        /// The frame.
        text: String,
    },
    /// Close a connection; the runtime then reports [`Input::Disconnected`].
    Close {
        /// Which.
        conn: ConnId,
        /// Why, for logs.
        reason: String,
    },
    /// Apply a storage op and report its result with [`Input::StoreDone`].
    Store(StoreOp),
    /// Tell the application.
    Event(Event),
}

/// Things an application or operator may want to know.
#[non_exhaustive]
#[derive(Debug, PartialEq)]
pub enum Event {
    /// Fields of a node changed and are durable (only with [`Config::emit_changes`]).
    Changed {
        /// The node.
        soul: Soul,
        /// The new fields.
        fields: Vec<(Key, Field)>,
    },
    /// A connection sent something the peer refused.
    Refused {
        /// Which connection.
        conn: ConnId,
        /// What was wrong.
        reason: String,
    },
    /// Storage failed; writes in the failed batch were answered with errors.
    StoreFailed {
        /// The store's reason.
        reason: String,
    },
}

/// A runtime broke the calling contract.
#[non_exhaustive]
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ApiMisuse {
    /// `Connected` for an id already open.
    DuplicateConn(ConnId),
    /// A frame or disconnect for an id not open.
    UnknownConn(ConnId),
    /// A storage result for an op that is not the oldest pending one.
    UnexpectedStoreResult(OpId),
}

impl std::fmt::Display for ApiMisuse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ApiMisuse::DuplicateConn(c) => write!(f, "connection {} is already open", c.0),
            ApiMisuse::UnknownConn(c) => write!(f, "connection {} is not open", c.0),
            ApiMisuse::UnexpectedStoreResult(o) => {
                write!(f, "storage result for op {} out of order or unknown", o.0)
            }
        }
    }
}

impl std::error::Error for ApiMisuse {}

/// Counters for metrics and tests.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Messages received.
    pub messages_in: u64,
    /// Frames sent.
    pub frames_out: u64,
    /// Messages dropped as duplicates.
    pub duplicates: u64,
    /// Puts acknowledged.
    pub puts_acked: u64,
    /// Puts refused or failed.
    pub puts_refused: u64,
    /// GETs answered.
    pub gets_answered: u64,
    /// Fields pushed to subscribers.
    pub fields_pushed: u64,
    /// Frames or messages refused as malformed or over a limit.
    pub refused: u64,
}

#[derive(Debug)]
struct Conn {
    pid: Option<String>,
}

/// A put waiting for its parts to commit.
#[derive(Debug)]
struct PendingPut {
    conn: ConnId,
    msg_id: String,
    /// Merges issued or deferred and not yet done.
    parts_left: usize,
    failure: Option<String>,
    /// Data that arrived as a reply (`@`) is merged but not acknowledged.
    ack: bool,
}

#[derive(Debug)]
enum OpPurpose {
    PutPart {
        put: u64,
        soul: Soul,
    },
    Get {
        conn: ConnId,
        msg_id: String,
        /// A whole-node read: cache the answer as this node.
        cache_as: Option<Soul>,
    },
}

#[derive(Debug)]
struct Deferred {
    put: u64,
    soul: Soul,
    fields: Vec<(Key, Field)>,
}

/// A GUN peer. Feed it [`Input`]s with [`Peer::handle_input`], drain [`Peer::poll_output`], and
/// wake it at [`Peer::poll_timeout`].
#[derive(Debug)]
pub struct Peer {
    limits: Limits,
    emit_changes: bool,
    pid: String,
    rng: Rng,
    now: Now,
    conns: BTreeMap<ConnId, Conn>,
    dedup: Dedup,
    subs: Subscriptions,
    cache: NodeCache,
    /// Issued storage ops, oldest first, with what each is for.
    ops: VecDeque<(OpId, OpPurpose)>,
    next_op: u64,
    puts: HashMap<u64, PendingPut>,
    next_put: u64,
    deferred: BTreeMap<(Instant, u64), Deferred>,
    deferred_seq: u64,
    next_keepalive: Option<Instant>,
    outbox: Outbox,
    outputs: VecDeque<Output>,
    stats: Stats,
}

impl Peer {
    /// A peer with no connections, at time `now`.
    pub fn new(config: Config, now: Now) -> Peer {
        let mut rng = Rng::new(config.seed);
        let hasher = foldhash::fast::FixedState::with_seed(rng.next_u64());
        let pid = config.pid.unwrap_or_else(|| rng.id(9));
        let limits = config.limits;
        Peer {
            dedup: Dedup::new(
                limits.max_dedup_entries,
                Duration::from_millis(limits.dedup_ttl_ms),
                hasher.clone(),
            ),
            subs: Subscriptions::new(limits.max_subscriptions_per_connection, hasher.clone()),
            cache: NodeCache::new(limits.max_cached_fields, hasher.clone()),
            outbox: Outbox::new(limits.batch_frame_bytes, hasher.clone()),
            puts: HashMap::with_hasher(hasher.clone()),
            emit_changes: config.emit_changes,
            limits,
            pid,
            rng,
            now,
            conns: BTreeMap::new(),
            ops: VecDeque::new(),
            next_op: 0,
            next_put: 0,
            deferred: BTreeMap::new(),
            deferred_seq: 0,
            next_keepalive: None,
            outputs: VecDeque::new(),
            stats: Stats::default(),
        }
    }

    /// This peer's id, as sent in the DAM handshake.
    pub fn pid(&self) -> &str {
        &self.pid
    }

    /// The limits in force.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Counters since start.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// Open connections.
    pub fn connections(&self) -> usize {
        self.conns.len()
    }

    /// Storage ops issued and not yet completed.
    pub fn pending_store_ops(&self) -> usize {
        self.ops.len()
    }

    /// Applies one input. Drain [`Peer::poll_output`] after each call.
    ///
    /// Only a runtime's mistakes are errors; anything a remote peer sends, however malformed, is
    /// handled (answered with an error, or dropped) and never fails this call.
    pub fn handle_input(&mut self, now: Now, input: Input<'_>) -> Result<(), ApiMisuse> {
        self.advance(now);
        let result = match input {
            Input::Connected { conn, direction } => self.on_connected(conn, direction),
            Input::Frame { conn, text } => self.on_frame(conn, text),
            Input::Binary { conn, bytes } => self.on_binary(conn, bytes),
            Input::Disconnected { conn } => self.on_disconnected(conn),
            Input::StoreDone { op, result } => self.on_store_done(op, result),
            Input::Timeout => {
                self.on_timeout();
                Ok(())
            }
        };
        self.flush();
        result
    }

    /// The next output, until `None`.
    #[must_use]
    pub fn poll_output(&mut self) -> Option<Output> {
        self.outputs.pop_front()
    }

    /// When to deliver [`Input::Timeout`] next, or `None` if no timer is armed.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        let deferred = self.deferred.keys().next().map(|(at, _)| *at);
        [self.next_keepalive, deferred].into_iter().flatten().min()
    }

    fn advance(&mut self, now: Now) {
        // Time never runs backwards inside the core, whatever the runtime's clocks do.
        if now.mono > self.now.mono {
            self.now.mono = now.mono;
        }
        self.now.wall_ms = now.wall_ms;
    }

    fn new_id(&mut self) -> String {
        self.rng.id(9)
    }

    fn send(&mut self, conn: ConnId, message: String) {
        if self.conns.contains_key(&conn) {
            self.outbox.push(conn, message);
        }
    }

    fn flush(&mut self) {
        let outputs = &mut self.outputs;
        let stats = &mut self.stats;
        self.outbox.drain_frames(|conn, text| {
            stats.frames_out += 1;
            outputs.push_back(Output::Send { conn, text });
        });
    }

    fn refuse(&mut self, conn: ConnId, reason: String) {
        self.stats.refused += 1;
        self.outputs
            .push_back(Output::Event(Event::Refused { conn, reason }));
    }

    fn issue(&mut self, purpose: OpPurpose, make: impl FnOnce(OpId) -> StoreOp) {
        let op = OpId(self.next_op);
        self.next_op += 1;
        self.ops.push_back((op, purpose));
        self.outputs.push_back(Output::Store(make(op)));
    }

    fn storage_busy(&self) -> bool {
        self.ops.len() >= self.limits.max_pending_store_ops
    }

    // Connections.

    fn on_connected(&mut self, conn: ConnId, direction: Direction) -> Result<(), ApiMisuse> {
        if self.conns.contains_key(&conn) {
            return Err(ApiMisuse::DuplicateConn(conn));
        }
        if self.conns.len() >= self.limits.max_connections {
            self.outputs.push_back(Output::Close {
                conn,
                reason: format!(
                    "connection limit of {} reached",
                    self.limits.max_connections
                ),
            });
            return Ok(());
        }
        self.conns.insert(conn, Conn { pid: None });
        if self.next_keepalive.is_none() {
            self.next_keepalive =
                Some(self.now.mono + Duration::from_millis(self.limits.keepalive_ms));
        }
        // GUN greets every inbound connection with its pid; the dialling side only answers.
        if direction == Direction::Inbound {
            let id = self.new_id();
            let hello = wire::dam_hello(&id, None, &self.pid);
            self.send(conn, hello);
        }
        Ok(())
    }

    fn on_disconnected(&mut self, conn: ConnId) -> Result<(), ApiMisuse> {
        if self.conns.remove(&conn).is_none() {
            // A close of a connection the core itself refused at `Connected` is expected.
            return Ok(());
        }
        self.subs.remove_conn(conn);
        self.outbox.forget(conn);
        if self.conns.is_empty() {
            self.next_keepalive = None;
        }
        Ok(())
    }

    // Time.

    fn on_timeout(&mut self) {
        let now = self.now.mono;
        if self.next_keepalive.is_some_and(|at| at <= now) {
            let conns: Vec<ConnId> = self.conns.keys().copied().collect();
            for conn in conns {
                // The empty batch is GUN's heartbeat; it keeps proxies from cutting idle sockets.
                self.outputs.push_back(Output::Send {
                    conn,
                    text: "[]".into(),
                });
            }
            self.next_keepalive = Some(now + Duration::from_millis(self.limits.keepalive_ms));
        }
        while let Some(entry) = self.deferred.first_entry() {
            if entry.key().0 > now {
                break;
            }
            let d = entry.remove();
            // The monotonic deadline came; HAM decides on the wall clock, which may have been set
            // back meanwhile. A state still ahead of it waits again.
            let ahead = d
                .fields
                .iter()
                .map(|(_, f)| f.state.ms())
                .fold(f64::MIN, f64::max)
                - self.now.wall_ms;
            if ahead > 0.0 {
                let at = now + Duration::from_secs_f64(ahead / 1000.0);
                self.deferred_seq += 1;
                self.deferred.insert((at, self.deferred_seq), d);
                continue;
            }
            let purpose = OpPurpose::PutPart {
                put: d.put,
                soul: d.soul.clone(),
            };
            self.issue(purpose, |op| StoreOp::Merge {
                op,
                soul: d.soul,
                fields: d.fields,
            });
        }
    }

    // Frames and messages.

    fn on_frame(&mut self, conn: ConnId, text: &str) -> Result<(), ApiMisuse> {
        if !self.conns.contains_key(&conn) {
            return Err(ApiMisuse::UnknownConn(conn));
        }
        let rng = &mut self.rng;
        let parsed = match wire::parse_frame(text, &self.limits, || rng.id(9)) {
            Ok(parsed) => parsed,
            Err(e) => {
                self.frame_error(conn, &e);
                return Ok(());
            }
        };
        for item in parsed {
            self.stats.messages_in += 1;
            match item {
                Ok(msg) => self.on_message(conn, msg),
                Err(e) => self.message_error(conn, e),
            }
        }
        Ok(())
    }

    fn on_binary(&mut self, conn: ConnId, bytes: usize) -> Result<(), ApiMisuse> {
        if !self.conns.contains_key(&conn) {
            return Err(ApiMisuse::UnknownConn(conn));
        }
        self.frame_error(conn, &FrameError::Binary { bytes });
        Ok(())
    }

    fn frame_error(&mut self, conn: ConnId, e: &FrameError) {
        let text = e.to_string();
        let id = self.new_id();
        self.send(conn, wire::dam_error(&id, "!", None, &text));
        self.refuse(conn, text);
    }

    fn message_error(&mut self, conn: ConnId, e: MessageError) {
        let id = self.new_id();
        let reply = match &e.id {
            Some(to) => wire::error_reply(&id, to, &e.reason),
            None => wire::dam_error(&id, "!", None, &e.reason),
        };
        self.send(conn, reply);
        if e.id.is_some() {
            self.stats.puts_refused += 1;
        }
        self.refuse(conn, e.reason);
    }

    fn on_message(&mut self, conn: ConnId, msg: Message) {
        if self
            .dedup
            .check_and_track(&msg.id, conn, self.now.mono)
            .is_some()
        {
            self.stats.duplicates += 1;
            return;
        }
        match msg.body {
            Body::Dam { verb, pid } => {
                self.on_dam(conn, &msg.id, msg.reply_to.as_deref(), &verb, pid)
            }
            Body::Get(get) => self.on_get(conn, msg.id, get),
            Body::Put(graph) => self.on_put(conn, msg.id, msg.reply_to.is_none(), graph),
            // Acks and errors answer requests; a relay with no requests of its own has nothing to
            // route them to, and GUN drops them the same way.
            Body::Other => {}
        }
    }

    fn on_dam(
        &mut self,
        conn: ConnId,
        id: &str,
        reply_to: Option<&str>,
        verb: &str,
        pid: Option<String>,
    ) {
        match verb {
            "?" => {
                if let (Some(pid), Some(c)) = (pid, self.conns.get_mut(&conn)) {
                    c.pid.get_or_insert(pid);
                }
                if reply_to.is_none() {
                    let reply_id = self.new_id();
                    let hello = wire::dam_hello(&reply_id, Some(id), &self.pid);
                    self.send(conn, hello);
                }
            }
            "opt" => {
                // Asking a relay to dial an address would let anyone aim it at any host.
                let reply_id = self.new_id();
                let text = "Refused: this relay does not connect to peers on request.";
                self.send(conn, wire::dam_error(&reply_id, "opt", Some(id), text));
                self.refuse(conn, "dam 'opt' refused".into());
            }
            // `hi` opens lazy sockets, `!` reports an error to a log, and the rest (`mob`, `rtc`,
            // unknown verbs) concern other peers; none needs an answer from a relay.
            _ => {}
        }
    }

    // GET.

    fn on_get(&mut self, conn: ConnId, msg_id: String, get: Get) {
        if let Get::Node { soul, .. } = &get {
            if !self.subs.subscribe(conn, soul) {
                self.refuse(
                    conn,
                    "subscription limit reached; GET answered without live updates".into(),
                );
            }
        }
        if let Get::Node {
            soul,
            keys,
            reverse,
            budget,
        } = &get
        {
            if let Some(cached) = self.cache.node(soul) {
                let budget = budget.unwrap_or(self.limits.max_lex_reply_bytes);
                let fields = select_fields(cached.iter(), keys, *reverse, budget);
                let node = Node {
                    soul: soul.clone(),
                    fields,
                };
                self.answer_get(conn, &msg_id, &[node]);
                return;
            }
        }
        if self.storage_busy() {
            let id = self.new_id();
            self.send(
                conn,
                wire::error_reply(&id, &msg_id, "Server busy: storage is behind, retry later."),
            );
            return;
        }
        let max_budget = self.limits.max_lex_reply_bytes;
        let (query, cache_as) = match get {
            Get::Node {
                soul,
                keys,
                reverse,
                budget,
            } => {
                let whole = (keys == KeyQuery::All).then(|| soul.clone());
                (
                    ReadQuery::Node {
                        soul,
                        keys,
                        reverse,
                        budget: budget.unwrap_or(max_budget),
                    },
                    whole,
                )
            }
            Get::Souls {
                range,
                reverse,
                budget,
            } => (
                ReadQuery::Souls {
                    range,
                    reverse,
                    budget: budget.unwrap_or(max_budget),
                },
                None,
            ),
        };
        let purpose = OpPurpose::Get {
            conn,
            msg_id,
            cache_as,
        };
        self.issue(purpose, |op| StoreOp::Read { op, query });
    }

    fn answer_get(&mut self, conn: ConnId, msg_id: &str, nodes: &[Node]) {
        self.stats.gets_answered += 1;
        let id = self.new_id();
        let nodes: Vec<&Node> = nodes.iter().filter(|n| !n.fields.is_empty()).collect();
        if nodes.is_empty() {
            self.send(conn, wire::not_found(&id, msg_id));
            return;
        }
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
    }

    // PUT.

    fn on_put(&mut self, conn: ConnId, msg_id: String, ack: bool, graph: Graph) {
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
                    return self.put_refused(conn, &msg_id, text);
                }
                if ahead > 0.0 {
                    deferred_count += 1;
                }
            }
        }
        if self.deferred.len() + deferred_count > self.limits.max_deferred_writes {
            let text = "Too many writes with future states are waiting; retry later.".to_string();
            return self.put_refused(conn, &msg_id, text);
        }
        if self.storage_busy() {
            let text = "Server busy: storage is behind, retry later.".to_string();
            return self.put_refused(conn, &msg_id, text);
        }
        let put = self.next_put;
        self.next_put += 1;
        let mut parts = 0;
        let now_state = State::new(wall).unwrap_or(State::new(0.0).expect("0 is a finite state"));
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
                let wait = Duration::from_secs_f64((state.ms() - wall) / 1000.0);
                self.deferred_seq += 1;
                self.deferred.insert(
                    (self.now.mono + wait, self.deferred_seq),
                    Deferred {
                        put,
                        soul: node.soul.clone(),
                        fields,
                    },
                );
            }
        }
        let pending = PendingPut {
            conn,
            msg_id,
            parts_left: parts,
            failure: None,
            ack,
        };
        if parts == 0 {
            // Nothing to write (nodes without fields): there is nothing to wait for.
            self.finish_put(pending);
        } else {
            self.puts.insert(put, pending);
        }
    }

    fn put_refused(&mut self, conn: ConnId, msg_id: &str, text: String) {
        self.stats.puts_refused += 1;
        let id = self.new_id();
        self.send(conn, wire::error_reply(&id, msg_id, &text));
        self.refuse(conn, text);
    }

    fn finish_put(&mut self, put: PendingPut) {
        if !put.ack {
            return;
        }
        let id = self.new_id();
        match put.failure {
            None => {
                self.stats.puts_acked += 1;
                self.send(put.conn, wire::ack(&id, &put.msg_id));
            }
            Some(reason) => {
                self.stats.puts_refused += 1;
                self.send(put.conn, wire::error_reply(&id, &put.msg_id, &reason));
            }
        }
    }

    // Storage results.

    fn on_store_done(&mut self, op: OpId, result: StoreResult) -> Result<(), ApiMisuse> {
        match self.ops.front() {
            Some((front, _)) if *front == op => {}
            _ => return Err(ApiMisuse::UnexpectedStoreResult(op)),
        }
        let (_, purpose) = self.ops.pop_front().expect("front was just checked");
        match purpose {
            OpPurpose::PutPart { put, soul } => self.on_merge_done(put, soul, result),
            OpPurpose::Get {
                conn,
                msg_id,
                cache_as,
            } => self.on_read_done(conn, &msg_id, cache_as, result),
        }
        Ok(())
    }

    fn on_merge_done(&mut self, put: u64, soul: Soul, result: StoreResult) {
        let sender = self.puts.get(&put).map(|p| p.conn);
        match result {
            StoreResult::Merged { changed } => {
                if !changed.is_empty() {
                    self.publish(sender, soul, changed);
                }
            }
            StoreResult::Failed { reason } => {
                // The store's state is uncertain after a failure; reads go back to it.
                self.cache.clear();
                self.outputs.push_back(Output::Event(Event::StoreFailed {
                    reason: reason.clone(),
                }));
                if let Some(p) = self.puts.get_mut(&put) {
                    p.failure.get_or_insert(format!("Storage failed: {reason}"));
                }
            }
            StoreResult::Read { .. } => {
                debug_assert!(false, "a merge op got a read result");
            }
        }
        let done = self.puts.get_mut(&put).is_some_and(|p| {
            p.parts_left -= 1;
            p.parts_left == 0
        });
        if done {
            let p = self.puts.remove(&put).expect("entry was just found");
            self.finish_put(p);
        }
    }

    fn publish(&mut self, sender: Option<ConnId>, soul: Soul, changed: Vec<(Key, Field)>) {
        self.cache.apply(&soul, &changed);
        let subscribers: Vec<ConnId> = self
            .subs
            .subscribers(&soul)
            .filter(|c| Some(*c) != sender)
            .collect();
        if !subscribers.is_empty() {
            let mut graph = String::with_capacity(64 + changed.len() * 32);
            graph.push('{');
            crate::json::write_string(&mut graph, soul.as_str());
            graph.push(':');
            write_node(&mut graph, &soul, changed.iter().map(|(k, f)| (k, f)));
            graph.push('}');
            for conn in subscribers {
                self.stats.fields_pushed += changed.len() as u64;
                let id = self.new_id();
                let msg = wire::put_message(&id, None, |out| out.push_str(&graph));
                self.send(conn, msg);
            }
        }
        if self.emit_changes {
            self.outputs.push_back(Output::Event(Event::Changed {
                soul,
                fields: changed,
            }));
        }
    }

    fn on_read_done(
        &mut self,
        conn: ConnId,
        msg_id: &str,
        cache_as: Option<Soul>,
        result: StoreResult,
    ) {
        match result {
            StoreResult::Read { nodes } => {
                if let Some(soul) = cache_as {
                    let fields = nodes.first().map(|n| n.fields.clone()).unwrap_or_default();
                    self.cache.insert(soul, fields);
                }
                self.answer_get(conn, msg_id, &nodes);
            }
            StoreResult::Failed { reason } => {
                let id = self.new_id();
                self.send(
                    conn,
                    wire::error_reply(&id, msg_id, &format!("Storage failed: {reason}")),
                );
            }
            StoreResult::Merged { .. } => debug_assert!(false, "a read op got a merge result"),
        }
    }
}
