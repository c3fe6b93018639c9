//! Remembers message ids seen recently, so a message that arrives twice (a client retry, an echo
//! through the mesh) is handled once. Bounded in entries and in time.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::peer::ConnId;
use crate::HashMap;

/// What is remembered about a message id.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Seen {
    /// When it was last seen.
    pub at: Instant,
    /// The connection it first came from.
    pub via: ConnId,
}

/// A bounded table of recent message ids.
#[derive(Debug)]
pub struct Dedup {
    seen: HashMap<Box<str>, Seen>,
    /// Ids in the order they were last seen; an id seen again is queued again, and stale queue
    /// entries are skipped when they reach the front.
    order: VecDeque<(Box<str>, Instant)>,
    ttl: Duration,
    max: usize,
}

impl Dedup {
    /// A table keeping up to `max` ids for `ttl` after they were last seen.
    pub fn new(max: usize, ttl: Duration, hasher: foldhash::fast::FixedState) -> Dedup {
        Dedup {
            seen: HashMap::with_hasher(hasher.clone()),
            order: VecDeque::new(),
            ttl,
            max: max.max(1),
        }
    }

    /// Records `id` as seen now from `via`. Returns the earlier sighting if it was seen within
    /// the time-to-live (the message is a duplicate), refreshing it.
    pub fn check_and_track(&mut self, id: &str, via: ConnId, now: Instant) -> Option<Seen> {
        self.expire(now);
        if let Some(seen) = self.seen.get_mut(id) {
            let earlier = *seen;
            seen.at = now;
            self.order.push_back((id.into(), now));
            self.trim();
            return Some(earlier);
        }
        self.seen.insert(id.into(), Seen { at: now, via });
        self.order.push_back((id.into(), now));
        self.trim();
        None
    }

    /// The connection `id` first came from, if it is remembered.
    pub fn via(&self, id: &str) -> Option<ConnId> {
        self.seen.get(id).map(|s| s.via)
    }

    /// Whether `id` is remembered (without refreshing it).
    pub fn contains(&self, id: &str) -> bool {
        self.seen.contains_key(id)
    }

    /// How many ids are remembered.
    pub fn len(&self) -> usize {
        self.seen.len()
    }

    /// Whether no id is remembered.
    pub fn is_empty(&self) -> bool {
        self.seen.is_empty()
    }

    /// Forgets ids not seen for the time-to-live.
    pub fn expire(&mut self, now: Instant) {
        while let Some((id, at)) = self.order.front() {
            if now.saturating_duration_since(*at) < self.ttl {
                break;
            }
            if self.seen.get(id).is_some_and(|s| s.at == *at) {
                self.seen.remove(id);
            }
            self.order.pop_front();
        }
    }

    /// Keeps the table within its bounds, forgetting the oldest ids first.
    fn trim(&mut self) {
        while self.seen.len() > self.max {
            let Some((id, at)) = self.order.pop_front() else {
                break;
            };
            if self.seen.get(&id).is_some_and(|s| s.at == at) {
                self.seen.remove(&id);
            }
        }
        // Ids seen again leave stale entries behind in the queue; when they pile up, rebuild the
        // queue from the table (oldest first, ties by id so the order is deterministic).
        if self.order.len() > 2 * self.max + 16 {
            let mut live: Vec<(Box<str>, Instant)> =
                self.seen.iter().map(|(id, s)| (id.clone(), s.at)).collect();
            live.sort_by(|a, b| a.1.cmp(&b.1).then_with(|| a.0.cmp(&b.0)));
            self.order = live.into();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(max: usize) -> Dedup {
        Dedup::new(
            max,
            Duration::from_secs(9),
            foldhash::fast::FixedState::with_seed(1),
        )
    }

    #[test]
    fn remembers_within_ttl_and_forgets_after() {
        let t0 = Instant::now();
        let mut d = table(10);
        assert!(d.check_and_track("a", ConnId(1), t0).is_none());
        assert_eq!(
            d.check_and_track("a", ConnId(2), t0 + Duration::from_secs(5))
                .unwrap()
                .via,
            ConnId(1)
        );
        // Seen again at 5 s, so it lives until 14 s.
        assert!(d
            .check_and_track("a", ConnId(1), t0 + Duration::from_secs(13))
            .is_some());
        assert!(d
            .check_and_track("a", ConnId(1), t0 + Duration::from_secs(23))
            .is_none());
    }

    #[test]
    fn forgets_the_oldest_when_full() {
        let t0 = Instant::now();
        let mut d = table(2);
        d.check_and_track("a", ConnId(1), t0);
        d.check_and_track("b", ConnId(1), t0);
        d.check_and_track("c", ConnId(1), t0);
        assert_eq!(d.len(), 2);
        assert!(!d.contains("a") && d.contains("b") && d.contains("c"));
    }
}
