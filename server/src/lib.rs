//! The fibergun server: the product built on the runtimes. It reads the command line
//! ([`cli`]) into a [`ServerConfig`], opens the store it names ([`storage`]: LMDB, S3 or
//! memory), decides who may connect ([`gate`]: tokens, limits per address), serves the HTTP
//! routes besides `/gun` ([`http`]: REST, metrics, health, static files), runs the tools on a
//! store ([`tools`]: backup, restore, export, import) and talks to running relays as a client
//! ([`remote`]: get, put, watch). The protocol is the core's; the sockets, the driver and the
//! clocks are the runtime's.
//!
//! Two binaries: `fibergun` on the smol runtime (everything above), and `fibergun-threads` on
//! the std-thread runtime (the same flags and store, `/gun` only).

pub mod cli;
pub mod config;
pub mod gate;
pub mod http;
pub mod remote;
pub mod serve;
pub mod storage;
pub mod tools;

pub use cli::{init_logging, parse_command, Invocation, ServeArgs};
pub use config::ServerConfig;
pub use fibergun_drive::StartError;
pub use serve::{serve, Server};
