//! One WebSocket, pumped: frames in to the driver (each taking its bytes from the inbound
//! budget first), the driver's frames out (batched, flushed once per batch), pings to keep it
//! alive, and an end when either side closes or the driver kills it. Accepted and dialled
//! connections run the same pump.

use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_tungstenite::tungstenite::protocol::{
    frame::coding::CloseCode, CloseFrame, WebSocketConfig,
};
use async_tungstenite::tungstenite::Message;
use async_tungstenite::{WebSocketReceiver, WebSocketSender, WebSocketStream};
use fibergun::access::Principal;
use fibergun::{ConnId, RemoteId};
use fibergun_drive::open_socket::OpenSocket;
use fibergun_drive::queue::{ConnHandle, QueueGauge};
use fibergun_drive::Admission;
use futures_util::{SinkExt, StreamExt};
use smol::channel::TrySendError;

use crate::mailbox::{Mailbox, Outgoing};
use crate::relay::{Context, DriverEvent};

/// The driver's handle on one connection's socket task. Dropping it (the driver forgets the
/// connection) lets the writer finish what is queued and end.
#[derive(Debug)]
pub struct ConnSender {
    /// Frames for the writer task.
    mailbox: Arc<Mailbox>,
    /// Bytes queued and not yet written; the writer subtracts what it sends.
    queued: Arc<QueueGauge>,
}

impl ConnHandle for ConnSender {
    fn queue(&self, text: String) -> usize {
        let queued = self.queued.add(text.len());
        self.mailbox.push(Outgoing::Frame(text));
        queued
    }

    fn mark_congested(&self) -> bool {
        self.queued.mark_congested()
    }

    fn close(&self, reason: String) {
        self.mailbox.push(Outgoing::Close(reason));
    }

    fn kill(&self) {
        self.mailbox.kill();
    }

    fn queued(&self) -> usize {
        self.queued.bytes()
    }
}

impl Drop for ConnSender {
    fn drop(&mut self) {
        self.mailbox.close();
    }
}

/// The WebSocket settings of every connection, accepted or dialled. A small read buffer keeps idle
/// connections cheap (under 4 KiB each in all, measured by `fibergun-bench idle`); it grows for
/// big frames.
/// Frames over twice the core's limit close the socket (the core answers those up to it).
pub fn websocket_config(max_frame_bytes: usize) -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(1 << 10)
        .max_message_size(Some(max_frame_bytes.saturating_mul(2)))
        .max_frame_size(Some(max_frame_bytes.saturating_mul(2)))
}

/// Pumps one WebSocket: frames in to the driver, the driver's frames out. `dialled` names the
/// configured peer at the other end when we dialled it.
///
/// The set-up runs before the future is made, and the future captures only what it keeps: an
/// `async fn` would hold its arguments (the whole WebSocket among them) for as long as it runs,
/// and an idle connection costs chiefly its future.
pub fn run_socket<S>(
    ws: WebSocketStream<S>,
    ctx: Arc<Context>,
    addr: Option<std::net::SocketAddr>,
    dialled: Option<RemoteId>,
    principal: Principal,
    admitted: Option<Arc<dyn Admission>>,
) -> impl std::future::Future<Output = ()> + Send
where
    S: smol::io::AsyncRead + smol::io::AsyncWrite + Unpin + Send + 'static,
{
    let conn = ConnId(ctx.next_conn.fetch_add(1, Ordering::Relaxed));
    let (mut sink, mut stream) = ws.split();
    let mailbox = Arc::new(Mailbox::default());
    let queued = Arc::new(QueueGauge::new(
        ctx.max_outbound_queue_bytes,
        ctx.outbound.clone(),
    ));
    let sender = ConnSender {
        mailbox: mailbox.clone(),
        queued: queued.clone(),
    };
    let opened = DriverEvent::Opened {
        conn,
        dialled,
        addr,
        handle: sender,
    };
    let authenticated = (principal != Principal::Anonymous)
        .then_some(DriverEvent::Authenticated { conn, principal });
    // The driver hears of the connection now when its queue has room, as it nearly always has:
    // what did not fit is sent first thing by the future, which so holds no events of its own.
    let mut greeting = Vec::new();
    let mut driver_gone = false;
    for event in [Some(opened), authenticated].into_iter().flatten() {
        if !greeting.is_empty() {
            greeting.push(event);
            continue;
        }
        match ctx.events.try_send(event) {
            Ok(()) => {}
            Err(TrySendError::Full(event)) => greeting.push(event),
            Err(TrySendError::Closed(_)) => driver_gone = true,
        }
    }
    let pump = Pump {
        ctx,
        conn,
        mailbox,
        queued,
        admitted,
        opened_at: std::time::Instant::now(),
        last_heard: AtomicU64::new(0),
    };
    async move {
        let _open = OpenSocket::new(&pump.ctx.open_sockets);
        if driver_gone {
            return;
        }
        for event in greeting {
            if pump.ctx.events.send(event).await.is_err() {
                return;
            }
        }
        pump.run(&mut sink, &mut stream).await;
        let _ = pump.ctx.events.send(DriverEvent::Closed { conn }).await;
    }
}

/// What a connection's pump keeps while it runs.
struct Pump {
    ctx: Arc<Context>,
    conn: ConnId,
    mailbox: Arc<Mailbox>,
    queued: Arc<QueueGauge>,
    admitted: Option<Arc<dyn Admission>>,
    opened_at: std::time::Instant,
    /// The last time anything (a frame, a pong) came from the peer, in ms since `opened_at`.
    last_heard: AtomicU64,
}

// The pump's parts are separate futures made by plain functions and joined in [`Pump::run`]:
// built as locals of one `async` body, each would be stored twice in the connection's future
// (as a local and inside the join), and an idle connection costs chiefly that future.
impl Pump {
    /// Writes, reads and keeps alive until either side closes or the driver kills the connection.
    /// The writer is polled first: a wake for queued frames writes them before the reader's try
    /// (a `recvfrom` that finds nothing), not after it.
    fn run<'a, S>(
        &'a self,
        sink: &'a mut WebSocketSender<S>,
        stream: &'a mut WebSocketReceiver<S>,
    ) -> impl std::future::Future<Output = ()> + Send + 'a
    where
        S: smol::io::AsyncRead + smol::io::AsyncWrite + Unpin + Send + 'static,
    {
        smol::future::or(
            smol::future::or(self.write(sink), self.read(stream)),
            smol::future::or(self.mailbox.killed(), self.keep_alive()),
        )
    }

    /// Writes what the driver queues. Frames already queued are written together and flushed
    /// once: fewer syscalls under load.
    async fn write<S>(&self, sink: &mut WebSocketSender<S>)
    where
        S: smol::io::AsyncRead + smol::io::AsyncWrite + Unpin + Send + 'static,
    {
        'frames: while let Some(batch) = self.mailbox.next_batch(64).await {
            let mut written = 0;
            for out in batch {
                match out {
                    Outgoing::Frame(text) => {
                        written += text.len();
                        if sink.feed(Message::text(text)).await.is_err() {
                            break 'frames;
                        }
                    }
                    Outgoing::Ping => {
                        if sink.feed(Message::Ping(Vec::new().into())).await.is_err() {
                            break 'frames;
                        }
                    }
                    Outgoing::Close(reason) => {
                        // Boxed: rare, and its states would make every connection's future
                        // bigger.
                        Box::pin(send_close(sink, reason)).await;
                        break 'frames;
                    }
                }
            }
            if sink.flush().await.is_err() {
                break;
            }
            let drained = DriverEvent::Drained { conn: self.conn };
            if self.queued.wrote(written) {
                if let Err(wait) = self.tell_driver(drained) {
                    if wait.await.is_err() {
                        break;
                    }
                }
            }
        }
        // Boxed, as a close is: its states are bigger than the loop's.
        let _ = Box::pin(sink.close(None)).await;
    }

    /// Hands `event` to the driver at once when its queue has room, as it nearly always has;
    /// otherwise gives back a boxed send to await (which gives the event back if the driver is
    /// gone), so that its states (the event among them) do not make every connection's future
    /// bigger.
    fn tell_driver(
        &self,
        event: DriverEvent,
    ) -> Result<(), Pin<Box<smol::channel::Send<'_, DriverEvent>>>> {
        self.ctx
            .events
            .try_send(event)
            .map_err(|unsent| Box::pin(self.ctx.events.send(unsent.into_inner())))
    }

    /// Pings the peer, and ends when it has answered nothing for too long.
    async fn keep_alive(&self) {
        let ka = &self.ctx.keepalive;
        loop {
            async_io::Timer::after(ka.ping_interval).await;
            let heard = Duration::from_millis(self.last_heard.load(Ordering::Relaxed));
            if self.opened_at.elapsed().saturating_sub(heard) > ka.idle_timeout {
                tracing::debug!(
                    conn = self.conn.0,
                    "closing a connection that answered no ping"
                );
                return;
            }
            self.mailbox.push(Outgoing::Ping);
        }
    }

    /// Notes that the peer was heard from now, for the keepalive.
    fn heard(&self) {
        let heard = self.opened_at.elapsed().as_millis() as u64;
        self.last_heard.store(heard, Ordering::Relaxed);
    }

    /// Reads frames for the driver, each taking its bytes from the inbound budget first.
    async fn read<S>(&self, stream: &mut WebSocketReceiver<S>)
    where
        S: smol::io::AsyncRead + smol::io::AsyncWrite + Unpin + Send + 'static,
    {
        let (ctx, conn) = (&self.ctx, self.conn);
        loop {
            // What arrived is taken out of the message in this one statement, so the message
            // (and tungstenite's error type) is not kept in the future across the awaits below.
            let received = match stream.next().await {
                Some(Ok(Message::Text(t))) => Received::Text(t.as_str().to_owned()),
                Some(Ok(Message::Binary(b))) => Received::Binary(b.len()),
                Some(Ok(Message::Close(_))) | None => break,
                Some(Ok(_)) => Received::Control,
                Some(Err(e)) => {
                    tracing::debug!(conn = conn.0, "websocket read ended: {e}");
                    break;
                }
            };
            self.heard();
            let event = match received {
                Received::Text(text) => {
                    let budget = ctx.inbound.acquire(text.len()).await;
                    DriverEvent::Frame { conn, text, budget }
                }
                Received::Binary(bytes) => DriverEvent::Binary { conn, bytes },
                Received::Control => continue,
            };
            if let Err(wait) = self.tell_driver(event) {
                if let Err(unsent) = wait.await {
                    if let DriverEvent::Frame { budget, .. } = unsent.0 {
                        ctx.inbound.release(budget);
                    }
                    break;
                }
            }
            // Over its address's frame rate: read the next one later, so TCP slows the sender.
            if let Some(delay) = self.admitted.as_ref().map(|a| a.frame_delay()) {
                if !delay.is_zero() {
                    async_io::Timer::after(delay).await;
                }
            }
        }
    }
}

/// What a read brought, taken out of tungstenite's message.
enum Received {
    Text(String),
    Binary(usize),
    /// A ping or a pong: it counts as hearing from the peer, and nothing more.
    Control,
}

/// Sends a close frame with `reason`, after what is buffered.
async fn send_close<S>(sink: &mut WebSocketSender<S>, reason: String)
where
    S: smol::io::AsyncRead + smol::io::AsyncWrite + Unpin + Send + 'static,
{
    let _ = sink.flush().await;
    let frame = CloseFrame {
        code: CloseCode::Policy,
        reason: reason.into(),
    };
    let _ = sink.send(Message::Close(Some(frame))).await;
}
