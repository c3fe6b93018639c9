//! Running the server: the configuration turned into a store, a gate and routes, handed to a
//! runtime. [`serve`] runs it on the calling thread (the `fibergun` binary); [`Server`] runs it
//! on a thread of its own (a program that embeds the whole server, the examples, the tests);
//! [`start_on_threads`] runs it on the std-thread runtime (the `fibergun-threads` binary).

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use fibergun_drive::gun::Gun;
use fibergun_drive::local::Connector;
use fibergun_drive::{RelayConfig, StartError};
use fibergun_smol::{Front, TlsDial};

use crate::http::HttpRoutes;
use crate::storage::Backend;
use crate::ServerConfig;

/// What the smol runtime is given to run this configuration. Everything that can be checked
/// is checked before the store opens, so a bad flag leaves no folder behind.
fn parts(
    config: &ServerConfig,
) -> Result<(RelayConfig, Backend, Front, crate::http::console::History), StartError> {
    let relay = config.relay_config()?;
    let tls = match &config.peer_ca {
        Some(file) => {
            Some(TlsDial::new(Some(file)).map_err(|e| StartError(format!("--peer-ca {e}")))?)
        }
        None => None,
    };
    let mut front = Front {
        gate: config.gate(),
        tls,
        ..Front::default()
    };
    fibergun_smol::validate(&relay, &front)?;
    let (store, store_stats) = Backend::open(config)?;
    let (rest, static_dir) = (config.rest.clone(), config.static_dir.clone());
    let history = crate::http::console::History::default();
    let admin = config.admin_token.clone().map(|token| crate::http::Admin {
        token,
        history: history.clone(),
        settings: crate::http::console::Settings {
            store: config.store.name(),
            storage_quota: config.storage_quota,
            writes: relay.writes.clone(),
        },
    });
    front.routes = Some(Box::new(move |connector: &Connector| {
        Arc::new(HttpRoutes::new(
            rest,
            static_dir,
            store_stats,
            connector,
            admin,
        )) as _
    }));
    Ok((relay, store, front, history))
}

/// Says where the server listens and keeps its data.
fn announce(addr: SocketAddr, config: &ServerConfig) {
    tracing::info!(
        "fibergun listening on ws://{addr}/gun, data in {}",
        config.data_dir.display()
    );
}

/// Runs the server until `shutdown` completes, then finishes in-flight writes and closes the
/// store. Blocks the calling thread.
pub fn serve(
    config: ServerConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), StartError> {
    let (relay, store, front, history) = parts(&config)?;
    let sampled = config.admin_token.is_some();
    fibergun_smol::run(relay, store, front, shutdown, |addr, context| {
        if sampled {
            history.start(&context);
        }
        announce(addr, &config)
    })
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
        let (relay, store, front, history) = parts(&config)?;
        let server = fibergun_smol::Relay::start_with(relay, store, front)?;
        if config.admin_token.is_some() {
            history.start(server.context());
        }
        announce(server.local_addr(), &config);
        Ok(Server(server))
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

/// The std-thread runtime serves `/gun` only and dials plain `ws://` peers: the settings of the
/// HTTP routes and of TLS are an error there.
pub fn check_for_threads(config: &ServerConfig) -> Result<(), StartError> {
    if config.static_dir.is_some()
        || !config.rest.cors_origins.is_empty()
        || config.rest.max_body_bytes != fibergun_rest::RestConfig::default().max_body_bytes
    {
        return Err(StartError(
            "--static, --cors-origin and --max-body-bytes are for the HTTP routes (REST, metrics, \
             static files), which the `fibergun` binary serves; this one serves /gun only"
                .into(),
        ));
    }
    if config.peer_ca.is_some() {
        return Err(StartError(
            "--peer-ca is for wss:// peers, which the `fibergun` binary dials; this one dials \
             plain ws:// peers only"
                .into(),
        ));
    }
    if config.admin_token.is_some() {
        return Err(StartError(
            "--admin-token opens the admin API, an HTTP route of the `fibergun` binary; this \
             one serves /gun only"
                .into(),
        ));
    }
    Ok(())
}

/// Starts the server on the std-thread runtime (the `fibergun-threads` binary), after
/// [`check_for_threads`].
pub fn start_on_threads(config: ServerConfig) -> Result<fibergun_threads::Relay, StartError> {
    check_for_threads(&config)?;
    let relay = config.relay_config()?;
    fibergun_threads::validate(&relay)?;
    let (store, _) = Backend::open(&config)?;
    let server = fibergun_threads::Relay::start_with(relay, store, config.gate())?;
    announce(server.local_addr(), &config);
    Ok(server)
}
