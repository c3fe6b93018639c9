//! The S3 store and client against a real S3 server (SeaweedFS on loopback).

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use fibergun::graph::{Field, Key, Node, Soul, State, Value};
use fibergun::lex::KeyQuery;
use fibergun::store::{OpId, ReadQuery, Store, StoreOp, StoreResult};
use fibergun_s3::{layout, ObjectStore, S3Error, S3Store, SnapshotPolicy};
use fibergun_testkit::seaweedfs::SeaweedFs;

const MAP: usize = 1 << 30;

fn merge(op: u64, soul: &str, key: &str, value: &str, state: f64) -> StoreOp {
    StoreOp::Merge {
        op: OpId(op),
        soul: Soul::new(soul).unwrap(),
        fields: vec![(
            Key::new(key).unwrap(),
            Field {
                value: Value::String(value.into()),
                state: State::new(state).unwrap(),
            },
        )],
    }
}

fn read(store: &mut impl Store, soul: &str) -> Option<Node> {
    let query = ReadQuery::Node {
        soul: Soul::new(soul).unwrap(),
        keys: KeyQuery::All,
        reverse: false,
        budget: u64::MAX,
    };
    match store.apply(vec![StoreOp::Read {
        op: OpId(1 << 40),
        query,
    }]) {
        mut results if results.len() == 1 => match results.pop() {
            Some(StoreResult::Read { nodes }) => nodes.into_iter().next(),
            other => panic!("{other:?}"),
        },
        other => panic!("{other:?}"),
    }
}

fn text(node: &Node, key: &str) -> Option<String> {
    match &node.fields.get(&Key::new(key).unwrap())?.value {
        Value::String(t) => Some(t.to_string()),
        other => panic!("{other:?}"),
    }
}

fn assert_all_merged(results: &[StoreResult]) {
    for result in results {
        assert!(matches!(result, StoreResult::Merged { .. }), "{result:?}");
    }
}

/// Writes `batches` batches of `per_batch` nodes each (`n{batch}-{i}`).
fn write_batches(store: &mut S3Store, batches: u64, per_batch: u64) {
    for b in 0..batches {
        let ops = (0..per_batch)
            .map(|i| {
                merge(
                    b * 1000 + i,
                    &format!("n{b}-{i}"),
                    "v",
                    &format!("{b}.{i}"),
                    1.0,
                )
            })
            .collect();
        assert_all_merged(&store.apply(ops));
    }
}

fn assert_batches_present(store: &mut S3Store, batches: u64, per_batch: u64) {
    for b in 0..batches {
        for i in 0..per_batch {
            let node = read(store, &format!("n{b}-{i}")).unwrap_or_else(|| panic!("n{b}-{i}"));
            assert_eq!(
                text(&node, "v").as_deref(),
                Some(format!("{b}.{i}").as_str())
            );
        }
    }
}

#[test]
fn the_client_puts_gets_lists_and_deletes_and_signatures_are_checked() {
    let s3 = SeaweedFs::start();
    let objects = s3.bucket("client", "p/");
    objects.put("a/1", b"one").unwrap();
    objects.put("a/2", b"two").unwrap();
    objects.put("b/1", b"three").unwrap();
    assert_eq!(objects.get("a/2").unwrap(), b"two");
    assert_eq!(objects.get("a/3"), Err(S3Error::NotFound));
    let listed: Vec<String> = objects
        .list("a/", None)
        .unwrap()
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    assert_eq!(listed, ["a/1", "a/2"]);
    let after: Vec<String> = objects
        .list("a/", Some("a/1"))
        .unwrap()
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    assert_eq!(after, ["a/2"]);

    // Create-only writes never overwrite.
    objects.put_new("c", b"first").unwrap();
    assert_eq!(objects.put_new("c", b"second"), Err(S3Error::Exists));
    assert_eq!(objects.get("c").unwrap(), b"first");

    objects.delete("a/1").unwrap();
    objects.delete("a/1").unwrap();
    assert_eq!(objects.get("a/1"), Err(S3Error::NotFound));

    // A large upload goes in parts and reads back whole.
    let big: Vec<u8> = (0..fibergun_s3::PART_BYTES * 2 + 12345)
        .map(|i| (i % 251) as u8)
        .collect();
    objects
        .upload("big", &mut big.as_slice(), big.len() as u64)
        .unwrap();
    let mut back = Vec::new();
    assert_eq!(objects.get_to("big", &mut back).unwrap(), big.len() as u64);
    assert!(
        back == big,
        "the multipart upload reads back different bytes"
    );

    // A wrong secret is refused by the server.
    let mut wrong = s3.config("client", "p/");
    wrong.secret_key = "not-the-secret".into();
    match ObjectStore::new(&wrong).unwrap().get("a/2") {
        Err(S3Error::Status { code: 403, .. }) => {}
        other => panic!("{other:?}"),
    }
}

#[test]
fn an_empty_folder_restarts_with_every_acknowledged_write() {
    let s3 = SeaweedFs::start();
    s3.bucket("graph", "");
    let config = s3.config("graph", "relay-1/");
    let first = tempfile::tempdir().unwrap();
    {
        let (mut store, recovery) =
            S3Store::open(first.path(), MAP, &config, SnapshotPolicy::default()).unwrap();
        assert_eq!(recovery.last_batch, 0);
        write_batches(&mut store, 5, 20);
        // A later write of one field wins by state, and an older one changes nothing.
        assert_all_merged(&store.apply(vec![merge(1, "n0-0", "v", "newer", 2.0)]));
        assert_all_merged(&store.apply(vec![merge(2, "n0-0", "v", "older", 0.5)]));
    }
    let segments = s3
        .bucket("graph", "relay-1/")
        .list(layout::SEGMENTS, None)
        .unwrap();
    // The write that changed nothing uploaded nothing.
    assert_eq!(segments.len(), 6, "{segments:?}");

    let second = tempfile::tempdir().unwrap();
    let (mut store, recovery) =
        S3Store::open(second.path(), MAP, &config, SnapshotPolicy::default()).unwrap();
    assert_eq!(recovery.segments, 6);
    assert_eq!(recovery.nodes, 100);
    assert_eq!(
        text(&read(&mut store, "n0-0").unwrap(), "v").as_deref(),
        Some("newer")
    );
    assert_eq!(
        text(&read(&mut store, "n4-19").unwrap(), "v").as_deref(),
        Some("4.19")
    );
    // It carries on numbering after the bucket's last batch.
    assert_all_merged(&store.apply(vec![merge(3, "late", "v", "x", 1.0)]));
    drop(store);
    let third = tempfile::tempdir().unwrap();
    let (mut store, _) =
        S3Store::open(third.path(), MAP, &config, SnapshotPolicy::default()).unwrap();
    assert!(read(&mut store, "late").is_some());
}

#[test]
fn snapshots_compact_the_log_and_restarts_read_them() {
    let s3 = SeaweedFs::start();
    let objects = s3.bucket("snap", "");
    let config = s3.config("snap", "");
    let policy = SnapshotPolicy {
        after_bytes: 1,
        after_segments: 4,
    };
    let dir = tempfile::tempdir().unwrap();
    let (mut store, _) = S3Store::open(dir.path(), MAP, &config, policy).unwrap();
    write_batches(&mut store, 12, 10);
    let deadline = Instant::now() + Duration::from_secs(30);
    while store.snapshot_running() {
        assert!(Instant::now() < deadline, "the snapshot did not finish");
        std::thread::sleep(Duration::from_millis(20));
    }
    let manifests: Vec<String> = objects
        .list(layout::SNAPSHOTS, None)
        .unwrap()
        .into_iter()
        .map(|(k, _)| k)
        .filter(|k| layout::is_manifest(k))
        .collect();
    assert_eq!(
        manifests.len(),
        1,
        "older snapshots are deleted: {manifests:?}"
    );
    let manifest = layout::Manifest::parse(&objects.get(&manifests[0]).unwrap()).unwrap();
    assert!(manifest.through >= 4, "{manifest:?}");
    let left = objects.list(layout::SEGMENTS, None).unwrap();
    assert!(
        left.iter()
            .all(|(k, _)| layout::segment_seq(k).unwrap() > manifest.through),
        "segments under the snapshot are deleted: {left:?}"
    );
    assert!(left.len() < 12);
    drop(store);

    // From nothing: the snapshot, then the segments after it.
    let empty = tempfile::tempdir().unwrap();
    let (mut fresh, recovery) = S3Store::open(empty.path(), MAP, &config, policy).unwrap();
    assert_eq!(recovery.snapshot, Some(manifest.through));
    assert_eq!(recovery.nodes, 120);
    assert_batches_present(&mut fresh, 12, 10);
    drop(fresh);

    // The old folder is behind the snapshot: it catches up from it as well.
    let (mut old, recovery) = S3Store::open(dir.path(), MAP, &config, policy).unwrap();
    assert_eq!(recovery.nodes, 120);
    assert_batches_present(&mut old, 12, 10);
}

#[test]
fn a_second_writer_on_the_same_prefix_fails_instead_of_overwriting() {
    let s3 = SeaweedFs::start();
    s3.bucket("shared", "");
    let config = s3.config("shared", "");
    let (a_dir, b_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (mut a, _) = S3Store::open(a_dir.path(), MAP, &config, SnapshotPolicy::default()).unwrap();
    let (mut b, _) = S3Store::open(b_dir.path(), MAP, &config, SnapshotPolicy::default()).unwrap();
    assert_all_merged(&a.apply(vec![merge(1, "x", "v", "from a", 1.0)]));
    match b.apply(vec![merge(1, "y", "v", "from b", 1.0)]).pop() {
        Some(StoreResult::Failed { reason }) => {
            assert!(reason.contains("another relay"), "{reason}")
        }
        other => panic!("{other:?}"),
    }
    // Nothing of the refused batch is in b's replica.
    assert!(read(&mut b, "y").is_none());
    drop((a, b));
    let dir = tempfile::tempdir().unwrap();
    let (mut c, _) = S3Store::open(dir.path(), MAP, &config, SnapshotPolicy::default()).unwrap();
    assert!(read(&mut c, "x").is_some());
    assert!(read(&mut c, "y").is_none());
}

#[test]
fn a_replica_of_another_bucket_or_ahead_of_its_bucket_is_refused() {
    let s3 = SeaweedFs::start();
    s3.bucket("one", "");
    s3.bucket("two", "");
    let dir = tempfile::tempdir().unwrap();
    let (mut store, _) = S3Store::open(
        dir.path(),
        MAP,
        &s3.config("one", ""),
        SnapshotPolicy::default(),
    )
    .unwrap();
    assert_all_merged(&store.apply(vec![merge(1, "x", "v", "1", 1.0)]));
    drop(store);
    let error = S3Store::open(
        dir.path(),
        MAP,
        &s3.config("two", ""),
        SnapshotPolicy::default(),
    )
    .err()
    .expect("another bucket's replica is refused");
    assert!(error.contains("is the replica of"), "{error}");

    // The bucket loses its objects: the replica holds a batch the bucket does not.
    let one = s3.bucket("one", "");
    for (key, _) in one.list("", None).unwrap() {
        one.delete(&key).unwrap();
    }
    let error = S3Store::open(
        dir.path(),
        MAP,
        &s3.config("one", ""),
        SnapshotPolicy::default(),
    )
    .err()
    .expect("a replica ahead of its bucket is refused");
    assert!(error.contains("does not have"), "{error}");

    // An unreachable service is a clear error at open, not a hang.
    let mut down = s3.config("one", "");
    down.endpoint = "http://127.0.0.1:9".into();
    let other = tempfile::tempdir().unwrap();
    let error = S3Store::open(other.path(), MAP, &down, SnapshotPolicy::default())
        .err()
        .expect("an unreachable service is refused");
    assert!(error.contains("S3 listing"), "{error}");
}

/// A TCP proxy in front of the S3 server that can lose answers: while `cut` is above zero, each
/// response's first bytes are dropped and both sockets closed (the request itself went through).
struct AnswerLosingProxy {
    endpoint: String,
    cut: Arc<AtomicUsize>,
}

impl AnswerLosingProxy {
    fn start(upstream: &str) -> AnswerLosingProxy {
        let upstream = upstream.trim_start_matches("http://").to_owned();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let cut = Arc::new(AtomicUsize::new(0));
        let cuts = cut.clone();
        std::thread::spawn(move || {
            for client in listener.incoming().map_while(Result::ok) {
                let Ok(server) = TcpStream::connect(&upstream) else {
                    continue;
                };
                let (mut c_read, mut s_write) =
                    (client.try_clone().unwrap(), server.try_clone().unwrap());
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut c_read, &mut s_write);
                    let _ = s_write.shutdown(Shutdown::Write);
                });
                let cuts = cuts.clone();
                std::thread::spawn(move || {
                    let (mut s_read, mut c_write) = (server, client);
                    let mut buf = [0u8; 16 << 10];
                    loop {
                        let n = match s_read.read(&mut buf) {
                            Ok(0) | Err(_) => break,
                            Ok(n) => n,
                        };
                        let lose = cuts
                            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                            .is_ok();
                        if lose {
                            let _ = c_write.shutdown(Shutdown::Both);
                            let _ = s_read.shutdown(Shutdown::Both);
                            break;
                        }
                        if c_write.write_all(&buf[..n]).is_err() {
                            break;
                        }
                    }
                    let _ = c_write.shutdown(Shutdown::Write);
                });
            }
        });
        AnswerLosingProxy { endpoint, cut }
    }
}

#[test]
fn a_batch_whose_answer_was_lost_is_acknowledged_once_its_object_is_found_whole() {
    let s3 = SeaweedFs::start();
    s3.bucket("lossy", "");
    let proxy = AnswerLosingProxy::start(&s3.endpoint);
    let mut config = s3.config("lossy", "");
    config.endpoint = proxy.endpoint.clone();
    let dir = tempfile::tempdir().unwrap();
    let (mut store, _) =
        S3Store::open(dir.path(), MAP, &config, SnapshotPolicy::default()).unwrap();
    assert_all_merged(&store.apply(vec![merge(1, "a", "v", "before", 1.0)]));

    // The upload lands, its answer is lost; the retry finds the key taken, reads the object back,
    // sees the same bytes, and the batch is acknowledged.
    proxy.cut.store(1, Ordering::SeqCst);
    assert_all_merged(&store.apply(vec![merge(2, "b", "v", "landed", 1.0)]));
    assert_eq!(proxy.cut.load(Ordering::SeqCst), 0, "no answer was lost");
    assert_eq!(store.stats().read().upload_failures, 0);

    // Answers lost again and again: the batch fails whole, the store goes on.
    proxy.cut.store(100, Ordering::SeqCst);
    match store.apply(vec![merge(3, "c", "v", "refused", 1.0)]).pop() {
        Some(StoreResult::Failed { .. }) => {}
        other => panic!("{other:?}"),
    }
    assert!(
        read(&mut store, "c").is_none(),
        "a failed batch is not in the replica"
    );
    proxy.cut.store(0, Ordering::SeqCst);
    assert_all_merged(&store.apply(vec![merge(4, "d", "v", "after", 1.0)]));
    drop(store);

    let fresh = tempfile::tempdir().unwrap();
    let (mut store, _) = S3Store::open(
        fresh.path(),
        MAP,
        &s3.config("lossy", ""),
        SnapshotPolicy::default(),
    )
    .unwrap();
    for soul in ["a", "b", "d"] {
        assert!(
            read(&mut store, soul).is_some(),
            "{soul} is missing after a restart"
        );
    }
}
