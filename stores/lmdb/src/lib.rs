//! fibergun's LMDB store: nodes kept field by field, each with its HAM state, so a restart serves
//! everything that was acknowledged.
//!
//! Every [`Store::apply`](fibergun::store::Store::apply) call is one LMDB write transaction, committed with LMDB's default
//! synchronous flush, so its results are returned only once they are on disk.
//!
//! The crate, one concept per module:
//! - `open`: opening a store (folder and format checks, the writer's lock, the environment) and
//!   [`OpenError`];
//! - `codec`: the on-disk encoding of souls, keys and fields, and the layout it makes;
//! - `read`: answering reads by budgeted scans;
//! - `merge`: the write path (`Store::apply`, [`LmdbStore::apply_gated`]) and the quota;
//! - `meta`: what the store keeps about itself (format, node count, log position and origin) and
//!   its [`StoreStats`];
//! - `outbox`: the log of local writes an upstream has not acknowledged yet, and their marks;
//! - `portable`: backups and restores, export and import.

#![deny(unsafe_code)]

mod codec;
mod merge;
mod meta;
mod open;
mod outbox;
mod portable;
mod read;

pub use codec::{decode_field, encode_field, soul_prefix};
pub use merge::Changes;
pub use meta::{StatsReader, StoreStats};
pub use open::{OpenError, DEFAULT_MAP_SIZE};
pub use portable::{import, import_batches, import_radata, read_node_line, write_node_line};

use heed::types::Bytes;
use heed::{Database, Env};

/// A GUN graph in LMDB.
pub struct LmdbStore {
    env: &'static Env,
    fields: Database<'static, Bytes, Bytes>,
    /// Counters kept beside the data: the number of nodes.
    meta: Database<'static, Bytes, Bytes>,
    /// Local writes waiting for their upstreams, by number.
    outbox: Database<'static, Bytes, Bytes>,
    /// Bytes per space (the storage contract's rule 6), by space name.
    spaces: Database<'static, Bytes, Bytes>,
    nodes: u64,
    /// Writes are refused once the map uses this many bytes.
    quota: Option<u64>,
    /// The writer's lock, held while the store is open (see [`LmdbStore::open`]).
    _lock: Option<std::fs::File>,
}

/// Ops and reads the crate's tests share.
#[cfg(test)]
pub(crate) mod test_support {
    use super::LmdbStore;
    use fibergun::graph::{Field, Key, Node, Soul, State, Value};
    use fibergun::lex::KeyQuery;
    use fibergun::store::{OpId, ReadQuery, Store, StoreOp, StoreResult};

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
    use fibergun::graph::{Field, Key, Soul, State, Value};
    use fibergun::lex::KeyQuery;
    use fibergun::lex::Range;
    use fibergun::store::{MemStore, OpId, ReadQuery, Store, StoreOp};

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
