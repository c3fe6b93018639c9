//! The PostgreSQL store's figures, against a real PostgreSQL server on loopback: one relay on
//! PostgreSQL beside the same relay on LMDB in one run (durable puts, their ack latency, hot
//! GETs), then three relays on one database (their puts together, and the delay from a write
//! through one relay to its push to a subscriber of another).

use std::time::Duration;

use crate::load::{self, Op, Outcome, Shape};
use crate::s3::{Launcher, Relay};
use crate::scenarios::{self, Fanout};
use fibergun_testkit::postgres::PgServer;

/// What the run measured.
#[derive(Debug)]
pub struct PgFigures {
    /// Puts per relay row.
    pub nodes: usize,
    /// Puts on one relay on LMDB.
    pub lmdb_puts: Outcome,
    /// Hot GETs on it (the souls read before).
    pub lmdb_gets: Outcome,
    /// The same puts on one relay on PostgreSQL.
    pub pg_puts: Outcome,
    /// The same GETs on it.
    pub pg_gets: Outcome,
    /// Puts through three relays on one database at once, each relay's share.
    pub three_puts: Vec<Outcome>,
    /// Writes through one relay pushed to subscribers of another.
    pub cross_push: Fanout,
}

/// Souls the GET rows read.
const GET_SOULS: u64 = 2_000;
const GETS: usize = 20_000;

fn shape(total: usize) -> Shape {
    Shape {
        conns: 10,
        inflight: 10,
        total,
        timeout: Duration::from_secs(60),
    }
}

fn all_done(what: &str, outcome: &Outcome, total: usize) -> Result<(), String> {
    if outcome.completed < total || outcome.errors > 0 {
        return Err(format!("{what}: {outcome:?} of {total}"));
    }
    Ok(())
}

/// Puts `nodes` nodes, then GETs hot souls, on a relay started with `flags`.
fn one_relay(
    launch: &mut Launcher,
    flags: &[String],
    nodes: usize,
    name: &str,
) -> Result<(Outcome, Outcome), String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let relay = launch(dir.path(), flags)?;
    let puts = load::run(&relay.url, Op::Put, shape(nodes), &format!("{name}put"))?;
    all_done(&format!("puts on {name}"), &puts, nodes)?;
    load::prefill(&relay.url, GET_SOULS)?;
    // Hot: the souls read first (picked at random, ten times as many reads as souls, so all
    // but a handful were read), so the measured GETs find them in the relay's cache.
    let warm = shape(10 * GET_SOULS as usize);
    load::run(
        &relay.url,
        Op::Get { souls: GET_SOULS },
        warm,
        &format!("{name}warm"),
    )?;
    let gets = load::run(
        &relay.url,
        Op::Get { souls: GET_SOULS },
        shape(GETS),
        &format!("{name}get"),
    )?;
    all_done(&format!("gets on {name}"), &gets, GETS)?;
    (relay.stop)();
    Ok((puts, gets))
}

/// Runs the whole benchmark with relays from `launch` on the database of `pg`.
pub fn run(launch: &mut Launcher, pg: &PgServer, nodes: usize) -> Result<PgFigures, String> {
    let pg_flags: Vec<String> = ["--store", "postgres", "--postgres-url", &pg.url()]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
    let (lmdb_puts, lmdb_gets) = one_relay(launch, &[], nodes, "lmdb")?;
    let (pg_puts, pg_gets) = one_relay(launch, &pg_flags, nodes, "pg")?;

    let dirs: Vec<_> = (0..3)
        .map(|_| tempfile::tempdir().map_err(|e| e.to_string()))
        .collect::<Result<_, _>>()?;
    let relays: Vec<Relay> = dirs
        .iter()
        .map(|d| launch(d.path(), &pg_flags))
        .collect::<Result<_, _>>()?;
    let share = nodes / 3;
    let three_puts: Vec<Outcome> = std::thread::scope(|scope| {
        let runs: Vec<_> = relays
            .iter()
            .enumerate()
            .map(|(i, r)| {
                let url = r.url.clone();
                scope.spawn(move || load::run(&url, Op::Put, shape(share), &format!("three{i}")))
            })
            .collect();
        runs.into_iter()
            .map(|h| h.join().map_err(|_| "a load thread panicked".to_string())?)
            .collect::<Result<Vec<_>, String>>()
    })?;
    for (i, outcome) in three_puts.iter().enumerate() {
        all_done(&format!("puts through relay {i} of three"), outcome, share)?;
    }
    let cross_push = scenarios::fanout(
        &relays[1].url,
        &relays[0].url,
        10,
        200,
        5,
        &format!("pgx{}", std::process::id()),
    )?;
    for relay in relays {
        (relay.stop)();
    }
    Ok(PgFigures {
        nodes,
        lmdb_puts,
        lmdb_gets,
        pg_puts,
        pg_gets,
        three_puts,
        cross_push,
    })
}

/// Prints the figures as a table.
pub fn print(f: &PgFigures) {
    println!(
        "PostgreSQL store (PostgreSQL 15 on loopback), {} puts per row, 10 connections x 10 in flight",
        f.nodes
    );
    println!("| row | LMDB | PostgreSQL | PostgreSQL / LMDB |");
    println!("|---|---|---|---|");
    println!(
        "| durable puts/s | {:.0} | {:.0} | {:.2} |",
        f.lmdb_puts.ops_per_s,
        f.pg_puts.ops_per_s,
        f.pg_puts.ops_per_s / f.lmdb_puts.ops_per_s.max(1.0)
    );
    println!(
        "| put ack p50 / p99 ms | {:.2} / {:.2} | {:.2} / {:.2} | |",
        f.lmdb_puts.p50_ms, f.lmdb_puts.p99_ms, f.pg_puts.p50_ms, f.pg_puts.p99_ms
    );
    println!(
        "| hot gets/s | {:.0} | {:.0} | {:.2} |",
        f.lmdb_gets.ops_per_s,
        f.pg_gets.ops_per_s,
        f.pg_gets.ops_per_s / f.lmdb_gets.ops_per_s.max(1.0)
    );
    let together: f64 = f.three_puts.iter().map(|o| o.ops_per_s).sum();
    let p99 = f.three_puts.iter().map(|o| o.p99_ms).fold(0.0, f64::max);
    println!(
        "three relays on one database: {together:.0} puts/s together ({:.2}x one relay), worst ack p99 {p99:.2} ms",
        together / f.pg_puts.ops_per_s.max(1.0)
    );
    let c = &f.cross_push;
    println!(
        "a write through relay A pushed to 10 subscribers on relay B (200 writes/s): {} / {} delivered, p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        c.delivered, c.expected, c.p50_ms, c.p99_ms, c.max_ms
    );
}

/// Starts the test database for `fibergun-bench postgres`.
pub fn start_database() -> PgServer {
    PgServer::start()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_postgres_benchmark_runs_a_small_load() {
        let pg = PgServer::start();
        let mut launch = crate::in_process::launch;
        let figures = run(&mut launch, &pg, 1_500).unwrap();
        assert_eq!(figures.pg_puts.completed, 1_500);
        assert_eq!(figures.cross_push.delivered, figures.cross_push.expected);
        print(&figures);
    }
}
