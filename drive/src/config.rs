//! How a runtime runs one relay: where it listens, the core's settings, its threads and buffers.
//! Every runtime reads the same [`RelayConfig`]; a product (the `fibergun` server) fills it from
//! its own configuration and command line.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use fibergun::access::AccessPolicy;
use fibergun::Limits;

use crate::budget::ByteBudget;
use crate::peer_url::PeerUrl;
use crate::queue::OutboundTotal;

/// How to run a relay.
#[derive(Clone)]
pub struct RelayConfig {
    /// Address to listen on (`127.0.0.1:0` for any free port).
    pub listen: SocketAddr,
    /// The core's limits.
    pub limits: Limits,
    /// Seed of the core's generator; fresh when `None`.
    pub seed: Option<u64>,
    /// Relays to dial and stay connected to as relay links, exchanging whole graphs
    /// (`ws://host:port/gun` or GUN's `http://host:port/gun`; `wss://` or `https://` for TLS,
    /// where the runtime dials it).
    pub peers: Vec<String>,
    /// Relays to sync with on demand, as a GUN peer does with its `peers`: what is read here is
    /// asked of them, what is written here is sent to them (in the same forms as `peers`). The
    /// store must keep an outbox (LMDB, memory).
    pub upstreams: Vec<String>,
    /// Who may read and write what; everything is open when `None`.
    pub access: Option<Arc<dyn AccessPolicy>>,
    /// The operator's write rules for a relay open to the public ([`fibergun::WritePolicy`]).
    pub writes: fibergun::WritePolicy,
    /// Threads running socket tasks. Runtimes that give each connection its own threads
    /// ignore it.
    pub threads: usize,
    /// Threads checking the signatures of writes into user space.
    pub verify_threads: usize,
    /// WebSocket pings and the idle timeout.
    pub keepalive: Keepalive,
    /// How long a client may take to send its HTTP request head.
    pub handshake_timeout: Duration,
    /// The memory the relay's buffers may use together: half for frames queued to connections,
    /// an eighth for frames read and not yet handled, an eighth for the node cache. `None`:
    /// each buffer has only its own limit.
    pub memory_limit: Option<u64>,
}

impl std::fmt::Debug for RelayConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RelayConfig")
            .field("listen", &self.listen)
            .field("limits", &self.limits)
            .field("peers", &self.peers)
            .field("access", &self.access.is_some())
            .field("threads", &self.threads)
            .field("verify_threads", &self.verify_threads)
            .field("memory_limit", &self.memory_limit)
            .finish_non_exhaustive()
    }
}

impl Default for RelayConfig {
    fn default() -> Self {
        RelayConfig {
            listen: ([127, 0, 0, 1], 8765).into(),
            limits: Limits::default(),
            seed: None,
            peers: Vec::new(),
            upstreams: Vec::new(),
            access: None,
            writes: fibergun::WritePolicy::default(),
            threads: default_threads(),
            verify_threads: default_threads(),
            keepalive: Keepalive::default(),
            handshake_timeout: Duration::from_secs(10),
            memory_limit: None,
        }
    }
}

/// One thread per core, for work that scales with cores.
pub fn default_threads() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get())
}

/// WebSocket keepalive: a ping every `ping_interval`; a connection from which nothing (not even
/// a pong) came for `idle_timeout` is closed as dead.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Keepalive {
    /// Between pings.
    pub ping_interval: Duration,
    /// Silence after which the peer counts as gone.
    pub idle_timeout: Duration,
}

impl Default for Keepalive {
    fn default() -> Self {
        Keepalive {
            ping_interval: Duration::from_secs(20),
            idle_timeout: Duration::from_secs(60),
        }
    }
}

impl RelayConfig {
    /// The core this configuration describes, with a fresh seed unless one is set, and the
    /// operator's bans and takedowns read from `store` ([`fibergun::moderation`]). Fails on
    /// invalid limits, a peer address that cannot be dialled, or a store that cannot be read.
    pub fn new_peer(&self, store: &mut impl fibergun::Store) -> Result<fibergun::Peer, StartError> {
        let (peers, upstreams) = self.validate()?;
        let mut limits = self.limits.clone();
        if let Some(share) = self.memory_share(8) {
            limits.max_cache_bytes = limits.max_cache_bytes.min(share);
        }
        let config = fibergun::Config {
            seed: self.seed.unwrap_or_else(crate::clock::fresh_seed),
            limits,
            peers: peers.into_iter().map(|p| p.ws_url).collect(),
            upstreams: upstreams.into_iter().map(|p| p.ws_url).collect(),
            access: self.access.clone(),
            writes: self.writes.clone(),
            ..fibergun::Config::default()
        };
        let lists = fibergun::moderation::Moderation::from_results(
            store.apply(fibergun::moderation::Moderation::load_ops()),
        )
        .map_err(StartError)?;
        let mut peer = fibergun::Peer::new(config, crate::clock::now());
        peer.restore_moderation(lists);
        Ok(peer)
    }

    /// Checks what can be checked before anything is opened: the limits and every peer and
    /// upstream address. Both come back parsed.
    pub fn validate(&self) -> Result<(Vec<PeerUrl>, Vec<PeerUrl>), StartError> {
        self.limits
            .validate()
            .map_err(|e| StartError(e.to_string()))?;
        let parse = |urls: &[String]| -> Result<Vec<PeerUrl>, StartError> {
            urls.iter()
                .map(|p| PeerUrl::parse(p).map_err(StartError))
                .collect()
        };
        Ok((parse(&self.peers)?, parse(&self.upstreams)?))
    }

    /// Whether a configured peer or upstream is dialled over TLS (`wss://`, `https://`).
    pub fn has_tls_peers(&self) -> bool {
        self.peers
            .iter()
            .chain(&self.upstreams)
            .any(|p| PeerUrl::parse(p).is_ok_and(|u| u.tls))
    }

    /// `1/parts` of the memory limit, in bytes, if there is one.
    pub fn memory_share(&self, parts: u64) -> Option<usize> {
        self.memory_limit
            .map(|m| usize::try_from(m / parts).unwrap_or(usize::MAX))
    }

    /// The most all connections' queued frames may hold together: half the memory limit.
    pub fn outbound_total(&self) -> Arc<OutboundTotal> {
        OutboundTotal::new(self.memory_share(2))
    }

    /// The budget of inbound frames waiting for the driver: four of the largest frames, and
    /// with a memory limit at most an eighth of it.
    pub fn inbound_budget(&self) -> Arc<ByteBudget> {
        let four_frames = self.limits.max_frame_bytes.saturating_mul(4);
        let bytes = self
            .memory_share(8)
            .map_or(four_frames, |share| four_frames.min(share));
        Arc::new(ByteBudget::new(bytes))
    }
}

/// Why a relay could not start.
#[derive(Debug)]
pub struct StartError(pub String);

impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for StartError {}
