//! The store runs on its own thread: durable commits block (on fsync, on a round trip), and the
//! socket loops must not.
//! One batch is in flight at a time; the driver gathers the next batch meanwhile (group commit).

use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use async_channel::{Receiver, Sender};
use fibergun::{OpId, Store, StoreOp, StoreResult};

fn failed(n: usize, reason: &str) -> Vec<StoreResult> {
    tracing::error!("store batch failed: {reason}");
    (0..n)
        .map(|_| StoreResult::Failed {
            reason: reason.to_owned(),
        })
        .collect()
}

/// The results of one batch, in op order.
pub type BatchResults = Vec<(OpId, StoreResult)>;

/// Starts the store thread. Batches sent on the returned channel are applied in order, and each
/// batch's results are passed to `done` after its commit, with how long the store took over it
/// (its reads, its writes and, on a durable store, its commit and flush). The thread ends,
/// dropping (and so closing) the store, when the channel closes.
pub fn spawn<S, F>(mut store: S, done: F) -> (Sender<Vec<StoreOp>>, JoinHandle<()>)
where
    S: Store + Send + 'static,
    F: Fn(BatchResults, Duration) + Send + 'static,
{
    let (tx, rx): (Sender<Vec<StoreOp>>, Receiver<Vec<StoreOp>>) = async_channel::unbounded();
    let handle = std::thread::Builder::new()
        .name("fibergun-store".into())
        .spawn(move || {
            while let Ok(batch) = rx.recv_blocking() {
                let ids: Vec<OpId> = batch.iter().map(StoreOp::id).collect();
                let started = Instant::now();
                // A store that panics fails its batch, so the driver is answered and no write
                // waits for ever; the next batch tries again.
                let applied =
                    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| store.apply(batch)));
                let results = match applied {
                    Ok(results) if results.len() == ids.len() => results,
                    Ok(_) => failed(ids.len(), "the store returned the wrong number of results"),
                    Err(_) => failed(ids.len(), "the store panicked"),
                };
                let took = started.elapsed();
                done(ids.into_iter().zip(results).collect(), took);
            }
            drop(store);
        })
        .expect("spawning the store thread");
    (tx, handle)
}
