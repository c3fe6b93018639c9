//! The S3 store's figures, against a real S3 server (SeaweedFS on loopback): durable puts per
//! second beside the LMDB store in the same run, GET latency (answered from the replica), and
//! the time a relay takes to start on an empty folder holding `nodes` nodes, from the bucket's
//! log of batches alone and from a snapshot.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::load::{self, Op, Outcome, Shape};
use fibergun_testkit::seaweedfs::{self, SeaweedFs};

/// A relay the benchmark started: its URL, and how to stop it (a kill, or an orderly stop for an
/// in-process relay).
pub struct Relay {
    /// `ws://127.0.0.1:PORT/gun`.
    pub url: String,
    /// Stops it.
    pub stop: Box<dyn FnOnce()>,
}

/// Starts a relay on a data folder with extra `serve` flags; returns once it listens.
pub type Launcher<'a> = dyn FnMut(&Path, &[String]) -> Result<Relay, String> + 'a;

/// What the run measured.
#[derive(Debug)]
pub struct S3Figures {
    /// Nodes written (one acked put each).
    pub nodes: usize,
    /// Those puts on the LMDB store.
    pub lmdb_puts: Outcome,
    /// The same puts on the S3 store.
    pub s3_puts: Outcome,
    /// GETs of the S3 relay, warm.
    pub s3_gets: Outcome,
    /// Starting on an empty folder with only batches in the bucket, until listening.
    pub restart_from_log: Duration,
    /// The same with a snapshot in the bucket.
    pub restart_from_snapshot: Duration,
    /// GETs right after that restart (all prefilled nodes there: `missing` is 0).
    pub gets_after_restart: Outcome,
}

/// Souls for the GET rows.
const GET_SOULS: u64 = 2_000;

fn puts(nodes: usize) -> Shape {
    Shape {
        conns: 10,
        inflight: 10,
        total: nodes,
        timeout: Duration::from_secs(60),
    }
}

fn gets(total: usize) -> Shape {
    Shape {
        conns: 10,
        inflight: 10,
        total,
        timeout: Duration::from_secs(30),
    }
}

fn s3_flags(s3: &SeaweedFs, bucket: &str, prefix: &str, extra: &[&str]) -> Vec<String> {
    let mut flags: Vec<String> = vec![
        "--store".into(),
        "s3".into(),
        "--s3-endpoint".into(),
        s3.endpoint.clone(),
        "--s3-bucket".into(),
        bucket.into(),
        "--s3-prefix".into(),
        prefix.into(),
    ];
    flags.extend(extra.iter().map(|s| (*s).to_owned()));
    flags
}

fn all_acked(what: &str, outcome: &Outcome, total: usize) -> Result<(), String> {
    if outcome.completed < total || outcome.errors > 0 {
        return Err(format!("{what}: {outcome:?} of {total}"));
    }
    Ok(())
}

/// Fills a relay on S3 with `nodes` nodes (and the GET souls), kills it and times a start on
/// an empty folder. Returns the puts' outcome and the restart time.
fn fill_and_restart(
    launch: &mut Launcher,
    flags: &[String],
    nodes: usize,
    settle: impl Fn() -> Result<(), String>,
) -> Result<(Outcome, Duration, Relay, tempfile::TempDir), String> {
    let first = tempfile::tempdir().map_err(|e| e.to_string())?;
    let relay = launch(first.path(), flags)?;
    load::prefill(&relay.url, GET_SOULS)?;
    let written = load::run(&relay.url, Op::Put, puts(nodes), "s3fill")?;
    all_acked("puts on S3", &written, nodes)?;
    settle()?;
    (relay.stop)();
    let empty = tempfile::tempdir().map_err(|e| e.to_string())?;
    let started = Instant::now();
    let relay = launch(empty.path(), flags)?;
    Ok((written, started.elapsed(), relay, empty))
}

/// Runs the whole benchmark with relays from `launch` and the S3 server `s3`.
pub fn run(launch: &mut Launcher, s3: &SeaweedFs, nodes: usize) -> Result<S3Figures, String> {
    std::env::set_var("AWS_ACCESS_KEY_ID", seaweedfs::ACCESS_KEY);
    std::env::set_var("AWS_SECRET_ACCESS_KEY", seaweedfs::SECRET_KEY);
    let objects = s3.bucket("bench", "");

    let lmdb_dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let lmdb = launch(lmdb_dir.path(), &[])?;
    let lmdb_puts = load::run(&lmdb.url, Op::Put, puts(nodes), "lmdb")?;
    all_acked("puts on LMDB", &lmdb_puts, nodes)?;
    (lmdb.stop)();

    // The log alone: snapshots only after far more than this run writes.
    let log_flags = s3_flags(s3, "bench", "log", &["--s3-snapshot-after", "100G"]);
    let (s3_puts, restart_from_log, relay, _folder) =
        fill_and_restart(launch, &log_flags, nodes, || Ok(()))?;
    let s3_gets = load::run(
        &relay.url,
        Op::Get { souls: GET_SOULS },
        gets(20_000),
        "s3get",
    )?;
    all_acked("gets on S3", &s3_gets, 20_000)?;
    (relay.stop)();

    // With snapshots: small ones (a quarter of what the run writes), so that one holds most of
    // the graph at the restart.
    let snapshot_after = (nodes as u64 * 40).max(16 << 10).to_string();
    let snap_flags = s3_flags(
        s3,
        "bench",
        "snap",
        &["--s3-snapshot-after", &snapshot_after],
    );
    let settle = || {
        // The last snapshot asked for finishes before the kill, so the restart reads it.
        let deadline = Instant::now() + Duration::from_secs(120);
        let mut last = None;
        loop {
            let manifests = objects
                .list("snap/snapshots/", None)
                .map_err(|e| e.to_string())?
                .into_iter()
                .filter(|(k, _)| k.ends_with("manifest.json"))
                .count();
            if manifests > 0 && last == Some(manifests) {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err("no snapshot was written".into());
            }
            last = Some(manifests);
            std::thread::sleep(Duration::from_millis(1500));
        }
    };
    let (_, restart_from_snapshot, relay, _folder) =
        fill_and_restart(launch, &snap_flags, nodes, settle)?;
    let gets_after_restart = load::run(
        &relay.url,
        Op::Get { souls: GET_SOULS },
        gets(GET_SOULS as usize),
        "s3cold",
    )?;
    all_acked(
        "gets after the restart",
        &gets_after_restart,
        GET_SOULS as usize,
    )?;
    (relay.stop)();

    Ok(S3Figures {
        nodes,
        lmdb_puts,
        s3_puts,
        s3_gets,
        restart_from_log,
        restart_from_snapshot,
        gets_after_restart,
    })
}

/// Prints the figures as a table.
pub fn print(f: &S3Figures) {
    println!(
        "S3 store (SeaweedFS on loopback), {} nodes, 10 connections x 10 in flight",
        f.nodes
    );
    println!(
        "durable puts/s   LMDB {:>8.0}   S3 {:>8.0}   S3/LMDB {:.2}",
        f.lmdb_puts.ops_per_s,
        f.s3_puts.ops_per_s,
        f.s3_puts.ops_per_s / f.lmdb_puts.ops_per_s.max(1.0)
    );
    println!(
        "put latency ms   LMDB p50 {:.2} p99 {:.2}   S3 p50 {:.2} p99 {:.2}",
        f.lmdb_puts.p50_ms, f.lmdb_puts.p99_ms, f.s3_puts.p50_ms, f.s3_puts.p99_ms
    );
    println!(
        "get (S3 relay)   {:.0}/s, p50 {:.2} ms, p99 {:.2} ms; right after a restart p50 {:.2} ms, p99 {:.2} ms",
        f.s3_gets.ops_per_s,
        f.s3_gets.p50_ms,
        f.s3_gets.p99_ms,
        f.gets_after_restart.p50_ms,
        f.gets_after_restart.p99_ms
    );
    println!(
        "restart on an empty folder: {:.2} s from the log of batches, {:.2} s from a snapshot",
        f.restart_from_log.as_secs_f64(),
        f.restart_from_snapshot.as_secs_f64()
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_s3_benchmark_runs_a_small_graph_through_restarts() {
        let s3 = SeaweedFs::start();
        let mut launch = crate::in_process::launch;
        let figures = run(&mut launch, &s3, 3_000).unwrap();
        assert_eq!(figures.s3_puts.completed, 3_000);
        assert_eq!(figures.gets_after_restart.missing, 0);
        assert!(figures.restart_from_snapshot > Duration::ZERO);
        print(&figures);
    }
}
