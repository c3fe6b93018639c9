//! What the store keeps about itself in its `meta` database, beside the data: the format it was
//! written in, the node count (kept up to date by each commit, so stats cost no scan), and the
//! position in and origin of an external log (the S3 store's batches) it holds everything up to.
//! Also the size statistics read from it: [`StoreStats`] and [`StatsReader`].

use heed::types::Bytes;
use heed::{Database, Env};

use crate::codec::split_key;
use crate::LmdbStore;

pub(crate) const NODES_KEY: &[u8] = b"nodes";
pub(crate) const FORMAT_KEY: &[u8] = b"format";
/// The position in an external log (the S3 store's batches) that the store holds everything up to.
pub(crate) const LOG_POSITION_KEY: &[u8] = b"log-position";
/// Where that log lives.
const LOG_ORIGIN_KEY: &[u8] = b"log-origin";
/// A space's key in the `spaces` database: `~` and its name (LMDB takes no empty key, and the
/// shared space's name is empty).
pub(crate) fn space_db_key(name: &str) -> Vec<u8> {
    [b"~", name.as_bytes()].concat()
}

/// Set once the `spaces` database counts every field (a store written before it was kept is
/// counted once, at its first open by this version).
const SPACES_COUNTED_KEY: &[u8] = b"spaces-counted";
/// What this version writes, recorded in `meta` so a future one can tell.
pub(crate) const FORMAT: &str = "fibergun-lmdb-1";

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

impl LmdbStore {
    /// The node count kept in `meta`; counted once from the fields if it is not there yet (a
    /// store written before it was kept).
    pub(crate) fn load_node_count(&self) -> heed::Result<u64> {
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

    /// Counts every field into its space, once per store (see [`SPACES_COUNTED_KEY`]).
    pub(crate) fn count_spaces_once(&self) -> heed::Result<()> {
        let mut wtxn = self.env.write_txn()?;
        if self.meta.get(&wtxn, SPACES_COUNTED_KEY)?.is_some() {
            return Ok(());
        }
        let mut totals: std::collections::BTreeMap<String, u64> = Default::default();
        for entry in self.fields.iter(&wtxn)? {
            let (key, value) = entry?;
            let Some((soul, field_key)) = split_key(key) else {
                continue;
            };
            let (Some(space), Some(k), Some(field)) = (
                fibergun::store::space_of(&soul),
                crate::codec::decode_key(field_key),
                crate::codec::decode_field(value),
            ) else {
                continue;
            };
            *totals.entry(space).or_default() += fibergun::store::stored_bytes(&k, &field.value);
        }
        self.spaces.clear(&mut wtxn)?;
        for (space, bytes) in totals {
            self.spaces
                .put(&mut wtxn, &space_db_key(&space), &bytes.to_le_bytes())?;
        }
        self.meta.put(&mut wtxn, SPACES_COUNTED_KEY, b"1")?;
        wtxn.commit()
    }

    /// Bytes the space `name` holds.
    pub fn space_bytes(&self, name: &str) -> Result<u64, String> {
        let rtxn = self.env.read_txn().map_err(|e| e.to_string())?;
        Ok(self
            .spaces
            .get(&rtxn, &space_db_key(name))
            .map_err(|e| e.to_string())?
            .and_then(|b| <[u8; 8]>::try_from(b).ok())
            .map_or(0, u64::from_le_bytes))
    }

    /// A handle for reading the store's size from any thread.
    pub fn stats_reader(&self) -> StatsReader {
        StatsReader {
            env: self.env,
            fields: self.fields,
            meta: self.meta,
        }
    }

    /// The number of fields stored.
    pub fn field_count(&self) -> Result<u64, String> {
        let rtxn = self.env.read_txn().map_err(|e| e.to_string())?;
        self.fields.len(&rtxn).map_err(|e| e.to_string())
    }

    /// The number of nodes stored.
    pub fn node_count(&self) -> u64 {
        self.nodes
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::merge_op;
    use fibergun::graph::Value;
    use fibergun::store::{Store, StoreOp};

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

    #[test]
    fn each_space_s_bytes_follow_its_merges_and_are_counted_once_for_an_older_store() {
        const OWNER: &str = "AAAA.BBBB";
        let user = format!("~{OWNER}/posts");
        let dir = tempfile::tempdir().unwrap();
        let mut store = LmdbStore::open(dir.path(), 1 << 26).unwrap();
        let results = store.apply(vec![
            merge_op(1, &user, "title", Value::String("hello".into()), 1.0),
            merge_op(2, "public", "k", Value::Number(1.0), 1.0),
            // A longer value replaces the title: the space grows by the difference.
            merge_op(3, &user, "title", Value::String("hello again".into()), 2.0),
        ]);
        let totals: Vec<Option<u64>> = results
            .iter()
            .map(|r| match r {
                fibergun::StoreResult::Merged { space_bytes, .. } => *space_bytes,
                other => panic!("{other:?}"),
            })
            .collect();
        // "title" + "hello" = 10, then "title" + "hello again" = 16; "k" + a number = 9.
        assert_eq!(totals, vec![Some(10), Some(9), Some(16)]);
        assert_eq!(store.space_bytes(OWNER).unwrap(), 16);
        assert_eq!(store.space_bytes("").unwrap(), 9);
        // As a store written before the counts existed: counted at the next open.
        let mut wtxn = store.env.write_txn().unwrap();
        store.meta.delete(&mut wtxn, SPACES_COUNTED_KEY).unwrap();
        store.spaces.clear(&mut wtxn).unwrap();
        wtxn.commit().unwrap();
        drop(store);
        let store = LmdbStore::open(dir.path(), 1 << 26).unwrap();
        assert_eq!(store.space_bytes(OWNER).unwrap(), 16);
        assert_eq!(store.space_bytes("").unwrap(), 9);
    }
}
