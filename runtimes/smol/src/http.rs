//! The HTTP front: WebSocket upgrades at `/gun`, the REST API ([`crate::rest`]), a small JSON
//! answer at `/`.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_tungstenite::tungstenite::handshake::derive_accept_key;
use async_tungstenite::tungstenite::protocol::{
    frame::coding::CloseCode, CloseFrame, Role, WebSocketConfig,
};
use async_tungstenite::tungstenite::Message;
use async_tungstenite::WebSocketStream;
use fibergun::{ConnId, RemoteId};
use futures_util::{SinkExt, StreamExt};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::header::{
    HeaderValue, CONNECTION, CONTENT_TYPE, SEC_WEBSOCKET_ACCEPT, SEC_WEBSOCKET_KEY, UPGRADE,
};
use hyper::{Request, Response, StatusCode};
use smol::channel::Sender;
use smol::net::TcpStream;
use smol::Executor;
use smol_hyper::rt::FuturesIo;

use fibergun_host::budget::ByteBudget;
use fibergun_host::driver::{ConnHandle, QueueGauge};
use fibergun_host::open_socket::OpenSocket;

use crate::mailbox::{Mailbox, Outgoing};

/// The driver's events, with this runtime's connection handle.
pub type DriverEvent = fibergun_host::driver::DriverEvent<ConnSender>;

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
}

impl Drop for ConnSender {
    fn drop(&mut self) {
        self.mailbox.close();
    }
}

/// What every HTTP connection task shares.
pub struct HttpContext {
    /// The driver's inbox.
    pub events: Sender<DriverEvent>,
    /// Where socket tasks are spawned.
    pub executor: Arc<Executor<'static>>,
    /// Frames over this many bytes are answered by the core with an error; frames over twice
    /// this close the socket (the WebSocket layer will not buffer them).
    pub max_frame_bytes: usize,
    /// Source of connection ids (shared with in-process connections).
    pub next_conn: Arc<AtomicU64>,
    /// The most a connection's writer may have queued (for its congestion marks).
    pub max_outbound_queue_bytes: usize,
    /// Bytes of inbound frames waiting for the driver.
    pub inbound: Arc<ByteBudget>,
    /// WebSockets whose task is still running (writers may still be flushing at shutdown).
    pub open_sockets: AtomicUsize,
    /// The chain API for the REST routes, one in-process connection per principal.
    pub guns: fibergun_host::rest::Guns,
    /// Who may read and write, and the tokens requests present.
    pub access: fibergun_host::auth::AccessConfig,
    /// The REST routes' body limit and CORS origins.
    pub rest: fibergun_host::rest::RestConfig,
    /// Reads the store's size, for metrics.
    pub store_stats: fibergun_host::storage::StoreReaders,
    /// The folder served at `/`, if any.
    pub static_dir: Option<std::path::PathBuf>,
    /// WebSocket pings, and when a silent peer counts as dead.
    pub keepalive: fibergun_host::config::Keepalive,
    /// How long a client may take to send its request head.
    pub handshake_timeout: std::time::Duration,
    /// Connections and frame rates per client address.
    pub address_limits: Arc<fibergun_host::address_limits::AddressLimits>,
    /// Bytes queued for all connections, against the memory limit.
    pub outbound: Arc<fibergun_host::driver::OutboundTotal>,
}

/// A response body: whole, or streamed (Server-Sent Events).
pub type Body = UnsyncBoxBody<Bytes, std::convert::Infallible>;

/// A response.
pub type Reply = Response<Body>;

/// A whole body.
pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into()).boxed_unsync()
}

fn json_reply(status: StatusCode, body: String) -> Reply {
    let mut r = Response::new(full(body));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

/// An error response: `{"error":"…"}`.
pub fn error_reply(status: StatusCode, text: &str) -> Reply {
    json_reply(status, fibergun_host::error_json(text))
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

/// Serves one TCP connection: HTTP/1.1 requests, and at most one upgrade to a WebSocket.
pub async fn serve_connection(
    mut stream: TcpStream,
    peer: std::net::SocketAddr,
    ctx: Arc<HttpContext>,
) {
    let admitted = match ctx.address_limits.admit(peer.ip()) {
        Ok(a) => Arc::new(a),
        Err(refused) => {
            use smol::io::AsyncWriteExt;
            let body = refused.body();
            let answer = format!(
                "HTTP/1.1 429 Too Many Requests\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = stream.write_all(answer.as_bytes()).await;
            return;
        }
    };
    let handshake_timeout = ctx.handshake_timeout;
    let service = hyper::service::service_fn(move |req| {
        let ctx = ctx.clone();
        let admitted = admitted.clone();
        async move { Ok::<_, std::convert::Infallible>(route(req, ctx, admitted).await) }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(smol_hyper::rt::SmolTimer::new())
        .header_read_timeout(handshake_timeout)
        .serve_connection(FuturesIo::new(stream), service)
        .with_upgrades();
    if let Err(e) = conn.await {
        tracing::debug!("http connection ended: {e}");
    }
}

async fn route(
    req: Request<Incoming>,
    ctx: Arc<HttpContext>,
    admitted: Arc<fibergun_host::address_limits::Admitted>,
) -> Reply {
    let path = req.uri().path();
    match path {
        // GUN JS accepts only `/gun`; a trailing slash costs nothing to allow.
        "/gun" | "/gun/" => {
            let Some(principal) = authenticate(&req, &ctx) else {
                return unauthorized();
            };
            let task_ctx = ctx.clone();
            upgrade(req, &ctx, "/gun is a WebSocket endpoint", move |ws| {
                run_socket(ws, task_ctx, None, principal, Some(admitted))
            })
        }
        "/" if ctx.static_dir.is_none() => {
            json_reply(StatusCode::OK, fibergun_host::server_info_json())
        }
        "/metrics" => {
            let accept = req
                .headers()
                .get(hyper::header::ACCEPT)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            metrics(&ctx, accept).await
        }
        "/health" => health(&ctx).await,
        p if p.starts_with(fibergun_host::rest::DATA_PREFIX) => crate::rest::data(req, &ctx).await,
        p if p.starts_with(fibergun_host::rest::SUBSCRIBE_PREFIX) => {
            crate::rest::subscribe(req, &ctx)
        }
        _ => static_file(&req, &ctx).await,
    }
}

/// A file of the `--static` folder.
async fn static_file(req: &Request<Incoming>, ctx: &HttpContext) -> Reply {
    use fibergun_host::static_files::{content_type, resolve, NotServed};
    let Some(root) = &ctx.static_dir else {
        return error_reply(StatusCode::NOT_FOUND, "not found");
    };
    if req.method() != hyper::Method::GET && req.method() != hyper::Method::HEAD {
        return error_reply(StatusCode::METHOD_NOT_ALLOWED, "static files are read-only");
    }
    let file = match resolve(root, req.uri().path()) {
        Ok(file) => file,
        Err(NotServed::NotFound) => return error_reply(StatusCode::NOT_FOUND, "not found"),
        Err(NotServed::TooLarge) => {
            return error_reply(
                StatusCode::PAYLOAD_TOO_LARGE,
                "the file is too large to serve",
            )
        }
    };
    let bytes = match smol::fs::read(&file).await {
        Ok(bytes) => bytes,
        Err(_) => return error_reply(StatusCode::NOT_FOUND, "not found"),
    };
    let body = if req.method() == hyper::Method::HEAD {
        full(Bytes::new())
    } else {
        full(bytes)
    };
    let mut r = Response::new(body);
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type(&file)));
    r
}

/// The core's figures, asked of the driver; `None` if it does not answer within a second.
async fn peer_snapshot(ctx: &HttpContext) -> Option<fibergun_host::metrics::PeerSnapshot> {
    let (tx, rx) = smol::channel::bounded(1);
    ctx.events.send(DriverEvent::Metrics(tx)).await.ok()?;
    smol::future::or(async { rx.recv().await.ok() }, async {
        async_io::Timer::after(std::time::Duration::from_secs(1)).await;
        None
    })
    .await
}

/// `/metrics`: OpenMetrics text for scrapers that ask for it, Prometheus text for the rest.
async fn metrics(ctx: &HttpContext, accept: Option<String>) -> Reply {
    use fibergun_host::metrics as m;
    let Some(peer) = peer_snapshot(ctx).await else {
        return error_reply(StatusCode::SERVICE_UNAVAILABLE, "the core is not answering");
    };
    let store = ctx.store_stats.size.as_ref().and_then(|s| s.read().ok());
    let s3 = ctx.store_stats.s3_figures();
    let text = m::render(peer, store, s3);
    let (text, content_type) = if m::wants_openmetrics(accept.as_deref()) {
        (text, m::CONTENT_TYPE)
    } else {
        (m::to_prometheus_text(&text), m::PROMETHEUS_CONTENT_TYPE)
    };
    let mut r = Response::new(full(text));
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

/// `/health`: 200 when ready, 503 when not, with what is wrong.
async fn health(ctx: &HttpContext) -> Reply {
    let peer = peer_snapshot(ctx).await;
    let store = match &ctx.store_stats.size {
        Some(reader) => reader.read().map(Some),
        None => Ok(None),
    };
    let (ready, body) = fibergun_host::metrics::health_json(peer.as_ref(), &store);
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    json_reply(status, body)
}

/// Who a request comes from; `None` for an unknown token (answer [`unauthorized`]).
pub fn authenticate<B>(req: &Request<B>, ctx: &HttpContext) -> Option<fibergun::access::Principal> {
    let header = |name: &str| req.headers().get(name).and_then(|v| v.to_str().ok());
    ctx.access.authenticate(header, req.uri().query()).ok()
}

/// The answer to a request with an unknown token.
pub fn unauthorized() -> Reply {
    json_reply(
        StatusCode::UNAUTHORIZED,
        fibergun_host::auth::Unauthorized::body(),
    )
}

/// Whether a request asks to become a WebSocket.
pub fn wants_websocket<B>(req: &Request<B>) -> bool {
    req.headers()
        .get(UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"))
        && req.headers().contains_key(SEC_WEBSOCKET_KEY)
}

/// Upgrades `req` to a WebSocket served by `serve`, or answers 426 with `refusal`.
pub fn upgrade<F, Fut>(
    mut req: Request<Incoming>,
    ctx: &HttpContext,
    refusal: &str,
    serve: F,
) -> Reply
where
    F: FnOnce(WebSocketStream<TcpStream>) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    if !wants_websocket(&req) {
        return error_reply(StatusCode::UPGRADE_REQUIRED, refusal);
    }
    let key = req.headers()[SEC_WEBSOCKET_KEY].clone();
    let accept = derive_accept_key(key.as_bytes());
    let on_upgrade = hyper::upgrade::on(&mut req);
    let config = websocket_config(ctx.max_frame_bytes);
    ctx.executor
        .spawn(async move {
            match on_upgrade.await {
                Ok(upgraded) => match upgraded.downcast::<FuturesIo<TcpStream>>() {
                    Ok(parts) => {
                        let ws = WebSocketStream::from_partially_read(
                            parts.io.into_inner(),
                            parts.read_buf.to_vec(),
                            Role::Server,
                            Some(config),
                        )
                        .await;
                        serve(ws).await;
                    }
                    Err(_) => tracing::error!("upgraded connection of an unexpected type"),
                },
                Err(e) => tracing::debug!("websocket upgrade failed: {e}"),
            }
        })
        .detach();
    let mut r = Response::new(full(Bytes::new()));
    *r.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = r.headers_mut();
    h.insert(UPGRADE, HeaderValue::from_static("websocket"));
    h.insert(CONNECTION, HeaderValue::from_static("Upgrade"));
    h.insert(
        SEC_WEBSOCKET_ACCEPT,
        HeaderValue::from_str(&accept).expect("an accept key is base64"),
    );
    r
}

/// Pumps one WebSocket: frames in to the driver, the driver's frames out. `dialled` names the
/// configured peer at the other end when we dialled it.
pub async fn run_socket<S>(
    ws: WebSocketStream<S>,
    ctx: Arc<HttpContext>,
    dialled: Option<RemoteId>,
    principal: fibergun::access::Principal,
    admitted: Option<Arc<fibergun_host::address_limits::Admitted>>,
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
        handle: sender,
    };
    if ctx.events.send(opened).await.is_err() {
        return;
    }
    if principal != fibergun::access::Principal::Anonymous {
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
    smol::future::or(
        smol::future::or(reader, writer),
        smol::future::or(killed, keepalive),
    )
    .await;
    let _ = ctx.events.send(DriverEvent::Closed { conn }).await;
}
