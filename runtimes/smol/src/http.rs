//! The HTTP/1 front (hyper): each accepted TCP connection is admitted by the relay's
//! [`Gate`](fibergun_drive::Gate), `/gun` is upgraded to a WebSocket and handed to the socket
//! pump ([`crate::socket`]), and any other request goes to the product's [`Routes`] (or gets a
//! small JSON answer when there are none). The routes themselves (REST, metrics, files) are the
//! product's, not the runtime's.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use async_tungstenite::tungstenite::handshake::derive_accept_key;
use async_tungstenite::tungstenite::protocol::Role;
use async_tungstenite::WebSocketStream;
use fibergun::access::Principal;
use fibergun_drive::{Admission, Refusal};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::header::{
    HeaderValue, CONNECTION, CONTENT_TYPE, SEC_WEBSOCKET_ACCEPT, SEC_WEBSOCKET_KEY, UPGRADE,
};
use hyper::{Request, Response, StatusCode};
use smol::net::TcpStream;
use smol_hyper::rt::FuturesIo;

use crate::relay::Context;
use crate::socket::{run_socket, websocket_config};

/// A response body: whole, or streamed (Server-Sent Events).
pub type Body = UnsyncBoxBody<Bytes, std::convert::Infallible>;

/// A response.
pub type Reply = Response<Body>;

/// A response on its way.
pub type ReplyFuture = Pin<Box<dyn Future<Output = Reply> + Send>>;

/// What a product serves besides `/gun`: every other request of the HTTP front goes to
/// [`Routes::route`], with the relay's [`Context`] (a snapshot of its core, WebSocket upgrades,
/// who a request comes from).
pub trait Routes: Send + Sync + 'static {
    /// Answers one request, or gives it back for the runtime to answer (`/`: what this server
    /// is; anything else: 404).
    // The request given back is large, but moved once per request that no route takes.
    #[allow(clippy::result_large_err)]
    fn route(
        &self,
        req: Request<Incoming>,
        relay: Arc<Context>,
    ) -> Result<ReplyFuture, Request<Incoming>>;
}

/// A whole body.
pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into()).boxed_unsync()
}

/// A JSON response.
pub fn json_reply(status: StatusCode, body: String) -> Reply {
    let mut r = Response::new(full(body));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

/// An error response: `{"error":"…"}`.
pub fn error_reply(status: StatusCode, text: &str) -> Reply {
    json_reply(status, fibergun_drive::error_json(text))
}

/// The answer to a refused request.
pub fn refusal_reply(refusal: Refusal) -> Reply {
    json_reply(
        StatusCode::from_u16(refusal.status).unwrap_or(StatusCode::FORBIDDEN),
        refusal.body,
    )
}

/// Serves one TCP connection: HTTP/1.1 requests, and at most one upgrade to a WebSocket.
pub async fn serve_connection(
    mut stream: TcpStream,
    peer: std::net::SocketAddr,
    ctx: Arc<Context>,
) {
    let admitted: Arc<dyn Admission> = match ctx.gate.admit(peer.ip()) {
        Ok(a) => Arc::from(a),
        Err(refused) => {
            use smol::io::AsyncWriteExt;
            let answer = format!(
                "HTTP/1.1 {} {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{}",
                refused.status,
                refused.reason(),
                refused.body.len(),
                refused.body
            );
            let _ = stream.write_all(answer.as_bytes()).await;
            return;
        }
    };
    let handshake_timeout = ctx.handshake_timeout;
    let service = hyper::service::service_fn(move |req| {
        let ctx = ctx.clone();
        let admitted = admitted.clone();
        async move { Ok::<_, std::convert::Infallible>(route(req, ctx, peer, admitted).await) }
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
    ctx: Arc<Context>,
    peer: std::net::SocketAddr,
    admitted: Arc<dyn Admission>,
) -> Reply {
    match req.uri().path() {
        // GUN JS accepts only `/gun`; a trailing slash costs nothing to allow.
        "/gun" | "/gun/" => {
            let principal = match ctx.authenticate(&req) {
                Ok(principal) => principal,
                Err(refusal) => return refusal_reply(refusal),
            };
            let task_ctx = ctx.clone();
            ctx.upgrade(req, "/gun is a WebSocket endpoint", move |ws| {
                run_socket(ws, task_ctx, Some(peer), None, principal, Some(admitted))
            })
        }
        _ => {
            let req = match ctx.routes.clone() {
                Some(routes) => match routes.route(req, ctx) {
                    Ok(reply) => return reply.await,
                    Err(req) => req,
                },
                None => req,
            };
            if req.uri().path() == "/" {
                json_reply(StatusCode::OK, fibergun_drive::server_info_json())
            } else {
                error_reply(StatusCode::NOT_FOUND, "not found")
            }
        }
    }
}

/// Whether a request asks to become a WebSocket.
pub fn wants_websocket<B>(req: &Request<B>) -> bool {
    req.headers()
        .get(UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"))
        && req.headers().contains_key(SEC_WEBSOCKET_KEY)
}

impl Context {
    /// Who a request comes from, by the relay's gate.
    pub fn authenticate<B>(&self, req: &Request<B>) -> Result<Principal, Refusal> {
        let header = |name: &str| req.headers().get(name).and_then(|v| v.to_str().ok());
        self.gate.authenticate(&header, req.uri().query())
    }

    /// Upgrades `req` to a WebSocket served by `serve`, or answers 426 with `refusal`.
    pub fn upgrade<F, Fut>(&self, mut req: Request<Incoming>, refusal: &str, serve: F) -> Reply
    where
        F: FnOnce(WebSocketStream<TcpStream>) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        if !wants_websocket(&req) {
            return error_reply(StatusCode::UPGRADE_REQUIRED, refusal);
        }
        let key = req.headers()[SEC_WEBSOCKET_KEY].clone();
        let accept = derive_accept_key(key.as_bytes());
        let on_upgrade = hyper::upgrade::on(&mut req);
        let config = websocket_config(self.max_frame_bytes);
        let executor = self.executor.clone();
        self.executor
            .spawn(async move {
                match on_upgrade.await {
                    Ok(upgraded) => match upgraded.downcast::<FuturesIo<TcpStream>>() {
                        Ok(parts) => {
                            let read = parts.read_buf.to_vec();
                            // The bytes read past the request are copied out: the buffer they
                            // came in (hyper's 8 KiB read buffer) must not live as long as the
                            // connection does.
                            drop(parts.read_buf);
                            let ws = WebSocketStream::from_partially_read(
                                parts.io.into_inner(),
                                read,
                                Role::Server,
                                Some(config),
                            )
                            .await;
                            // A task of its own, sized for serving alone: this one, sized
                            // for the upgrade's states too, ends here.
                            let serving = serve(ws);
                            executor.spawn(serving).detach();
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
}
