//! Replays every fuzz input kept in the repository through the fuzz targets' own code: the seed
//! corpora (`fuzz/corpus/<target>/`) and every crash a fuzzer ever found
//! (`fuzz/regressions/<target>/`, one file per crash, named after what it broke).

use std::path::Path;

fn replay(target: &str, run: fn(&[u8])) -> usize {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let mut count = 0;
    for dir in [
        root.join("corpus").join(target),
        root.join("regressions").join(target),
    ] {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        let mut files: Vec<_> = entries.map(|e| e.expect("readable dir").path()).collect();
        files.sort();
        for file in files {
            let data = std::fs::read(&file).expect("readable input");
            let outcome = std::panic::catch_unwind(|| run(&data));
            assert!(outcome.is_ok(), "{target}: {} fails", file.display());
            count += 1;
        }
    }
    count
}

#[test]
fn parse_frame_inputs() {
    assert!(replay("parse_frame", fibergun::fuzzing::parse_frame) >= 100);
}

#[test]
fn peer_ops_inputs() {
    assert!(replay("peer_ops", fibergun::fuzzing::peer_ops) >= 10);
}

#[test]
fn ham_merge_inputs() {
    assert!(replay("ham_merge", fibergun::fuzzing::ham_merge) >= 10);
}
