//! The server's configuration ([`ServerConfig`], what `fibergun serve`'s flags fill): the
//! runtime's [`RelayConfig`], and what only the server has (the store, the tokens, the limits
//! per address, the HTTP routes' settings).

use std::path::PathBuf;
use std::sync::Arc;

use fibergun_drive::{RelayConfig, StartError};
use fibergun_rest::tokens::AccessConfig;
use fibergun_rest::RestConfig;

use crate::gate::address_limits::AddressLimitConfig;
use crate::gate::ServerGate;
use crate::storage::s3_flags::S3Settings;
use crate::storage::StoreKind;

/// How to run a server.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// What the runtime is given: where to listen, the core's limits, peers, threads, buffers.
    /// Its `access` policy is made from [`ServerConfig::access`].
    pub relay: RelayConfig,
    /// Directory of the store (LMDB, or the S3 store's replica).
    pub data_dir: PathBuf,
    /// LMDB map size in bytes: the most the store can grow to.
    pub map_size: usize,
    /// Certificates (PEM) trusted for TLS peers besides the web's roots (`--peer-ca`).
    pub peer_ca: Option<PathBuf>,
    /// The REST API's body limit and CORS origins.
    pub rest: RestConfig,
    /// A folder served at `/` (`--static`).
    pub static_dir: Option<PathBuf>,
    /// Who may read and write, and the tokens.
    pub access: AccessConfig,
    /// Connections and rates per client address.
    pub address_limits: AddressLimitConfig,
    /// Writes are refused (with an `err`) once the store uses this many bytes; reads go on.
    pub storage_quota: Option<u64>,
    /// Which storage backend.
    pub store: StoreKind,
    /// The bucket of an S3 store.
    pub s3: Option<S3Settings>,
    /// The database of a PostgreSQL store (a libpq URL or key-value string; several hosts may
    /// be named, with `target_session_attrs=read-write`).
    pub postgres_url: Option<String>,
    /// The admin API's bearer token; the API is off without one.
    pub admin_token: Option<String>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            relay: RelayConfig::default(),
            data_dir: PathBuf::from("./fibergun-data"),
            map_size: fibergun_lmdb::DEFAULT_MAP_SIZE,
            peer_ca: None,
            rest: RestConfig::default(),
            static_dir: None,
            access: AccessConfig::default(),
            address_limits: Default::default(),
            storage_quota: None,
            store: Default::default(),
            s3: None,
            postgres_url: None,
            admin_token: None,
        }
    }
}

impl ServerConfig {
    /// What the runtime is given, with the access policy of the tokens. Checks what can be
    /// checked before anything is opened: the limits and peers, the access settings, the static
    /// folder.
    pub fn relay_config(&self) -> Result<RelayConfig, StartError> {
        self.relay.validate()?;
        if !self.relay.upstreams.is_empty() && self.store == StoreKind::S3 {
            return Err(StartError(
                "--upstream keeps its outbox of writes in the store, and the S3 store's replica \
                 is not durable: use --store lmdb (or memory)"
                    .into(),
            ));
        }
        if !self.relay.upstreams.is_empty() && self.store == StoreKind::Postgres {
            return Err(StartError(
                "--upstream makes a peer that holds what it uses, with an outbox of its own; \
                 relays on PostgreSQL share one database: use --store lmdb (or memory) for an edge"
                    .into(),
            ));
        }
        if self.postgres_url.is_some() && self.store != StoreKind::Postgres {
            return Err(StartError("--postgres-url needs --store postgres".into()));
        }
        self.access.validate().map_err(StartError)?;
        if let Some(admin) = &self.admin_token {
            if admin.len() < 16 {
                return Err(StartError(
                    "--admin-token needs a secret of at least 16 characters".into(),
                ));
            }
            if self.access.tokens.has_secret(admin) {
                return Err(StartError(
                    "--admin-token must differ from every client token".into(),
                ));
            }
        }
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
            access,
            ..self.relay.clone()
        })
    }

    /// Who may connect: the tokens and the limits per address.
    pub fn gate(&self) -> Arc<ServerGate> {
        Arc::new(ServerGate::new(self.access.clone(), self.address_limits))
    }
}
