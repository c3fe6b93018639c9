//! Where a server keeps its graph: behind the core's [`Store`] contract, one of the storage
//! backends. `lmdb` (the default) is durable: an ack follows the synchronous commit. `s3` is
//! durable in a bucket: an ack follows the service's confirmation of the batch's upload, and
//! `--data` holds a replica that a restart on an empty folder rebuilds from the bucket (see
//! [`fibergun_s3::S3Store`]). `postgres` keeps the graph in a PostgreSQL database that any
//! number of relays share: an ack follows the database's commit (and its synchronous standbys',
//! when it has them), and each relay hears what the others commit through the database's change
//! feed (see [`fibergun_postgres`]). `memory` is for tests and ephemeral relays: an ack means the
//! write is in this process's memory only, and a restart starts empty.

pub mod s3_flags;

use fibergun::{FeedSink, MemStore, Store, StoreOp, StoreResult};
use fibergun_drive::StartError;
use fibergun_lmdb::{LmdbStore, StatsReader};
use fibergun_postgres::{PgStats, PgStore};
use fibergun_s3::{S3Stats, S3Store};

use crate::ServerConfig;

/// Which backend (`--store`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum StoreKind {
    /// LMDB in `--data`: durable.
    #[default]
    Lmdb,
    /// An S3 bucket, with an LMDB replica in `--data`.
    S3,
    /// A PostgreSQL database, shared by any number of relays.
    Postgres,
    /// Memory only: lost on restart.
    Memory,
}

impl StoreKind {
    /// Its name on the command line.
    pub fn name(self) -> &'static str {
        match self {
            StoreKind::Lmdb => "lmdb",
            StoreKind::S3 => "s3",
            StoreKind::Postgres => "postgres",
            StoreKind::Memory => "memory",
        }
    }
}

/// Reads `lmdb`, `s3`, `postgres` or `memory`.
pub fn parse_store_kind(text: &str) -> Result<StoreKind, String> {
    match text {
        "lmdb" => Ok(StoreKind::Lmdb),
        "s3" => Ok(StoreKind::S3),
        "postgres" => Ok(StoreKind::Postgres),
        "memory" => Ok(StoreKind::Memory),
        other => Err(format!("{other:?}: use lmdb, s3, postgres or memory")),
    }
}

/// Where a PostgreSQL store is (`serve`, `export`, `import`, `import-radata`).
#[derive(clap::Args, Debug, Clone, Default)]
pub struct PostgresFlags {
    /// The database of `--store postgres`: a libpq URL such as
    /// `postgres://user:password@host:5432/db` (or `host=… dbname=…`); several hosts
    /// (`postgres://h1:5432,h2:5432/db?target_session_attrs=read-write`) are tried in order
    /// for the one that takes writes, after a failover too.
    #[arg(
        long,
        value_name = "URL",
        env = "FIBERGUN_POSTGRES_URL",
        hide_env_values = true
    )]
    pub postgres_url: Option<String>,
}

/// Readers of a backend's figures (for `/metrics` and `/health`), where it has them.
#[derive(Clone, Debug, Default)]
pub struct StoreReaders {
    /// The local store's size (LMDB, or the S3 store's replica).
    pub size: Option<StatsReader>,
    /// The S3 store's uploads and snapshots.
    pub s3: Option<S3Stats>,
    /// The PostgreSQL store's batches, size and change feed.
    pub postgres: Option<PgStats>,
}

impl StoreReaders {
    /// The S3 store's figures now, for an S3 store.
    pub fn s3_figures(&self) -> Option<fibergun_s3::S3Figures> {
        self.s3.as_ref().map(S3Stats::read)
    }

    /// The PostgreSQL store's figures now, for a PostgreSQL store.
    pub fn postgres_figures(&self) -> Option<fibergun_postgres::PgFigures> {
        self.postgres.as_ref().map(PgStats::read)
    }
}

/// An opened backend.
pub enum Backend {
    /// LMDB.
    Lmdb(LmdbStore),
    /// S3.
    S3(Box<S3Store>),
    /// PostgreSQL.
    Postgres(Box<PgStore>),
    /// Memory.
    Memory(MemStore),
}

impl Store for Backend {
    fn apply(&mut self, ops: Vec<StoreOp>) -> Vec<StoreResult> {
        match self {
            Backend::Lmdb(s) => s.apply(ops),
            Backend::S3(s) => s.apply(ops),
            Backend::Postgres(s) => s.apply(ops),
            Backend::Memory(s) => s.apply(ops),
        }
    }

    fn start_feed(&mut self, sink: FeedSink) {
        if let Backend::Postgres(s) = self {
            s.start_feed(sink);
        }
    }
}

impl Backend {
    /// Opens the backend `config` names (with its quota, for LMDB). Also gives the reader of
    /// the store's size, where the backend has one.
    pub fn open(config: &ServerConfig) -> Result<(Backend, StoreReaders), StartError> {
        match config.store {
            StoreKind::Lmdb => {
                let mut store = LmdbStore::open(&config.data_dir, config.map_size)
                    .map_err(|e| StartError(e.to_string()))?;
                store.set_quota(config.storage_quota);
                let readers = StoreReaders {
                    size: Some(store.stats_reader()),
                    ..StoreReaders::default()
                };
                Ok((Backend::Lmdb(store), readers))
            }
            StoreKind::S3 => {
                let settings = config
                    .s3
                    .as_ref()
                    .ok_or_else(|| StartError("--store s3 needs the --s3 flags".into()))?;
                tracing::info!(
                    "S3 store {}: bringing the replica in {} up to date",
                    settings.config.location(),
                    config.data_dir.display()
                );
                let (mut store, recovery) = S3Store::open(
                    &config.data_dir,
                    config.map_size,
                    &settings.config,
                    settings.snapshots,
                )
                .map_err(StartError)?;
                tracing::info!(
                    "S3 store ready in {:?}: {} nodes; snapshot loaded: {:?}; {} batches replayed; last batch {}",
                    recovery.took,
                    recovery.nodes,
                    recovery.snapshot,
                    recovery.segments,
                    recovery.last_batch
                );
                store.set_quota(config.storage_quota);
                let readers = StoreReaders {
                    size: Some(store.replica().stats_reader()),
                    s3: Some(store.stats()),
                    postgres: None,
                };
                Ok((Backend::S3(Box::new(store)), readers))
            }
            StoreKind::Postgres => {
                let url = config.postgres_url.as_deref().ok_or_else(|| {
                    StartError(
                        "--store postgres needs --postgres-url (or FIBERGUN_POSTGRES_URL)".into(),
                    )
                })?;
                let mut store = PgStore::open(url).map_err(StartError)?;
                store.set_quota(config.storage_quota);
                let readers = StoreReaders {
                    postgres: Some(store.stats()),
                    ..StoreReaders::default()
                };
                Ok((Backend::Postgres(Box::new(store)), readers))
            }
            StoreKind::Memory => {
                if config.storage_quota.is_some() {
                    return Err(StartError(
                        "--storage-quota applies to the lmdb store only".into(),
                    ));
                }
                Ok((Backend::Memory(MemStore::new()), StoreReaders::default()))
            }
        }
    }

    /// Flushes what a durable backend holds. Every commit is synced already; this is once more
    /// at shutdown, when the store thread lets the store go.
    pub fn sync(&self) {
        let lmdb = match self {
            Backend::Lmdb(store) => store,
            Backend::S3(store) => store.replica(),
            // Every commit is the database's; there is nothing held here.
            Backend::Postgres(_) | Backend::Memory(_) => return,
        };
        if let Err(e) = lmdb.sync() {
            tracing::error!("final store sync failed: {e}");
        }
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.sync();
    }
}
