//! A real PostgreSQL server for tests: Debian's `postgresql-15` (installed by `.ci/run`), a
//! private cluster in a temporary folder on a free loopback port, run as the `postgres` system
//! user (PostgreSQL refuses to run as root). It can be stopped, killed, started again, and given
//! a synchronous streaming standby that can be promoted.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::free_port;

/// Where Debian puts the server's programs.
const BIN: &str = "/usr/lib/postgresql/15/bin";

/// The database the tests use.
pub const DATABASE: &str = "gun";

fn bin(name: &str) -> PathBuf {
    let path = Path::new(BIN).join(name);
    assert!(
        path.exists(),
        "{} is missing: install Debian's postgresql-15 (.ci/run does)",
        path.display()
    );
    path
}

/// Runs a server program as the `postgres` user.
fn as_postgres(program: &str, args: &[&str]) -> Output {
    let out = Command::new("runuser")
        .args(["-u", "postgres", "--"])
        .arg(bin(program))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("running {program} as postgres: {e}"));
    out
}

fn check(out: Output, what: &str) -> String {
    assert!(
        out.status.success(),
        "{what} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A running PostgreSQL cluster, stopped (immediately) when dropped.
pub struct PgServer {
    /// Its folder (the cluster, its socket and its log), owned by `postgres`.
    root: tempfile::TempDir,
    /// Its TCP port on 127.0.0.1.
    pub port: u16,
    running: bool,
}

impl PgServer {
    /// A new cluster with the database [`DATABASE`], started.
    pub fn start() -> PgServer {
        let server = PgServer::create();
        let out = as_postgres(
            "initdb",
            &[
                "-D",
                &server.data(),
                "-A",
                "trust",
                "-U",
                "postgres",
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
            ],
        );
        check(out, "initdb");
        let mut server = server;
        server.start_again();
        server.psql_on("postgres", &format!("CREATE DATABASE {DATABASE}"));
        server
    }

    /// A folder `postgres` owns, under one every user may traverse.
    fn create() -> PgServer {
        let root = tempfile::Builder::new()
            .prefix("fibergun-pg")
            .tempdir()
            .expect("a temporary folder");
        let status = Command::new("chown")
            .args(["-R", "postgres"])
            .arg(root.path())
            .status()
            .expect("chown");
        assert!(status.success(), "chown of the cluster's folder");
        let mut perms = std::fs::metadata(root.path()).unwrap().permissions();
        std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o711);
        std::fs::set_permissions(root.path(), perms).unwrap();
        PgServer {
            root,
            port: free_port(),
            running: false,
        }
    }

    fn data(&self) -> String {
        self.root.path().join("data").display().to_string()
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.root.path().join("log")).unwrap_or_default()
    }

    /// A URL for the test database, in the form `--postgres-url` takes.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{DATABASE}", self.port)
    }

    /// Starts the (stopped) server again on its port and folder.
    pub fn start_again(&mut self) {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c max_connections=200",
            self.port,
            self.root.path().display()
        );
        let log = self.root.path().join("log").display().to_string();
        // After a kill -9 the old backends take a moment to notice and exit; until they have,
        // the server refuses to start (their shared memory is still attached).
        let end = Instant::now() + Duration::from_secs(30);
        loop {
            let out = as_postgres(
                "pg_ctl",
                &[
                    "-D",
                    &self.data(),
                    "-w",
                    "-t",
                    "60",
                    "-l",
                    &log,
                    "-o",
                    &options,
                    "start",
                ],
            );
            if out.status.success() {
                break;
            }
            if Instant::now() > end || !self.log().contains("shared memory block is still in use") {
                check(out, &format!("pg_ctl start\n{}", self.log()));
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        self.running = true;
    }

    /// Stops the server cleanly.
    pub fn stop(&mut self) {
        let out = as_postgres("pg_ctl", &["-D", &self.data(), "-w", "-m", "fast", "stop"]);
        check(out, "pg_ctl stop");
        self.running = false;
    }

    /// Kills the postmaster with SIGKILL (a crash; its children end when they notice).
    pub fn kill(&mut self) {
        let pid_file = self.root.path().join("data/postmaster.pid");
        let text = std::fs::read_to_string(&pid_file).expect("postmaster.pid");
        let pid = text.lines().next().expect("a pid").trim().to_owned();
        let status = Command::new("kill").args(["-9", &pid]).status().unwrap();
        assert!(status.success(), "kill -9 {pid}");
        // The backends see the postmaster gone and exit; wait until the port is closed.
        let end = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
            assert!(
                Instant::now() < end,
                "PostgreSQL still answers after kill -9"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        self.running = false;
    }

    /// Runs `sql` in the test database with psql and returns what it printed (unaligned,
    /// tuples only).
    pub fn psql(&self, sql: &str) -> String {
        self.psql_on(DATABASE, sql)
    }

    fn psql_on(&self, database: &str, sql: &str) -> String {
        let out = Command::new("psql")
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-U",
                "postgres",
                "-d",
                database,
                "-v",
                "ON_ERROR_STOP=1",
                "-X",
                "-A",
                "-t",
                "-c",
                sql,
            ])
            .stdin(Stdio::null())
            .output()
            .expect("psql");
        check(out, &format!("psql {sql}"))
    }

    /// A streaming standby of this server on a port of its own, made synchronous: from now on
    /// a commit here waits until the standby has flushed it.
    pub fn synchronous_standby(&self) -> PgServer {
        let mut standby = PgServer::create();
        let out = as_postgres(
            "pg_basebackup",
            &[
                "-D",
                &standby.data(),
                "-R",
                "-X",
                "stream",
                // An immediate checkpoint, not one spread over minutes.
                "-c",
                "fast",
                "-h",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-U",
                "postgres",
                "-d",
                &format!("application_name=standby port={}", self.port),
            ],
        );
        check(out, "pg_basebackup");
        standby.start_again();
        self.psql("ALTER SYSTEM SET synchronous_standby_names = 'standby'");
        self.psql("ALTER SYSTEM SET synchronous_commit = 'on'");
        self.psql("SELECT pg_reload_conf()");
        let end = Instant::now() + Duration::from_secs(60);
        loop {
            let state = self.psql(
                "SELECT sync_state FROM pg_stat_replication WHERE application_name = 'standby'",
            );
            if state.trim() == "sync" {
                break;
            }
            assert!(
                Instant::now() < end,
                "the standby never became synchronous: {state:?}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        standby
    }

    /// Promotes a standby to primary, and waits until it takes writes.
    pub fn promote(&self) {
        let out = as_postgres("pg_ctl", &["-D", &self.data(), "-w", "promote"]);
        check(out, "pg_ctl promote");
        let end = Instant::now() + Duration::from_secs(60);
        while self.psql("SELECT pg_is_in_recovery()").trim() != "f" {
            assert!(Instant::now() < end, "the standby never left recovery");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        if self.running {
            let _ = as_postgres("pg_ctl", &["-D", &self.data(), "-m", "immediate", "stop"]);
        }
    }
}
