//! The outbox (the storage contract's rule 5): local writes not yet acknowledged by every
//! upstream, in the `outbox` database keyed by their number (8 big-endian bytes, so they sort in
//! order), with the last number given and each upstream's mark in `meta`. Appends and marks run
//! in the batch's write transaction, so an append commits with the merges of its write.

use std::ops::Bound;

use fibergun::store::{StoreOp, StoreResult};
use heed::{RoTxn, RwTxn};

use crate::LmdbStore;

/// `meta` key of the last number given.
const LAST_KEY: &[u8] = b"outbox-last";
/// `meta` key prefix of an upstream's mark (the upstream's address follows).
const MARK_PREFIX: &[u8] = b"outbox-mark:";

fn u64_of(bytes: Option<&[u8]>) -> u64 {
    bytes
        .and_then(|b| <[u8; 8]>::try_from(b).ok())
        .map_or(0, u64::from_le_bytes)
}

impl LmdbStore {
    /// Applies an outbox op in the batch's write transaction; `None` for ops that are not the
    /// outbox's.
    pub(crate) fn outbox_write(
        &self,
        wtxn: &mut RwTxn<'_>,
        op: &StoreOp,
    ) -> heed::Result<Option<StoreResult>> {
        Ok(Some(match op {
            StoreOp::OutboxAppend { entry, .. } => {
                let seq = u64_of(self.meta.get(wtxn, LAST_KEY)?) + 1;
                self.outbox
                    .put(wtxn, &seq.to_be_bytes(), entry.as_bytes())?;
                self.meta.put(wtxn, LAST_KEY, &seq.to_le_bytes())?;
                StoreResult::Appended { seq }
            }
            StoreOp::OutboxAcked {
                upstream,
                upto,
                trim,
                ..
            } => {
                self.mark(wtxn, upstream, *upto)?;
                self.trim(wtxn, *trim)?;
                StoreResult::Done
            }
            StoreOp::OutboxRead { .. } | StoreOp::OutboxStatus { .. } => {
                self.outbox_read(wtxn, op)?.expect("an outbox read")
            }
            StoreOp::Merge { .. } | StoreOp::Read { .. } => return Ok(None),
        }))
    }

    /// Answers an outbox read; `None` for other ops.
    pub(crate) fn outbox_read(
        &self,
        txn: &RoTxn<'_>,
        op: &StoreOp,
    ) -> heed::Result<Option<StoreResult>> {
        Ok(Some(match op {
            StoreOp::OutboxRead { after, budget, .. } => {
                let from = after.saturating_add(1).to_be_bytes();
                let mut left = *budget;
                let mut entries = Vec::new();
                let range = (Bound::Included(&from[..]), Bound::Unbounded);
                for item in self.outbox.range(txn, &range)? {
                    let (key, value) = item?;
                    let Ok(seq) = <[u8; 8]>::try_from(key).map(u64::from_be_bytes) else {
                        continue;
                    };
                    if !entries.is_empty() && value.len() as u64 > left {
                        break;
                    }
                    left = left.saturating_sub(value.len() as u64);
                    entries.push((seq, String::from_utf8_lossy(value).into_owned()));
                }
                StoreResult::Outbox { entries }
            }
            StoreOp::OutboxStatus { .. } => {
                let last = u64_of(self.meta.get(txn, LAST_KEY)?);
                let mut marks = Vec::new();
                for item in self.meta.prefix_iter(txn, MARK_PREFIX)? {
                    let (key, value) = item?;
                    let upstream = String::from_utf8_lossy(&key[MARK_PREFIX.len()..]);
                    marks.push((upstream.into_owned(), u64_of(Some(value))));
                }
                StoreResult::OutboxStatus { last, marks }
            }
            _ => return Ok(None),
        }))
    }

    fn mark(&self, wtxn: &mut RwTxn<'_>, upstream: &str, upto: u64) -> heed::Result<()> {
        let key = [MARK_PREFIX, upstream.as_bytes()].concat();
        self.meta.put(wtxn, &key, &upto.to_le_bytes())
    }

    /// Forgets the entries up to `upto`.
    fn trim(&self, wtxn: &mut RwTxn<'_>, upto: u64) -> heed::Result<()> {
        if upto == 0 {
            return Ok(());
        }
        let end = upto.saturating_add(1).to_be_bytes();
        let range = (Bound::Unbounded, Bound::Excluded(&end[..]));
        self.outbox.delete_range(wtxn, &range)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::LmdbStore;
    use fibergun::store::{MemStore, OpId, Store, StoreOp, StoreResult};

    fn ops() -> Vec<Vec<StoreOp>> {
        let append = |op, entry: &str| StoreOp::OutboxAppend {
            op: OpId(op),
            entry: entry.into(),
        };
        let read = |op, after, budget| StoreOp::OutboxRead {
            op: OpId(op),
            after,
            budget,
        };
        vec![
            vec![StoreOp::OutboxStatus { op: OpId(0) }],
            vec![append(1, "one"), append(2, "two"), append(3, "three")],
            vec![read(4, 0, 1), read(5, 1, 100), read(6, 3, 100)],
            vec![StoreOp::OutboxAcked {
                op: OpId(7),
                upstream: "ws://a/gun".into(),
                upto: 2,
                trim: 0,
            }],
            vec![StoreOp::OutboxAcked {
                op: OpId(8),
                upstream: "ws://b/gun".into(),
                upto: 1,
                trim: 1,
            }],
            vec![read(9, 0, 100), StoreOp::OutboxStatus { op: OpId(10) }],
            vec![append(11, "four")],
        ]
    }

    #[test]
    fn the_outbox_behaves_like_the_reference_store_and_survives_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let mut lmdb = LmdbStore::open(dir.path(), 1 << 30).unwrap();
        let mut mem = MemStore::new();
        for batch in ops() {
            assert_eq!(lmdb.apply(batch.clone()), mem.apply(batch));
        }
        // The numbers and marks are durable: a reopened store goes on from them.
        drop(lmdb);
        let mut lmdb = LmdbStore::open(dir.path(), 1 << 30).unwrap();
        let status = lmdb.apply(vec![StoreOp::OutboxStatus { op: OpId(0) }]);
        assert_eq!(
            status,
            vec![StoreResult::OutboxStatus {
                last: 4,
                marks: vec![("ws://a/gun".into(), 2), ("ws://b/gun".into(), 1)],
            }]
        );
        let read = lmdb.apply(vec![StoreOp::OutboxRead {
            op: OpId(1),
            after: 0,
            budget: 1 << 20,
        }]);
        assert_eq!(
            read,
            vec![StoreResult::Outbox {
                entries: vec![(2, "two".into()), (3, "three".into()), (4, "four".into())],
            }]
        );
    }

    #[test]
    fn a_full_store_refuses_appends_and_still_takes_marks() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = LmdbStore::open(dir.path(), 1 << 26).unwrap();
        store.set_quota(Some(64 << 10));
        let entry = "x".repeat(2000);
        let mut op = 0;
        let refused = loop {
            op += 1;
            assert!(op < 1000, "the quota never bit");
            let append = StoreOp::OutboxAppend {
                op: OpId(op),
                entry: entry.clone(),
            };
            match store.apply(vec![append]).pop().unwrap() {
                StoreResult::Appended { .. } => continue,
                StoreResult::Failed { reason } => break reason,
                other => panic!("{other:?}"),
            }
        };
        assert!(refused.contains("quota"), "{refused}");
        // Nothing old was dropped, the mark is taken, and reads go on.
        let results = store.apply(vec![
            StoreOp::OutboxAcked {
                op: OpId(op + 1),
                upstream: "ws://a/gun".into(),
                upto: 1,
                trim: 1,
            },
            StoreOp::OutboxRead {
                op: OpId(op + 2),
                after: 0,
                budget: 1,
            },
        ]);
        assert_eq!(results[0], StoreResult::Done);
        assert!(
            matches!(&results[1], StoreResult::Outbox { entries } if entries[0].0 == 2),
            "{:?}",
            results[1]
        );
    }
}
