//! The write path: [`Store::apply`] and [`LmdbStore::apply_gated`], which run a batch of ops in
//! one LMDB write transaction, merge each incoming field by HAM against the stored one, keep the
//! node count, and refuse writes once the store is over its quota.
//!
//! Every [`Store::apply`] call is one LMDB write transaction, committed with LMDB's default
//! synchronous flush, so its results are returned only once they are on disk.

use std::collections::BTreeMap;

use fibergun::graph::{Field, Key, Soul};
use fibergun::store::{merge_into, Store, StoreOp, StoreResult};
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
            for op in &ops {
                results.push(match op {
                    StoreOp::Merge { .. } | StoreOp::OutboxAppend { .. }
                        if over_quota.is_some() =>
                    {
                        quota_used_up(over_quota.unwrap_or_default())
                    }
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
                    outbox => self
                        .outbox_write(&mut wtxn, outbox)?
                        .expect("every other op is the outbox's"),
                });
            }
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
            let mut node: BTreeMap<Key, Field> =
                current.map(|f| (k.clone(), f)).into_iter().collect();
            let (mut one, by) = merge_into(
                &mut node,
                std::slice::from_ref(&(k.clone(), incoming.clone())),
            );
            if let Some((_, f)) = one.pop() {
                self.fields.put(wtxn, &key, &encode_field(&f))?;
                changed.push((k.clone(), f));
                grew += by;
            }
        }
        if was_empty == Some(true) && !changed.is_empty() {
            *new_nodes += 1;
        }
        let space_bytes = match fibergun::store::space_of(soul.as_str()) {
            Some(space) => {
                let db_key = crate::meta::space_db_key(&space);
                let held = self
                    .spaces
                    .get(wtxn, &db_key)?
                    .and_then(|b| <[u8; 8]>::try_from(b).ok())
                    .map_or(0, u64::from_le_bytes);
                let now = held.saturating_add_signed(grew);
                if grew != 0 {
                    self.spaces.put(wtxn, &db_key, &now.to_le_bytes())?;
                }
                Some(now)
            }
            None => None,
        };
        Ok(StoreResult::Merged {
            changed,
            space_bytes,
        })
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
