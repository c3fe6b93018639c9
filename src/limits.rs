//! Every bound the core enforces, in one place.
//!
//! A relay faces clients it does not trust, so everything that grows with their input is capped:
//! frame size, nesting, messages per frame, nodes and keys per put, value size, outstanding storage
//! work, the dedup table, deferred writes and subscriptions. Input over a limit is refused with an
//! error reply; nothing is half-applied.

/// The limits of one peer. [`Limits::default`] documents each default.
#[derive(Clone, Debug, PartialEq)]
pub struct Limits {
    /// Largest inbound WebSocket frame, in bytes. Default 16 MiB (GUN JS allows 90 MB).
    pub max_frame_bytes: usize,
    /// Deepest nesting of arrays and objects in a frame. Default 32 (a put needs 6).
    pub max_json_depth: usize,
    /// Most messages in one array frame. Default 1,000.
    pub max_messages_per_frame: usize,
    /// Most nodes in one put. Default 10,000.
    pub max_nodes_per_put: usize,
    /// Most keys in one node of a put. Default 10,000.
    pub max_keys_per_node: usize,
    /// Longest soul and key together, in bytes, NUL bytes of the soul counting twice (stores
    /// escape them). Default 500, which keeps every stored key within LMDB's 511-byte maximum.
    pub max_soul_key_bytes: usize,
    /// Largest string value, in bytes. Default 4 MiB.
    pub max_value_bytes: usize,
    /// Most storage operations issued and not yet completed; work beyond it is refused with a
    /// "busy" error until storage catches up. Default 10,000.
    pub max_pending_store_ops: usize,
    /// Most message ids remembered for deduplication; the oldest are forgotten first.
    /// Default 100,000.
    pub max_dedup_entries: usize,
    /// How long a message id is remembered, in milliseconds. Default 9,000 (as GUN JS).
    pub dedup_ttl_ms: u64,
    /// Bytes queued for sending to one connection before the runtime drops it as too slow.
    /// Enforced by the runtime, which owns the queue. Default 8 MiB.
    pub max_outbound_queue_bytes: usize,
    /// Most fields held because their state is ahead of the wall clock. Default 10,000.
    pub max_deferred_writes: usize,
    /// How far ahead of the wall clock a state may be, in milliseconds, to be held until its
    /// time; a state further ahead is refused. Default 86,400,000 (one day); at most 2^31-1
    /// (GUN's own longest wait).
    pub max_future_state_ms: f64,
    /// Most soul-range answers (such as a relay's whole-graph dump) one connection may have
    /// streaming at once. Default 4.
    pub max_streams_per_connection: usize,
    /// Most souls one connection may subscribe to. Default 100,000.
    pub max_subscriptions_per_connection: usize,
    /// Most open connections; more are closed as they arrive. Default 10,000.
    pub max_connections: usize,
    /// Bytes the read cache may hold (an estimate). Default 64 MiB.
    pub max_cache_bytes: usize,
    /// Longest message id (`#`, `@`), peer id or `><` list, in bytes. Default 256.
    pub max_id_bytes: usize,
    /// Byte budget of a lex GET that gives no `%`, and the cap on any `%`. Default 1 MiB.
    pub max_lex_reply_bytes: u64,
    /// Size at which outbound messages to one connection stop being batched into one frame.
    /// Default 64 KiB.
    pub batch_frame_bytes: usize,
    /// Interval of the `[]` keepalive sent to every connection, in milliseconds. Default 20,000.
    pub keepalive_ms: u64,
    /// First wait before dialling a configured peer again after a failure, in ms; it doubles with
    /// each failure up to [`Limits::reconnect_max_ms`], less up to half at random (jitter).
    pub reconnect_min_ms: u64,
    /// Longest wait between dials of a configured peer, in ms.
    pub reconnect_max_ms: u64,
    /// Bytes of changes kept per configured peer for redelivery: pushed and not yet acknowledged,
    /// or made while it was away. Past this the oldest are dropped (a fibergun peer still catches
    /// up, as linked relays exchange their whole graphs on reconnect).
    pub max_redelivery_bytes: usize,
    /// GETs remembered per configured peer, to be sent again after a reconnect.
    pub max_remote_gets: usize,
    /// Puts waiting for their signature checks; past this, signed puts are refused as busy.
    /// Default 1,024.
    pub max_puts_verifying: usize,
    /// How long a local client's GET that finds nothing here waits for an upstream's answer
    /// before this peer answers "not found", in ms. Default 3,000.
    pub upstream_wait_ms: u64,
    /// How long an outbox entry sent to an upstream waits for its acknowledgement before it is
    /// read back (a GUN JS relay does not acknowledge a put that changes nothing), in ms.
    /// Default 5,000.
    pub upstream_ack_ms: u64,
    /// Outbox entries sent to one upstream and not yet acknowledged, at most. Default 256.
    pub max_upstream_in_flight: usize,
    /// How long a put may wait for its signature checks ([`Output::Verify`](crate::Output))
    /// and its certificates' block lists, in milliseconds; then it is refused with an `err`
    /// ("Server busy"), so a runtime that never answers does not hold writes for ever.
    /// Default 30,000.
    pub max_verify_ms: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_frame_bytes: 16 << 20,
            max_json_depth: 32,
            max_messages_per_frame: 1_000,
            max_nodes_per_put: 10_000,
            max_keys_per_node: 10_000,
            max_soul_key_bytes: 500,
            max_value_bytes: 4 << 20,
            max_pending_store_ops: 10_000,
            max_dedup_entries: 100_000,
            dedup_ttl_ms: 9_000,
            max_outbound_queue_bytes: 8 << 20,
            max_deferred_writes: 10_000,
            max_future_state_ms: 86_400_000.0,
            max_streams_per_connection: 4,
            max_subscriptions_per_connection: 100_000,
            max_connections: 10_000,
            max_cache_bytes: 64 << 20,
            max_id_bytes: 256,
            max_lex_reply_bytes: 1 << 20,
            batch_frame_bytes: 64 << 10,
            keepalive_ms: 20_000,
            reconnect_min_ms: 500,
            reconnect_max_ms: 30_000,
            max_redelivery_bytes: 8 << 20,
            max_remote_gets: 10_000,
            max_puts_verifying: 1_024,
            max_verify_ms: 30_000,
            upstream_wait_ms: 3_000,
            upstream_ack_ms: 5_000,
            max_upstream_in_flight: 256,
        }
    }
}

impl Limits {
    /// Checks a soul and key (or lex bound) against [`Limits::max_soul_key_bytes`].
    pub fn check_soul_key(&self, soul: &str, key: &str) -> Result<(), String> {
        let nuls = soul.bytes().filter(|&b| b == 0).count();
        let bytes = soul.len() + nuls + key.len();
        if bytes > self.max_soul_key_bytes {
            return Err(format!(
                "soul and key of {bytes} bytes, over the limit of {}",
                self.max_soul_key_bytes
            ));
        }
        Ok(())
    }
}

/// A limit that makes no sense.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InvalidLimits(pub String);

impl std::fmt::Display for InvalidLimits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "invalid limits: {}", self.0)
    }
}

impl std::error::Error for InvalidLimits {}

impl Limits {
    /// Checks that the limits can work: sizes and counts above zero, timers that neither spin nor
    /// overflow.
    pub fn validate(&self) -> Result<(), InvalidLimits> {
        let positive = [
            ("max_frame_bytes", self.max_frame_bytes),
            ("max_json_depth", self.max_json_depth),
            ("max_messages_per_frame", self.max_messages_per_frame),
            ("max_nodes_per_put", self.max_nodes_per_put),
            ("max_keys_per_node", self.max_keys_per_node),
            ("max_soul_key_bytes", self.max_soul_key_bytes),
            ("max_value_bytes", self.max_value_bytes),
            ("max_pending_store_ops", self.max_pending_store_ops),
            ("max_dedup_entries", self.max_dedup_entries),
            ("max_outbound_queue_bytes", self.max_outbound_queue_bytes),
            (
                "max_streams_per_connection",
                self.max_streams_per_connection,
            ),
            (
                "max_subscriptions_per_connection",
                self.max_subscriptions_per_connection,
            ),
            ("max_connections", self.max_connections),
            ("max_id_bytes", self.max_id_bytes),
            ("batch_frame_bytes", self.batch_frame_bytes),
            ("max_puts_verifying", self.max_puts_verifying),
            ("max_verify_ms", self.max_verify_ms as usize),
            ("upstream_wait_ms", self.upstream_wait_ms as usize),
            ("upstream_ack_ms", self.upstream_ack_ms as usize),
            ("max_upstream_in_flight", self.max_upstream_in_flight),
        ];
        for (name, value) in positive {
            if value == 0 {
                return Err(InvalidLimits(format!("{name} must be above 0")));
            }
        }
        if self.max_soul_key_bytes > 500 {
            return Err(InvalidLimits(
                "max_soul_key_bytes above 500 does not fit LMDB keys".into(),
            ));
        }
        if !(0.0..=2_147_483_647.0).contains(&self.max_future_state_ms) {
            return Err(InvalidLimits(
                "max_future_state_ms must be within 0..=2147483647".into(),
            ));
        }
        if !(100..=86_400_000).contains(&self.keepalive_ms) {
            return Err(InvalidLimits(
                "keepalive_ms must be within 100..=86400000".into(),
            ));
        }
        if !(1..=86_400_000).contains(&self.reconnect_min_ms)
            || !(self.reconnect_min_ms..=86_400_000).contains(&self.reconnect_max_ms)
        {
            return Err(InvalidLimits(
                "reconnect_min_ms must be within 1..=reconnect_max_ms, and that at most 86400000"
                    .into(),
            ));
        }
        if !(1..=86_400_000).contains(&self.dedup_ttl_ms) {
            return Err(InvalidLimits(
                "dedup_ttl_ms must be within 1..=86400000".into(),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_nonsense_is_not() {
        assert_eq!(Limits::default().validate(), Ok(()));
        let bad = [
            Limits {
                keepalive_ms: 0,
                ..Limits::default()
            },
            Limits {
                max_future_state_ms: f64::INFINITY,
                ..Limits::default()
            },
            Limits {
                max_frame_bytes: 0,
                ..Limits::default()
            },
            Limits {
                max_soul_key_bytes: 600,
                ..Limits::default()
            },
        ];
        for limits in bad {
            assert!(limits.validate().is_err(), "{limits:?}");
        }
    }
}
