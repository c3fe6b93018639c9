//! One WebSocket, pumped: frames in to the driver (each taking its bytes from the inbound
//! budget first), the driver's frames out (batched, flushed once per batch), pings to keep it
//! alive, and an end when either side closes or the driver kills it. Accepted and dialled
//! connections run the same pump.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use async_tungstenite::tungstenite::protocol::{
    frame::coding::CloseCode, CloseFrame, WebSocketConfig,
};
use async_tungstenite::tungstenite::Message;
use async_tungstenite::WebSocketStream;
use fibergun::access::Principal;
use fibergun::{ConnId, RemoteId};
use fibergun_drive::open_socket::OpenSocket;
use fibergun_drive::queue::{ConnHandle, QueueGauge};
use fibergun_drive::Admission;
use futures_util::{SinkExt, StreamExt};

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
/// connections cheap (about 15 KiB each, measured by fibergun-bench); it grows for big frames.
/// Frames over twice the core's limit close the socket (the core answers those up to it).
pub fn websocket_config(max_frame_bytes: usize) -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(1 << 10)
        .max_message_size(Some(max_frame_bytes.saturating_mul(2)))
        .max_frame_size(Some(max_frame_bytes.saturating_mul(2)))
}

/// Pumps one WebSocket: frames in to the driver, the driver's frames out. `dialled` names the
/// configured peer at the other end when we dialled it.
pub async fn run_socket<S>(
    ws: WebSocketStream<S>,
    ctx: Arc<Context>,
    addr: Option<std::net::SocketAddr>,
    dialled: Option<RemoteId>,
    principal: Principal,
    admitted: Option<Arc<dyn Admission>>,
) where
    S: smol::io::AsyncRead + smol::io::AsyncWrite + Unpin + Send + 'static,
{
    let _open = OpenSocket::new(&ctx.open_sockets);
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
    if ctx.events.send(opened).await.is_err() {
        return;
    }
    if principal != Principal::Anonymous {
        let authenticated = DriverEvent::Authenticated { conn, principal };
        if ctx.events.send(authenticated).await.is_err() {
            return;
        }
    }
    let writer = async {
        // Frames already queued are written together and flushed once: fewer syscalls under load.
        'frames: while let Some(batch) = mailbox.next_batch(64).await {
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
                        let _ = sink.flush().await;
                        let frame = CloseFrame {
                            code: CloseCode::Policy,
                            reason: reason.into(),
                        };
                        let _ = sink.send(Message::Close(Some(frame))).await;
                        break 'frames;
                    }
                }
            }
            if sink.flush().await.is_err() {
                break;
            }
            if queued.wrote(written)
                && ctx
                    .events
                    .send(DriverEvent::Drained { conn })
                    .await
                    .is_err()
            {
                break;
            }
        }
        let _ = sink.close(None).await;
    };
    // The last time anything (a frame, a pong) came from the peer, in ms since `opened_at`.
    let opened_at = std::time::Instant::now();
    let last_heard = std::sync::atomic::AtomicU64::new(0);
    let keepalive = async {
        let ka = ctx.keepalive;
        loop {
            async_io::Timer::after(ka.ping_interval).await;
            let heard = Duration::from_millis(last_heard.load(Ordering::Relaxed));
            if opened_at.elapsed().saturating_sub(heard) > ka.idle_timeout {
                tracing::debug!(conn = conn.0, "closing a connection that answered no ping");
                return;
            }
            mailbox.push(Outgoing::Ping);
        }
    };
    let reader = async {
        while let Some(message) = stream.next().await {
            last_heard.store(opened_at.elapsed().as_millis() as u64, Ordering::Relaxed);
            let event = match message {
                Ok(Message::Text(t)) => {
                    let text = t.as_str().to_owned();
                    let budget = ctx.inbound.acquire(text.len()).await;
                    DriverEvent::Frame { conn, text, budget }
                }
                Ok(Message::Binary(b)) => DriverEvent::Binary {
                    conn,
                    bytes: b.len(),
                },
                Ok(Message::Close(_)) => break,
                Ok(_) => continue,
                Err(e) => {
                    tracing::debug!(conn = conn.0, "websocket read ended: {e}");
                    break;
                }
            };
            if let Err(unsent) = ctx.events.send(event).await {
                if let DriverEvent::Frame { budget, .. } = unsent.0 {
                    ctx.inbound.release(budget);
                }
                break;
            }
            // Over its address's frame rate: read the next one later, so TCP slows the sender.
            if let Some(delay) = admitted.as_ref().map(|a| a.frame_delay()) {
                if !delay.is_zero() {
                    async_io::Timer::after(delay).await;
                }
            }
        }
    };
    let killed = mailbox.killed();
    // The writer is polled first: a wake for queued frames writes them before the reader's try
    // (a `recvfrom` that finds nothing), not after it.
    smol::future::or(
        smol::future::or(writer, reader),
        smol::future::or(killed, keepalive),
    )
    .await;
    let _ = ctx.events.send(DriverEvent::Closed { conn }).await;
}
