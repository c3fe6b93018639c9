//! What the core looks like now, for a product's metrics and health checks: the driver reads it
//! when asked ([`crate::driver::DriverEvent::Snapshot`]), between two inputs.

use fibergun::{LatencyHistogram, RemoteStatus, Stats, UpstreamStatus};

/// The core's side, read by the driver when asked (see
/// [`crate::driver::DriverEvent::Snapshot`]).
#[derive(Clone, Debug, Default)]
pub struct PeerSnapshot {
    /// The core's counters.
    pub stats: Stats,
    /// Open connections (clients, relay links, in-process connections).
    pub connections: usize,
    /// Of those, relay links.
    pub links: usize,
    /// Souls some connection is subscribed to.
    pub subscribed_souls: usize,
    /// Storage operations issued and not yet done.
    pub pending_store_ops: usize,
    /// Puts waiting for their signature checks.
    pub puts_verifying: usize,
    /// Frames held while storage is behind.
    pub held_frames: usize,
    /// How long the store took over each batch: its reads, its writes and, on a durable store,
    /// its commit and flush (a slow disk shows here first).
    pub store_batches: LatencyHistogram,
    /// Configured peers and where each stands.
    pub remotes: Vec<RemoteStatus>,
    /// Upstreams: connected or not, and the local writes each has not acknowledged yet.
    pub upstreams: Vec<UpstreamStatus>,
    /// Shutting down: not ready for more work.
    pub shutting_down: bool,
}

/// What a connection is to this relay.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConnKind {
    /// A client (a browser, an app, another relay that did not ask for everything).
    Client,
    /// A relay link: a peer that asked for every soul, or one this relay dialled.
    Link,
    /// One of this relay's upstreams.
    Upstream,
    /// An in-process connection (the REST API, the admin API, an embedding program).
    InProcess,
}

impl ConnKind {
    /// Its name in JSON.
    pub fn name(self) -> &'static str {
        match self {
            ConnKind::Client => "client",
            ConnKind::Link => "link",
            ConnKind::Upstream => "upstream",
            ConnKind::InProcess => "in-process",
        }
    }
}

/// One open connection, for an operator's view.
#[derive(Clone, Debug)]
pub struct ConnInfo {
    /// Its id.
    pub id: u64,
    /// The address at the other end, for a network connection.
    pub addr: Option<std::net::SocketAddr>,
    /// What it is.
    pub kind: ConnKind,
    /// Whether this relay dialled it (a configured peer or upstream).
    pub dialled: bool,
    /// Bytes queued for it and not yet written.
    pub queued_bytes: usize,
    /// How long it has been open.
    pub age: std::time::Duration,
}
