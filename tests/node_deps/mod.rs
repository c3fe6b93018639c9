//! The node packages the tests run (npm `gun@0.2020.1241`, pinned by tests/interop/package-lock.json),
//! installed with `npm ci` when missing or not the locked version. Shared by every test that runs
//! GUN JS.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::OnceLock;

/// The folder of the node scripts and their `node_modules`.
pub fn interop_dir() -> PathBuf {
    // Test crates live at the root or under runtimes/<name>; find the repository root either way.
    let mut dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    while !dir.join("tests").join("interop").is_dir() {
        assert!(
            dir.pop(),
            "tests/interop not found above {}",
            env!("CARGO_MANIFEST_DIR")
        );
    }
    dir.join("tests").join("interop")
}

/// Install the node dependencies once (`npm ci` from the committed package-lock.json) if they are missing.
/// `OnceLock::get_or_init` makes parallel tests wait for the one install instead of racing it.
pub fn ensure_node_deps() {
    static READY: OnceLock<Result<(), String>> = OnceLock::new();
    let r = READY.get_or_init(|| {
        let dir = interop_dir();
        let locked = gun_version(&dir.join("package-lock.json"), &["packages", "node_modules/gun"]);
        let installed = gun_version(&dir.join("node_modules/gun/package.json"), &[]);
        if installed.is_some() && installed == locked {
            return Ok(());
        }
        eprintln!(
            "interop: installing node deps with `npm ci` in {}",
            dir.display()
        );
        let out = Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund"])
            .current_dir(&dir)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("cannot run npm (is node/npm installed?): {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "`npm ci` in {} failed ({}):\n{}\n{}",
                dir.display(),
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        let installed = gun_version(&dir.join("node_modules/gun/package.json"), &[]);
        if installed.is_none() || installed != locked {
            return Err(format!(
                "after `npm ci`, node_modules/gun is {installed:?}, package-lock.json says {locked:?}"
            ));
        }
        Ok(())
    });
    if let Err(e) = r {
        panic!("node dependencies for the interop tests are not available: {e}");
    }
}

/// The `version` field of the JSON object found at `path` inside the JSON file `file`.
fn gun_version(file: &std::path::Path, path: &[&str]) -> Option<String> {
    let text = std::fs::read_to_string(file).ok()?;
    let mut v: serde_json::Value = serde_json::from_str(&text).ok()?;
    for p in path {
        v = v.get(*p)?.clone();
    }
    v.get("version")?.as_str().map(str::to_owned)
}
