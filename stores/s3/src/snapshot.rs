//! Snapshots keep the bucket's log short: the whole graph as of one batch, written in parts
//! beside the segments, after which the segments it covers and older snapshots are deleted. A
//! restart then reads one snapshot and the few segments after it, not every batch ever written.
//!
//! A snapshot is taken from the local replica in one LMDB read transaction, so it is exactly the
//! graph as of the batch recorded with it, while writes go on. Its manifest is written last; a
//! snapshot cut short (a crash, a failed upload) has none, is never read, and is deleted with the
//! next one.

use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, SyncSender, TrySendError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use fibergun_lmdb::LmdbStore;

use crate::client::{ObjectStore, S3Error};
use crate::layout::{self, Manifest};
use crate::stats::S3Stats;

/// Snapshot parts are cut at the first line end past this size.
const SNAPSHOT_PART_BYTES: usize = 8 << 20;

/// Takes a snapshot of `replica` and deletes what it makes redundant. Returns its manifest, or
/// `None` when the replica has no batch recorded yet (nothing to snapshot).
///
/// Parts are uploaded while the export runs, before the batch it is as of is known (that is read
/// in the export's own transaction), so a snapshot is named by the batch recorded when it began
/// (its id, never more than the batch it holds) and its manifest says which batch it holds.
pub fn take(objects: &ObjectStore, replica: &LmdbStore) -> Result<Option<Manifest>, String> {
    let Some(id) = replica.log_position()? else {
        return Ok(None);
    };
    let mut parts = PartWriter {
        objects,
        id,
        buffer: Vec::with_capacity(SNAPSHOT_PART_BYTES + (1 << 20)),
        parts: 0,
        bytes: 0,
        error: None,
    };
    let exported = replica.export_positioned(&mut parts);
    if let Some(e) = parts.error.take() {
        return Err(format!("uploading a snapshot part: {e}"));
    }
    let (nodes, position) = exported?;
    let through = position.unwrap_or(id);
    parts
        .finish()
        .map_err(|e| format!("uploading a snapshot part: {e}"))?;
    let manifest = Manifest {
        through,
        parts: parts.parts,
        nodes,
        bytes: parts.bytes,
    };
    objects
        .put(&layout::manifest_key(id), manifest.to_json().as_bytes())
        .map_err(|e| format!("writing a snapshot manifest: {e}"))?;
    delete_covered(objects, id, through);
    Ok(Some(manifest))
}

/// Deletes the segments and the older snapshots that snapshot `id`, holding every batch up to
/// `through`, makes redundant. Failures are logged only: what is left is read again at a
/// restart, harmlessly.
fn delete_covered(objects: &ObjectStore, id: u64, through: u64) {
    let mut stale = Vec::new();
    match objects.list(layout::SEGMENTS, None) {
        Ok(segments) => stale.extend(
            segments
                .into_iter()
                .filter(|(key, _)| layout::segment_seq(key).is_some_and(|seq| seq <= through))
                .map(|(key, _)| key),
        ),
        Err(e) => tracing::warn!("listing segments to delete: {e}"),
    }
    match objects.list(layout::SNAPSHOTS, None) {
        // Manifests go first, so a snapshot is never left looking complete without its parts.
        Ok(snapshots) => {
            let older: Vec<String> = snapshots
                .into_iter()
                .filter(|(key, _)| layout::snapshot_seq(key).is_some_and(|seq| seq < id))
                .map(|(key, _)| key)
                .collect();
            let (manifests, parts): (Vec<_>, Vec<_>) =
                older.into_iter().partition(|k| layout::is_manifest(k));
            stale.splice(0..0, manifests);
            stale.extend(parts);
        }
        Err(e) => tracing::warn!("listing snapshots to delete: {e}"),
    }
    for key in stale {
        if let Err(e) = objects.delete(&key) {
            tracing::warn!("deleting {key}: {e}");
        }
    }
}

/// Cuts an export into parts at line ends and uploads each as it fills.
struct PartWriter<'a> {
    objects: &'a ObjectStore,
    id: u64,
    buffer: Vec<u8>,
    parts: usize,
    bytes: u64,
    error: Option<S3Error>,
}

impl PartWriter<'_> {
    fn upload(&mut self) -> Result<(), S3Error> {
        let key = layout::snapshot_part_key(self.id, self.parts);
        self.objects.put(&key, &self.buffer)?;
        self.bytes += self.buffer.len() as u64;
        self.parts += 1;
        self.buffer.clear();
        Ok(())
    }

    /// Uploads the last part (an empty graph still gets one, so every snapshot has parts).
    fn finish(&mut self) -> Result<(), S3Error> {
        if !self.buffer.is_empty() || self.parts == 0 {
            self.upload()?;
        }
        Ok(())
    }
}

impl Write for PartWriter<'_> {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.buffer.extend_from_slice(data);
        if self.buffer.len() >= SNAPSHOT_PART_BYTES && self.buffer.ends_with(b"\n") {
            if let Err(e) = self.upload() {
                let message = e.to_string();
                self.error = Some(e);
                return Err(std::io::Error::other(message));
            }
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Runs snapshots on a thread of their own, one at a time, when the store asks.
pub struct Snapshotter {
    requests: SyncSender<()>,
    state: Arc<SnapshotState>,
}

/// What the store reads of the snapshot thread.
#[derive(Default)]
struct SnapshotState {
    running: AtomicBool,
    /// The size of the last snapshot taken.
    last_bytes: AtomicU64,
}

impl SnapshotState {
    fn done(&self, stats: &S3Stats, taken: Result<Option<Manifest>, String>, took: Duration) {
        match taken {
            Ok(Some(manifest)) => {
                self.last_bytes.store(manifest.bytes, Ordering::Relaxed);
                stats.update(|f| {
                    f.snapshots += 1;
                    f.last_snapshot_bytes = manifest.bytes;
                    f.last_snapshot_batch = manifest.through;
                });
                tracing::info!(
                    "S3 snapshot through batch {}: {} nodes, {} bytes in {} parts, {took:?}",
                    manifest.through,
                    manifest.nodes,
                    manifest.bytes,
                    manifest.parts,
                );
            }
            Ok(None) => {}
            Err(e) => {
                stats.update(|f| f.snapshot_failures += 1);
                tracing::warn!("S3 snapshot failed: {e}");
            }
        }
        self.running.store(false, Ordering::Release);
    }
}

impl Snapshotter {
    /// Starts the thread; `stats` has the newest snapshot in the bucket, and gets each new one.
    pub fn start(objects: Arc<ObjectStore>, replica: LmdbStore, stats: S3Stats) -> Snapshotter {
        let (requests, wanted) = sync_channel::<()>(1);
        let state = Arc::new(SnapshotState {
            running: AtomicBool::new(false),
            last_bytes: AtomicU64::new(stats.read().last_snapshot_bytes),
        });
        let shared = state.clone();
        std::thread::Builder::new()
            .name("fibergun-s3-snapshot".into())
            .spawn(move || {
                while wanted.recv().is_ok() {
                    let started = Instant::now();
                    let taken = take(&objects, &replica);
                    shared.done(&stats, taken, started.elapsed());
                }
            })
            .expect("spawning the snapshot thread");
        Snapshotter { requests, state }
    }

    /// The size of the last snapshot.
    pub fn last_bytes(&self) -> u64 {
        self.state.last_bytes.load(Ordering::Relaxed)
    }

    /// Asks for a snapshot; `false` when one is running already.
    pub fn request(&self) -> bool {
        if self.state.running.swap(true, Ordering::AcqRel) {
            return false;
        }
        match self.requests.try_send(()) {
            Ok(()) => true,
            Err(TrySendError::Full(())) | Err(TrySendError::Disconnected(())) => {
                self.state.running.store(false, Ordering::Release);
                false
            }
        }
    }

    /// Whether a snapshot is being taken.
    pub fn running(&self) -> bool {
        self.state.running.load(Ordering::Acquire)
    }
}
