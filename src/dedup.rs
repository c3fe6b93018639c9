//! Remembers message ids seen recently, so a message that arrives twice (a client retry, an echo
//! through the mesh) is handled once. Bounded in entries and in time.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use std::hash::BuildHasher;

use hashbrown::HashTable;

use crate::peer::ConnId;

/// What is remembered about a message id.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Seen {
    /// When it was last seen.
    pub at: Instant,
    /// The connection it first came from.
    pub via: ConnId,
}

/// One remembered id. Its hash is kept so queue entries can find it without the id itself.
#[derive(Debug)]
struct Entry {
    id: Id,
    hash: u64,
    seen: Seen,
}

/// A message id as kept: in the entry itself when short, as GUN's are (9 to 12 characters), so
/// remembering one allocates nothing and comparing one reads no other memory (the table is big
/// and touched at random: every allocation and pointer followed was a cache miss per message).
#[derive(Debug)]
enum Id {
    Inline { len: u8, bytes: [u8; Id::INLINE] },
    Heap(Box<str>),
}

impl Id {
    const INLINE: usize = 22;

    fn new(id: &str) -> Id {
        if id.len() <= Id::INLINE {
            let mut bytes = [0; Id::INLINE];
            bytes[..id.len()].copy_from_slice(id.as_bytes());
            Id::Inline {
                len: id.len() as u8,
                bytes,
            }
        } else {
            Id::Heap(id.into())
        }
    }

    fn as_bytes(&self) -> &[u8] {
        match self {
            Id::Inline { len, bytes } => &bytes[..usize::from(*len)],
            Id::Heap(id) => id.as_bytes(),
        }
    }
}

/// A bounded table of recent message ids.
#[derive(Debug)]
pub struct Dedup {
    seen: HashTable<Entry>,
    /// (hash, time) of ids in the order they were last seen; an id seen again is queued again,
    /// and stale queue entries are skipped when they reach the front. Holding hashes rather than
    /// ids keeps one allocation per id: this table is on every message's path.
    order: VecDeque<(u64, Instant)>,
    hasher: foldhash::fast::FixedState,
    ttl: Duration,
    max: usize,
}

impl Dedup {
    /// A table keeping up to `max` ids for `ttl` after they were last seen.
    pub fn new(max: usize, ttl: Duration, hasher: foldhash::fast::FixedState) -> Dedup {
        Dedup {
            seen: HashTable::new(),
            order: VecDeque::new(),
            hasher,
            ttl,
            max: max.max(1),
        }
    }

    fn find(&self, id: &str) -> Option<&Entry> {
        let hash = self.hasher.hash_one(id);
        self.seen
            .find(hash, |e| e.hash == hash && e.id.as_bytes() == id.as_bytes())
    }

    /// Records `id` as seen now from `via`. Returns the earlier sighting if it was seen within
    /// the time-to-live (the message is a duplicate), refreshing it.
    pub fn check_and_track(&mut self, id: &str, via: ConnId, now: Instant) -> Option<Seen> {
        self.expire(now);
        let hash = self.hasher.hash_one(id);
        let same = |e: &Entry| e.hash == hash && e.id.as_bytes() == id.as_bytes();
        let earlier = match self.seen.find_mut(hash, same) {
            Some(entry) => {
                let earlier = entry.seen;
                entry.seen.at = now;
                Some(earlier)
            }
            None => {
                let entry = Entry {
                    id: Id::new(id),
                    hash,
                    seen: Seen { at: now, via },
                };
                self.seen.insert_unique(hash, entry, |e| e.hash);
                None
            }
        };
        self.order.push_back((hash, now));
        self.trim();
        earlier
    }

    /// The connection `id` first came from, if it is remembered.
    pub fn via(&self, id: &str) -> Option<ConnId> {
        self.find(id).map(|e| e.seen.via)
    }

    /// Whether `id` is remembered (without refreshing it).
    #[cfg(test)]
    fn contains(&self, id: &str) -> bool {
        self.find(id).is_some()
    }

    /// How many ids are remembered.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.seen.len()
    }

    /// Forgets the id a queue entry stands for, unless it was seen again since.
    fn forget(&mut self, hash: u64, at: Instant) {
        if let Ok(entry) = self
            .seen
            .find_entry(hash, |e| e.hash == hash && e.seen.at == at)
        {
            entry.remove();
        }
    }

    /// Forgets ids not seen for the time-to-live.
    pub fn expire(&mut self, now: Instant) {
        while let Some(&(hash, at)) = self.order.front() {
            if now.saturating_duration_since(at) < self.ttl {
                break;
            }
            self.order.pop_front();
            self.forget(hash, at);
        }
    }

    /// Keeps the table within its bounds, forgetting the oldest ids first.
    fn trim(&mut self) {
        while self.seen.len() > self.max {
            let Some((hash, at)) = self.order.pop_front() else {
                break;
            };
            self.forget(hash, at);
        }
        // Ids seen again leave stale entries behind in the queue; when they pile up, rebuild the
        // queue from the table (oldest first, ties by id so the order is deterministic).
        if self.order.len() > 2 * self.max + 16 {
            let mut live: Vec<(Instant, &[u8], u64)> = self
                .seen
                .iter()
                .map(|e| (e.seen.at, e.id.as_bytes(), e.hash))
                .collect();
            live.sort_unstable();
            self.order = live.into_iter().map(|(at, _, hash)| (hash, at)).collect();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

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
    fn long_and_short_ids_are_told_apart() {
        let t0 = Instant::now();
        let mut d = table(10);
        let long = "x".repeat(40);
        for id in ["", "a", &"y".repeat(22), &"y".repeat(23), &long] {
            assert!(d.check_and_track(id, ConnId(1), t0).is_none(), "{id}");
        }
        for id in ["", "a", &"y".repeat(22), &"y".repeat(23), &long] {
            assert!(d.check_and_track(id, ConnId(2), t0).is_some(), "{id}");
        }
        assert!(!d.contains(&"x".repeat(39)) && !d.contains(&"y".repeat(21)));
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

    fn config() -> proptest::prelude::ProptestConfig {
        proptest::prelude::ProptestConfig {
            cases: 512,
            failure_persistence: Some(Box::new(
                proptest::test_runner::FileFailurePersistence::Direct(
                    "proptest-regressions/dedup.txt",
                ),
            )),
            ..proptest::prelude::ProptestConfig::default()
        }
    }

    proptest::proptest! {
        #![proptest_config(config())]

        #[test]
        fn dedup_forgets_nothing_early_when_every_id_fits(
            ids in prop::collection::vec((0u8..20, 0u64..100), 1..300),
            max in 20usize..30,
        ) {
            let t0 = Instant::now();
            let mut dedup = Dedup::new(max, Duration::from_millis(9_000), foldhash::fast::FixedState::with_seed(3));
            let mut last_seen: BTreeMap<u8, u64> = BTreeMap::new();
            let mut now = 0u64;
            for (id, step) in ids {
                now += step;
                let seen = dedup.check_and_track(&id.to_string(), ConnId(1), t0 + Duration::from_millis(now));
                let fresh = last_seen.get(&id).is_some_and(|&at| now - at < 9_000);
                prop_assert_eq!(seen.is_some(), fresh, "id {} at {} ms", id, now);
                last_seen.insert(id, now);
            }
        }


        #[test]
        fn dedup_remembers_within_ttl_forgets_after_and_stays_bounded(
            ids in prop::collection::vec((0u8..20, prop_oneof![0u64..200, 0u64..20_000]), 1..200),
            max in prop_oneof![1usize..16, 20usize..30],
        ) {
            let ttl = Duration::from_millis(9_000);
            let t0 = Instant::now();
            let mut dedup = Dedup::new(max, ttl, foldhash::fast::FixedState::with_seed(3));
            let mut model: BTreeMap<u8, u64> = BTreeMap::new(); // id -> last seen (ms)
            let mut now = 0u64;
            for (id, step) in ids {
                now += step;
                let seen = dedup.check_and_track(&id.to_string(), ConnId(1), t0 + Duration::from_millis(now));
                let fresh = model.get(&id).is_some_and(|&at| now - at < 9_000);
                // Within the TTL an id is remembered unless the table had to drop it for room.
                if seen.is_some() {
                    prop_assert!(fresh, "remembered {id} past its time");
                }
                // When every id fits, nothing is forgotten early.
                if max >= 20 {
                    prop_assert_eq!(seen.is_some(), fresh, "id {} at {} ms", id, now);
                }
                model.insert(id, now);
                prop_assert!(dedup.len() <= max);
            }
        }
    }
}
