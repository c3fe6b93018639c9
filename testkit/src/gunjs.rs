//! GUN JS in tests: the node scripts in `testkit/gunjs/` (clients, scenarios, the stock relay)
//! and the packages they run (npm `gun@0.2020.1241` and `playwright-core`, pinned by
//! `testkit/gunjs/package-lock.json`; GUN JS for the example pages, pinned by
//! `examples/package-lock.json`), installed with `npm ci` when missing or not the locked
//! version.

use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The folder of the node scripts and their `node_modules` (`testkit/gunjs`).
pub fn gunjs_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("gunjs")
}

/// Install the node dependencies of the GUN JS scripts once (`npm ci` from the committed
/// package-lock.json) if they are missing or not the locked versions. `OnceLock::get_or_init`
/// makes parallel tests wait for the one install instead of racing it.
pub fn ensure_node_deps() {
    static READY: OnceLock<Result<(), String>> = OnceLock::new();
    let r = READY.get_or_init(|| npm_ci_if_needed(&gunjs_dir(), &["gun", "playwright-core"]));
    if let Err(e) = r {
        panic!("node dependencies for the GUN JS tests are not available: {e}");
    }
}

/// The folder of the example pages (served with `--static`).
pub fn examples_dir() -> PathBuf {
    crate::repo_root().join("examples")
}

/// Install GUN JS for the example pages once (`npm ci` in examples/), as [`ensure_node_deps`].
pub fn ensure_example_deps() {
    static READY: OnceLock<Result<(), String>> = OnceLock::new();
    let r = READY.get_or_init(|| npm_ci_if_needed(&examples_dir(), &["gun"]));
    if let Err(e) = r {
        panic!("node dependencies of the examples are not available: {e}");
    }
}

/// Runs `npm ci` in `dir` unless every one of `packages` is installed at its locked version.
fn npm_ci_if_needed(dir: &std::path::Path, packages: &[&str]) -> Result<(), String> {
    let versions = || -> Vec<(Option<String>, Option<String>)> {
        packages
            .iter()
            .map(|p| {
                let locked = package_version(
                    &dir.join("package-lock.json"),
                    &["packages", &format!("node_modules/{p}")],
                );
                let installed =
                    package_version(&dir.join(format!("node_modules/{p}/package.json")), &[]);
                (locked, installed)
            })
            .collect()
    };
    let current = |v: &[(Option<String>, Option<String>)]| {
        v.iter()
            .all(|(locked, installed)| locked.is_some() && locked == installed)
    };
    if current(&versions()) {
        return Ok(());
    }
    eprintln!("installing node deps with `npm ci` in {}", dir.display());
    let out = Command::new("npm")
        .args(["ci", "--no-audit", "--no-fund"])
        .current_dir(dir)
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
    let after = versions();
    if !current(&after) {
        return Err(format!(
            "after `npm ci` in {}, (locked, installed) versions of {packages:?} are {after:?}",
            dir.display()
        ));
    }
    Ok(())
}

/// The `version` field of the JSON object found at `path` inside the JSON file `file`.
fn package_version(file: &std::path::Path, path: &[&str]) -> Option<String> {
    let text = std::fs::read_to_string(file).ok()?;
    let mut v: serde_json::Value = serde_json::from_str(&text).ok()?;
    for p in path {
        v = v.get(*p)?.clone();
    }
    v.get("version")?.as_str().map(str::to_owned)
}

/// Hard limit for one node script (each script also stops itself after 20 s).
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(60);

fn node_bin() -> String {
    std::env::var("NODE").unwrap_or_else(|_| "node".into())
}

/// How a node script ended, and what it printed.
pub struct NodeRun {
    pub status: String,
    pub success: bool,
    pub stdout: String,
    pub stderr: String,
    pub elapsed: Duration,
}

/// Run `node testkit/gunjs/<script> <args…>` with a hard timeout, capturing its output.
pub fn run_node(script: &str, args: &[&str]) -> NodeRun {
    let dir = gunjs_dir();
    let path = dir.join(script);
    assert!(path.is_file(), "missing scenario script {}", path.display());
    let start = Instant::now();
    let mut child = Command::new(node_bin())
        .arg(&path)
        .args(args)
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

/// Prints what a node script said (shown by the test harness on failure, or with
/// `--nocapture`) and fails the test unless the script passed.
pub fn expect_success(run: &NodeRun, what: &str) {
    println!(
        "--- {what}: {} in {:?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
        run.status, run.elapsed, run.stdout, run.stderr
    );
    assert!(
        run.success,
        "{what} failed ({}) after {:?}\n--- node stdout ---\n{}\n--- node stderr ---\n{}",
        run.status, run.elapsed, run.stdout, run.stderr
    );
}

/// The stock GUN JS relay (`testkit/gunjs/gunjs-relay.js`: radisk on, multicast off, loopback
/// only) as a child process, killed when dropped.
pub struct GunJsRelay {
    child: Child,
    pub port: u16,
    tls: Option<(std::path::PathBuf, std::path::PathBuf)>,
    peers: Vec<String>,
    axe: bool,
    _data: tempfile::TempDir,
}

impl GunJsRelay {
    /// Starts a GUN JS relay on a free port. `peers` are relays it dials (GUN's `peers` option);
    /// `axe: false` runs it with `AXE=false`, GUN's flood mode.
    pub fn start(peers: &[String], axe: bool) -> GunJsRelay {
        Self::start_with(peers, axe, None)
    }

    /// A relay served over https (wss://) with the PEM certificate and key given.
    pub fn start_tls(cert: &std::path::Path, key: &std::path::Path) -> GunJsRelay {
        Self::start_with(&[], true, Some((cert, key)))
    }

    fn start_with(
        peers: &[String],
        axe: bool,
        tls: Option<(&std::path::Path, &std::path::Path)>,
    ) -> GunJsRelay {
        let data = tempfile::Builder::new()
            .prefix("gunjs-relay-data")
            .tempdir()
            .expect("temp dir");
        let tls = tls.map(|(c, k)| (c.to_path_buf(), k.to_path_buf()));
        let (child, port) = Self::spawn(0, data.path(), peers, axe, tls.as_ref());
        GunJsRelay {
            child,
            port,
            tls,
            peers: peers.to_vec(),
            axe,
            _data: data,
        }
    }

    /// Kills the relay (SIGKILL) and starts it again on the same port and data.
    pub fn restart(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let (child, _) = Self::spawn(
            self.port,
            self._data.path(),
            &self.peers,
            self.axe,
            self.tls.as_ref(),
        );
        self.child = child;
    }

    /// Kills the relay (SIGKILL): it is away until [`GunJsRelay::restart`].
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    fn spawn(
        port: u16,
        data: &std::path::Path,
        peers: &[String],
        axe: bool,
        tls: Option<&(std::path::PathBuf, std::path::PathBuf)>,
    ) -> (Child, u16) {
        ensure_node_deps();
        let mut cmd = Command::new(node_bin());
        cmd.arg(gunjs_dir().join("gunjs-relay.js"))
            .arg(port.to_string())
            .arg(data)
            .current_dir(gunjs_dir())
            .env("MULTICAST", "false")
            .env("PEERS", peers.join(","))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        if !axe {
            cmd.env("AXE", "false");
        }
        if let Some((cert, key)) = tls {
            cmd.env("TLS_CERT", cert).env("TLS_KEY", key);
        }
        let mut child = cmd.spawn().expect("start node gunjs-relay.js");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(port) = line
                    .strip_prefix("RELAY_READY port=")
                    .and_then(|rest| rest.split(' ').next())
                    .and_then(|p| p.parse::<u16>().ok())
                {
                    let _ = tx.send(port);
                }
            }
        });
        let port = match rx.recv_timeout(Duration::from_secs(20)) {
            Ok(port) => port,
            Err(_) => {
                let _ = child.kill();
                panic!("the GUN JS relay did not start within 20 s");
            }
        };
        (child, port)
    }

    /// Stops the relay (SIGTERM, then waits) and hands over its data folder (its `radata`).
    pub fn stop_keeping_data(mut self) -> tempfile::TempDir {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let end = Instant::now() + Duration::from_secs(5);
        while Instant::now() < end {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let placeholder = tempfile::tempdir().expect("temp dir");
        std::mem::replace(&mut self._data, placeholder)
    }

    /// `http://127.0.0.1:PORT/gun` (`https://` with TLS), the form GUN peers are written in.
    pub fn gun_url(&self) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://127.0.0.1:{}/gun", self.port)
    }
}

impl Drop for GunJsRelay {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
