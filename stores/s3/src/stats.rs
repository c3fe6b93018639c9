//! What the S3 store reports to `/metrics`: its uploads (with their latency) and snapshots.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use fibergun::LatencyHistogram;

/// The S3 store's figures at one moment.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct S3Figures {
    /// Batch uploads that S3 confirmed, and how long each took (retries included).
    pub uploads: LatencyHistogram,
    /// Batch uploads that failed (their writes got an `err`).
    pub upload_failures: u64,
    /// Bytes of the confirmed batch uploads.
    pub uploaded_bytes: u64,
    /// The last batch number confirmed.
    pub last_batch: u64,
    /// Snapshots written.
    pub snapshots: u64,
    /// Snapshots that failed (retried at the next trigger).
    pub snapshot_failures: u64,
    /// The size of the last snapshot, in bytes.
    pub last_snapshot_bytes: u64,
    /// The batch the last snapshot holds everything up to.
    pub last_snapshot_batch: u64,
}

/// A shared handle on the figures: the store and the snapshot thread update them, the metrics
/// endpoint reads them.
#[derive(Clone, Debug, Default)]
pub struct S3Stats(Arc<Mutex<S3Figures>>);

impl S3Stats {
    /// The figures now.
    pub fn read(&self) -> S3Figures {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub(crate) fn update(&self, change: impl FnOnce(&mut S3Figures)) {
        change(&mut self.0.lock().unwrap_or_else(|e| e.into_inner()));
    }

    pub(crate) fn uploaded(&self, batch: u64, bytes: u64, took: Duration) {
        self.update(|f| {
            f.uploads.observe(took);
            f.uploaded_bytes += bytes;
            f.last_batch = batch;
        });
    }
}
