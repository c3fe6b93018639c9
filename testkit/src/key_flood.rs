//! One key flooding a relay with puts while a quiet key writes at an honest pace: how many of
//! the flood's puts were taken or refused by the key's rate, and how quickly the quiet key's
//! writes were acknowledged meanwhile. The suite's short version and `fibergun-bench key-flood`
//! both run it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::Peer;

const WAIT: Duration = Duration::from_secs(15);

/// What a key flood did.
#[derive(Debug)]
pub struct KeyFlood {
    /// Puts the flooding key sent.
    pub sent: usize,
    /// Of those, acknowledged.
    pub taken: usize,
    /// Of those, refused for the key's rate (`Too many writes…`).
    pub refused: usize,
    /// How long the flood went on, in seconds.
    pub secs: f64,
    /// The quiet key's ack latencies in ms, sorted.
    pub quiet_ms: Vec<f64>,
}

impl KeyFlood {
    /// The `p` quantile (0..=1) of the quiet key's ack latency, in ms.
    pub fn quiet_quantile(&self, p: f64) -> f64 {
        let i = ((self.quiet_ms.len() as f64 - 1.0) * p).round() as usize;
        self.quiet_ms[i]
    }
}

/// Floods `url` over `conns` connections with `flood(i)` (the i-th put, with an id of its own),
/// as fast as the sockets take them, while the `quiet` puts are sent one at a time, each once
/// the previous was acknowledged and `gap` has passed. The flood stops when the quiet key is
/// done; every flood put must then be answered. Panics if a quiet put is not acknowledged.
pub fn key_flood(
    url: &str,
    conns: usize,
    flood: impl Fn(usize) -> Value + Send + Sync + 'static,
    quiet: &[Value],
    gap: Duration,
) -> KeyFlood {
    let flood = Arc::new(flood);
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let flooders: Vec<_> = (0..conns)
        .map(|c| {
            let (url, stop, flood) = (url.to_owned(), stop.clone(), flood.clone());
            thread::spawn(move || flood_one(&url, &stop, |n| flood(c * 1_000_000_000 + n)))
        })
        .collect();
    thread::sleep(Duration::from_millis(300));
    let mut client = Peer::connect(url);
    let mut quiet_ms = Vec::with_capacity(quiet.len());
    for msg in quiet {
        let start = Instant::now();
        client.put_ok(msg, WAIT);
        quiet_ms.push(start.elapsed().as_secs_f64() * 1000.0);
        thread::sleep(gap);
    }
    stop.store(true, Ordering::Relaxed);
    let secs = started.elapsed().as_secs_f64();
    quiet_ms.sort_by(f64::total_cmp);
    let mut out = KeyFlood {
        sent: 0,
        taken: 0,
        refused: 0,
        secs,
        quiet_ms,
    };
    for f in flooders {
        let (sent, taken, refused) = f.join().expect("a flood thread");
        out.sent += sent;
        out.taken += taken;
        out.refused += refused;
    }
    out
}

/// One flooding connection: (sent, taken, refused by rate).
fn flood_one(
    url: &str,
    stop: &AtomicBool,
    flood: impl Fn(usize) -> Value,
) -> (usize, usize, usize) {
    let mut peer = Peer::connect(url);
    let mut sent = 0usize;
    let mut replies = Vec::new();
    let mut keep_replies = |peer: &mut Peer| {
        let inbox = peer.take_inbox();
        replies.extend(inbox.into_iter().filter(|m| m["@"].is_string()));
        replies.len()
    };
    while !stop.load(Ordering::Relaxed) {
        for _ in 0..50 {
            assert!(peer.send_json(&flood(sent)), "a flood connection closed");
            sent += 1;
        }
        while peer.pump(Duration::from_millis(1)) {}
        keep_replies(&mut peer);
    }
    let end = Instant::now() + WAIT;
    while keep_replies(&mut peer) < sent && Instant::now() < end {
        peer.pump(Duration::from_millis(50));
    }
    let taken = replies.iter().filter(|m| m["ok"] == true).count();
    let refused = replies
        .iter()
        .filter(|m| {
            m["err"]
                .as_str()
                .is_some_and(|e| e.contains("Too many writes"))
        })
        .count();
    (sent, taken, refused)
}
