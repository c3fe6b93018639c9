//! # fibergun-sim: deterministic simulation of fibergun relays
//!
//! Runs N relays, each the real [`fibergun::Peer`], on a virtual network with virtual clocks, with
//! clients writing and reading through them. One seed decides everything: the topology (line,
//! ring, full mesh, star), the fault rates, and every fault: frames dropped, duplicated, reordered
//! and delayed; partitions that split the relays and heal; relays that crash, losing what their
//! store had not committed, and restart; wall clocks skewed per relay, so states from one relay
//! are in another's future and HAM holds them.
//!
//! Each run has a chaos phase, then everything heals and the world runs until nothing is left to
//! do. Then every relay's store must equal the reference merge (HAM, written independently of the
//! core, over every write any store committed), and every write a client saw acknowledged must be
//! there.
//!
//! ```
//! let report = fibergun_sim::run(fibergun_sim::SimConfig::from_seed(7)).expect("converges");
//! assert_eq!(report, fibergun_sim::run(fibergun_sim::SimConfig::from_seed(7)).unwrap());
//! ```
//!
//! From the shell: `cargo run --release -p fibergun-sim -- --seed 7` replays one seed,
//! `--runs 10000` sweeps seeds, `--bench` measures simulated messages per second.

pub mod check;
pub mod config;
pub mod world;

pub use config::{Faults, SimConfig, Topology};
pub use world::{Counts, World};

/// What a run did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Report {
    /// The seed.
    pub seed: u64,
    /// Counts of events, frames, faults and writes.
    pub counts: Counts,
    /// Virtual milliseconds the run took.
    pub virtual_ms: u64,
    /// A hash of everything that happened, in order.
    pub trace_hash: u64,
}

/// A run that did not converge, with what is needed to replay it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    /// The seed.
    pub seed: u64,
    /// What went wrong.
    pub reason: String,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "seed {} failed: {}\nreplay with: cargo run --release -p fibergun-sim -- --seed {}",
            self.seed, self.reason, self.seed
        )
    }
}

impl std::error::Error for Failure {}

/// Runs one simulation and checks convergence.
pub fn run(config: SimConfig) -> Result<Report, Failure> {
    let seed = config.seed;
    let mut world = World::new(config);
    let fail = |reason: String| Failure { seed, reason };
    world.run().map_err(fail)?;
    check::converged(&world.stores(), &world.committed, &world.acked).map_err(fail)?;
    check::edges_converged(&world.edges(), &world.committed).map_err(fail)?;
    if world.config.shared_store {
        let store = world.stores()[0];
        check::answers_match_store(store, &world.final_answers(), world.config.souls)
            .map_err(fail)?;
    }
    Ok(Report {
        seed,
        counts: world.counts.clone(),
        virtual_ms: world.elapsed_ms(),
        trace_hash: world.trace_hash(),
    })
}

/// The fuzz target's body: a run whose seed and fault mix come from the bytes, which must
/// converge. Kept here so that every input a fuzzer finds can be replayed by a plain test.
pub fn fuzz(data: &[u8]) {
    let byte = |i: usize| u64::from(data.get(i).copied().unwrap_or(0));
    let seed = u64::from_le_bytes(std::array::from_fn(|i| data.get(i).copied().unwrap_or(0)));
    let mut config = SimConfig::from_seed(seed);
    if data.len() > 8 {
        config.relays = 1 + (byte(8) % 5) as usize;
        config.topology = [
            Topology::Line,
            Topology::Ring,
            Topology::Full,
            Topology::Star,
        ][(byte(9) % 4) as usize];
        config.faults.drop = byte(10) as f64 / 1024.0;
        config.faults.duplicate = byte(11) as f64 / 1024.0;
        config.faults.reorder = byte(12) as f64 / 512.0;
        config.faults.partition = byte(13) as f64 / 512.0;
        config.faults.crash = byte(14) as f64 / 1024.0;
        config.faults.max_skew_ms = byte(15) * 16;
        config.ops_per_client = 5 + (byte(16) % 20) as u32;
    }
    if let Err(failure) = run(config) {
        panic!("{failure}");
    }
}

/// Seeds from the environment: `FIBERGUN_SIM_SEED` (one seed), else `FIBERGUN_SIM_RUNS` seeds
/// from `FIBERGUN_SIM_FIRST` (default 0), else `default_runs` seeds from 0.
pub fn seeds_from_env(default_runs: u64) -> Vec<u64> {
    let var = |name: &str| std::env::var(name).ok().and_then(|v| v.parse::<u64>().ok());
    if let Some(seed) = var("FIBERGUN_SIM_SEED") {
        return vec![seed];
    }
    let first = var("FIBERGUN_SIM_FIRST").unwrap_or(0);
    let runs = var("FIBERGUN_SIM_RUNS").unwrap_or(default_runs);
    (first..first + runs).collect()
}
