//! Where a server keeps its graph: behind the core's [`Store`] contract, one of the storage
//! backends. `lmdb` (the default) is durable: an ack follows the synchronous commit. `memory`
//! is for tests and ephemeral relays: an ack means the write is in this process's memory only,
//! and a restart starts empty.

use fibergun::{MemStore, Store, StoreOp, StoreResult};
use fibergun_lmdb::{LmdbStore, StatsReader};

use crate::{ServerConfig, ServerError};

/// Which backend (`--store`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum StoreKind {
    /// LMDB in `--data`: durable.
    #[default]
    Lmdb,
    /// Memory only: lost on restart.
    Memory,
}

/// Reads `lmdb` or `memory`.
pub fn parse_store_kind(text: &str) -> Result<StoreKind, String> {
    match text {
        "lmdb" => Ok(StoreKind::Lmdb),
        "memory" => Ok(StoreKind::Memory),
        other => Err(format!("{other:?}: use lmdb or memory")),
    }
}

/// An opened backend.
pub enum Backend {
    /// LMDB.
    Lmdb(LmdbStore),
    /// Memory.
    Memory(MemStore),
}

impl Store for Backend {
    fn apply(&mut self, ops: Vec<StoreOp>) -> Vec<StoreResult> {
        match self {
            Backend::Lmdb(s) => s.apply(ops),
            Backend::Memory(s) => s.apply(ops),
        }
    }
}

impl Backend {
    /// Opens the backend `config` names (with its quota, for LMDB). Also gives the reader of
    /// the store's size, where the backend has one.
    pub fn open(config: &ServerConfig) -> Result<(Backend, Option<StatsReader>), ServerError> {
        match config.store {
            StoreKind::Lmdb => {
                let mut store = LmdbStore::open(&config.data_dir, config.map_size)
                    .map_err(|e| ServerError(e.to_string()))?;
                store.set_quota(config.storage_quota);
                let stats = store.stats_reader();
                Ok((Backend::Lmdb(store), Some(stats)))
            }
            StoreKind::Memory => {
                if config.storage_quota.is_some() {
                    return Err(ServerError(
                        "--storage-quota applies to the lmdb store only".into(),
                    ));
                }
                Ok((Backend::Memory(MemStore::new()), None))
            }
        }
    }

    /// Flushes what a durable backend holds (at shutdown).
    pub fn sync(&self) {
        if let Backend::Lmdb(store) = self {
            if let Err(e) = store.sync() {
                tracing::error!("final store sync failed: {e}");
            }
        }
    }
}
