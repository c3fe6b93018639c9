//! What fibergun's tests share, with one owner:
//!
//! - [`process`]: server binaries run as child processes on loopback ([`Server`]), and their
//!   tools;
//! - [`wire`]: a raw GUN-wire client ([`Peer`]) with message builders and predicates;
//! - [`gunjs`]: GUN JS, the peer no one here wrote: its node scenario scripts, its stock relay,
//!   and `npm ci` of the pinned packages;
//! - [`key_flood`]: one key flooding a relay while another writes at an honest pace;
//! - [`schemathesis`]: Schemathesis, to fuzz the REST API against its OpenAPI document;
//! - [`seaweedfs`] (feature `seaweedfs`): a real S3 server;
//! - [`postgres`]: a real PostgreSQL server, with a synchronous standby when asked.
//!
//! Every server and connection binds 127.0.0.1 only. Everything a test needs is installed by
//! the test itself (npm, a Python virtual environment) or by `.ci/run` (Debian packages); a
//! missing tool fails the test.

pub mod gunjs;
pub mod key_flood;
pub mod postgres;
pub mod process;
pub mod schemathesis;
#[cfg(feature = "seaweedfs")]
pub mod seaweedfs;
pub mod wire;

use std::net::TcpListener;
use std::path::{Path, PathBuf};

pub use process::{fibergun_tool, peak_rss_mib, serve_must_fail, Server};
pub use wire::*;

/// The workspace root (this crate is `<root>/testkit`).
pub fn repo_root() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    root.canonicalize().unwrap_or(root)
}

/// A port that was free on 127.0.0.1 a moment ago (bind to port 0, read it, drop the listener).
pub fn free_port() -> u16 {
    free_ports(1)[0]
}

/// `n` different ports that were free on 127.0.0.1 a moment ago: all are held while the others
/// are chosen (two calls of [`free_port`] may well answer the same port).
pub fn free_ports(n: usize) -> Vec<u16> {
    let held: Vec<TcpListener> = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0"))
        .collect();
    held.iter()
        .map(|l| l.local_addr().expect("local_addr").port())
        .collect()
}

/// A fresh temporary directory for a server's data.
pub fn temp_data_dir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("fibergun-test-data")
        .tempdir()
        .expect("temp data dir")
}
