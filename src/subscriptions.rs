//! Which connections asked for which souls, so committed changes can be pushed to them: by soul
//! (a GET of a node or key) or by soul range (a GET whose `#` is LEX, such as a relay asking for
//! every soul).

use std::collections::{BTreeMap, BTreeSet};

use crate::graph::Soul;
use crate::lex::Range;
use crate::peer::ConnId;
use crate::{HashMap, HashSet};

/// Souls to subscribed connections, and back. Subscribers come out ordered, so pushes go out in a
/// deterministic order.
#[derive(Debug)]
pub struct Subscriptions {
    by_soul: HashMap<Soul, BTreeSet<ConnId>>,
    by_conn: HashMap<ConnId, HashSet<Soul>>,
    ranges: BTreeMap<ConnId, Vec<Range>>,
    max_per_conn: usize,
}

impl Subscriptions {
    /// An empty table; one connection may hold at most `max_per_conn` souls and ranges.
    pub fn new(max_per_conn: usize, hasher: foldhash::fast::FixedState) -> Subscriptions {
        Subscriptions {
            by_soul: HashMap::with_hasher(hasher.clone()),
            by_conn: HashMap::with_hasher(hasher),
            ranges: BTreeMap::new(),
            max_per_conn,
        }
    }

    fn count(&self, conn: ConnId) -> usize {
        self.by_conn.get(&conn).map_or(0, |s| s.len()) + self.ranges.get(&conn).map_or(0, Vec::len)
    }

    /// Subscribes `conn` to `soul`. Returns false if the connection is at its limit.
    pub fn subscribe(&mut self, conn: ConnId, soul: &Soul) -> bool {
        if self.by_conn.get(&conn).is_some_and(|s| s.contains(soul)) {
            return true;
        }
        if self.count(conn) >= self.max_per_conn {
            return false;
        }
        let hasher = self.by_soul.hasher().clone();
        self.by_conn
            .entry(conn)
            .or_insert_with(|| HashSet::with_hasher(hasher))
            .insert(soul.clone());
        self.by_soul.entry(soul.clone()).or_default().insert(conn);
        true
    }

    /// Subscribes `conn` to every soul in `range`. Returns false if the connection is at its limit.
    pub fn subscribe_range(&mut self, conn: ConnId, range: &Range) -> bool {
        if self.ranges.get(&conn).is_some_and(|r| r.contains(range)) {
            return true;
        }
        if self.count(conn) >= self.max_per_conn {
            return false;
        }
        self.ranges.entry(conn).or_default().push(range.clone());
        true
    }

    /// The connections subscribed to `soul`, by soul or by range, in order.
    pub fn subscribers(&self, soul: &Soul) -> Vec<ConnId> {
        let mut out: BTreeSet<ConnId> = self.by_soul.get(soul).cloned().unwrap_or_default();
        for (conn, ranges) in &self.ranges {
            if ranges.iter().any(|r| r.contains(soul.as_str())) {
                out.insert(*conn);
            }
        }
        out.into_iter().collect()
    }

    /// Drops every subscription of a closed connection.
    pub fn remove_conn(&mut self, conn: ConnId) {
        self.ranges.remove(&conn);
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

    /// The souls with subscribers by soul, in order.
    pub fn subscribed_souls(&self) -> Vec<Soul> {
        let mut souls: Vec<Soul> = self.by_soul.keys().cloned().collect();
        souls.sort();
        souls
    }

    /// How many souls have subscribers by soul.
    pub fn souls(&self) -> usize {
        self.by_soul.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn souls_and_ranges_and_limits() {
        let mut s = Subscriptions::new(2, foldhash::fast::FixedState::with_seed(0));
        let soul = |x: &str| Soul::new(x).unwrap();
        assert!(s.subscribe(ConnId(2), &soul("a")));
        assert!(s.subscribe_range(ConnId(1), &Range::default()));
        assert!(s.subscribe(ConnId(2), &soul("b")));
        assert!(!s.subscribe(ConnId(2), &soul("c")), "over the limit");
        assert_eq!(s.subscribers(&soul("a")), vec![ConnId(1), ConnId(2)]);
        assert_eq!(s.subscribers(&soul("z")), vec![ConnId(1)]);
        s.remove_conn(ConnId(1));
        assert_eq!(s.subscribers(&soul("z")), vec![]);
    }
}
