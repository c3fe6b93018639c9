//! The server's configuration ([`ServerConfig`], what `fibergun serve`'s flags fill) and what it
//! is turned into: the runtime's [`RelayConfig`], the store, and the gate.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use fibergun::Limits;
use fibergun_drive::{Keepalive, RelayConfig, StartError};

use crate::gate::address_limits::AddressLimitConfig;
use crate::gate::tokens::AccessConfig;
use crate::gate::ServerGate;
use crate::http::rest::RestConfig;
use crate::storage::s3_flags::S3Settings;
use crate::storage::StoreKind;

/// How to run a server.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// Directory of the store (LMDB, or the S3 store's replica).
    pub data_dir: PathBuf,
    /// The core's limits.
    pub limits: Limits,
    /// LMDB map size in bytes: the most the store can grow to.
    pub map_size: usize,
    /// Seed of the core's generator; fresh when `None`.
    pub seed: Option<u64>,
    /// Threads running socket tasks (the store has its own thread). Runtimes that give each
    /// connection its own threads ignore it.
    pub threads: usize,
    /// Relays to dial and stay connected to (`ws://host:port/gun` or `http://host:port/gun`;
    /// `wss://` or `https://` for TLS).
    pub peers: Vec<String>,
    /// Certificates (PEM) trusted for TLS peers besides the web's roots (`--peer-ca`).
    pub peer_ca: Option<PathBuf>,
    /// Threads checking the signatures of writes into user space.
    pub verify_threads: usize,
    /// The REST API's body limit and CORS origins.
    pub rest: RestConfig,
    /// A folder served at `/` (`--static`).
    pub static_dir: Option<PathBuf>,
    /// Who may read and write, and the tokens.
    pub access: AccessConfig,
    /// WebSocket pings and the idle timeout.
    pub keepalive: Keepalive,
    /// How long a client may take to send its HTTP request head.
    pub handshake_timeout: Duration,
    /// Connections and rates per client address.
    pub address_limits: AddressLimitConfig,
    /// Writes are refused (with an `err`) once the store uses this many bytes; reads go on.
    pub storage_quota: Option<u64>,
    /// Which storage backend.
    pub store: StoreKind,
    /// The bucket of an S3 store.
    pub s3: Option<S3Settings>,
    /// The memory the server's buffers may use together (`--memory-limit`): half for frames
    /// queued to connections, an eighth for frames read and not yet handled, an eighth for the
    /// node cache. `None`: each buffer has only its own limit.
    pub memory_limit: Option<u64>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        let relay = RelayConfig::default();
        ServerConfig {
            listen: relay.listen,
            data_dir: PathBuf::from("./fibergun-data"),
            limits: relay.limits,
            map_size: fibergun_lmdb::DEFAULT_MAP_SIZE,
            seed: None,
            threads: relay.threads,
            peers: Vec::new(),
            peer_ca: None,
            verify_threads: relay.verify_threads,
            rest: RestConfig::default(),
            static_dir: None,
            access: AccessConfig::default(),
            keepalive: relay.keepalive,
            handshake_timeout: relay.handshake_timeout,
            address_limits: Default::default(),
            storage_quota: None,
            memory_limit: None,
            store: Default::default(),
            s3: None,
        }
    }
}

impl ServerConfig {
    /// What the runtime is given: everything but the store, the routes and the gate. Checks
    /// what belongs to the server (access, the static folder) first.
    pub fn relay_config(&self) -> Result<RelayConfig, StartError> {
        self.limits
            .validate()
            .map_err(|e| StartError(format!("invalid limits: {e}")))?;
        self.access.validate().map_err(StartError)?;
        if let Some(dir) = &self.static_dir {
            if !dir.is_dir() {
                return Err(StartError(format!(
                    "--static {}: no such folder",
                    dir.display()
                )));
            }
        }
        let access = self
            .access
            .policy()
            .map(|p| Arc::new(p) as Arc<dyn fibergun::access::AccessPolicy>);
        Ok(RelayConfig {
            listen: self.listen,
            limits: self.limits.clone(),
            seed: self.seed,
            peers: self.peers.clone(),
            peer_ca: self.peer_ca.clone(),
            access,
            threads: self.threads,
            verify_threads: self.verify_threads,
            keepalive: self.keepalive,
            handshake_timeout: self.handshake_timeout,
            memory_limit: self.memory_limit,
        })
    }

    /// Who may connect: the tokens and the limits per address.
    pub fn gate(&self) -> Arc<ServerGate> {
        Arc::new(ServerGate::new(self.access.clone(), self.address_limits))
    }
}
