//! fibergun's smol runtime: the driver that owns a [`fibergun::Peer`], the WebSocket endpoint at
//! `/gun` (hyper, smol-hyper and async-tungstenite), and the LMDB store on its own thread.
//!
//! The runtime holds no protocol logic: it moves text frames between sockets and the core, applies
//! the core's storage ops in one LMDB transaction per batch, feeds the results back (only then do
//! acks go out), and wakes the core at its deadline.

pub mod dial;
pub mod http;
pub mod mailbox;
pub mod rest;
pub mod server;

pub use fibergun_host::{ServerConfig, ServerError};
pub use server::{serve, serve_with, Server};
