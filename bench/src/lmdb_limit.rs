//! The physical limit of durable writes: raw LMDB (heed) puts of the same records fibergun stores,
//! committed in batches with the same durability (a synchronous flush per commit), and nothing
//! else: no network, no parsing, no HAM read before the write.

use std::path::Path;
use std::time::{Duration, Instant};

use fibergun::{Field, Key, Soul, State, Value};
use heed::types::Bytes;
use heed::{CommitOrAbort, Database, EnvOpenOptions};

/// Raw commits, measured.
pub struct Commits {
    /// Records written per second.
    pub puts_per_second: f64,
    /// The 99th percentile of one commit's time (its puts and its synchronous flush), in ms.
    pub p99_ms: f64,
}

/// Writes `total` records in transactions of `batch` records each: back to back, or with each
/// commit started `every` after the one before it. (A flush costs more after a pause: on this
/// machine's disk, 0.08 ms back to back and 0.5 ms at one every 10 ms. A fan-out's updates come
/// paced, so its commits are measured at its pace.)
pub fn commits(
    dir: &Path,
    batch: usize,
    total: usize,
    every: Option<Duration>,
) -> Result<Commits, String> {
    std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
    let mut options = EnvOpenOptions::new();
    options.map_size(8 << 30).max_dbs(4);
    // SAFETY: the folder is this function's own scratch folder, opened once.
    #[allow(unsafe_code)]
    let env = unsafe { options.open(dir) }.map_err(|e| format!("LMDB open: {e}"))?;
    let wtxn = env.write_txn().map_err(|e| e.to_string())?;
    let db: Database<Bytes, Bytes> = env
        .create_databases_and_commit(wtxn, |opener, wtxn| {
            opener
                .database_options()
                .types::<Bytes, Bytes>()
                .name("fields")
                .create(wtxn)
                .map(CommitOrAbort::<_, ()>::Commit)
        })
        .map_err(|e| e.to_string())?
        .unwrap_commit();
    let key = Key::new("v").map_err(|e| e.to_string())?;
    let value = Value::String("0123456789abcdef".repeat(4).into());
    let batch = batch.max(1);
    let started = Instant::now();
    let mut written = 0;
    let mut took = Vec::new();
    while written < total {
        if let Some(every) = every {
            let due = started + every * took.len() as u32;
            std::thread::sleep(due.saturating_duration_since(Instant::now()));
        }
        let commit_started = Instant::now();
        let mut wtxn = env.write_txn().map_err(|e| e.to_string())?;
        for i in written..(written + batch).min(total) {
            // The same record fibergun writes for a bench put: soul, key, state, 64-byte value.
            let soul = Soul::new(&format!("bench/lmdb/{i}")).map_err(|e| e.to_string())?;
            let mut record = fibergun_lmdb::soul_prefix(&soul);
            record.extend_from_slice(key.as_str().as_bytes());
            let field = Field {
                value: value.clone(),
                state: State::new(1.7e12 + i as f64).map_err(|e| e.to_string())?,
            };
            db.put(&mut wtxn, &record, &fibergun_lmdb::encode_field(&field))
                .map_err(|e| e.to_string())?;
        }
        wtxn.commit().map_err(|e| e.to_string())?;
        took.push(commit_started.elapsed().as_secs_f64() * 1000.0);
        written = (written + batch).min(total);
    }
    took.sort_by(f64::total_cmp);
    Ok(Commits {
        puts_per_second: total as f64 / started.elapsed().as_secs_f64(),
        p99_ms: took[(took.len() * 99 / 100).min(took.len() - 1)],
    })
}
