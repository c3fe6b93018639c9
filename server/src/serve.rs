//! Running the server: the configuration turned into a store, a gate and routes, handed to a
//! runtime. [`serve`] runs it on the calling thread (the `fibergun` binary); [`Server`] runs it
//! on a thread of its own (a program that embeds the whole server, the examples, the tests).

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use fibergun_drive::gun::Gun;
use fibergun_drive::local::Connector;
use fibergun_drive::StartError;
use fibergun_smol::Front;

use crate::http::HttpRoutes;
use crate::storage::Backend;
use crate::ServerConfig;

/// What the smol runtime is given to run this configuration.
fn parts(
    config: &ServerConfig,
) -> Result<(fibergun_drive::RelayConfig, Backend, Front), StartError> {
    let relay = config.relay_config()?;
    // Checked before the store opens, so a bad peer or certificate leaves no folder behind.
    relay.validate()?;
    let mut front = Front::with_tls(&relay)?;
    let (store, store_stats) = Backend::open(config)?;
    front.gate = config.gate();
    front.routes = Some(Arc::new(HttpRoutes::new(
        config.rest.clone(),
        config.static_dir.clone(),
        store_stats,
    )));
    tracing::info!("data in {}", config.data_dir.display());
    Ok((relay, store, front))
}

/// Runs the server until `shutdown` completes, then finishes in-flight writes and closes the
/// store. Blocks the calling thread.
pub fn serve(
    config: ServerConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), StartError> {
    let (relay, store, front) = parts(&config)?;
    fibergun_smol::run(relay, store, front, shutdown, |_, _| {})
}

/// The server running on a thread of its own, for programs that embed one.
///
/// ```no_run
/// use fibergun_server::{Server, ServerConfig};
///
/// let server = Server::start(ServerConfig::default()).expect("started");
/// let gun = server.gun();
/// gun.get("greeting").put_blocking(&serde_json::json!({"text": "hello"})).expect("durable");
/// server.shutdown();
/// ```
pub struct Server(fibergun_smol::Relay);

impl Server {
    /// Opens the store, binds the listener and starts serving. Returns once it is listening.
    pub fn start(config: ServerConfig) -> Result<Server, StartError> {
        let (relay, store, front) = parts(&config)?;
        fibergun_smol::Relay::start_with(relay, store, front).map(Server)
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.0.local_addr()
    }

    /// Opens in-process connections to this server.
    pub fn connector(&self) -> &Connector {
        self.0.connector()
    }

    /// The chain API on a new in-process connection.
    pub fn gun(&self) -> Gun {
        self.0.gun()
    }

    /// Finishes the writes in flight, closes every connection and the store. Blocks until done.
    pub fn shutdown(self) {
        self.0.shutdown()
    }
}

/// Starts the server on the std-thread runtime (the `fibergun-threads` binary): `/gun` only, so
/// the flags of the HTTP routes are refused.
pub fn start_on_threads(config: ServerConfig) -> Result<fibergun_threads::Relay, StartError> {
    let relay = config.relay_config()?;
    relay.validate()?;
    fibergun_threads::relay::refuse_tls(&relay)?;
    let (store, _) = Backend::open(&config)?;
    tracing::info!("data in {}", config.data_dir.display());
    fibergun_threads::Relay::start_with(relay, store, config.gate())
}
