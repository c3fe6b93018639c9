//! fibergun's S3-compatible object storage backend.
//!
//! [`S3Store`] keeps the graph durable in a bucket (a log of write batches, compacted into
//! snapshots: see [`layout`]) and answers reads from a local LMDB replica, so a relay on an
//! ephemeral disk restarts on an empty folder and serves everything from the bucket.
//! [`ObjectStore`] is the small blocking S3 client it is built on, also used to keep backups in
//! a bucket.

#![deny(unsafe_code)]

mod client;
pub mod layout;
mod snapshot;
mod stats;
mod store;

pub use client::{ObjectStore, S3Config, S3Error, PART_BYTES};
pub use stats::{S3Figures, S3Stats};
pub use store::{Recovery, S3Store, SnapshotPolicy};
