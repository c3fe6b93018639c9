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
///
/// The ids live in a ring, oldest sighting first: an id seen again moves to the back and leaves
/// an empty slot, so the front is always the next id to forget, and forgetting and remembering
/// touch the ring's two ends, not random memory. A small hash index (16 bytes an id) finds an id's
/// place in the ring. This table is on every message's path, and at its size (100,000 ids by
/// default) random accesses into it were cache misses: one to remember an id, one to forget one.
#[derive(Debug)]
pub struct Dedup {
    ring: VecDeque<Option<Entry>>,
    /// The place (sequence number) of `ring[0]`; places only grow.
    base: u64,
    /// (hash, place) of each remembered id.
    index: HashTable<(u64, u64)>,
    /// Ids remembered (the ring's slots that are not empty).
    live: usize,
    hasher: foldhash::fast::FixedState,
    ttl: Duration,
    max: usize,
}

impl Dedup {
    /// A table keeping up to `max` ids for `ttl` after they were last seen.
    pub fn new(max: usize, ttl: Duration, hasher: foldhash::fast::FixedState) -> Dedup {
        Dedup {
            ring: VecDeque::new(),
            base: 0,
            index: HashTable::new(),
            live: 0,
            hasher,
            ttl,
            max: max.max(1),
        }
    }

    /// The entry at ring place `place`, if it holds one.
    fn at(&self, place: u64) -> Option<&Entry> {
        let slot = usize::try_from(place - self.base).ok()?;
        self.ring.get(slot)?.as_ref()
    }

    fn find(&self, id: &str) -> Option<&Entry> {
        let hash = self.hasher.hash_one(id);
        let &(_, place) = self.index.find(hash, |&(h, place)| {
            h == hash
                && self
                    .at(place)
                    .is_some_and(|e| e.id.as_bytes() == id.as_bytes())
        })?;
        self.at(place)
    }

    /// Records `id` as seen now from `via`. Returns the earlier sighting if it was seen within
    /// the time-to-live (the message is a duplicate), refreshing it.
    pub fn check_and_track(&mut self, id: &str, via: ConnId, now: Instant) -> Option<Seen> {
        self.expire(now);
        let hash = self.hasher.hash_one(id);
        let back = self.base + self.ring.len() as u64;
        let (ring, base) = (&mut self.ring, self.base);
        let same = |&(h, place): &(u64, u64)| {
            h == hash
                && ring[(place - base) as usize]
                    .as_ref()
                    .is_some_and(|e| e.id.as_bytes() == id.as_bytes())
        };
        if let Some((_, place)) = self.index.find_mut(hash, same) {
            // Seen again: it moves to the back, with its first connection.
            let mut entry = ring[(*place - base) as usize]
                .take()
                .expect("the index points at a remembered id");
            let earlier = entry.seen;
            entry.seen.at = now;
            *place = back;
            ring.push_back(Some(entry));
            self.compact();
            return Some(earlier);
        }
        ring.push_back(Some(Entry {
            id: Id::new(id),
            hash,
            seen: Seen { at: now, via },
        }));
        self.index.insert_unique(hash, (hash, back), |&(h, _)| h);
        self.live += 1;
        self.trim();
        None
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
        self.live
    }

    /// Forgets the oldest id, and the empty slots before it.
    fn forget_oldest(&mut self) {
        while let Some(slot) = self.ring.pop_front() {
            let place = self.base;
            self.base += 1;
            if let Some(entry) = slot {
                if let Ok(found) = self.index.find_entry(entry.hash, |&(_, p)| p == place) {
                    found.remove();
                }
                self.live -= 1;
                return;
            }
        }
    }

    /// Forgets ids not seen for the time-to-live.
    pub fn expire(&mut self, now: Instant) {
        loop {
            match self.ring.front() {
                Some(None) => {
                    self.ring.pop_front();
                    self.base += 1;
                }
                Some(Some(e)) if now.saturating_duration_since(e.seen.at) >= self.ttl => {
                    self.forget_oldest()
                }
                _ => return,
            }
        }
    }

    /// Keeps the table within its bounds, forgetting the oldest ids first.
    fn trim(&mut self) {
        while self.live > self.max {
            self.forget_oldest();
        }
        self.compact();
    }

    /// Ids seen again leave empty slots behind; when they pile up, the ring is rebuilt without
    /// them (in the same order) and the index pointed at the new places.
    fn compact(&mut self) {
        if self.ring.len() <= 2 * self.max + 16 {
            return;
        }
        self.ring.retain(Option::is_some);
        self.index.clear();
        for (i, entry) in self.ring.iter().enumerate() {
            let entry = entry.as_ref().expect("only remembered ids are left");
            let place = self.base + i as u64;
            self.index
                .insert_unique(entry.hash, (entry.hash, place), |&(h, _)| h);
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
