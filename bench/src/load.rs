//! The load generator: GUN's wire protocol over raw WebSockets, one task per connection, a fixed
//! number of requests in flight on each (closed loop: every completion sends the next request).
//! A put completes when a reply whose `@` is the put's `#` arrives (the ack); a GET completes on
//! its first reply.

use std::fmt::Write as _;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_tungstenite::tungstenite::Message;
use futures_util::StreamExt;
use serde_json::Value as Json;

/// What a scenario sends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    /// A put of one 64-byte string to a new soul.
    Put,
    /// A GET of one of `souls` souls written beforehand by [`prefill`].
    Get {
        /// How many souls were prefilled.
        souls: u64,
    },
    /// A put of one short string into the connection's user space (`~PUB`), signed as GUN JS
    /// signs it. Signing happens before the clock starts, so only the relay's checks are timed.
    SignedPut,
}

/// A scenario's shape.
#[derive(Clone, Copy, Debug)]
pub struct Shape {
    /// Connections.
    pub conns: usize,
    /// Requests in flight per connection.
    pub inflight: usize,
    /// Requests in all.
    pub total: usize,
    /// Give up on a request after this long.
    pub timeout: Duration,
}

/// What a run measured.
#[derive(Clone, Debug, Default)]
pub struct Outcome {
    /// Requests completed.
    pub completed: usize,
    /// Requests never answered within the timeout.
    pub missing: usize,
    /// Replies that were errors.
    pub errors: usize,
    /// Completed requests per second.
    pub ops_per_s: f64,
    /// Latency percentiles, in milliseconds.
    pub p50_ms: f64,
    /// 99th percentile latency, in milliseconds.
    pub p99_ms: f64,
}

const VALUE: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

pub fn wall_ms() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64() * 1000.0)
        .unwrap_or(0.0)
        .floor()
}

fn put_text(out: &mut String, id: &str, soul: &str) {
    // Piece by piece, as `get_text`.
    let state = wall_ms() as u64;
    for piece in [
        r##"{"#":""##,
        id,
        r#"","put":{""#,
        soul,
        r##"":{"_":{"#":""##,
        soul,
    ] {
        out.push_str(piece);
    }
    out.push_str(r#"",">":{"v":"#);
    out.push_str(itoa::Buffer::new().format(state));
    for piece in [r#"}},"v":""#, VALUE, r#""}}}"#] {
        out.push_str(piece);
    }
}

/// The bodies (`"put":{…}`, without the id) of connection `conn`'s `n` signed puts.
fn signed_bodies(conn: usize, n: usize, run_id: &str) -> Vec<String> {
    use base64::Engine;
    let mut secret = [1u8; 32];
    secret[..8].copy_from_slice(&(conn as u64 + 1).to_le_bytes());
    let private = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(secret);
    let pair = fibergun::sea::KeyPair::from_private(&private).expect("a valid P-256 scalar");
    let soul = format!("~{}", pair.public().as_str());
    let state = wall_ms();
    let value = Json::String("signed and checked".into());
    (0..n)
        .map(|i| {
            let key = format!("{run_id}.{i}");
            let signed = fibergun::sea::SignedValue::sign(&pair, &soul, &key, &value, state);
            let mut out = format!(
                r##""put":{{"{soul}":{{"_":{{"#":"{soul}",">":{{"{key}":{state}}}}},"{key}":"##
            );
            fibergun::json::write_string(&mut out, &signed);
            out.push_str("}}");
            out
        })
        .collect()
}

/// Every connection's signed put bodies, made on all cores.
fn sign_all(shape: Shape, run_id: &str) -> Vec<Vec<String>> {
    let per_conn = shape.total.div_ceil(shape.conns);
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    let conns: Vec<usize> = (0..shape.conns).collect();
    std::thread::scope(|scope| {
        let workers: Vec<_> = conns
            .chunks(shape.conns.div_ceil(cores))
            .map(|chunk| {
                scope.spawn(move || {
                    chunk
                        .iter()
                        .map(|&c| {
                            let n = per_conn.min(shape.total.saturating_sub(c * per_conn));
                            signed_bodies(c, n, run_id)
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().expect("signing thread"))
            .collect()
    })
}

/// A GET of soul `bench/prefill/<n>`, written piece by piece: the generator writes hundreds of
/// thousands a second, and formatting machinery was a tenth of its CPU.
fn get_text(out: &mut String, id: &str, n: u64) {
    out.push_str(r##"{"#":""##);
    out.push_str(id);
    out.push_str(r##"","get":{"#":"bench/prefill/"##);
    out.push_str(itoa::Buffer::new().format(n));
    out.push_str(r#""}}"#);
}

/// Writes `souls` souls `bench/prefill/<i>` (acked) for a GET scenario.
pub fn prefill(url: &str, souls: u64) -> Result<(), String> {
    let shape = Shape {
        conns: 10,
        inflight: 10,
        total: souls as usize,
        timeout: Duration::from_secs(30),
    };
    let out = run_inner(url, Op::Put, shape, "bench/prefill", true)?;
    if out.completed < souls as usize {
        return Err(format!(
            "prefill: only {} of {souls} puts acked",
            out.completed
        ));
    }
    Ok(())
}

/// Runs one scenario against `url` (`ws://host:port/gun`).
pub fn run(url: &str, op: Op, shape: Shape, run_id: &str) -> Result<Outcome, String> {
    run_inner(url, op, shape, run_id, false)
}

fn run_inner(
    url: &str,
    op: Op,
    shape: Shape,
    run_id: &str,
    prefill: bool,
) -> Result<Outcome, String> {
    let mut signed = match op {
        Op::SignedPut => sign_all(shape, run_id),
        Op::Put | Op::Get { .. } => Vec::new(),
    }
    .into_iter();
    let latencies = Arc::new(Mutex::new(Vec::with_capacity(shape.total)));
    let counts = Arc::new(Mutex::new((0usize, 0usize)));
    let per_conn = shape.total.div_ceil(shape.conns);
    let started = Instant::now();
    let ex = Arc::new(smol::Executor::new());
    let tasks: Vec<_> = (0..shape.conns)
        .map(|c| {
            let (url, latencies, counts) = (url.to_owned(), latencies.clone(), counts.clone());
            let run_id = run_id.to_owned();
            let bodies = signed.next().unwrap_or_default();
            ex.spawn(async move {
                let n = per_conn.min(shape.total.saturating_sub(c * per_conn));
                let request = Request {
                    op,
                    conn: c,
                    run_id: &run_id,
                    prefill,
                    signed: &bodies,
                };
                let result = connection(&url, shape, n, request).await;
                let (lat, errors) = result?;
                let missing = n - lat.len() - errors;
                latencies.lock().expect("lock").extend(lat);
                let mut k = counts.lock().expect("lock");
                k.0 += errors;
                k.1 += missing;
                Ok::<(), String>(())
            })
        })
        .collect();
    smol::block_on(ex.run(async {
        for t in tasks {
            t.await?;
        }
        Ok::<(), String>(())
    }))?;
    let elapsed = started.elapsed().as_secs_f64();
    let mut lat = std::mem::take(&mut *latencies.lock().expect("lock"));
    lat.sort_unstable();
    let pct = |p: f64| {
        lat.get(((lat.len() as f64 * p) as usize).min(lat.len().saturating_sub(1)))
            .map_or(0.0, |us| *us as f64 / 1000.0)
    };
    let (errors, missing) = *counts.lock().expect("lock");
    Ok(Outcome {
        completed: lat.len(),
        missing,
        errors,
        ops_per_s: lat.len() as f64 / elapsed,
        p50_ms: pct(0.50),
        p99_ms: pct(0.99),
    })
}

/// The ids that replies in `text` answer: each string after `"@":"`. Found by scanning, not by
/// parsing the frame: the load generator must not be what limits the run.
fn reply_ids(text: &str) -> impl Iterator<Item = &str> {
    text.match_indices(r#""@":""#).filter_map(move |(at, pat)| {
        let rest = &text[at + pat.len()..];
        rest.find('"').map(|end| &rest[..end])
    })
}

/// The messages of a frame, parsed (an array frame's each, or the one); none if it is not JSON.
pub(crate) fn frame_messages(text: &str) -> Vec<Json> {
    match serde_json::from_str::<Json>(text) {
        Ok(Json::Array(items)) => items,
        Ok(one) => vec![one],
        Err(_) => Vec::new(),
    }
}

/// The `@` of every error reply in a frame (rare, so a full parse is fine).
fn error_reply_ids(text: &str) -> Vec<String> {
    frame_messages(text)
        .iter()
        .filter(|m| m.get("err").is_some())
        .filter_map(|m| m.get("@").and_then(Json::as_str).map(str::to_owned))
        .collect()
}

/// What one connection sends.
struct Request<'a> {
    op: Op,
    conn: usize,
    run_id: &'a str,
    /// Writing the souls a GET scenario reads.
    prefill: bool,
    /// For [`Op::SignedPut`]: the bodies, made beforehand.
    signed: &'a [String],
}

impl Request<'_> {
    /// Writes request `i` of `n` to `out`; returns its id.
    fn write(&self, i: usize, n: usize, rng: &mut u64, out: &mut String) -> String {
        // Ids end with '.' so that none equals GUN JS's internal per-key ids (id + counter),
        // which it shares with wire ids and would drop as duplicates.
        let (run_id, conn) = (self.run_id, self.conn);
        let (mut c, mut k) = (itoa::Buffer::new(), itoa::Buffer::new());
        let id = [run_id, ".", c.format(conn), ".", k.format(i), "."].concat();
        match self.op {
            Op::Put if self.prefill => {
                let soul = ["bench/prefill/", itoa::Buffer::new().format(conn * n + i)].concat();
                put_text(out, &id, &soul)
            }
            Op::Put => {
                let soul = [run_id, "/c", c.format(conn), "/", k.format(i)].concat();
                put_text(out, &id, &soul)
            }
            Op::SignedPut => {
                let _ = write!(out, r##"{{"#":"{id}",{}}}"##, self.signed[i]);
            }
            Op::Get { souls } => {
                *rng ^= *rng << 13;
                *rng ^= *rng >> 7;
                *rng ^= *rng << 17;
                get_text(out, &id, *rng % souls)
            }
        }
        id
    }
}

/// The generator's WebSocket settings. tungstenite zero-fills its read buffer, up to this size,
/// before every read: at its default of 128 KiB that was an eighth of the generator's CPU, and
/// made it the ceiling of the bare server's fastest rows. Replies come in frames of a few KiB.
fn client_config() -> async_tungstenite::tungstenite::protocol::WebSocketConfig {
    async_tungstenite::tungstenite::protocol::WebSocketConfig::default().read_buffer_size(8 << 10)
}

/// One connection's closed loop. Returns the latencies (µs) of completed requests and the number
/// of error replies. Requests that become due together go out as one array frame, as GUN batches.
async fn connection(
    url: &str,
    shape: Shape,
    n: usize,
    request: Request<'_>,
) -> Result<(Vec<u64>, usize), String> {
    let (ws, _) = async_tungstenite::smol::connect_async_with_config(url, Some(client_config()))
        .await
        .map_err(|e| format!("connect {url}: {e}"))?;
    let (mut tx, mut rx) = ws.split();
    // At most `inflight` entries: a linear search beats hashing here.
    let mut in_flight: Vec<(String, Instant)> = Vec::with_capacity(shape.inflight);
    let mut latencies = Vec::with_capacity(n);
    let mut errors = 0;
    let mut next = 0usize;
    let mut rng = (request.conn as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    let mut last_progress = Instant::now();
    let mut frame = String::new();
    while latencies.len() + errors < n {
        frame.clear();
        let mut batched = 0;
        // The requests of one frame leave together: one clock read for all.
        let sent = Instant::now();
        while in_flight.len() < shape.inflight && next < n {
            frame.push(if batched == 0 { '[' } else { ',' });
            let id = request.write(next, n, &mut rng, &mut frame);
            next += 1;
            batched += 1;
            in_flight.push((id, sent));
        }
        if batched > 0 {
            frame.push(']');
            tx.send(Message::text(frame.as_str()))
                .await
                .map_err(|e| format!("send: {e}"))?;
        }
        let received = smol::future::or(async { rx.next().await.map(Some) }, async {
            smol::Timer::at(last_progress + shape.timeout).await;
            None
        })
        .await;
        let text = match received {
            None => break, // nothing for a whole timeout: the rest are missing
            Some(None) => break,
            Some(Some(Ok(Message::Text(t)))) => t,
            Some(Some(Ok(_))) => continue,
            Some(Some(Err(e))) => return Err(format!("read: {e}")),
        };
        let failed = if text.contains(r#""err""#) {
            error_reply_ids(text.as_str())
        } else {
            Vec::new()
        };
        // A GET completes on its first reply; a put on its ack (or an error). The replies of
        // one frame arrived together.
        let arrived = Instant::now();
        for to in reply_ids(text.as_str()) {
            let Some(at) = in_flight.iter().position(|(id, _)| id == to) else {
                continue;
            };
            let (_, sent) = in_flight.swap_remove(at);
            if failed.iter().any(|f| f == to) {
                errors += 1;
            } else {
                latencies.push(arrived.duration_since(sent).as_micros() as u64);
            }
            last_progress = arrived;
        }
    }
    let _ = tx.close(None).await;
    Ok((latencies, errors))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reply_ids_are_found_in_single_and_array_frames() {
        let frame = r##"[{"#":"a","@":"r1.0.1.","ok":true},{"#":"b","@":"r1.0.2.","put":{"s":{"_":{"#":"s",">":{"v":1}},"v":"x"}}}]"##;
        assert_eq!(reply_ids(frame).collect::<Vec<_>>(), ["r1.0.1.", "r1.0.2."]);
        assert_eq!(reply_ids(r##"{"#":"a","@":"x.","ok":1}"##).count(), 1);
        assert_eq!(reply_ids("[]").count(), 0);
    }

    #[test]
    fn requests_are_the_messages_they_name() {
        let mut out = String::new();
        put_text(&mut out, "r.1.2.", "run/c1/2");
        let put: Json = serde_json::from_str(&out).unwrap();
        assert_eq!(put["#"], "r.1.2.");
        let node = &put["put"]["run/c1/2"];
        assert_eq!(node["_"]["#"], "run/c1/2");
        assert!(node["_"][">"]["v"].as_u64().unwrap() > 1_700_000_000_000);
        assert_eq!(node["v"], VALUE);
        out.clear();
        get_text(&mut out, "r.1.3.", 42);
        let get: Json = serde_json::from_str(&out).unwrap();
        assert_eq!(
            get,
            serde_json::json!({"#": "r.1.3.", "get": {"#": "bench/prefill/42"}})
        );
    }

    #[test]
    fn only_error_replies_count_as_errors() {
        let frame = r##"[{"#":"a","@":"ok.","ok":true},{"#":"b","@":"bad.","err":"no"}]"##;
        assert_eq!(error_reply_ids(frame), ["bad."]);
    }
}
