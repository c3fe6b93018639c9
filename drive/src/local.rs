//! In-process connections: a program that embeds a relay talks GUN to its core without a
//! socket. The embedded chain API ([`crate::gun`]) uses one, and so can any other transport, such
//! as a WebSocket route served by another HTTP framework: open a [`LocalConnection`], send it the
//! frames that arrive, and write out the frames it gives.
//!
//! A local connection is a connection like any other to the core (the same limits, acks after
//! durability, subscriptions, flow control). Its frames take their bytes from the relay's inbound
//! budget like a socket's, and its outbound queue is measured the same way.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use fibergun::access::Principal;
use fibergun::ConnId;

use crate::budget::ByteBudget;
use crate::queue::{ConnHandle, OutboundTotal, QueueGauge};

/// What an in-process connection tells the driver; each runtime turns it into its own
/// [`crate::driver::DriverEvent`].
#[derive(Debug)]
pub enum LocalEvent {
    /// A connection opened.
    Opened {
        /// Its id.
        conn: ConnId,
        /// Its writer.
        handle: LocalHandle,
        /// Who it acts for, under the relay's access policy.
        principal: Principal,
    },
    /// A frame from the program.
    Frame {
        /// From which connection.
        conn: ConnId,
        /// The text.
        text: String,
        /// Bytes it holds of the inbound budget.
        budget: usize,
    },
    /// The program took enough frames that a congested queue drained.
    Drained {
        /// Which connection.
        conn: ConnId,
    },
    /// The program closed the connection.
    Closed {
        /// Which.
        conn: ConnId,
    },
}

/// The driver's side of an in-process connection: frames for the program go into a channel.
#[derive(Debug)]
pub struct LocalHandle {
    frames: async_channel::Sender<String>,
    gauge: Arc<QueueGauge>,
}

impl ConnHandle for LocalHandle {
    fn queue(&self, text: String) -> usize {
        let queued = self.gauge.add(text.len());
        let _ = self.frames.try_send(text);
        queued
    }

    fn mark_congested(&self) -> bool {
        self.gauge.mark_congested()
    }

    fn close(&self, _reason: String) {
        self.frames.close();
    }

    fn kill(&self) {
        self.frames.close();
    }

    fn queued(&self) -> usize {
        self.gauge.bytes()
    }
}

/// Opens in-process connections to one running relay. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Connector {
    next_conn: Arc<AtomicU64>,
    outbound: Arc<OutboundTotal>,
    events: async_channel::Sender<LocalEvent>,
    inbound: Arc<ByteBudget>,
    max_outbound_queue_bytes: usize,
}

impl Connector {
    /// A connector for the relay whose connection ids come from `next_conn` and whose inbound
    /// frames are bounded by `inbound`. Its events go to `send` from a thread of their own, so
    /// callers never block on the driver's queue (the inbound budget bounds them instead).
    pub fn start<F>(
        next_conn: Arc<AtomicU64>,
        outbound: Arc<OutboundTotal>,
        inbound: Arc<ByteBudget>,
        max_outbound_queue_bytes: usize,
        send: F,
    ) -> Connector
    where
        F: Fn(LocalEvent) + Send + 'static,
    {
        let (events, rx) = async_channel::unbounded::<LocalEvent>();
        std::thread::Builder::new()
            .name("fibergun-local".into())
            .spawn(move || {
                while let Ok(event) = rx.recv_blocking() {
                    send(event);
                }
            })
            .expect("spawning the local connection thread");
        Connector {
            next_conn,
            outbound,
            events,
            inbound,
            max_outbound_queue_bytes,
        }
    }

    /// Opens a connection acting as the relay itself (trusted by its access policy, as a
    /// peer it dialled): for the program that embeds it.
    pub fn open(&self) -> LocalConnection {
        self.open_as(Principal::Peer)
    }

    /// Opens a connection acting for `principal` (the REST routes use one per principal).
    pub fn open_as(&self, principal: Principal) -> LocalConnection {
        let conn = ConnId(self.next_conn.fetch_add(1, Ordering::Relaxed));
        let (frames, rx) = async_channel::unbounded();
        let gauge = Arc::new(QueueGauge::new(
            self.max_outbound_queue_bytes,
            self.outbound.clone(),
        ));
        let handle = LocalHandle {
            frames,
            gauge: gauge.clone(),
        };
        let _ = self.events.try_send(LocalEvent::Opened {
            conn,
            handle,
            principal,
        });
        LocalConnection {
            conn,
            frames: rx,
            gauge,
            connector: self.clone(),
        }
    }
}

/// The program's side of an in-process connection. Dropping it closes the connection.
#[derive(Debug)]
pub struct LocalConnection {
    conn: ConnId,
    frames: async_channel::Receiver<String>,
    gauge: Arc<QueueGauge>,
    connector: Connector,
}

/// The relay closed the connection (it shut down, or dropped a connection that did not read).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Disconnected;

impl std::fmt::Display for Disconnected {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the server closed the connection")
    }
}

impl std::error::Error for Disconnected {}

impl LocalConnection {
    /// This connection's id at the core.
    pub fn id(&self) -> ConnId {
        self.conn
    }

    /// Sends a frame, waiting while the relay's inbound budget is spent.
    pub async fn send(&self, text: String) -> Result<(), Disconnected> {
        let budget = self.connector.inbound.acquire(text.len()).await;
        self.forward(text, budget)
    }

    /// [`LocalConnection::send`] for threads.
    pub fn send_blocking(&self, text: String) -> Result<(), Disconnected> {
        let budget = self.connector.inbound.acquire_blocking(text.len());
        self.forward(text, budget)
    }

    fn forward(&self, text: String, budget: usize) -> Result<(), Disconnected> {
        if self.frames.is_closed() {
            self.connector.inbound.release(budget);
            return Err(Disconnected);
        }
        let frame = LocalEvent::Frame {
            conn: self.conn,
            text,
            budget,
        };
        self.connector.events.try_send(frame).map_err(|_| {
            self.connector.inbound.release(budget);
            Disconnected
        })
    }

    /// The next frame from the relay.
    pub async fn recv(&self) -> Result<String, Disconnected> {
        let text = self.frames.recv().await.map_err(|_| Disconnected)?;
        self.took(text.len());
        Ok(text)
    }

    /// [`LocalConnection::recv`] for threads.
    pub fn recv_blocking(&self) -> Result<String, Disconnected> {
        let text = self.frames.recv_blocking().map_err(|_| Disconnected)?;
        self.took(text.len());
        Ok(text)
    }

    fn took(&self, bytes: usize) {
        if self.gauge.wrote(bytes) {
            let _ = self
                .connector
                .events
                .try_send(LocalEvent::Drained { conn: self.conn });
        }
    }
}

impl LocalConnection {
    /// Closes the connection: the relay forgets it, and `recv` ends with [`Disconnected`].
    pub fn close(&self) {
        if self.frames.close() {
            let _ = self
                .connector
                .events
                .try_send(LocalEvent::Closed { conn: self.conn });
        }
    }
}

impl Drop for LocalConnection {
    fn drop(&mut self) {
        self.close();
    }
}
