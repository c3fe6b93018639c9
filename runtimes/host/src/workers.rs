//! The threads every server runs beside its sockets and its driver: the store thread (LMDB, group
//! commit) and the verifier threads (signature checks). All answer through the driver's inbox.

use std::sync::Arc;
use std::thread::JoinHandle;

use fibergun::sea::rules::SignatureCheck;
use fibergun::{StoreOp, VerifyId};
use fibergun_lmdb::LmdbStore;

use crate::budget::ByteBudget;
use crate::driver::DriverEvent;
use crate::store_thread;
use crate::verifier::{self, Verifiers};

/// The worker threads, and the channels the driver feeds them through.
pub struct Workers {
    /// Storage batches for the store thread.
    pub store: async_channel::Sender<Vec<StoreOp>>,
    /// Ends (syncing the store) once the driver, which owns `store`, is gone.
    pub store_thread: JoinHandle<()>,
    /// Signature checks for the verifier threads.
    pub verifier: std::sync::mpsc::Sender<(VerifyId, Vec<SignatureCheck>)>,
    /// End once the driver, which owns `verifier`, is gone.
    pub verifier_threads: Verifiers,
}

impl Workers {
    /// Starts the store thread and `verify_threads` verifier threads; their results go to the
    /// driver through `send`.
    pub fn start<C, F>(store: LmdbStore, verify_threads: usize, send: F) -> Workers
    where
        C: Send + 'static,
        F: Fn(DriverEvent<C>) + Clone + Send + 'static,
    {
        let to_driver = send.clone();
        let (store, store_thread) = store_thread::spawn_lmdb(store, move |results| {
            to_driver(DriverEvent::StoreDone(results));
        });
        let (verifier, verifier_threads) = verifier::spawn(verify_threads, move |id, results| {
            send(DriverEvent::Verified { id, results });
        });
        Workers {
            store,
            store_thread,
            verifier,
            verifier_threads,
        }
    }
}

/// The budget of inbound frames waiting for the driver: four of the largest frames.
/// With a memory limit, at most an eighth of it.
pub fn inbound_budget(config: &crate::ServerConfig) -> Arc<ByteBudget> {
    let four_frames = config.limits.max_frame_bytes.saturating_mul(4);
    let bytes = config
        .memory_share(8)
        .map_or(four_frames, |share| four_frames.min(share));
    Arc::new(ByteBudget::new(bytes))
}
