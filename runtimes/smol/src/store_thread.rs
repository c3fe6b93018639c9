//! The store runs on its own thread: LMDB commits block on fsync, and the socket loops must not.
//! One batch is in flight at a time; the driver gathers the next batch meanwhile (group commit).

use std::thread::JoinHandle;

use fibergun::{OpId, Store, StoreOp, StoreResult};
use smol::channel::{Receiver, Sender};

/// The results of one batch, in op order.
pub type BatchResults = Vec<(OpId, StoreResult)>;

/// Starts the store thread. Batches sent on the returned channel are applied in order, and each
/// batch's results are passed to `done` after its commit. The thread ends, syncing the store,
/// when the channel closes.
pub fn spawn<S, F>(
    mut store: S,
    done: F,
    sync: impl FnOnce(&S) + Send + 'static,
) -> (Sender<Vec<StoreOp>>, JoinHandle<()>)
where
    S: Store + Send + 'static,
    F: Fn(BatchResults) + Send + 'static,
{
    let (tx, rx): (Sender<Vec<StoreOp>>, Receiver<Vec<StoreOp>>) = smol::channel::unbounded();
    let handle = std::thread::Builder::new()
        .name("fibergun-store".into())
        .spawn(move || {
            while let Ok(batch) = rx.recv_blocking() {
                let ids: Vec<OpId> = batch.iter().map(StoreOp::id).collect();
                let results = store.apply(batch);
                done(ids.into_iter().zip(results).collect());
            }
            sync(&store);
        })
        .expect("spawning the store thread");
    (tx, handle)
}
