//! What a peer counts, for metrics and tests: messages and bytes, gets and puts, errors by kind,
//! and how long puts and GETs take (from the input that brought them to the output that answers
//! them, on the clock the runtime hands in, so a simulated run counts simulated time).

use std::time::Duration;

/// Counters for metrics and tests.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Messages received.
    pub messages_in: u64,
    /// Bytes of text frames received.
    pub bytes_in: u64,
    /// Frames sent.
    pub frames_out: u64,
    /// Bytes of frames sent.
    pub bytes_out: u64,
    /// Messages dropped as duplicates.
    pub duplicates: u64,
    /// GETs received.
    pub gets_received: u64,
    /// Puts received.
    pub puts_received: u64,
    /// Puts acknowledged.
    pub puts_acked: u64,
    /// Puts refused or failed.
    pub puts_refused: u64,
    /// GETs answered.
    pub gets_answered: u64,
    /// Fields pushed to subscribers.
    pub fields_pushed: u64,
    /// Changes other writers committed to a shared store that brought this peer news.
    pub changes_from_feed: u64,
    /// Gaps in a shared store's change feed.
    pub feed_gaps: u64,
    /// Frames or messages refused as malformed or over a limit.
    pub refused: u64,
    /// Error replies, by kind.
    pub errors: ErrorCounts,
    /// Requests refused, by the rule that refused them.
    pub refusals: crate::write_policy::RefusalCounts,
    /// From a put's arrival to its ack.
    pub put_latency: LatencyHistogram,
    /// From a GET's arrival to its first answer.
    pub get_latency: LatencyHistogram,
}

/// Why a request was answered with an error.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// A frame or message that could not be read, or over a limit.
    Malformed,
    /// A put that is well formed but not acceptable (a state too far ahead).
    Invalid,
    /// A write the rules forbid (SEA: signatures, certificates, aliases, hashes).
    Unauthorized,
    /// Refused for load: storage behind, too many writes waiting.
    Busy,
    /// The store failed.
    Storage,
    /// A space past its quota.
    Quota,
}

/// Error replies by [`ErrorKind`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ErrorCounts {
    /// [`ErrorKind::Malformed`].
    pub malformed: u64,
    /// [`ErrorKind::Invalid`].
    pub invalid: u64,
    /// [`ErrorKind::Unauthorized`].
    pub unauthorized: u64,
    /// [`ErrorKind::Busy`].
    pub busy: u64,
    /// [`ErrorKind::Storage`].
    pub storage: u64,
    /// [`ErrorKind::Quota`].
    pub quota: u64,
}

impl ErrorCounts {
    /// Counts one error of `kind`.
    pub fn count(&mut self, kind: ErrorKind) {
        *match kind {
            ErrorKind::Malformed => &mut self.malformed,
            ErrorKind::Invalid => &mut self.invalid,
            ErrorKind::Unauthorized => &mut self.unauthorized,
            ErrorKind::Busy => &mut self.busy,
            ErrorKind::Storage => &mut self.storage,
            ErrorKind::Quota => &mut self.quota,
        } += 1;
    }

    /// Each kind's name and count, in a fixed order.
    pub fn by_kind(&self) -> [(&'static str, u64); 6] {
        [
            ("malformed", self.malformed),
            ("invalid", self.invalid),
            ("unauthorized", self.unauthorized),
            ("busy", self.busy),
            ("storage", self.storage),
            ("quota", self.quota),
        ]
    }
}

/// The upper bounds of the latency buckets, in seconds (the last bucket is everything above).
pub const LATENCY_BOUNDS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// A latency histogram with fixed buckets ([`LATENCY_BOUNDS`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LatencyHistogram {
    /// Observations per bucket (not cumulative); the last is above every bound.
    pub buckets: [u64; LATENCY_BOUNDS.len() + 1],
    /// Observations.
    pub count: u64,
    /// Their sum, in nanoseconds (so that sub-microsecond observations, such as a memory
    /// store's batches, count too).
    pub sum_nanos: u64,
}

impl LatencyHistogram {
    /// Counts one observation.
    pub fn observe(&mut self, took: Duration) {
        let seconds = took.as_secs_f64();
        let bucket = LATENCY_BOUNDS
            .iter()
            .position(|bound| seconds <= *bound)
            .unwrap_or(LATENCY_BOUNDS.len());
        self.buckets[bucket] += 1;
        self.count += 1;
        self.sum_nanos = self
            .sum_nanos
            .saturating_add(took.as_nanos().min(u64::MAX as u128) as u64);
    }

    /// The sum of the observations, in seconds.
    pub fn sum_seconds(&self) -> f64 {
        self.sum_nanos as f64 / 1e9
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn observations_land_in_the_first_bucket_that_holds_them() {
        let mut h = LatencyHistogram::default();
        h.observe(Duration::from_micros(100));
        h.observe(Duration::from_millis(1));
        h.observe(Duration::from_millis(7));
        h.observe(Duration::from_secs(60));
        h.observe(Duration::from_nanos(300));
        assert_eq!(h.buckets[0], 2);
        assert_eq!(h.buckets[1], 1, "a bound is inclusive");
        assert_eq!(h.buckets[4], 1);
        assert_eq!(h.buckets[LATENCY_BOUNDS.len()], 1);
        assert_eq!(h.count, 5);
        assert_eq!(
            h.sum_nanos,
            (100 + 1_000 + 7_000 + 60_000_000) * 1_000 + 300
        );
    }
}
