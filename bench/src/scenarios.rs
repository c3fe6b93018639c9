//! Scenarios beyond request/reply load: idle connections (memory per connection) and fan-out
//! (one writer, many subscribers of one soul, delivery latency).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_tungstenite::tungstenite::Message;
use futures_util::StreamExt;
use serde_json::Value as Json;

/// Resident memory of a process now, in KiB (Linux).
pub fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        .unwrap_or(0)
}

/// What holding idle connections cost the server.
#[derive(Clone, Debug)]
pub struct Idle {
    /// The server's RSS before any connection, in KiB.
    pub before_kib: u64,
    /// Its RSS with the connections open and idle, in KiB.
    pub with_kib: u64,
    /// Connections held.
    pub conns: usize,
}

impl Idle {
    /// Bytes per connection.
    pub fn per_conn_bytes(&self) -> f64 {
        (self.with_kib.saturating_sub(self.before_kib) * 1024) as f64 / self.conns as f64
    }
}

/// Opens `conns` WebSockets that then stay idle, and measures the server's memory.
pub fn idle(url: &str, conns: usize, server_pid: u32) -> Result<Idle, String> {
    std::thread::sleep(Duration::from_millis(500));
    let before_kib = rss_kib(server_pid);
    let open = smol::block_on(async {
        let mut sockets = Vec::with_capacity(conns);
        // Open in waves so the accept backlog is never overrun.
        for wave in (0..conns).collect::<Vec<_>>().chunks(200) {
            let tasks: Vec<_> = wave
                .iter()
                .map(|_| smol::spawn(async_tungstenite::smol::connect_async(url.to_owned())))
                .collect();
            for t in tasks {
                let (ws, _) = t.await.map_err(|e| format!("connect: {e}"))?;
                sockets.push(ws);
            }
        }
        Ok::<_, String>(sockets)
    })?;
    // Let the handshakes and greetings settle, then measure.
    std::thread::sleep(Duration::from_secs(2));
    let with_kib = rss_kib(server_pid);
    drop(open);
    Ok(Idle {
        before_kib,
        with_kib,
        conns,
    })
}

/// What a fan-out run measured.
#[derive(Clone, Debug, Default)]
pub struct Fanout {
    /// Deliveries received (an update to a subscriber), and expected.
    pub delivered: usize,
    /// Deliveries expected: updates times subscribers.
    pub expected: usize,
    /// Delivery latency percentiles, in milliseconds (writer send to subscriber receive).
    pub p50_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// Largest.
    pub max_ms: f64,
}

/// `subscribers` connections to `url` subscribe to one soul; one writer, connected to
/// `writer_url` (the same relay, or another relay on the same graph), puts a new key to it
/// `rate` times a second for `seconds`; every subscriber should receive every key.
pub fn fanout(
    url: &str,
    writer_url: &str,
    subscribers: usize,
    rate: u32,
    seconds: u32,
    run_id: &str,
) -> Result<Fanout, String> {
    let soul = format!("{run_id}/room");
    let sent: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let latencies: Arc<Mutex<Vec<u64>>> = Arc::default();
    let updates = (rate * seconds) as usize;
    let ex = Arc::new(smol::Executor::new());
    let result = smol::block_on(ex.run(async {
        let (ready_tx, ready_rx) = smol::channel::unbounded::<()>();
        let mut subs = Vec::new();
        for s in 0..subscribers {
            let (url, soul, sent, latencies, ready) = (url.to_owned(), soul.clone(), sent.clone(), latencies.clone(), ready_tx.clone());
            let sub_id = format!("sub{s}.{run_id}.");
            subs.push(ex.spawn(async move {
                let (ws, _) = async_tungstenite::smol::connect_async(url).await.map_err(|e| format!("connect: {e}"))?;
                let (mut tx, mut rx) = ws.split();
                let get = format!(r##"{{"#":"{sub_id}","get":{{"#":"{soul}"}}}}"##);
                tx.send(Message::text(get)).await.map_err(|e| e.to_string())?;
                let mut got = 0usize;
                let mut subscribed = false;
                let end_by = Instant::now() + Duration::from_secs(u64::from(seconds) + 20);
                while got < updates {
                    let next = smol::future::or(async { rx.next().await }, async {
                        smol::Timer::at(end_by).await;
                        None
                    })
                    .await;
                    let Some(Ok(Message::Text(text))) = next else { break };
                    let now = Instant::now();
                    let msgs = match serde_json::from_str::<Json>(text.as_str()) {
                        Ok(Json::Array(items)) => items,
                        Ok(one) => vec![one],
                        Err(_) => continue,
                    };
                    for m in msgs {
                        if m.get("@").and_then(Json::as_str) == Some(sub_id.as_str()) && !subscribed {
                            subscribed = true;
                            let _ = ready.send(()).await;
                        }
                        let Some(node) = m.get("put").and_then(|p| p.get(&soul)).and_then(Json::as_object) else { continue };
                        let sent = sent.lock().expect("lock");
                        for key in node.keys().filter(|k| *k != "_") {
                            if let Some(at) = sent.get(key) {
                                got += 1;
                                latencies.lock().expect("lock").push(now.duration_since(*at).as_micros() as u64);
                            }
                        }
                    }
                }
                Ok::<usize, String>(got)
            }));
        }
        // Wait until every subscriber's GET is answered (it is subscribed), then write.
        for _ in 0..subscribers {
            smol::future::or(async { ready_rx.recv().await.map_err(|e| e.to_string()) }, async {
                smol::Timer::after(Duration::from_secs(20)).await;
                Err("a subscriber's GET was not answered".to_string())
            })
            .await?;
        }
        let (ws, _) = async_tungstenite::smol::connect_async(writer_url).await.map_err(|e| format!("connect: {e}"))?;
        let (mut tx, _rx) = ws.split();
        let started = Instant::now();
        let mut state = 1_700_000_000_000.0f64.max(crate::load::wall_ms());
        for i in 0..updates {
            smol::Timer::at(started + Duration::from_secs_f64(i as f64 / f64::from(rate))).await;
            let key = format!("u{i}");
            state += 0.001;
            let text = format!(
                r##"{{"#":"w{i}.{run_id}.","put":{{"{soul}":{{"_":{{"#":"{soul}",">":{{"{key}":{state}}}}},"{key}":"update {i}"}}}}}}"##
            );
            sent.lock().expect("lock").insert(key, Instant::now());
            tx.send(Message::text(text)).await.map_err(|e| e.to_string())?;
        }
        let mut delivered = 0;
        for s in subs {
            delivered += s.await?;
        }
        Ok::<usize, String>(delivered)
    }));
    let delivered = result?;
    let mut lat = std::mem::take(&mut *latencies.lock().expect("lock"));
    lat.sort_unstable();
    let pct = |p: f64| {
        lat.get(((lat.len() as f64 * p) as usize).min(lat.len().saturating_sub(1)))
            .map_or(0.0, |us| *us as f64 / 1000.0)
    };
    Ok(Fanout {
        delivered,
        expected: updates * subscribers,
        p50_ms: pct(0.5),
        p99_ms: pct(0.99),
        max_ms: lat.last().map_or(0.0, |us| *us as f64 / 1000.0),
    })
}
