//! Token buckets per key: how fast each key may write. A bucket holds up to one second's worth
//! of writes and refills continuously. The table is bounded: a bucket that is full again says
//! no more than a new one would, so full buckets are forgotten first, and past the bound the
//! oldest one is.

use std::collections::VecDeque;
use std::time::Instant;

use crate::HashMap;

/// Keys tracked at most.
const MAX_KEYS: usize = 65_536;

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

/// The buckets.
#[derive(Debug)]
pub struct KeyRates {
    per_sec: f64,
    buckets: HashMap<String, Bucket>,
    /// Keys in the order their buckets were made.
    order: VecDeque<String>,
}

impl KeyRates {
    /// Buckets refilling at `per_sec` (0: no limit).
    pub fn new(per_sec: f64, hasher: foldhash::fast::FixedState) -> KeyRates {
        KeyRates {
            per_sec,
            buckets: HashMap::with_hasher(hasher),
            order: VecDeque::new(),
        }
    }

    fn capacity(&self) -> f64 {
        self.per_sec.max(1.0)
    }

    fn level(&self, key: &str, now: Instant) -> f64 {
        self.buckets.get(key).map_or(self.capacity(), |b| {
            let refill = now.saturating_duration_since(b.at).as_secs_f64() * self.per_sec;
            (b.tokens + refill).min(self.capacity())
        })
    }

    /// Whether every one of `keys` has a write left; otherwise names the first that has none.
    /// Takes nothing.
    pub fn has_room<'a>(
        &self,
        keys: impl IntoIterator<Item = &'a str>,
        now: Instant,
    ) -> Result<(), &'a str> {
        if self.per_sec <= 0.0 {
            return Ok(());
        }
        match keys.into_iter().find(|k| self.level(k, now) < 1.0) {
            Some(empty) => Err(empty),
            None => Ok(()),
        }
    }

    /// Takes one write from each of `keys`, if every one has one left; otherwise takes nothing
    /// and names the first that has none.
    pub fn admit<'a>(
        &mut self,
        keys: impl IntoIterator<Item = &'a str> + Clone,
        now: Instant,
    ) -> Result<(), &'a str> {
        self.has_room(keys.clone(), now)?;
        if self.per_sec <= 0.0 {
            return Ok(());
        }
        for key in keys {
            let tokens = self.level(key, now) - 1.0;
            match self.buckets.get_mut(key) {
                Some(b) => *b = Bucket { tokens, at: now },
                None => {
                    self.make_room(now);
                    self.buckets
                        .insert(key.to_owned(), Bucket { tokens, at: now });
                    self.order.push_back(key.to_owned());
                }
            }
        }
        Ok(())
    }

    fn make_room(&mut self, now: Instant) {
        if self.buckets.len() < MAX_KEYS {
            return;
        }
        let full: Vec<String> = self
            .order
            .iter()
            .filter(|k| self.level(k, now) >= self.capacity())
            .cloned()
            .collect();
        for key in &full {
            self.buckets.remove(key);
        }
        self.order.retain(|k| self.buckets.contains_key(k));
        while self.buckets.len() >= MAX_KEYS {
            let Some(oldest) = self.order.pop_front() else {
                break;
            };
            self.buckets.remove(&oldest);
        }
    }

    /// Keys tracked now.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.buckets.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_key_gets_its_rate_others_are_not_charged_and_the_table_stays_bounded() {
        let start = Instant::now();
        let mut rates = KeyRates::new(10.0, foldhash::fast::FixedState::with_seed(1));
        for _ in 0..10 {
            assert_eq!(rates.admit(["a"], start), Ok(()));
        }
        assert_eq!(rates.admit(["a"], start), Err("a"));
        assert_eq!(rates.has_room(["b", "a"], start), Err("a"));
        assert_eq!(rates.has_room(["b"], start), Ok(()));
        // Refusing one key of two takes nothing from the other.
        assert_eq!(rates.admit(["b", "a"], start), Err("a"));
        assert_eq!(rates.level("b", start), 10.0);
        // A tenth of a second gives one more.
        let later = start + Duration::from_millis(100);
        assert_eq!(rates.admit(["a"], later), Ok(()));
        assert_eq!(rates.admit(["a"], later), Err("a"));
        // Off: everything passes.
        let mut off = KeyRates::new(0.0, foldhash::fast::FixedState::with_seed(1));
        for _ in 0..100 {
            assert_eq!(off.admit(["a"], start), Ok(()));
        }
        for i in 0..MAX_KEYS + 10 {
            let key = format!("k{i}");
            rates.admit([key.as_str()], later).unwrap();
        }
        assert!(rates.len() <= MAX_KEYS);
    }
}
