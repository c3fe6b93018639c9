//! Remembers message ids seen recently, so a message that arrives twice (a client retry, an echo
//! through the mesh) is handled once. Bounded in entries and in time.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use std::hash::BuildHasher;

use crate::peer::ConnId;

mod index;

use index::PlaceIndex;

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
/// touch the ring's two ends, not random memory. An index ([`index`]) finds an id's place in the
/// ring by its hash, reading one cache line, and forgetting an id does not touch it. This table
/// is on every message's path, and at its size (100,000 ids by default) each random access is a
/// cache miss.
#[derive(Debug)]
pub struct Dedup {
    ring: VecDeque<Option<Entry>>,
    /// The place (sequence number) of `ring[0]`; places only grow.
    base: u64,
    /// The place of each remembered id, its low 32 bits (the ring never holds 2^32 slots), found
    /// by the id's hash (which the ring's entry keeps).
    index: PlaceIndex,
    /// The base when the index was last rebuilt: it is rebuilt before places wrap around.
    indexed_at: u64,
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
            index: PlaceIndex::default(),
            indexed_at: 0,
            live: 0,
            hasher,
            ttl,
            max: max.clamp(1, Dedup::MOST),
        }
    }

    /// The most ids kept: the ring (at most twice that, and a few) stays far below 2^32 slots, so
    /// a place's low 32 bits name its slot, and a place that left the ring less than 2^31 places
    /// ago cannot be taken for one in it.
    const MOST: usize = 1 << 28;

    /// The index is rebuilt once the ring's base has moved this many places since it was built.
    const REINDEX_PLACES: u64 = 1 << 30;

    /// The ring slot of the place whose low bits are `place`.
    fn slot(base: u64, place: u32) -> usize {
        place.wrapping_sub(base as u32) as usize
    }

    /// Whether a place the index holds is still in the ring (see [`index`]).
    fn in_ring(ring: &VecDeque<Option<Entry>>, base: u64) -> impl Fn(u32) -> bool + '_ {
        move |place| Dedup::slot(base, place) < ring.len()
    }

    fn find(&self, id: &str) -> Option<&Entry> {
        let hash = self.hasher.hash_one(id);
        let (ring, base) = (&self.ring, self.base);
        let mut found = None;
        self.index.find(hash, Dedup::in_ring(ring, base), |place| {
            found = Some(place);
            is_entry_of(ring, base, place, hash, id)
        })?;
        ring[Dedup::slot(base, found?)].as_ref()
    }

    /// Records `id` as seen now from `via`. Returns the earlier sighting if it was seen within
    /// the time-to-live (the message is a duplicate), refreshing it.
    pub fn check_and_track(&mut self, id: &str, via: ConnId, now: Instant) -> Option<Seen> {
        self.expire(now);
        let hash = self.hasher.hash_one(id);
        let back = self.base + self.ring.len() as u64;
        let (ring, base) = (&mut self.ring, self.base);
        let mut place = 0;
        let found = self.index.find(hash, Dedup::in_ring(ring, base), |p| {
            place = p;
            is_entry_of(ring, base, p, hash, id)
        });
        if let Some(at) = found {
            // Seen again: it moves to the back, with its first connection.
            let mut entry = ring[Dedup::slot(base, place)]
                .take()
                .expect("the index points at a remembered id");
            let earlier = entry.seen;
            entry.seen.at = now;
            self.index.set(at, back as u32);
            ring.push_back(Some(entry));
            self.trim();
            return Some(earlier);
        }
        if self.live >= self.index.room() {
            self.reindex(self.live + 1);
        }
        let (ring, base) = (&mut self.ring, self.base);
        ring.push_back(Some(Entry {
            id: Id::new(id),
            hash,
            seen: Seen { at: now, via },
        }));
        self.index
            .insert(hash, back as u32, Dedup::in_ring(ring, base));
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
            self.base += 1;
            if slot.is_some() {
                // Its index slot is free now that its place has left the ring.
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
        // Before a place that left the ring could wrap around into it again, and when overflow
        // marks pile up, the index is rebuilt.
        if self.base - self.indexed_at >= Dedup::REINDEX_PLACES || self.index.worn() {
            self.reindex(self.live);
        }
    }

    /// Rebuilds the index for the ring's ids, with room for `ids`.
    fn reindex(&mut self, ids: usize) {
        self.index.reset(ids.max(self.index.room()));
        self.indexed_at = self.base;
        let (ring, base) = (&self.ring, self.base);
        for (i, entry) in ring.iter().enumerate() {
            if let Some(entry) = entry {
                let place = (base + i as u64) as u32;
                self.index
                    .insert(entry.hash, place, Dedup::in_ring(ring, base));
            }
        }
    }

    /// Ids seen again leave empty slots behind; when they pile up, the ring is rebuilt without
    /// them (in the same order) and the index pointed at the new places.
    fn compact(&mut self) {
        if self.ring.len() <= 2 * self.max + 16 {
            return;
        }
        self.ring.retain(Option::is_some);
        self.reindex(self.live);
    }
}

/// Whether the ring's entry at `place` is the id `id`, of hash `hash`.
fn is_entry_of(ring: &VecDeque<Option<Entry>>, base: u64, place: u32, hash: u64, id: &str) -> bool {
    ring[Dedup::slot(base, place)]
        .as_ref()
        .is_some_and(|e| e.hash == hash && e.id.as_bytes() == id.as_bytes())
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

    /// The index keeps a place's low 32 bits: ids on both sides of the wrap are found, refreshed
    /// and forgotten as anywhere else.
    #[test]
    fn places_past_the_32_bit_wrap_work_alike() {
        let mut d = table(4);
        d.base = u64::from(u32::MAX) - 2;
        let t0 = Instant::now();
        for i in 0..6u64 {
            let at = t0 + Duration::from_millis(i);
            assert_eq!(d.check_and_track(&format!("id{i}"), ConnId(i), at), None);
        }
        // The last four are kept, across the wrap; the first two were forgotten.
        assert!(!d.contains("id0") && !d.contains("id1"));
        assert_eq!(d.via("id2"), Some(ConnId(2)));
        assert_eq!(d.via("id5"), Some(ConnId(5)));
        // Seen again, id2 moves to the back (past the wrap) and keeps its first connection.
        let again = d.check_and_track("id2", ConnId(9), t0 + Duration::from_millis(7));
        assert_eq!(again.map(|s| s.via), Some(ConnId(2)));
        assert_eq!(
            d.check_and_track("id6", ConnId(6), t0 + Duration::from_millis(8)),
            None
        );
        assert!(!d.contains("id3"), "the oldest, id3, made room");
        assert_eq!(d.via("id2"), Some(ConnId(2)));
        assert_eq!(d.len(), 4);
        // Ids seen again and again leave empty slots, compacted away across the wrap (the ring
        // is rebuilt and the index pointed at new places).
        for round in 0..40u64 {
            let at = t0 + Duration::from_millis(10 + round);
            let id = ["id2", "id4", "id5", "id6"][(round % 4) as usize];
            assert!(d.check_and_track(id, ConnId(9), at).is_some(), "{id} kept");
        }
        assert_eq!(d.len(), 4);
        for (id, first) in [("id2", 2), ("id4", 4), ("id5", 5), ("id6", 6)] {
            assert_eq!(d.via(id), Some(ConnId(first)), "{id}");
        }
        assert!(d.base > u64::from(u32::MAX), "the ring went past the wrap");
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

    proptest::proptest! {
        #![proptest_config(ProptestConfig { cases: 48, ..config() })]

        /// Thousands of ids: the index grows, overflows its buckets, is compacted and rebuilt, and
        /// the table still answers as the model does.
        #[test]
        fn dedup_matches_the_model_over_thousands_of_ids(
            ids in prop::collection::vec((0u16..3_000, 0u64..40), 1..4_000),
            max in prop_oneof![50usize..400, 3_000usize..3_100],
        ) {
            let t0 = Instant::now();
            let mut dedup = Dedup::new(max, Duration::from_millis(9_000), foldhash::fast::FixedState::with_seed(5));
            let mut model: BTreeMap<u16, u64> = BTreeMap::new();
            let mut now = 0u64;
            for (id, step) in ids {
                now += step;
                let seen = dedup.check_and_track(&format!("msg{id}"), ConnId(id.into()), t0 + Duration::from_millis(now));
                let fresh = model.get(&id).is_some_and(|&at| now - at < 9_000);
                if seen.is_some() {
                    prop_assert!(fresh, "remembered {} past its time", id);
                    prop_assert_eq!(seen.map(|s| s.via), Some(ConnId(id.into())));
                }
                if max >= 3_000 {
                    prop_assert_eq!(seen.is_some(), fresh, "id {} at {} ms", id, now);
                }
                model.insert(id, now);
                prop_assert!(dedup.len() <= max);
            }
        }
    }
}
