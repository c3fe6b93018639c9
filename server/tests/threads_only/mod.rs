//! What is particular to the `fibergun-threads` binary.

mod cli;
