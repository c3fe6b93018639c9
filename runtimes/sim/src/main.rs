//! `fibergun-sim`: replay a seed, sweep seeds, or measure simulation speed.
//!
//! ```text
//! fibergun-sim --seed 42            one seed, with its report
//! fibergun-sim --runs 10000 [--first 0]   a sweep; stops at the first failure
//! fibergun-sim --bench              simulated messages per second on one core
//! ```

use std::process::ExitCode;
use std::time::Instant;

use fibergun_sim::{run, SimConfig};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let value = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .map(|v| {
                v.parse::<u64>()
                    .unwrap_or_else(|_| panic!("{name} takes a number"))
            })
    };
    if args.iter().any(|a| a == "--bench") {
        return bench();
    }
    if let Some(seed) = value("--seed") {
        return match run(SimConfig::from_seed(seed)) {
            Ok(report) => {
                println!("{:?}\n{report:#?}", SimConfig::from_seed(seed));
                ExitCode::SUCCESS
            }
            Err(failure) => {
                eprintln!("{failure}");
                ExitCode::FAILURE
            }
        };
    }
    let first = value("--first").unwrap_or(0);
    let runs = value("--runs").unwrap_or(1_000);
    let started = Instant::now();
    let mut messages = 0;
    let mut total = fibergun_sim::Counts::default();
    for seed in first..first + runs {
        match run(SimConfig::from_seed(seed)) {
            Ok(report) => {
                messages += report.counts.messages;
                let c = &report.counts;
                total.dropped += c.dropped;
                total.duplicated += c.duplicated;
                total.reordered += c.reordered;
                total.partitions += c.partitions;
                total.crashes += c.crashes;
                total.dials += c.dials;
                total.dials_failed += c.dials_failed;
                total.puts += c.puts;
                total.acked += c.acked;
                total.gets += c.gets;
            }
            Err(failure) => {
                eprintln!("{failure}");
                return ExitCode::FAILURE;
            }
        }
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "{runs} seeds from {first} converged in {secs:.1} s ({messages} messages, {:.0} messages/s)",
        messages as f64 / secs
    );
    println!(
        "faults: {} frames dropped, {} duplicated, {} reordered, {} partitions, {} crashes; {} link dials ({} failed and retried); {} puts ({} acked), {} gets",
        total.dropped, total.duplicated, total.reordered, total.partitions, total.crashes, total.dials, total.dials_failed, total.puts, total.acked, total.gets
    );
    ExitCode::SUCCESS
}

fn bench() -> ExitCode {
    // A calm, busy world: 5 relays in a full mesh and 6 clients, so the figure is the core's speed
    // plus the simulator's, not fault handling.
    let started = Instant::now();
    let (mut messages, mut events) = (0, 0);
    let mut seed = 0;
    while started.elapsed().as_secs_f64() < 10.0 {
        let mut config = SimConfig::calm(seed, 5, 6);
        config.ops_per_client = 200;
        match run(config) {
            Ok(report) => {
                messages += report.counts.messages;
                events += report.counts.events;
            }
            Err(failure) => {
                eprintln!("{failure}");
                return ExitCode::FAILURE;
            }
        }
        seed += 1;
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "simulated {messages} messages ({events} events) in {secs:.1} s on one core: {:.0} messages/s, {:.0} events/s",
        messages as f64 / secs,
        events as f64 / secs
    );
    ExitCode::SUCCESS
}
