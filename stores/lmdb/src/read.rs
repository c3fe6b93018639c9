//! The read path: answering a [`ReadQuery`] (one node, or a range of souls) from a read
//! transaction, by a budgeted scan over the `fields` database that never reads further than the
//! answer needs. Both the write path and a store over its quota answer reads through here.

use fibergun::graph::{Field, Key, Node, Soul};
use fibergun::lex::KeyQuery;
use fibergun::lex::{Budget, Range};
use fibergun::store::{page_of_nodes, ReadQuery, StoreOp, StoreResult};
use heed::RoTxn;

use crate::codec::{decode_field, decode_key, encode_soul_bytes, soul_prefix, split_key};
use crate::LmdbStore;

impl LmdbStore {
    /// Over the quota: reads are answered, writes refused.
    pub(crate) fn reads_only(&self, ops: Vec<StoreOp>, quota: u64) -> Vec<StoreResult> {
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
                StoreOp::Read { query, .. } => match self.read(&rtxn, query) {
                    Ok(nodes) => StoreResult::Read { nodes },
                    Err(e) => StoreResult::Failed {
                        reason: format!("LMDB read: {e}"),
                    },
                },
                StoreOp::OutboxRead { .. } | StoreOp::OutboxStatus { .. } => {
                    match self.outbox_read(&rtxn, op) {
                        Ok(Some(result)) => result,
                        Ok(None) => unreachable!("an outbox read"),
                        Err(e) => StoreResult::Failed {
                            reason: format!("LMDB read: {e}"),
                        },
                    }
                }
                StoreOp::Merge { .. }
                | StoreOp::OutboxAppend { .. }
                | StoreOp::OutboxAcked { .. } => crate::merge::quota_used_up(quota),
            })
            .collect()
    }

    pub(crate) fn read(&self, txn: &RoTxn<'_>, query: &ReadQuery) -> heed::Result<Vec<Node>> {
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
