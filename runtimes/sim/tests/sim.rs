//! The simulation in CI: a fixed slice of seeds must converge, and a seed must replay exactly.
//!
//! `FIBERGUN_SIM_SEED=N` runs one seed; `FIBERGUN_SIM_RUNS=N` (with `FIBERGUN_SIM_FIRST`) runs
//! another slice. The long sweep is `cargo run --release -p fibergun-sim -- --runs 100000`.

use fibergun_sim::{run, seeds_from_env, SimConfig, Topology};

#[test]
fn a_slice_of_seeds_converges() {
    let seeds = seeds_from_env(300);
    let mut topologies = std::collections::BTreeSet::new();
    let (mut partitions, mut crashes, mut dropped, mut acked) = (0, 0, 0, 0);
    let (mut dials_failed, mut edge_acked, mut feed_changes, mut feed_cuts) = (0, 0, 0, 0);
    for seed in &seeds {
        let config = SimConfig::from_seed(*seed);
        if config.relays > 1 {
            topologies.insert(format!("{:?}", config.topology));
        }
        match run(config) {
            Ok(report) => {
                partitions += report.counts.partitions;
                crashes += report.counts.crashes;
                dropped += report.counts.dropped;
                acked += report.counts.acked;
                dials_failed += report.counts.dials_failed;
                edge_acked += report.counts.edge_acked;
                feed_changes += report.counts.feed_changes;
                feed_cuts += report.counts.feed_cuts;
            }
            Err(failure) => panic!("{failure}"),
        }
    }
    eprintln!(
        "{} seeds converged: {partitions} partitions, {crashes} crashes, {dropped} frames dropped, {dials_failed} failed link dials retried, {acked} acked writes checked ({edge_acked} by edges), {feed_changes} changes from shared stores' feeds ({feed_cuts} cuts)",
        seeds.len()
    );
    if seeds.len() >= 200 {
        // The slice really exercises what it claims to.
        assert_eq!(topologies.len(), 4, "{topologies:?}");
        assert!(partitions > 0 && crashes > 0 && dropped > 0 && acked > 0);
        // Links are dialled by the cores, which retry with backoff after failures.
        assert!(dials_failed > 0);
        // Edges take writes offline and pass them up.
        assert!(edge_acked > 0);
        // Relays on one store hear of each other's commits, through feeds that get cut.
        assert!(feed_changes > 0 && feed_cuts > 0);
    }
}

#[test]
fn the_same_seed_replays_exactly() {
    for seed in [1, 17, 123] {
        let a = run(SimConfig::from_seed(seed)).unwrap();
        let b = run(SimConfig::from_seed(seed)).unwrap();
        assert_eq!(a, b, "seed {seed}");
    }
    let a = run(SimConfig::from_seed(5)).unwrap();
    let b = run(SimConfig::from_seed(6)).unwrap();
    assert_ne!(a.trace_hash, b.trace_hash);
}

#[test]
fn every_topology_links_relays_as_named() {
    let mut config = SimConfig::from_seed(0);
    config.relays = 4;
    for (topology, links) in [
        (Topology::Line, vec![(0, 1), (1, 2), (2, 3)]),
        (Topology::Ring, vec![(0, 1), (1, 2), (2, 3), (3, 0)]),
        (Topology::Star, vec![(1, 0), (2, 0), (3, 0)]),
        (
            Topology::Full,
            vec![(0, 1), (0, 2), (0, 3), (1, 2), (1, 3), (2, 3)],
        ),
    ] {
        config.topology = topology;
        assert_eq!(config.links(), links);
    }
}
