//! What the core looks like now, for a product's metrics and health checks: the driver reads it
//! when asked ([`crate::driver::DriverEvent::Snapshot`]), between two inputs.

use fibergun::{RemoteStatus, Stats, UpstreamStatus};

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
    /// Configured peers and where each stands.
    pub remotes: Vec<RemoteStatus>,
    /// Upstreams: connected or not, and the local writes each has not acknowledged yet.
    pub upstreams: Vec<UpstreamStatus>,
    /// Shutting down: not ready for more work.
    pub shutting_down: bool,
}
