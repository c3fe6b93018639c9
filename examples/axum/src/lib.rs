//! fibergun inside an axum (tokio) application: the GUN endpoint `/gun` and the REST routes
//! (`/api/v1/data/*path`, `/api/v1/subscribe/*path` as Server-Sent Events) mounted on an axum
//! `Router`, beside the application's own routes. The Rust counterpart of the original Fiber
//! middleware.
//!
//! fibergun runs [embedded](fibergun_threads::Relay::embedded): its core, store and verifier
//! threads, no listener of its own. Each WebSocket that axum accepts at `/gun` is bridged to an
//! in-process connection ([`fibergun_drive::local`]); the REST routes call the server's
//! framework-neutral [`fibergun_rest`] with one shared chain-API handle. tokio is
//! only the HTTP stack's runtime; fibergun's calls are runtime-neutral futures.

use std::convert::Infallible;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use axum::Router;
use std::sync::Arc;

use fibergun::access::Principal;
use fibergun_drive::local::{Connector, LocalConnection};
use fibergun_rest::tokens::{AccessConfig, Unauthorized};
use fibergun_rest::{self as rest, Guns, RestConfig, SUBSCRIBE_PREFIX};

/// What the routes share.
#[derive(Clone)]
pub struct Fibergun {
    connector: Connector,
    guns: Arc<Guns>,
    rest: RestConfig,
    access: AccessConfig,
}

impl Fibergun {
    /// Routes for the server behind `connector`, with its REST settings and access (the same
    /// tokens and policy the server was configured with).
    pub fn new(connector: Connector, rest: RestConfig, access: AccessConfig) -> Fibergun {
        Fibergun {
            guns: Arc::new(Guns::new(connector.clone())),
            connector,
            rest,
            access,
        }
    }

    /// Who sent a request; `None` for an unknown token (answer [`unauthorized`]).
    fn principal(&self, headers: &HeaderMap, uri: &Uri) -> Option<Principal> {
        let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
        self.access.authenticate(header, uri.query()).ok()
    }
}

/// fibergun's routes, to merge into an application's router.
pub fn routes(fibergun: Fibergun) -> Router {
    let body_limit = fibergun.rest.max_body_bytes;
    Router::new()
        .route("/gun", get(gun_socket))
        .route("/api/v1/data/{*path}", any(data))
        .route("/api/v1/subscribe/{*path}", get(subscribe))
        .layer(DefaultBodyLimit::max(body_limit))
        .with_state(fibergun)
}

async fn gun_socket(
    ws: WebSocketUpgrade,
    State(f): State<Fibergun>,
    headers: HeaderMap,
    uri: Uri,
) -> Response {
    let Some(principal) = f.principal(&headers, &uri) else {
        return unauthorized();
    };
    ws.on_upgrade(move |socket| bridge(socket, f.connector.open_as(principal)))
}

/// Frames from the socket to the core and back, until either side ends.
async fn bridge(mut socket: WebSocket, conn: LocalConnection) {
    loop {
        tokio::select! {
            incoming = socket.recv() => match incoming {
                Some(Ok(Message::Text(text))) => {
                    if conn.send(text.to_string()).await.is_err() {
                        break;
                    }
                }
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => break,
                Some(Ok(_)) => {}
            },
            outgoing = conn.recv() => match outgoing {
                Ok(text) => {
                    if socket.send(Message::Text(text.into())).await.is_err() {
                        break;
                    }
                }
                Err(_) => break,
            },
        }
    }
    conn.close();
}

async fn data(
    State(f): State<Fibergun>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if method == Method::OPTIONS {
        return into_axum(rest::preflight(&f.rest, &headers));
    }
    let Some(principal) = f.principal(&headers, &uri) else {
        return unauthorized();
    };
    let gun = f.guns.acting_for(&principal);
    let mut response = rest::data(&gun, &method, uri.path(), uri.query(), &body).await;
    rest::cors(&f.rest, &headers, response.headers_mut());
    into_axum(response)
}

async fn subscribe(State(f): State<Fibergun>, uri: Uri, headers: HeaderMap) -> Response {
    let Some(principal) = f.principal(&headers, &uri) else {
        return unauthorized();
    };
    let gun = f.guns.acting_for(&principal);
    let chain = match rest::chain_for(&gun, &uri.path()[SUBSCRIBE_PREFIX.len()..]) {
        Ok(chain) => chain,
        Err(e) => return into_axum(e.response()),
    };
    if !rest::wants_event_stream(&headers) {
        let text = "subscribe with Accept: text/event-stream";
        return into_axum(rest::error_response(StatusCode::BAD_REQUEST, text));
    }
    let sub = match chain.on() {
        Ok(sub) => sub,
        Err(e) => return into_axum(rest::gun_error(&e)),
    };
    let stream = futures_util::stream::unfold(sub, |mut sub| async move {
        let change = sub.next().await?;
        let event = Event::default()
            .event("change")
            .data(rest::change_json(&change));
        Some((Ok::<_, Infallible>(event), sub))
    });
    Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response()
}

fn unauthorized() -> Response {
    into_axum(rest::json_response(
        StatusCode::UNAUTHORIZED,
        Unauthorized::body(),
    ))
}

fn into_axum(response: axum::http::Response<String>) -> Response {
    response.map(axum::body::Body::from)
}
