//! fibergun's smol runtime: the driver that owns a [`fibergun::Peer`], the WebSocket endpoint at
//! `/gun` (hyper, smol-hyper and async-tungstenite), and the LMDB store on its own thread.
//!
//! The runtime holds no protocol logic: it moves text frames between sockets and the core, applies
//! the core's storage ops in one LMDB transaction per batch, feeds the results back (only then do
//! acks go out), and wakes the core at its deadline.

pub mod budget;
pub mod clock;
pub mod driver;
pub mod http;
pub mod server;
pub mod store_thread;

pub use server::{serve, ServerConfig, ServerError};
