//! The peer: a deterministic state machine that turns inputs (connections, frames, storage results,
//! time) into outputs (frames, closes, storage ops, events). See the crate docs for the drive loop.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::{Duration, Instant};

use crate::cache::NodeCache;
use crate::dedup::Dedup;
use crate::graph::{Field, Key, Soul};
use crate::lex::Range;
use crate::limits::Limits;
use crate::outbox::Outbox;
use crate::rng::Rng;
use crate::store::{OpId, StoreOp, StoreResult};
use crate::subscriptions::Subscriptions;
use crate::wire::{self, Body, FrameError, Message, MessageError};
use crate::{HashMap, HashSet};

mod authority;
mod feed;
mod mesh;
mod policy;
mod read;
mod remotes;
mod stats;
mod upstream;
mod write;

pub use authority::VerifyId;
use mesh::Forward;
use remotes::Remote;
pub use remotes::{RemoteId, RemoteState, RemoteStatus};
pub use stats::{ErrorCounts, ErrorKind, LatencyHistogram, Stats, LATENCY_BOUNDS};
pub use upstream::UpstreamStatus;

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
    /// Relays to dial and keep dialling (`ws://host:port/gun`), as [`Peer::add_remote`] does:
    /// relay links, which exchange whole graphs.
    pub peers: Vec<String>,
    /// Relays to sync with on demand (`ws://host:port/gun`), as [`Peer::add_upstream`] does:
    /// what is read here is asked of them, what is written here is sent to them (see
    /// [`Peer::upstreams`]). A peer with upstreams needs a store that keeps an outbox.
    pub upstreams: Vec<String>,
    /// Take every write without SEA's rules (only for a deployment that trusts every client).
    /// Off by default: user spaces take only their owner's signed writes.
    pub trust_all_writes: bool,
    /// Who may read and write what ([`crate::access`]); everything is open when `None`.
    pub access: Option<std::sync::Arc<dyn crate::access::AccessPolicy>>,
    /// The operator's write rules for a relay open to the public (all off by default).
    pub writes: crate::WritePolicy,
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
    /// The runtime authenticated who is at the other end of a connection (at its HTTP
    /// upgrade, say). Until then, and without it, a connection is anonymous; a peer this one
    /// dialled is [`Principal::Peer`](crate::access::Principal::Peer).
    Authenticated {
        /// Which connection.
        conn: ConnId,
        /// Who.
        principal: crate::access::Principal,
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
    /// Another writer committed these fields to the store this peer shares with it (relays on
    /// one database), as the store's change feed reports them: the fields now stored. They are
    /// pushed to this peer's subscribers as its own changes are.
    StoreChanged {
        /// The node.
        soul: Soul,
        /// Its fields as stored now.
        fields: Vec<(Key, Field)>,
    },
    /// The store's change feed had a gap (its connection was lost, and is back): changes
    /// committed meanwhile by other writers were not reported. The cache is dropped, and every
    /// node a connection subscribed to is read again and pushed to its subscribers.
    StoreFeedGap,
    /// The deadline from [`Peer::poll_timeout`] passed (early or spurious calls are harmless).
    Timeout,
    /// A dial asked for by [`Output::Dial`] connected; `conn` is the new connection.
    Dialled {
        /// The configured peer.
        remote: RemoteId,
        /// Its connection.
        conn: ConnId,
    },
    /// A dial asked for by [`Output::Dial`] failed; the peer asks again after a backoff.
    DialFailed {
        /// The configured peer.
        remote: RemoteId,
    },
    /// Frames for `conn` are piling up unsent (the runtime's queue passed its high-water mark):
    /// long answers to it (pages of a soul range, a whole graph for a link) wait.
    Congested {
        /// Which connection.
        conn: ConnId,
    },
    /// The queue for `conn` has drained (below its low-water mark): long answers go on.
    Drained {
        /// Which connection.
        conn: ConnId,
    },
    /// The signature checks of an [`Output::Verify`] ran: one result per check, in order.
    Verified {
        /// Which checks.
        id: VerifyId,
        /// Whether each held.
        results: &'a [bool],
    },
}

/// Something the runtime must do.
///
/// Not `#[non_exhaustive]`, on purpose: a runtime must act on every output, so an output added
/// later is a compile error in each runtime's `match`, never a silently ignored `_` arm.
#[must_use]
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
    /// Run these signature checks (away from the socket loops: each costs about as much as a
    /// small storage operation) and report [`Input::Verified`].
    Verify {
        /// Which checks.
        id: VerifyId,
        /// The checks; [`SignatureCheck::holds`](crate::sea::rules::SignatureCheck::holds) runs one.
        checks: Vec<crate::sea::rules::SignatureCheck>,
    },
    /// Open a WebSocket to a configured peer, then report [`Input::Dialled`] or
    /// [`Input::DialFailed`].
    Dial {
        /// The configured peer.
        remote: RemoteId,
        /// Its address.
        url: String,
    },
}

/// Things an application or operator may want to know. Not `#[non_exhaustive]`, as
/// [`Output`]: a runtime that reports events sees a new one at compile time.
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
    /// A request refused by a rule of the relay's ([`crate::Rule`]): for logs, with what it
    /// concerned (a key, a soul, a space), never the data.
    RuleRefused {
        /// Which connection.
        conn: ConnId,
        /// The rule.
        rule: crate::Rule,
        /// The key, soul or space.
        subject: String,
    },
    /// An upstream refused a local write for good (its rules differ from this peer's): it is
    /// not sent again.
    UpstreamRefused {
        /// Which upstream.
        remote: RemoteId,
        /// Its reason.
        reason: String,
    },
}

/// A runtime broke the calling contract.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ApiMisuse {
    /// `Connected` for an id already open.
    DuplicateConn(ConnId),
    /// A frame or disconnect for an id not open.
    UnknownConn(ConnId),
    /// A storage result for an op that is not the oldest pending one.
    UnexpectedStoreResult(OpId),
    /// A dial result for a configured peer that does not exist.
    UnknownRemote(RemoteId),
}

impl std::fmt::Display for ApiMisuse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ApiMisuse::DuplicateConn(c) => write!(f, "connection {} is already open", c.0),
            ApiMisuse::UnknownConn(c) => write!(f, "connection {} is not open", c.0),
            ApiMisuse::UnexpectedStoreResult(o) => {
                write!(f, "storage result for op {} out of order or unknown", o.0)
            }
            ApiMisuse::UnknownRemote(r) => write!(f, "no configured peer {}", r.0),
        }
    }
}

impl std::error::Error for ApiMisuse {}

/// A connection as it was when some work for it began: ids may be reused once a connection has
/// closed, so replies check the generation before they go out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct ConnRef {
    id: ConnId,
    generation: u64,
}

#[derive(Debug)]
struct Conn {
    generation: u64,
    pid: Option<String>,
    /// A relay link: a peer we dialled, or one that asked for every soul. Links exchange their
    /// whole graphs when they connect and receive every committed change, and GETs that miss
    /// locally are forwarded to them.
    link: bool,
    /// We have asked this connection for every soul.
    asked_all: bool,
    /// It asked us for every soul: a relay that keeps us in step with everything it has. A link
    /// that did not (a GUN JS relay we dialled) pushes only what we ask it for by soul.
    asked_us_all: bool,
    /// GETs (as JSON text) already asked of it, for links that push only what they are asked for.
    upstream: HashSet<String>,
    /// We dialled it.
    outbound: bool,
    /// The configured peer it connects to, if it is one.
    remote: Option<RemoteId>,
    /// The runtime reported its queue congested and not yet drained.
    congested: bool,
    /// Who is at the other end, for the access policy.
    principal: crate::access::Principal,
}

/// A put waiting for its parts to commit.
#[derive(Debug)]
struct PendingPut {
    conn: ConnRef,
    msg_id: String,
    /// When it arrived, for its latency.
    received: Instant,
    /// Merges issued or deferred and not yet done.
    parts_left: usize,
    failure: Option<String>,
    /// Its `><`: peers it was already sent to, which need no push of it.
    skip: Option<String>,
}

#[derive(Debug)]
enum OpPurpose {
    PutPart {
        put: u64,
        soul: Soul,
    },
    Get {
        conn: ConnRef,
        msg_id: String,
        /// When the GET arrived, for its latency.
        started: Instant,
        /// A whole-node read: cache the answer as this node.
        cache_as: Option<Soul>,
        /// The request, to forward to links if nothing is found here.
        forward: Option<Forward>,
    },
    /// One page of a soul-range answer.
    Page(u64),
    /// A subscribed node read again after a gap in the store's change feed.
    Refresh {
        soul: Soul,
    },
    /// A certificate's write-block list, read for a parked put.
    BlockList {
        put: u64,
    },
    /// The outbox's status, read at start.
    OutboxStatus,
    /// A local write appended to the outbox: one part of its put.
    OutboxAppend {
        put: u64,
        entry: std::sync::Arc<str>,
    },
    /// Outbox entries read for an upstream.
    OutboxRead {
        remote: RemoteId,
    },
    /// An upstream's mark written.
    OutboxMark {
        remote: RemoteId,
        upto: u64,
    },
}

/// A GET answered page by page: a soul range, or one whole node (which may be large).
#[derive(Debug)]
struct Stream {
    conn: ConnId,
    msg_id: String,
    /// When the GET arrived, for its latency.
    started: Instant,
    range: Range,
    /// A whole-node GET: cache the node if it fits in its first page.
    cache_as: Option<Soul>,
    /// The request, to forward to links if nothing is found here.
    forward: Option<Forward>,
    pages: u32,
    /// Bytes the asker still wants (`%`); `None` for everything.
    budget_left: Option<u64>,
    /// Where the last page ended.
    after: Option<(Soul, Key)>,
    /// The last node sent, for the end of a paged answer.
    last_sent: Option<Soul>,
    sent_any: bool,
    /// Waiting for the connection's queue to drain before reading the next page.
    paused: bool,
}

#[derive(Debug)]
struct Deferred {
    put: u64,
    soul: Soul,
    fields: Vec<(Key, Field)>,
    /// A local write of a peer with upstreams: appended to the outbox when merged.
    outboxed: bool,
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
    /// The connections that are relay links (see [`Conn::link`]), so that routing to links
    /// costs nothing per client connection.
    links: BTreeSet<ConnId>,
    dedup: Dedup,
    subs: Subscriptions,
    cache: NodeCache,
    /// Issued storage ops, oldest first, with what each is for.
    ops: VecDeque<(OpId, OpPurpose)>,
    next_op: u64,
    /// The op whose result is being handled (reads are cached only if no other writer may have
    /// changed their node since they were issued).
    done_op: u64,
    /// Subscribed nodes to read again after a gap in the store's change feed, and the reads of
    /// them under way.
    refresh: VecDeque<Soul>,
    refreshing: usize,
    puts: HashMap<u64, PendingPut>,
    next_put: u64,
    deferred: BTreeMap<(Instant, u64), Deferred>,
    deferred_seq: u64,
    /// Fields held in `deferred`.
    deferred_fields: usize,
    streams: HashMap<u64, Stream>,
    next_stream: u64,
    next_generation: u64,
    next_keepalive: Option<Instant>,
    outbox: Outbox,
    outputs: VecDeque<Output>,
    stats: Stats,
    remotes: Vec<Remote>,
    /// Seeds the per-connection sets made later.
    hasher: foldhash::fast::FixedState,
    /// Storage was at its limit when the frame being handled arrived.
    frame_refused_as_busy: bool,
    trust_all_writes: bool,
    access: Option<std::sync::Arc<dyn crate::access::AccessPolicy>>,
    writes: crate::WritePolicy,
    /// Banned keys and taken-down souls.
    moderation: crate::moderation::Moderation,
    /// Spaces' sizes in bytes, as merges into them reported (for the quotas).
    spaces: HashMap<String, u64>,
    /// Writes per key (for the rate).
    rates: crate::rate::KeyRates,
    /// Puts waiting for their signature checks, by check id.
    parked: HashMap<u64, authority::Parked>,
    /// When each parked put runs out of time, soonest first.
    verify_deadlines: BTreeSet<(Instant, u64)>,
    /// The outbox of local writes for upstreams.
    outbox_log: upstream::OutboxLog,
    /// Local GETs that may wait for an upstream's answer: message id → the wait.
    awaiting_upstream: BTreeMap<String, upstream::Awaiting>,
    /// Their deadlines, soonest first.
    upstream_deadlines: BTreeSet<(Instant, String)>,
    /// GETs asked while an upstream was being dialled, for it once it connects.
    asks_on_connect: Vec<String>,
    /// Souls read or written here, which upstreams keep this peer up to date on (at most
    /// `Limits::max_remote_gets`).
    interest: BTreeSet<crate::Soul>,
    next_verify: u64,
}

impl Peer {
    /// A peer with no connections, at time `now`. Invalid limits (see [`Limits::validate`]) are
    /// replaced by the defaults; runtimes should validate them first and report the error.
    pub fn new(config: Config, now: Now) -> Peer {
        let mut rng = Rng::new(config.seed);
        let hasher = foldhash::fast::FixedState::with_seed(rng.next_u64());
        let pid = config.pid.unwrap_or_else(|| rng.id(9));
        let limits = match config.limits.validate() {
            Ok(()) => config.limits,
            Err(_) => Limits::default(),
        };
        let mut peer = Peer {
            dedup: Dedup::new(
                limits.max_dedup_entries,
                Duration::from_millis(limits.dedup_ttl_ms),
                hasher.clone(),
            ),
            subs: Subscriptions::new(limits.max_subscriptions_per_connection, hasher.clone()),
            cache: NodeCache::new(limits.max_cache_bytes, hasher.clone()),
            outbox: Outbox::new(limits.batch_frame_bytes, hasher.clone()),
            puts: HashMap::with_hasher(hasher.clone()),
            streams: HashMap::with_hasher(hasher.clone()),
            parked: HashMap::with_hasher(hasher.clone()),
            next_stream: 0,
            next_generation: 0,
            emit_changes: config.emit_changes,
            limits,
            pid,
            rng,
            now,
            conns: BTreeMap::new(),
            links: BTreeSet::new(),
            ops: VecDeque::new(),
            next_op: 0,
            done_op: 0,
            refresh: VecDeque::new(),
            refreshing: 0,
            next_put: 0,
            deferred: BTreeMap::new(),
            deferred_seq: 0,
            deferred_fields: 0,
            next_keepalive: None,
            outputs: VecDeque::new(),
            stats: Stats::default(),
            remotes: Vec::new(),
            hasher: hasher.clone(),
            frame_refused_as_busy: false,
            trust_all_writes: config.trust_all_writes,
            access: config.access.clone(),
            rates: crate::rate::KeyRates::new(config.writes.writes_per_key_per_sec, hasher.clone()),
            writes: config.writes.clone(),
            moderation: Default::default(),
            spaces: HashMap::with_hasher(hasher),
            verify_deadlines: BTreeSet::new(),
            outbox_log: Default::default(),
            awaiting_upstream: BTreeMap::new(),
            upstream_deadlines: BTreeSet::new(),
            asks_on_connect: Vec::new(),
            interest: BTreeSet::new(),
            next_verify: 0,
        };
        for url in &config.peers {
            peer.add_remote(url);
        }
        for url in &config.upstreams {
            peer.add_upstream(url);
        }
        peer
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

    /// Open connections that are relay links (peers dialled, or that asked for everything).
    pub fn links(&self) -> usize {
        self.conns.values().filter(|c| c.link).count()
    }

    /// Whether `conn` is a relay link (a peer dialled, or one that asked for every soul).
    pub fn is_link(&self, conn: ConnId) -> bool {
        self.conns.get(&conn).is_some_and(|c| c.link)
    }

    /// Whether `conn` reaches one of this peer's upstreams.
    pub fn is_upstream(&self, conn: ConnId) -> bool {
        self.is_upstream_conn(conn)
    }

    /// Souls some connection is subscribed to.
    pub fn subscribed_souls(&self) -> usize {
        self.subs.souls()
    }

    /// Whether a connection is open (known to the peer).
    pub fn is_open(&self, conn: ConnId) -> bool {
        self.conns.contains_key(&conn)
    }

    /// Storage ops issued and not yet completed.
    pub fn pending_store_ops(&self) -> usize {
        self.ops.len()
    }

    /// Puts waiting for their signature checks.
    pub fn puts_verifying(&self) -> usize {
        self.parked.len()
    }

    /// Storage is behind: half of [`Limits::max_pending_store_ops`] are waiting. A runtime should
    /// then hold further frames (and so, through its bounded inbound buffer, stop reading
    /// sockets) until the storage results it is waiting for bring this back to false. Senders
    /// are slowed down instead of being refused with "busy" errors, and a relay streaming its
    /// graph to this one waits instead of losing pages.
    pub fn is_backlogged(&self) -> bool {
        self.ops.len() >= self.limits.max_pending_store_ops / 2
    }

    /// Applies one input. Drain [`Peer::poll_output`] after each call.
    ///
    /// Only a runtime's mistakes are errors; anything a remote peer sends, however malformed, is
    /// handled (answered with an error, or dropped) and never fails this call.
    pub fn handle_input(&mut self, now: Now, input: Input<'_>) -> Result<(), ApiMisuse> {
        self.advance(now);
        match input {
            Input::Connected { conn, direction } => self.on_connected(conn, direction),
            Input::Authenticated { conn, principal } => {
                let c = self
                    .conns
                    .get_mut(&conn)
                    .ok_or(ApiMisuse::UnknownConn(conn))?;
                c.principal = principal;
                Ok(())
            }
            Input::Frame { conn, text } => self.on_frame(conn, text),
            Input::Binary { conn, bytes } => self.on_binary(conn, bytes),
            Input::Disconnected { conn } => self.on_disconnected(conn),
            Input::StoreDone { op, result } => self.on_store_done(op, result),
            Input::StoreChanged { soul, fields } => {
                self.on_store_changed(soul, fields);
                Ok(())
            }
            Input::StoreFeedGap => {
                self.on_feed_gap();
                Ok(())
            }
            Input::Timeout => {
                self.on_timeout();
                Ok(())
            }
            Input::Dialled { remote, conn } => self.on_dialled(remote, conn),
            Input::DialFailed { remote } => self.on_dial_failed(remote),
            Input::Congested { conn } => {
                if let Some(c) = self.conns.get_mut(&conn) {
                    c.congested = true;
                }
                Ok(())
            }
            Input::Drained { conn } => {
                self.on_drained(conn);
                Ok(())
            }
            Input::Verified { id, results } => {
                self.on_verified(id, results);
                Ok(())
            }
        }
    }

    /// The next output, until `None`.
    ///
    /// Messages for a connection are packed into frames only when they are polled, so a runtime
    /// that feeds several inputs before draining (say, every result of one store batch) sends
    /// their replies in fewer frames.
    #[must_use]
    pub fn poll_output(&mut self) -> Option<Output> {
        if self.outputs.is_empty() {
            self.flush();
        }
        self.outputs.pop_front()
    }

    /// When to deliver [`Input::Timeout`] next, or `None` if no timer is armed.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        let deferred = self.deferred.keys().next().map(|(at, _)| *at);
        [
            self.next_keepalive,
            deferred,
            self.next_redial(),
            self.next_verify_deadline(),
            self.next_upstream_timer(),
        ]
        .into_iter()
        .flatten()
        .min()
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

    fn conn_ref(&self, conn: ConnId) -> ConnRef {
        ConnRef {
            id: conn,
            generation: self.conns.get(&conn).map_or(u64::MAX, |c| c.generation),
        }
    }

    fn is_current(&self, conn: ConnRef) -> bool {
        self.conns
            .get(&conn.id)
            .is_some_and(|c| c.generation == conn.generation)
    }

    /// Sends to a connection only if it is still the one the work began for.
    fn send_to(&mut self, conn: ConnRef, message: String) {
        if self.is_current(conn) {
            self.outbox.push(conn.id, message);
        }
    }

    /// Whether `conn` may read `soul`: the access policy, bans and takedowns.
    fn may_read(&self, conn: ConnId, soul: &str) -> bool {
        self.read_refusal(conn, soul).is_none()
    }

    /// Restores the operator's lists, as [`crate::moderation::Moderation::from_results`] read
    /// them from the store, before the first input.
    pub fn restore_moderation(&mut self, lists: crate::moderation::Moderation) {
        self.moderation = lists;
    }

    /// The operator's lists now.
    pub fn moderation(&self) -> &crate::moderation::Moderation {
        &self.moderation
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
            stats.bytes_out += text.len() as u64;
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

    /// Whether work from the frame being handled is refused as busy. A frame is admitted or
    /// refused whole, by the storage backlog when it arrived: a frame that carries many puts (a
    /// page of another relay's graph) is not cut in two, and what one frame can add is bounded
    /// by the frame size.
    fn storage_busy(&self) -> bool {
        self.frame_refused_as_busy
    }

    // Connections.

    fn on_connected(&mut self, conn: ConnId, direction: Direction) -> Result<(), ApiMisuse> {
        self.open_conn(conn, direction, true)
    }

    /// Opens a connection. GUN greets every inbound connection with its pid; the dialling side
    /// only answers. A connection dialled outward is asked for everything when `link`.
    fn open_conn(
        &mut self,
        conn: ConnId,
        direction: Direction,
        link: bool,
    ) -> Result<(), ApiMisuse> {
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
        self.next_generation += 1;
        self.conns.insert(
            conn,
            Conn {
                generation: self.next_generation,
                pid: None,
                link: false,
                asked_all: false,
                asked_us_all: false,
                upstream: HashSet::with_hasher(self.hasher.clone()),
                outbound: direction == Direction::Outbound,
                remote: None,
                congested: false,
                principal: crate::access::Principal::Anonymous,
            },
        );
        if self.next_keepalive.is_none() {
            self.next_keepalive =
                Some(self.now.mono + Duration::from_millis(self.limits.keepalive_ms));
        }
        match direction {
            Direction::Inbound => {
                let id = self.new_id();
                let hello = wire::dam_hello(&id, None, &self.pid);
                self.send(conn, hello);
            }
            Direction::Outbound if link => self.ask_for_everything(conn),
            Direction::Outbound => {}
        }
        Ok(())
    }

    fn on_disconnected(&mut self, conn: ConnId) -> Result<(), ApiMisuse> {
        if self.conns.remove(&conn).is_none() {
            // A close of a connection the core itself refused at `Connected` is expected.
            return Ok(());
        }
        self.links.remove(&conn);
        self.subs.remove_conn(conn);
        self.streams.retain(|_, s| s.conn != conn);
        self.outbox.forget(conn);
        self.remote_conn_closed(conn);
        if self.conns.is_empty() {
            self.next_keepalive = None;
        }
        Ok(())
    }

    // Time.

    fn on_timeout(&mut self) {
        self.remote_timers();
        self.expire_verifications();
        self.upstream_timers();
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
            self.deferred_fields -= d.fields.len();
            // The monotonic deadline came; HAM decides on the wall clock, which may have been set
            // back meanwhile. A state still ahead of it waits again.
            let ahead = d
                .fields
                .iter()
                .map(|(_, f)| f.state.ms())
                .fold(f64::MIN, f64::max)
                - self.now.wall_ms;
            if ahead > 0.0 {
                self.defer(ahead, d);
                continue;
            }
            if d.outboxed {
                self.append_deferred_to_outbox(d.put, &d.soul, &d.fields);
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

    /// Holds fields until `ahead_ms` from now. The wait is at least a millisecond, so a clock that
    /// moves in tiny steps cannot make the timer fire again and again at once.
    fn defer(&mut self, ahead_ms: f64, d: Deferred) {
        let wait = Duration::from_secs_f64(ahead_ms.clamp(1.0, 2_147_483_647.0) / 1000.0);
        let at = self.now.mono.checked_add(wait).unwrap_or(self.now.mono);
        self.deferred_seq += 1;
        self.deferred_fields += d.fields.len();
        self.deferred.insert((at, self.deferred_seq), d);
    }

    // Frames and messages.

    fn on_frame(&mut self, conn: ConnId, text: &str) -> Result<(), ApiMisuse> {
        if !self.conns.contains_key(&conn) {
            return Err(ApiMisuse::UnknownConn(conn));
        }
        self.frame_refused_as_busy = self.ops.len() >= self.limits.max_pending_store_ops;
        self.stats.bytes_in += text.len() as u64;
        // Each message is handled as it is read; the limits are copied out for the while.
        let limits = self.limits.clone();
        let read = wire::read_frame(
            text,
            &limits,
            self,
            |peer| peer.rng.id(9),
            |peer, item| {
                peer.stats.messages_in += 1;
                match item {
                    Ok(msg) => peer.on_message(conn, msg),
                    Err(e) => peer.message_error(conn, e),
                }
            },
        );
        if let Err(e) = read {
            self.frame_error(conn, &e);
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
        self.stats.errors.count(ErrorKind::Malformed);
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
        self.stats.errors.count(ErrorKind::Malformed);
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
        // A reply to a request that came through here goes on the way the request came.
        if !matches!(msg.body, Body::Dam { .. }) {
            self.route_reply(conn, &msg);
        }
        let upstream = self.is_upstream_conn(conn);
        if let (Some(to), Some(remote)) = (
            msg.reply_to.as_deref(),
            self.conns.get(&conn).and_then(|c| c.remote),
        ) {
            if upstream {
                self.upstream_answered(&msg);
                self.upstream_replied(remote, &msg);
            } else {
                self.remote_replied(remote, to);
            }
        }
        match msg.body {
            Body::Dam { verb, pid } => {
                self.on_dam(conn, &msg.id, msg.reply_to.as_deref(), &verb, pid)
            }
            Body::Get(get) => {
                self.stats.gets_received += 1;
                self.on_get(conn, msg.id, get, msg.skip)
            }
            Body::Put(graph) => {
                self.stats.puts_received += 1;
                // From an upstream, only what was asked for here is kept.
                let graph = if upstream {
                    match self.keep_wanted(graph) {
                        Some(graph) => graph,
                        None => return,
                    }
                } else {
                    graph
                };
                self.on_put(conn, msg.id, graph, msg.skip)
            }
            // Acks and errors were routed above if they answer a request that passed through
            // here; others answer nothing this relay knows of, and GUN drops them the same way.
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
                    if c.pid.is_none() {
                        c.pid = Some(pid.clone());
                        self.identified(conn, &pid);
                    }
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

    // Storage results.

    fn on_store_done(&mut self, op: OpId, result: StoreResult) -> Result<(), ApiMisuse> {
        match self.ops.front() {
            Some((front, _)) if *front == op => {}
            _ => return Err(ApiMisuse::UnexpectedStoreResult(op)),
        }
        let (_, purpose) = self.ops.pop_front().expect("front was just checked");
        self.done_op = op.0;
        match purpose {
            OpPurpose::PutPart { put, soul } => self.on_merge_done(put, soul, result),
            OpPurpose::Get {
                conn,
                msg_id,
                started,
                cache_as,
                forward,
            } => self.on_read_done(conn, &msg_id, started, cache_as, forward, result),
            OpPurpose::Page(stream) => self.on_page_done(stream, result),
            OpPurpose::BlockList { put } => self.on_block_read(put, result),
            OpPurpose::OutboxStatus => self.on_outbox_status(result),
            OpPurpose::OutboxAppend { put, entry } => self.on_outbox_appended(put, entry, result),
            OpPurpose::OutboxRead { remote } => self.on_outbox_read(remote, result),
            OpPurpose::OutboxMark { remote, upto } => self.on_mark_saved(remote, upto, result),
            OpPurpose::Refresh { soul } => self.on_refreshed(soul, result),
        }
        self.cache.op_done(op.0);
        Ok(())
    }
}
