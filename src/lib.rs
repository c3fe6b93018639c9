//! # fibergun: a sans-IO GUN peer
//!
//! This crate is the protocol core of fibergun, a GUN-compatible peer and relay. It speaks GUN's
//! wire protocol, merges writes with HAM exactly as GUN JS does, and serves reads, but it performs
//! no I/O: no sockets, no files, no clock reads, no threads, no ambient randomness. A runtime (see
//! `runtimes/` in the repository) owns the sockets, the store and the clock, and moves data in and
//! out of a [`Peer`].
//!
//! ## The drive loop
//!
//! A runtime owns one [`Peer`] and repeats: hand it input, drain its output (acting on every
//! variant), feed back what acting produced, sleep until the next input or deadline.
//!
//! ```
//! use std::time::Instant;
//! use fibergun::{ConnId, Config, Direction, Input, MemStore, Now, Output, Peer, Store};
//!
//! let now = || Now { mono: Instant::now(), wall_ms: 1_700_000_000_000.0 };
//! let config = Config { peers: vec!["ws://127.0.0.1:1/gun".into()], ..Config::default() };
//! let mut peer = Peer::new(config, now());
//! let mut store = MemStore::new();
//! let mut sent = Vec::new();
//!
//! // 1. Hand the peer one input: a connection, a frame, a storage result, or a timeout.
//! let inbound = Input::Connected { conn: ConnId(1), direction: Direction::Inbound };
//! peer.handle_input(now(), inbound).unwrap();
//! peer.handle_input(now(), Input::Frame {
//!     conn: ConnId(1),
//!     text: r##"{"#":"p1","put":{"a":{"_":{"#":"a",">":{"x":1}},"x":"hi"}}}"##,
//! }).unwrap();
//!
//! // 2. Drain every output and act on it. What acting produces (a commit, a closed socket, a
//! //    dial's outcome, signature checks' results) is fed back as inputs after the drain, never
//! //    during it; it may produce more output (such as the put's ack), so repeat until quiet.
//! loop {
//!     let (mut ops, mut closed, mut dials, mut checked) = (vec![], vec![], vec![], vec![]);
//!     while let Some(out) = peer.poll_output() {
//!         match out {
//!             // To the connection's writer.
//!             Output::Send { conn, text } => sent.push((conn, text)),
//!             // Close the socket; then report it gone.
//!             Output::Close { conn, reason: _ } => closed.push(conn),
//!             // Collected, then applied together in one durable transaction.
//!             Output::Store(op) => ops.push(op),
//!             // Signature checks: pure, but each costs about a small commit, so a runtime runs
//!             // them away from its socket loops (on threads) and reports the results.
//!             Output::Verify { id, checks } => {
//!                 checked.push((id, checks.iter().map(|c| c.holds()).collect::<Vec<bool>>()))
//!             }
//!             // Open a WebSocket to a configured peer. This example has no network: it fails.
//!             Output::Dial { remote, url: _ } => dials.push(remote),
//!             // For the application and the logs.
//!             Output::Event(event) => eprintln!("{event:?}"),
//!         }
//!     }
//!     if ops.is_empty() && closed.is_empty() && dials.is_empty() && checked.is_empty() {
//!         break;
//!     }
//!     for conn in closed {
//!         peer.handle_input(now(), Input::Disconnected { conn }).unwrap();
//!     }
//!     for remote in dials {
//!         peer.handle_input(now(), Input::DialFailed { remote }).unwrap();
//!     }
//!     for (id, results) in checked {
//!         peer.handle_input(now(), Input::Verified { id, results: &results }).unwrap();
//!     }
//!     let ids: Vec<_> = ops.iter().map(|op| op.id()).collect();
//!     for (op, result) in ids.into_iter().zip(store.apply(ops)) {
//!         peer.handle_input(now(), Input::StoreDone { op, result }).unwrap();
//!     }
//! }
//!
//! // 3. Sleep until the next input or `peer.poll_timeout()`, whichever is first; at the deadline
//! //    feed `Input::Timeout`.
//! assert!(peer.poll_timeout().is_some()); // the keepalive, and the redial of the peer
//! assert!(sent.iter().any(|(_, text)| text.contains(r##""@":"p1","ok":true"##)));
//! ```
//!
//! Rules of the loop:
//! - Drain [`Peer::poll_output`] to `None` after handling input. Several inputs may be fed before
//!   one drain (every result of a store batch, every frame already waiting): replies to one
//!   connection are then packed into fewer frames.
//! - Apply storage ops in the order they were emitted and return their results in that order, each
//!   only after the transaction holding it has committed durably ([`store`] states the contract).
//!   The peer acknowledges a put only when its results arrive, so an ack always follows a commit.
//! - Time is an input: [`Now`] carries a monotonic instant for timers and the wall clock for HAM.
//!   The core never reads a clock.
//! - [`Output::Dial`] asks for a WebSocket to a configured peer; report [`Input::Dialled`] or
//!   [`Input::DialFailed`]. The core decides when to try again.
//! - [`Output::Verify`] asks for signature checks; report [`Input::Verified`]. A put waits for
//!   them at most [`Limits::max_verify_ms`]: a runtime that never answers gets that put refused
//!   with an `err`, not a wedged writer.
//! - [`Output::Close`] asks for a connection to be closed; report [`Input::Disconnected`].
//! - Flow control: report [`Input::Congested`] when frames for a connection pile up unsent, and
//!   [`Input::Drained`] when they have gone out; long answers to it wait in between. While
//!   [`Peer::is_backlogged`] is true, hold further frames (and so stop reading sockets): the
//!   storage results being waited for will bring it back to false.
//!
//! ## Errors
//!
//! Anything a remote peer sends is answered (an `err` reply, a `dam:"!"` notice) or dropped; it
//! never makes [`Peer::handle_input`] fail. Only a runtime's own mistakes ([`ApiMisuse`]) are errors.
//! Every input a client controls is bounded by [`Limits`].
//!
//! ## Modules
//!
//! - [`graph`]: souls, keys, states, values, nodes, and their parser.
//! - [`wire`]: frames and messages.
//! - [`json`]: JSON text exactly as JavaScript writes it (for hashes and signatures).
//! - [`ham`]: the conflict rule.
//! - [`lex`]: key ranges and read budgets.
//! - [`sea`]: SEA keys and signatures, checked and made as GUN JS does.
//! - [`store`]: the storage contract and the in-memory reference store.
//! - [`access`]: who may read and write what (tokens, the runtime's principals).
//! - [`client`]: a GUN client as a state machine, stepped like the peer (both are a
//!   [`Machine`]).
//! - [`rng`]: the seeded generator every random choice comes from.
//! - [`testing`]: a harness that steps a peer against the in-memory store.
//!
//! The rest is private: the peer itself ([`Peer`] and its inputs and outputs are here at the
//! root), its limits ([`Limits`]), the read cache, the deduplication table, the subscriptions
//! and the outbox that packs frames.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod access;
mod cache;
pub mod client;
mod dedup;
#[doc(hidden)]
pub mod fuzzing;
pub mod graph;
pub mod ham;
pub mod json;
pub mod lex;
mod limits;
mod machine;
pub mod moderation;
mod outbox;
mod peer;
mod rate;
pub mod rng;
pub mod sea;
pub mod store;
mod subscriptions;
pub mod testing;
pub mod wire;
pub mod write_policy;

pub use graph::{Field, Graph, GraphError, Key, Node, Soul, State, Value};
pub use limits::{InvalidLimits, Limits};
pub use machine::Machine;
pub use peer::{
    ApiMisuse, Config, ConnId, Direction, ErrorCounts, ErrorKind, Event, Input, LatencyHistogram,
    Now, Output, Peer, RemoteId, RemoteState, RemoteStatus, Stats, UpstreamStatus, VerifyId,
    LATENCY_BOUNDS,
};
pub use store::{FeedEvent, FeedSink, MemStore, OpId, ReadQuery, Store, StoreOp, StoreResult};
pub use write_policy::{RefusalCounts, Rule, WritePolicy};

/// Hash maps in the core use a hasher seeded from the config, never from ambient randomness, and
/// are only used for lookups: nothing the core sends depends on their iteration order.
pub(crate) type HashMap<K, V> = hashbrown::HashMap<K, V, foldhash::fast::FixedState>;
pub(crate) type HashSet<K> = hashbrown::HashSet<K, foldhash::fast::FixedState>;
