//! The integration suite against the std-thread runtime: its binary `fibergun-threads` and its
//! library `fibergun_threads`, and what is particular to that binary (it serves `/gun` only).
//!
//! One test, by its module path: `cargo test -p fibergun-server --test threads interop::`.

/// The binary under test.
const BINARY: &str = env!("CARGO_BIN_EXE_fibergun-threads");

/// Whether the binary serves `/metrics` (`fibergun-threads` serves `/gun` only).
const SERVES_METRICS: bool = false;

/// The runtime library under test.
use fibergun_threads as runtime;

mod suite;
mod threads_only;
