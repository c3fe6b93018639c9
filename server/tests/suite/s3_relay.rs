//! The `fibergun` relay on S3 (a real SeaweedFS on loopback): killed and started again on an
//! empty folder, it serves every acknowledged write; a backup kept in S3 restores after the
//! data folder is wiped; an export moves into an S3 store; S3 flags are checked at start. Each
//! runtime's binary runs these.

use super::{sample, scrape};
use crate::{BINARY, SERVES_METRICS};

use std::path::Path;
use std::time::Duration;

use fibergun_testkit::seaweedfs::SeaweedFs;
use fibergun_testkit::{
    fibergun_tool, holds_numbered, is_ok_ack, now_ms, put_msg, reply_node, serve_must_fail,
    temp_data_dir, write_numbered, Peer, Server,
};
use serde_json::json;

const WAIT: Duration = Duration::from_secs(15);

/// The credentials go in the environment, where the relay reads them (every test sets the same).
fn credentials() {
    std::env::set_var("AWS_ACCESS_KEY_ID", fibergun_testkit::seaweedfs::ACCESS_KEY);
    std::env::set_var(
        "AWS_SECRET_ACCESS_KEY",
        fibergun_testkit::seaweedfs::SECRET_KEY,
    );
}

fn s3_flags(s3: &SeaweedFs, bucket: &str, prefix: &str, extra: &[&str]) -> Vec<String> {
    let mut flags: Vec<String> = [
        "--store",
        "s3",
        "--s3-endpoint",
        &s3.endpoint,
        "--s3-bucket",
        bucket,
        "--s3-prefix",
        prefix,
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    flags.extend(extra.iter().map(|s| (*s).to_owned()));
    flags
}

fn start(data: &Path, flags: &[String]) -> Server {
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    Server::start(BINARY, data, &flags)
}

fn write(url: &str, prefix: &str, n: usize) {
    write_numbered(&mut Peer::connect(url), prefix, n);
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn killed_and_started_on_an_empty_folder_the_relay_serves_every_acknowledged_write() {
    credentials();
    let s3 = SeaweedFs::start();
    s3.bucket("graph", "");
    // Snapshots every few kilobytes, so that the restart reads a snapshot and segments both.
    let flags = s3_flags(&s3, "graph", "relay-a", &["--s3-snapshot-after", "16K"]);
    let first = temp_data_dir();
    let server = start(first.path(), &flags);
    let url = server.ws_url();
    // Writers at once, so that batches hold several writes.
    let writers: Vec<_> = (0..4)
        .map(|w| {
            let url = url.clone();
            std::thread::spawn(move || write(&url, &format!("w{w}"), 100))
        })
        .collect();
    for writer in writers {
        writer.join().expect("a writer failed");
    }
    drop(server); // SIGKILL: no orderly shutdown

    let objects = s3.bucket("graph", "relay-a/");
    let listed = objects.list("", None).unwrap();
    assert!(
        listed.iter().any(|(k, _)| k.starts_with("snapshots/")),
        "no snapshot was taken: {listed:?}"
    );

    let empty = temp_data_dir();
    let server = start(empty.path(), &flags);
    for w in 0..4 {
        assert_eq!(
            holds_numbered(&server, &format!("w{w}"), 100),
            100,
            "writer {w}"
        );
    }
    assert!(server.log().contains("S3 store ready"), "{}", server.log());
    // The new relay goes on writing where the old one stopped, and says so in /metrics.
    write(&server.ws_url(), "later", 10);
    if SERVES_METRICS {
        let metrics = scrape(&server);
        assert!(
            sample(&metrics, "fibergun_s3_batch_upload_seconds_count") >= 1.0,
            "{metrics}"
        );
        assert!(
            sample(&metrics, "fibergun_s3_last_batch") > 10.0,
            "{metrics}"
        );
        assert!(
            sample(&metrics, "fibergun_s3_last_snapshot_bytes") > 0.0,
            "{metrics}"
        );
        assert_eq!(
            sample(&metrics, "fibergun_s3_batch_upload_failures_total"),
            0.0
        );
    }
    drop(server);
    let again = temp_data_dir();
    let server = start(again.path(), &flags);
    assert_eq!(holds_numbered(&server, "later", 10), 10);
    assert_eq!(holds_numbered(&server, "w3", 100), 100);
}

#[test]
fn a_backup_kept_in_s3_restores_the_same_graph_after_the_folder_is_wiped() {
    credentials();
    let s3 = SeaweedFs::start();
    s3.bucket("backups", "");
    let data = temp_data_dir();
    let server = Server::start(BINARY, data.path(), &[]);
    write(&server.ws_url(), "doc", 150);
    let scratch = temp_data_dir();
    let before = scratch.path().join("before.jsonl");
    let (ok, said) = fibergun_tool(
        BINARY,
        &[
            "export",
            "--data",
            path(data.path()),
            "--out",
            path(&before),
        ],
    );
    assert!(ok, "{said}");
    let url = "s3://backups/relay-a/2026-12-02.mdb";
    let (ok, said) = fibergun_tool(
        BINARY,
        &[
            "backup",
            "--data",
            path(data.path()),
            "--out",
            url,
            "--s3-endpoint",
            &s3.endpoint,
        ],
    );
    assert!(ok && said.contains(url), "backup failed: {said}");
    drop(server);

    std::fs::remove_dir_all(data.path()).unwrap();
    let (ok, said) = fibergun_tool(
        BINARY,
        &[
            "restore",
            "--from",
            url,
            "--data",
            path(data.path()),
            "--s3-endpoint",
            &s3.endpoint,
        ],
    );
    assert!(ok, "restore failed: {said}");
    let after = scratch.path().join("after.jsonl");
    let (ok, said) = fibergun_tool(
        BINARY,
        &["export", "--data", path(data.path()), "--out", path(&after)],
    );
    assert!(ok, "{said}");
    assert_eq!(
        std::fs::read_to_string(&before).unwrap(),
        std::fs::read_to_string(&after).unwrap(),
        "the restored graph differs"
    );
    let server = Server::start(BINARY, data.path(), &[]);
    assert_eq!(holds_numbered(&server, "doc", 150), 150);

    // A missing object is a clear error, and nothing is created.
    let elsewhere = scratch.path().join("elsewhere");
    let (ok, said) = fibergun_tool(
        BINARY,
        &[
            "restore",
            "--from",
            "s3://backups/no-such.mdb",
            "--data",
            path(&elsewhere),
            "--s3-endpoint",
            &s3.endpoint,
        ],
    );
    assert!(!ok && said.contains("no such object"), "{said}");
    assert!(!elsewhere.join("data.mdb").exists());
}

#[test]
fn an_export_moves_into_an_s3_store_and_the_flags_are_checked() {
    credentials();
    let s3 = SeaweedFs::start();
    s3.bucket("moved", "");
    let data = temp_data_dir();
    let server = Server::start(BINARY, data.path(), &[]);
    write(&server.ws_url(), "item", 80);
    let scratch = temp_data_dir();
    let export = scratch.path().join("graph.jsonl");
    let (ok, said) = fibergun_tool(
        BINARY,
        &[
            "export",
            "--data",
            path(data.path()),
            "--out",
            path(&export),
        ],
    );
    assert!(ok, "{said}");
    drop(server);

    let flags = s3_flags(&s3, "moved", "relay-a", &[]);
    let replica = scratch.path().join("replica");
    let mut import: Vec<&str> = vec!["import", "--data", path(&replica)];
    import.extend(flags.iter().map(String::as_str));
    import.push(path(&export));
    let (ok, said) = fibergun_tool(BINARY, &import);
    assert!(ok && said.contains("imported 80 nodes"), "{said}");
    // The replica the import wrote is not needed: the bucket has it all.
    let empty = temp_data_dir();
    let server = start(empty.path(), &flags);
    assert_eq!(holds_numbered(&server, "item", 80), 80);
    drop(server);

    // Flags that cannot work are refused at start, saying why.
    let said = serve_must_fail(
        BINARY,
        empty.path(),
        &["--store", "s3", "--s3-endpoint", &s3.endpoint],
    );
    assert!(said.contains("--s3-bucket"), "{said}");
    let said = serve_must_fail(BINARY, empty.path(), &["--s3-bucket", "moved"]);
    assert!(said.contains("--store s3"), "{said}");
    // A folder that is another store's replica is refused.
    let other = s3_flags(&s3, "moved", "relay-b", &[]);
    let other: Vec<&str> = other.iter().map(String::as_str).collect();
    let said = serve_must_fail(BINARY, empty.path(), &other);
    assert!(said.contains("is the replica of"), "{said}");
}

#[test]
fn writes_acknowledged_until_a_kill_in_the_middle_of_a_load_are_all_in_the_bucket() {
    credentials();
    let s3 = SeaweedFs::start();
    s3.bucket("crash", "");
    let flags = s3_flags(&s3, "crash", "relay-a", &["--s3-snapshot-after", "8K"]);
    let first = temp_data_dir();
    let server = start(first.path(), &flags);
    let url = server.ws_url();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writers: Vec<_> = (0..4)
        .map(|w| {
            let (url, stop) = (url.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut peer = Peer::connect(&url);
                let mut acked = Vec::new();
                for i in 0.. {
                    if stop.load(std::sync::atomic::Ordering::Relaxed) {
                        break;
                    }
                    let soul = format!("k{w}/{i}");
                    let msg = put_msg(&format!("k{w}.{i}"), &soul, &[("v", json!(i))], now_ms());
                    if !peer.send_json(&msg) {
                        break;
                    }
                    match peer.wait_reply(&format!("k{w}.{i}"), Duration::from_secs(5)) {
                        Some(reply) if is_ok_ack(&reply) => acked.push(soul),
                        _ => break,
                    }
                }
                acked
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(1500));
    drop(server); // SIGKILL while the writers are writing
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let acked: Vec<String> = writers
        .into_iter()
        .flat_map(|w| w.join().expect("a writer panicked"))
        .collect();
    assert!(
        acked.len() > 100,
        "too few writes before the kill: {}",
        acked.len()
    );

    let empty = temp_data_dir();
    let server = start(empty.path(), &flags);
    let mut peer = Peer::connect(&server.ws_url());
    let missing: Vec<&String> = acked
        .iter()
        .filter(|soul| {
            let reply = peer.get(&format!("c-{soul}"), soul, None, WAIT);
            reply_node(&reply, soul).is_none()
        })
        .collect();
    assert!(
        missing.is_empty(),
        "{} of {} acknowledged writes lost: {:?}",
        missing.len(),
        acked.len(),
        &missing[..missing.len().min(5)]
    );
}

#[test]
fn during_an_s3_outage_writes_get_an_err_reads_go_on_and_writes_resume_after() {
    credentials();
    let mut s3 = SeaweedFs::start();
    s3.bucket("outage", "");
    let flags = s3_flags(&s3, "outage", "relay-a", &[]);
    let data = temp_data_dir();
    let server = start(data.path(), &flags);
    write(&server.ws_url(), "before", 20);

    s3.stop();
    let mut peer = Peer::connect(&server.ws_url());
    let msg = put_msg("lost", "during/0", &[("v", json!(0))], now_ms());
    assert!(peer.send_json(&msg));
    let reply = peer
        .wait_reply("lost", Duration::from_secs(30))
        .expect("a write during the outage is answered");
    assert!(
        !is_ok_ack(&reply),
        "a write was acknowledged with S3 down: {reply}"
    );
    assert!(reply.to_string().contains("S3"), "{reply}");
    // Reads are answered from the replica.
    assert_eq!(holds_numbered(&server, "before", 20), 20);

    s3.start_again();
    write(&server.ws_url(), "after", 20);
    if SERVES_METRICS {
        let metrics = scrape(&server);
        assert!(sample(&metrics, "fibergun_s3_batch_upload_failures_total") >= 1.0);
    }
    drop(server);

    let empty = temp_data_dir();
    let server = start(empty.path(), &flags);
    assert_eq!(holds_numbered(&server, "before", 20), 20);
    assert_eq!(holds_numbered(&server, "after", 20), 20);
    let mut peer = Peer::connect(&server.ws_url());
    let reply = peer.get("g-lost", "during/0", None, WAIT);
    assert!(
        reply_node(&reply, "during/0").is_none(),
        "the refused write is there: {reply}"
    );
}
