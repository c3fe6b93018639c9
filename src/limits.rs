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
    /// Most writes held because their state is ahead of the wall clock. Default 10,000.
    pub max_deferred_writes: usize,
    /// How far ahead of the wall clock a state may be, in milliseconds, to be held until its
    /// time; a state further ahead is refused. Default 86,400,000 (one day).
    pub max_future_state_ms: f64,
    /// Most soul-range answers (such as a relay's whole-graph dump) one connection may have
    /// streaming at once. Default 4.
    pub max_streams_per_connection: usize,
    /// Most souls one connection may subscribe to. Default 100,000.
    pub max_subscriptions_per_connection: usize,
    /// Most open connections; more are closed as they arrive. Default 10,000.
    pub max_connections: usize,
    /// Most fields kept in the read cache. Default 1,000,000.
    pub max_cached_fields: usize,
    /// Byte budget of a lex GET that gives no `%`, and the cap on any `%`. Default 1 MiB.
    pub max_lex_reply_bytes: u64,
    /// Size at which outbound messages to one connection stop being batched into one frame.
    /// Default 64 KiB.
    pub batch_frame_bytes: usize,
    /// Interval of the `[]` keepalive sent to every connection, in milliseconds. Default 20,000.
    pub keepalive_ms: u64,
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
            max_cached_fields: 1_000_000,
            max_lex_reply_bytes: 1 << 20,
            batch_frame_bytes: 64 << 10,
            keepalive_ms: 20_000,
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
