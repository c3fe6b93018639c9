//! The read cache: whole nodes recently read from the store, kept coherent with every committed
//! merge, so hot GETs are answered without a storage round trip.
//!
//! Coherence rests on the store's ordering rule: results arrive in op order, so a read's result
//! reflects every merge before it, and each later merge result is applied on top.

use std::collections::{BTreeMap, VecDeque};

use crate::graph::{Field, Key, Soul};
use crate::HashMap;

/// Whole nodes, bounded by a total field count, evicted oldest-first.
#[derive(Debug)]
pub struct NodeCache {
    nodes: HashMap<Soul, BTreeMap<Key, Field>>,
    order: VecDeque<Soul>,
    fields: usize,
    max_fields: usize,
}

impl NodeCache {
    /// A cache holding at most `max_fields` fields.
    pub fn new(max_fields: usize, hasher: foldhash::fast::FixedState) -> NodeCache {
        NodeCache {
            nodes: HashMap::with_hasher(hasher.clone()),
            order: VecDeque::new(),
            fields: 0,
            max_fields,
        }
    }

    /// The whole node, if cached. A cached empty node means the store has nothing for it.
    pub fn node(&self, soul: &Soul) -> Option<&BTreeMap<Key, Field>> {
        self.nodes.get(soul)
    }

    /// Caches a whole node just read from the store.
    pub fn insert(&mut self, soul: Soul, fields: BTreeMap<Key, Field>) {
        if fields.len() > self.max_fields {
            return;
        }
        if let Some(old) = self.nodes.insert(soul.clone(), fields) {
            self.fields -= old.len();
        } else {
            self.order.push_back(soul.clone());
        }
        self.fields += self.nodes[&soul].len();
        self.evict();
    }

    /// Applies fields a merge changed, if the node is cached.
    pub fn apply(&mut self, soul: &Soul, changed: &[(Key, Field)]) {
        if let Some(node) = self.nodes.get_mut(soul) {
            for (k, f) in changed {
                if node.insert(k.clone(), f.clone()).is_none() {
                    self.fields += 1;
                }
            }
            self.evict();
        }
    }

    /// Forgets everything (after a storage failure, when the store's state is uncertain).
    pub fn clear(&mut self) {
        self.nodes.clear();
        self.order.clear();
        self.fields = 0;
    }

    fn evict(&mut self) {
        while self.fields > self.max_fields {
            let Some(soul) = self.order.pop_front() else {
                break;
            };
            if let Some(node) = self.nodes.remove(&soul) {
                self.fields -= node.len();
            }
        }
    }
}
