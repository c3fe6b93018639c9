//! The driver: what a runtime does with the core between waits. It feeds the [`Peer`] events from
//! sockets, the store and the clock, and carries out its outputs: frames to connection writers,
//! closes, storage batches to the store thread (one in flight at a time, so the next gathers
//! meanwhile: group commit), and dials of configured peers.
//!
//! A runtime owns one [`Driver`] and a loop that waits, in its own way, for the next
//! [`DriverEvent`] or the driver's deadline:
//!
//! ```text
//! loop {
//!     driver.step();
//!     if driver.finished() { break }
//!     match wait(event channel, driver.deadline()) {
//!         event => driver.handle_burst(event, try_receive),
//!         deadline => driver.timeout(),
//!     }
//! }
//! driver.close_all();
//! ```

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Instant;

use async_channel::Sender;
use fibergun::sea::rules::SignatureCheck;
use fibergun::{ConnId, Direction, Event, Input, Output, Peer, RemoteId, StoreOp, VerifyId};

use crate::budget::ByteBudget;
use crate::clock;
use crate::local::{LocalEvent, LocalHandle};
use crate::queue::{congestion_marks, ConnHandle, OutboundTotal};
use crate::snapshot::PeerSnapshot;
use crate::store_thread::BatchResults;

/// Starts a dial of a configured peer; its outcome comes back as [`DriverEvent::Opened`] (with
/// the remote) or [`DriverEvent::DialFailed`].
pub type Dialer = Box<dyn Fn(RemoteId, String) + Send>;

/// Everything the driver reacts to.
#[derive(Debug)]
pub enum DriverEvent<C> {
    /// A WebSocket opened.
    Opened {
        /// Its id.
        conn: ConnId,
        /// The configured peer it reaches, if we dialled it.
        dialled: Option<RemoteId>,
        /// The address at the other end (for logs), if it is a network connection.
        addr: Option<std::net::SocketAddr>,
        /// Its writer.
        handle: C,
    },
    /// A dial of a configured peer failed.
    DialFailed {
        /// Which peer.
        remote: RemoteId,
    },
    /// The runtime authenticated who opened a connection (sent right after `Opened`).
    Authenticated {
        /// Which connection.
        conn: ConnId,
        /// Who.
        principal: fibergun::access::Principal,
    },
    /// A congested connection's queue drained to the low-water mark.
    Drained {
        /// Which.
        conn: ConnId,
    },
    /// Signature checks ran.
    Verified {
        /// Which checks.
        id: VerifyId,
        /// One result per check.
        results: Vec<bool>,
    },
    /// A text frame arrived.
    Frame {
        /// From where.
        conn: ConnId,
        /// The text.
        text: String,
        /// Bytes it holds of the inbound budget, given back once it is handled.
        budget: usize,
    },
    /// A binary frame arrived.
    Binary {
        /// From where.
        conn: ConnId,
        /// Its size.
        bytes: usize,
    },
    /// A WebSocket closed.
    Closed {
        /// Which.
        conn: ConnId,
    },
    /// A store batch committed (or failed).
    StoreDone {
        /// Each op's result, in op order.
        results: BatchResults,
        /// How long the store took over the batch.
        took: std::time::Duration,
    },
    /// A shared store's change feed reported something.
    Feed(fibergun::FeedEvent),
    /// Something from an in-process connection ([`crate::local`]).
    Local(LocalEvent),
    /// Send a snapshot of the core back (for metrics and health checks).
    Snapshot(async_channel::Sender<PeerSnapshot>),
    /// Asks for the open connections, at most this many (in id order).
    Connections(usize, async_channel::Sender<Vec<crate::snapshot::ConnInfo>>),
    /// Stop: finish in-flight storage work, then return.
    Shutdown,
}

/// A connection's writer: a runtime's socket, or an in-process connection.
enum Writer<C> {
    Socket(C),
    Local(LocalHandle),
}

impl<C: ConnHandle> ConnHandle for Writer<C> {
    fn queue(&self, text: String) -> usize {
        match self {
            Writer::Socket(c) => c.queue(text),
            Writer::Local(c) => c.queue(text),
        }
    }

    fn mark_congested(&self) -> bool {
        match self {
            Writer::Socket(c) => c.mark_congested(),
            Writer::Local(c) => c.mark_congested(),
        }
    }

    fn close(&self, reason: String) {
        match self {
            Writer::Socket(c) => c.close(reason),
            Writer::Local(c) => c.close(reason),
        }
    }

    fn kill(&self) {
        match self {
            Writer::Socket(c) => c.kill(),
            Writer::Local(c) => c.kill(),
        }
    }

    fn queued(&self) -> usize {
        match self {
            Writer::Socket(c) => c.queued(),
            Writer::Local(c) => c.queued(),
        }
    }
}

/// Owns the peer and the connection writers.
pub struct Driver<C: ConnHandle> {
    peer: Peer,
    store: Sender<Vec<StoreOp>>,
    conns: HashMap<ConnId, Writer<C>>,
    /// Ops emitted while a batch is committing: they form the next batch.
    pending_ops: Vec<StoreOp>,
    batch_in_flight: bool,
    /// How long the store took over each batch, for metrics.
    store_batches: fibergun::LatencyHistogram,
    shutting_down: bool,
    /// Connections closed from this side, to report to the core after the current drain.
    closed_by_us: Vec<ConnId>,
    /// Connections this relay dialled (peers, upstreams): what they send wrong is worth a
    /// warning, where a client's is not.
    dialled: std::collections::HashSet<ConnId>,
    /// Network connections' addresses, for logs.
    addrs: std::collections::HashMap<ConnId, std::net::SocketAddr>,
    /// When each connection opened, for an operator's view.
    opened_at: std::collections::HashMap<ConnId, std::time::Instant>,
    /// Connections found congested, to report to the core after the current drain.
    congested: Vec<ConnId>,
    /// Frames held while storage is backlogged, in arrival order; they keep their share of the
    /// inbound budget, so socket readers stop when it is spent.
    held_frames: VecDeque<(ConnId, String, usize)>,
    /// The inbound frame budget, released as frames are handled.
    inbound: Arc<ByteBudget>,
    dialer: Dialer,
    /// Signature checks for the verifier thread.
    verifier: std::sync::mpsc::Sender<(VerifyId, Vec<SignatureCheck>)>,
    /// Bytes queued for all connections, against the memory limit.
    outbound: Arc<OutboundTotal>,
}

impl<C: ConnHandle> Driver<C> {
    /// A driver for `peer`, sending store batches to `store` and signature checks to
    /// `verifier` (see [`crate::verifier`]).
    pub fn new(
        peer: Peer,
        store: Sender<Vec<StoreOp>>,
        inbound: Arc<ByteBudget>,
        dialer: Dialer,
        verifier: std::sync::mpsc::Sender<(VerifyId, Vec<SignatureCheck>)>,
        outbound: Arc<OutboundTotal>,
    ) -> Driver<C> {
        Driver {
            peer,
            store,
            conns: HashMap::new(),
            pending_ops: Vec::new(),
            batch_in_flight: false,
            store_batches: Default::default(),
            shutting_down: false,
            closed_by_us: Vec::new(),
            dialled: Default::default(),
            addrs: Default::default(),
            opened_at: Default::default(),
            congested: Vec::new(),
            held_frames: VecDeque::new(),
            inbound,
            dialer,
            verifier,
            outbound,
        }
    }

    /// Carries out everything the core has to do, and sends the next storage batch if none is
    /// committing. Call before every wait.
    pub fn step(&mut self) {
        self.carry_out_outputs();
        self.submit_batch();
    }

    /// Shutdown was asked for, and every storage op and signature check issued before it has
    /// been answered.
    pub fn finished(&self) -> bool {
        self.shutting_down
            && !self.batch_in_flight
            && self.pending_ops.is_empty()
            && self.peer.puts_verifying() == 0
    }

    /// When to call [`Driver::timeout`] next.
    pub fn deadline(&self) -> Option<Instant> {
        self.peer.poll_timeout()
    }

    /// The deadline has come.
    pub fn timeout(&mut self) {
        self.input(Input::Timeout);
    }

    /// Asks every open connection to close (after shutdown).
    pub fn close_all(&mut self) {
        for (_, conn) in self.conns.drain() {
            conn.close("server shutting down".into());
        }
    }

    fn input(&mut self, input: Input<'_>) {
        if let Err(e) = self.peer.handle_input(clock::now(), input) {
            // A runtime bug, not a client's: log it loudly and go on.
            tracing::error!("driver misuse of the core: {e}");
        }
    }

    /// Hands over `first` and the events already waiting behind it (`more`, up to 256), so the
    /// replies and storage ops of many frames go out together while latency stays fair.
    pub fn handle_burst(
        &mut self,
        first: DriverEvent<C>,
        mut more: impl FnMut() -> Option<DriverEvent<C>>,
    ) {
        self.handle(first);
        for _ in 0..256 {
            match more() {
                Some(event) => self.handle(event),
                None => break,
            }
        }
    }

    /// Hands one event to the core.
    pub fn handle(&mut self, event: DriverEvent<C>) {
        match event {
            DriverEvent::Opened {
                conn,
                dialled,
                addr,
                handle,
            } => {
                if self.shutting_down {
                    handle.close("server shutting down".into());
                    return;
                }
                tracing::debug!(conn = conn.0, ?dialled, ?addr, "connection opened");
                if let Some(addr) = addr {
                    self.addrs.insert(conn, addr);
                }
                self.conns.insert(conn, Writer::Socket(handle));
                self.opened_at.insert(conn, std::time::Instant::now());
                match dialled {
                    Some(remote) => {
                        self.dialled.insert(conn);
                        self.input(Input::Dialled { remote, conn })
                    }
                    None => self.input(Input::Connected {
                        conn,
                        direction: Direction::Inbound,
                    }),
                }
            }
            DriverEvent::DialFailed { remote } => self.input(Input::DialFailed { remote }),
            DriverEvent::Authenticated { conn, principal } => {
                if self.conns.contains_key(&conn) {
                    self.input(Input::Authenticated { conn, principal });
                }
            }
            DriverEvent::Verified { id, results } => {
                self.input(Input::Verified {
                    id,
                    results: &results,
                });
            }
            DriverEvent::Drained { conn } => {
                tracing::debug!(conn = conn.0, "drained");
                if self.conns.contains_key(&conn) {
                    self.input(Input::Drained { conn });
                }
            }
            DriverEvent::Frame { conn, text, budget } => {
                if self.peer.is_backlogged() || !self.held_frames.is_empty() {
                    self.held_frames.push_back((conn, text, budget));
                } else {
                    self.frame(conn, &text, budget);
                }
            }
            DriverEvent::Binary { conn, bytes } => {
                if !self.shutting_down && self.conns.contains_key(&conn) {
                    self.input(Input::Binary { conn, bytes });
                }
            }
            DriverEvent::Closed { conn } => {
                tracing::debug!(conn = conn.0, "connection closed");
                self.dialled.remove(&conn);
                self.addrs.remove(&conn);
                self.opened_at.remove(&conn);
                if self.conns.remove(&conn).is_some() {
                    self.input(Input::Disconnected { conn });
                }
            }
            DriverEvent::StoreDone { results, took } => {
                self.batch_in_flight = false;
                self.store_batches.observe(took);
                for (op, result) in results {
                    self.input(Input::StoreDone { op, result });
                }
                self.release_held_frames();
            }
            DriverEvent::Feed(fibergun::FeedEvent::Changed { soul, fields }) => {
                self.input(Input::StoreChanged { soul, fields });
            }
            DriverEvent::Feed(fibergun::FeedEvent::Gap) => {
                tracing::warn!(
                    "the store's change feed had a gap: subscribed nodes are read again"
                );
                self.input(Input::StoreFeedGap);
            }
            DriverEvent::Local(event) => self.local(event),
            DriverEvent::Snapshot(reply) => {
                let _ = reply.try_send(self.snapshot());
            }
            DriverEvent::Connections(max, reply) => {
                let _ = reply.try_send(self.connections(max));
            }
            DriverEvent::Shutdown => {
                tracing::info!("shutting down: finishing in-flight writes");
                self.shutting_down = true;
            }
        }
    }

    /// The core's figures, for metrics and health.
    pub fn snapshot(&self) -> PeerSnapshot {
        PeerSnapshot {
            stats: self.peer.stats().clone(),
            connections: self.peer.connections(),
            links: self.peer.links(),
            subscribed_souls: self.peer.subscribed_souls(),
            pending_store_ops: self.peer.pending_store_ops(),
            puts_verifying: self.peer.puts_verifying(),
            held_frames: self.held_frames.len(),
            store_batches: self.store_batches.clone(),
            remotes: self.peer.remotes(),
            upstreams: self.peer.upstreams(),
            shutting_down: self.shutting_down,
        }
    }

    /// The open connections, at most `max` of them, in id order.
    pub fn connections(&self, max: usize) -> Vec<crate::snapshot::ConnInfo> {
        use crate::snapshot::{ConnInfo, ConnKind};
        let now = std::time::Instant::now();
        let mut ids: Vec<ConnId> = self.conns.keys().copied().collect();
        ids.sort_unstable();
        ids.truncate(max);
        ids.into_iter()
            .filter_map(|conn| {
                let writer = self.conns.get(&conn)?;
                let kind = if matches!(writer, Writer::Local(_)) {
                    ConnKind::InProcess
                } else if self.peer.is_upstream(conn) {
                    ConnKind::Upstream
                } else if self.peer.is_link(conn) || self.dialled.contains(&conn) {
                    ConnKind::Link
                } else {
                    ConnKind::Client
                };
                Some(ConnInfo {
                    id: conn.0,
                    addr: self.addrs.get(&conn).copied(),
                    kind,
                    dialled: self.dialled.contains(&conn),
                    queued_bytes: writer.queued(),
                    age: self
                        .opened_at
                        .get(&conn)
                        .map_or_else(Default::default, |at| now.saturating_duration_since(*at)),
                })
            })
            .collect()
    }

    fn local(&mut self, event: LocalEvent) {
        match event {
            LocalEvent::Opened {
                conn,
                handle,
                principal,
            } => {
                if self.shutting_down {
                    handle.close("server shutting down".into());
                    return;
                }
                tracing::debug!(conn = conn.0, "in-process connection opened");
                self.conns.insert(conn, Writer::Local(handle));
                self.opened_at.insert(conn, std::time::Instant::now());
                self.input(Input::Connected {
                    conn,
                    direction: Direction::Inbound,
                });
                if principal != fibergun::access::Principal::Anonymous {
                    self.input(Input::Authenticated { conn, principal });
                }
            }
            LocalEvent::Frame { conn, text, budget } => {
                self.handle(DriverEvent::Frame { conn, text, budget })
            }
            LocalEvent::Drained { conn } => self.handle(DriverEvent::Drained { conn }),
            LocalEvent::Closed { conn } => self.handle(DriverEvent::Closed { conn }),
        }
    }

    fn frame(&mut self, conn: ConnId, text: &str, budget: usize) {
        if !self.shutting_down && self.conns.contains_key(&conn) {
            self.input(Input::Frame { conn, text });
        }
        self.inbound.release(budget);
    }

    /// Hands held frames to the core while storage keeps up.
    fn release_held_frames(&mut self) {
        while !self.peer.is_backlogged() {
            let Some((conn, text, budget)) = self.held_frames.pop_front() else {
                break;
            };
            self.frame(conn, &text, budget);
        }
    }

    fn carry_out_outputs(&mut self) {
        let max_queue = self.peer.limits().max_outbound_queue_bytes;
        let (high_water, _) = congestion_marks(max_queue);
        while let Some(output) = self.peer.poll_output() {
            match output {
                Output::Send { conn, text } => {
                    let Some(handle) = self.conns.get(&conn) else {
                        continue;
                    };
                    let queued = handle.queue(text);
                    // Over the memory limit, a connection holding more than its share goes.
                    let share = self.outbound.max.map_or(usize::MAX, |max| {
                        (max / self.conns.len().max(1)).max(64 << 10)
                    });
                    if queued > max_queue || (self.outbound.over() && queued > share) {
                        // A reader this slow would make the relay hold unbounded memory for it.
                        tracing::warn!(
                            conn = conn.0,
                            queued,
                            "closing a connection that does not read its frames"
                        );
                        // Its writer may be blocked on the socket, so end it outright.
                        handle.kill();
                        self.conns.remove(&conn);
                        self.closed_by_us.push(conn);
                    } else if queued > high_water && handle.mark_congested() {
                        self.congested.push(conn);
                    }
                }
                Output::Close { conn, reason } => {
                    tracing::debug!(conn = conn.0, "closing: {reason}");
                    if let Some(handle) = self.conns.remove(&conn) {
                        handle.close(reason);
                    }
                    self.closed_by_us.push(conn);
                }
                Output::Store(op) => self.pending_ops.push(op),
                Output::Event(event) => log_event(&event, &self.dialled, &self.addrs),
                Output::Verify { id, checks } => {
                    let sent = self.verifier.send((id, checks));
                    if sent.is_err() {
                        tracing::error!("the verifier thread is gone; signed writes wait");
                    }
                }
                Output::Dial { remote, url } => {
                    // Stopping: a new connection would only be closed again.
                    if !self.shutting_down {
                        tracing::debug!(remote = remote.0, "dialling {url}");
                        (self.dialer)(remote, url);
                    }
                }
            }
        }
    }

    fn submit_batch(&mut self) {
        // Connections closed from this side are reported after the drain: the core must not be
        // fed while its outputs are being read.
        for conn in std::mem::take(&mut self.closed_by_us) {
            self.input(Input::Disconnected { conn });
            self.carry_out_outputs();
        }
        for conn in std::mem::take(&mut self.congested) {
            if self.conns.contains_key(&conn) {
                tracing::debug!(conn = conn.0, "congested");
                self.input(Input::Congested { conn });
            }
        }
        if self.batch_in_flight || self.pending_ops.is_empty() {
            return;
        }
        let batch = std::mem::take(&mut self.pending_ops);
        if self.store.try_send(batch).is_err() {
            tracing::error!("the store thread is gone; storage ops cannot be applied");
            return;
        }
        self.batch_in_flight = true;
    }
}

fn log_event(
    event: &Event,
    dialled: &std::collections::HashSet<ConnId>,
    addrs: &std::collections::HashMap<ConnId, std::net::SocketAddr>,
) {
    match event {
        Event::RuleRefused {
            conn,
            rule,
            subject,
        } => match addrs.get(conn) {
            Some(addr) => tracing::info!(
                conn = conn.0,
                %addr,
                rule = rule.name(),
                "refused by rule {}: {subject}",
                rule.name()
            ),
            None => tracing::info!(
                conn = conn.0,
                rule = rule.name(),
                "refused by rule {}: {subject}",
                rule.name()
            ),
        },
        Event::Refused { conn, reason } if dialled.contains(conn) => {
            tracing::warn!(
                conn = conn.0,
                "a peer this relay dialled sent something refused: {reason}"
            )
        }
        Event::Refused { conn, reason } => tracing::debug!(conn = conn.0, "refused: {reason}"),
        Event::StoreFailed { reason } => tracing::error!("storage failed: {reason}"),
        Event::UpstreamRefused { remote, reason } => {
            tracing::warn!(
                remote = remote.0,
                "an upstream refused a local write: {reason}"
            )
        }
        Event::Changed { soul, fields } => {
            tracing::trace!(soul = soul.as_str(), fields = fields.len(), "changed")
        }
    }
}
