//! fibergun's std-thread runtime: the same core as the smol runtime, driven by plain threads and
//! blocking sockets, with no async runtime.
//!
//! - one thread accepts connections; each connection has a reader thread (which also did its
//!   HTTP handshake) and a writer thread;
//! - one thread owns the [`fibergun::Peer`] through the shared driver
//!   ([`fibergun_drive::driver`]), waiting on a channel with the core's deadline as its timeout;
//! - the store has its own thread (group commit), as in every runtime.
//!
//! It serves `/gun` (and a small JSON answer at `/`) and dials plain `ws://` peers. See
//! [`Relay`].

mod dial;
mod http;
mod relay;
mod socket;

pub use relay::{validate, Relay};
