//! Replays the simulation fuzz target's kept inputs (`fuzz/corpus/sim/`, and every crash found,
//! `fuzz/regressions/sim/`) through the same code as the target.

use std::path::Path;

#[test]
fn sim_fuzz_inputs_converge() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz");
    let mut count = 0;
    for dir in [root.join("corpus/sim"), root.join("regressions/sim")] {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        let mut files: Vec<_> = entries.map(|e| e.expect("readable").path()).collect();
        files.sort();
        for file in files {
            let data = std::fs::read(&file).expect("readable");
            let outcome = std::panic::catch_unwind(|| fibergun_sim::fuzz(&data));
            assert!(outcome.is_ok(), "{} fails", file.display());
            count += 1;
        }
    }
    assert!(count >= 10, "only {count} inputs");
}
