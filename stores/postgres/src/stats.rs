//! What the store counts, readable from other threads (for `/metrics` and `/health`).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

#[derive(Debug, Default)]
struct Counters {
    batches: AtomicU64,
    batches_failed: AtomicU64,
    table_bytes: AtomicU64,
    feed_connected: AtomicBool,
    feed_changes: AtomicU64,
    feed_gaps: AtomicU64,
}

/// The store's figures, shared.
#[derive(Clone, Debug, Default)]
pub struct PgStats(Arc<Counters>);

/// The figures at one moment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PgFigures {
    /// Batches committed.
    pub batches: u64,
    /// Batches that failed (the database gone, a failover, a quota).
    pub batches_failed: u64,
    /// The size of `fibergun_fields` with its index and TOAST, as last measured.
    pub table_bytes: u64,
    /// Whether the change feed is listening now.
    pub feed_connected: bool,
    /// Changes other relays committed that the feed passed on (one per node per read).
    pub feed_changes: u64,
    /// Times the feed listened again after losing its connection.
    pub feed_gaps: u64,
}

impl PgStats {
    /// The figures now.
    pub fn read(&self) -> PgFigures {
        let c = &self.0;
        PgFigures {
            batches: c.batches.load(Ordering::Relaxed),
            batches_failed: c.batches_failed.load(Ordering::Relaxed),
            table_bytes: c.table_bytes.load(Ordering::Relaxed),
            feed_connected: c.feed_connected.load(Ordering::Relaxed),
            feed_changes: c.feed_changes.load(Ordering::Relaxed),
            feed_gaps: c.feed_gaps.load(Ordering::Relaxed),
        }
    }

    pub(crate) fn batch(&self, ok: bool) {
        let counter = if ok {
            &self.0.batches
        } else {
            &self.0.batches_failed
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn table_bytes(&self, bytes: u64) {
        self.0.table_bytes.store(bytes, Ordering::Relaxed);
    }

    pub(crate) fn feed_connected(&self, connected: bool) {
        self.0.feed_connected.store(connected, Ordering::Relaxed);
    }

    pub(crate) fn feed_gap(&self) {
        self.0.feed_gaps.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn feed_change(&self) {
        self.0.feed_changes.fetch_add(1, Ordering::Relaxed);
    }
}
