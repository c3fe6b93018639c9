//! fibergun's REST API, on the embedded chain API ([`fibergun_drive::gun`]), for any HTTP server
//! built on the `http` crate's types (hyper in the `fibergun` binary, axum in
//! `examples/axum`), and the tokens that say who a request comes from ([`tokens`]):
//!
//! | request | does |
//! |---|---|
//! | `GET /api/v1/data/*path?depth=N` | the node or value there, links followed N levels (default 0, at most 10); 404 when missing |
//! | `PUT /api/v1/data/*path` | merges the JSON body there (an object into the node, any other value under the last key); answers after the commit |
//! | `POST /api/v1/data/*path` | adds the JSON body to the set there under a new key (201, with the key) |
//! | `DELETE /api/v1/data/*path` | writes `null` tombstones: the value, or every field of the node |
//! | `GET /api/v1/subscribe/*path` | changes to the node there, as a WebSocket or, with `Accept: text/event-stream`, as Server-Sent Events |
//!
//! The path is GUN's chain: `/api/v1/data/chat/room1` is `gun.get("chat").get("room1")`; each
//! segment is percent-decoded. Errors are JSON bodies `{"error":"…"}` with a fitting status.

use http::{header, HeaderMap, HeaderValue, Method, Response, StatusCode};
use percent_encoding::percent_decode_str;
use serde_json::Value as Json;

use fibergun::access::Principal;

pub mod admin;
pub mod inspect;
pub mod routes;
pub mod tokens;

use fibergun_drive::error_json;
use fibergun_drive::gun::{Chain, Change, Gun, GunError};

/// Where the data routes start.
pub const DATA_PREFIX: &str = "/api/v1/data/";
/// Where the subscription routes start.
pub const SUBSCRIBE_PREFIX: &str = "/api/v1/subscribe/";
/// The deepest `depth` a GET may ask for.
pub const MAX_DEPTH: usize = 10;

/// How the REST routes are set up.
#[derive(Clone, Debug)]
pub struct RestConfig {
    /// The largest request body accepted, in bytes (larger ones get 413).
    pub max_body_bytes: usize,
    /// Origins allowed to call the API from a browser (CORS); none by default. `*` allows any.
    pub cors_origins: Vec<String>,
}

impl Default for RestConfig {
    fn default() -> Self {
        RestConfig {
            max_body_bytes: 1 << 20,
            cors_origins: Vec::new(),
        }
    }
}

/// The chain-API handles the REST routes use: one in-process connection per principal, so the
/// server's access policy judges each request as it would that principal's WebSocket. Bounded
/// by the configured tokens (one each, and one anonymous).
#[derive(Debug)]
pub struct Guns {
    connector: fibergun_drive::local::Connector,
    by_principal: std::sync::Mutex<std::collections::HashMap<Principal, Gun>>,
}

impl Guns {
    /// Handles on the server behind `connector`.
    pub fn new(connector: fibergun_drive::local::Connector) -> Guns {
        Guns {
            connector,
            by_principal: Default::default(),
        }
    }

    /// The relay's in-process connections.
    pub fn connector(&self) -> &fibergun_drive::local::Connector {
        &self.connector
    }

    /// The handle acting for `who`.
    pub fn acting_for(&self, who: &Principal) -> Gun {
        let mut map = self.by_principal.lock().expect("rest handles");
        map.entry(who.clone())
            .or_insert_with(|| Gun::connect_as(&self.connector, who.clone()))
            .clone()
    }
}

/// A JSON response.
pub fn json_response(status: StatusCode, body: String) -> Response<String> {
    let mut r = Response::new(body);
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

/// An error response: `{"error":"…"}`.
pub fn error_response(status: StatusCode, text: &str) -> Response<String> {
    json_response(status, error_json(text))
}

/// A request that cannot be served: a status and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RestError {
    /// The status to answer with.
    pub status: StatusCode,
    /// The text of the JSON error body.
    pub text: String,
}

impl RestError {
    fn bad_request(text: impl Into<String>) -> RestError {
        RestError {
            status: StatusCode::BAD_REQUEST,
            text: text.into(),
        }
    }

    /// The response: the status, and `{"error":"…"}`.
    pub fn response(&self) -> Response<String> {
        error_response(self.status, &self.text)
    }
}

/// The chain for a URL path after one of the prefixes, or why it is not one.
pub fn chain_for(gun: &Gun, rest_of_path: &str) -> Result<Chain, RestError> {
    let mut segments = Vec::new();
    for raw in rest_of_path.split('/').filter(|s| !s.is_empty()) {
        let segment = percent_decode_str(raw)
            .decode_utf8()
            .map_err(|_| RestError::bad_request("a path segment is not UTF-8"))?;
        segments.push(segment.into_owned());
    }
    let Some((soul, keys)) = segments.split_first() else {
        return Err(RestError::bad_request(
            "the path names no node: /api/v1/data/<soul>[/<key>...]",
        ));
    };
    Ok(keys.iter().fold(gun.get(soul), |chain, key| chain.get(key)))
}

/// Answers a data request (`path` is the whole URL path, starting with [`DATA_PREFIX`]). The
/// body has already been read within [`RestConfig::max_body_bytes`].
pub async fn data(
    gun: &Gun,
    method: &Method,
    path: &str,
    query: Option<&str>,
    body: &[u8],
) -> Response<String> {
    let Some(rest_of_path) = path.strip_prefix(DATA_PREFIX) else {
        return error_response(StatusCode::NOT_FOUND, "not found");
    };
    let chain = match chain_for(gun, rest_of_path) {
        Ok(chain) => chain,
        Err(e) => return e.response(),
    };
    match *method {
        Method::GET | Method::HEAD => {
            let depth = match depth_param(query) {
                Ok(d) => d,
                Err(e) => return e.response(),
            };
            match chain.load(depth).await {
                Ok(Some(found)) => json_response(StatusCode::OK, fibergun::json::stringify(&found)),
                Ok(None) => error_response(StatusCode::NOT_FOUND, "nothing at this path"),
                Err(e) => gun_error(&e),
            }
        }
        Method::PUT => {
            let value = match json_body(body) {
                Ok(v) => v,
                Err(e) => return e.response(),
            };
            match chain.put(&value).await {
                Ok(w) => json_response(StatusCode::OK, written_json(&w.soul, None)),
                Err(e) => gun_error(&e),
            }
        }
        Method::POST => {
            let value = match json_body(body) {
                Ok(v) => v,
                Err(e) => return e.response(),
            };
            match chain.set(&value).await {
                Ok(w) => json_response(StatusCode::CREATED, written_json(&w.soul, w.key)),
                Err(e) => gun_error(&e),
            }
        }
        Method::DELETE => match chain.delete().await {
            Ok(Some(w)) => json_response(StatusCode::OK, written_json(&w.soul, None)),
            Ok(None) => error_response(StatusCode::NOT_FOUND, "nothing at this path"),
            Err(e) => gun_error(&e),
        },
        _ => {
            let mut r = error_response(
                StatusCode::METHOD_NOT_ALLOWED,
                "use GET, PUT, POST or DELETE",
            );
            r.headers_mut().insert(
                header::ALLOW,
                HeaderValue::from_static("GET, HEAD, PUT, POST, DELETE, OPTIONS"),
            );
            r
        }
    }
}

fn depth_param(query: Option<&str>) -> Result<usize, RestError> {
    let Some(value) = query
        .into_iter()
        .flat_map(|q| q.split('&'))
        .find_map(|pair| pair.strip_prefix("depth="))
    else {
        return Ok(0);
    };
    match value.parse::<usize>() {
        Ok(d) if d <= MAX_DEPTH => Ok(d),
        _ => Err(RestError::bad_request(format!(
            "depth must be a whole number from 0 to {MAX_DEPTH}"
        ))),
    }
}

fn json_body(body: &[u8]) -> Result<Json, RestError> {
    if body.is_empty() {
        return Err(RestError::bad_request("the body must be a JSON value"));
    }
    serde_json::from_slice(body)
        .map_err(|e| RestError::bad_request(format!("the body is not valid JSON: {e}")))
}

fn written_json(soul: &str, key: Option<String>) -> String {
    let mut out = serde_json::Map::new();
    out.insert("ok".into(), Json::Bool(true));
    out.insert("soul".into(), Json::String(soul.to_owned()));
    if let Some(key) = key {
        out.insert("key".into(), Json::String(key));
    }
    Json::Object(out).to_string()
}

/// The response for a failed call.
pub fn gun_error(e: &GunError) -> Response<String> {
    let status = match e {
        GunError::Invalid(_) | GunError::Serialize(_) => StatusCode::BAD_REQUEST,
        GunError::Refused(reason) if reason.contains("busy") => StatusCode::SERVICE_UNAVAILABLE,
        GunError::Refused(reason) if reason.starts_with("Too many writes") => {
            StatusCode::TOO_MANY_REQUESTS
        }
        GunError::Refused(reason) if is_permission(reason) => StatusCode::FORBIDDEN,
        GunError::Refused(_) => StatusCode::BAD_REQUEST,
        GunError::Closed => StatusCode::SERVICE_UNAVAILABLE,
    };
    error_response(status, &e.to_string())
}

/// SEA's refusals and the operator's rules: the writer may not write there.
fn is_permission(reason: &str) -> bool {
    [
        "Access denied",
        "signed writes only",
        "is banned",
        "is not served here",
        "taken down",
        "quota",
        "Unverified",
        "Certificate",
        "Certificant",
        "Alias",
        "Account not same",
        "hash not same",
        "writer other than the owner",
    ]
    .iter()
    .any(|p| reason.contains(p))
}

/// One change as a Server-Sent Event: `event: change` with the change as JSON.
pub fn sse_event(change: &Change) -> String {
    format!("event: change\ndata: {}\n\n", change_json(change))
}

/// One change as JSON: `{"soul":…,"node":{…},"changed":[…]}`.
pub fn change_json(change: &Change) -> String {
    fibergun::json::stringify(&serde_json::json!({
        "soul": change.soul,
        "node": change.node,
        "changed": change.changed,
    }))
}

/// Whether a subscription request asks for Server-Sent Events.
pub fn wants_event_stream(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains("text/event-stream"))
}

/// CORS: adds the allow headers to `response` when the request's origin is allowed.
pub fn cors(config: &RestConfig, request: &HeaderMap, response: &mut HeaderMap) {
    let Some(origin) = request.get(header::ORIGIN).and_then(|o| o.to_str().ok()) else {
        return;
    };
    let allowed = config
        .cors_origins
        .iter()
        .any(|o| o == "*" || o.eq_ignore_ascii_case(origin));
    if !allowed {
        return;
    }
    if let Ok(value) = HeaderValue::from_str(origin) {
        response.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, value);
        response.insert(header::VARY, HeaderValue::from_static("Origin"));
        response.insert(
            header::ACCESS_CONTROL_ALLOW_METHODS,
            HeaderValue::from_static("GET, HEAD, PUT, POST, DELETE, OPTIONS"),
        );
        response.insert(
            header::ACCESS_CONTROL_ALLOW_HEADERS,
            HeaderValue::from_static("content-type"),
        );
    }
}

/// The answer to a CORS preflight (`OPTIONS`).
pub fn preflight(config: &RestConfig, request: &HeaderMap) -> Response<String> {
    let mut r = Response::new(String::new());
    *r.status_mut() = StatusCode::NO_CONTENT;
    cors(config, request, r.headers_mut());
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn depth_is_read_and_bounded() {
        assert_eq!(depth_param(None).unwrap(), 0);
        assert_eq!(depth_param(Some("a=1&depth=3")).unwrap(), 3);
        assert!(depth_param(Some("depth=11")).is_err());
        assert!(depth_param(Some("depth=x")).is_err());
    }

    #[test]
    fn cors_allows_only_configured_origins() {
        let config = RestConfig {
            cors_origins: vec!["https://app.example".into()],
            ..RestConfig::default()
        };
        let mut request = HeaderMap::new();
        request.insert(
            header::ORIGIN,
            HeaderValue::from_static("https://evil.example"),
        );
        let mut response = HeaderMap::new();
        cors(&config, &request, &mut response);
        assert!(response.is_empty());
        request.insert(
            header::ORIGIN,
            HeaderValue::from_static("https://app.example"),
        );
        cors(&config, &request, &mut response);
        assert_eq!(
            response[header::ACCESS_CONTROL_ALLOW_ORIGIN],
            "https://app.example"
        );
        let mut none = HeaderMap::new();
        cors(&RestConfig::default(), &request, &mut none);
        assert!(none.is_empty(), "no origin is allowed by default");
    }

    #[test]
    fn errors_get_fitting_statuses() {
        let status = |e: GunError| gun_error(&e).status();
        assert_eq!(
            status(GunError::Invalid("x".into())),
            StatusCode::BAD_REQUEST
        );
        assert_eq!(
            status(GunError::Refused("Unverified data.".into())),
            StatusCode::FORBIDDEN
        );
        assert_eq!(
            status(GunError::Refused("Server busy, retry".into())),
            StatusCode::SERVICE_UNAVAILABLE
        );
        assert_eq!(
            status(GunError::Refused("Too many writes by key K".into())),
            StatusCode::TOO_MANY_REQUESTS
        );
        assert_eq!(
            status(GunError::Refused(
                "This relay takes signed writes only: …".into()
            )),
            StatusCode::FORBIDDEN
        );
    }
}
