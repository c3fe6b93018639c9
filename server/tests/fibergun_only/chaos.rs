//! The chaos harness: real relay processes on loopback under a mixed load (writers pipelining
//! puts, readers, a subscriber), killed with `kill -9` at random moments and restarted, cycle
//! after cycle. After every restart, every write any relay ever acknowledged must be there: on
//! the relay itself, in a mesh on every relay once it has healed, and on every relay of one
//! PostgreSQL database (also across a failover to a synchronous standby).
//!
//! `FIBERGUN_CHAOS_CYCLES` (default 4 for one relay, 3 for the mesh, as CI runs it),
//! `FIBERGUN_CHAOS_SEED` and `FIBERGUN_CHAOS_PACE_US` set the run;
//! `FIBERGUN_CHAOS_CYCLES=25 FIBERGUN_CHAOS_PACE_US=0 cargo test --release -p fibergun-server
//! --test smol chaos:: -- --nocapture` is the full run RELIABILITY.md reports.

use crate::BINARY;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use fibergun_testkit::{get_msg, now_ms, put_msg, reply_node, temp_data_dir, Peer, Server};
use serde_json::json;

/// Every acknowledged write: soul → the value its `v` must hold.
type Acked = Arc<Mutex<BTreeMap<String, String>>>;

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A small seeded generator for the kill moments and the readers' choices.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// One writer: pipelined puts of new souls (a window of 32 in flight) until stopped or cut off,
/// paced by `FIBERGUN_CHAOS_PACE_US` between puts (2 ms by default, so a CI run checks a few
/// thousand writes; 0 for full speed).
fn writer(url: String, name: String, acked: Acked, stop: Arc<AtomicBool>) {
    let pace = Duration::from_micros(env_number("FIBERGUN_CHAOS_PACE_US", 2000));
    let Ok(mut peer) = Peer::try_connect(&url) else {
        return;
    };
    let mut next = 0u64;
    let mut in_flight: BTreeMap<String, (String, String)> = BTreeMap::new();
    while !stop.load(Ordering::Relaxed) {
        while in_flight.len() < 32 {
            let soul = format!("{name}-{next}");
            let value = format!("{name} wrote {next} {}", "x".repeat((next % 40) as usize));
            let id = format!("{name}p{next}");
            next += 1;
            let msg = put_msg(&id, &soul, &[("v", json!(value))], now_ms());
            if !peer.send_json(&msg) {
                return;
            }
            in_flight.insert(id, (soul, value));
            if !pace.is_zero() {
                std::thread::sleep(pace);
                break;
            }
        }
        if !peer.pump(Duration::from_millis(50)) && !peer.is_open() {
            return;
        }
        for m in peer.take_inbox() {
            let Some(id) = m["@"].as_str() else { continue };
            if let Some((soul, value)) = in_flight.remove(id) {
                if m["ok"] == true {
                    acked.lock().unwrap().insert(soul, value);
                }
            }
        }
    }
}

/// A reader: GETs of souls already acknowledged, and a subscription to a shared node.
fn reader(url: String, acked: Acked, stop: Arc<AtomicBool>, seed: u64) {
    let Ok(mut peer) = Peer::try_connect(&url) else {
        return;
    };
    let mut rng = Rng(seed | 1);
    let mut n = 0;
    while !stop.load(Ordering::Relaxed) {
        let soul = {
            let map = acked.lock().unwrap();
            if map.is_empty() {
                None
            } else {
                let skip = rng.below(map.len() as u64) as usize;
                map.keys().nth(skip).cloned()
            }
        };
        if let Some(soul) = soul {
            n += 1;
            if !peer.send_json(&get_msg(&format!("r{seed}x{n}"), &soul, None)) {
                return;
            }
        }
        if !peer.pump(Duration::from_millis(20)) && !peer.is_open() {
            return;
        }
        peer.take_inbox();
    }
}

/// Runs the load against `urls` until the returned flag is set; the threads end on their own
/// when their server dies.
fn start_load(
    urls: &[String],
    acked: &Acked,
    cycle: u64,
) -> (Arc<AtomicBool>, Vec<std::thread::JoinHandle<()>>) {
    let stop = Arc::new(AtomicBool::new(false));
    let mut threads = Vec::new();
    for (i, url) in urls.iter().enumerate() {
        for w in 0..2 {
            let (url, acked, stop) = (url.clone(), acked.clone(), stop.clone());
            let name = format!("c{cycle}u{i}w{w}");
            threads.push(std::thread::spawn(move || writer(url, name, acked, stop)));
        }
        let (url, acked, stop) = (url.clone(), acked.clone(), stop.clone());
        threads.push(std::thread::spawn(move || {
            reader(url, acked, stop, cycle * 31 + i as u64)
        }));
    }
    (stop, threads)
}

/// The acknowledged souls `server` does not hold with their acknowledged value.
fn missing_on(server: &Server, acked: &BTreeMap<String, String>) -> Vec<String> {
    // Message ids are deduplicated across connections for a while: each check uses new ones.
    static CHECKS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let mut peer = Peer::connect(&server.ws_url());
    let souls: Vec<&String> = acked.keys().collect();
    let mut missing = Vec::new();
    for chunk in souls.chunks(200) {
        let check = CHECKS.fetch_add(1, Ordering::Relaxed);
        let id = |i: usize| format!("chk{check}x{i}");
        for (i, soul) in chunk.iter().enumerate() {
            assert!(peer.send_json(&get_msg(&id(i), soul, None)));
        }
        for (i, soul) in chunk.iter().enumerate() {
            let reply = peer.expect_reply(&id(i), Duration::from_secs(20));
            let held = reply_node(&reply, soul).and_then(|n| n["v"].as_str());
            if held != Some(acked[*soul].as_str()) {
                missing.push((*soul).clone());
            }
        }
    }
    missing
}

#[test]
fn a_relay_killed_at_random_under_load_loses_no_acknowledged_write() {
    let cycles = env_number("FIBERGUN_CHAOS_CYCLES", 4);
    let mut rng = Rng(env_number("FIBERGUN_CHAOS_SEED", 0x5eed) | 1);
    let data = temp_data_dir();
    let mut server = Server::start(BINARY, data.path(), &[]);
    let acked: Acked = Default::default();
    for cycle in 0..cycles {
        let (stop, threads) = start_load(&[server.ws_url()], &acked, cycle);
        std::thread::sleep(Duration::from_millis(200 + rng.below(1300)));
        let before = acked.lock().unwrap().len();
        server.kill_hard();
        stop.store(true, Ordering::Relaxed);
        for t in threads {
            t.join().unwrap();
        }
        server.restart();
        let snapshot = acked.lock().unwrap().clone();
        let missing = missing_on(&server, &snapshot);
        assert!(
            missing.is_empty(),
            "cycle {cycle}: {} of {} acknowledged writes lost after kill -9, e.g. {:?}",
            missing.len(),
            snapshot.len(),
            &missing[..missing.len().min(5)]
        );
        eprintln!(
            "chaos cycle {cycle}: killed with {before} acknowledged, {} in all after the restart, none lost",
            snapshot.len()
        );
    }
    assert!(acked.lock().unwrap().len() > 100, "the load barely ran");
}

#[test]
fn a_mesh_with_relays_killed_at_random_loses_no_acknowledged_write() {
    let cycles = env_number("FIBERGUN_CHAOS_CYCLES", 3);
    let mut rng = Rng(env_number("FIBERGUN_CHAOS_SEED", 0xbeef) | 1);
    let dirs: Vec<_> = (0..3).map(|_| temp_data_dir()).collect();
    let backoff = ["--reconnect-min-ms", "100", "--reconnect-max-ms", "500"];
    // A line: a <- b <- c (each dials the one before it).
    let a = Server::start(BINARY, dirs[0].path(), &backoff);
    let b_peer = a.gun_url();
    let b_args: Vec<&str> = backoff.iter().copied().chain(["--peer", &b_peer]).collect();
    let b = Server::start(BINARY, dirs[1].path(), &b_args);
    let c_peer = b.gun_url();
    let c_args: Vec<&str> = backoff.iter().copied().chain(["--peer", &c_peer]).collect();
    let c = Server::start(BINARY, dirs[2].path(), &c_args);
    let mut relays = [a, b, c];
    let acked: Acked = Default::default();
    for cycle in 0..cycles {
        // Writes go to both ends of the line.
        let urls = [relays[0].ws_url(), relays[2].ws_url()];
        let (stop, threads) = start_load(&urls, &acked, cycle);
        std::thread::sleep(Duration::from_millis(300 + rng.below(1200)));
        let victim = rng.below(3) as usize;
        relays[victim].kill_hard();
        std::thread::sleep(Duration::from_millis(200));
        stop.store(true, Ordering::Relaxed);
        for t in threads {
            t.join().unwrap();
        }
        relays[victim].restart();
        // Every relay must come to hold every acknowledged write.
        let snapshot = acked.lock().unwrap().clone();
        let deadline = Instant::now() + Duration::from_secs(30);
        for (i, relay) in relays.iter().enumerate() {
            loop {
                let missing = missing_on(relay, &snapshot);
                if missing.is_empty() {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "cycle {cycle}: relay {i} lacks {} of {} acknowledged writes 30 s after relay {victim} restarted, e.g. {:?}",
                    missing.len(),
                    snapshot.len(),
                    &missing[..missing.len().min(5)]
                );
                std::thread::sleep(Duration::from_millis(250));
            }
        }
        eprintln!(
            "chaos mesh cycle {cycle}: relay {victim} killed; {} acknowledged writes on all three",
            snapshot.len()
        );
    }
}

/// Three relays on one PostgreSQL database (the shared store), with `extra` flags.
fn pg_relays(url: &str, dirs: &[tempfile::TempDir]) -> Vec<Server> {
    dirs.iter()
        .map(|d| {
            Server::start(
                BINARY,
                d.path(),
                &["--store", "postgres", "--postgres-url", url],
            )
        })
        .collect()
}

/// Waits until `acked` holds `more` entries beyond `from`.
fn wait_acked(acked: &Acked, from: usize, more: usize, what: &str) {
    let end = Instant::now() + Duration::from_secs(60);
    while acked.lock().unwrap().len() < from + more {
        assert!(
            Instant::now() < end,
            "{what}: writes were never acknowledged again"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn relays_on_one_database_killed_at_random_lose_no_acknowledged_write() {
    let cycles = env_number("FIBERGUN_CHAOS_CYCLES", 3);
    let mut rng = Rng(env_number("FIBERGUN_CHAOS_SEED", 0xd8) | 1);
    let pg = fibergun_testkit::postgres::PgServer::start();
    let dirs: Vec<_> = (0..3).map(|_| temp_data_dir()).collect();
    let mut relays = pg_relays(&pg.url(), &dirs);
    let acked: Acked = Default::default();
    for cycle in 0..cycles {
        let urls: Vec<String> = relays.iter().map(Server::ws_url).collect();
        let (stop, threads) = start_load(&urls, &acked, cycle);
        std::thread::sleep(Duration::from_millis(200 + rng.below(1300)));
        let victim = rng.below(3) as usize;
        relays[victim].kill_hard();
        std::thread::sleep(Duration::from_millis(100));
        stop.store(true, Ordering::Relaxed);
        for t in threads {
            t.join().unwrap();
        }
        relays[victim].restart();
        // The database holds it all: every relay answers every acknowledged write at once.
        let snapshot = acked.lock().unwrap().clone();
        for (i, relay) in relays.iter().enumerate() {
            let missing = missing_on(relay, &snapshot);
            assert!(
                missing.is_empty(),
                "cycle {cycle}: relay {i} lacks {} of {} acknowledged writes after relay {victim} was killed, e.g. {:?}",
                missing.len(),
                snapshot.len(),
                &missing[..missing.len().min(5)]
            );
        }
        eprintln!(
            "chaos postgres cycle {cycle}: relay {victim} killed; {} acknowledged writes on all three",
            snapshot.len()
        );
    }
    assert!(acked.lock().unwrap().len() > 100, "the load barely ran");
}

#[test]
fn a_failover_to_a_synchronous_standby_loses_no_acknowledged_write() {
    let mut primary = fibergun_testkit::postgres::PgServer::start();
    let standby = primary.synchronous_standby();
    // Both hosts, for the one that takes writes: the relays find the promoted standby themselves.
    let url = format!(
        "postgres://postgres@127.0.0.1:{},127.0.0.1:{}/{}?target_session_attrs=read-write",
        primary.port,
        standby.port,
        fibergun_testkit::postgres::DATABASE
    );
    let dirs: Vec<_> = (0..2).map(|_| temp_data_dir()).collect();
    let relays = pg_relays(&url, &dirs);
    let acked: Acked = Default::default();
    let urls: Vec<String> = relays.iter().map(Server::ws_url).collect();
    let (stop, threads) = start_load(&urls, &acked, 0);
    wait_acked(&acked, 0, 200, "before the failover");
    let killed = Instant::now();
    primary.kill();
    let at_kill = acked.lock().unwrap().len();
    standby.promote();
    let promoted = killed.elapsed();
    wait_acked(&acked, at_kill, 1, "after the promotion");
    let resumed = killed.elapsed();
    wait_acked(&acked, at_kill, 200, "after the promotion");
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        t.join().unwrap();
    }
    let snapshot = acked.lock().unwrap().clone();
    for (i, relay) in relays.iter().enumerate() {
        let missing = missing_on(relay, &snapshot);
        assert!(
            missing.is_empty(),
            "relay {i} lacks {} of {} acknowledged writes after the failover, e.g. {:?}",
            missing.len(),
            snapshot.len(),
            &missing[..missing.len().min(5)]
        );
    }
    eprintln!(
        "failover: {at_kill} writes acknowledged before the primary was killed, {} in all, none lost; \
         standby promoted {promoted:?} after the kill, writes acknowledged again {resumed:?} after it",
        snapshot.len()
    );
    for mut relay in relays {
        relay.assert_alive("after the failover");
    }
}
