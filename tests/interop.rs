//! Interop with the real GUN JavaScript client (npm `gun@0.2020.1241`).
//!
//! Each test starts its own `fibergun serve` on a free 127.0.0.1 port with a fresh data directory and runs
//! one node scenario script from `tests/interop/` against `http://127.0.0.1:PORT/gun`. The scripts use GUN's
//! browser build (`gun/gun.js` + `ws`), so no multicast/radisk/AXE code is ever loaded; each exits 0 on
//! success and non-zero with a message otherwise, and has its own 20 s deadline. See the header comment of
//! each script for what exactly it checks.
//!
//! Needs `node` and `npm` on PATH. Before the first scenario, `npm ci` is run in `tests/interop` if
//! `tests/interop/node_modules/gun` is missing (once per test binary, serialised). Set `NODE` to use another
//! node binary, and `GUN_WIRE_LOG=1` to have the scripts print every frame their GUN clients exchange.
//!
//! The same scripts can be run against the stock GUN JS relay to check the scripts themselves:
//! `cd tests/interop && node validate-gunjs.js`.

mod common;
mod node_deps;

use node_deps::{ensure_node_deps, interop_dir};

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{temp_data_dir, Server};

/// Hard limit for one node script (each script also stops itself after 20 s).
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(60);

fn node_bin() -> String {
    std::env::var("NODE").unwrap_or_else(|_| "node".into())
}

struct NodeRun {
    status: String,
    success: bool,
    stdout: String,
    stderr: String,
    elapsed: Duration,
}

/// Run `node tests/interop/<script> <url>` with a hard timeout, capturing its output.
fn run_node(script: &str, url: &str) -> NodeRun {
    let dir = interop_dir();
    let path = dir.join(script);
    assert!(path.is_file(), "missing scenario script {}", path.display());
    let start = Instant::now();
    let mut child = Command::new(node_bin())
        .arg(&path)
        .arg(url)
        .current_dir(&dir)
        // Belt and braces: GUN's node server code would multicast without this (the scripts never load it).
        .env("MULTICAST", "false")
        // Strict mode: fibergun must ack every put (only the GUN JS relay gets the lenient mode).
        .env_remove("INTEROP_RELAY")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run `{}` (is node installed?): {e}", node_bin()));
    let mut so = child.stdout.take().expect("stdout");
    let mut se = child.stderr.take().expect("stderr");
    let t_out = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = so.read_to_string(&mut s);
        s
    });
    let t_err = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = se.read_to_string(&mut s);
        s
    });
    let status = loop {
        if let Some(st) = child.try_wait().expect("wait for node") {
            break st.to_string();
        }
        if start.elapsed() > SCRIPT_TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            break format!("killed after {SCRIPT_TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let success = status == "exit status: 0";
    NodeRun {
        status,
        success,
        stdout: t_out.join().unwrap_or_default(),
        stderr: t_err.join().unwrap_or_default(),
        elapsed: start.elapsed(),
    }
}

/// Start a fresh fibergun, run one scenario against it, and require exit 0 with the server still alive.
fn scenario(script: &str) {
    ensure_node_deps();
    let data = temp_data_dir();
    let mut server = Server::start(data.path(), &[]);
    let url = server.gun_url();
    let run = run_node(script, &url);
    // Shown by the test harness on failure (or with --nocapture).
    println!(
        "--- node {script} {url}: {} in {:?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
        run.status, run.elapsed, run.stdout, run.stderr
    );
    assert!(
        run.success,
        "scenario {script} failed ({}) after {:?}\n--- node stdout ---\n{}\n--- node stderr ---\n{}",
        run.status, run.elapsed, run.stdout, run.stderr
    );
    server.assert_alive(&format!("after scenario {script}"));
}

/// Put a flat object; a second, fresh client reads it back (whole node, single keys, raw GET).
#[test]
fn put_flat_object_read_back_by_fresh_client() {
    scenario("put_flat.js");
}

/// Put a nested object; a fresh client reads `get(x).get('nested').get('deep')` through the links.
#[test]
fn put_nested_object_read_through_links() {
    scenario("put_nested.js");
}

/// `.on()` on one client sees another client's updates, live (whole-node and single-key subscriptions).
#[test]
fn on_sees_other_clients_update() {
    scenario("on_update.js");
}

/// `.set()` several items; a fresh client's `.map().once()` gets all of them.
#[test]
fn set_items_then_map_once_from_fresh_client() {
    scenario("set_map.js");
}

/// `.once()` on a missing soul fires with `undefined` quickly (the relay answers "not found" at once).
#[test]
fn get_missing_soul_answers_at_once() {
    scenario("get_missing.js");
}

/// Concurrent writes to one key converge on the HAM winner on both writers and on the relay, including
/// equal-state ties broken by JSON text order.
#[test]
fn concurrent_writes_converge_on_ham_winner() {
    scenario("ham_conflict.js");
}
