//! Putting it together: start the store and verifier threads, bind the listener, run the driver
//! and the socket tasks on a smol executor, stop cleanly.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize};
use std::sync::Arc;
use std::time::Duration;

use async_io::Timer;
use fibergun::Store;
use fibergun_drive::budget::ByteBudget;
use fibergun_drive::driver::Driver;
use fibergun_drive::gun::Gun;
use fibergun_drive::local::Connector;
use fibergun_drive::queue::OutboundTotal;
use fibergun_drive::workers::{Shared, Workers};
use fibergun_drive::{Gate, Keepalive, OpenGate, PeerSnapshot, RelayConfig, StartError};
use smol::channel::{Receiver, Sender};
use smol::Executor;

use crate::dial::{dial, TlsDial};
use crate::http::{serve_connection, Routes};

/// Makes a product's routes for a relay, once its in-process connections exist.
pub type MakeRoutes = Box<dyn FnOnce(&Connector) -> Arc<dyn Routes> + Send>;
use crate::socket::ConnSender;

/// The driver's events, with this runtime's connection handle.
pub type DriverEvent = fibergun_drive::driver::DriverEvent<ConnSender>;

/// What a relay's socket tasks, its HTTP front and its product's routes share.
pub struct Context {
    /// The driver's inbox.
    pub(crate) events: Sender<DriverEvent>,
    /// Where socket tasks are spawned.
    pub(crate) executor: Arc<Executor<'static>>,
    /// Frames over this many bytes are answered by the core with an error; frames over twice
    /// this close the socket (the WebSocket layer will not buffer them).
    pub(crate) max_frame_bytes: usize,
    /// Source of connection ids (shared with in-process connections).
    pub(crate) next_conn: Arc<AtomicU64>,
    /// The most a connection's writer may have queued (for its congestion marks).
    pub(crate) max_outbound_queue_bytes: usize,
    /// Bytes of inbound frames waiting for the driver.
    pub(crate) inbound: Arc<ByteBudget>,
    /// WebSockets whose task is still running (writers may still be flushing at shutdown).
    pub(crate) open_sockets: AtomicUsize,
    /// WebSocket pings, and when a silent peer counts as dead.
    pub(crate) keepalive: Keepalive,
    /// How long a client may take to send its request head.
    pub(crate) handshake_timeout: Duration,
    /// Bytes queued for all connections, against the memory limit.
    pub(crate) outbound: Arc<OutboundTotal>,
    /// Who may connect.
    pub(crate) gate: Arc<dyn Gate>,
    /// The product's routes besides `/gun`.
    pub(crate) routes: Option<Arc<dyn Routes>>,
    /// In-process connections to this relay.
    connector: Connector,
}

impl Context {
    /// Opens in-process connections to this relay.
    pub fn connector(&self) -> &Connector {
        &self.connector
    }

    /// The core's figures, asked of the driver; `None` if it does not answer within a second.
    pub async fn snapshot(&self) -> Option<PeerSnapshot> {
        self.ask(DriverEvent::Snapshot).await
    }

    /// The open connections, at most `max` (in id order), asked of the driver; `None` if it does
    /// not answer within a second.
    pub async fn connections(&self, max: usize) -> Option<Vec<fibergun_drive::ConnInfo>> {
        self.ask(|reply| DriverEvent::Connections(max, reply)).await
    }

    /// Sends the driver the question `event` makes of a reply channel, and waits a second at most
    /// for the answer.
    async fn ask<T>(
        &self,
        event: impl FnOnce(smol::channel::Sender<T>) -> DriverEvent,
    ) -> Option<T> {
        let (tx, rx) = smol::channel::bounded(1);
        self.events.send(event(tx)).await.ok()?;
        smol::future::or(async { rx.recv().await.ok() }, async {
            Timer::after(Duration::from_secs(1)).await;
            None
        })
        .await
    }
}

/// What a product adds to a relay's front: who may connect, its HTTP routes besides `/gun`, and
/// how TLS peers are dialled. [`Front::default`] admits everyone, serves `/gun` (and a small
/// JSON answer at `/`), and dials `wss://` peers trusting the web's roots with the `tls`
/// feature (without it, a relay with TLS peers does not start).
pub struct Front {
    /// Who may connect.
    pub gate: Arc<dyn Gate>,
    /// Every request but `/gun`, made once the relay's in-process connections exist.
    pub routes: Option<MakeRoutes>,
    /// Dials `wss://` peers; `None` for the default.
    pub tls: Option<TlsDial>,
}

impl Default for Front {
    fn default() -> Self {
        Front {
            gate: Arc::new(OpenGate),
            routes: None,
            tls: None,
        }
    }
}

/// Checks what can be checked before anything is opened: the configuration, and that its TLS
/// peers can be dialled.
pub fn validate(config: &RelayConfig, front: &Front) -> Result<(), StartError> {
    config.validate()?;
    if config.has_tls_peers() && front.tls.is_none() && !cfg!(feature = "tls") {
        return Err(StartError(
            "wss:// peers need TLS, which this build of the smol runtime does not have (its tls feature)"
                .into(),
        ));
    }
    Ok(())
}

/// How TLS peers are dialled: the front's way, or the web's roots.
fn tls_dial(config: &RelayConfig, front: Option<TlsDial>) -> Result<Option<TlsDial>, StartError> {
    if front.is_some() || !config.has_tls_peers() {
        return Ok(front);
    }
    #[cfg(feature = "tls")]
    return TlsDial::new(None).map(Some).map_err(StartError);
    #[cfg(not(feature = "tls"))]
    Err(StartError(
        "this build of the smol runtime dials no TLS peers".into(),
    ))
}

/// A relay running on a thread of its own, for programs that embed one.
///
/// ```no_run
/// use fibergun_drive::RelayConfig;
/// use fibergun_smol::Relay;
///
/// let store = fibergun::MemStore::new(); // or fibergun_lmdb::LmdbStore::open(…)
/// let relay = Relay::start(RelayConfig::default(), store).expect("started");
/// let gun = relay.gun();
/// gun.get("greeting").put_blocking(&serde_json::json!({"text": "hello"})).expect("stored");
/// relay.shutdown();
/// ```
pub struct Relay {
    addr: SocketAddr,
    ctx: Arc<Context>,
    stop: smol::channel::Sender<()>,
    thread: std::thread::JoinHandle<Result<(), StartError>>,
}

impl Relay {
    /// Starts the store's thread, binds the listener and starts serving `/gun`. Returns once it
    /// is listening.
    pub fn start(
        config: RelayConfig,
        store: impl Store + Send + 'static,
    ) -> Result<Relay, StartError> {
        Relay::start_with(config, store, Front::default())
    }

    /// [`Relay::start`] with a product's front.
    pub fn start_with(
        config: RelayConfig,
        store: impl Store + Send + 'static,
        front: Front,
    ) -> Result<Relay, StartError> {
        Relay::spawn(config, store, front, true)
    }

    /// A relay that listens nowhere: its only connections are in-process ones ([`Relay::gun`])
    /// and the upstreams and peers it dials. An application's local peer: it keeps what the
    /// application reads and writes, works offline and syncs with its upstreams when it can.
    /// `config.listen` is not used.
    ///
    /// ```no_run
    /// use fibergun_drive::RelayConfig;
    /// use fibergun_smol::Relay;
    ///
    /// let config = RelayConfig {
    ///     upstreams: vec!["https://relay.example/gun".into()],
    ///     ..RelayConfig::default()
    /// };
    /// let store = fibergun::MemStore::new(); // or fibergun_lmdb::LmdbStore::open(…)
    /// let peer = Relay::embedded(config, store).expect("started");
    /// let gun = peer.gun();
    /// gun.get("todo").get("t1").put_blocking(&serde_json::json!({"text": "milk"})).expect("kept");
    /// println!("{:?}", peer.sync_status()); // connected upstreams, writes still waiting
    /// peer.shutdown();
    /// ```
    pub fn embedded(
        config: RelayConfig,
        store: impl Store + Send + 'static,
    ) -> Result<Relay, StartError> {
        Relay::spawn(config, store, Front::default(), false)
    }

    fn spawn(
        config: RelayConfig,
        store: impl Store + Send + 'static,
        front: Front,
        listen: bool,
    ) -> Result<Relay, StartError> {
        let (stop, stopped) = smol::channel::bounded::<()>(1);
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("fibergun-relay".into())
            .spawn(move || {
                let shutdown = async move {
                    let _ = stopped.recv().await;
                };
                let ready = move |addr, ctx| {
                    let _ = ready_tx.send((addr, ctx));
                };
                run_on(config, store, front, listen, shutdown, ready)
            })
            .map_err(|e| StartError(format!("cannot start the relay thread: {e}")))?;
        match ready_rx.recv() {
            Ok((addr, ctx)) => Ok(Relay {
                addr,
                ctx,
                stop,
                thread,
            }),
            Err(_) => Err(thread
                .join()
                .ok()
                .and_then(Result::err)
                .unwrap_or_else(|| StartError("the relay thread ended".into()))),
        }
    }

    /// The address it listens on (`0.0.0.0:0` for an [embedded](Relay::embedded) one).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Opens in-process connections to this relay.
    pub fn connector(&self) -> &Connector {
        self.ctx.connector()
    }

    /// The chain API on a new in-process connection.
    pub fn gun(&self) -> Gun {
        Gun::connect(self.ctx.connector())
    }

    /// What its socket tasks share: from async code, `context().snapshot().await`.
    pub fn context(&self) -> &Arc<Context> {
        &self.ctx
    }

    /// The core's figures now, blocking this thread (`None` if the core does not answer within
    /// a second).
    pub fn snapshot(&self) -> Option<PeerSnapshot> {
        smol::block_on(self.ctx.snapshot())
    }

    /// Where each upstream stands: connected or not, and the local writes it has not
    /// acknowledged yet (blocking this thread).
    pub fn sync_status(&self) -> Vec<fibergun::UpstreamStatus> {
        self.snapshot().map(|s| s.upstreams).unwrap_or_default()
    }

    /// Finishes the writes in flight, closes every connection and the store. Blocks until done.
    pub fn shutdown(self) {
        let _ = self.stop.send_blocking(());
        match self.thread.join() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::error!("the relay stopped with an error: {e}"),
            Err(_) => tracing::error!("the relay thread panicked"),
        }
    }
}

/// Runs a relay on the calling thread until `shutdown` completes, then finishes the writes in
/// flight and closes the store. `ready` is told the address and the relay's [`Context`] (its
/// in-process connections, its core's figures) once it listens.
pub fn run<S>(
    config: RelayConfig,
    store: S,
    front: Front,
    shutdown: impl Future<Output = ()> + Send + 'static,
    ready: impl FnOnce(SocketAddr, Arc<Context>),
) -> Result<(), StartError>
where
    S: Store + Send + 'static,
{
    run_on(config, store, front, true, shutdown, ready)
}

/// [`run`], listening only when `listen`.
fn run_on<S>(
    config: RelayConfig,
    store: S,
    front: Front,
    listen: bool,
    shutdown: impl Future<Output = ()> + Send + 'static,
    ready: impl FnOnce(SocketAddr, Arc<Context>),
) -> Result<(), StartError>
where
    S: Store + Send + 'static,
{
    validate(&config, &front)?;
    let tls = tls_dial(&config, front.tls)?;
    let mut store = store;
    let peer = config.new_peer(&mut store)?;
    let listener = if listen {
        Some(
            smol::block_on(smol::net::TcpListener::bind(config.listen))
                .map_err(|e| StartError(format!("cannot listen on {}: {e}", config.listen)))?,
        )
    } else {
        None
    };
    let local = match &listener {
        Some(l) => l.local_addr().map_err(|e| StartError(e.to_string()))?,
        None => SocketAddr::from(([0, 0, 0, 0], 0)),
    };

    let (events_tx, events_rx) = smol::channel::bounded::<DriverEvent>(4096);
    let to_driver = events_tx.clone();
    let background = Workers::start(store, config.verify_threads, move |event| {
        let _ = to_driver.send_blocking(event);
    });
    tracing::debug!(pid = peer.pid(), "listening on ws://{local}/gun");

    let executor = Arc::new(Executor::new());
    let (stop_workers, workers_stopped) = smol::channel::bounded::<()>(1);
    let workers: Vec<_> = (1..config.threads.max(1))
        .map(|i| {
            let ex = executor.clone();
            let stopped = workers_stopped.clone();
            std::thread::Builder::new()
                .name(format!("fibergun-io-{i}"))
                .spawn(move || smol::block_on(ex.run(stopped.recv())))
                .expect("spawning an io thread")
        })
        .collect();

    let local_events = events_tx.clone();
    let Shared {
        inbound,
        outbound,
        next_conn,
        connector,
    } = Shared::new(&config, move |event| {
        let _ = local_events.send_blocking(DriverEvent::Local(event));
    });
    let ctx = Arc::new(Context {
        events: events_tx.clone(),
        executor: executor.clone(),
        max_frame_bytes: config.limits.max_frame_bytes,
        next_conn,
        max_outbound_queue_bytes: config.limits.max_outbound_queue_bytes,
        inbound: inbound.clone(),
        open_sockets: Default::default(),
        keepalive: config.keepalive,
        handshake_timeout: config.handshake_timeout,
        outbound: outbound.clone(),
        gate: front.gate,
        routes: front.routes.map(|make| make(&connector)),
        connector: connector.clone(),
    });
    let sockets = ctx.clone();
    let dial_ctx = ctx.clone();
    let dialer = move |remote, url: String| {
        dial_ctx
            .executor
            .spawn(dial(remote, url, dial_ctx.clone(), tls.clone()))
            .detach();
    };
    let driver = executor.spawn(drive(
        Driver::new(
            peer,
            background.store,
            inbound,
            Box::new(dialer),
            background.verifier,
            outbound,
        ),
        events_rx,
    ));
    ready(local, ctx.clone());
    let accept_ex = executor.clone();
    let accept = async move {
        let Some(listener) = listener else {
            // Embedded: nothing to accept.
            return std::future::pending().await;
        };
        loop {
            match listener.accept().await {
                Ok((stream, peer)) => {
                    let _ = stream.set_nodelay(true);
                    accept_ex
                        .spawn(serve_connection(stream, peer, ctx.clone()))
                        .detach();
                }
                Err(e) => {
                    tracing::warn!("accept failed: {e}");
                    Timer::after(Duration::from_millis(50)).await;
                }
            }
        }
    };
    // The accept loop and the wait for shutdown run as tasks of their own, each polled when its
    // own wake comes: the future handed to `block_on` is polled again at every wake of this
    // thread, and an accept polled so tries `accept4` each time (async-io retries the call after
    // any wake), which makes and frees a socket in the kernel only to find no connection.
    let accepting = executor.spawn(accept);
    let shutdown = executor.spawn(shutdown);
    smol::block_on(executor.run(async {
        shutdown.await;
        // Cancelled, and awaited, so that no accept is under way once the driver hears of the
        // shutdown.
        accepting.cancel().await;
        let _ = events_tx.send(DriverEvent::Shutdown).await;
        driver.await;
        // The driver has answered every write and asked each socket to close; give the writers a
        // moment to send those last frames.
        let deadline = std::time::Instant::now() + Duration::from_secs(2);
        while sockets
            .open_sockets
            .load(std::sync::atomic::Ordering::SeqCst)
            > 0
            && std::time::Instant::now() < deadline
        {
            Timer::after(Duration::from_millis(10)).await;
        }
    }));
    // The driver owned the store's channel; with it gone the store thread closes the store.
    let _ = background.store_thread.join();
    // The driver owned the verifier's channel too.
    background.verifier_threads.join();
    drop(stop_workers);
    for w in workers {
        let _ = w.join();
    }
    tracing::info!("fibergun stopped; store closed");
    Ok(())
}

/// The driver's loop: wait for an event or the core's deadline, hand it over, carry out what the
/// core wants. Runs until shutdown has finished every write in flight.
async fn drive(mut driver: Driver<ConnSender>, events: Receiver<DriverEvent>) {
    loop {
        driver.step();
        if driver.finished() {
            break;
        }
        let event = match driver.deadline() {
            Some(at) if at <= std::time::Instant::now() => None,
            Some(at) => {
                smol::future::or(async { events.recv().await.ok() }, async {
                    Timer::at(at).await;
                    None
                })
                .await
            }
            None => match events.recv().await {
                Ok(event) => Some(event),
                // Every sender is gone: nothing more can happen.
                Err(_) => break,
            },
        };
        match event {
            None => driver.timeout(),
            Some(event) => driver.handle_burst(event, || events.try_recv().ok()),
        }
    }
    driver.close_all();
}

#[cfg(test)]
mod tests {
    use super::*;

    /// CI runs this test both with the `tls` feature (in the workspace, where the server turns
    /// it on) and without it (`cargo test -p fibergun-smol`).
    #[test]
    fn tls_peers_start_with_the_tls_feature_and_are_refused_without_it() {
        let config = RelayConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            peers: vec!["wss://127.0.0.1:1/gun".into()],
            threads: 1,
            verify_threads: 1,
            ..RelayConfig::default()
        };
        let started = Relay::start(config, fibergun::MemStore::new());
        if cfg!(feature = "tls") {
            started.expect("a TLS peer is dialled").shutdown();
        } else {
            let error = started.err().expect("a TLS peer is refused");
            assert!(error.0.contains("tls feature"), "{}", error.0);
        }
    }
}
