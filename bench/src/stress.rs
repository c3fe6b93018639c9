//! Load that breaks weaker relays: the put-and-confirm scenario from the GUN JS baseline (each
//! put followed by a GET re-asked every 50 ms until the value shows), and a flood of bad input
//! (garbage, oversized and deeply nested frames) while an honest client measures its latency.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_tungstenite::tungstenite::Message;
use futures_util::StreamExt;

use crate::load::wall_ms;

/// What a put-and-confirm run measured.
#[derive(Debug, Default)]
pub struct Confirmed {
    /// Operations confirmed (the GET showed the value).
    pub confirmed: usize,
    /// Operations never confirmed within the timeout.
    pub missing: usize,
    /// Confirmed operations per second.
    pub ops_per_s: f64,
    /// Latency percentiles, put sent to value seen, in milliseconds.
    pub p50_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
}

/// `conns` connections with `inflight` operations each: put a new value, then GET it every
/// 50 ms until it shows. Gives up on an operation after 15 s.
pub fn confirm(
    url: &str,
    conns: usize,
    inflight: usize,
    total: usize,
) -> Result<Confirmed, String> {
    let latencies = Arc::new(Mutex::new(Vec::new()));
    let missing = Arc::new(AtomicU64::new(0));
    let per_conn = total.div_ceil(conns);
    let run = format!("cf{}", wall_ms() as u64 % 1_000_000);
    let started = Instant::now();
    smol::block_on(async {
        let tasks: Vec<_> = (0..conns)
            .map(|c| {
                let (url, latencies, missing, run) = (
                    url.to_owned(),
                    latencies.clone(),
                    missing.clone(),
                    run.clone(),
                );
                smol::spawn(async move {
                    confirm_conn(
                        &url,
                        &format!("{run}c{c}"),
                        inflight,
                        per_conn,
                        &latencies,
                        &missing,
                    )
                    .await
                })
            })
            .collect();
        for t in tasks {
            t.await?;
        }
        Ok::<_, String>(())
    })?;
    let elapsed = started.elapsed().as_secs_f64();
    let mut lat = std::mem::take(&mut *latencies.lock().unwrap());
    lat.sort_unstable();
    let pct = |p: f64| {
        lat.get(((lat.len() as f64 * p) as usize).min(lat.len().saturating_sub(1)))
            .map_or(0.0, |us| *us as f64 / 1000.0)
    };
    Ok(Confirmed {
        confirmed: lat.len(),
        missing: missing.load(Ordering::Relaxed) as usize,
        ops_per_s: lat.len() as f64 / elapsed,
        p50_ms: pct(0.5),
        p99_ms: pct(0.99),
    })
}

struct Pending {
    soul: String,
    value: String,
    put_at: Instant,
    asked_at: Instant,
}

async fn confirm_conn(
    url: &str,
    prefix: &str,
    inflight: usize,
    total: usize,
    latencies: &Mutex<Vec<u64>>,
    missing: &AtomicU64,
) -> Result<(), String> {
    let (ws, _) = async_tungstenite::smol::connect_async(url)
        .await
        .map_err(|e| format!("connect {url}: {e}"))?;
    let (mut tx, mut rx) = ws.split();
    let mut pending: HashMap<String, Pending> = HashMap::new();
    // GET id -> op id
    let mut asks: HashMap<String, String> = HashMap::new();
    let mut next = 0usize;
    let mut done = 0usize;
    let mut n = 0u64;
    while done < total {
        let mut frame = Vec::new();
        while pending.len() < inflight && next < total {
            let op = format!("{prefix}o{next}.");
            let soul = format!("{prefix}/s{next}");
            let value = format!("v{next}");
            frame.push(format!(
                r##"{{"#":"{op}","put":{{"{soul}":{{"_":{{"#":"{soul}",">":{{"v":{}}}}},"v":"{value}"}}}}}}"##,
                wall_ms()
            ));
            let now = Instant::now();
            pending.insert(
                op,
                Pending {
                    soul,
                    value,
                    put_at: now,
                    asked_at: now - Duration::from_millis(50),
                },
            );
            next += 1;
        }
        let now = Instant::now();
        let mut expired = Vec::new();
        for (op, p) in pending.iter_mut() {
            if now.duration_since(p.put_at) > Duration::from_secs(15) {
                expired.push(op.clone());
            } else if now.duration_since(p.asked_at) >= Duration::from_millis(50) {
                n += 1;
                let id = format!("{prefix}g{n}.");
                frame.push(format!(r##"{{"#":"{id}","get":{{"#":"{}"}}}}"##, p.soul));
                asks.insert(id, op.clone());
                p.asked_at = now;
            }
        }
        for op in expired {
            pending.remove(&op);
            missing.fetch_add(1, Ordering::Relaxed);
            done += 1;
        }
        if !frame.is_empty() {
            let text = format!("[{}]", frame.join(","));
            tx.send(Message::text(text))
                .await
                .map_err(|e| format!("send: {e}"))?;
        }
        let received = smol::future::or(async { rx.next().await.map(Some) }, async {
            smol::Timer::after(Duration::from_millis(10)).await;
            None
        })
        .await;
        let Some(message) = received else { continue };
        let Some(Ok(Message::Text(text))) = message else {
            if message.is_none() {
                return Err("the server closed the connection".into());
            }
            continue;
        };
        let parsed: serde_json::Value = serde_json::from_str(text.as_str()).unwrap_or_default();
        let msgs = match parsed {
            serde_json::Value::Array(items) => items,
            one => vec![one],
        };
        for m in msgs {
            let Some(at) = m["@"].as_str() else { continue };
            let Some(op) = asks.remove(at) else { continue };
            let Some(p) = pending.get(&op) else { continue };
            if m["put"][&p.soul]["v"].as_str() == Some(p.value.as_str()) {
                let p = pending.remove(&op).expect("present");
                latencies
                    .lock()
                    .unwrap()
                    .push(p.put_at.elapsed().as_micros() as u64);
                done += 1;
            }
        }
    }
    let _ = tx.close(None).await;
    Ok(())
}

/// What a flood run measured.
#[derive(Debug, Default)]
pub struct Flood {
    /// Bytes of bad input sent.
    pub bad_bytes: u64,
    /// Bad frames sent.
    pub bad_frames: u64,
    /// Connections the server closed (oversized frames close their socket), and reopened.
    pub reconnects: u64,
    /// The honest client's operations (a put, then a GET of it) completed.
    pub honest_ops: usize,
    /// Its latency percentiles, in milliseconds.
    pub honest_p50_ms: f64,
    /// 99th percentile.
    pub honest_p99_ms: f64,
    /// The slowest.
    pub honest_max_ms: f64,
    /// The honest client's operations that failed or timed out.
    pub honest_failed: usize,
}

/// `conns` connections sending `megabytes` of bad input (garbage, frames over the limit, JSON
/// nested past the limit, puts with bad values) as fast as they can, while one honest client
/// puts and reads back a value every 10 ms.
pub fn flood(url: &str, conns: usize, megabytes: u64) -> Result<Flood, String> {
    let budget = megabytes << 20;
    let sent = Arc::new(AtomicU64::new(0));
    let frames = Arc::new(AtomicU64::new(0));
    let reconnects = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let result = smol::block_on(async {
        let floods: Vec<_> = (0..conns)
            .map(|c| {
                let (url, sent, frames, reconnects, stop) = (
                    url.to_owned(),
                    sent.clone(),
                    frames.clone(),
                    reconnects.clone(),
                    stop.clone(),
                );
                smol::spawn(async move {
                    let mut round = 0u64;
                    while sent.load(Ordering::Relaxed) < budget && !stop.load(Ordering::Relaxed) {
                        let Ok((ws, _)) = async_tungstenite::smol::connect_async(&url).await else {
                            smol::Timer::after(Duration::from_millis(20)).await;
                            continue;
                        };
                        let (mut tx, rx) = ws.split();
                        // Read and drop whatever comes back, so errors do not back up.
                        let drain = smol::spawn(rx.for_each(|_| async {}));
                        loop {
                            if sent.load(Ordering::Relaxed) >= budget
                                || stop.load(Ordering::Relaxed)
                            {
                                break;
                            }
                            round += 1;
                            let text = bad_frame(c as u64 * 1_000_003 + round);
                            let len = text.len() as u64;
                            if tx.send(Message::text(text)).await.is_err() {
                                reconnects.fetch_add(1, Ordering::Relaxed);
                                break;
                            }
                            sent.fetch_add(len, Ordering::Relaxed);
                            frames.fetch_add(1, Ordering::Relaxed);
                        }
                        drop(drain);
                    }
                })
            })
            .collect();
        let honest_url = url.to_owned();
        let honest_stop = stop.clone();
        let honest = smol::spawn(async move { honest_client(&honest_url, honest_stop).await });
        for f in floods {
            f.await;
        }
        stop.store(true, Ordering::Relaxed);
        honest.await
    });
    let (lat, failed) = result?;
    let mut lat = lat;
    lat.sort_unstable();
    let pct = |p: f64| {
        lat.get(((lat.len() as f64 * p) as usize).min(lat.len().saturating_sub(1)))
            .map_or(0.0, |us| *us as f64 / 1000.0)
    };
    Ok(Flood {
        bad_bytes: sent.load(Ordering::Relaxed),
        bad_frames: frames.load(Ordering::Relaxed),
        reconnects: reconnects.load(Ordering::Relaxed),
        honest_ops: lat.len(),
        honest_p50_ms: pct(0.5),
        honest_p99_ms: pct(0.99),
        honest_max_ms: lat.last().map_or(0.0, |us| *us as f64 / 1000.0),
        honest_failed: failed,
    })
}

/// One bad frame, of a kind chosen by `n`.
fn bad_frame(n: u64) -> String {
    match n % 5 {
        // Not JSON at all.
        0 => format!("garbage {n} {}", "\u{1F4A9}#%{[".repeat(2000)),
        // Over the 16 MiB frame limit: the server closes the socket.
        1 if n % 50 == 1 => "x".repeat(33 << 20),
        1 => format!("{{\"#\":\"{n}\",\"put\":{{\"a\":{{\"_\":{{\"#\":\"a\"}},\"k\":[1,2,3]}}}}}}"),
        // Nested far past the depth limit.
        2 => format!("{}{}", "[".repeat(50_000), "]".repeat(50_000)),
        // Puts the rules refuse: arrays, missing states, bad souls.
        3 => format!(
            "[{{\"#\":\"b{n}\",\"put\":{{\"\":{{}}}}}},{{\"#\":\"c{n}\",\"put\":{{\"s\":{{\"_\":{{\"#\":\"s\",\">\":{{\"k\":\"x\"}}}},\"k\":1}}}}}}]"
        ),
        // Huge id, huge keys.
        _ => format!("{{\"#\":\"{}\",\"get\":{{\"#\":\"{}\"}}}}", "i".repeat(100_000), "s".repeat(100_000)),
    }
}

/// Puts a value and GETs it back, every 10 ms, until stopped; latencies in µs and failures.
async fn honest_client(url: &str, stop: Arc<AtomicBool>) -> Result<(Vec<u64>, usize), String> {
    let (ws, _) = async_tungstenite::smol::connect_async(url)
        .await
        .map_err(|e| format!("honest client: {e}"))?;
    let (mut tx, mut rx) = ws.split();
    let mut latencies = Vec::new();
    let mut failed = 0;
    let mut i = 0u64;
    while !stop.load(Ordering::Relaxed) {
        i += 1;
        let start = Instant::now();
        let soul = format!("honest/{}/{i}", wall_ms() as u64);
        let put = format!(
            r##"{{"#":"hp{i}.","put":{{"{soul}":{{"_":{{"#":"{soul}",">":{{"v":{}}}}},"v":{i}}}}}}}"##,
            wall_ms()
        );
        let get = format!(r##"{{"#":"hg{i}.","get":{{"#":"{soul}"}}}}"##);
        tx.send(Message::text(put))
            .await
            .map_err(|e| e.to_string())?;
        let mut acked = false;
        let mut read = false;
        let deadline = Instant::now() + Duration::from_secs(10);
        while !(acked && read) && Instant::now() < deadline {
            let next = smol::future::or(async { rx.next().await }, async {
                smol::Timer::after(Duration::from_millis(100)).await;
                None
            })
            .await;
            let Some(Ok(Message::Text(text))) = next else {
                continue;
            };
            let text = text.as_str();
            if !acked && text.contains(&format!("\"@\":\"hp{i}.\"")) {
                acked = true;
                tx.send(Message::text(get.clone()))
                    .await
                    .map_err(|e| e.to_string())?;
            }
            if text.contains(&format!("\"@\":\"hg{i}.\"")) && text.contains(&soul) {
                read = true;
            }
        }
        if acked && read {
            latencies.push(start.elapsed().as_micros() as u64);
        } else {
            failed += 1;
        }
        smol::Timer::after(Duration::from_millis(10)).await;
    }
    Ok((latencies, failed))
}

/// One key flooding signed puts into its own space over `conns` connections while a quiet key
/// writes `quiet` puts, one every `gap` (on a relay started with `--user-writes-per-sec`).
pub fn key_flood(
    url: &str,
    conns: usize,
    quiet: usize,
    gap: Duration,
) -> fibergun_testkit::key_flood::KeyFlood {
    use fibergun::sea::{KeyPair, SignedValue};
    use serde_json::json;
    let pair = |seed: u8| {
        use base64::Engine;
        let private = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode([seed; 32]);
        KeyPair::from_private(&private).expect("a valid P-256 scalar")
    };
    let (flood, honest) = (pair(51), pair(52));
    let state = wall_ms() - 60_000.0;
    let run = format!("{:x}", crate::nanos() % (1 << 40));
    let flood_soul = format!("~{}", flood.public().as_str());
    let flood_value = SignedValue::sign(&flood, &flood_soul, "spam", &json!("x"), state);
    let flood_run = run.clone();
    let flood_put = move |i: usize| {
        let id = format!("{flood_run}f{i}");
        fibergun_testkit::put_msg(&id, &flood_soul, &[("spam", json!(flood_value))], state)
    };
    let honest_soul = format!("~{}", honest.public().as_str());
    let quiet_puts: Vec<_> = (0..quiet)
        .map(|i| {
            let (key, at) = (format!("{run}k{i}"), state + i as f64);
            let value = SignedValue::sign(&honest, &honest_soul, &key, &json!(i), at);
            let id = format!("{run}q{i}");
            fibergun_testkit::put_msg(&id, &honest_soul, &[(&key, json!(value))], at)
        })
        .collect();
    fibergun_testkit::key_flood::key_flood(url, conns, flood_put, &quiet_puts, gap)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A relay in this process, on a free port, with its store in `dir`.
    pub(crate) fn relay(dir: &std::path::Path) -> (fibergun_server::Server, String) {
        let server = fibergun_server::Server::start(fibergun_server::ServerConfig {
            relay: fibergun_drive::RelayConfig {
                listen: "127.0.0.1:0".parse().unwrap(),
                threads: 2,
                verify_threads: 1,
                ..fibergun_drive::RelayConfig::default()
            },
            data_dir: dir.to_owned(),
            ..fibergun_server::ServerConfig::default()
        })
        .expect("the relay starts");
        let url = format!("ws://{}/gun", server.local_addr());
        (server, url)
    }

    #[test]
    fn the_put_and_confirm_scenario_confirms_everything() {
        let dir = tempfile::tempdir().unwrap();
        let (server, url) = relay(dir.path());
        let run = confirm(&url, 4, 20, 400).unwrap();
        assert_eq!((run.confirmed, run.missing), (400, 0));
        assert!(run.p99_ms > 0.0);
        server.shutdown();
    }

    #[test]
    fn a_small_flood_leaves_the_honest_client_served() {
        let dir = tempfile::tempdir().unwrap();
        let (server, url) = relay(dir.path());
        let run = flood(&url, 4, 8).unwrap();
        assert!(run.bad_bytes >= 8 << 20 && run.bad_frames > 0);
        assert!(run.honest_ops > 0 && run.honest_failed == 0, "{run:?}");
        server.shutdown();
    }
}
