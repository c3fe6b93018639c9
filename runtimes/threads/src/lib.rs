//! fibergun's std-thread runtime: the same core as the smol runtime, driven by plain threads and
//! blocking sockets, with no async runtime.
//!
//! - one thread accepts connections; each connection has a reader thread (which also did its
//!   HTTP handshake) and a writer thread;
//! - one thread owns the [`fibergun::Peer`] through the shared driver
//!   ([`fibergun_host::driver`]), waiting on a channel with the core's deadline as its timeout;
//! - the LMDB store has its own thread (group commit), as in every runtime.
//!
//! ```no_run
//! use fibergun_threads::{Server, ServerConfig};
//!
//! let server = Server::start(ServerConfig::default()).expect("started");
//! println!("listening on {}", server.local_addr());
//! // ... later: finish the writes in flight, close the store.
//! server.shutdown();
//! ```

pub mod dial;
pub mod http;
pub mod server;
pub mod socket;

pub use fibergun_host::{ServerConfig, ServerError};
pub use server::Server;
