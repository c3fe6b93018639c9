//! The dedup table's index: where in the ring each remembered id is, found by the id's hash.
//!
//! Open addressing over 64-byte buckets of seven slots, each slot a tag (32 bits of the hash) and
//! a place (the low 32 bits of a ring place). A lookup reads one bucket, one cache line, as
//! nearly always an insert does; an id the ring forgets needs no visit at all: a slot whose place
//! is no longer in the ring is free. (The index is touched at random on every message, and at
//! its size each touch is a cache miss: forgetting the oldest id through a hash table cost as
//! much as remembering the newest.)
//!
//! The caller keeps the index exact: a slot's place is in the ring only while it names the id it
//! was set for (an id seen again has its slot moved to its new place), and every 2^30 places the
//! index is rebuilt, so an old place cannot wrap around into the ring again.

/// Slots per bucket: seven, with a word for the overflow mark, fill one cache line.
const SLOTS: usize = 7;

#[derive(Clone, Copy, Default)]
#[repr(C, align(64))]
struct Bucket {
    /// A slot's tag; 0 for a slot never set.
    tags: [u32; SLOTS],
    /// Whether an insert went past this bucket because it was full: a lookup that does not find
    /// its id here must look in the next bucket too.
    overflowed: u32,
    places: [u32; SLOTS],
    _pad: u32,
}

/// A slot found by [`PlaceIndex::find`]: its bucket and position.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SlotAt(usize, usize);

/// Places by hash (see the module's documentation).
#[derive(Default)]
pub struct PlaceIndex {
    buckets: Vec<Bucket>,
    /// Buckets marked as overflowed: past a share of them, the index is rebuilt.
    overflowed: usize,
}

impl std::fmt::Debug for PlaceIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PlaceIndex")
            .field("buckets", &self.buckets.len())
            .field("overflowed", &self.overflowed)
            .finish()
    }
}

/// A hash's tag: never 0, so 0 marks a slot never set.
fn tag(hash: u64) -> u32 {
    (hash >> 32) as u32 | 1
}

impl PlaceIndex {
    /// How many ids the index holds before it must grow: under half its slots, so that buckets
    /// rarely overflow.
    pub fn room(&self) -> usize {
        self.buckets.len() * SLOTS * 9 / 20
    }

    /// Whether it should be rebuilt at the same size: too many buckets marked as overflowed make
    /// lookups read two lines.
    pub fn worn(&self) -> bool {
        self.overflowed > self.buckets.len() / 8
    }

    /// Empties the index and sizes it for `ids` ids.
    pub fn reset(&mut self, ids: usize) {
        let buckets = (ids * 20 / (9 * SLOTS) + 1).next_power_of_two().max(8);
        self.buckets.clear();
        self.buckets.resize(buckets, Bucket::default());
        self.overflowed = 0;
    }

    fn first_bucket(&self, hash: u64) -> usize {
        hash as usize & (self.buckets.len() - 1)
    }

    /// The slot of the id of hash `hash` whose place `is_it` accepts. `in_ring` tells whether a
    /// place is still in the ring: slots with places that are not are skipped unasked.
    pub fn find(
        &self,
        hash: u64,
        in_ring: impl Fn(u32) -> bool,
        mut is_it: impl FnMut(u32) -> bool,
    ) -> Option<SlotAt> {
        if self.buckets.is_empty() {
            return None;
        }
        let tag = tag(hash);
        let mut b = self.first_bucket(hash);
        loop {
            let bucket = &self.buckets[b];
            for s in 0..SLOTS {
                let place = bucket.places[s];
                if bucket.tags[s] == tag && in_ring(place) && is_it(place) {
                    return Some(SlotAt(b, s));
                }
            }
            if bucket.overflowed == 0 {
                return None;
            }
            b = (b + 1) & (self.buckets.len() - 1);
        }
    }

    /// Points a found slot at a new place.
    pub fn set(&mut self, at: SlotAt, place: u32) {
        self.buckets[at.0].places[at.1] = place;
    }

    /// Adds the id of hash `hash` at `place`, in the first slot that is free (never set, or its
    /// place no longer in the ring). The caller keeps [`PlaceIndex::room`] for it.
    pub fn insert(&mut self, hash: u64, place: u32, in_ring: impl Fn(u32) -> bool) {
        debug_assert!(!self.buckets.is_empty(), "reset before the first insert");
        let tag = tag(hash);
        let mut b = self.first_bucket(hash);
        loop {
            let bucket = &mut self.buckets[b];
            let free = (0..SLOTS).find(|&s| bucket.tags[s] == 0 || !in_ring(bucket.places[s]));
            if let Some(s) = free {
                bucket.tags[s] = tag;
                bucket.places[s] = place;
                return;
            }
            if bucket.overflowed == 0 {
                bucket.overflowed = 1;
                self.overflowed += 1;
            }
            b = (b + 1) & (self.buckets.len() - 1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Hashes that all start in bucket 0 and differ in their tags.
    fn colliding(i: u64) -> u64 {
        (i + 1) << 40
    }

    #[test]
    fn a_full_bucket_overflows_into_the_next_and_lookups_follow() {
        let mut index = PlaceIndex::default();
        index.reset(100);
        let live = std::cell::Cell::new((0, 20u32));
        let in_ring = |p: u32| (live.get().0..live.get().1).contains(&p);
        for i in 0..20 {
            index.insert(colliding(i.into()), i, in_ring);
        }
        assert_eq!(index.overflowed, 2, "20 ids fill three buckets");
        for i in 0..20u32 {
            let found = index.find(colliding(i.into()), in_ring, |p| p == i);
            assert_eq!(found.map(|SlotAt(b, _)| b), Some(i as usize / SLOTS), "{i}");
        }
        assert_eq!(index.find(colliding(99), in_ring, |_| true), None);
        // The ring forgets the first ten: their slots are free, and a new id takes the first.
        live.set((10, 21));
        assert_eq!(index.find(colliding(3), in_ring, |_| true), None);
        index.insert(colliding(20), 20, in_ring);
        assert_eq!(
            index.find(colliding(20), in_ring, |p| p == 20),
            Some(SlotAt(0, 0))
        );
        // Ids past the overflow are still found through the marks.
        assert!(index.find(colliding(19), in_ring, |p| p == 19).is_some());
        // A moved id is found at its new place only.
        let at = index.find(colliding(12), in_ring, |p| p == 12).unwrap();
        live.set((10, 22));
        index.set(at, 21);
        assert_eq!(index.find(colliding(12), in_ring, |p| p == 21), Some(at));
    }

    #[test]
    fn room_stays_under_half_the_slots_and_wear_is_counted() {
        let mut index = PlaceIndex::default();
        assert_eq!(index.room(), 0);
        for ids in [1, 100, 10_000, 100_000] {
            index.reset(ids);
            assert!(index.room() >= ids, "{ids}");
            assert!(index.room() * 2 <= index.buckets.len() * SLOTS);
            assert!(!index.worn());
        }
        index.reset(1);
        for i in 0..40 {
            index.insert(colliding(i), i as u32, |_| true);
        }
        assert!(index.worn(), "{:?}", index);
    }
}
