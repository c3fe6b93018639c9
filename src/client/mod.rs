//! A GUN client as a state machine: the chain's operations (read a path, put, set, subscribe)
//! become GET and put messages, and the replies and pushes that come back become results and
//! change events. Like [`crate::Peer`] it does no I/O and reads no clock, and it is stepped with
//! the same verbs ([`crate::Machine`]): the caller hands it what the peer sends
//! ([`Client::handle_input`]), carries out what it asks ([`Client::poll_output`]: frames to send,
//! events for the application), wakes it at [`Client::poll_timeout`], and passes the wall clock
//! to writes.
//!
//! Paths are GUN's chains: `["chat", "room1"]` is `gun.get("chat").get("room1")`. The first
//! element is a soul; each next one a key, followed when it holds a link. A write along a path
//! that does not exist yet links new nodes whose souls are the path joined with `/`, and a nested
//! object becomes linked nodes the same way, reusing links that already exist, as GUN JS does.
//!
//! A write completes when the peer acknowledges it, which fibergun does once it is durable.

mod tree;

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::Instant;

use serde_json::{Map, Value as Json};

pub use tree::Fields;

use crate::graph::{Field, Graph, Key, Node, Soul, State, Value};
use crate::limits::Limits;
use crate::peer::{ApiMisuse, Now};
use crate::rng::Rng;
use crate::wire::{self, Body};

/// Identifies one read or write, in [`ClientEvent::Done`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct OpId(pub u64);

/// Identifies one subscription, in [`ClientEvent::Changed`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SubId(pub u64);

/// What an operation gave.
#[derive(Clone, Debug, PartialEq)]
pub enum Reply {
    /// What a read found: a node joined into a tree, a single value, or nothing.
    Read(Option<Json>),
    /// A write was acknowledged.
    Written {
        /// The node written: the node at the path, or for `set` the new item's node (or, for
        /// a value added to a set, the set's node).
        soul: String,
        /// For `set`, the key the item was added under.
        key: Option<String>,
    },
}

/// Why an operation failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClientError {
    /// Refused here, before anything was sent: an empty path, an array, a number that is not
    /// finite, a value at a soul without a key, a string too long.
    Invalid(String),
    /// The peer answered with an error (its text).
    Refused(String),
}

impl std::fmt::Display for ClientError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ClientError::Invalid(e) => write!(f, "invalid: {e}"),
            ClientError::Refused(e) => write!(f, "refused by the peer: {e}"),
        }
    }
}

impl std::error::Error for ClientError {}

/// What the client has to tell its caller.
#[derive(Clone, Debug, PartialEq)]
pub enum ClientEvent {
    /// An operation finished.
    Done {
        /// Which.
        op: OpId,
        /// Its outcome.
        result: Result<Reply, ClientError>,
    },
    /// A watched node changed (or was first read).
    Changed {
        /// Which subscription.
        sub: SubId,
        /// The node's soul.
        soul: String,
        /// The whole node as now known, links as `{"#":soul}`.
        node: Json,
        /// The keys that changed.
        changed: Vec<String>,
    },
}

/// What the client is told.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientInput<'a> {
    /// A frame from the peer. Frames that cannot be read are ignored (the peer is trusted to
    /// speak GUN; a relay's own errors arrive as replies).
    Frame {
        /// The frame's text.
        text: &'a str,
    },
    /// The deadline from [`Client::poll_timeout`] passed.
    Timeout,
}

/// What the client wants done. Not `#[non_exhaustive]`: whoever steps a client acts on every
/// output.
#[must_use]
#[derive(Clone, Debug, PartialEq)]
pub enum ClientOutput {
    /// Send a frame to the peer.
    Send {
        /// The frame.
        text: String,
    },
    /// Tell the application.
    Event(ClientEvent),
}

/// Who a node read is for.
#[derive(Clone, Copy, Debug)]
enum Purpose {
    Op(u64),
    /// Finding the soul a subscription watches, one hop at a time.
    SubResolve(u64),
    /// The watched node itself (its fields reach the subscription as they come).
    Sub,
}

/// A GET in flight: one node, possibly arriving in several replies.
#[derive(Debug)]
struct NodeRead {
    purpose: Purpose,
    soul: String,
    fields: Fields,
    found: bool,
}

/// A read of a path.
#[derive(Debug)]
struct ReadOp {
    path: Vec<String>,
    /// While resolving: the index in `path` of the node being read.
    hop: usize,
    depth: usize,
    /// The node the answer is rooted at, once the path is resolved.
    target: Option<String>,
    nodes: BTreeMap<String, Fields>,
    /// How far below the target each node read is.
    levels: BTreeMap<String, usize>,
    outstanding: usize,
}

/// What a write writes.
#[derive(Debug)]
enum WriteKind {
    /// A value or an object at the path.
    Put(Json),
    /// An item added to the set at the path.
    Set(Json),
}

/// A write: resolve the path (creating nodes), read the nodes a nested object lands on (to
/// reuse their links), then send one put and wait for its ack.
#[derive(Debug)]
struct WriteOp {
    kind: WriteKind,
    /// The nodes the path walks through (for a value, the path without its last key).
    nodes_path: Vec<String>,
    /// For a value, the key it is written under.
    key: Option<String>,
    hop: usize,
    /// Nodes this write creates: they hold nothing yet, so they are not read.
    created: BTreeSet<String>,
    state: f64,
    /// What will be written: soul → key → value.
    graph: BTreeMap<String, BTreeMap<String, Value>>,
    /// Objects waiting for the read of the existing node they land on.
    waiting: BTreeMap<String, Map<String, Json>>,
    outstanding: usize,
    result: (String, Option<String>),
}

#[derive(Debug)]
enum Op {
    Read(ReadOp),
    Write(WriteOp),
}

#[derive(Debug)]
struct Sub {
    path: Vec<String>,
    hop: usize,
    soul: Option<String>,
    node: Fields,
}

/// The client. See the module documentation.
#[derive(Debug)]
pub struct Client {
    limits: Limits,
    rng: Rng,
    id_prefix: String,
    next_msg: u64,
    next_op: u64,
    ops: BTreeMap<u64, Op>,
    reads: BTreeMap<String, NodeRead>,
    puts: BTreeMap<String, u64>,
    subs: BTreeMap<u64, Sub>,
    watched: BTreeMap<String, BTreeSet<u64>>,
    last_state: f64,
    /// Frames and events, in the order they arose.
    outputs: VecDeque<ClientOutput>,
}

impl Client {
    /// A client whose message ids and generated souls come from `seed`, and which reads frames
    /// within `limits`.
    pub fn new(seed: u64, limits: Limits) -> Client {
        let mut rng = Rng::new(seed);
        let id_prefix = rng.id(8);
        Client {
            limits,
            rng,
            id_prefix,
            next_msg: 0,
            next_op: 0,
            ops: BTreeMap::new(),
            reads: BTreeMap::new(),
            puts: BTreeMap::new(),
            subs: BTreeMap::new(),
            watched: BTreeMap::new(),
            last_state: 0.0,
            outputs: VecDeque::new(),
        }
    }

    /// Reads the node or value at `path`, following links `depth` levels below it (`once`;
    /// `map().once()` is a read with depth 1).
    pub fn read(&mut self, path: &[&str], depth: usize) -> OpId {
        let op = self.new_op();
        if let Err(e) = check_path(path) {
            self.done(op, Err(ClientError::Invalid(e)));
            return OpId(op);
        }
        let path: Vec<String> = path.iter().map(|s| s.to_string()).collect();
        let first = path[0].clone();
        self.ops.insert(
            op,
            Op::Read(ReadOp {
                path,
                hop: 0,
                depth,
                target: None,
                nodes: BTreeMap::new(),
                levels: BTreeMap::new(),
                outstanding: 0,
            }),
        );
        self.get_node(Purpose::Op(op), &first);
        OpId(op)
    }

    /// Writes `value` at `path`: an object is merged into the node there (nested objects
    /// becoming linked nodes); any other value is written under the path's last key. `now_ms`
    /// is the wall clock; the write's state is at least that, and above every earlier one.
    pub fn put(&mut self, path: &[&str], value: Json, now_ms: f64) -> OpId {
        let nested = tree::is_nested(&value);
        if !nested && path.len() < 2 {
            let op = self.new_op();
            let e = "a value other than an object needs a key: put it at soul/key".to_string();
            self.done(op, Err(ClientError::Invalid(e)));
            return OpId(op);
        }
        let nodes_path = if nested {
            path
        } else {
            &path[..path.len() - 1]
        };
        let key = (!nested).then(|| path[path.len() - 1].to_string());
        self.write(WriteKind::Put(value), path, nodes_path, key, now_ms)
    }

    /// Adds `value` to the set at `path` under a new unique key (`set`): an object becomes a
    /// node of its own, with a new soul, linked from the set.
    pub fn set(&mut self, path: &[&str], value: Json, now_ms: f64) -> OpId {
        self.write(WriteKind::Set(value), path, path, None, now_ms)
    }

    /// Watches the node at `path` (`on`): a [`ClientEvent::Changed`] comes with its current
    /// fields, and again whenever it changes, including by this client's own writes.
    pub fn subscribe(&mut self, path: &[&str]) -> Result<SubId, ClientError> {
        check_path(path).map_err(ClientError::Invalid)?;
        let id = self.new_op();
        let path: Vec<String> = path.iter().map(|s| s.to_string()).collect();
        let first = path[0].clone();
        let single = path.len() == 1;
        self.subs.insert(
            id,
            Sub {
                path,
                hop: 0,
                soul: None,
                node: Fields::new(),
            },
        );
        if single {
            self.watch(id, first);
        } else {
            self.get_node(Purpose::SubResolve(id), &first);
        }
        Ok(SubId(id))
    }

    /// Stops a subscription (`off`). Nothing more comes for it.
    pub fn unsubscribe(&mut self, sub: SubId) {
        if let Some(s) = self.subs.remove(&sub.0) {
            if let Some(soul) = s.soul {
                if let Some(set) = self.watched.get_mut(&soul) {
                    set.remove(&sub.0);
                    if set.is_empty() {
                        self.watched.remove(&soul);
                    }
                }
            }
        }
    }

    /// Applies one input. Drain [`Client::poll_output`] after each call. Nothing the peer
    /// sends makes it fail.
    pub fn handle_input(&mut self, _now: Now, input: ClientInput<'_>) -> Result<(), ApiMisuse> {
        match input {
            ClientInput::Frame { text } => self.on_frame(text),
            // No timer is armed yet (see `poll_timeout`): an early or spurious call is harmless.
            ClientInput::Timeout => {}
        }
        Ok(())
    }

    /// The next frame to send or event to report, in the order they arose, until `None`.
    pub fn poll_output(&mut self) -> Option<ClientOutput> {
        self.outputs.pop_front()
    }

    /// When to deliver [`ClientInput::Timeout`] next. The client arms no timer of its own
    /// (operations wait for their replies, which a fibergun relay always sends); a runtime
    /// that steps it still asks, so a timer added later changes no runtime.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        None
    }

    /// Operations not finished yet.
    pub fn pending(&self) -> usize {
        self.ops.len()
    }

    fn on_frame(&mut self, text: &str) {
        let mut n = 0u64;
        let Ok(messages) = wire::parse_frame(text, &self.limits, || {
            n += 1;
            format!("in{n}")
        }) else {
            return;
        };
        for msg in messages.into_iter().flatten() {
            if let Body::Put(graph) = &msg.body {
                self.feed_subscriptions(graph);
            }
            let Some(reply_to) = msg.reply_to.as_deref() else {
                continue;
            };
            if self.reads.contains_key(reply_to) {
                self.on_read_reply(reply_to, &msg);
            } else if let Some(op) = self.puts.remove(reply_to) {
                self.on_put_reply(op, msg.err);
            }
        }
    }

    fn new_op(&mut self) -> u64 {
        self.next_op += 1;
        self.next_op
    }

    fn new_msg_id(&mut self) -> String {
        self.next_msg += 1;
        format!("{}{}", self.id_prefix, base36(self.next_msg))
    }

    fn done(&mut self, op: u64, result: Result<Reply, ClientError>) {
        self.ops.remove(&op);
        self.outputs
            .push_back(ClientOutput::Event(ClientEvent::Done {
                op: OpId(op),
                result,
            }));
    }

    fn get_node(&mut self, purpose: Purpose, soul: &str) {
        let id = self.new_msg_id();
        let mut text = String::with_capacity(32 + soul.len());
        text.push_str("{\"#\":");
        crate::json::write_string(&mut text, &id);
        text.push_str(",\"get\":{\"#\":");
        crate::json::write_string(&mut text, soul);
        text.push_str("}}");
        self.outputs.push_back(ClientOutput::Send { text });
        self.reads.insert(
            id,
            NodeRead {
                purpose,
                soul: soul.to_owned(),
                fields: Fields::new(),
                found: false,
            },
        );
    }

    fn on_read_reply(&mut self, reply_to: &str, msg: &wire::Message) {
        let Some(read) = self.reads.get_mut(reply_to) else {
            return;
        };
        if let Some(err) = &msg.err {
            let read = self.reads.remove(reply_to).expect("present");
            return self.read_failed(read.purpose, err.clone());
        }
        if let Body::Put(graph) = &msg.body {
            if let Some(node) = graph.nodes.iter().find(|n| n.soul.as_str() == read.soul) {
                read.found = true;
                let incoming = node_fields(node);
                tree::merge(&mut read.fields, &incoming);
            }
        }
        if msg.extra("more") == Some(&Json::Bool(true)) {
            return;
        }
        let read = self.reads.remove(reply_to).expect("present");
        let fields = read.found.then_some(read.fields);
        match read.purpose {
            Purpose::Op(op) => self.node_read_for_op(op, read.soul, fields),
            Purpose::SubResolve(sub) => self.node_read_for_resolve(sub, read.soul, fields),
            Purpose::Sub => {}
        }
    }

    fn read_failed(&mut self, purpose: Purpose, err: String) {
        match purpose {
            Purpose::Op(op) => {
                if self.ops.contains_key(&op) {
                    self.done(op, Err(ClientError::Refused(err)));
                }
            }
            // A subscription whose read failed stays: pushes still reach it.
            Purpose::SubResolve(_) | Purpose::Sub => {}
        }
    }

    fn node_read_for_op(&mut self, op: u64, soul: String, fields: Option<Fields>) {
        match self.ops.get(&op) {
            Some(Op::Read(_)) => self.read_step(op, soul, fields),
            Some(Op::Write(_)) => self.write_step(op, soul, fields),
            None => {}
        }
    }

    // ---- reads ----

    fn read_step(&mut self, op: u64, soul: String, fields: Option<Fields>) {
        let Some(Op::Read(r)) = self.ops.get_mut(&op) else {
            return;
        };
        if r.target.is_none() {
            let Some(fields) = fields else {
                return self.done(op, Ok(Reply::Read(None)));
            };
            if r.hop + 1 == r.path.len() {
                r.target = Some(soul.clone());
                r.levels.insert(soul.clone(), 0);
                return self.read_expand(op, soul, fields);
            }
            let key = r.path[r.hop + 1].clone();
            let last = r.hop + 2 == r.path.len();
            match fields.get(&key) {
                Some((Value::Link(to), _)) => {
                    r.hop += 1;
                    let to = to.as_str().to_owned();
                    self.get_node(Purpose::Op(op), &to);
                }
                Some((value, _)) if last => {
                    let value = value.to_json();
                    self.done(op, Ok(Reply::Read(Some(value))));
                }
                _ => self.done(op, Ok(Reply::Read(None))),
            }
            return;
        }
        r.outstanding -= 1;
        if let Some(fields) = fields {
            self.read_expand(op, soul, fields);
        } else {
            self.read_finish_if_complete(op);
        }
    }

    /// A node of the answer was read: read the nodes it links to, while the depth allows.
    fn read_expand(&mut self, op: u64, soul: String, fields: Fields) {
        let Some(Op::Read(r)) = self.ops.get_mut(&op) else {
            return;
        };
        let level = r.levels.get(&soul).copied().unwrap_or(0);
        let mut next = Vec::new();
        if level < r.depth {
            for (value, _) in fields.values() {
                if let Value::Link(to) = value {
                    if !r.levels.contains_key(to.as_str()) {
                        r.levels.insert(to.as_str().to_owned(), level + 1);
                        next.push(to.as_str().to_owned());
                    }
                }
            }
        }
        r.nodes.insert(soul, fields);
        r.outstanding += next.len();
        for to in next {
            self.get_node(Purpose::Op(op), &to);
        }
        self.read_finish_if_complete(op);
    }

    fn read_finish_if_complete(&mut self, op: u64) {
        let Some(Op::Read(r)) = self.ops.get(&op) else {
            return;
        };
        if r.outstanding > 0 {
            return;
        }
        let target = r.target.clone().expect("resolved");
        let tree = tree::join(&target, &r.nodes, r.depth, &mut BTreeSet::new());
        self.done(op, Ok(Reply::Read(Some(tree))));
    }

    // ---- writes ----

    fn write(
        &mut self,
        kind: WriteKind,
        path: &[&str],
        nodes_path: &[&str],
        key: Option<String>,
        now: f64,
    ) -> OpId {
        let op = self.new_op();
        if let Err(e) = check_path(path).and_then(|()| check_value(&kind, &self.limits)) {
            self.done(op, Err(ClientError::Invalid(e)));
            return OpId(op);
        }
        let state = self.next_state(now);
        let nodes_path: Vec<String> = nodes_path.iter().map(|s| s.to_string()).collect();
        let first = nodes_path[0].clone();
        let single = nodes_path.len() == 1;
        self.ops.insert(
            op,
            Op::Write(WriteOp {
                kind,
                nodes_path,
                key,
                hop: 0,
                created: BTreeSet::new(),
                state,
                graph: BTreeMap::new(),
                waiting: BTreeMap::new(),
                outstanding: 0,
                result: (first.clone(), None),
            }),
        );
        if single {
            // The path is a soul: the target node, which may hold links to reuse.
            self.write_target(op, first, true);
        } else {
            self.get_node(Purpose::Op(op), &first);
        }
        OpId(op)
    }

    fn next_state(&mut self, now: f64) -> f64 {
        // Whole milliseconds, as GUN's clock gives: a state with the wall clock's fraction would
        // be up to 1 ms ahead of a GUN JS relay's `Date.now()` on the same clock, and GUN JS
        // defers such a write and never acknowledges it.
        let now = now.floor();
        // Above every earlier state, so two writes in one millisecond are ordered.
        self.last_state = if now > self.last_state {
            now
        } else {
            self.last_state + 0.001
        };
        self.last_state
    }

    fn write_op(&mut self, op: u64) -> Option<&mut WriteOp> {
        match self.ops.get_mut(&op) {
            Some(Op::Write(w)) => Some(w),
            _ => None,
        }
    }

    /// A node read for a write: a hop of the path, or a node a nested object lands on.
    fn write_step(&mut self, op: u64, soul: String, fields: Option<Fields>) {
        let Some(w) = self.write_op(op) else {
            return;
        };
        if let Some(object) = w.waiting.remove(&soul) {
            w.outstanding -= 1;
            self.place_object(op, &soul, object, fields.as_ref());
            return self.send_if_ready(op);
        }
        // Resolving the path: `soul` is nodes_path[hop]; find the link at the next key.
        let key = w.nodes_path[w.hop + 1].clone();
        let next = match fields.as_ref().and_then(|f| f.get(&key)) {
            Some((Value::Link(to), _)) => to.as_str().to_owned(),
            _ => {
                let to = format!("{soul}/{key}");
                let link = Value::Link(Soul::new(&to).expect("non-empty"));
                w.graph.entry(soul).or_default().insert(key, link);
                w.created.insert(to.clone());
                to
            }
        };
        w.hop += 1;
        let reached = w.hop + 1 == w.nodes_path.len();
        let fresh = w.created.contains(&next);
        if reached {
            self.write_target(op, next, !fresh);
        } else if fresh {
            // A new node has no links: the rest of the path is new too.
            self.write_step(op, next, None);
        } else {
            self.get_node(Purpose::Op(op), &next);
        }
    }

    /// The path is resolved to `target`; `existing` says whether it may already hold links.
    fn write_target(&mut self, op: u64, target: String, existing: bool) {
        let max = self.limits.max_value_bytes;
        let Some((state, is_set)) = self
            .write_op(op)
            .map(|w| (w.state, matches!(w.kind, WriteKind::Set(_))))
        else {
            return;
        };
        // A set's new key, like GUN's: its state in base 36, then random characters.
        let item = if is_set {
            format!("{}{}", base36(state as u64), self.rng.id(12))
        } else {
            String::new()
        };
        let Some(w) = self.write_op(op) else {
            return;
        };
        match std::mem::replace(&mut w.kind, WriteKind::Put(Json::Null)) {
            WriteKind::Put(Json::Object(object)) if w.key.is_none() => {
                w.result = (target.clone(), None);
                if existing {
                    w.waiting.insert(target.clone(), object);
                    w.outstanding += 1;
                    self.get_node(Purpose::Op(op), &target);
                } else {
                    self.place_object(op, &target, object, None);
                }
            }
            WriteKind::Put(value) => {
                let key = w.key.clone().expect("a value has a key");
                let leaf = tree::check_leaf(&value, max).expect("checked before");
                w.graph.entry(target.clone()).or_default().insert(key, leaf);
                w.result = (target, None);
            }
            WriteKind::Set(Json::Object(object)) if !tree::is_link(&object) => {
                let link = Value::Link(Soul::new(&item).expect("non-empty"));
                w.graph
                    .entry(target)
                    .or_default()
                    .insert(item.clone(), link);
                w.result = (item.clone(), Some(item.clone()));
                self.place_object(op, &item, object, None);
            }
            WriteKind::Set(value) => {
                let leaf = tree::check_leaf(&value, max).expect("checked before");
                w.graph
                    .entry(target.clone())
                    .or_default()
                    .insert(item.clone(), leaf);
                w.result = (target, Some(item));
            }
        }
        self.send_if_ready(op);
    }

    /// Writes `object`'s fields into `soul`; nested objects go to the node an existing link
    /// there points at (read first), or to a new node `soul/key`.
    fn place_object(
        &mut self,
        op: u64,
        soul: &str,
        object: Map<String, Json>,
        existing: Option<&Fields>,
    ) {
        let max = self.limits.max_value_bytes;
        let mut reads = Vec::new();
        let mut fresh = Vec::new();
        {
            let Some(w) = self.write_op(op) else {
                return;
            };
            let node = w.graph.entry(soul.to_owned()).or_default();
            for (key, value) in object {
                if key == "_" {
                    continue; // GUN's metadata, never a field
                }
                let inner = match value {
                    Json::Object(inner) if !tree::is_link(&inner) => inner,
                    leaf => {
                        let leaf = tree::check_leaf(&leaf, max).expect("checked before");
                        node.insert(key, leaf);
                        continue;
                    }
                };
                let linked = match existing.and_then(|f| f.get(&key)) {
                    Some((Value::Link(to), _)) => Some(to.as_str().to_owned()),
                    _ => None,
                };
                let child = linked.clone().unwrap_or_else(|| format!("{soul}/{key}"));
                node.insert(key, Value::Link(Soul::new(&child).expect("non-empty")));
                match linked {
                    // An existing node: read it first, for the links it holds.
                    Some(_) => {
                        w.waiting.insert(child.clone(), inner);
                        w.outstanding += 1;
                        reads.push(child);
                    }
                    None => fresh.push((child, inner)),
                }
            }
        }
        for child in reads {
            self.get_node(Purpose::Op(op), &child);
        }
        for (child, inner) in fresh {
            self.place_object(op, &child, inner, None);
        }
    }

    fn send_if_ready(&mut self, op: u64) {
        let Some(Op::Write(w)) = self.ops.get(&op) else {
            return;
        };
        if w.outstanding > 0 || !w.waiting.is_empty() {
            return;
        }
        let state = State::new(w.state).expect("a finite clock");
        let mut graph = Graph::default();
        for (soul, fields) in &w.graph {
            let mut node = Node::new(Soul::new(soul).expect("checked"));
            for (key, value) in fields {
                let Ok(key) = Key::new(key) else { continue };
                node.fields.insert(
                    key,
                    Field {
                        value: value.clone(),
                        state,
                    },
                );
            }
            graph.nodes.push(node);
        }
        let id = self.new_msg_id();
        let text = wire::put_message(&id, None, graph.json_len_hint(), |out| {
            graph.write_json(out)
        });
        self.outputs.push_back(ClientOutput::Send { text });
        self.puts.insert(id, op);
    }

    fn on_put_reply(&mut self, op: u64, err: Option<String>) {
        let Some(Op::Write(w)) = self.ops.get(&op) else {
            return;
        };
        if let Some(err) = err {
            return self.done(op, Err(ClientError::Refused(err)));
        }
        let (soul, key) = w.result.clone();
        // The peer does not push a connection's own writes back to it: watchers of the nodes
        // written read them again, now that the write is in.
        let souls: Vec<String> = w
            .graph
            .keys()
            .filter(|s| self.watched.contains_key(*s))
            .cloned()
            .collect();
        for s in souls {
            self.get_node(Purpose::Sub, &s);
        }
        self.done(op, Ok(Reply::Written { soul, key }));
    }

    // ---- subscriptions ----

    fn node_read_for_resolve(&mut self, sub: u64, soul: String, fields: Option<Fields>) {
        let Some(s) = self.subs.get_mut(&sub) else {
            return;
        };
        let key = s.path[s.hop + 1].clone();
        let next = match fields.as_ref().and_then(|f| f.get(&key)) {
            Some((Value::Link(to), _)) => to.as_str().to_owned(),
            // Not there yet: watch the soul a write along this path would create.
            _ => format!("{soul}/{key}"),
        };
        s.hop += 1;
        if s.hop + 1 == s.path.len() {
            self.watch(sub, next);
        } else {
            self.get_node(Purpose::SubResolve(sub), &next);
        }
    }

    fn watch(&mut self, sub: u64, soul: String) {
        let Some(s) = self.subs.get_mut(&sub) else {
            return;
        };
        s.soul = Some(soul.clone());
        self.watched.entry(soul.clone()).or_default().insert(sub);
        // A GET subscribes this connection to the node at the peer, and answers its fields.
        self.get_node(Purpose::Sub, &soul);
    }

    fn feed_subscriptions(&mut self, graph: &Graph) {
        for node in &graph.nodes {
            let Some(subs) = self.watched.get(node.soul.as_str()) else {
                continue;
            };
            let incoming = node_fields(node);
            for sub in subs.clone() {
                let Some(s) = self.subs.get_mut(&sub) else {
                    continue;
                };
                let changed = tree::merge(&mut s.node, &incoming);
                if changed.is_empty() {
                    continue;
                }
                let mut out = Map::new();
                for (key, (value, _)) in &s.node {
                    out.insert(key.clone(), value.to_json());
                }
                self.outputs
                    .push_back(ClientOutput::Event(ClientEvent::Changed {
                        sub: SubId(sub),
                        soul: node.soul.as_str().to_owned(),
                        node: Json::Object(out),
                        changed,
                    }));
            }
        }
    }
}

fn node_fields(node: &Node) -> Fields {
    node.fields
        .iter()
        .map(|(k, f)| (k.as_str().to_owned(), (f.value.clone(), f.state.ms())))
        .collect()
}

fn check_path(path: &[&str]) -> Result<(), String> {
    let Some(first) = path.first() else {
        return Err("an empty path".into());
    };
    Soul::new(first).map_err(|e| e.0)?;
    for key in &path[1..] {
        Key::new(key).map_err(|e| e.0)?;
    }
    Ok(())
}

fn check_value(kind: &WriteKind, limits: &Limits) -> Result<(), String> {
    let value = match kind {
        WriteKind::Put(v) | WriteKind::Set(v) => v,
    };
    check_tree(value, limits, 0)
}

fn check_tree(value: &Json, limits: &Limits, depth: usize) -> Result<(), String> {
    if depth > limits.max_json_depth {
        return Err(format!(
            "objects nested deeper than {}",
            limits.max_json_depth
        ));
    }
    match value {
        Json::Object(map) if tree::is_nested(value) => {
            for (key, inner) in map {
                if key == "_" {
                    continue;
                }
                Key::new(key).map_err(|e| e.0)?;
                check_tree(inner, limits, depth + 1).map_err(|e| format!("{key}: {e}"))?;
            }
            Ok(())
        }
        leaf => tree::check_leaf(leaf, limits.max_value_bytes).map(|_| ()),
    }
}

fn base36(mut n: u64) -> String {
    const DIGITS: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut out = Vec::new();
    loop {
        out.push(DIGITS[(n % 36) as usize]);
        n /= 36;
        if n == 0 {
            break;
        }
    }
    out.reverse();
    String::from_utf8(out).expect("ascii")
}
