//! The storage contract between the core and a runtime's store.
//!
//! The core never touches storage. It emits [`StoreOp`]s; the runtime applies them and hands each
//! [`StoreResult`] back with [`crate::Input::StoreDone`]. The rules a store must keep:
//!
//! 1. **Order.** Ops are applied in the order they were emitted, and results are returned in that
//!    order. (The core relies on this: an ack is sent when its op's result arrives, and by then
//!    every earlier op is durable too.)
//! 2. **Durability.** A result is returned only after the transaction holding the op has committed
//!    durably (fsync'd). A runtime may group many ops into one transaction.
//! 3. **Merge, not overwrite.** [`StoreOp::Merge`] applies HAM ([`crate::ham::merge`]) field by field
//!    against what is stored, and reports the fields that changed. So a merge is exact even when
//!    the core's cache has forgotten the node.
//! 4. **Failure is whole.** If a transaction fails, every op in it fails and nothing of it is
//!    stored.
//! 5. **The outbox** (kept only by a peer with upstreams): a log of local writes not yet
//!    acknowledged by every upstream, numbered by the store from 1 and never renumbered (the
//!    last number survives trimming), with each upstream's acknowledged mark. An append is in
//!    the same transaction as the merges of its write, so a write is acknowledged locally only
//!    when it is both stored and queued for its upstreams.
//! 6. **Space usage.** The store counts the bytes each space holds ([`space_of`]: a user's
//!    `~PUB…` space, or the shared space of everything else; [`stored_bytes`] per field), in
//!    the transactions that change them, and reports a merge's space's total after it
//!    ([`StoreResult::Merged::space_bytes`]). The core refuses writes into a space past its
//!    quota from these figures.
//!
//! [`MemStore`] is the reference implementation, used by tests and the simulator; runtimes' stores
//! must behave the same.

use std::collections::BTreeMap;

use crate::graph::{Field, Key, Node, Soul};
use crate::ham::{self, Decision};
use crate::lex::{Budget, KeyQuery, Range};

/// Identifies one storage operation. Ids increase in emission order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct OpId(pub u64);

/// Work for the store.
#[derive(Clone, Debug, PartialEq)]
pub enum StoreOp {
    /// HAM-merge these fields into the node; report which changed.
    Merge {
        /// The op's id.
        op: OpId,
        /// The node.
        soul: Soul,
        /// The incoming fields, in key order.
        fields: Vec<(Key, Field)>,
    },
    /// Read.
    Read {
        /// The op's id.
        op: OpId,
        /// What to read.
        query: ReadQuery,
    },
    /// Append a local write (the JSON text of its graph) to the outbox, numbered one more than
    /// the last entry ever appended; answered with [`StoreResult::Appended`]. A store over its
    /// quota refuses it, as it refuses merges.
    OutboxAppend {
        /// The op's id.
        op: OpId,
        /// The entry.
        entry: String,
    },
    /// Read the outbox entries numbered after `after`, in order, as many as fit in `budget`
    /// bytes (and at least one); answered with [`StoreResult::Outbox`].
    OutboxRead {
        /// The op's id.
        op: OpId,
        /// The last number not wanted.
        after: u64,
        /// Bytes of entries to read at most (one entry is read whatever its size).
        budget: u64,
    },
    /// Record that `upstream` acknowledged every entry up to `upto`, and forget every entry up
    /// to `trim` (all upstreams have them). Allowed over the quota: it frees space.
    OutboxAcked {
        /// The op's id.
        op: OpId,
        /// The upstream, as its address.
        upstream: String,
        /// Its new mark.
        upto: u64,
        /// Entries up to this number are forgotten (0: none).
        trim: u64,
    },
    /// Where the outbox stands; answered with [`StoreResult::OutboxStatus`].
    OutboxStatus {
        /// The op's id.
        op: OpId,
    },
}

impl StoreOp {
    /// The op's id.
    pub fn id(&self) -> OpId {
        match self {
            StoreOp::Merge { op, .. }
            | StoreOp::Read { op, .. }
            | StoreOp::OutboxAppend { op, .. }
            | StoreOp::OutboxRead { op, .. }
            | StoreOp::OutboxAcked { op, .. }
            | StoreOp::OutboxStatus { op } => *op,
        }
    }

    /// Whether it changes what is stored (a read-only batch needs no commit).
    pub fn writes(&self) -> bool {
        matches!(
            self,
            StoreOp::Merge { .. } | StoreOp::OutboxAppend { .. } | StoreOp::OutboxAcked { .. }
        )
    }
}

/// What a read wants.
#[derive(Clone, Debug, PartialEq)]
pub enum ReadQuery {
    /// Fields of one node.
    Node {
        /// The node.
        soul: Soul,
        /// Which keys.
        keys: KeyQuery,
        /// Descending key order for ranges.
        reverse: bool,
        /// Byte budget for ranges ([`Budget`]).
        budget: u64,
    },
    /// Fields of the nodes whose souls are in a range, in (soul, key) order, as far as the byte
    /// budget allows: a page of a possibly large answer.
    Souls {
        /// The souls.
        range: Range,
        /// Descending soul order (keys stay ascending within a node).
        reverse: bool,
        /// Byte budget over all fields returned.
        budget: u64,
        /// Start strictly after this field (forward reads only): where the previous page ended.
        after: Option<(Soul, Key)>,
    },
}

/// The outcome of one op.
#[derive(Clone, Debug, PartialEq)]
pub enum StoreResult {
    /// A merge committed; these fields changed (in key order).
    Merged {
        /// The fields now stored that differ from before.
        changed: Vec<(Key, Field)>,
        /// The bytes the node's space holds after the merge (rule 6; `None` for a soul no space
        /// counts, or a store that does not count).
        space_bytes: Option<u64>,
    },
    /// A read's answer: nodes with at least one field (none when nothing matched).
    Read {
        /// The nodes found.
        nodes: Vec<Node>,
    },
    /// The op failed and changed nothing.
    Failed {
        /// Why, for logs and error replies.
        reason: String,
    },
    /// An outbox entry was appended with this number.
    Appended {
        /// Its number.
        seq: u64,
    },
    /// Outbox entries, in order (none when there are none after the asked number).
    Outbox {
        /// Number and text of each.
        entries: Vec<(u64, String)>,
    },
    /// Where the outbox stands.
    OutboxStatus {
        /// The last number ever given (0: none yet).
        last: u64,
        /// Each upstream's acknowledged mark.
        marks: Vec<(String, u64)>,
    },
    /// Done; there is nothing to report ([`StoreOp::OutboxAcked`]).
    Done,
}

/// A store that applies a batch of ops in one transaction.
pub trait Store {
    /// Applies `ops` in order in one transaction, commits it durably, and returns one result per
    /// op, in order. If the transaction cannot commit, every result is [`StoreResult::Failed`].
    fn apply(&mut self, ops: Vec<StoreOp>) -> Vec<StoreResult>;

    /// A store shared with other writers (relays on one database) reports what they commit:
    /// this starts its change feed, which hands `sink` (from a thread of its own) every change
    /// another writer committed, and [`FeedEvent::Gap`] when it may have missed some. The
    /// runtime passes them to the core ([`crate::Input::StoreChanged`],
    /// [`crate::Input::StoreFeedGap`]). Called once, before the first batch. A store with one
    /// writer has no feed: the default does nothing.
    fn start_feed(&mut self, sink: FeedSink) {
        drop(sink);
    }
}

/// What a shared store's change feed reports.
#[derive(Clone, Debug, PartialEq)]
pub enum FeedEvent {
    /// Another writer committed to `soul`: these are its fields as stored now.
    Changed {
        /// The node.
        soul: Soul,
        /// The fields (those the commit touched), as stored now.
        fields: Vec<(Key, Field)>,
    },
    /// The feed was interrupted and is back: changes may have been missed.
    Gap,
}

/// Where a change feed sends what it reports.
pub type FeedSink = Box<dyn Fn(FeedEvent) + Send>;

/// Picks the fields of one node that a read wants, from fields in ascending key order.
pub fn select_fields<'a>(
    fields: impl DoubleEndedIterator<Item = (&'a Key, &'a Field)>,
    keys: &KeyQuery,
    reverse: bool,
    budget: u64,
) -> BTreeMap<Key, Field> {
    selected_fields(fields, keys, reverse, budget)
        .into_iter()
        .map(|(k, f)| (k.clone(), f.clone()))
        .collect()
}

/// [`select_fields`] without copying: the chosen fields, borrowed, in the order they were taken
/// (descending when `reverse`).
pub fn selected_fields<'a>(
    fields: impl DoubleEndedIterator<Item = (&'a Key, &'a Field)>,
    keys: &KeyQuery,
    reverse: bool,
    budget: u64,
) -> Vec<(&'a Key, &'a Field)> {
    let all = Range::default();
    match keys {
        KeyQuery::One(key) => fields.filter(|(k, _)| *k == key).collect(),
        KeyQuery::All | KeyQuery::Range(_) => {
            let range = match keys {
                KeyQuery::Range(r) => r,
                _ => &all,
            };
            let mut budget = Budget::new(budget);
            let in_range = |(k, _): &(&Key, &Field)| range.contains(k.as_str());
            let mut take = |iter: &mut dyn Iterator<Item = (&'a Key, &'a Field)>| {
                iter.filter(in_range)
                    .take_while(|(_, f)| budget.admit(&f.value))
                    .collect::<Vec<_>>()
            };
            if reverse {
                take(&mut fields.rev())
            } else {
                take(&mut { fields })
            }
        }
    }
}

/// The in-memory reference store. Its transactions always commit.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct MemStore {
    /// Everything stored.
    pub nodes: BTreeMap<Soul, BTreeMap<Key, Field>>,
    /// The outbox.
    pub outbox: MemOutbox,
    /// Bytes per space (rule 6).
    pub spaces: BTreeMap<String, u64>,
}

/// The outbox as the reference store keeps it (see the module's rule 5).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct MemOutbox {
    /// Entries not yet forgotten, by number.
    pub entries: BTreeMap<u64, String>,
    /// The last number given (0: none yet).
    pub last: u64,
    /// Each upstream's acknowledged mark.
    pub marks: BTreeMap<String, u64>,
}

impl MemOutbox {
    /// Applies an outbox op; `None` for ops that are not the outbox's.
    pub fn apply(&mut self, op: &StoreOp) -> Option<StoreResult> {
        Some(match op {
            StoreOp::OutboxAppend { entry, .. } => {
                self.last += 1;
                self.entries.insert(self.last, entry.clone());
                StoreResult::Appended { seq: self.last }
            }
            StoreOp::OutboxRead { after, budget, .. } => {
                let mut left = *budget;
                let mut entries = Vec::new();
                for (seq, entry) in self.entries.range(after.saturating_add(1)..) {
                    if !entries.is_empty() && entry.len() as u64 > left {
                        break;
                    }
                    left = left.saturating_sub(entry.len() as u64);
                    entries.push((*seq, entry.clone()));
                }
                StoreResult::Outbox { entries }
            }
            StoreOp::OutboxAcked {
                upstream,
                upto,
                trim,
                ..
            } => {
                self.marks.insert(upstream.clone(), *upto);
                self.entries = self.entries.split_off(&trim.saturating_add(1));
                StoreResult::Done
            }
            StoreOp::OutboxStatus { .. } => StoreResult::OutboxStatus {
                last: self.last,
                marks: self.marks.iter().map(|(u, m)| (u.clone(), *m)).collect(),
            },
            StoreOp::Merge { .. } | StoreOp::Read { .. } => return None,
        })
    }
}

impl MemStore {
    /// An empty store.
    pub fn new() -> MemStore {
        MemStore::default()
    }

    /// Applies one op.
    pub fn apply_one(&mut self, op: &StoreOp) -> StoreResult {
        match op {
            StoreOp::Merge { soul, fields, .. } => {
                let node = self.nodes.entry(soul.clone()).or_default();
                let (changed, grew) = merge_into(node, fields);
                if node.is_empty() {
                    self.nodes.remove(soul);
                }
                let space_bytes = space_of(soul.as_str()).map(|space| {
                    let bytes = self.spaces.entry(space).or_default();
                    *bytes = bytes.saturating_add_signed(grew);
                    *bytes
                });
                StoreResult::Merged {
                    changed,
                    space_bytes,
                }
            }
            StoreOp::Read { query, .. } => StoreResult::Read {
                nodes: self.read(query),
            },
            other => self
                .outbox
                .apply(other)
                .expect("every other op is the outbox's"),
        }
    }

    fn read(&self, query: &ReadQuery) -> Vec<Node> {
        match query {
            ReadQuery::Node {
                soul,
                keys,
                reverse,
                budget,
            } => {
                let Some(stored) = self.nodes.get(soul) else {
                    return Vec::new();
                };
                let fields = select_fields(stored.iter(), keys, *reverse, *budget);
                if fields.is_empty() {
                    return Vec::new();
                }
                vec![Node {
                    soul: soul.clone(),
                    fields,
                }]
            }
            ReadQuery::Souls {
                range,
                reverse,
                budget,
                after,
            } => {
                let matching = self
                    .nodes
                    .iter()
                    .filter(|(s, _)| range.contains(s.as_str()));
                let nodes: Vec<_> = if *reverse {
                    matching.rev().collect()
                } else {
                    matching.collect()
                };
                // Reverse order is descending (soul, key); forward pages start after the cursor.
                let fields: Vec<(&Soul, &Key, &Field)> = if *reverse {
                    nodes
                        .into_iter()
                        .flat_map(|(soul, fields)| {
                            fields.iter().rev().map(move |(k, f)| (soul, k, f))
                        })
                        .collect()
                } else {
                    nodes
                        .into_iter()
                        .flat_map(|(soul, fields)| fields.iter().map(move |(k, f)| (soul, k, f)))
                        .filter(|(soul, key, _)| {
                            after.as_ref().is_none_or(|(s, k)| (*soul, *key) > (s, k))
                        })
                        .collect()
                };
                page_of_nodes(fields.into_iter(), *budget)
            }
        }
    }
}

/// Groups fields, given in (soul, key) order, into nodes, up to a byte budget.
pub fn page_of_nodes<'a>(
    fields: impl Iterator<Item = (&'a Soul, &'a Key, &'a Field)>,
    budget: u64,
) -> Vec<Node> {
    let mut budget = Budget::new(budget);
    let mut out: Vec<Node> = Vec::new();
    for (soul, key, field) in fields {
        if !budget.admit(&field.value) {
            break;
        }
        match out.last_mut() {
            Some(node) if node.soul == *soul => {}
            _ => out.push(Node::new(soul.clone())),
        }
        out.last_mut()
            .expect("a node was just pushed")
            .fields
            .insert(key.clone(), field.clone());
    }
    out
}

/// HAM-merges `incoming` into a stored node; returns the fields that changed, and by how many
/// bytes ([`stored_bytes`]) the node grew (or shrank).
pub fn merge_into(
    node: &mut BTreeMap<Key, Field>,
    incoming: &[(Key, Field)],
) -> (Vec<(Key, Field)>, i64) {
    let mut changed = Vec::new();
    let mut grew = 0i64;
    for (key, field) in incoming {
        if ham::merge(field, node.get(key)) == Decision::Accept {
            let before = node.get(key).map_or(0, |old| stored_bytes(key, &old.value));
            grew += stored_bytes(key, &field.value) as i64 - before as i64;
            node.insert(key.clone(), field.clone());
            changed.push((key.clone(), field.clone()));
        }
    }
    (changed, grew)
}

/// The space a soul's bytes count against (rule 6): its owner's public key for a user space
/// (`~PUB…`, as SEA names owners), `""` for the shared space of everything else, and `None` for
/// the operator's reserved souls ([`crate::moderation`]), which no space counts.
pub fn space_of(soul: &str) -> Option<String> {
    if crate::moderation::is_reserved(soul) {
        return None;
    }
    Some(crate::sea::owner_of(soul).unwrap_or_default())
}

/// What a field counts for in its space: its key's bytes and its value's (a string's or a
/// link's text; 8 for any other value).
pub fn stored_bytes(key: &Key, value: &crate::Value) -> u64 {
    let value = match value {
        crate::Value::String(s) => s.len(),
        crate::Value::Link(soul) => soul.as_str().len(),
        _ => 8,
    };
    (key.as_str().len() + value) as u64
}

impl Store for MemStore {
    fn apply(&mut self, ops: Vec<StoreOp>) -> Vec<StoreResult> {
        ops.iter().map(|op| self.apply_one(op)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::{State, Value};

    fn field(v: &str, s: f64) -> Field {
        Field {
            value: Value::String(v.into()),
            state: State::new(s).unwrap(),
        }
    }
    fn key(k: &str) -> Key {
        Key::new(k).unwrap()
    }
    fn soul(s: &str) -> Soul {
        Soul::new(s).unwrap()
    }

    #[test]
    fn merge_reports_only_what_changed() {
        let mut store = MemStore::new();
        let merge = |store: &mut MemStore, fields: Vec<(Key, Field)>| match store.apply_one(
            &StoreOp::Merge {
                op: OpId(0),
                soul: soul("a"),
                fields,
            },
        ) {
            StoreResult::Merged { changed, .. } => changed.len(),
            other => panic!("{other:?}"),
        };
        assert_eq!(
            merge(
                &mut store,
                vec![(key("x"), field("1", 5.0)), (key("y"), field("1", 5.0))]
            ),
            2
        );
        assert_eq!(
            merge(
                &mut store,
                vec![(key("x"), field("0", 4.0)), (key("y"), field("2", 5.0))]
            ),
            1
        );
        assert_eq!(store.nodes[&soul("a")][&key("y")], field("2", 5.0));
        assert_eq!(store.nodes[&soul("a")][&key("x")], field("1", 5.0));
    }

    #[test]
    fn range_reads_honour_order_and_budget() {
        let mut store = MemStore::new();
        let fields = ["a-z", "apple", "apricot", "banana"]
            .iter()
            .map(|k| (key(k), field("12345", 1.0)))
            .collect();
        store.apply_one(&StoreOp::Merge {
            op: OpId(0),
            soul: soul("l"),
            fields,
        });
        let read = |keys: KeyQuery, reverse: bool, budget: u64| {
            let nodes = store.read(&ReadQuery::Node {
                soul: soul("l"),
                keys,
                reverse,
                budget,
            });
            nodes
                .first()
                .map(|n| n.fields.keys().map(|k| k.to_string()).collect::<Vec<_>>())
                .unwrap_or_default()
        };
        let prefix = |p: &str| {
            KeyQuery::Range(Range {
                prefix: Some(p.into()),
                ..Range::default()
            })
        };
        assert_eq!(read(prefix("ap"), false, 1 << 20), ["apple", "apricot"]);
        assert_eq!(read(prefix("a"), false, 6), ["a-z", "apple"]);
        assert_eq!(read(prefix("a"), true, 1), ["apricot"]);
        assert_eq!(read(KeyQuery::One(key("banana")), false, 0), ["banana"]);
        assert!(read(KeyQuery::One(key("nope")), false, 0).is_empty());
        let souls = store.read(&ReadQuery::Souls {
            range: Range {
                prefix: Some("l".into()),
                ..Range::default()
            },
            reverse: false,
            budget: 1 << 20,
            after: None,
        });
        assert_eq!(souls.len(), 1);
        assert_eq!(souls[0].fields.len(), 4);
        // Pages continue where the previous one ended, inside a node too.
        let page = |after: Option<(Soul, Key)>| {
            store.read(&ReadQuery::Souls {
                range: Range::default(),
                reverse: false,
                budget: 6,
                after,
            })
        };
        let first = page(None);
        assert_eq!(
            first[0]
                .fields
                .keys()
                .map(|k| k.to_string())
                .collect::<Vec<_>>(),
            ["a-z", "apple"]
        );
        let second = page(Some((soul("l"), key("apple"))));
        assert_eq!(
            second[0]
                .fields
                .keys()
                .map(|k| k.to_string())
                .collect::<Vec<_>>(),
            ["apricot", "banana"]
        );
        assert!(page(Some((soul("l"), key("banana")))).is_empty());
    }
}
