//! The read cache: whole nodes recently read from the store, kept coherent with every committed
//! merge, so hot GETs are answered without a storage round trip.
//!
//! Coherence rests on the store's ordering rule: results arrive in op order, so a read's result
//! reflects every merge before it, and each later merge result is applied on top.
//!
//! The cache is bounded in bytes (an estimate of what each node holds); a node that is known to be
//! missing costs an entry too, so GETs for missing souls cannot grow it without bound.

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
    bytes: usize,
}

/// Whole nodes, bounded in bytes, evicted oldest-first.
#[derive(Debug)]
pub struct NodeCache {
    nodes: HashMap<Soul, Entry>,
    order: VecDeque<Soul>,
    bytes: usize,
    max_bytes: usize,
}

impl NodeCache {
    /// A cache holding about `max_bytes`.
    pub fn new(max_bytes: usize, hasher: foldhash::fast::FixedState) -> NodeCache {
        NodeCache {
            nodes: HashMap::with_hasher(hasher),
            order: VecDeque::new(),
            bytes: 0,
            max_bytes,
        }
    }

    /// The whole node, if cached. A cached empty node means the store has nothing for it.
    pub fn node(&self, soul: &Soul) -> Option<&BTreeMap<Key, Field>> {
        self.nodes.get(soul).map(|e| &e.fields)
    }

    /// Caches a whole node just read from the store. Nodes bigger than an eighth of the cache are
    /// not kept (they would push out too much).
    pub fn insert(&mut self, soul: Soul, fields: BTreeMap<Key, Field>) {
        let bytes = node_bytes(&soul, &fields);
        if bytes > self.max_bytes / 8 {
            self.remove(&soul);
            return;
        }
        match self.nodes.insert(soul.clone(), Entry { fields, bytes }) {
            Some(old) => self.bytes -= old.bytes,
            None => self.order.push_back(soul),
        }
        self.bytes += bytes;
        self.evict();
    }

    /// Applies fields a merge changed, if the node is cached.
    pub fn apply(&mut self, soul: &Soul, changed: &[(Key, Field)]) {
        let Some(entry) = self.nodes.get_mut(soul) else {
            return;
        };
        for (k, f) in changed {
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
            c.insert(Soul::new(&format!("missing{i}")).unwrap(), BTreeMap::new());
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
        c.insert(Soul::new("big").unwrap(), big);
        assert!(
            c.node(&Soul::new("big").unwrap()).is_none(),
            "too big to keep"
        );
    }
}
