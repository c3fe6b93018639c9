//! A flood of bad input over many connections (garbage, frames over the size limit, JSON nested
//! past the depth limit, puts the rules refuse) while an honest client keeps putting and reading:
//! the server stays up, stays within its memory limit, and keeps serving the honest client.
//! `fibergun-bench flood` is the full-size version (a gigabyte; see RELIABILITY.md).

use crate::BINARY;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use fibergun_testkit::{now_ms, put_msg, temp_data_dir, Peer, Server};
use serde_json::json;

const FLOOD_BYTES: u64 = 48 << 20;

fn bad_frame(n: u64) -> String {
    match n % 4 {
        0 => format!("garbage {n} {}", "#%{[".repeat(4000)),
        1 if n % 20 == 1 => "x".repeat(33 << 20),
        1 => format!("{}{}", "[".repeat(20_000), "]".repeat(20_000)),
        2 => r##"[{"#":"b","put":{"":{}}},{"#":"c","put":{"s":{"_":{"#":"s",">":{"k":"x"}},"k":[1]}}}]"##.to_owned(),
        _ => format!("{{\"#\":\"{}\",\"get\":{{\"#\":\"s\"}}}}", "i".repeat(50_000)),
    }
}

#[test]
fn a_flood_of_bad_input_leaves_the_server_up_and_serving() {
    let data = temp_data_dir();
    let mut server = Server::start(BINARY, data.path(), &["--memory-limit", "64M"]);
    let sent = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let flooders: Vec<_> = (0..8u64)
        .map(|c| {
            let (url, sent, stop) = (server.ws_url(), sent.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut n = c * 1_000_003;
                while sent.load(Ordering::Relaxed) < FLOOD_BYTES && !stop.load(Ordering::Relaxed) {
                    let Ok(mut peer) = Peer::try_connect(&url) else {
                        std::thread::sleep(Duration::from_millis(20));
                        continue;
                    };
                    loop {
                        n += 1;
                        let frame = bad_frame(n);
                        let len = frame.len() as u64;
                        if !peer.send_text(frame) {
                            break; // closed by the server (a frame over the limit): reconnect
                        }
                        sent.fetch_add(len, Ordering::Relaxed);
                        peer.drain(Duration::from_millis(0));
                        if sent.load(Ordering::Relaxed) >= FLOOD_BYTES {
                            break;
                        }
                    }
                }
            })
        })
        .collect();
    // The honest client: put, then read back, one after the other.
    let mut honest = Peer::connect(&server.ws_url());
    let mut latencies = Vec::new();
    let mut i = 0;
    while sent.load(Ordering::Relaxed) < FLOOD_BYTES {
        i += 1;
        let start = Instant::now();
        let soul = format!("honest{i}");
        honest.put_ok(
            &put_msg(&format!("hp{i}"), &soul, &[("v", json!(i))], now_ms()),
            Duration::from_secs(30),
        );
        let reply = honest.get(&format!("hg{i}"), &soul, None, Duration::from_secs(30));
        assert_eq!(reply["put"][&soul]["v"], i, "{reply}");
        latencies.push(start.elapsed());
    }
    stop.store(true, Ordering::Relaxed);
    for f in flooders {
        f.join().unwrap();
    }
    server.assert_alive("after the flood");
    latencies.sort();
    let p50 = latencies[latencies.len() / 2];
    let max = latencies[latencies.len() - 1];
    let peak_mib = fibergun_testkit::peak_rss_mib(server.pid().unwrap());
    eprintln!(
        "flood of {} MiB: honest client {} put+get, p50 {p50:?}, max {max:?}; server peak RSS {peak_mib:.0} MiB",
        FLOOD_BYTES >> 20,
        latencies.len()
    );
    assert!(!latencies.is_empty());
    assert!(
        peak_mib < 300.0,
        "peak RSS {peak_mib:.0} MiB with a 64 MiB memory limit"
    );
}
