//! fibergun's LMDB store: nodes kept field by field, each with its HAM state, so a restart serves
//! everything that was acknowledged.
//!
//! Layout: one LMDB database, `fields`, whose key is the encoded soul followed by the field key and
//! whose value is the field's state and value (see [`encode_field`]). Souls are encoded so that a
//! node's fields are contiguous and nodes sort by soul: every `0x00` byte of the soul becomes
//! `0x00 0xFF`, and the soul ends with `0x00 0x01`.
//!
//! Every [`Store::apply`] call is one LMDB write transaction, committed with LMDB's default
//! synchronous flush, so its results are returned only once they are on disk.

#![deny(unsafe_code)]

mod portable;

pub use portable::{import, import_batches, import_radata, read_node_line, write_node_line};

use std::collections::BTreeMap;
use std::path::Path;

use fibergun::graph::{Field, Key, Node, Soul, State, Value};
use fibergun::lex::{Budget, Range};
use fibergun::store::{merge_into, page_of_nodes, ReadQuery, Store, StoreOp, StoreResult};
use fibergun::wire::KeyQuery;
use heed::types::Bytes;
use heed::{CommitOrAbort, Database, Env, EnvOpenOptions, RoTxn, RwTxn};

/// Why the store could not open.
#[derive(Debug)]
pub struct OpenError(pub String);

impl std::fmt::Display for OpenError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for OpenError {}

/// A GUN graph in LMDB.
pub struct LmdbStore {
    env: &'static Env,
    fields: Database<'static, Bytes, Bytes>,
    /// Counters kept beside the data: the number of nodes.
    meta: Database<'static, Bytes, Bytes>,
    nodes: u64,
    /// Writes are refused once the map uses this many bytes.
    quota: Option<u64>,
    /// The writer's lock, held while the store is open (see [`LmdbStore::open`]).
    _lock: Option<std::fs::File>,
}

const NODES_KEY: &[u8] = b"nodes";
/// Held (an exclusive advisory lock) by the one process that serves or imports into a store.
const LOCK_FILE: &str = "fibergun.lock";
const FORMAT_KEY: &[u8] = b"format";
/// The position in an external log (the S3 store's batches) that the store holds everything up to.
const LOG_POSITION_KEY: &[u8] = b"log-position";
/// Where that log lives.
const LOG_ORIGIN_KEY: &[u8] = b"log-origin";
/// What this version writes, recorded in `meta` so a future one can tell.
const FORMAT: &str = "fibergun-lmdb-1";

/// Whether `dir` already holds a store; an error when it holds anything else.
fn check_folder(dir: &Path) -> Result<bool, OpenError> {
    let entries = std::fs::read_dir(dir)
        .map_err(|e| OpenError(format!("cannot read {}: {e}", dir.display())))?;
    let mut has_data = false;
    for entry in entries.flatten() {
        let name = entry.file_name();
        match name.to_str() {
            Some("data.mdb") => has_data = true,
            Some("lock.mdb") | Some(LOCK_FILE) => {}
            _ => {
                return Err(OpenError(format!(
                    "{} holds other files ({:?} among them) and no fibergun store: give an empty folder, or a store's own",
                    dir.display(),
                    name
                )))
            }
        }
    }
    Ok(has_data)
}

/// An existing store must be fibergun's: its `fields` database present (unless it holds no
/// database at all), and its format, once recorded, one this version reads.
fn check_format(env: &'static Env, dir: &Path) -> Result<(), OpenError> {
    let rtxn = env.read_txn().map_err(lmdb("begin"))?;
    let empty = env.unnamed_database_stat().entries == 0;
    let opened = env
        .open_databases_and_commit(rtxn, |opener, rtxn| {
            let open = |name: &str| {
                opener
                    .database_options()
                    .types::<Bytes, Bytes>()
                    .name(name)
                    .open(rtxn)
            };
            let (fields, meta) = (open("fields")?, open("meta")?);
            let format = match &meta {
                Some(meta) => meta.get(rtxn, FORMAT_KEY)?.map(<[u8]>::to_vec),
                None => None,
            };
            // Nothing is kept open: what was found goes out through the abort.
            Ok::<_, heed::Error>(CommitOrAbort::<(), _>::Abort((fields.is_some(), format)))
        })
        .map_err(lmdb("open database"))?;
    let CommitOrAbort::Abort((has_fields, format)) = opened else {
        unreachable!("the closure aborts");
    };
    if !has_fields && !empty {
        return Err(OpenError(format!(
            "{} holds an LMDB store that is not fibergun's (it has no 'fields' database)",
            dir.display()
        )));
    }
    if let Some(format) = format {
        if format.as_slice() != FORMAT.as_bytes() {
            return Err(OpenError(format!(
                "{} holds a store of format {:?}, which this version does not read (it reads {FORMAT})",
                dir.display(),
                String::from_utf8_lossy(&format)
            )));
        }
    }
    Ok(())
}

/// How big the store is.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StoreStats {
    /// Nodes stored (souls with at least one field).
    pub nodes: u64,
    /// Fields stored.
    pub fields: u64,
    /// Bytes of the map in use (pages up to the last one written).
    pub used_bytes: u64,
    /// The most the map may grow to.
    pub map_bytes: u64,
}

/// Reads [`StoreStats`] of a store, from any thread, without disturbing its writer.
#[derive(Clone, Copy)]
pub struct StatsReader {
    env: &'static Env,
    fields: Database<'static, Bytes, Bytes>,
    meta: Database<'static, Bytes, Bytes>,
}

impl StatsReader {
    /// The store's size now (as of its last commit).
    pub fn read(&self) -> Result<StoreStats, String> {
        let rtxn = self.env.read_txn().map_err(|e| e.to_string())?;
        let fields = self.fields.len(&rtxn).map_err(|e| e.to_string())?;
        let nodes = self
            .meta
            .get(&rtxn, NODES_KEY)
            .map_err(|e| e.to_string())?
            .and_then(|b| <[u8; 8]>::try_from(b).ok())
            .map_or(0, u64::from_le_bytes);
        let info = self.env.info();
        let page = self.env.unnamed_database_stat().page_size as u64;
        Ok(StoreStats {
            nodes,
            fields,
            used_bytes: (info.last_page_number as u64 + 1) * page,
            map_bytes: info.map_size as u64,
        })
    }
}

impl std::fmt::Debug for StatsReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StatsReader")
    }
}

/// Default LMDB map size: the most the database may grow to. LMDB reserves address space, not disk.
pub const DEFAULT_MAP_SIZE: usize = 64 << 30;

impl LmdbStore {
    /// Opens (creating if needed) the store in directory `dir`, with a map of `map_size` bytes,
    /// as its one writer: another process holding it (a running relay) is an error. A folder
    /// holding other things, a damaged file, or another program's LMDB store is refused with an
    /// error that says which.
    pub fn open(dir: &Path, map_size: usize) -> Result<LmdbStore, OpenError> {
        std::fs::create_dir_all(dir)
            .map_err(|e| OpenError(format!("cannot create {}: {e}", dir.display())))?;
        check_folder(dir)?;
        let lock = std::fs::File::create(dir.join(LOCK_FILE)).map_err(|e| {
            OpenError(format!(
                "cannot create the lock file in {}: {e}",
                dir.display()
            ))
        })?;
        if lock.try_lock().is_err() {
            return Err(OpenError(format!(
                "another fibergun process is using {} (stop it first)",
                dir.display()
            )));
        }
        let mut store = LmdbStore::open_beside(dir, map_size)?;
        store._lock = Some(lock);
        Ok(store)
    }

    /// Opens the store in `dir` without taking the writer's lock, beside a relay that may be
    /// running on it (LMDB lets processes share a store): for backups and exports.
    pub fn open_beside(dir: &Path, map_size: usize) -> Result<LmdbStore, OpenError> {
        let existed = check_folder(dir)?;
        let mut options = EnvOpenOptions::new();
        options.map_size(map_size).max_dbs(4);
        let env = open_once(&options, dir)?;
        if existed {
            check_format(env, dir)?;
        }
        let wtxn = env.write_txn().map_err(lmdb("begin"))?;
        let (fields, meta) = env
            .create_databases_and_commit(wtxn, |opener, wtxn| {
                let fields = opener
                    .database_options()
                    .types::<Bytes, Bytes>()
                    .name("fields")
                    .create(wtxn)?;
                let meta = opener
                    .database_options()
                    .types::<Bytes, Bytes>()
                    .name("meta")
                    .create(wtxn)?;
                Ok::<_, heed::Error>(CommitOrAbort::<_, ()>::Commit((fields, meta)))
            })
            .map_err(lmdb("create database"))?
            .unwrap_commit();
        let mut store = LmdbStore {
            env,
            fields,
            meta,
            nodes: 0,
            quota: None,
            _lock: None,
        };
        store.nodes = store.load_node_count().map_err(lmdb("count nodes"))?;
        store.mark_format().map_err(lmdb("write the format"))?;
        Ok(store)
    }

    /// Refuses writes once the map uses `bytes` or more (reads go on); `None` for no quota.
    pub fn set_quota(&mut self, bytes: Option<u64>) {
        self.quota = bytes;
    }

    fn used_bytes(&self) -> u64 {
        let page = self.env.unnamed_database_stat().page_size as u64;
        (self.env.info().last_page_number as u64 + 1) * page
    }

    fn mark_format(&self) -> heed::Result<()> {
        let rtxn = self.env.read_txn()?;
        if self.meta.get(&rtxn, FORMAT_KEY)?.is_some() {
            return Ok(());
        }
        drop(rtxn);
        let mut wtxn = self.env.write_txn()?;
        self.meta.put(&mut wtxn, FORMAT_KEY, FORMAT.as_bytes())?;
        wtxn.commit()
    }

    /// The node count kept in `meta`; counted once from the fields if it is not there yet (a
    /// store written before it was kept).
    fn load_node_count(&self) -> heed::Result<u64> {
        let mut wtxn = self.env.write_txn()?;
        if let Some(bytes) = self.meta.get(&wtxn, NODES_KEY)? {
            if let Ok(count) = <[u8; 8]>::try_from(bytes) {
                return Ok(u64::from_le_bytes(count));
            }
        }
        let mut count = 0u64;
        let mut last: Option<String> = None;
        for entry in self.fields.iter(&wtxn)? {
            let (key, _) = entry?;
            if let Some((soul, _)) = split_key(key) {
                if last.as_deref() != Some(soul.as_str()) {
                    count += 1;
                    last = Some(soul);
                }
            }
        }
        self.meta.put(&mut wtxn, NODES_KEY, &count.to_le_bytes())?;
        wtxn.commit()?;
        Ok(count)
    }

    /// A handle for reading the store's size from any thread.
    pub fn stats_reader(&self) -> StatsReader {
        StatsReader {
            env: self.env,
            fields: self.fields,
            meta: self.meta,
        }
    }

    /// Flushes to disk. Commits are synchronous already; this is for an orderly shutdown.
    pub fn sync(&self) -> Result<(), String> {
        self.env.force_sync().map_err(|e| e.to_string())
    }

    /// The number of fields stored.
    pub fn field_count(&self) -> Result<u64, String> {
        let rtxn = self.env.read_txn().map_err(|e| e.to_string())?;
        self.fields.len(&rtxn).map_err(|e| e.to_string())
    }

    /// Over the quota: reads are answered, writes refused.
    fn reads_only(&self, ops: Vec<StoreOp>, quota: u64) -> Vec<StoreResult> {
        let rtxn = match self.env.read_txn() {
            Ok(t) => t,
            Err(e) => {
                let reason = format!("LMDB: {e}");
                return ops
                    .iter()
                    .map(|_| StoreResult::Failed {
                        reason: reason.clone(),
                    })
                    .collect();
            }
        };
        ops.iter()
            .map(|op| match op {
                StoreOp::Merge { .. } => StoreResult::Failed {
                    reason: format!("the storage quota of {quota} bytes is used up"),
                },
                StoreOp::Read { query, .. } => match self.read(&rtxn, query) {
                    Ok(nodes) => StoreResult::Read { nodes },
                    Err(e) => StoreResult::Failed {
                        reason: format!("LMDB read: {e}"),
                    },
                },
            })
            .collect()
    }

    fn merge(
        &self,
        wtxn: &mut RwTxn<'_>,
        soul: &Soul,
        fields: &[(Key, Field)],
        new_nodes: &mut u64,
    ) -> heed::Result<StoreResult> {
        let prefix = soul_prefix(soul);
        // Whether the node is new, for the node count: known at once when its first field
        // exists already (the common update), else one seek before anything is written.
        let mut was_empty = None;
        let mut key = prefix.clone();
        let mut changed = Vec::new();
        for (k, incoming) in fields {
            key.truncate(prefix.len());
            key.extend_from_slice(k.as_str().as_bytes());
            let current = self.fields.get(wtxn, &key)?.and_then(decode_field);
            if was_empty.is_none() {
                was_empty = Some(
                    current.is_none() && self.fields.prefix_iter(wtxn, &prefix)?.next().is_none(),
                );
            }
            let mut node: BTreeMap<Key, Field> =
                current.map(|f| (k.clone(), f)).into_iter().collect();
            if let Some((_, f)) = merge_into(
                &mut node,
                std::slice::from_ref(&(k.clone(), incoming.clone())),
            )
            .pop()
            {
                self.fields.put(wtxn, &key, &encode_field(&f))?;
                changed.push((k.clone(), f));
            }
        }
        if was_empty == Some(true) && !changed.is_empty() {
            *new_nodes += 1;
        }
        Ok(StoreResult::Merged { changed })
    }

    fn read(&self, txn: &RoTxn<'_>, query: &ReadQuery) -> heed::Result<Vec<Node>> {
        let fields: Vec<(Soul, Key, Field)> = match query {
            ReadQuery::Node {
                soul,
                keys: KeyQuery::One(k),
                ..
            } => {
                let key = [soul_prefix(soul), k.as_str().as_bytes().to_vec()].concat();
                self.fields
                    .get(txn, &key)?
                    .and_then(decode_field)
                    .map(|f| (soul.clone(), k.clone(), f))
                    .into_iter()
                    .collect()
            }
            ReadQuery::Node {
                soul,
                keys,
                reverse,
                budget,
            } => {
                let prefix = soul_prefix(soul);
                let all = Range::default();
                let range = match keys {
                    KeyQuery::Range(r) => r,
                    _ => &all,
                };
                let start = [prefix.clone(), range.start().as_bytes().to_vec()].concat();
                let end = match (&range.prefix, &range.upper) {
                    (Some(p), _) => {
                        Some([prefix.clone(), p.as_bytes().to_vec(), vec![0xff]].concat())
                    }
                    (None, Some(u)) => {
                        Some([prefix.clone(), u.as_bytes().to_vec(), vec![0]].concat())
                    }
                    (None, None) => Some([prefix.clone(), vec![0xff]].concat()),
                };
                self.scan(txn, &start, end.as_deref(), *reverse, *budget, |s, k| {
                    if s != soul.as_str() {
                        return Step::Stop;
                    }
                    if range.contains(k) {
                        Step::Take
                    } else if !*reverse && range.is_past(k) {
                        Step::Stop
                    } else {
                        Step::Skip
                    }
                })?
            }
            ReadQuery::Souls {
                range,
                reverse,
                budget,
                after,
            } => {
                let start = match after.as_ref().filter(|_| !*reverse) {
                    Some((soul, key)) => {
                        [soul_prefix(soul), key.as_str().as_bytes().to_vec()].concat()
                    }
                    None => encode_soul_bytes(range.start().as_bytes(), false),
                };
                // No UTF-8 text contains the byte 0xFF, so it ends every soul with a given prefix.
                let end = match (&range.prefix, &range.upper) {
                    (Some(p), _) => {
                        Some([encode_soul_bytes(p.as_bytes(), false), vec![0xff]].concat())
                    }
                    (None, Some(u)) => {
                        Some([encode_soul_bytes(u.as_bytes(), false), vec![0, 2]].concat())
                    }
                    (None, None) => None,
                };
                let lower = range.start().to_owned();
                self.scan(txn, &start, end.as_deref(), *reverse, *budget, |s, _| {
                    if range.contains(s) {
                        Step::Take
                    } else if (!*reverse && range.is_past(s)) || (*reverse && s < lower.as_str()) {
                        Step::Stop
                    } else {
                        Step::Skip
                    }
                })?
            }
        };
        let fields = fields.iter().map(|(s, k, f)| (s, k, f));
        Ok(page_of_nodes(fields, u64::MAX))
    }

    /// Walks stored fields from `start` (exclusive of a key equal to it) towards `end` (exclusive),
    /// backwards when `reverse` (from `end` down to `start`, inclusive), deciding per field, and
    /// stops when the byte budget is spent. Never reads further than the answer needs.
    fn scan(
        &self,
        txn: &RoTxn<'_>,
        start: &[u8],
        end: Option<&[u8]>,
        reverse: bool,
        budget: u64,
        mut decide: impl FnMut(&str, &str) -> Step,
    ) -> heed::Result<Vec<(Soul, Key, Field)>> {
        use std::ops::Bound::{Excluded, Included, Unbounded};
        // LMDB refuses an empty key, so an empty start means "from the beginning".
        let lower = if start.is_empty() {
            Unbounded
        } else if reverse {
            Included(start)
        } else {
            Excluded(start)
        };
        let upper = end.map_or(Unbounded, Excluded);
        let mut budget = Budget::new(budget);
        let mut out = Vec::new();
        let mut visit = |k: &[u8], v: &[u8]| -> bool {
            let Some((soul, key)) = split_key(k) else {
                return true;
            };
            let Ok(key_text) = std::str::from_utf8(key) else {
                return true;
            };
            match decide(&soul, key_text) {
                Step::Stop => false,
                Step::Skip => true,
                Step::Take => {
                    let (Ok(soul), Some(key), Some(field)) =
                        (Soul::new(&soul), decode_key(key), decode_field(v))
                    else {
                        return true;
                    };
                    if !budget.admit(&field.value) {
                        return false;
                    }
                    out.push((soul, key, field));
                    true
                }
            }
        };
        if reverse {
            for item in self.fields.rev_range(txn, &(lower, upper))? {
                let (k, v) = item?;
                if !visit(k, v) {
                    break;
                }
            }
        } else {
            for item in self.fields.range(txn, &(lower, upper))? {
                let (k, v) = item?;
                if !visit(k, v) {
                    break;
                }
            }
        }
        Ok(out)
    }
}

/// What a scan does with a field.
enum Step {
    Take,
    Skip,
    Stop,
}

/// The environment of `dir`, opened once per process. A store lives as long as the process: its
/// environment is leaked so that database handles can be `'static`, and a store opened again on
/// the same folder (a server stopped and started again in one program) gets the same environment,
/// as LMDB allows one per file and process. Every commit is synced, so nothing is lost at exit.
fn open_once(
    options: &EnvOpenOptions<heed::WithTls>,
    dir: &Path,
) -> Result<&'static Env, OpenError> {
    static OPENED: std::sync::Mutex<Vec<(std::path::PathBuf, &'static Env)>> =
        std::sync::Mutex::new(Vec::new());
    let canonical = dir
        .canonicalize()
        .map_err(|e| OpenError(format!("cannot open {}: {e}", dir.display())))?;
    let mut opened = OPENED.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((_, env)) = opened.iter().find(|(path, _)| *path == canonical) {
        return Ok(env);
    }
    let env: &'static Env = Box::leak(Box::new(open_env(options, dir)?));
    opened.push((canonical, env));
    Ok(env)
}

#[allow(unsafe_code)]
fn open_env(options: &EnvOpenOptions<heed::WithTls>, dir: &Path) -> Result<Env, OpenError> {
    // SAFETY: LMDB requires that a data file is not opened twice in one process and not modified
    // by other means while open; the store opens its directory once and owns it.
    unsafe { options.open(dir) }.map_err(|e| {
        OpenError(format!(
            "cannot open the store at {}: {e} (a damaged file, or not an LMDB store?)",
            dir.display()
        ))
    })
}

fn lmdb(what: &'static str) -> impl Fn(heed::Error) -> OpenError {
    move |e| OpenError(format!("LMDB {what}: {e}"))
}

/// What one write batch changed: each merged node's changed fields, in op order.
pub type Changes<'a> = [(&'a Soul, &'a [(Key, Field)])];

impl Store for LmdbStore {
    fn apply(&mut self, ops: Vec<StoreOp>) -> Vec<StoreResult> {
        self.apply_gated(ops, |_| Ok(None))
    }
}

impl LmdbStore {
    /// [`Store::apply`] with a last step before the commit: `gate` sees what the batch changed
    /// (when it has merges) and may refuse the commit (every op then fails with its reason) or
    /// give a log position to record with it (see [`LmdbStore::log_position`]). A store whose
    /// durable copy is elsewhere (S3) writes it there from the gate.
    pub fn apply_gated(
        &mut self,
        ops: Vec<StoreOp>,
        gate: impl FnOnce(&Changes<'_>) -> Result<Option<u64>, String>,
    ) -> Vec<StoreResult> {
        if let Some(quota) = self.quota.filter(|q| self.used_bytes() >= *q) {
            return self.reads_only(ops, quota);
        }
        let run = || -> heed::Result<Result<Vec<StoreResult>, String>> {
            let mut wtxn = self.env.write_txn()?;
            let mut results = Vec::with_capacity(ops.len());
            let mut new_nodes = 0u64;
            for op in &ops {
                results.push(match op {
                    // A failed write leaves the transaction unusable: the whole batch fails.
                    StoreOp::Merge { soul, fields, .. } => {
                        self.merge(&mut wtxn, soul, fields, &mut new_nodes)?
                    }
                    // A failed read fails only itself.
                    StoreOp::Read { query, .. } => match self.read(&wtxn, query) {
                        Ok(nodes) => StoreResult::Read { nodes },
                        Err(e) => StoreResult::Failed {
                            reason: format!("LMDB read: {e}"),
                        },
                    },
                });
            }
            if ops.iter().any(|op| matches!(op, StoreOp::Merge { .. })) {
                let changes: Vec<(&Soul, &[(Key, Field)])> = ops
                    .iter()
                    .zip(&results)
                    .filter_map(|(op, result)| match (op, result) {
                        (StoreOp::Merge { soul, .. }, StoreResult::Merged { changed })
                            if !changed.is_empty() =>
                        {
                            Some((soul, changed.as_slice()))
                        }
                        _ => None,
                    })
                    .collect();
                match gate(&changes) {
                    Ok(position) => {
                        if let Some(position) = position {
                            self.meta
                                .put(&mut wtxn, LOG_POSITION_KEY, &position.to_le_bytes())?;
                        }
                    }
                    Err(reason) => {
                        wtxn.abort();
                        return Ok(Err(reason));
                    }
                }
                let nodes = self.nodes + new_nodes;
                if new_nodes > 0 {
                    self.meta.put(&mut wtxn, NODES_KEY, &nodes.to_le_bytes())?;
                }
                wtxn.commit()?;
                self.nodes = nodes;
            } else {
                // A read-only batch has nothing to make durable.
                wtxn.abort();
            }
            Ok(Ok(results))
        };
        let reason = match run() {
            Ok(Ok(results)) => return results,
            Ok(Err(refused)) => refused,
            Err(e) => format!("LMDB: {e}"),
        };
        ops.iter()
            .map(|_| StoreResult::Failed {
                reason: reason.clone(),
            })
            .collect()
    }

    /// The log position recorded by the last gated commit that gave one (see
    /// [`LmdbStore::apply_gated`]); `None` before any.
    pub fn log_position(&self) -> Result<Option<u64>, String> {
        self.meta_u64(LOG_POSITION_KEY)
    }

    /// Records `position` as the log position (after a replay that ends there).
    pub fn set_log_position(&mut self, position: u64) -> Result<(), String> {
        self.put_meta(LOG_POSITION_KEY, &position.to_le_bytes())
    }

    /// Where this store's durable copy lives, as [`LmdbStore::set_log_origin`] recorded it.
    pub fn log_origin(&self) -> Result<Option<String>, String> {
        let rtxn = self.env.read_txn().map_err(|e| e.to_string())?;
        let origin = self
            .meta
            .get(&rtxn, LOG_ORIGIN_KEY)
            .map_err(|e| e.to_string())?;
        Ok(origin.map(|bytes| String::from_utf8_lossy(bytes).into_owned()))
    }

    /// Records where this store's durable copy lives, so that a replica is never mixed up with
    /// another's.
    pub fn set_log_origin(&mut self, origin: &str) -> Result<(), String> {
        self.put_meta(LOG_ORIGIN_KEY, origin.as_bytes())
    }

    /// The number of nodes stored.
    pub fn node_count(&self) -> u64 {
        self.nodes
    }

    fn meta_u64(&self, key: &[u8]) -> Result<Option<u64>, String> {
        let rtxn = self.env.read_txn().map_err(|e| e.to_string())?;
        let value = self.meta.get(&rtxn, key).map_err(|e| e.to_string())?;
        Ok(value
            .and_then(|bytes| <[u8; 8]>::try_from(bytes).ok())
            .map(u64::from_le_bytes))
    }

    fn put_meta(&mut self, key: &[u8], value: &[u8]) -> Result<(), String> {
        let mut wtxn = self.env.write_txn().map_err(|e| e.to_string())?;
        self.meta
            .put(&mut wtxn, key, value)
            .map_err(|e| e.to_string())?;
        wtxn.commit().map_err(|e| e.to_string())
    }

    /// A second handle on this store for reading from another thread (exports, snapshots). It
    /// holds no lock; its writes would bypass this handle's node count, so it is for reading.
    pub fn reader(&self) -> LmdbStore {
        LmdbStore {
            env: self.env,
            fields: self.fields,
            meta: self.meta,
            nodes: self.nodes,
            quota: None,
            _lock: None,
        }
    }
}

fn encode_soul_bytes(soul: &[u8], terminate: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(soul.len() + 2);
    for &b in soul {
        out.push(b);
        if b == 0 {
            out.push(0xff);
        }
    }
    if terminate {
        out.extend_from_slice(&[0, 1]);
    }
    out
}

/// The key prefix of every field of `soul`.
pub fn soul_prefix(soul: &Soul) -> Vec<u8> {
    encode_soul_bytes(soul.as_str().as_bytes(), true)
}

/// Splits a stored key into the soul (decoded) and the field key bytes.
fn split_key(k: &[u8]) -> Option<(String, &[u8])> {
    let mut soul = Vec::new();
    let mut i = 0;
    while i < k.len() {
        if k[i] == 0 {
            match k.get(i + 1) {
                Some(0xff) => soul.push(0),
                Some(1) => return Some((String::from_utf8(soul).ok()?, &k[i + 2..])),
                _ => return None,
            }
            i += 2;
        } else {
            soul.push(k[i]);
            i += 1;
        }
    }
    None
}

fn decode_key(bytes: &[u8]) -> Option<Key> {
    Key::new(std::str::from_utf8(bytes).ok()?).ok()
}

const NULL: u8 = 0;
const FALSE: u8 = 1;
const TRUE: u8 = 2;
const NUMBER: u8 = 3;
const STRING: u8 = 4;
const LINK: u8 = 5;

/// A field as stored: the state as 8 big-endian bytes of its `f64`, a type tag, and the payload.
pub fn encode_field(field: &Field) -> Vec<u8> {
    let mut out = Vec::with_capacity(16);
    out.extend_from_slice(&field.state.ms().to_be_bytes());
    match &field.value {
        Value::Null => out.push(NULL),
        Value::Bool(false) => out.push(FALSE),
        Value::Bool(true) => out.push(TRUE),
        Value::Number(n) => {
            out.push(NUMBER);
            out.extend_from_slice(&n.to_be_bytes());
        }
        Value::String(s) => {
            out.push(STRING);
            out.extend_from_slice(s.as_bytes());
        }
        Value::Link(soul) => {
            out.push(LINK);
            out.extend_from_slice(soul.as_str().as_bytes());
        }
    }
    out
}

/// Reads a stored field; `None` if the bytes are not a field this store wrote.
pub fn decode_field(bytes: &[u8]) -> Option<Field> {
    let state = State::new(f64::from_be_bytes(bytes.get(..8)?.try_into().ok()?)).ok()?;
    let payload = bytes.get(9..)?;
    let value = match *bytes.get(8)? {
        NULL => Value::Null,
        FALSE => Value::Bool(false),
        TRUE => Value::Bool(true),
        NUMBER => Some(f64::from_be_bytes(payload.try_into().ok()?))
            .filter(|n| n.is_finite())
            .map(Value::Number)?,
        STRING => Value::String(std::str::from_utf8(payload).ok()?.into()),
        LINK => Value::Link(Soul::new(std::str::from_utf8(payload).ok()?).ok()?),
        _ => return None,
    };
    Some(Field { value, state })
}

/// Ops and reads the crate's tests share.
#[cfg(test)]
pub(crate) mod test_support {
    use super::*;
    use fibergun::store::OpId;

    /// A merge of one field.
    pub fn merge_op(op: u64, soul: &str, key: &str, value: Value, state: f64) -> StoreOp {
        StoreOp::Merge {
            op: OpId(op),
            soul: Soul::new(soul).unwrap(),
            fields: vec![(
                Key::new(key).unwrap(),
                Field {
                    value,
                    state: State::new(state).unwrap(),
                },
            )],
        }
    }

    /// The whole node `soul`, read through [`Store::apply`].
    pub fn read_node(store: &mut LmdbStore, soul: &str) -> Option<Node> {
        let query = ReadQuery::Node {
            soul: Soul::new(soul).unwrap(),
            keys: KeyQuery::All,
            reverse: false,
            budget: u64::MAX,
        };
        match store
            .apply(vec![StoreOp::Read {
                op: OpId(1 << 40),
                query,
            }])
            .pop()
        {
            Some(StoreResult::Read { nodes }) => nodes.into_iter().next(),
            other => panic!("{other:?}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fibergun::store::{MemStore, OpId};

    fn soul(s: &str) -> Soul {
        Soul::new(s).unwrap()
    }
    fn key(k: &str) -> Key {
        Key::new(k).unwrap()
    }
    fn field(v: Value, s: f64) -> Field {
        Field {
            value: v,
            state: State::new(s).unwrap(),
        }
    }

    #[test]
    fn fields_round_trip() {
        for v in [
            Value::Null,
            Value::Bool(true),
            Value::Bool(false),
            Value::Number(-1.5e300),
            Value::String("héllo\0".into()),
            Value::Link(soul("a/b")),
        ] {
            let f = field(v, 1620286973647.001);
            assert_eq!(decode_field(&encode_field(&f)), Some(f));
        }
    }

    #[test]
    fn souls_with_nul_and_shared_prefixes_stay_apart() {
        let a = soul_prefix(&soul("a"));
        let a0 = soul_prefix(&soul("a\0"));
        let ab = soul_prefix(&soul("ab"));
        assert!(a < a0 && a0 < ab);
        assert!(!a0.starts_with(&a));
        assert_eq!(
            split_key(&[a0.clone(), b"k".to_vec()].concat()),
            Some(("a\0".into(), &b"k"[..]))
        );
    }

    /// The LMDB store answers every op exactly as the reference store does.
    #[test]
    fn behaves_like_the_reference_store() {
        let dir = tempfile::tempdir().unwrap();
        let mut lmdb = LmdbStore::open(dir.path(), 1 << 26).unwrap();
        let mut mem = MemStore::new();
        let mut ops = Vec::new();
        let mut id = 0;
        let mut next = || {
            id += 1;
            OpId(id)
        };
        for (s, k, v, st) in [
            ("lexlist", "apple", "1", 5.0),
            ("lexlist", "apricot", "2", 5.0),
            ("lexlist", "banana", "3", 5.0),
            ("lexlist", "a-z", "4", 5.0),
            ("lexlist", "apple", "0", 4.0),
            ("lexlist", "banana", "9", 5.0),
            ("lex", "x", "1", 1.0),
            ("le", "x", "1", 1.0),
            ("m", "y", "1", 1.0),
        ] {
            ops.push(StoreOp::Merge {
                op: next(),
                soul: soul(s),
                fields: vec![(key(k), field(Value::String(v.into()), st))],
            });
        }
        let range = |p: Option<&str>, l: Option<&str>, u: Option<&str>| Range {
            prefix: p.map(Into::into),
            lower: l.map(Into::into),
            upper: u.map(Into::into),
        };
        let node_reads = [
            (KeyQuery::All, false, 0),
            (KeyQuery::One(key("banana")), false, 0),
            (KeyQuery::One(key("nope")), false, 0),
            (
                KeyQuery::Range(range(Some("ap"), None, None)),
                false,
                1 << 20,
            ),
            (KeyQuery::Range(range(Some("ap"), None, None)), true, 1),
            (
                KeyQuery::Range(range(None, Some("a"), Some("b"))),
                false,
                1 << 20,
            ),
            (
                KeyQuery::Range(range(None, Some("b"), None)),
                false,
                1 << 20,
            ),
            (KeyQuery::Range(range(None, Some("a"), None)), false, 2),
            (
                KeyQuery::Range(range(None, None, Some("apricot"))),
                false,
                1 << 20,
            ),
            (
                KeyQuery::Range(range(None, None, Some("apricot"))),
                true,
                1 << 20,
            ),
            (
                KeyQuery::Range(range(None, Some("apple"), Some("b"))),
                true,
                10,
            ),
            (KeyQuery::Range(range(Some("a"), None, None)), true, 1 << 20),
            (KeyQuery::All, false, 3),
            (KeyQuery::All, true, 3),
            (KeyQuery::All, true, 1 << 20),
        ];
        for (keys, reverse, budget) in node_reads {
            ops.push(StoreOp::Read {
                op: next(),
                query: ReadQuery::Node {
                    soul: soul("lexlist"),
                    keys,
                    reverse,
                    budget,
                },
            });
        }
        for (r, reverse, budget) in [
            (range(Some("le"), None, None), false, 1 << 20),
            (range(Some("le"), None, None), true, 1 << 20),
            (range(None, Some("lex"), Some("m")), false, 1 << 20),
            (range(Some("l"), None, None), false, 2),
            (range(None, None, None), false, 1 << 20),
            (range(None, None, None), true, 1 << 20),
            (range(None, None, Some("lex")), false, 1 << 20),
            (range(None, None, Some("lex")), true, 1 << 20),
            (range(Some(""), None, None), true, 5),
            (range(Some("lex"), None, None), true, 1 << 20),
            (range(None, Some("lex"), Some("m")), true, 1 << 20),
        ] {
            ops.push(StoreOp::Read {
                op: next(),
                query: ReadQuery::Souls {
                    range: r,
                    reverse,
                    budget,
                    after: None,
                },
            });
        }
        for after in [
            None,
            Some(("lexlist", "apple")),
            Some(("lexlist", "banana")),
            Some(("le", "x")),
            Some(("m", "y")),
        ] {
            ops.push(StoreOp::Read {
                op: next(),
                query: ReadQuery::Souls {
                    range: Range::default(),
                    reverse: false,
                    budget: 2,
                    after: after.map(|(s, k)| (soul(s), key(k))),
                },
            });
        }
        let expected = mem.apply(ops.clone());
        let got = lmdb.apply(ops);
        assert_eq!(got, expected);
        assert_eq!(lmdb.field_count().unwrap(), 7);
    }
}

#[cfg(test)]
mod stats_tests {
    use super::test_support::merge_op;
    use super::*;

    fn merge(op: u64, soul: &str, key: &str) -> StoreOp {
        merge_op(op, soul, key, Value::Number(1.0), op as f64)
    }

    #[test]
    fn nodes_and_fields_are_counted_and_the_count_survives_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = LmdbStore::open(dir.path(), 1 << 26).unwrap();
        let reader = store.stats_reader();
        assert_eq!(reader.read().unwrap().nodes, 0);
        store.apply(vec![
            merge(1, "a", "x"),
            merge(2, "a", "y"),
            merge(3, "b", "x"),
        ]);
        store.apply(vec![merge(4, "a", "z"), merge(5, "c", "x")]);
        let stats = reader.read().unwrap();
        assert_eq!((stats.nodes, stats.fields), (3, 5));
        assert!(stats.used_bytes > 0 && stats.used_bytes <= stats.map_bytes);
        // Opened again (in this process, the same environment), the count is read back.
        drop(store);
        let store = LmdbStore::open(dir.path(), 1 << 26).unwrap();
        assert_eq!(store.stats_reader().read().unwrap().nodes, 3);
    }

    #[test]
    fn a_store_without_the_count_is_counted_once_at_open() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = LmdbStore::open(dir.path(), 1 << 26).unwrap();
        store.apply(vec![
            merge(1, "a", "x"),
            merge(2, "b", "x"),
            merge(3, "b", "y"),
        ]);
        // As a store written before the count existed.
        let mut wtxn = store.env.write_txn().unwrap();
        store.meta.delete(&mut wtxn, NODES_KEY).unwrap();
        wtxn.commit().unwrap();
        drop(store);
        let store = LmdbStore::open(dir.path(), 1 << 26).unwrap();
        assert_eq!(store.stats_reader().read().unwrap().nodes, 2);
    }
}

#[cfg(test)]
mod fault_tests {
    use super::test_support::merge_op;
    use super::*;
    use fibergun::store::OpId;

    fn merge(op: u64, soul: &str) -> StoreOp {
        merge_op(op, soul, "k", Value::String("x".repeat(2000).into()), 1.0)
    }

    #[test]
    fn a_folder_with_other_things_or_a_damaged_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("notes.txt"), "mine").unwrap();
        let err = LmdbStore::open(dir.path(), 1 << 26).err().unwrap().0;
        assert!(err.contains("holds other files"), "{err}");
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("data.mdb"), vec![7u8; 64 << 10]).unwrap();
        let err = LmdbStore::open(dir.path(), 1 << 26).err().unwrap().0;
        assert!(err.contains("damaged file, or not an LMDB store"), "{err}");
    }

    #[test]
    fn past_the_quota_writes_fail_and_reads_go_on() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = LmdbStore::open(dir.path(), 1 << 26).unwrap();
        store.set_quota(Some(64 << 10));
        let mut op = 0;
        let refused = loop {
            op += 1;
            assert!(op < 1000, "the quota never bit");
            match store
                .apply(vec![merge(op, &format!("n{op}"))])
                .pop()
                .unwrap()
            {
                StoreResult::Merged { .. } => continue,
                StoreResult::Failed { reason } => break reason,
                other => panic!("{other:?}"),
            }
        };
        assert!(refused.contains("quota"), "{refused}");
        let read = ReadQuery::Node {
            soul: Soul::new("n1").unwrap(),
            keys: KeyQuery::All,
            reverse: false,
            budget: 1 << 20,
        };
        let results = store.apply(vec![StoreOp::Read {
            op: OpId(9999),
            query: read,
        }]);
        assert!(matches!(&results[0], StoreResult::Read { nodes } if nodes.len() == 1));
    }
}
