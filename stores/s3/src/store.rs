//! The S3 store: the bucket is the durable copy of the graph, and a local LMDB store is its
//! replica, which every read is answered from.
//!
//! **Durability contract.** A write batch (the ops the driver gathered while the previous one
//! committed: group commit) is merged into the replica inside an LMDB transaction; the fields it
//! changed are uploaded as one segment object, created only if its key is free; only when the
//! service has confirmed that upload is the transaction committed and the batch's results
//! returned, so an ack always follows S3's confirmation. If the upload fails, the transaction is
//! abandoned and every op of the batch fails. (An upload whose answer was lost may still have
//! landed: such a write, reported failed, can appear after a restart. An acknowledged write is
//! never missing.)
//!
//! **Restart.** [`S3Store::open`] brings the replica up to date from the bucket: the newest
//! complete snapshot if the replica is older than it, then every segment after what the replica
//! holds, in order. On an empty folder that is the whole graph. Merging is HAM, so objects read
//! twice do no harm.
//!
//! **One writer.** Segments are created with `If-None-Match: *`, so a second relay writing to the
//! same bucket and prefix fails its batches instead of overwriting the first one's.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use fibergun::graph::Node;
use fibergun::store::{Store, StoreOp, StoreResult};
use fibergun_lmdb::{import_batches, write_node_line, Changes, LmdbStore};

use crate::client::{ObjectStore, S3Config, S3Error};
use crate::layout::{self, Manifest};
use crate::snapshot::Snapshotter;
use crate::stats::S3Stats;

/// When snapshots are taken.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SnapshotPolicy {
    /// After this many bytes of segments (or the size of the last snapshot, if larger), so the
    /// work of snapshotting stays proportional to the writes.
    pub after_bytes: u64,
    /// After this many segments, however small: a restart reads each one.
    pub after_segments: u64,
}

impl Default for SnapshotPolicy {
    fn default() -> SnapshotPolicy {
        SnapshotPolicy {
            after_bytes: 64 << 20,
            after_segments: 4096,
        }
    }
}

/// What opening found and did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recovery {
    /// The snapshot loaded (the batch it holds everything up to), if the replica was older.
    pub snapshot: Option<u64>,
    /// Segments merged after it.
    pub segments: u64,
    /// The last batch in the bucket.
    pub last_batch: u64,
    /// Nodes in the replica now.
    pub nodes: u64,
    /// How long it took.
    pub took: Duration,
}

/// A store whose durable copy is in an S3 bucket (see the module's documentation).
pub struct S3Store {
    replica: LmdbStore,
    objects: Arc<ObjectStore>,
    next_batch: u64,
    policy: SnapshotPolicy,
    snapshots: Snapshotter,
    /// Segment bytes and count since the last snapshot was asked for.
    log_bytes: u64,
    log_segments: u64,
    stats: S3Stats,
}

/// Segments merged per transaction at a restart.
const REPLAY_GROUP: usize = 64;
/// Objects fetched at once at a restart.
const FETCHERS: usize = 8;

/// The objects at `keys`, fetched by up to [`FETCHERS`] threads, in the order of `keys` (one
/// result per key).
fn fetch_all(objects: &ObjectStore, keys: &[&str]) -> Vec<Result<Vec<u8>, S3Error>> {
    let per_thread = keys.len().div_ceil(FETCHERS).max(1);
    std::thread::scope(|scope| {
        let fetchers: Vec<_> = keys
            .chunks(per_thread)
            .map(|chunk| {
                let fetcher = scope
                    .spawn(move || chunk.iter().map(|key| objects.get(key)).collect::<Vec<_>>());
                (chunk.len(), fetcher)
            })
            .collect();
        fetchers
            .into_iter()
            .flat_map(|(n, fetcher)| {
                fetcher.join().unwrap_or_else(|_| {
                    (0..n)
                        .map(|_| Err(S3Error::Transport("a fetcher panicked".into())))
                        .collect()
                })
            })
            .collect()
    })
}

fn s3(what: &str) -> impl Fn(S3Error) -> String + '_ {
    move |e| format!("S3 {what}: {e}")
}

impl S3Store {
    /// Opens the replica in `dir` (taking its writer's lock) and brings it up to date from the
    /// bucket `config` names. A replica of another bucket or prefix, or one ahead of the bucket
    /// (a bucket emptied under it), is refused with an error that says what to do.
    pub fn open(
        dir: &Path,
        map_size: usize,
        config: &S3Config,
        policy: SnapshotPolicy,
    ) -> Result<(S3Store, Recovery), String> {
        let started = Instant::now();
        let objects = Arc::new(ObjectStore::new(config).map_err(|e| e.to_string())?);
        let mut replica = LmdbStore::open(dir, map_size).map_err(|e| e.to_string())?;
        let location = objects.location().to_owned();
        match replica.log_origin()? {
            Some(origin) if origin != location => {
                return Err(format!(
                    "{} is the replica of {origin}, not of {location}; give another --data folder",
                    dir.display()
                ))
            }
            None if replica.node_count() > 0 => {
                return Err(format!(
                    "{} holds a store that is not an S3 replica; give an empty --data folder (to move its graph to S3, export it and import it into the S3 relay)",
                    dir.display()
                ))
            }
            _ => replica.set_log_origin(&location)?,
        }
        let held = replica.log_position()?.unwrap_or(0);

        let snapshots = objects
            .list(layout::SNAPSHOTS, None)
            .map_err(s3("listing"))?;
        let newest = snapshots
            .iter()
            .filter(|(key, _)| layout::is_manifest(key))
            .filter_map(|(key, _)| Some((layout::snapshot_seq(key)?, key)))
            .max_by_key(|(id, _)| *id);
        let manifest = match newest {
            Some((id, key)) => {
                let text = objects.get(key).map_err(s3("reading a manifest"))?;
                Some((id, Manifest::parse(&text)?))
            }
            None => None,
        };
        let snapshot_through = manifest.as_ref().map_or(0, |(_, m)| m.through);
        let mut loaded = None;
        if let Some((id, manifest)) = &manifest {
            if manifest.through > held {
                load_snapshot(&objects, &mut replica, *id, manifest)?;
                loaded = Some(manifest.through);
            }
        }
        let from = held.max(snapshot_through);

        // The replica's own last batch must still be in the bucket (or under a snapshot).
        let list_after = if held > snapshot_through {
            held - 1
        } else {
            from
        };
        let start_after = (list_after > 0).then(|| layout::segment_key(list_after));
        let segments = objects
            .list(layout::SEGMENTS, start_after.as_deref())
            .map_err(s3("listing"))?;
        let mut batches: Vec<(u64, &str, u64)> = segments
            .iter()
            .filter_map(|(key, size)| Some((layout::segment_seq(key)?, key.as_str(), *size)))
            .collect();
        batches.sort_by_key(|(seq, _, _)| *seq);
        if held > snapshot_through && batches.first().map(|b| b.0) != Some(held) {
            return Err(format!(
                "the replica in {} holds batch {held}, which {location} does not have: was the bucket emptied or replaced? Move the folder away to start again from the bucket",
                dir.display()
            ));
        }
        let mut replayed = 0;
        let mut log_bytes = 0;
        let pending: Vec<&(u64, &str, u64)> = batches.iter().filter(|b| b.0 > from).collect();
        // Fetched in parallel and merged a group per transaction: a restart costs a few round
        // trips and commits per group, not one of each per batch.
        for group in pending.chunks(REPLAY_GROUP) {
            let keys: Vec<&str> = group.iter().map(|(_, key, _)| *key).collect();
            let mut text = Vec::new();
            for (key, body) in keys.iter().zip(fetch_all(&objects, &keys)) {
                text.extend(body.map_err(|e| format!("S3 reading {key}: {e}"))?);
            }
            let (last, last_key, _) = group.last().expect("chunks are not empty");
            merge_lines(&mut replica, &text, Some(*last))
                .map_err(|e| format!("the segments up to {last_key}: {e}"))?;
            replayed += group.len() as u64;
            log_bytes += group.iter().map(|(_, _, size)| size).sum::<u64>();
        }
        let last_batch = batches.last().map_or(0, |b| b.0).max(from);
        let recovery = Recovery {
            snapshot: loaded,
            segments: replayed,
            last_batch,
            nodes: replica.node_count(),
            took: started.elapsed(),
        };
        let stats = S3Stats::default();
        stats.update(|f| {
            f.last_batch = last_batch;
            if let Some((_, m)) = &manifest {
                f.last_snapshot_bytes = m.bytes;
                f.last_snapshot_batch = m.through;
            }
        });
        let snapshots = Snapshotter::start(objects.clone(), replica.reader(), stats.clone());
        Ok((
            S3Store {
                replica,
                objects,
                next_batch: last_batch + 1,
                policy,
                snapshots,
                log_bytes,
                log_segments: replayed,
                stats,
            },
            recovery,
        ))
    }

    /// The local replica (for stats, backups and exports).
    pub fn replica(&self) -> &LmdbStore {
        &self.replica
    }

    /// Refuses writes once the replica uses `bytes` or more.
    pub fn set_quota(&mut self, bytes: Option<u64>) {
        self.replica.set_quota(bytes);
    }

    /// The store's figures, for metrics.
    pub fn stats(&self) -> S3Stats {
        self.stats.clone()
    }

    /// Whether a snapshot is being taken now.
    pub fn snapshot_running(&self) -> bool {
        self.snapshots.running()
    }

    fn maybe_snapshot(&mut self) {
        let due_bytes = self.policy.after_bytes.max(self.snapshots.last_bytes());
        if (self.log_bytes >= due_bytes || self.log_segments >= self.policy.after_segments)
            && self.snapshots.request()
        {
            self.log_bytes = 0;
            self.log_segments = 0;
        }
    }
}

impl Store for S3Store {
    fn apply(&mut self, ops: Vec<StoreOp>) -> Vec<StoreResult> {
        // The outbox would live in the replica, which is not durable: a peer with upstreams
        // keeps its graph in LMDB (or memory).
        if ops
            .iter()
            .any(|op| !matches!(op, StoreOp::Merge { .. } | StoreOp::Read { .. }))
        {
            let reason = "the S3 store keeps no outbox of writes for upstreams".to_string();
            return ops
                .iter()
                .map(|_| StoreResult::Failed {
                    reason: reason.clone(),
                })
                .collect();
        }
        let batch = self.next_batch;
        let objects = &self.objects;
        let stats = &self.stats;
        let mut attempted = None;
        let results = self.replica.apply_gated(ops, |changes| {
            if changes.is_empty() {
                return Ok(None);
            }
            let body = segment_body(changes);
            attempted = Some(body.len() as u64);
            let started = Instant::now();
            let uploaded = objects.put_new(&layout::segment_key(batch), body.as_bytes());
            match &uploaded {
                Ok(()) => stats.uploaded(batch, body.len() as u64, started.elapsed()),
                Err(_) => stats.update(|f| f.upload_failures += 1),
            }
            uploaded.map_err(|e| match e {
                S3Error::Exists => format!(
                    "S3: batch {batch} exists already in {}: is another relay writing there?",
                    objects.location()
                ),
                other => format!("S3 write: {other}"),
            })?;
            Ok(Some(batch))
        });
        if let Some(bytes) = attempted {
            // Even a failed upload may have landed: the number is never used again.
            self.next_batch += 1;
            self.log_bytes += bytes;
            self.log_segments += 1;
            self.maybe_snapshot();
        }
        results
    }
}

/// One batch's changed fields as export lines.
fn segment_body(changes: &Changes<'_>) -> String {
    let mut body = String::new();
    for (soul, fields) in changes {
        let mut node = Node::new((*soul).clone());
        node.fields.extend(fields.iter().cloned());
        write_node_line(&mut body, &node);
    }
    body
}

/// Merges export lines into `replica` (in transactions of an import's batch size); the last
/// transaction records `position` when given.
fn merge_lines(replica: &mut LmdbStore, text: &[u8], position: Option<u64>) -> Result<(), String> {
    import_batches(text, |batch, last| {
        let record = if last { position } else { None };
        if batch.is_empty() {
            return match record {
                Some(position) => replica.set_log_position(position),
                None => Ok(()),
            };
        }
        for result in replica.apply_gated(batch, |_| Ok(record)) {
            if let StoreResult::Failed { reason } = result {
                return Err(reason);
            }
        }
        Ok(())
    })
    .map(drop)
}

/// Merges every part of snapshot `id` into `replica`, then records the batch it holds.
fn load_snapshot(
    objects: &ObjectStore,
    replica: &mut LmdbStore,
    id: u64,
    manifest: &Manifest,
) -> Result<(), String> {
    let keys: Vec<String> = (0..manifest.parts)
        .map(|part| layout::snapshot_part_key(id, part))
        .collect();
    // A few parts at a time: each is several MiB.
    for group in keys.chunks(4) {
        let group: Vec<&str> = group.iter().map(String::as_str).collect();
        for (key, text) in group.iter().zip(fetch_all(objects, &group)) {
            let text = text.map_err(|e| format!("S3 reading {key}: {e}"))?;
            merge_lines(replica, &text, None).map_err(|e| format!("{key}: {e}"))?;
        }
    }
    replica.set_log_position(manifest.through)
}
