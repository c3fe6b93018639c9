//! Putting it together: open the store, bind the listener, run the driver, stop cleanly.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use async_io::Timer;
use fibergun_host::driver::Driver;
use fibergun_host::gun::Gun;
use fibergun_host::local::Connector;
use fibergun_host::storage::Backend;
use fibergun_host::workers::{Shared, Workers};
use fibergun_host::{ServerConfig, ServerError};
use smol::channel::Receiver;
use smol::Executor;

use crate::dial::dial;
use crate::http::{serve_connection, ConnSender, DriverEvent, HttpContext};

/// Runs a relay until `shutdown` completes, then finishes in-flight writes and closes the store.
/// Blocks the calling thread.
pub fn serve(
    config: ServerConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    serve_with(config, shutdown, |_, _| {})
}

/// A relay running on a thread of its own, for programs that embed one.
///
/// ```no_run
/// use fibergun_smol::{Server, ServerConfig};
///
/// let server = Server::start(ServerConfig::default()).expect("started");
/// let gun = server.gun();
/// gun.get("greeting").put_blocking(&serde_json::json!({"text": "hello"})).expect("durable");
/// server.shutdown();
/// ```
pub struct Server {
    addr: SocketAddr,
    connector: Connector,
    stop: smol::channel::Sender<()>,
    thread: std::thread::JoinHandle<Result<(), ServerError>>,
}

impl Server {
    /// Opens the store, binds the listener and starts serving. Returns once it is listening.
    pub fn start(config: ServerConfig) -> Result<Server, ServerError> {
        let (stop, stopped) = smol::channel::bounded::<()>(1);
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("fibergun-server".into())
            .spawn(move || {
                let shutdown = async move {
                    let _ = stopped.recv().await;
                };
                serve_with(config, shutdown, move |addr, connector| {
                    let _ = ready_tx.send((addr, connector));
                })
            })
            .map_err(|e| ServerError(format!("cannot start the server thread: {e}")))?;
        match ready_rx.recv() {
            Ok((addr, connector)) => Ok(Server {
                addr,
                connector,
                stop,
                thread,
            }),
            Err(_) => Err(thread
                .join()
                .ok()
                .and_then(Result::err)
                .unwrap_or_else(|| ServerError("the server thread ended".into()))),
        }
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Opens in-process connections to this server.
    pub fn connector(&self) -> &Connector {
        &self.connector
    }

    /// The chain API on a new in-process connection.
    pub fn gun(&self) -> Gun {
        Gun::connect(&self.connector)
    }

    /// Finishes the writes in flight, closes every connection and the store. Blocks until done.
    pub fn shutdown(self) {
        let _ = self.stop.send_blocking(());
        match self.thread.join() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::error!("the server stopped with an error: {e}"),
            Err(_) => tracing::error!("the server thread panicked"),
        }
    }
}

/// [`serve`], telling `ready` the address and the in-process connector once it listens.
pub fn serve_with(
    config: ServerConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
    ready: impl FnOnce(SocketAddr, Connector),
) -> Result<(), ServerError> {
    let peer = config.new_peer()?;
    let peer_tls = config.peer_tls()?;
    let (store, store_stats) = Backend::open(&config)?;
    let listener = smol::block_on(smol::net::TcpListener::bind(config.listen))
        .map_err(|e| ServerError(format!("cannot listen on {}: {e}", config.listen)))?;
    let local = listener
        .local_addr()
        .map_err(|e| ServerError(e.to_string()))?;

    let (events_tx, events_rx) = smol::channel::bounded::<DriverEvent>(4096);
    let to_driver = events_tx.clone();
    let background = Workers::start(store, config.verify_threads, move |event| {
        let _ = to_driver.send_blocking(event);
    });
    tracing::info!(
        pid = peer.pid(),
        "fibergun listening on ws://{local}/gun, data in {}",
        config.data_dir.display()
    );

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
    let ctx = Arc::new(HttpContext {
        events: events_tx.clone(),
        executor: executor.clone(),
        max_frame_bytes: config.limits.max_frame_bytes,
        next_conn,
        max_outbound_queue_bytes: config.limits.max_outbound_queue_bytes,
        inbound: inbound.clone(),
        open_sockets: Default::default(),
        guns: fibergun_host::rest::Guns::new(connector.clone()),
        access: config.access.clone(),
        rest: config.rest.clone(),
        store_stats,
        static_dir: config.static_dir.clone(),
        keepalive: config.keepalive,
        handshake_timeout: config.handshake_timeout,
        address_limits: fibergun_host::address_limits::AddressLimits::new(config.address_limits),
        outbound: outbound.clone(),
    });
    let sockets = ctx.clone();
    let dial_ctx = ctx.clone();
    let dialer = move |remote, url: String| {
        dial_ctx
            .executor
            .spawn(dial(remote, url, dial_ctx.clone(), peer_tls.clone()))
            .detach();
    };
    let driver = executor.spawn(drive(
        Driver::new(
            peer,
            background.store,
            inbound,
            Box::new(dialer),
            background.verifier,
            outbound.clone(),
        ),
        events_rx,
    ));
    ready(local, connector);
    let accept_ex = executor.clone();
    let accept = async move {
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
                    async_io::Timer::after(std::time::Duration::from_millis(50)).await;
                }
            }
        }
    };
    smol::block_on(executor.run(async {
        smol::future::or(accept, shutdown).await;
        let _ = events_tx.send(DriverEvent::Shutdown).await;
        driver.await;
        // The driver has answered every write and asked each socket to close; give the writers a
        // moment to send those last frames.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
        while sockets
            .open_sockets
            .load(std::sync::atomic::Ordering::SeqCst)
            > 0
            && std::time::Instant::now() < deadline
        {
            async_io::Timer::after(std::time::Duration::from_millis(10)).await;
        }
    }));
    // The driver owned the store's channel; with it gone the store thread syncs and ends.
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
