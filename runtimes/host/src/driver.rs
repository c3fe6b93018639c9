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
//!         event => driver.handle(event),   // and any others already waiting
//!         deadline => driver.timeout(),
//!     }
//! }
//! driver.close_all();
//! ```

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use async_channel::Sender;
use fibergun::{ConnId, Direction, Event, Input, Output, Peer, RemoteId, StoreOp};

use crate::budget::ByteBudget;
use crate::clock;
use crate::store_thread::BatchResults;

/// A runtime's handle on one connection's writer.
pub trait ConnHandle {
    /// Queues a frame for the writer. Returns the bytes now queued and not yet written.
    fn queue(&self, text: String) -> usize;
    /// Asks the writer to send what is queued, then close with `reason`.
    fn close(&self, reason: String);
    /// Ends the connection at once, even while a write is blocked on a peer that does not read.
    fn kill(&self);
}

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
        /// Its writer.
        handle: C,
    },
    /// A dial of a configured peer failed.
    DialFailed {
        /// Which peer.
        remote: RemoteId,
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
    StoreDone(BatchResults),
    /// Stop: finish in-flight storage work, then return.
    Shutdown,
}

/// Owns the peer and the connection writers.
pub struct Driver<C: ConnHandle> {
    peer: Peer,
    store: Sender<Vec<StoreOp>>,
    conns: HashMap<ConnId, C>,
    /// Ops emitted while a batch is committing: they form the next batch.
    pending_ops: Vec<StoreOp>,
    batch_in_flight: bool,
    shutting_down: bool,
    /// Connections closed from this side, to report to the core after the current drain.
    closed_by_us: Vec<ConnId>,
    /// The inbound frame budget, released as frames are handled.
    inbound: Arc<ByteBudget>,
    dialer: Dialer,
}

impl<C: ConnHandle> Driver<C> {
    /// A driver for `peer`, sending store batches to `store`.
    pub fn new(
        peer: Peer,
        store: Sender<Vec<StoreOp>>,
        inbound: Arc<ByteBudget>,
        dialer: Dialer,
    ) -> Driver<C> {
        Driver {
            peer,
            store,
            conns: HashMap::new(),
            pending_ops: Vec::new(),
            batch_in_flight: false,
            shutting_down: false,
            closed_by_us: Vec::new(),
            inbound,
            dialer,
        }
    }

    /// Carries out everything the core has to do, and sends the next storage batch if none is
    /// committing. Call before every wait.
    pub fn step(&mut self) {
        self.carry_out_outputs();
        self.submit_batch();
    }

    /// Shutdown was asked for and every storage op issued before it has committed and been
    /// answered.
    pub fn finished(&self) -> bool {
        self.shutting_down && !self.batch_in_flight && self.pending_ops.is_empty()
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

    /// Hands one event to the core.
    pub fn handle(&mut self, event: DriverEvent<C>) {
        match event {
            DriverEvent::Opened {
                conn,
                dialled,
                handle,
            } => {
                if self.shutting_down {
                    handle.close("server shutting down".into());
                    return;
                }
                tracing::debug!(conn = conn.0, ?dialled, "connection opened");
                self.conns.insert(conn, handle);
                match dialled {
                    Some(remote) => self.input(Input::Dialled { remote, conn }),
                    None => self.input(Input::Connected {
                        conn,
                        direction: Direction::Inbound,
                    }),
                }
            }
            DriverEvent::DialFailed { remote } => self.input(Input::DialFailed { remote }),
            DriverEvent::Frame { conn, text, budget } => {
                if !self.shutting_down && self.conns.contains_key(&conn) {
                    self.input(Input::Frame { conn, text: &text });
                }
                self.inbound.release(budget);
            }
            DriverEvent::Binary { conn, bytes } => {
                if !self.shutting_down && self.conns.contains_key(&conn) {
                    self.input(Input::Binary { conn, bytes });
                }
            }
            DriverEvent::Closed { conn } => {
                tracing::debug!(conn = conn.0, "connection closed");
                if self.conns.remove(&conn).is_some() {
                    self.input(Input::Disconnected { conn });
                }
            }
            DriverEvent::StoreDone(results) => {
                self.batch_in_flight = false;
                for (op, result) in results {
                    self.input(Input::StoreDone { op, result });
                }
            }
            DriverEvent::Shutdown => {
                tracing::info!("shutting down: finishing in-flight writes");
                self.shutting_down = true;
            }
        }
    }

    fn carry_out_outputs(&mut self) {
        let max_queue = self.peer.limits().max_outbound_queue_bytes;
        while let Some(output) = self.peer.poll_output() {
            match output {
                Output::Send { conn, text } => {
                    let Some(handle) = self.conns.get(&conn) else {
                        continue;
                    };
                    let queued = handle.queue(text);
                    if queued > max_queue {
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
                Output::Event(event) => log_event(&event),
                Output::Dial { remote, url } if !self.shutting_down => {
                    tracing::debug!(remote = remote.0, "dialling {url}");
                    (self.dialer)(remote, url);
                }
                _ => {}
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

fn log_event(event: &Event) {
    match event {
        Event::Refused { conn, reason } => tracing::debug!(conn = conn.0, "refused: {reason}"),
        Event::StoreFailed { reason } => tracing::error!("storage failed: {reason}"),
        other => tracing::trace!("{other:?}"),
    }
}
