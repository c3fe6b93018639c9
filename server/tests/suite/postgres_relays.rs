//! Relays on one PostgreSQL database (`serve --store postgres`), a real server started by the
//! test: GUN JS clients on different relays see each other's writes, live; conflicting writes
//! through different relays converge to the HAM winner, computed here independently; the
//! database stopped under load (writes get an `err`, cached reads go on, no acknowledged write is
//! lost, writes resume); hostile names round-trip; export and import through the database.

use super::{sample, scrape};
use crate::{BINARY, SERVES_METRICS};

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use fibergun_testkit::gunjs::{expect_success, run_node};
use fibergun_testkit::postgres::PgServer;
use fibergun_testkit::{
    fibergun_tool, now_ms, put_msg, reply_node, serve_must_fail, temp_data_dir, Peer, Server,
};
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(10);

/// A relay on `pg`'s database (its data folder unused but given, as every relay has one).
struct PgRelay {
    server: Server,
    _data: tempfile::TempDir,
}

impl PgRelay {
    fn start(pg: &PgServer) -> PgRelay {
        let data = temp_data_dir();
        let url = pg.url();
        let server = Server::start(
            BINARY,
            data.path(),
            &["--store", "postgres", "--postgres-url", &url],
        );
        PgRelay {
            server,
            _data: data,
        }
    }
}

/// A field's value through `url`, asked with a new message id each time.
fn read_field(peer: &mut Peer, soul: &str, key: &str) -> Value {
    static ASKS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let id = format!("read-{}", ASKS.fetch_add(1, Ordering::Relaxed));
    let reply = peer.get(&id, soul, None, WAIT);
    reply_node(&reply, soul)
        .map(|node| node[key].clone())
        .unwrap_or(Value::Null)
}

/// GUN's tie-break, written here from the specification: at equal states, the value whose JSON
/// text is greater in UTF-16 code units wins.
fn json_utf16(value: &Value) -> Vec<u16> {
    serde_json::to_string(value)
        .unwrap()
        .encode_utf16()
        .collect()
}

fn ham_wins(incoming: &(f64, Value), current: &(f64, Value)) -> bool {
    incoming.0 > current.0
        || (incoming.0 == current.0 && json_utf16(&incoming.1) > json_utf16(&current.1))
}

#[test]
fn gun_js_clients_on_three_relays_on_one_database_see_each_other_live() {
    let pg = PgServer::start();
    let relays: Vec<PgRelay> = (0..3).map(|_| PgRelay::start(&pg)).collect();
    for (a, b) in [(0, 1), (1, 2), (2, 0)] {
        expect_success(
            &run_node(
                "mesh_two_sides.js",
                &[&relays[a].server.gun_url(), &relays[b].server.gun_url()],
            ),
            &format!("GUN JS on relays {a} and {b} of one database"),
        );
    }
    for mut relay in relays {
        relay.server.assert_alive("three relays on one database");
    }
}

#[test]
fn conflicting_writes_through_different_relays_converge_to_the_ham_winner() {
    let pg = PgServer::start();
    let relays: Vec<PgRelay> = (0..3).map(|_| PgRelay::start(&pg)).collect();
    let soul = format!("conflict-{}", std::process::id());
    let base = now_ms() - 60_000.0;
    // Each writer, on its own relay, writes every key 20 times with states from a small set, so
    // equal states with different values are common; values include characters whose UTF-16
    // and UTF-8 orders differ.
    let values = ["a", "b", "\u{ffff}", "😀", "\u{e000}"];
    let writers: Vec<_> = relays
        .iter()
        .enumerate()
        .map(|(w, relay)| {
            let url = relay.server.ws_url();
            let soul = soul.clone();
            std::thread::spawn(move || {
                let mut peer = Peer::connect(&url);
                let mut acked = Vec::new();
                for round in 0..20 {
                    for k in 0..4 {
                        let state = base + ((round * 3 + w * 5 + k) % 4) as f64;
                        let value = json!(format!("{}{w}", values[(round + k + w) % values.len()]));
                        let id = format!("w{w}-{round}-{k}");
                        let msg = put_msg(&id, &soul, &[(&format!("k{k}"), value.clone())], state);
                        peer.put_ok(&msg, WAIT);
                        acked.push((format!("k{k}"), state, value));
                    }
                }
                acked
            })
        })
        .collect();
    let mut expected: std::collections::BTreeMap<String, (f64, Value)> = Default::default();
    for writer in writers {
        for (key, state, value) in writer.join().unwrap() {
            let incoming = (state, value);
            match expected.get(&key) {
                Some(current) if !ham_wins(&incoming, current) => {}
                _ => {
                    expected.insert(key, incoming);
                }
            }
        }
    }
    // Every relay answers the winner (its cache kept true by the change feed).
    for (r, relay) in relays.iter().enumerate() {
        let mut peer = Peer::connect(&relay.server.ws_url());
        for (key, (_, value)) in &expected {
            let end = Instant::now() + WAIT;
            loop {
                let got = read_field(&mut peer, &soul, key);
                if got == *value {
                    break;
                }
                assert!(
                    Instant::now() < end,
                    "relay {r} answers {soul}.{key} = {got}, the HAM winner is {value}"
                );
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
    // The relays count the feed's changes and their batches.
    if SERVES_METRICS {
        for relay in &relays {
            let metrics = scrape(&relay.server);
            assert_eq!(sample(&metrics, "fibergun_postgres_feed_connected"), 1.0);
            assert!(
                sample(&metrics, "fibergun_postgres_batches_total") >= 20.0,
                "{metrics}"
            );
            assert!(
                sample(&metrics, "fibergun_postgres_feed_changes_total") >= 1.0,
                "{metrics}"
            );
        }
    }
    // And so does the database, to SQL.
    for (key, (state, value)) in &expected {
        let row = pg.psql(&format!(
            "SELECT value::text || ' ' || state FROM fibergun_graph WHERE soul = '{soul}' AND key = '{key}'"
        ));
        assert_eq!(row.trim(), format!("{value} {state}"), "{key}");
    }
}

#[test]
fn with_the_database_stopped_writes_get_an_err_cached_reads_go_on_and_no_acked_write_is_lost() {
    let mut pg = PgServer::start();
    let a = PgRelay::start(&pg);
    let b = PgRelay::start(&pg);
    let mut reader = Peer::connect(&a.server.ws_url());
    reader.put_ok(
        &put_msg("seed", "cached", &[("v", json!("kept"))], now_ms()),
        WAIT,
    );
    assert_eq!(read_field(&mut reader, "cached", "v"), json!("kept"));
    // A writer through relay A, one put after another, for the whole test.
    let stop = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(Mutex::new(Vec::<String>::new()));
    let errors = Arc::new(Mutex::new(Vec::<String>::new()));
    let writer = {
        let (url, stop, acked, errors) = (
            a.server.ws_url(),
            stop.clone(),
            acked.clone(),
            errors.clone(),
        );
        std::thread::spawn(move || {
            let mut peer = Peer::connect(&url);
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                i += 1;
                let soul = format!("load/{i}");
                let id = format!("load{i}");
                assert!(peer.send_json(&put_msg(&id, &soul, &[("v", json!(i))], now_ms())));
                let reply = peer.expect_reply(&id, Duration::from_secs(30));
                match reply["err"].as_str() {
                    Some(err) => {
                        errors.lock().unwrap().push(err.to_owned());
                        std::thread::sleep(Duration::from_millis(20));
                    }
                    None => acked.lock().unwrap().push(soul),
                }
            }
        })
    };
    let count = |v: &Arc<Mutex<Vec<String>>>| v.lock().unwrap().len();
    let wait_until = |what: &str, done: &dyn Fn() -> bool| {
        let end = Instant::now() + Duration::from_secs(30);
        while !done() {
            assert!(Instant::now() < end, "{what}");
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    wait_until("no write was acknowledged", &|| count(&acked) >= 20);
    pg.stop();
    wait_until("no write was refused while the database was down", &|| {
        count(&errors) >= 3
    });
    // What relay A has cached is still read.
    assert_eq!(read_field(&mut reader, "cached", "v"), json!("kept"));
    if SERVES_METRICS {
        wait_until("the feed never said it lost the database", &|| {
            sample(&scrape(&a.server), "fibergun_postgres_feed_connected") == 0.0
        });
    }
    let acked_before = count(&acked);
    pg.start_again();
    wait_until("writes never resumed", &|| {
        count(&acked) >= acked_before + 20
    });
    stop.store(true, Ordering::Relaxed);
    writer.join().unwrap();
    let errors = errors.lock().unwrap().clone();
    assert!(
        errors.iter().all(|e| e.contains("PostgreSQL")),
        "{errors:?}"
    );
    // Every acknowledged write is in the database: read through relay B.
    let mut check = Peer::connect(&b.server.ws_url());
    for soul in acked.lock().unwrap().iter() {
        let n: u64 = soul.trim_start_matches("load/").parse().unwrap();
        let got = read_field(&mut check, soul, "v");
        assert_eq!(got, json!(n), "{soul} was acknowledged and is gone");
    }
    for (relay, name) in [(a, "relay A"), (b, "relay B")] {
        let mut server = relay.server;
        server.assert_alive(name);
    }
}

#[test]
fn a_relay_whose_feed_connection_is_cut_still_brings_its_subscribers_every_change() {
    let pg = PgServer::start();
    let a = PgRelay::start(&pg);
    let b = PgRelay::start(&pg);
    let mut watcher = Peer::connect(&a.server.ws_url());
    let mut writer = Peer::connect(&b.server.ws_url());
    writer.put_ok(
        &put_msg("w0", "watched", &[("n", json!(0))], now_ms()),
        WAIT,
    );
    watcher.get("sub", "watched", None, WAIT);
    for n in 1..=5 {
        // Both relays' listening connections are cut; the write lands while they come back, so
        // its announcement may be missed, and then the gap is reported and the node read again.
        let cut = pg.psql(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
             WHERE application_name = 'fibergun feed'",
        );
        assert_eq!(cut.trim(), "2", "both relays listen");
        let id = format!("w{n}");
        writer.put_ok(&put_msg(&id, "watched", &[("n", json!(n))], now_ms()), WAIT);
        let seen = watcher.wait_for(WAIT, |m| {
            m.get("@").is_none() && reply_node(m, "watched").is_some_and(|node| node["n"] == n)
        });
        assert!(
            seen.is_some(),
            "change {n} never reached the subscriber: {}",
            watcher.inbox_summary()
        );
        // Until both listen again, the next cut would find fewer.
        let end = Instant::now() + WAIT;
        while pg
            .psql("SELECT count(*) FROM pg_stat_activity WHERE application_name = 'fibergun feed'")
            .trim()
            != "2"
        {
            assert!(Instant::now() < end, "the feeds never listened again");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

#[test]
fn hostile_souls_and_keys_round_trip_through_a_relay_and_the_database() {
    let pg = PgServer::start();
    let relay = PgRelay::start(&pg);
    let mut peer = Peer::connect(&relay.server.ws_url());
    let names = [
        "'; DROP TABLE fibergun_fields; --",
        "back\\slash \"quote\"",
        "nul \u{0} inside",
        "astral 😀 𝄞 \u{ffff}",
    ];
    for (i, name) in names.iter().enumerate() {
        let id = format!("hostile{i}");
        peer.put_ok(&put_msg(&id, name, &[(name, json!(name))], now_ms()), WAIT);
    }
    // A second relay reads them from the database (nothing cached there).
    let second = PgRelay::start(&pg);
    let mut other = Peer::connect(&second.server.ws_url());
    for name in names {
        assert_eq!(read_field(&mut other, name, name), json!(name), "{name:?}");
    }
    assert_eq!(pg.psql("SELECT count(*) FROM fibergun_fields").trim(), "4");
}

#[test]
fn export_and_import_move_a_graph_through_the_database() {
    let pg = PgServer::start();
    let relay = PgRelay::start(&pg);
    let mut peer = Peer::connect(&relay.server.ws_url());
    for i in 0..30 {
        let msg = put_msg(
            &format!("e{i}"),
            &format!("exp/{i}"),
            &[("v", json!(i))],
            now_ms(),
        );
        peer.put_ok(&msg, WAIT);
    }
    let dir = temp_data_dir();
    let file = dir.path().join("export.jsonl");
    let url = pg.url();
    let (ok, err) = fibergun_tool(
        BINARY,
        &[
            "export",
            "--store",
            "postgres",
            "--postgres-url",
            &url,
            "--out",
            file.to_str().unwrap(),
        ],
    );
    assert!(ok, "{err}");
    let lines = std::fs::read_to_string(&file).unwrap();
    assert_eq!(lines.lines().count(), 30);
    // Into a second database, while a relay runs on it: its subscriber hears of the import.
    let pg2 = PgServer::start();
    let relay2 = PgRelay::start(&pg2);
    let mut watcher = Peer::connect(&relay2.server.ws_url());
    watcher.get("w", "exp/7", None, WAIT);
    let url2 = pg2.url();
    let (ok, err) = fibergun_tool(
        BINARY,
        &[
            "import",
            "--store",
            "postgres",
            "--postgres-url",
            &url2,
            file.to_str().unwrap(),
        ],
    );
    assert!(ok, "{err}");
    assert!(
        err.contains("imported 30 nodes into the PostgreSQL database"),
        "{err}"
    );
    let pushed = watcher.wait_for(WAIT, |m| {
        m.get("@").is_none() && reply_node(m, "exp/7").is_some_and(|n| n["v"] == 7)
    });
    assert!(pushed.is_some(), "{}", watcher.inbox_summary());
    let mut reader = Peer::connect(&relay2.server.ws_url());
    assert_eq!(read_field(&mut reader, "exp/29", "v"), json!(29));
    // Mistakes are named.
    let (ok, err) = fibergun_tool(BINARY, &["export", "--store", "postgres"]);
    assert!(!ok);
    assert!(err.contains("--postgres-url"), "{err}");
}

#[test]
fn flags_that_cannot_work_with_postgres_are_refused_at_start_saying_why() {
    let data = temp_data_dir();
    let said = serve_must_fail(BINARY, data.path(), &["--store", "postgres"]);
    assert!(said.contains("--postgres-url"), "{said}");
    let said = serve_must_fail(
        BINARY,
        data.path(),
        &["--postgres-url", "postgres://postgres@127.0.0.1:1/gun"],
    );
    assert!(said.contains("--store postgres"), "{said}");
    let said = serve_must_fail(
        BINARY,
        data.path(),
        &[
            "--store",
            "postgres",
            "--postgres-url",
            "postgres://postgres@127.0.0.1:1/gun",
            "--upstream",
            "ws://127.0.0.1:2/gun",
        ],
    );
    assert!(said.contains("--upstream"), "{said}");
    // Nothing listening there: refused at start with the database's error.
    let said = serve_must_fail(
        BINARY,
        data.path(),
        &[
            "--store",
            "postgres",
            "--postgres-url",
            "postgres://postgres@127.0.0.1:1/gun",
        ],
    );
    assert!(said.contains("PostgreSQL"), "{said}");
}
