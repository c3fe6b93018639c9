//! Which connections asked for which souls, so committed changes can be pushed to them.

use std::collections::BTreeSet;

use crate::graph::Soul;
use crate::peer::ConnId;
use crate::{HashMap, HashSet};

/// Souls to subscribed connections, and back. Subscribers are kept ordered so pushes go out in a
/// deterministic order.
#[derive(Debug)]
pub struct Subscriptions {
    by_soul: HashMap<Soul, BTreeSet<ConnId>>,
    by_conn: HashMap<ConnId, HashSet<Soul>>,
    max_per_conn: usize,
}

impl Subscriptions {
    /// An empty table; one connection may hold at most `max_per_conn` souls.
    pub fn new(max_per_conn: usize, hasher: foldhash::fast::FixedState) -> Subscriptions {
        Subscriptions {
            by_soul: HashMap::with_hasher(hasher.clone()),
            by_conn: HashMap::with_hasher(hasher.clone()),
            max_per_conn,
        }
    }

    /// Subscribes `conn` to `soul`. Returns false if the connection is at its limit.
    pub fn subscribe(&mut self, conn: ConnId, soul: &Soul) -> bool {
        let hasher = self.by_soul.hasher().clone();
        let souls = self
            .by_conn
            .entry(conn)
            .or_insert_with(|| HashSet::with_hasher(hasher.clone()));
        if souls.contains(soul) {
            return true;
        }
        if souls.len() >= self.max_per_conn {
            return false;
        }
        souls.insert(soul.clone());
        self.by_soul.entry(soul.clone()).or_default().insert(conn);
        true
    }

    /// The connections subscribed to `soul`, in order.
    pub fn subscribers(&self, soul: &Soul) -> impl Iterator<Item = ConnId> + '_ {
        self.by_soul.get(soul).into_iter().flatten().copied()
    }

    /// Drops every subscription of a closed connection.
    pub fn remove_conn(&mut self, conn: ConnId) {
        let Some(souls) = self.by_conn.remove(&conn) else {
            return;
        };
        for soul in souls {
            if let Some(conns) = self.by_soul.get_mut(&soul) {
                conns.remove(&conn);
                if conns.is_empty() {
                    self.by_soul.remove(&soul);
                }
            }
        }
    }

    /// How many souls have subscribers.
    pub fn souls(&self) -> usize {
        self.by_soul.len()
    }
}
