//! fibergun's smol runtime: the core driven by async tasks on a smol executor. One task runs the
//! driver ([`fibergun_drive::driver`]); each WebSocket has a task that pumps its frames; an
//! HTTP/1 front (hyper) upgrades `/gun` and hands every other request to the product's
//! [`Routes`]; configured peers are dialled with async-tungstenite (`wss://` ones with the `tls`
//! feature). The store and the signature checks run on threads of their own.
//!
//! The runtime holds no protocol logic and no storage: it moves text frames between sockets and
//! the core, hands the core's storage ops to whatever [`fibergun::Store`] it was given, feeds the
//! results back (only then do acks go out), and wakes the core at its deadline.
//!
//! [`Relay::start`] runs a relay on a thread of its own (for a program that embeds one); [`run`]
//! runs one on the calling thread until a future completes (for a binary).

mod dial;
pub mod http;
mod mailbox;
mod relay;
mod socket;
#[cfg(feature = "tls")]
mod tls;

pub use dial::TlsDial;
pub use http::Routes;
pub use relay::{run, validate, Context, Front, MakeRoutes, Relay};
pub use socket::websocket_config;
