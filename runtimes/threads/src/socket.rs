//! One WebSocket on blocking threads: the reader (the thread that accepted or dialled it) hands
//! frames to the driver; a writer thread sends the driver's frames. Each half has its own
//! `tungstenite` state over its own handle on the socket, so neither waits for the other.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, Sender, SyncSender};
use std::sync::Arc;

use fibergun::access::Principal;
use fibergun::{ConnId, RemoteId};
use fibergun_drive::budget::ByteBudget;
use fibergun_drive::open_socket::OpenSocket;
use fibergun_drive::queue::{ConnHandle, OutboundTotal, QueueGauge};
use fibergun_drive::{Admission, Gate, Keepalive};
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::protocol::{CloseFrame, Role, WebSocket, WebSocketConfig};
use tungstenite::{Bytes, Message};

/// The driver's events, with this runtime's connection handle.
pub type DriverEvent = fibergun_drive::driver::DriverEvent<ThreadConn>;

/// What every socket thread shares.
pub struct SocketContext {
    /// The driver's inbox.
    pub events: SyncSender<DriverEvent>,
    /// Frames over this many bytes are answered by the core with an error; frames over twice
    /// this close the socket.
    pub max_frame_bytes: usize,
    /// Source of connection ids (shared with in-process connections).
    pub next_conn: Arc<AtomicU64>,
    /// The most a connection's writer may have queued (for its congestion marks).
    pub max_outbound_queue_bytes: usize,
    /// Bytes of inbound frames waiting for the driver.
    pub inbound: Arc<ByteBudget>,
    /// WebSockets whose threads are still running (writers may still be flushing at shutdown).
    pub open_sockets: AtomicUsize,
    /// Pings, and the silence after which a connection is closed as dead.
    pub keepalive: Keepalive,
    /// How long a client may take to send its HTTP request head.
    pub handshake_timeout: std::time::Duration,
    /// Who may connect.
    pub gate: Arc<dyn Gate>,
    /// Bytes queued for all connections, against the memory limit.
    pub outbound: Arc<OutboundTotal>,
}

/// What a writer thread is asked to do.
#[derive(Debug)]
pub enum Outgoing {
    /// Send this text frame.
    Frame(String),
    /// Answer a ping.
    Pong(Bytes),
    /// Close the socket, with this reason.
    Close(String),
}

/// The driver's handle on one connection.
#[derive(Debug)]
pub struct ThreadConn {
    tx: Sender<Outgoing>,
    queued: Arc<QueueGauge>,
    /// For [`ConnHandle::kill`]: shutting the socket down unblocks both threads at once.
    socket: TcpStream,
}

impl ConnHandle for ThreadConn {
    fn queue(&self, text: String) -> usize {
        let queued = self.queued.add(text.len());
        let _ = self.tx.send(Outgoing::Frame(text));
        queued
    }

    fn mark_congested(&self) -> bool {
        self.queued.mark_congested()
    }

    fn close(&self, reason: String) {
        let _ = self.tx.send(Outgoing::Close(reason));
    }

    fn kill(&self) {
        let _ = self.socket.shutdown(Shutdown::Both);
    }

    fn queued(&self) -> usize {
        self.queued.bytes()
    }
}

/// The WebSocket settings of every connection (as in the smol runtime: a small initial read
/// buffer, frames up to twice the core's limit).
pub fn websocket_config(max_frame_bytes: usize) -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(1 << 10)
        .max_message_size(Some(max_frame_bytes.saturating_mul(2)))
        .max_frame_size(Some(max_frame_bytes.saturating_mul(2)))
}

/// The socket as the reader sees it: reads pass through, and writes (the replies `tungstenite`
/// makes on its own to pings and closes) are dropped; the reader hands those to the writer.
struct ReadHalf(TcpStream);

impl Read for ReadHalf {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.0.read(buf)
    }
}

impl Write for ReadHalf {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Runs a WebSocket whose handshake is done: `leftover` holds bytes read past the handshake.
/// Returns when the connection has closed and the driver has been told.
pub fn run_socket(
    stream: TcpStream,
    leftover: Vec<u8>,
    role: Role,
    ctx: &SocketContext,
    dialled: Option<RemoteId>,
    principal: Principal,
    admitted: Option<Box<dyn Admission>>,
) {
    let _open = OpenSocket::new(&ctx.open_sockets);
    let (Ok(write_half), Ok(kill_handle)) = (stream.try_clone(), stream.try_clone()) else {
        tracing::warn!("cannot clone a socket handle; dropping the connection");
        return;
    };
    let conn = ConnId(ctx.next_conn.fetch_add(1, Ordering::Relaxed));
    let addr = stream.peer_addr().ok();
    let config = websocket_config(ctx.max_frame_bytes);
    let (tx, rx) = mpsc::channel::<Outgoing>();
    let queued = Arc::new(QueueGauge::new(
        ctx.max_outbound_queue_bytes,
        ctx.outbound.clone(),
    ));
    let handle = ThreadConn {
        tx: tx.clone(),
        queued: queued.clone(),
        socket: kill_handle,
    };
    if ctx
        .events
        .send(DriverEvent::Opened {
            conn,
            dialled,
            addr,
            handle,
        })
        .is_err()
    {
        return;
    }
    if principal != Principal::Anonymous
        && ctx
            .events
            .send(DriverEvent::Authenticated { conn, principal })
            .is_err()
    {
        return;
    }
    let events = ctx.events.clone();
    let ping_interval = ctx.keepalive.ping_interval;
    // Nothing heard (no frame, no pong to our pings) for this long: the peer is gone.
    let _ = stream.set_read_timeout(Some(ctx.keepalive.idle_timeout));
    let writer = std::thread::Builder::new()
        .name(format!("fibergun-write-{}", conn.0))
        .stack_size(128 << 10)
        .spawn(move || {
            let ws = WebSocket::from_raw_socket(write_half, role, Some(config));
            let drained = || {
                let _ = events.send(DriverEvent::Drained { conn });
            };
            write_frames(ws, rx, &queued, drained, ping_interval);
        });
    if writer.is_err() {
        tracing::warn!(conn = conn.0, "cannot start a writer thread");
        let _ = stream.shutdown(Shutdown::Both);
    } else {
        let ws = WebSocket::from_partially_read(ReadHalf(stream), leftover, role, Some(config));
        read_frames(ws, conn, ctx, &tx, admitted.as_deref());
        // The peer or the writer ended it: the writer sends what is queued and stops.
        let _ = tx.send(Outgoing::Close(String::new()));
    }
    drop(tx);
    let _ = ctx.events.send(DriverEvent::Closed { conn });
}

fn read_frames(
    mut ws: WebSocket<ReadHalf>,
    conn: ConnId,
    ctx: &SocketContext,
    writer: &Sender<Outgoing>,
    admitted: Option<&dyn Admission>,
) {
    loop {
        let event = match ws.read() {
            Ok(Message::Text(t)) => {
                let text = t.as_str().to_owned();
                let budget = ctx.inbound.acquire_blocking(text.len());
                DriverEvent::Frame { conn, text, budget }
            }
            Ok(Message::Binary(b)) => DriverEvent::Binary {
                conn,
                bytes: b.len(),
            },
            Ok(Message::Ping(data)) => {
                let _ = writer.send(Outgoing::Pong(data));
                continue;
            }
            Ok(Message::Close(_)) => break,
            Ok(_) => continue,
            Err(e) => {
                tracing::debug!(conn = conn.0, "websocket read ended: {e}");
                break;
            }
        };
        if let Err(unsent) = ctx.events.send(event) {
            if let DriverEvent::Frame { budget, .. } = unsent.0 {
                ctx.inbound.release(budget);
            }
            break;
        }
        // Over its address's frame rate: read the next one later, so TCP slows the sender.
        if let Some(delay) = admitted.map(|a| a.frame_delay()) {
            if !delay.is_zero() {
                std::thread::sleep(delay);
            }
        }
    }
}

fn write_frames(
    mut ws: WebSocket<TcpStream>,
    rx: Receiver<Outgoing>,
    queued: &QueueGauge,
    drained: impl Fn(),
    ping_interval: std::time::Duration,
) {
    // Frames already queued are written together and flushed once: fewer syscalls under load.
    'frames: loop {
        let first = match rx.recv_timeout(ping_interval) {
            Ok(first) => first,
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                // Idle: ping, so a live peer answers and a dead one is noticed.
                if ws.write(Message::Ping(Bytes::new())).is_err() || ws.flush().is_err() {
                    break;
                }
                continue;
            }
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
        };
        let mut batch = vec![first];
        while batch.len() < 64 {
            match rx.try_recv() {
                Ok(more) => batch.push(more),
                Err(_) => break,
            }
        }
        let mut written = 0;
        for out in batch {
            let sent = match out {
                Outgoing::Frame(text) => {
                    written += text.len();
                    ws.write(Message::text(text))
                }
                Outgoing::Pong(data) => ws.write(Message::Pong(data)),
                Outgoing::Close(reason) => {
                    let frame = (!reason.is_empty()).then(|| CloseFrame {
                        code: CloseCode::Policy,
                        reason: reason.into(),
                    });
                    let _ = ws.close(frame);
                    let _ = ws.flush();
                    break 'frames;
                }
            };
            if sent.is_err() {
                break 'frames;
            }
        }
        if ws.flush().is_err() {
            break;
        }
        if queued.wrote(written) {
            drained();
        }
    }
    // Ends the reader too, if the peer is still connected.
    let _ = ws.get_ref().shutdown(Shutdown::Both);
}
