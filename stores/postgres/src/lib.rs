//! The PostgreSQL store: any number of relays on one database, which keeps the graph, decides
//! HAM in its transactions, and tells each relay what the others committed.
//!
//! - [`schema`]: the tables, created at the first start and versioned; the graph is readable in
//!   plain SQL through the `fibergun_graph` view.
//! - `write`: one batch of the core's ops in one transaction (group commit); HAM decided under
//!   per-soul locks, exactly as the other stores decide it; an ack follows the commit, which
//!   waits for synchronous standbys when the server is configured so.
//! - `read`: reads by the primary key's index, budgeted.
//! - `feed`: the change feed (NOTIFY inside the committing transaction, a listening connection
//!   per relay), started by [`Store::start_feed`].
//!
//! Connections take libpq's URL or key-value forms, with several hosts and
//! `target_session_attrs=read-write`; a connection lost (the database restarted, a failover)
//! fails the batch in flight and is made again for the next one.

pub mod schema;

mod codec;
mod feed;
mod read;
mod stats;
mod write;

use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use fibergun::{FeedSink, Store, StoreOp, StoreResult};
use postgres::{Client, NoTls};

pub use stats::{PgFigures, PgStats};

/// How often the table's size is measured for the quota (between batches).
const SIZE_EVERY: Duration = Duration::from_secs(1);

/// A relay's connection to the database.
pub struct PgStore {
    config: postgres::Config,
    client: Option<Client>,
    /// Names this store's announcements, so its own feed skips them.
    origin: String,
    quota: Option<u64>,
    size_measured: Option<Instant>,
    over_quota: bool,
    stats: PgStats,
    feed_stop: Arc<AtomicBool>,
    feed: Option<JoinHandle<()>>,
}

/// The text of a database error: its message and, for a server error, its code.
pub(crate) fn describe(e: &postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("PostgreSQL: {} ({})", db.message(), db.code().code()),
        None => match std::error::Error::source(e) {
            Some(source) => format!("PostgreSQL: {e}: {source}"),
            None => format!("PostgreSQL: {e}"),
        },
    }
}

/// Connects with `config` (which names the hosts to try and the session they must offer).
pub(crate) fn connect(config: &postgres::Config) -> Result<Client, String> {
    config.connect(NoTls).map_err(|e| describe(&e))
}

/// Reads a connection string (a `postgres://` URL or libpq's `key=value` form), with fibergun's
/// defaults for what it leaves out: a 5-second connect timeout, TCP keepalives, and the
/// application name `fibergun`.
pub fn parse_url(url: &str) -> Result<postgres::Config, String> {
    let mut config = postgres::Config::from_str(url)
        .map_err(|e| format!("the PostgreSQL URL does not parse: {e}"))?;
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(Duration::from_secs(5));
    }
    if config.get_application_name().is_none() {
        config.application_name("fibergun");
    }
    config.keepalives(true);
    config.keepalives_idle(Duration::from_secs(10));
    Ok(config)
}

impl PgStore {
    /// Connects to the database `url` names and checks its schema, creating it in a database
    /// that has none.
    pub fn open(url: &str) -> Result<PgStore, String> {
        let config = parse_url(url)?;
        let mut client = connect(&config)?;
        schema::prepare(&mut client)?;
        Ok(PgStore {
            config,
            client: Some(client),
            origin: origin(),
            quota: None,
            size_measured: None,
            over_quota: false,
            stats: PgStats::default(),
            feed_stop: Arc::new(AtomicBool::new(false)),
            feed: None,
        })
    }

    /// Refuses merges once `fibergun_fields` (with its index and TOAST) takes `bytes` or more;
    /// reads go on. `None` for no quota.
    pub fn set_quota(&mut self, bytes: Option<u64>) {
        self.quota = bytes;
        self.size_measured = None;
    }

    /// The store's figures, readable from any thread.
    pub fn stats(&self) -> PgStats {
        self.stats.clone()
    }

    /// Hands every node to `each`, in soul order, as of one moment (relays keep writing
    /// meanwhile); returns how many.
    pub fn for_each_node(
        &mut self,
        each: impl FnMut(fibergun::Node) -> Result<(), String>,
    ) -> Result<u64, String> {
        let client = self.client()?;
        let mut txn = client
            .build_transaction()
            .isolation_level(postgres::IsolationLevel::RepeatableRead)
            .read_only(true)
            .start()
            .map_err(|e| describe(&e))?;
        let nodes = read::for_each_node(&mut txn, each)?;
        txn.commit().map_err(|e| describe(&e))?;
        Ok(nodes)
    }

    fn client(&mut self) -> Result<&mut Client, String> {
        if self.client.as_ref().is_none_or(Client::is_closed) {
            self.client = None;
            let client = connect(&self.config)?;
            tracing::info!("connected to PostgreSQL again");
            self.client = Some(client);
        }
        Ok(self.client.as_mut().expect("just connected"))
    }

    /// Measures the table (at most once a second) when there is a quota; the reason merges are
    /// refused, if they are.
    fn quota_check(&mut self) -> Result<Option<String>, String> {
        let Some(quota) = self.quota else {
            return Ok(None);
        };
        if self
            .size_measured
            .is_none_or(|at| at.elapsed() >= SIZE_EVERY)
        {
            let row = self
                .client()?
                .query_one("SELECT pg_total_relation_size('fibergun_fields')", &[])
                .map_err(|e| describe(&e))?;
            let bytes: i64 = row.get(0);
            self.stats.table_bytes(bytes.max(0) as u64);
            self.over_quota = bytes.max(0) as u64 >= quota;
            self.size_measured = Some(Instant::now());
        }
        Ok(self
            .over_quota
            .then(|| format!("the storage quota of {quota} bytes is used up")))
    }

    /// One attempt at a batch. An error before COMMIT was sent leaves nothing committed (the
    /// server rolls back); one at COMMIT may have committed (its answer was lost).
    fn try_apply(&mut self, ops: &[StoreOp]) -> Result<Vec<StoreResult>, Failure> {
        let before = |reason: String| Failure {
            reason,
            may_have_committed: false,
        };
        let over_quota = if ops.iter().any(|op| matches!(op, StoreOp::Merge { .. })) {
            self.quota_check().map_err(before)?
        } else {
            None
        };
        let origin = self.origin.clone();
        let client = self.client().map_err(before)?;
        let mut txn = client.transaction().map_err(|e| before(describe(&e)))?;
        let results =
            write::apply_in(&mut txn, ops, over_quota.as_deref(), &origin).map_err(before)?;
        txn.commit().map_err(|e| Failure {
            reason: describe(&e),
            may_have_committed: true,
        })?;
        Ok(results)
    }

    /// Whether the connection is gone (the database restarted, a failover, the network).
    fn connection_lost(&self) -> bool {
        self.client.as_ref().is_none_or(Client::is_closed)
    }
}

/// Why a batch failed.
struct Failure {
    reason: String,
    may_have_committed: bool,
}

impl PgStore {
    fn apply_once_more_if_lost(&mut self, ops: &[StoreOp]) -> Result<Vec<StoreResult>, String> {
        match self.try_apply(ops) {
            Ok(results) => Ok(results),
            // A connection that died while idle is found out by the batch that next uses it;
            // nothing of the batch committed, so it is tried once more on a new connection.
            Err(f) if !f.may_have_committed && self.connection_lost() => {
                tracing::info!(
                    "the PostgreSQL connection was lost ({}); connecting again",
                    f.reason
                );
                self.client = None;
                self.try_apply(ops).map_err(|f| f.reason)
            }
            Err(f) => Err(f.reason),
        }
    }
}

/// A name for this store's announcements, unique among the relays on one database: the
/// process and the moment it opened.
fn origin() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("{}-{nanos:x}", std::process::id())
}

impl Store for PgStore {
    fn apply(&mut self, ops: Vec<StoreOp>) -> Vec<StoreResult> {
        match self.apply_once_more_if_lost(&ops) {
            Ok(results) => {
                self.stats.batch(true);
                results
            }
            Err(reason) => {
                self.stats.batch(false);
                tracing::warn!("a PostgreSQL batch failed: {reason}");
                ops.iter()
                    .map(|_| StoreResult::Failed {
                        reason: reason.clone(),
                    })
                    .collect()
            }
        }
    }

    fn start_feed(&mut self, sink: FeedSink) {
        if self.feed.is_some() {
            return;
        }
        let listener = feed::Listener {
            config: self.config.clone(),
            origin: self.origin.clone(),
            sink,
            stop: self.feed_stop.clone(),
            stats: self.stats.clone(),
        };
        match std::thread::Builder::new()
            .name("fibergun-pg-feed".into())
            .spawn(move || listener.run())
        {
            Ok(handle) => self.feed = Some(handle),
            Err(e) => tracing::error!("cannot start the change feed's thread: {e}"),
        }
    }
}

impl Drop for PgStore {
    fn drop(&mut self) {
        self.feed_stop.store(true, Ordering::Relaxed);
        if let Some(feed) = self.feed.take() {
            let _ = feed.join();
        }
    }
}
