//! A connection's outbound queue as the driver and the connection's writer share it: the bytes
//! queued, the congestion marks that pause long answers, and the total over every connection
//! that the memory limit bounds.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

/// A runtime's handle on one connection's writer.
///
/// Flow control: when the bytes queued pass the high-water mark the driver calls
/// [`ConnHandle::mark_congested`] and tells the core, which holds back long answers to that
/// connection. The writer, on bringing the queue down to the low-water mark
/// ([`congestion_marks`]) while the connection is marked, clears the mark (an atomic swap, so
/// the driver and the writer never both clear it) and sends [`DriverEvent::Drained`](crate::driver::DriverEvent::Drained).
pub trait ConnHandle {
    /// Queues a frame for the writer. Returns the bytes now queued and not yet written.
    fn queue(&self, text: String) -> usize;
    /// Marks the connection congested. Returns false when the queue has already drained to
    /// the low-water mark (the mark is then cleared again and no `Drained` will follow), or
    /// when it was marked already.
    fn mark_congested(&self) -> bool;
    /// Asks the writer to send what is queued, then close with `reason`.
    fn close(&self, reason: String);
    /// Ends the connection at once, even while a write is blocked on a peer that does not read.
    fn kill(&self);
    /// The bytes queued and not yet written.
    fn queued(&self) -> usize;
}

/// The high- and low-water marks of a connection's queue, from the most it may hold: congested
/// above a quarter of it, drained again at a sixteenth.
pub fn congestion_marks(max_outbound_queue_bytes: usize) -> (usize, usize) {
    let high = (max_outbound_queue_bytes / 4).max(1);
    (high, high / 4)
}

/// The bytes queued for every connection together, against the share of the memory limit
/// they may use. Past it, a connection holding more than its fair share is dropped as too slow.
#[derive(Debug, Default)]
pub struct OutboundTotal {
    bytes: AtomicUsize,
    /// The most all queues together may hold; `None` for no limit.
    pub max: Option<usize>,
}

impl OutboundTotal {
    /// A total bounded by `max` bytes (`None`: unbounded).
    pub fn new(max: Option<usize>) -> Arc<OutboundTotal> {
        Arc::new(OutboundTotal {
            bytes: AtomicUsize::new(0),
            max,
        })
    }

    /// Bytes queued now, over all connections.
    pub fn bytes(&self) -> usize {
        self.bytes.load(Ordering::Relaxed)
    }

    /// Whether the queues together are over their limit.
    pub fn over(&self) -> bool {
        self.max.is_some_and(|max| self.bytes() > max)
    }
}

/// The bytes queued for one connection's writer and its congestion mark, shared by the driver
/// (which adds) and the writer (which subtracts what it wrote). Every change is also counted in
/// the relay's [`OutboundTotal`].
#[derive(Debug)]
pub struct QueueGauge {
    queued: AtomicUsize,
    congested: AtomicBool,
    low_water: usize,
    total: Arc<OutboundTotal>,
}

impl QueueGauge {
    /// A gauge for a connection whose queue may hold `max_outbound_queue_bytes`, counted in
    /// `total`.
    pub fn new(max_outbound_queue_bytes: usize, total: Arc<OutboundTotal>) -> QueueGauge {
        QueueGauge {
            queued: AtomicUsize::new(0),
            congested: AtomicBool::new(false),
            low_water: congestion_marks(max_outbound_queue_bytes).1,
            total,
        }
    }

    /// Counts `bytes` more queued; returns the bytes now queued.
    pub fn add(&self, bytes: usize) -> usize {
        self.total.bytes.fetch_add(bytes, Ordering::Relaxed);
        self.queued.fetch_add(bytes, Ordering::SeqCst) + bytes
    }

    /// The bytes queued now (for [`ConnHandle::queued`]).
    pub fn bytes(&self) -> usize {
        self.queued.load(Ordering::Relaxed)
    }

    /// For [`ConnHandle::mark_congested`].
    pub fn mark_congested(&self) -> bool {
        if self.congested.swap(true, Ordering::SeqCst) {
            return false;
        }
        // The writer may have drained the queue before the mark was up: then nobody would
        // report the drain, so take the mark back.
        !(self.queued.load(Ordering::SeqCst) <= self.low_water
            && self.congested.swap(false, Ordering::SeqCst))
    }

    /// The writer wrote `bytes`. Returns true when that drained a marked queue: the writer then
    /// sends [`DriverEvent::Drained`](crate::driver::DriverEvent::Drained).
    pub fn wrote(&self, bytes: usize) -> bool {
        self.total.bytes.fetch_sub(bytes, Ordering::Relaxed);
        let left = self
            .queued
            .fetch_sub(bytes, Ordering::SeqCst)
            .saturating_sub(bytes);
        left <= self.low_water
            && self.congested.load(Ordering::SeqCst)
            && self.congested.swap(false, Ordering::SeqCst)
    }
}

#[cfg(test)]
mod tests {
    use super::QueueGauge;

    #[test]
    fn a_drain_is_reported_once_per_congestion() {
        let g = QueueGauge::new(1600, Default::default()); // high water 400, low water 100
        g.add(500);
        assert!(g.mark_congested());
        assert!(!g.mark_congested(), "already marked");
        assert!(!g.wrote(300), "200 left is above the low-water mark");
        assert!(g.wrote(150), "50 left: drained");
        assert!(!g.wrote(50), "reported once");
    }

    #[test]
    fn a_queue_drained_before_the_mark_is_not_left_marked() {
        let g = QueueGauge::new(1600, Default::default());
        g.add(500);
        // The writer empties it before the driver marks it.
        assert!(!g.wrote(500));
        assert!(!g.mark_congested(), "nothing to wait for");
        // And a later congestion is marked again.
        g.add(500);
        assert!(g.mark_congested());
        assert!(g.wrote(500));
    }
}
