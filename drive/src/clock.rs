//! The runtime's clocks, read here and handed to the core as [`Now`].

use std::time::{Instant, SystemTime, UNIX_EPOCH};

use fibergun::Now;

/// The current monotonic instant and wall clock.
pub fn now() -> Now {
    Now {
        mono: Instant::now(),
        wall_ms: wall_ms(),
    }
}

/// Milliseconds since the Unix epoch.
pub fn wall_ms() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64() * 1000.0)
        .unwrap_or(0.0)
}

/// A seed for the core's generator, different on every start.
pub fn fresh_seed() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    h.write_u32(std::process::id());
    h.finish()
}
