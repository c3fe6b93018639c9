//! Storage faults: a data folder that is not a store is refused at start with a clear error; a
//! `--storage-quota` refuses writes with an `err` while reads go on; a full disk does the same
//! and writes resume once space returns. Declared by each runtime's package.

use crate::BINARY;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use fibergun_testkit::{fill_until_refused, now_ms, put_msg, temp_data_dir, Peer, Server};
use serde_json::json;

const WAIT: Duration = Duration::from_secs(10);

/// `serve` on `dir` must fail at start, saying `expected`.
fn refused_at_start(dir: &Path, expected: &str) {
    let err = fibergun_testkit::serve_must_fail(BINARY, dir, &[]);
    assert!(err.contains(expected), "expected {expected:?} in:\n{err}");
}

#[test]
fn a_folder_that_is_not_a_store_is_refused_at_start() {
    let other = temp_data_dir();
    std::fs::write(other.path().join("photo.jpg"), b"not a store").unwrap();
    refused_at_start(other.path(), "holds other files");

    let damaged = temp_data_dir();
    std::fs::write(damaged.path().join("data.mdb"), vec![0x5au8; 64 << 10]).unwrap();
    refused_at_start(damaged.path(), "a damaged file, or not an LMDB store");

    // Another program's LMDB store.
    let foreign = temp_data_dir();
    {
        use heed::types::Bytes;
        // SAFETY: a fresh folder, opened once here and closed before the server opens it.
        let env = unsafe { heed::EnvOpenOptions::new().max_dbs(2).open(foreign.path()) }.unwrap();
        let wtxn = env.write_txn().unwrap();
        env.create_databases_and_commit(wtxn, |opener, wtxn| {
            let db = opener
                .database_options()
                .types::<Bytes, Bytes>()
                .name("other")
                .create(wtxn)?;
            db.put(wtxn, b"k", b"v")?;
            Ok::<_, heed::Error>(heed::CommitOrAbort::<(), ()>::Commit(()))
        })
        .unwrap();
    }
    refused_at_start(foreign.path(), "not fibergun's");
}

#[test]
fn past_the_storage_quota_writes_get_an_err_and_reads_go_on() {
    let data = temp_data_dir();
    let mut server = Server::start(BINARY, data.path(), &["--storage-quota", "256K"]);
    let mut peer = Peer::connect(&server.ws_url());
    let (err, written) = fill_until_refused(&mut peer, "q", 1000);
    assert!(err.contains("quota"), "{err}");
    assert!(!written.is_empty());
    let reply = peer.get("r", &written[0], None, WAIT);
    assert_eq!(
        reply["put"][&written[0]]["v"].as_str().map(str::len),
        Some(4000),
        "{reply}"
    );
    server.assert_alive("past the quota");
}

#[test]
fn a_full_disk_refuses_writes_until_space_returns() {
    let mount = temp_data_dir();
    let dir = mount.path().to_str().unwrap().to_owned();
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=1m", "tmpfs", &dir])
        .status()
        .is_ok_and(|s| s.success());
    if !mounted {
        // Mounting needs root and a kernel that lets this container mount.
        eprintln!("cannot mount a small tmpfs here: the full-disk test is skipped");
        return;
    }
    struct Unmount(String);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = Command::new("umount").args(["-l", &self.0]).status();
        }
    }
    let _unmount = Unmount(dir.clone());
    let data = mount.path().join("store");
    std::fs::create_dir(&data).unwrap();
    let mut server = Server::start(BINARY, &data, &[]);
    let mut peer = Peer::connect(&server.ws_url());
    let (err, written) = fill_until_refused(&mut peer, "d", 2000);
    assert!(err.starts_with("Storage failed"), "{err}");
    let reply = peer.get("r", &written[0], None, WAIT);
    assert!(
        reply["put"][&written[0]]["v"].is_string(),
        "reads stopped: {reply}"
    );
    server.assert_alive("with a full disk");
    // Space returns: writes are taken again.
    let grown = Command::new("mount")
        .args(["-o", "remount,size=16m", &dir])
        .status()
        .unwrap();
    assert!(grown.success());
    peer.put_ok(
        &put_msg("after", "after", &[("v", json!(1))], now_ms()),
        WAIT,
    );
    assert!(
        !written.is_empty(),
        "nothing was written before the disk filled"
    );
}
