//! What every fibergun runtime needs to drive the core, and none of it protocol: the
//! [driver](driver) that feeds a [`fibergun::Peer`] and carries out its outputs, the store thread
//! (one durable batch in flight, group commit), the verifier threads (signature checks), the
//! clocks, the inbound byte budget and outbound queues, in-process connections and the chain API
//! over them, and the [`Gate`] a product uses to say who may connect.
//!
//! A runtime (smol, std threads, …) adds only sockets and a way to wait: it reads a
//! [`RelayConfig`], takes any store behind the core's [`fibergun::Store`] contract, and runs the
//! loop that [`driver`] describes. Nothing here knows HTTP routes (only the two answers every
//! runtime gives by itself: an error body, and what `/` says), metrics formats, storage backends
//! or command lines; those belong to the product (the `fibergun` server).

mod answers;
pub mod budget;
pub mod clock;
pub mod config;
pub mod driver;
mod gate;
pub mod gun;
pub mod local;
pub mod open_socket;
mod peer_url;
pub mod queue;
mod snapshot;
mod store_thread;
pub mod verifier;
pub mod workers;

pub use answers::{error_json, server_info_json};
pub use config::{Keepalive, RelayConfig, StartError};
pub use gate::{Admission, Gate, OpenGate, Refusal};
pub use peer_url::PeerUrl;
pub use snapshot::{ConnInfo, ConnKind, PeerSnapshot};
