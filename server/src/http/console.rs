//! The admin console at `/admin`: a page in the browser over the admin API, with the relay at a
//! glance (`GET /api/v1/admin/status`, sampled every [`SAMPLE_EVERY`] for its charts) and a
//! node's changes live (`GET /api/v1/admin/watch/{soul}`, Server-Sent Events).
//!
//! Signing in posts the admin token to `/admin/login`, which sets it as an HttpOnly,
//! SameSite=Strict cookie; the admin API takes that cookie as it takes `Authorization: Bearer`.
//! Without either, `/admin` answers 401 with the sign-in form. The page's assets are compiled
//! into the binary (`console/`): plain HTML, CSS and JavaScript, no build step.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::{Duration, Instant};

use fibergun_drive::PeerSnapshot;
use fibergun_smol::http::{error_reply, full, json_reply, Reply};
use fibergun_smol::Context;
use hyper::header::{HeaderValue, CACHE_CONTROL, CONTENT_TYPE, LOCATION, SET_COOKIE};
use hyper::{HeaderMap, Response, StatusCode};
use serde_json::{json, Value as Json};

use super::metrics::ProcessMemory;
use crate::storage::StoreReaders;

/// The console's page.
pub const PAGE: &str = "/admin";
/// The cookie that carries the admin token for the console.
const COOKIE: &str = "fibergun_admin";
/// How often the charts' figures are sampled, and how many samples are kept (ten minutes).
pub const SAMPLE_EVERY: Duration = Duration::from_secs(2);
const SAMPLES: usize = 300;
/// Connections listed at most.
const MAX_CONNECTIONS: usize = 500;

const CONSOLE_HTML: &str = include_str!("console/console.html");
const LOGIN_HTML: &str = include_str!("console/login.html");
const CONSOLE_JS: &str = include_str!("console/console.js");
const CONSOLE_CSS: &str = include_str!("console/console.css");

/// The secret a request presents: `Authorization: Bearer …`, or the console's cookie.
pub fn presented(headers: &HeaderMap) -> Option<String> {
    let bearer = headers
        .get(hyper::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    bearer.or_else(|| {
        headers
            .get_all(hyper::header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .find_map(|c| c.trim().strip_prefix(COOKIE)?.strip_prefix('='))
            .and_then(|v| percent_encoding::percent_decode_str(v).decode_utf8().ok())
            .map(|secret| format!("Bearer {secret}"))
    })
}

/// What the status shows of the relay's settings.
#[derive(Clone, Debug, Default)]
pub struct Settings {
    /// The storage backend's name.
    pub store: &'static str,
    /// `--storage-quota`, if any.
    pub storage_quota: Option<u64>,
    /// The operator's write rules.
    pub writes: fibergun::WritePolicy,
}

/// One sample of the charts' figures.
#[derive(Clone, Copy, Debug)]
struct Sample {
    at: Instant,
    unix_ms: u128,
    puts: u64,
    gets: u64,
    acks: u64,
    refused: u64,
    ack_buckets: [u64; fibergun::LATENCY_BOUNDS.len() + 1],
    resident_bytes: u64,
    connections: usize,
}

impl Sample {
    fn of(peer: &PeerSnapshot) -> Sample {
        Sample {
            at: Instant::now(),
            unix_ms: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis()),
            puts: peer.stats.puts_received,
            gets: peer.stats.gets_received,
            acks: peer.stats.puts_acked,
            refused: peer.stats.puts_refused,
            ack_buckets: peer.stats.put_latency.buckets,
            resident_bytes: ProcessMemory::read().resident_bytes,
            connections: peer.connections,
        }
    }
}

/// The samples of the last minutes, taken by a thread started with the relay (it ends with the
/// relay).
#[derive(Clone, Default)]
pub struct History {
    samples: Arc<Mutex<VecDeque<Sample>>>,
    started: Arc<OnceLock<()>>,
}

impl History {
    /// Starts sampling `relay` (once; later calls do nothing).
    pub fn start(&self, relay: &Arc<Context>) {
        self.started.get_or_init(|| {
            let (relay, samples) = (Arc::downgrade(relay), self.samples.clone());
            let _ = std::thread::Builder::new()
                .name("fibergun-console-samples".into())
                .spawn(move || sample_until_gone(&relay, &samples));
        });
    }

    /// Per interval between samples: rates, the interval's ack latency quantiles, memory.
    fn series(&self) -> Vec<Json> {
        let samples = self.samples.lock().expect("samples");
        samples
            .iter()
            .zip(samples.iter().skip(1))
            .map(|(a, b)| {
                let secs = b.at.saturating_duration_since(a.at).as_secs_f64().max(1e-3);
                let rate = |x: u64, y: u64| (y.saturating_sub(x)) as f64 / secs;
                let mut interval = b.ack_buckets;
                for (n, earlier) in interval.iter_mut().zip(a.ack_buckets) {
                    *n = n.saturating_sub(earlier);
                }
                json!({
                    "t": b.unix_ms as u64,
                    "puts_per_sec": rate(a.puts, b.puts),
                    "gets_per_sec": rate(a.gets, b.gets),
                    "acks_per_sec": rate(a.acks, b.acks),
                    "refused_per_sec": rate(a.refused, b.refused),
                    "ack_p50_ms": quantile_ms(&interval, 0.5),
                    "ack_p99_ms": quantile_ms(&interval, 0.99),
                    "resident_bytes": b.resident_bytes,
                    "connections": b.connections,
                })
            })
            .collect()
    }
}

fn sample_until_gone(relay: &Weak<Context>, samples: &Mutex<VecDeque<Sample>>) {
    loop {
        let Some(ctx) = relay.upgrade() else {
            return;
        };
        let snapshot = smol::block_on(ctx.snapshot());
        drop(ctx);
        if let Some(peer) = snapshot {
            let mut samples = samples.lock().expect("samples");
            if samples.len() == SAMPLES {
                samples.pop_front();
            }
            samples.push_back(Sample::of(&peer));
        }
        std::thread::sleep(SAMPLE_EVERY);
    }
}

/// The upper bound, in ms, of the bucket holding quantile `q` of a histogram's counts; `null`
/// when it is empty (and past the last bound, the last bound).
fn quantile_ms(buckets: &[u64], q: f64) -> Json {
    let total: u64 = buckets.iter().sum();
    if total == 0 {
        return Json::Null;
    }
    let rank = (total as f64 * q).ceil().max(1.0) as u64;
    let mut seen = 0;
    for (i, n) in buckets.iter().enumerate() {
        seen += n;
        if seen >= rank {
            let bounds = fibergun::LATENCY_BOUNDS;
            return json!(bounds[i.min(bounds.len() - 1)] * 1000.0);
        }
    }
    Json::Null
}

/// `GET /api/v1/admin/status`: the relay at a glance.
pub async fn status(
    relay: &Arc<Context>,
    history: &History,
    stats: &StoreReaders,
    settings: &Settings,
) -> Reply {
    let (Some(peer), Some(conns)) = (
        relay.snapshot().await,
        relay.connections(MAX_CONNECTIONS).await,
    ) else {
        return error_reply(StatusCode::SERVICE_UNAVAILABLE, "the core is not answering");
    };
    // A dialled connection is named by the peer it reaches.
    let dialled_url = |id: u64| {
        peer.remotes.iter().find_map(|r| match r.state {
            fibergun::RemoteState::Open(conn) if conn.0 == id => Some(r.url.clone()),
            _ => None,
        })
    };
    let connections: Vec<Json> = conns
        .iter()
        .map(|c| {
            json!({
                "id": c.id,
                "addr": c.addr.map(|a| a.to_string()).or_else(|| dialled_url(c.id)),
                "kind": c.kind.name(),
                "dialled": c.dialled,
                "queued_bytes": c.queued_bytes,
                "age_secs": c.age.as_secs_f64(),
            })
        })
        .collect();
    let peers: Vec<Json> = peer
        .remotes
        .iter()
        .map(|r| {
            json!({
                "url": r.url,
                "state": state_name(&r.state),
                "failures": r.failures,
                "pending": r.pending,
                "upstream": peer.upstreams.iter().any(|u| u.url == r.url),
            })
        })
        .collect();
    let upstreams: Vec<Json> = peer
        .upstreams
        .iter()
        .map(|u| json!({"url": u.url, "connected": u.connected, "waiting": u.waiting}))
        .collect();
    let size = stats.size.as_ref().and_then(|s| s.read().ok());
    let postgres = stats.postgres_figures();
    let store = json!({
        "kind": settings.store,
        "nodes": size.as_ref().map(|s| s.nodes),
        "fields": size.as_ref().map(|s| s.fields),
        "used_bytes": size.as_ref().map(|s| s.used_bytes).or(postgres.as_ref().map(|p| p.table_bytes)),
        "map_bytes": size.as_ref().map(|s| s.map_bytes),
        "quota_bytes": settings.storage_quota,
    });
    let w = &settings.writes;
    let nonzero = |n: u64| (n > 0).then_some(n);
    let rules = json!({
        "signed_only": w.signed_only,
        "user_quota_bytes": nonzero(w.user_space_bytes),
        "public_quota_bytes": nonzero(w.shared_space_bytes),
        "writes_per_key_per_sec": (w.writes_per_key_per_sec > 0.0).then_some(w.writes_per_key_per_sec),
    });
    let s = &peer.stats;
    let totals = json!({
        "puts_received": s.puts_received,
        "puts_acked": s.puts_acked,
        "puts_refused": s.puts_refused,
        "gets_received": s.gets_received,
        "gets_answered": s.gets_answered,
        "subscribed_souls": peer.subscribed_souls,
        "resident_bytes": ProcessMemory::read().resident_bytes,
        "refusals": s.refusals.by_rule().map(|(r, n)| (r.name().to_owned(), json!(n))).collect::<serde_json::Map<_, _>>(),
    });
    let body = json!({
        "version": env!("CARGO_PKG_VERSION"),
        "connections": {"open": peer.connections, "links": peer.links, "listed": connections},
        "peers": peers,
        "upstreams": upstreams,
        "store": store,
        "rules": rules,
        "totals": totals,
        "sample_every_secs": SAMPLE_EVERY.as_secs(),
        "history": history.series(),
    });
    json_reply(StatusCode::OK, body.to_string())
}

fn state_name(state: &fibergun::RemoteState) -> &'static str {
    use fibergun::RemoteState as S;
    match state {
        S::Waiting(_) => "waiting to dial again",
        S::Dialing => "dialling",
        S::Open(_) => "connected",
        S::Covered(_) => "connected (it dialled us)",
        S::Stopped => "stopped (it is this relay)",
    }
}

fn page(status: StatusCode, content_type: &'static str, body: &'static str) -> Reply {
    let mut r = Response::new(full(body));
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        "content-security-policy",
        HeaderValue::from_static("default-src 'self'; frame-ancestors 'none'"),
    );
    r
}

/// `GET /admin` (and its assets): the console for a signed-in operator, else the sign-in form
/// with 401.
pub fn asset(path: &str, signed_in: bool) -> Option<Reply> {
    let html = "text/html; charset=utf-8";
    Some(match (path, signed_in) {
        ("/admin" | "/admin/", true) => page(StatusCode::OK, html, CONSOLE_HTML),
        ("/admin" | "/admin/", false) => page(StatusCode::UNAUTHORIZED, html, LOGIN_HTML),
        ("/admin/console.js", _) => page(StatusCode::OK, "text/javascript", CONSOLE_JS),
        ("/admin/console.css", _) => page(StatusCode::OK, "text/css", CONSOLE_CSS),
        _ => return None,
    })
}

/// `POST /admin/login` with the form's `token`: the cookie and back to the console, or the
/// form again with 401.
pub fn login(token: &str, form: &[u8]) -> Reply {
    let presented = form
        .split(|b| *b == b'&')
        .filter_map(|pair| pair.strip_prefix(b"token="))
        .find_map(|v| {
            let v = String::from_utf8_lossy(v).replace('+', " ");
            percent_encoding::percent_decode_str(&v)
                .decode_utf8()
                .ok()
                .map(|s| s.into_owned())
        })
        .unwrap_or_default();
    if !fibergun_rest::admin::authorized(token, Some(&format!("Bearer {presented}"))) {
        let html = LOGIN_HTML.replace("<p id=\"refused\" hidden>", "<p id=\"refused\">");
        let mut r = Response::new(full(html));
        *r.status_mut() = StatusCode::UNAUTHORIZED;
        r.headers_mut().insert(
            CONTENT_TYPE,
            HeaderValue::from_static("text/html; charset=utf-8"),
        );
        return r;
    }
    let value =
        percent_encoding::utf8_percent_encode(&presented, percent_encoding::NON_ALPHANUMERIC);
    redirect_with_cookie(&format!(
        "{COOKIE}={value}; Path=/; HttpOnly; SameSite=Strict"
    ))
}

/// `POST /admin/logout`: the cookie cleared.
pub fn logout() -> Reply {
    redirect_with_cookie(&format!(
        "{COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0"
    ))
}

fn redirect_with_cookie(cookie: &str) -> Reply {
    let mut r = Response::new(full(""));
    *r.status_mut() = StatusCode::SEE_OTHER;
    let h = r.headers_mut();
    h.insert(LOCATION, HeaderValue::from_static(PAGE));
    if let Ok(v) = HeaderValue::from_str(cookie) {
        h.insert(SET_COOKIE, v);
    }
    r
}
