//! What one simulated run looks like. Everything is drawn from the seed, the fault rates too, so
//! that different seeds stress different mixes (swarm testing).

use fibergun::rng::Rng;

/// How relays are linked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Topology {
    /// Relay i dials relay i+1.
    Line,
    /// A line whose ends are joined.
    Ring,
    /// Every relay dials every relay after it.
    Full,
    /// Every relay dials relay 0.
    Star,
}

/// How often each fault happens.
#[derive(Clone, Debug, PartialEq)]
pub struct Faults {
    /// Chance that a frame is lost.
    pub drop: f64,
    /// Chance that a frame is delivered twice.
    pub duplicate: f64,
    /// Chance that a frame is held back so later ones overtake it.
    pub reorder: f64,
    /// Largest extra delay of a held-back frame, in milliseconds.
    pub max_extra_delay_ms: u64,
    /// Chance per step of the fault schedule that a partition starts.
    pub partition: f64,
    /// Chance per step that a relay crashes (losing uncommitted writes) and restarts later.
    pub crash: f64,
    /// Largest wall-clock skew of a relay, either way, in milliseconds.
    pub max_skew_ms: u64,
}

/// One run.
#[derive(Clone, Debug, PartialEq)]
pub struct SimConfig {
    /// The seed everything comes from.
    pub seed: u64,
    /// Relays.
    pub relays: usize,
    /// Edges: peers that sync on demand with one or two relays (their upstreams) and hold only
    /// what their clients read or write.
    pub edges: usize,
    /// The relays share one store (relays on one database) instead of linking: none dials
    /// another; each hears what the others commit through the store's change feed, which the
    /// chaos cuts now and then (a gap when it returns). Then there are no edges.
    pub shared_store: bool,
    /// How they are linked.
    pub topology: Topology,
    /// Clients, each attached to one relay or edge.
    pub clients: usize,
    /// Souls the clients write to (few, so writes collide).
    pub souls: u32,
    /// Keys per soul.
    pub keys: u32,
    /// Operations each client issues during the chaos phase.
    pub ops_per_client: u32,
    /// How long the chaos phase lasts, in virtual milliseconds.
    pub chaos_ms: u64,
    /// Network latency range, in milliseconds.
    pub latency_ms: (u64, u64),
    /// Storage commit latency range, in milliseconds.
    pub commit_ms: (u64, u64),
    /// The faults.
    pub faults: Faults,
    /// Events allowed before the run is declared stuck.
    pub max_events: u64,
}

impl SimConfig {
    /// The run for `seed`: sizes, topology and fault rates drawn from it.
    pub fn from_seed(seed: u64) -> SimConfig {
        let mut rng = Rng::new(seed ^ 0x5eed_f1be_7600_0000);
        let chance = |rng: &mut Rng, max_permille: u64| rng.below(max_permille + 1) as f64 / 1000.0;
        let relays = 1 + rng.below(5) as usize;
        let topology = [
            Topology::Line,
            Topology::Ring,
            Topology::Full,
            Topology::Star,
        ][rng.below(4) as usize];
        let faults = Faults {
            drop: chance(&mut rng, 50),
            duplicate: chance(&mut rng, 50),
            reorder: chance(&mut rng, 200),
            max_extra_delay_ms: rng.below(200),
            partition: chance(&mut rng, 300),
            crash: chance(&mut rng, 200),
            max_skew_ms: rng.below(3_000),
        };
        let clients = 1 + rng.below(6) as usize;
        let souls = 1 + rng.below(4) as u32;
        let keys = 1 + rng.below(4) as u32;
        let ops_per_client = 5 + rng.below(40) as u32;
        let chaos_ms = 2_000 + rng.below(8_000);
        let latency_ms = (1, 1 + rng.below(30));
        let commit_ms = (1, 1 + rng.below(20));
        // Drawn last, so the rest of a seed's run is as it was before edges and shared stores.
        let edges = rng.below(3) as usize;
        let shared_store = relays > 1 && rng.below(4) == 0;
        SimConfig {
            seed,
            relays,
            edges: if shared_store { 0 } else { edges },
            shared_store,
            topology,
            clients,
            souls,
            keys,
            ops_per_client,
            chaos_ms,
            latency_ms,
            commit_ms,
            faults,
            max_events: 2_000_000,
        }
    }

    /// A run with no faults at all, for benchmarks and as a baseline.
    pub fn calm(seed: u64, relays: usize, clients: usize) -> SimConfig {
        SimConfig {
            relays,
            edges: 0,
            shared_store: false,
            clients,
            topology: Topology::Full,
            faults: Faults {
                drop: 0.0,
                duplicate: 0.0,
                reorder: 0.0,
                max_extra_delay_ms: 0,
                partition: 0.0,
                crash: 0.0,
                max_skew_ms: 0,
            },
            ..SimConfig::from_seed(seed)
        }
    }

    /// The relays edge `e` (numbered from 0) syncs with: one, or two when there are enough.
    pub fn upstreams_of(&self, e: usize) -> Vec<usize> {
        let n = self.relays;
        let first = e % n;
        if n > 2 && e % 2 == 1 {
            vec![first, (first + 1) % n]
        } else {
            vec![first]
        }
    }

    /// The relay pairs (dialler, dialled) of the topology.
    pub fn links(&self) -> Vec<(usize, usize)> {
        let n = self.relays;
        match self.topology {
            _ if n < 2 || self.shared_store => Vec::new(),
            Topology::Line => (0..n - 1).map(|i| (i, i + 1)).collect(),
            Topology::Ring if n > 2 => (0..n).map(|i| (i, (i + 1) % n)).collect(),
            Topology::Ring => vec![(0, 1)],
            Topology::Full => (0..n)
                .flat_map(|i| (i + 1..n).map(move |j| (i, j)))
                .collect(),
            Topology::Star => (1..n).map(|i| (i, 0)).collect(),
        }
    }
}
