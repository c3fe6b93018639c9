//! The read cache: whole nodes recently read from the store, kept coherent with every committed
//! merge, so hot GETs are answered without a storage round trip.
//!
//! Coherence rests on the store's ordering rule: results arrive in op order, so a read's result
//! reflects every merge before it, and each later merge result is applied on top.
//!
//! The cache is bounded in bytes (an estimate of what each node holds); a node that is known to be
//! missing costs an entry too, so GETs for missing souls cannot grow it without bound.
//!
//! A store shared with other writers (relays on one database) also changes behind this peer's
//! back; its change feed reports those changes. A read issued before such a change may answer
//! from before it, so its answer is not cached (the read is still answered): the change marks
//! its soul stale for every op issued until then. A gap in the feed marks every soul so.

use std::collections::{BTreeMap, VecDeque};

use crate::graph::{Field, Key, Soul};
use crate::HashMap;

/// What one cached entry costs beyond its fields: the map slot, the soul, the queue entry.
const ENTRY_BYTES: usize = 96;

fn field_bytes(key: &Key, field: &Field) -> usize {
    48 + key.as_str().len() + field.value.budget_bytes() as usize
}

fn node_bytes(soul: &Soul, fields: &BTreeMap<Key, Field>) -> usize {
    ENTRY_BYTES + soul.as_str().len() + fields.iter().map(|(k, f)| field_bytes(k, f)).sum::<usize>()
}

#[derive(Debug)]
struct Entry {
    fields: BTreeMap<Key, Field>,
    /// The node as a GET's reply carries it whole (`"soul":{…}`), once written for one since it
    /// last changed: a hot node is then answered with one copy, not written field by field.
    written: Option<Box<str>>,
    /// What the entry costs, `written` included.
    bytes: usize,
}

/// Whole nodes, bounded in bytes, evicted oldest-first.
#[derive(Debug)]
pub struct NodeCache {
    nodes: HashMap<Soul, Entry>,
    order: VecDeque<Soul>,
    bytes: usize,
    max_bytes: usize,
    /// Souls changed by another writer → the first op issued after the change: reads issued
    /// before it are not cached. `stale_order` holds the same marks in the order they were set,
    /// to forget them once those reads are done.
    stale: HashMap<Soul, u64>,
    stale_order: VecDeque<(u64, Soul)>,
    /// Reads issued before this op are not cached at all (after a gap in the change feed).
    stale_all: u64,
}

impl NodeCache {
    /// A cache holding about `max_bytes`.
    pub fn new(max_bytes: usize, hasher: foldhash::fast::FixedState) -> NodeCache {
        NodeCache {
            nodes: HashMap::with_hasher(hasher.clone()),
            order: VecDeque::new(),
            bytes: 0,
            max_bytes,
            stale: HashMap::with_hasher(hasher),
            stale_order: VecDeque::new(),
            stale_all: 0,
        }
    }

    /// The whole node, if cached. A cached empty node means the store has nothing for it.
    pub fn node(&self, soul: &Soul) -> Option<&BTreeMap<Key, Field>> {
        self.nodes.get(soul).map(|e| &e.fields)
    }

    /// The node as last kept by [`NodeCache::keep_written`], if it has not changed since.
    pub fn written(&self, soul: &Soul) -> Option<&str> {
        self.nodes.get(soul)?.written.as_deref()
    }

    /// Keeps `text`, the cached node written whole for a reply, until the node next changes. It
    /// counts toward the cache's bytes; a node that would grow too big keeps none.
    pub fn keep_written(&mut self, soul: &Soul, text: Box<str>) {
        let Some(entry) = self.nodes.get_mut(soul) else {
            return;
        };
        let old = entry.written.as_ref().map_or(0, |t| t.len());
        let bytes = entry.bytes - old + text.len();
        if bytes > self.max_bytes / 8 {
            return;
        }
        self.bytes = self.bytes - entry.bytes + bytes;
        entry.bytes = bytes;
        entry.written = Some(text);
        self.evict();
    }

    /// Caches a whole node just read from the store by op `read` (unless another writer may have
    /// changed it since the read was issued). Nodes bigger than an eighth of the cache are not
    /// kept (they would push out too much).
    pub fn insert(&mut self, soul: Soul, fields: BTreeMap<Key, Field>, read: u64) {
        if read < self.stale_all || self.stale.get(&soul).is_some_and(|mark| read < *mark) {
            return;
        }
        let bytes = node_bytes(&soul, &fields);
        if bytes > self.max_bytes / 8 {
            self.remove(&soul);
            return;
        }
        let entry = Entry {
            fields,
            written: None,
            bytes,
        };
        match self.nodes.insert(soul.clone(), entry) {
            Some(old) => self.bytes -= old.bytes,
            None => self.order.push_back(soul),
        }
        self.bytes += bytes;
        self.evict();
    }

    /// Another writer changed `soul` (the first op issued after the change is `next_op`): the
    /// fields that win over the cached ones under HAM are applied, and are returned (all of them
    /// when the node is not cached: this peer cannot tell, so they all count as news).
    pub fn changed_elsewhere(
        &mut self,
        soul: &Soul,
        fields: Vec<(Key, Field)>,
        next_op: u64,
    ) -> Vec<(Key, Field)> {
        self.stale.insert(soul.clone(), next_op);
        self.stale_order.push_back((next_op, soul.clone()));
        let news: Vec<(Key, Field)> = match self.nodes.get(soul) {
            None => fields,
            Some(entry) => fields
                .into_iter()
                .filter(|(k, f)| {
                    crate::ham::merge(f, entry.fields.get(k)) == crate::ham::Decision::Accept
                })
                .collect(),
        };
        self.apply(soul, &news);
        news
    }

    /// The store's change feed had a gap: forgets everything, and caches no read issued before
    /// `next_op`.
    pub fn feed_gap(&mut self, next_op: u64) {
        self.clear();
        self.stale_all = next_op;
    }

    /// Op `done` finished (and every op before it): marks that only reads up to it could hit
    /// are forgotten.
    pub fn op_done(&mut self, done: u64) {
        while let Some((mark, _)) = self.stale_order.front() {
            if *mark > done + 1 {
                break;
            }
            let (mark, soul) = self.stale_order.pop_front().expect("front was just seen");
            if self.stale.get(&soul) == Some(&mark) {
                self.stale.remove(&soul);
            }
        }
    }

    /// Applies fields a merge changed, if the node is cached: each where it wins over the cached
    /// one under HAM. (With one writer a merge's changes always win; with a shared store a
    /// change from elsewhere, committed later, may have reached the cache before this merge's
    /// own result did.)
    pub fn apply(&mut self, soul: &Soul, changed: &[(Key, Field)]) {
        let Some(entry) = self.nodes.get_mut(soul) else {
            return;
        };
        for (k, f) in changed {
            if crate::ham::merge(f, entry.fields.get(k)) != crate::ham::Decision::Accept {
                continue;
            }
            if let Some(old) = entry.written.take() {
                entry.bytes -= old.len();
                self.bytes -= old.len();
            }
            let added = field_bytes(k, f);
            match entry.fields.insert(k.clone(), f.clone()) {
                Some(old) => {
                    let removed = field_bytes(k, &old);
                    entry.bytes = entry.bytes + added - removed;
                    self.bytes = self.bytes + added - removed;
                }
                None => {
                    entry.bytes += added;
                    self.bytes += added;
                }
            }
        }
        if entry.bytes > self.max_bytes / 8 {
            self.remove(soul);
        }
        self.evict();
    }

    /// Forgets one node (its stored state is uncertain).
    pub fn forget(&mut self, soul: &Soul) {
        self.remove(soul);
    }

    fn remove(&mut self, soul: &Soul) {
        if let Some(old) = self.nodes.remove(soul) {
            self.bytes -= old.bytes;
            // The queue entry goes stale and is skipped when it reaches the front.
        }
    }

    /// Forgets everything (after a storage failure, when the store's state is uncertain).
    pub fn clear(&mut self) {
        self.nodes.clear();
        self.order.clear();
        self.bytes = 0;
    }

    /// Bytes held, as estimated.
    #[cfg(test)]
    fn bytes(&self) -> usize {
        self.bytes
    }

    /// Nodes held.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.nodes.len()
    }

    fn evict(&mut self) {
        while self.bytes > self.max_bytes || self.order.len() > 2 * self.nodes.len() + 64 {
            let Some(soul) = self.order.pop_front() else {
                break;
            };
            // A soul removed and cached again may be queued twice; evicting it early is harmless.
            if let Some(entry) = self.nodes.remove(&soul) {
                self.bytes -= entry.bytes;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::{State, Value};

    #[test]
    fn missing_nodes_cost_room_and_the_cache_stays_bounded() {
        let mut c = NodeCache::new(10_000, foldhash::fast::FixedState::with_seed(0));
        for i in 0..10_000 {
            c.insert(
                Soul::new(&format!("missing{i}")).unwrap(),
                BTreeMap::new(),
                0,
            );
            assert!(c.bytes() <= 10_000);
        }
        assert!(c.len() < 100, "{} entries", c.len());
        let big: BTreeMap<Key, Field> = (0..100)
            .map(|i| {
                let f = Field {
                    value: Value::String("x".repeat(100).into()),
                    state: State::new(1.0).unwrap(),
                };
                (Key::new(&format!("k{i}")).unwrap(), f)
            })
            .collect();
        c.insert(Soul::new("big").unwrap(), big, 0);
        assert!(
            c.node(&Soul::new("big").unwrap()).is_none(),
            "too big to keep"
        );
    }

    fn field(value: &str, state: f64) -> Field {
        Field {
            value: Value::String(value.into()),
            state: State::new(state).unwrap(),
        }
    }

    fn node(fields: &[(&str, Field)]) -> BTreeMap<Key, Field> {
        fields
            .iter()
            .map(|(k, f)| (Key::new(k).unwrap(), f.clone()))
            .collect()
    }

    #[test]
    fn a_change_elsewhere_applies_only_what_wins_and_keeps_older_reads_out() {
        let mut c = NodeCache::new(100_000, foldhash::fast::FixedState::with_seed(0));
        let (a, b) = (Soul::new("a").unwrap(), Soul::new("b").unwrap());
        c.insert(a.clone(), node(&[("x", field("new", 5.0))]), 1);
        // An older field from elsewhere loses to the cached one; a newer one wins.
        let news = c.changed_elsewhere(
            &a,
            vec![
                (Key::new("x").unwrap(), field("old", 4.0)),
                (Key::new("y").unwrap(), field("y", 4.0)),
            ],
            10,
        );
        assert_eq!(news, vec![(Key::new("y").unwrap(), field("y", 4.0))]);
        assert_eq!(
            c.node(&a).unwrap()[&Key::new("x").unwrap()],
            field("new", 5.0)
        );
        // Not cached: everything is news, and reads issued before op 10 are not cached.
        let news = c.changed_elsewhere(&b, vec![(Key::new("x").unwrap(), field("1", 1.0))], 10);
        assert_eq!(news.len(), 1);
        c.insert(b.clone(), node(&[]), 9);
        assert!(c.node(&b).is_none(), "a read from before the change");
        c.insert(b.clone(), node(&[("x", field("1", 1.0))]), 10);
        assert!(c.node(&b).is_some(), "a read issued after it");
        // Once op 9 is done the mark is forgotten.
        c.op_done(9);
        assert!(c.stale.is_empty() && c.stale_order.is_empty());
    }

    #[test]
    fn after_a_feed_gap_nothing_read_before_is_cached() {
        let mut c = NodeCache::new(100_000, foldhash::fast::FixedState::with_seed(0));
        let a = Soul::new("a").unwrap();
        c.insert(a.clone(), node(&[("x", field("1", 1.0))]), 1);
        c.feed_gap(5);
        assert!(c.node(&a).is_none());
        c.insert(a.clone(), node(&[]), 4);
        assert!(c.node(&a).is_none());
        c.insert(a.clone(), node(&[]), 5);
        assert!(c.node(&a).is_some());
    }

    #[test]
    fn a_written_node_counts_toward_the_bytes_and_goes_when_the_node_changes() {
        let mut c = NodeCache::new(100_000, foldhash::fast::FixedState::with_seed(0));
        let soul = Soul::new("a").unwrap();
        c.insert(soul.clone(), node(&[("x", field("m", 5.0))]), 0);
        let before = c.bytes();
        c.keep_written(&soul, "\"a\":{}".into());
        assert_eq!(c.written(&soul), Some("\"a\":{}"));
        assert_eq!(c.bytes(), before + "\"a\":{}".len());
        // A losing change keeps it; a winning one drops it, and its bytes.
        c.apply(&soul, &[(Key::new("x").unwrap(), field("z", 4.0))]);
        assert_eq!(c.written(&soul), Some("\"a\":{}"));
        c.apply(&soul, &[(Key::new("x").unwrap(), field("n", 6.0))]);
        assert_eq!(c.written(&soul), None);
        assert_eq!(
            c.bytes(),
            before + field_bytes(&Key::new("x").unwrap(), &field("n", 6.0))
                - field_bytes(&Key::new("x").unwrap(), &field("m", 5.0))
        );
        // Too big to keep beside the node: not kept.
        c.keep_written(&soul, "x".repeat(20_000).into());
        assert_eq!(c.written(&soul), None);
        // Read again, the node starts without one.
        c.keep_written(&soul, "\"a\":{}".into());
        c.insert(soul.clone(), node(&[("x", field("n", 6.0))]), 1);
        assert_eq!(c.written(&soul), None);
    }
}
