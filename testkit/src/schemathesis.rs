//! Schemathesis (PyPI), which fuzzes an HTTP API against its OpenAPI document: installed by
//! `testkit/schemathesis/install.sh` into a virtual environment, every package pinned by
//! `testkit/schemathesis/requirements.txt`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

/// The `st` program, installed first if needed (once per test binary).
pub fn st_binary() -> PathBuf {
    static INSTALLED: Mutex<bool> = Mutex::new(false);
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("schemathesis");
    let mut installed = INSTALLED.lock().unwrap_or_else(|e| e.into_inner());
    if !*installed {
        let status = Command::new("bash")
            .arg(dir.join("install.sh"))
            .status()
            .expect("running testkit/schemathesis/install.sh");
        assert!(status.success(), "installing Schemathesis failed");
        *installed = true;
    }
    dir.join(".venv/bin/st")
}
