//! The write path: [`Store::apply`] and [`LmdbStore::apply_gated`], which run a batch of ops in
//! one LMDB write transaction, merge each incoming field by HAM against the stored one, keep the
//! node count, and refuse writes once the store is over its quota.
//!
//! Every [`Store::apply`] call is one LMDB write transaction, committed with LMDB's default
//! synchronous flush, so its results are returned only once they are on disk.

use std::collections::BTreeMap;

use fibergun::graph::{Field, Key, Soul};
use fibergun::ham::{self, Decision};
use fibergun::store::{stored_bytes, Store, StoreOp, StoreResult};
use heed::RwTxn;

use crate::codec::{decode_field, encode_field, soul_prefix};
use crate::meta::{LOG_POSITION_KEY, NODES_KEY};
use crate::LmdbStore;

/// What one write batch changed: each merged node's changed fields, in op order.
pub type Changes<'a> = [(&'a Soul, &'a [(Key, Field)])];

impl Store for LmdbStore {
    fn apply(&mut self, ops: Vec<StoreOp>) -> Vec<StoreResult> {
        self.apply_gated(ops, |_| Ok(None))
    }
}

/// The answer to a write over the quota.
pub(crate) fn quota_used_up(quota: u64) -> StoreResult {
    StoreResult::Failed {
        reason: format!("the storage quota of {quota} bytes is used up"),
    }
}

impl LmdbStore {
    /// Refuses writes once the map uses `bytes` or more (reads go on); `None` for no quota.
    pub fn set_quota(&mut self, bytes: Option<u64>) {
        self.quota = bytes;
    }

    fn used_bytes(&self) -> u64 {
        let page = self.env.unnamed_database_stat().page_size as u64;
        (self.env.info().last_page_number as u64 + 1) * page
    }

    /// [`Store::apply`] with a last step before the commit: `gate` sees what the batch changed
    /// (when it has merges) and may refuse the commit (every op then fails with its reason) or
    /// give a log position to record with it (see [`LmdbStore::log_position`]). A store whose
    /// durable copy is elsewhere (S3) writes it there from the gate.
    pub fn apply_gated(
        &mut self,
        ops: Vec<StoreOp>,
        gate: impl FnOnce(&Changes<'_>) -> Result<Option<u64>, String>,
    ) -> Vec<StoreResult> {
        let over_quota = self.quota.filter(|q| self.used_bytes() >= *q);
        // Over the quota reads go on, and so do outbox marks, which free space.
        let frees = |op: &StoreOp| matches!(op, StoreOp::OutboxAcked { .. });
        if let Some(quota) = over_quota.filter(|_| !ops.iter().any(frees)) {
            return self.reads_only(ops, quota);
        }
        let run = || -> heed::Result<Result<Vec<StoreResult>, String>> {
            let mut wtxn = self.env.write_txn()?;
            let mut results = Vec::with_capacity(ops.len());
            let mut new_nodes = 0u64;
            let mut spaces = SpaceTally::default();
            for op in &ops {
                results.push(match op {
                    StoreOp::Merge { .. } | StoreOp::OutboxAppend { .. }
                        if over_quota.is_some() =>
                    {
                        quota_used_up(over_quota.unwrap_or_default())
                    }
                    // A failed write leaves the transaction unusable: the whole batch fails.
                    StoreOp::Merge { soul, fields, .. } => {
                        self.merge(&mut wtxn, soul, fields, &mut new_nodes, &mut spaces)?
                    }
                    // A failed read fails only itself.
                    StoreOp::Read { query, .. } => match self.read(&wtxn, query) {
                        Ok(nodes) => StoreResult::Read { nodes },
                        Err(e) => StoreResult::Failed {
                            reason: format!("LMDB read: {e}"),
                        },
                    },
                    outbox => self
                        .outbox_write(&mut wtxn, outbox)?
                        .expect("every other op is the outbox's"),
                });
            }
            spaces.write(self, &mut wtxn)?;
            if ops.iter().any(StoreOp::writes) {
                let changes: Vec<(&Soul, &[(Key, Field)])> = ops
                    .iter()
                    .zip(&results)
                    .filter_map(|(op, result)| match (op, result) {
                        (StoreOp::Merge { soul, .. }, StoreResult::Merged { changed, .. })
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

    fn merge(
        &self,
        wtxn: &mut RwTxn<'_>,
        soul: &Soul,
        fields: &[(Key, Field)],
        new_nodes: &mut u64,
        spaces: &mut SpaceTally,
    ) -> heed::Result<StoreResult> {
        let prefix = soul_prefix(soul);
        // Whether the node is new, for the node count: known at once when its first field
        // exists already (the common update), else one seek before anything is written.
        let mut was_empty = None;
        let mut key = prefix.clone();
        let mut changed = Vec::new();
        let mut grew = 0i64;
        for (k, incoming) in fields {
            key.truncate(prefix.len());
            key.extend_from_slice(k.as_str().as_bytes());
            let current = self.fields.get(wtxn, &key)?.and_then(decode_field);
            if was_empty.is_none() {
                was_empty = Some(
                    current.is_none() && self.fields.prefix_iter(wtxn, &prefix)?.next().is_none(),
                );
            }
            // HAM against the stored field, as `merge_into` decides for a node.
            if ham::merge(incoming, current.as_ref()) == Decision::Accept {
                let before = current.as_ref().map_or(0, |f| stored_bytes(k, &f.value));
                grew += stored_bytes(k, &incoming.value) as i64 - before as i64;
                self.fields.put(wtxn, &key, &encode_field(incoming))?;
                changed.push((k.clone(), incoming.clone()));
            }
        }
        if was_empty == Some(true) && !changed.is_empty() {
            *new_nodes += 1;
        }
        let space_bytes = match fibergun::store::space_of(soul.as_str()) {
            Some(space) => Some(spaces.grow(self, wtxn, &space, grew)?),
            None => None,
        };
        Ok(StoreResult::Merged {
            changed,
            space_bytes,
        })
    }
}

/// The sizes of the spaces a batch writes into, read once and written once at its end (each
/// merge read and wrote its space's size, two more B-tree walks per put).
#[derive(Default)]
struct SpaceTally {
    /// By space key: its size now, and whether that differs from what is stored.
    sizes: BTreeMap<Vec<u8>, (u64, bool)>,
}

impl SpaceTally {
    /// Adds `grew` bytes to `space`; returns its size after.
    fn grow(
        &mut self,
        store: &LmdbStore,
        wtxn: &RwTxn<'_>,
        space: &str,
        grew: i64,
    ) -> heed::Result<u64> {
        let db_key = crate::meta::space_db_key(space);
        let (size, changed) = match self.sizes.get_mut(&db_key) {
            Some(entry) => entry,
            None => {
                let held = store
                    .spaces
                    .get(wtxn, &db_key)?
                    .and_then(|b| <[u8; 8]>::try_from(b).ok())
                    .map_or(0, u64::from_le_bytes);
                self.sizes.entry(db_key).or_insert((held, false))
            }
        };
        *size = size.saturating_add_signed(grew);
        *changed |= grew != 0;
        Ok(*size)
    }

    /// Writes the sizes that changed.
    fn write(&self, store: &LmdbStore, wtxn: &mut RwTxn<'_>) -> heed::Result<()> {
        for (db_key, (size, changed)) in &self.sizes {
            if *changed {
                store.spaces.put(wtxn, db_key, &size.to_le_bytes())?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::merge_op;
    use fibergun::graph::Value;
    use fibergun::lex::KeyQuery;
    use fibergun::store::{OpId, ReadQuery};

    fn merge(op: u64, soul: &str) -> StoreOp {
        merge_op(op, soul, "k", Value::String("x".repeat(2000).into()), 1.0)
    }

    /// The space size each merge reports, in op order.
    fn sizes(results: &[StoreResult]) -> Vec<Option<u64>> {
        results
            .iter()
            .map(|r| match r {
                StoreResult::Merged { space_bytes, .. } => *space_bytes,
                other => panic!("{other:?}"),
            })
            .collect()
    }

    #[test]
    fn a_batch_counts_each_space_as_its_merges_go_and_stores_the_total() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = LmdbStore::open(dir.path(), 1 << 26).unwrap();
        let owner = "~ab12.cd34";
        let text = |n: usize| Value::String("x".repeat(n).into());
        // Key "k" (1 byte) plus the value's bytes, per field; a losing write changes nothing.
        let results = store.apply(vec![
            merge_op(1, &format!("{owner}/a"), "k", text(10), 5.0),
            merge_op(2, "public/a", "k", text(4), 5.0),
            merge_op(3, &format!("{owner}/b"), "k", text(20), 5.0),
            merge_op(4, &format!("{owner}/a"), "k", text(3), 6.0),
            merge_op(5, &format!("{owner}/a"), "k", text(99), 1.0),
        ]);
        assert_eq!(
            sizes(&results),
            [Some(11), Some(5), Some(32), Some(25), Some(25)]
        );
        assert_eq!(store.space_bytes("ab12.cd34"), Ok(25));
        assert_eq!(store.space_bytes(""), Ok(5));
        // The next batch goes on from what was stored.
        let results = store.apply(vec![merge_op(6, &format!("{owner}/c"), "k", text(1), 5.0)]);
        assert_eq!(sizes(&results), [Some(27)]);
        assert_eq!(store.space_bytes("ab12.cd34"), Ok(27));
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
