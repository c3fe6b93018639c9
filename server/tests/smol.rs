//! The integration suite against the smol runtime: its binary `fibergun` (started as a child
//! process on loopback) and its library `fibergun_smol`, and then what only the `fibergun`
//! binary has: the REST routes, `/metrics`, static files in a browser, TLS peers, the store tools,
//! and the slow process tests (chaos, flood) that run once.
//!
//! One test, by its module path: `cargo test -p fibergun-server --test smol interop::`.

/// The binary under test.
const BINARY: &str = env!("CARGO_BIN_EXE_fibergun");

/// Whether the binary serves `/metrics` (`fibergun-threads` serves `/gun` only).
const SERVES_METRICS: bool = true;

/// The runtime library under test.
use fibergun_smol as runtime;

mod fibergun_only;
mod suite;
