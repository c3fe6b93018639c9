//! Opening a store: checking that a folder holds nothing but a fibergun store (of a format this
//! version reads), taking the writer's lock file, opening the LMDB environment once per process,
//! creating the databases and marking the format. Every way a store can fail to open ends here,
//! as an [`OpenError`] that says why.

use std::path::Path;

use heed::types::Bytes;
use heed::{CommitOrAbort, Env, EnvOpenOptions};

use crate::meta::{FORMAT, FORMAT_KEY};
use crate::LmdbStore;

/// Why the store could not open.
#[derive(Debug)]
pub struct OpenError(pub String);

impl std::fmt::Display for OpenError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for OpenError {}

/// Default LMDB map size: the most the database may grow to. LMDB reserves address space, not disk.
pub const DEFAULT_MAP_SIZE: usize = 64 << 30;

/// Held (an exclusive advisory lock) by the one process that serves or imports into a store.
const LOCK_FILE: &str = "fibergun.lock";

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
        options.map_size(map_size).max_dbs(8);
        let env = open_once(&options, dir)?;
        if existed {
            check_format(env, dir)?;
        }
        let wtxn = env.write_txn().map_err(lmdb("begin"))?;
        let (fields, meta, outbox, spaces) = env
            .create_databases_and_commit(wtxn, |opener, wtxn| {
                let create = |name: &str, wtxn: &mut heed::RwTxn<'_>| {
                    opener
                        .database_options()
                        .types::<Bytes, Bytes>()
                        .name(name)
                        .create(wtxn)
                };
                let fields = create("fields", wtxn)?;
                let meta = create("meta", wtxn)?;
                let outbox = create("outbox", wtxn)?;
                let spaces = create("spaces", wtxn)?;
                Ok::<_, heed::Error>(CommitOrAbort::<_, ()>::Commit((
                    fields, meta, outbox, spaces,
                )))
            })
            .map_err(lmdb("create database"))?
            .unwrap_commit();
        let mut store = LmdbStore {
            env,
            fields,
            meta,
            outbox,
            spaces,
            nodes: 0,
            quota: None,
            _lock: None,
        };
        store.nodes = store.load_node_count().map_err(lmdb("count nodes"))?;
        store
            .count_spaces_once()
            .map_err(lmdb("count the spaces' bytes"))?;
        store.mark_format().map_err(lmdb("write the format"))?;
        Ok(store)
    }

    /// A second handle on this store for reading from another thread (exports, snapshots). It
    /// holds no lock; its writes would bypass this handle's node count, so it is for reading.
    pub fn reader(&self) -> LmdbStore {
        LmdbStore {
            env: self.env,
            fields: self.fields,
            meta: self.meta,
            outbox: self.outbox,
            spaces: self.spaces,
            nodes: self.nodes,
            quota: None,
            _lock: None,
        }
    }

    /// Flushes to disk. Commits are synchronous already; this is for an orderly shutdown.
    pub fn sync(&self) -> Result<(), String> {
        self.env.force_sync().map_err(|e| e.to_string())
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

#[cfg(test)]
mod tests {
    use crate::LmdbStore;

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
}
