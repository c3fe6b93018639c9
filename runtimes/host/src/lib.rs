//! What every fibergun runtime shares, none of it protocol: the server's configuration and the
//! `serve` command line that fills it, the clocks handed to the core, the thread that applies
//! storage batches to LMDB, and the parsing of peer addresses.
//!
//! The smol runtime (`fibergun-smol`) and the std-thread runtime (`fibergun-threads`) both build
//! on this, so they read the same flags, report the same errors and store the same way.

pub mod address_limits;
pub mod auth;
pub mod budget;
pub mod clock;
pub mod config;
pub mod driver;
pub mod gun;
pub mod local;
pub mod metrics;
pub mod open_socket;
pub mod peer_tls;
pub mod peer_url;
pub mod rest;
pub mod s3_flags;
pub mod static_files;
pub mod storage;
pub mod store_thread;
pub mod verifier;
pub mod workers;

pub use config::{
    error_json, init_logging, parse_command, server_info_json, Invocation, ServeArgs, ServerConfig,
    ServerError,
};
pub use peer_url::PeerUrl;
