//! The driver loop: one task owns the [`Peer`], feeds it events from sockets, the store and the
//! clock, and carries out its outputs.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use async_io::Timer;
use fibergun::{ConnId, Direction, Event, Input, Output, Peer, RemoteId, StoreOp};
use fibergun_host::clock;
use fibergun_host::store_thread::BatchResults;
use smol::channel::{Receiver, Sender};

use crate::budget::ByteBudget;

/// Starts a dial of a configured peer; its outcome comes back as [`DriverEvent::Opened`] (with
/// the remote) or [`DriverEvent::DialFailed`].
pub type Dialer = Box<dyn Fn(RemoteId, String) + Send>;

/// What a connection's writer task is asked to do.
#[derive(Debug)]
pub enum Outgoing {
    /// Send this text frame.
    Frame(String),
    /// Close the socket, with this reason.
    Close(String),
}

/// The driver's handle on one connection's socket task.
#[derive(Clone, Debug)]
pub struct ConnSender {
    /// Frames for the writer task.
    pub tx: Sender<Outgoing>,
    /// Bytes queued and not yet written; the writer subtracts what it sends.
    pub queued: Arc<AtomicUsize>,
    /// Ends the socket task at once, even while a write is blocked on a client that does not read.
    pub kill: Sender<()>,
}

/// Everything the driver reacts to.
#[derive(Debug)]
pub enum DriverEvent {
    /// A WebSocket opened.
    Opened {
        /// Its id.
        conn: ConnId,
        /// The configured peer it reaches, if we dialled it.
        dialled: Option<RemoteId>,
        /// Its writer.
        sender: ConnSender,
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
pub struct Driver {
    peer: Peer,
    events: Receiver<DriverEvent>,
    store: Sender<Vec<StoreOp>>,
    conns: HashMap<ConnId, ConnSender>,
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

impl Driver {
    /// A driver for `peer`, reading `events` and sending store batches to `store`.
    pub fn new(
        peer: Peer,
        events: Receiver<DriverEvent>,
        store: Sender<Vec<StoreOp>>,
        inbound: Arc<ByteBudget>,
        dialer: Dialer,
    ) -> Driver {
        Driver {
            peer,
            events,
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

    /// Runs until a [`DriverEvent::Shutdown`] has been received and every storage op issued
    /// before it has committed and been answered.
    pub async fn run(mut self) {
        loop {
            self.carry_out_outputs();
            self.submit_batch();
            if self.shutting_down && !self.batch_in_flight && self.pending_ops.is_empty() {
                break;
            }
            let event = match self.peer.poll_timeout() {
                Some(at) if at <= std::time::Instant::now() => None,
                Some(at) => {
                    smol::future::or(async { self.events.recv().await.ok() }, async {
                        Timer::at(at).await;
                        None
                    })
                    .await
                }
                None => match self.events.recv().await {
                    Ok(event) => Some(event),
                    // Every sender is gone: nothing more can happen.
                    Err(_) => break,
                },
            };
            match event {
                None => self.input(Input::Timeout),
                Some(event) => {
                    self.on_event(event);
                    // Take what else is already waiting before draining, so replies and storage
                    // ops of many frames go out together (bounded, to keep latency fair).
                    for _ in 0..256 {
                        match self.events.try_recv() {
                            Ok(event) => self.on_event(event),
                            Err(_) => break,
                        }
                    }
                }
            }
        }
        for (_, conn) in self.conns.drain() {
            let _ = conn
                .tx
                .try_send(Outgoing::Close("server shutting down".into()));
        }
    }

    fn input(&mut self, input: Input<'_>) {
        if let Err(e) = self.peer.handle_input(clock::now(), input) {
            // A runtime bug, not a client's: log it loudly and go on.
            tracing::error!("driver misuse of the core: {e}");
        }
    }

    fn on_event(&mut self, event: DriverEvent) {
        match event {
            DriverEvent::Opened {
                conn,
                dialled,
                sender,
            } => {
                if self.shutting_down {
                    let _ = sender
                        .tx
                        .try_send(Outgoing::Close("server shutting down".into()));
                    return;
                }
                self.conns.insert(conn, sender);
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
                    let Some(sender) = self.conns.get(&conn) else {
                        continue;
                    };
                    let queued =
                        sender.queued.fetch_add(text.len(), Ordering::Relaxed) + text.len();
                    if queued > max_queue {
                        // A reader this slow would make the relay hold unbounded memory for it.
                        tracing::warn!(
                            conn = conn.0,
                            queued,
                            "closing a connection that does not read its frames"
                        );
                        // Its writer may be blocked on the socket, so end the task outright.
                        let _ = sender.kill.try_send(());
                        self.conns.remove(&conn);
                        self.input_disconnected_later(conn);
                        continue;
                    }
                    let _ = sender.tx.try_send(Outgoing::Frame(text));
                }
                Output::Close { conn, reason } => {
                    if let Some(sender) = self.conns.remove(&conn) {
                        let _ = sender.tx.try_send(Outgoing::Close(reason));
                    }
                    self.input_disconnected_later(conn);
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

    /// Tells the core a connection it or the driver closed is gone. Done after the current drain,
    /// since the core must not be fed while its outputs are being read.
    fn input_disconnected_later(&mut self, conn: ConnId) {
        self.closed_by_us.push(conn);
    }

    fn submit_batch(&mut self) {
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
