//! The threads every relay runs beside its sockets and its driver: the store thread (group
//! commit) and the verifier threads (signature checks), which answer through the driver's inbox;
//! and what its sockets, in-process connections and driver share.

use std::sync::Arc;
use std::thread::JoinHandle;

use fibergun::sea::rules::SignatureCheck;
use fibergun::{StoreOp, VerifyId};

use crate::budget::ByteBudget;
use crate::driver::DriverEvent;
use crate::store_thread;
use crate::verifier::{self, Verifiers};

/// The worker threads, and the channels the driver feeds them through.
pub struct Workers {
    /// Storage batches for the store thread.
    pub store: async_channel::Sender<Vec<StoreOp>>,
    /// Ends (closing the store) once the driver, which owns `store`, is gone.
    pub store_thread: JoinHandle<()>,
    /// Signature checks for the verifier threads.
    pub verifier: std::sync::mpsc::Sender<(VerifyId, Vec<SignatureCheck>)>,
    /// End once the driver, which owns `verifier`, is gone.
    pub verifier_threads: Verifiers,
}

impl Workers {
    /// Starts the store thread (and the store's change feed, if it has one) and
    /// `verify_threads` verifier threads; their results go to the driver through `send`.
    pub fn start<S, C, F>(mut store: S, verify_threads: usize, send: F) -> Workers
    where
        S: fibergun::Store + Send + 'static,
        C: Send + 'static,
        F: Fn(DriverEvent<C>) + Clone + Send + 'static,
    {
        let feed = send.clone();
        store.start_feed(Box::new(move |event| feed(DriverEvent::Feed(event))));
        let to_driver = send.clone();
        let (store, store_thread) = store_thread::spawn(store, move |results, took| {
            to_driver(DriverEvent::StoreDone { results, took });
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

/// What a relay's sockets, in-process connections and driver share: the inbound budget, the
/// total of queued outbound bytes, connection ids, and the connector for in-process
/// connections (whose events go to the driver through `send`).
pub struct Shared {
    /// Bytes of frames read and not yet handled.
    pub inbound: Arc<ByteBudget>,
    /// Bytes queued for all connections.
    pub outbound: Arc<crate::queue::OutboundTotal>,
    /// Source of connection ids.
    pub next_conn: Arc<std::sync::atomic::AtomicU64>,
    /// Opens in-process connections.
    pub connector: crate::local::Connector,
}

impl Shared {
    /// The shared parts of a relay configured by `config`.
    pub fn new<F>(config: &crate::RelayConfig, send: F) -> Shared
    where
        F: Fn(crate::local::LocalEvent) + Send + 'static,
    {
        let inbound = config.inbound_budget();
        let outbound = config.outbound_total();
        let next_conn = Arc::new(std::sync::atomic::AtomicU64::new(1));
        let connector = crate::local::Connector::start(
            next_conn.clone(),
            outbound.clone(),
            inbound.clone(),
            config.limits.max_outbound_queue_bytes,
            send,
        );
        Shared {
            inbound,
            outbound,
            next_conn,
            connector,
        }
    }
}
