//! Server processes on loopback: [`Server`] starts a server binary (`fibergun` or
//! `fibergun-threads`, whichever the caller names) with `serve --listen 127.0.0.1:PORT --data
//! DIR` on a free port, waits until it accepts TCP connections, and kills it when dropped. Its
//! stdout and stderr go to a log file, printed when a test panics while the server is alive.
//! [`fibergun_tool`] and [`serve_must_fail`] run the binary's other commands.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::net::{SocketAddr, TcpStream};

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long [`Server::start`] waits for the server to accept TCP connections.
pub const START_TIMEOUT: Duration = Duration::from_secs(10);

/// A running `fibergun serve` child process. Killed (SIGKILL) on drop.
pub struct Server {
    /// The binary it runs.
    binary: &'static str,
    child: Option<Child>,
    pub port: u16,
    pub data_dir: PathBuf,
    extra: Vec<String>,
    log_path: PathBuf,
    _log_dir: tempfile::TempDir,
    /// The logs of runs before a [`Server::restart`].
    earlier_logs: Vec<String>,
}

impl Server {
    /// Start `fibergun serve --listen 127.0.0.1:0 --data DATA_DIR EXTRA…`, read the port the
    /// server bound from its log ("listening on ws://127.0.0.1:PORT/gun", so no other process can
    /// take the port between choosing and binding it), and wait (at most [`START_TIMEOUT`]) until
    /// it accepts a TCP connection there. Panics with the log if it does not start.
    pub fn start(binary: &'static str, data_dir: &Path, extra: &[&str]) -> Server {
        Self::start_on(binary, data_dir, extra, None)
    }

    /// Like [`Server::start`], on `port` if given.
    pub fn start_on(
        binary: &'static str,
        data_dir: &Path,
        extra: &[&str],
        fixed_port: Option<u16>,
    ) -> Server {
        let log_dir = tempfile::Builder::new()
            .prefix("fibergun-test-log")
            .tempdir()
            .expect("temp dir for the server log");
        let log_path = log_dir.path().join("server.log");
        let log = File::create(&log_path).expect("create server log");
        let log2 = log.try_clone().expect("clone log file");
        // The line that says where it listens is logged at `info`, whatever else is asked for.
        let filter = match std::env::var("RUST_LOG") {
            Ok(asked) => format!("{asked},fibergun_server=info"),
            Err(_) => "info".to_owned(),
        };
        let child = Command::new(binary)
            .arg("serve")
            .arg("--listen")
            .arg(format!("127.0.0.1:{}", fixed_port.unwrap_or(0)))
            .arg("--data")
            .arg(data_dir)
            .args(extra)
            .env("RUST_LOG", filter)
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(log2))
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {binary}: {e}"));
        let mut child = Some(child);
        match wait_ready(&mut child, &log_path, START_TIMEOUT) {
            Ok(port) => Server {
                binary,
                child,
                port,
                data_dir: data_dir.to_path_buf(),
                extra: extra.iter().map(|s| (*s).to_owned()).collect(),
                log_path,
                _log_dir: log_dir,
                earlier_logs: Vec::new(),
            },
            Err(why) => {
                if let Some(mut c) = child.take() {
                    let _ = c.kill();
                    let _ = c.wait();
                }
                panic!(
                    "fibergun did not start: `{binary} serve --listen 127.0.0.1:{} --data {} {}`\n{why}\n--- server log ---\n{}",
                    fixed_port.unwrap_or(0),
                    data_dir.display(),
                    extra.join(" "),
                    read_tail(&log_path, 16 * 1024)
                );
            }
        }
    }

    /// Kills the process (if running) and starts it again on the same port and data directory
    /// with the same flags. [`Server::log`] then shows every run's log.
    pub fn restart(&mut self) {
        self.kill_hard();
        let extra: Vec<&str> = self.extra.iter().map(String::as_str).collect();
        let mut next = Server::start_on(self.binary, &self.data_dir, &extra, Some(self.port));
        self.child = next.child.take();
        self.earlier_logs.push(self.log());
        std::mem::swap(&mut self.log_path, &mut next.log_path);
        std::mem::swap(&mut self._log_dir, &mut next._log_dir);
    }

    /// `ws://127.0.0.1:PORT/gun`, for raw WebSocket clients.
    pub fn ws_url(&self) -> String {
        format!("ws://127.0.0.1:{}/gun", self.port)
    }

    /// `http://127.0.0.1:PORT/gun`, the form GUN clients are given as a peer.
    pub fn gun_url(&self) -> String {
        format!("http://127.0.0.1:{}/gun", self.port)
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// Whether the process is still running.
    pub fn is_alive(&mut self) -> bool {
        match self.child.as_mut() {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// Panic (with the log) unless the process is still running.
    pub fn assert_alive(&mut self, context: &str) {
        if !self.is_alive() {
            let status = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
                .map(|s| s.to_string())
                .unwrap_or_else(|| "killed by the test".into());
            panic!(
                "fibergun is not running any more ({status}) {context}\n--- server log ---\n{}",
                self.log()
            );
        }
    }

    /// Wait for the process to exit by itself (after a signal), at most `timeout`; panics with the
    /// log if it does not.
    pub fn wait_exit(&mut self, timeout: Duration) -> std::process::ExitStatus {
        let end = Instant::now() + timeout;
        let child = self.child.as_mut().expect("the server was started");
        loop {
            if let Some(status) = child.try_wait().expect("try_wait") {
                self.child = None;
                return status;
            }
            if Instant::now() > end {
                panic!("fibergun did not exit within {timeout:?}\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILL the process (`kill -9`) and reap it.
    pub fn kill_hard(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// The server's stdout+stderr so far (the last 16 KiB of each run).
    pub fn log(&self) -> String {
        let mut log = String::new();
        for (run, earlier) in self.earlier_logs.iter().enumerate() {
            log.push_str(&format!("--- run {} ---\n{earlier}\n", run + 1));
        }
        if !self.earlier_logs.is_empty() {
            log.push_str(&format!("--- run {} ---\n", self.earlier_logs.len() + 1));
        }
        log.push_str(&read_tail(&self.log_path, 16 * 1024));
        log
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let was_running = self.child.is_some();
        self.kill_hard();
        if was_running && std::thread::panicking() {
            eprintln!(
                "--- fibergun log (port {}, data {}) ---\n{}\n--- end of fibergun log ---",
                self.port,
                self.data_dir.display(),
                self.log()
            );
        }
    }
}

/// Waits until the server's log says where it listens and that port accepts a TCP connection;
/// the port. An error when the child exits first or `timeout` passes.
fn wait_ready(child: &mut Option<Child>, log: &Path, timeout: Duration) -> Result<u16, String> {
    const SAYS: &str = "listening on ws://127.0.0.1:";
    let end = Instant::now() + timeout;
    let mut port = None;
    loop {
        if let Some(status) = child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
            return Err(format!("fibergun exited during start-up: {status}"));
        }
        if port.is_none() {
            let text = std::fs::read_to_string(log).unwrap_or_default();
            port = text.find(SAYS).and_then(|at| {
                let rest = &text[at + SAYS.len()..];
                let digits = rest.split(|c: char| !c.is_ascii_digit()).next()?;
                digits.parse::<u16>().ok()
            });
        }
        if let Some(port) = port {
            let addr: SocketAddr = ([127, 0, 0, 1], port).into();
            if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                return Ok(port);
            }
        }
        if Instant::now() > end {
            return Err(match port {
                None => format!("fibergun did not say where it listens within {timeout:?}"),
                Some(port) => format!(
                    "fibergun did not accept connections on 127.0.0.1:{port} within {timeout:?}"
                ),
            });
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn read_tail(path: &Path, max: u64) -> String {
    let Ok(mut f) = File::open(path) else {
        return String::from("(no log)");
    };
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    if len > max {
        let _ = f.seek(SeekFrom::Start(len - max));
    }
    let mut buf = Vec::new();
    let _ = f.read_to_end(&mut buf);
    let s = String::from_utf8_lossy(&buf).into_owned();
    if len > max {
        format!("[… {} earlier bytes cut …]\n{s}", len - max)
    } else {
        s
    }
}

/// Runs a `fibergun` tool (`backup`, `export`, …): whether it succeeded, and what it said on
/// standard error.
pub fn fibergun_tool(binary: &str, args: &[&str]) -> (bool, String) {
    let out = Command::new(binary)
        .args(args)
        .output()
        .expect("run fibergun");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Runs `fibergun serve --listen 127.0.0.1:0 --data DATA EXTRA…`, which must fail at start.
/// Returns what it printed on standard error.
pub fn serve_must_fail(binary: &str, data: &Path, extra: &[&str]) -> String {
    let out = Command::new(binary)
        .args(["serve", "--listen", "127.0.0.1:0"])
        .args(extra)
        .arg("--data")
        .arg(data)
        .output()
        .expect("run the server");
    assert!(!out.status.success(), "it started on {}", data.display());
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The most resident memory process `pid` has used, in MiB (Linux's VmHWM).
pub fn peak_rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
        .map_or(0.0, |kib| kib / 1024.0)
}
