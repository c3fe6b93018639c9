//! Putting it together: start the store's thread, bind the listener, start the threads, stop
//! cleanly.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use fibergun::Store;
use fibergun_drive::driver::Driver;
use fibergun_drive::gun::Gun;
use fibergun_drive::local::Connector;
use fibergun_drive::open_socket::wait_closed;
use fibergun_drive::verifier::Verifiers;
use fibergun_drive::workers::{Shared, Workers};
use fibergun_drive::{Gate, OpenGate, RelayConfig, StartError};

use crate::dial::spawn_dial;
use crate::http::serve_connection;
use crate::socket::{DriverEvent, SocketContext, ThreadConn};

/// A running relay.
///
/// ```no_run
/// use fibergun_drive::RelayConfig;
/// use fibergun_threads::Relay;
///
/// let store = fibergun::MemStore::new(); // or fibergun_lmdb::LmdbStore::open(…)
/// let relay = Relay::start(RelayConfig::default(), store).expect("started");
/// println!("listening on {}", relay.local_addr());
/// // ... later: finish the writes in flight, close the store.
/// relay.shutdown();
/// ```
pub struct Relay {
    addr: SocketAddr,
    events: SyncSender<DriverEvent>,
    stopping: Arc<AtomicBool>,
    /// None for an embedded relay, which listens nowhere.
    acceptor: Option<JoinHandle<()>>,
    driver: JoinHandle<()>,
    store: JoinHandle<()>,
    verifier: Verifiers,
    sockets: Arc<SocketContext>,
    connector: Connector,
}

impl Relay {
    /// Starts the store's thread, binds the listener and starts every thread. Returns once the
    /// relay is accepting connections.
    pub fn start(
        config: RelayConfig,
        store: impl Store + Send + 'static,
    ) -> Result<Relay, StartError> {
        Relay::start_with(config, store, Arc::new(OpenGate))
    }

    /// [`Relay::start`], admitting connections through `gate`.
    pub fn start_with(
        config: RelayConfig,
        store: impl Store + Send + 'static,
        gate: Arc<dyn Gate>,
    ) -> Result<Relay, StartError> {
        Relay::start_on(config, store, gate, true)
    }

    /// A relay that listens nowhere: its only connections are in-process ones
    /// ([`Relay::connector`], [`Relay::gun`]), for a program that serves `/gun` and the REST
    /// routes through its own HTTP stack (see the axum example). `config.listen` is not used.
    pub fn embedded(
        config: RelayConfig,
        store: impl Store + Send + 'static,
    ) -> Result<Relay, StartError> {
        Relay::start_on(config, store, Arc::new(OpenGate), false)
    }

    fn start_on(
        config: RelayConfig,
        store: impl Store + Send + 'static,
        gate: Arc<dyn Gate>,
        listen: bool,
    ) -> Result<Relay, StartError> {
        validate(&config)?;
        let mut store = store;
        let peer = config.new_peer(&mut store)?;
        let listener = if listen {
            Some(
                TcpListener::bind(config.listen)
                    .map_err(|e| StartError(format!("cannot listen on {}: {e}", config.listen)))?,
            )
        } else {
            None
        };
        let addr = match &listener {
            Some(l) => l.local_addr().map_err(|e| StartError(e.to_string()))?,
            None => SocketAddr::from(([0, 0, 0, 0], 0)),
        };

        let (events_tx, events_rx) = std::sync::mpsc::sync_channel::<DriverEvent>(4096);
        let to_driver = events_tx.clone();
        let workers = Workers::start(store, config.verify_threads, move |event| {
            let _ = to_driver.send(event);
        });
        if listen {
            tracing::debug!(pid = peer.pid(), "listening on ws://{addr}/gun");
        } else {
            tracing::debug!(pid = peer.pid(), "embedded, listening nowhere");
        }
        let local_events = events_tx.clone();
        let Shared {
            inbound,
            outbound,
            next_conn,
            connector,
        } = Shared::new(&config, move |event| {
            let _ = local_events.send(DriverEvent::Local(event));
        });
        let sockets = Arc::new(SocketContext {
            events: events_tx.clone(),
            max_frame_bytes: config.limits.max_frame_bytes,
            next_conn,
            max_outbound_queue_bytes: config.limits.max_outbound_queue_bytes,
            inbound: inbound.clone(),
            open_sockets: Default::default(),
            keepalive: config.keepalive,
            handshake_timeout: config.handshake_timeout,
            gate,
            outbound: outbound.clone(),
        });
        let dial_ctx = sockets.clone();
        let dialer = move |remote, url| spawn_dial(remote, url, dial_ctx.clone());
        let driver = Driver::<ThreadConn>::new(
            peer,
            workers.store,
            inbound,
            Box::new(dialer),
            workers.verifier,
            outbound.clone(),
        );
        let driver = spawn("fibergun-driver", move || drive(driver, events_rx))?;

        let stopping = Arc::new(AtomicBool::new(false));
        let accept_ctx = sockets.clone();
        let accept_stop = stopping.clone();
        let acceptor = match listener {
            Some(listener) => Some(spawn("fibergun-accept", move || {
                accept(listener, accept_ctx, accept_stop)
            })?),
            None => None,
        };
        Ok(Relay {
            addr,
            events: events_tx,
            stopping,
            acceptor,
            driver,
            store: workers.store_thread,
            verifier: workers.verifier_threads,
            sockets,
            connector,
        })
    }

    /// Opens in-process connections to this relay (for another transport, such as a
    /// WebSocket route of another HTTP framework).
    pub fn connector(&self) -> &Connector {
        &self.connector
    }

    /// The chain API on a new in-process connection.
    pub fn gun(&self) -> Gun {
        Gun::connect(&self.connector)
    }

    /// The core's figures now, blocking this thread (`None` once the relay has stopped).
    pub fn snapshot(&self) -> Option<fibergun_drive::PeerSnapshot> {
        let (tx, rx) = async_channel::bounded(1);
        self.events.send(DriverEvent::Snapshot(tx)).ok()?;
        rx.recv_blocking().ok()
    }

    /// Where each upstream stands: connected or not, and the local writes it has not
    /// acknowledged yet (blocking this thread).
    pub fn sync_status(&self) -> Vec<fibergun::UpstreamStatus> {
        self.snapshot().map(|s| s.upstreams).unwrap_or_default()
    }

    /// The address it listens on (`0.0.0.0:0` for an [embedded](Relay::embedded) relay).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting, finishes and acknowledges the writes in flight, closes every connection
    /// and syncs the store. Blocks until done.
    pub fn shutdown(self) {
        self.stopping.store(true, Ordering::SeqCst);
        if let Some(acceptor) = self.acceptor {
            // Wake the acceptor from its blocking accept.
            let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
            let _ = acceptor.join();
        }
        let _ = self.events.send(DriverEvent::Shutdown);
        drop(self.events);
        let _ = self.driver.join();
        // The driver owned the store's channel; with it gone the store thread syncs and ends.
        let _ = self.store.join();
        self.verifier.join();
        // Give the writers a moment to send the last frames (acks, closes).
        wait_closed(&self.sockets.open_sockets, Duration::from_secs(2));
        tracing::info!("fibergun stopped; store closed");
    }
}

/// Checks what can be checked before anything is opened: the configuration, and that it has no
/// TLS peers (this runtime dials plain `ws://` peers only).
pub fn validate(config: &RelayConfig) -> Result<(), StartError> {
    config.validate()?;
    if config.has_tls_peers() {
        return Err(StartError(
            "the std-thread runtime dials plain ws:// peers only; the smol runtime dials wss:// ones"
                .into(),
        ));
    }
    Ok(())
}

fn spawn(name: &str, f: impl FnOnce() + Send + 'static) -> Result<JoinHandle<()>, StartError> {
    std::thread::Builder::new()
        .name(name.into())
        .spawn(f)
        .map_err(|e| StartError(format!("cannot start thread {name}: {e}")))
}

fn accept(listener: TcpListener, ctx: Arc<SocketContext>, stopping: Arc<AtomicBool>) {
    for stream in listener.incoming() {
        if stopping.load(Ordering::SeqCst) {
            break;
        }
        match stream {
            Ok(mut stream) => {
                let admitted = match stream.peer_addr().map(|a| ctx.gate.admit(a.ip())) {
                    Ok(Ok(admitted)) => admitted,
                    Ok(Err(refused)) => {
                        let status = format!("{} {}", refused.status, refused.reason());
                        crate::http::respond(&mut stream, &status, &refused.body);
                        continue;
                    }
                    Err(_) => continue,
                };
                let ctx = ctx.clone();
                let spawned = std::thread::Builder::new()
                    .name("fibergun-conn".into())
                    .stack_size(256 << 10)
                    .spawn(move || serve_connection(stream, &ctx, admitted));
                if let Err(e) = spawned {
                    tracing::warn!("cannot start a connection thread: {e}");
                }
            }
            Err(e) => {
                tracing::warn!("accept failed: {e}");
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
}

/// The driver's loop: wait for an event or the core's deadline, hand it over, carry out what the
/// core wants. Runs until shutdown has finished every write in flight.
fn drive(mut driver: Driver<ThreadConn>, events: Receiver<DriverEvent>) {
    loop {
        driver.step();
        if driver.finished() {
            break;
        }
        let event = match driver.deadline() {
            Some(at) => match events.recv_timeout(at.saturating_duration_since(Instant::now())) {
                Ok(event) => Some(event),
                Err(RecvTimeoutError::Timeout) => None,
                Err(RecvTimeoutError::Disconnected) => break,
            },
            None => match events.recv() {
                Ok(event) => Some(event),
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

    #[test]
    fn tls_peers_are_refused_at_start_with_the_reason() {
        let config = RelayConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            peers: vec!["wss://127.0.0.1:1/gun".into()],
            ..RelayConfig::default()
        };
        let error = Relay::start(config, fibergun::MemStore::new())
            .err()
            .expect("a TLS peer is refused");
        assert!(error.0.contains("plain ws:// peers only"), "{}", error.0);
    }
}
