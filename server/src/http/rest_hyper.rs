//! The REST routes on hyper: reading bodies within the limit, CORS, and streaming subscriptions
//! (WebSocket or Server-Sent Events). What each route does is in [`super::rest`].

use std::time::Duration;

use async_tungstenite::tungstenite::Message;
use async_tungstenite::WebSocketStream;
use fibergun_drive::gun::{Gun, Subscription};
use fibergun_drive::Refusal;
use fibergun_smol::http::{error_reply, full, refusal_reply, wants_websocket, Body, Reply};
use fibergun_smol::Context;
use futures_util::StreamExt;
use http_body_util::{BodyExt, Limited, StreamBody};
use hyper::body::{Bytes, Frame, Incoming};
use hyper::header::{HeaderValue, CACHE_CONTROL, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};
use smol::net::TcpStream;

use fibergun_rest::{self as rest, Guns, RestConfig, SUBSCRIBE_PREFIX};

/// A comment line sent on an idle event stream, so proxies keep it open.
const KEEPALIVE: Duration = Duration::from_secs(15);

/// `/api/v1/data/*path`, for a request whose sender `gun` acts for (or the refusal of its
/// token).
pub async fn data(req: Request<Incoming>, gun: Result<Gun, Refusal>, config: &RestConfig) -> Reply {
    let headers = req.headers().clone();
    if req.method() == Method::OPTIONS {
        return into_reply(rest::preflight(config, &headers));
    }
    let gun = match gun {
        Ok(gun) => gun,
        Err(refusal) => {
            let mut reply = refusal_reply(refusal);
            rest::cors(config, &headers, reply.headers_mut());
            return reply;
        }
    };
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let query = req.uri().query().map(str::to_owned);
    let body = match Limited::new(req.into_body(), config.max_body_bytes)
        .collect()
        .await
    {
        Ok(collected) => collected.to_bytes(),
        Err(_) => {
            let text = format!(
                "the body is over the limit of {} bytes",
                config.max_body_bytes
            );
            let mut r = into_reply(rest::error_response(StatusCode::PAYLOAD_TOO_LARGE, &text));
            rest::cors(config, &headers, r.headers_mut());
            return r;
        }
    };
    let response = rest::data(&gun, &method, &path, query.as_deref(), &body).await;
    let mut r = into_reply(response);
    if method == Method::HEAD {
        *r.body_mut() = full(Bytes::new());
    }
    rest::cors(config, &headers, r.headers_mut());
    r
}

/// `/api/v1/subscribe/*path`: a WebSocket, or Server-Sent Events.
pub fn subscribe(
    req: Request<Incoming>,
    relay: &Context,
    guns: &Guns,
    config: &RestConfig,
) -> Reply {
    let principal = match relay.authenticate(&req) {
        Ok(principal) => principal,
        Err(refusal) => return refusal_reply(refusal),
    };
    let gun = guns.acting_for(&principal);
    let rest_of_path = req.uri().path()[SUBSCRIBE_PREFIX.len()..].to_owned();
    let chain = match rest::chain_for(&gun, &rest_of_path) {
        Ok(chain) => chain,
        Err(e) => return into_reply(e.response()),
    };
    let headers = req.headers().clone();
    let sse = rest::wants_event_stream(&headers);
    if !wants_websocket(&req) && !sse {
        return error_reply(
            StatusCode::BAD_REQUEST,
            "subscribe with a WebSocket upgrade, or with Accept: text/event-stream",
        );
    }
    let sub = match chain.on() {
        Ok(sub) => sub,
        Err(e) => return into_reply(rest::gun_error(&e)),
    };
    if wants_websocket(&req) {
        return relay.upgrade(req, "", move |ws| changes_over_websocket(ws, sub));
    }
    let mut r = Response::new(event_stream(sub));
    let h = r.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    h.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    rest::cors(config, &headers, h);
    r
}

/// `/api/v1/admin/watch/{soul}` (the admin token checked): the node's changes as Server-Sent
/// Events, read as the operator.
pub fn watch(guns: &Guns, soul: &str) -> Reply {
    let soul = match percent_encoding::percent_decode_str(soul).decode_utf8() {
        Ok(soul) if !soul.is_empty() => soul.into_owned(),
        _ => return error_reply(StatusCode::BAD_REQUEST, "the soul is empty or not UTF-8"),
    };
    let gun = guns.acting_for(&fibergun::access::Principal::Admin);
    let sub = match gun.get(&soul).on() {
        Ok(sub) => sub,
        Err(e) => return into_reply(rest::gun_error(&e)),
    };
    let mut r = Response::new(event_stream(sub));
    let h = r.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    h.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    r
}

/// Each change as an event, with a keepalive comment when idle.
fn event_stream(sub: Subscription) -> Body {
    let stream = futures_util::stream::unfold(sub, |mut sub| async move {
        let next = smol::future::or(async { Some(sub.next().await) }, async {
            async_io::Timer::after(KEEPALIVE).await;
            None
        })
        .await;
        let text = match next {
            Some(Some(change)) => rest::sse_event(&change),
            Some(None) => return None, // the server is stopping
            None => ": keepalive\n\n".to_owned(),
        };
        Some((
            Ok::<_, std::convert::Infallible>(Frame::data(Bytes::from(text))),
            sub,
        ))
    });
    BodyExt::boxed_unsync(StreamBody::new(stream))
}

/// Each change as a text message, until either side closes.
async fn changes_over_websocket(ws: WebSocketStream<TcpStream>, mut sub: Subscription) {
    let (mut sink, mut stream) = ws.split();
    loop {
        let next = smol::future::or(async { Some(sub.next().await) }, async {
            // Anything from the client but a close is ignored; its end ends the subscription.
            loop {
                match stream.next().await {
                    Some(Ok(Message::Close(_))) | Some(Err(_)) | None => return None,
                    Some(Ok(_)) => continue,
                }
            }
        })
        .await;
        let Some(Some(change)) = next else {
            break;
        };
        if sink
            .send(Message::text(rest::change_json(&change)))
            .await
            .is_err()
        {
            break;
        }
    }
    let _ = sink.close(None).await;
}

pub(super) fn into_reply(response: Response<String>) -> Reply {
    response.map(full)
}
