//! The example pages in headless Chromium (`testkit/gunjs/browser_examples.js`, playwright-core),
//! served by the `fibergun` binary with `--static examples`: two chat pages exchange messages
//! live, and the todo page shows its items again after the server restarts.
//!
//! Needs Debian's `chromium` (`.ci/run` installs it); without it the test is skipped, except
//! under CI. `CHROMIUM` names another browser binary.

use crate::BINARY;

use fibergun_testkit::gunjs::{
    ensure_example_deps, ensure_node_deps, examples_dir, expect_success, run_node,
};
use fibergun_testkit::{temp_data_dir, Server};

pub(crate) fn chromium_present() -> bool {
    let path = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    if std::path::Path::new(&path).is_file() {
        return true;
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "{path} not found: install Debian's chromium (`.ci/run` does)"
    );
    eprintln!("{path} not found: the browser test is skipped (CI runs it)");
    false
}

#[test]
fn the_example_pages_work_in_a_real_browser() {
    if !chromium_present() {
        return;
    }
    ensure_node_deps();
    ensure_example_deps();
    let data = temp_data_dir();
    let examples = examples_dir().canonicalize().unwrap();
    let examples = examples.to_str().unwrap();
    let mut server = Server::start(BINARY, data.path(), &["--static", examples]);
    let base = format!("http://127.0.0.1:{}", server.port);
    let run = format!("b{}", std::process::id());
    for phase in ["chat", "todos-add"] {
        let out = run_node("browser_examples.js", &[&base, phase, &run]);
        expect_success(&out, &format!("browser {phase}"));
    }
    server.restart();
    let out = run_node("browser_examples.js", &[&base, "todos-check", &run]);
    expect_success(&out, "browser todos-check");
    server.assert_alive("after the browser test");
}
