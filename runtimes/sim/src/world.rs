//! The simulated world: relays running the real core, edges (peers that sync on demand with a
//! relay or two, their upstreams), clients, a virtual network with faults, and virtual clocks,
//! all driven by one event queue. Relays and edges are both "nodes" here, edges after relays.
//! Nothing here reads a clock or draws ambient randomness: a run is a function of its seed.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap};
use std::time::{Duration, Instant};

use fibergun::rng::Rng;
use fibergun::{
    Config, ConnId, Direction, Field, Input, Key, Limits, MemStore, Now, Output, Peer, RemoteId,
    Soul, State, Store, StoreOp, StoreResult, Value, VerifyId,
};
use serde_json::{json, Value as Json};

use crate::config::SimConfig;

/// Virtual time, in microseconds since the start of the run.
pub type Time = u64;

const MS: Time = 1_000;
/// The wall clock at the start of every run: 2023-11-14T22:13:20Z.
const START_WALL_MS: f64 = 1_700_000_000_000.0;

/// One end of a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum End {
    Relay(usize),
    Client(usize),
}

/// A connection between two ends. `a` dialled `b`.
#[derive(Debug)]
struct Conn {
    a: End,
    b: End,
    open: bool,
    /// The last delivery time scheduled in each direction, to keep frames in order (TCP).
    last_to_a: Time,
    last_to_b: Time,
}

#[derive(Debug)]
enum Ev {
    Deliver {
        conn: u64,
        to_b: bool,
        text: String,
    },
    Commit {
        relay: usize,
        epoch: u64,
    },
    Timer {
        relay: usize,
        epoch: u64,
    },
    ClientOp {
        client: usize,
    },
    /// A dial a relay's core asked for reaches (or fails to reach) the other relay.
    Dial {
        relay: usize,
        epoch: u64,
        remote: RemoteId,
    },
    /// Signature checks a relay asked for have run.
    Verified {
        relay: usize,
        epoch: u64,
        id: VerifyId,
        results: Vec<bool>,
    },
    DialClient {
        client: usize,
    },
    Fault,
    Restart {
        relay: usize,
    },
    EndPartition {
        id: u64,
    },
    Heal,
    /// A client of an edge reads again what it read or wrote, as a GUN client resubscribes.
    Reread {
        client: usize,
    },
    /// The shared store's change feed tells a relay that another one committed these keys of
    /// a soul. Boxed: rare, and every event in the queue is the size of the largest.
    Feed {
        relay: usize,
        epoch: u64,
        change: Box<(Soul, Vec<Key>)>,
    },
    /// A relay's change feed is back after a cut: it reports a gap.
    FeedBack {
        relay: usize,
    },
    /// The results of a batch a relay committed to the shared store come back to it.
    StoreResults {
        relay: usize,
        epoch: u64,
        results: Vec<(fibergun::OpId, StoreResult)>,
    },
}

impl Ev {
    /// Events that are work still to do (not just clock ticks), for the quiescence test.
    fn is_work(&self) -> bool {
        !matches!(self, Ev::Timer { .. } | Ev::Fault)
    }
}

struct Scheduled {
    at: Time,
    seq: u64,
    ev: Ev,
}

impl PartialEq for Scheduled {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}
impl Eq for Scheduled {}
impl PartialOrd for Scheduled {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Scheduled {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.at, self.seq).cmp(&(other.at, other.seq))
    }
}

struct Relay {
    peer: Option<Peer>,
    /// What the store has committed: survives crashes.
    store: MemStore,
    /// Ops emitted and not yet committed: lost in a crash.
    pending: Vec<StoreOp>,
    commit_scheduled: bool,
    /// Bumped at every crash, so events of an earlier life are ignored.
    epoch: u64,
    skew_ms: i64,
    timer_at: Option<Time>,
    lives: u64,
    /// The relays this one dials, in the order of its configured peers (its `RemoteId`s): for an
    /// edge, its upstreams.
    dials: Vec<usize>,
    /// An edge, not a relay.
    edge: bool,
    /// Souls its clients read or wrote (an edge may hold no others).
    used: BTreeSet<Soul>,
}

struct Client {
    relay: usize,
    conn: Option<u64>,
    /// In a shared-store run, what its relay answered the final GET of each soul.
    final_answers: BTreeMap<String, Json>,
    /// Souls it read or wrote.
    used: BTreeSet<String>,
    ops_left: u32,
    skew_ms: i64,
    puts: BTreeMap<String, (Soul, Key, Field)>,
    next_id: u64,
}

/// Counts of what happened in a run.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    /// Events processed.
    pub events: u64,
    /// Frames delivered.
    pub frames: u64,
    /// Messages in those frames.
    pub messages: u64,
    /// Frames lost, duplicated, and held back.
    pub dropped: u64,
    /// Frames delivered twice.
    pub duplicated: u64,
    /// Frames held back so later ones overtook them.
    pub reordered: u64,
    /// Partitions.
    pub partitions: u64,
    /// Relay crashes.
    pub crashes: u64,
    /// Dials of relay links by the cores (first dials and redials).
    pub dials: u64,
    /// Of those, the ones that failed (the other relay down or cut off): each is followed by a
    /// backoff.
    pub dials_failed: u64,
    /// Puts issued by clients, and acknowledged.
    pub puts: u64,
    /// Puts acknowledged.
    pub acked: u64,
    /// Of those, the ones acknowledged by an edge (which the relays must hold by the end too).
    pub edge_acked: u64,
    /// Changes a shared store's feed handed to relays, and cuts of the feed.
    pub feed_changes: u64,
    /// Cuts of a relay's change feed (each ends with a gap).
    pub feed_cuts: u64,
    /// GETs issued by clients.
    pub gets: u64,
    /// Store batches committed.
    pub commits: u64,
}

/// A simulated world in progress.
pub struct World {
    pub(crate) config: SimConfig,
    rng: Rng,
    base: Instant,
    now: Time,
    seq: u64,
    queue: BinaryHeap<Reverse<Scheduled>>,
    /// A relay's outputs as they are carried out (kept, so that each step allocates none).
    outputs: Vec<Output>,
    /// Queued events that are work (see [`Ev::is_work`]).
    queued_work: usize,
    relays: Vec<Relay>,
    /// The store every relay writes to, in a shared-store run (each relay's own is unused).
    shared: Option<MemStore>,
    /// Relays whose change feed is cut: what others commit meanwhile is not reported to them.
    feed_cut: Vec<bool>,
    /// The final GETs of a shared-store run have been sent.
    final_reads: bool,
    clients: Vec<Client>,
    conns: BTreeMap<u64, Conn>,
    next_conn: u64,
    /// Relay pairs that cannot reach each other (a partition), by partition id.
    cuts: BTreeMap<u64, BTreeSet<(usize, usize)>>,
    next_partition: u64,
    chaos: bool,
    pub(crate) counts: Counts,
    /// Every field any store committed (the input to the reference merge).
    pub(crate) committed: Vec<(Soul, Key, Field)>,
    /// Every write a client saw acknowledged.
    pub(crate) acked: Vec<(Soul, Key, Field)>,
    trace: u64,
    /// `FIBERGUN_SIM_TRACE` is set: print every frame delivered (read once, not per frame).
    print_frames: bool,
}

impl World {
    /// A world for `config`, not yet started.
    pub fn new(config: SimConfig) -> World {
        let mut rng = Rng::new(config.seed);
        let skew = |rng: &mut Rng, max: u64| {
            if max == 0 {
                0
            } else {
                rng.below(2 * max + 1) as i64 - max as i64
            }
        };
        let nodes = config.relays + config.edges;
        let relays = (0..nodes)
            .map(|n| Relay {
                peer: None,
                store: MemStore::new(),
                pending: Vec::new(),
                commit_scheduled: false,
                epoch: 0,
                skew_ms: skew(&mut rng, config.faults.max_skew_ms),
                timer_at: None,
                lives: 0,
                dials: Vec::new(),
                edge: n >= config.relays,
                used: BTreeSet::new(),
            })
            .collect::<Vec<_>>();
        let clients = (0..config.clients)
            .map(|i| Client {
                relay: i % nodes,
                conn: None,
                final_answers: BTreeMap::new(),
                used: BTreeSet::new(),
                ops_left: config.ops_per_client,
                skew_ms: skew(&mut rng, config.faults.max_skew_ms),
                puts: BTreeMap::new(),
                next_id: 0,
            })
            .collect();
        let mut relays = relays;
        // Each link is a configured peer of its dialler: the core dials it, and dials again with
        // its own backoff whenever the link is lost.
        for (a, b) in config.links() {
            relays[a].dials.push(b);
        }
        for e in 0..config.edges {
            relays[config.relays + e].dials = config.upstreams_of(e);
        }
        World {
            rng,
            // The only clock read: an origin for the Instants the core needs. Only differences
            // from it ever matter, so runs stay deterministic.
            base: Instant::now(),
            now: 0,
            seq: 0,
            queue: BinaryHeap::new(),
            outputs: Vec::new(),
            queued_work: 0,
            shared: config.shared_store.then(MemStore::new),
            feed_cut: vec![false; relays.len()],
            final_reads: false,
            relays,
            clients,
            conns: BTreeMap::new(),
            next_conn: 1,
            cuts: BTreeMap::new(),
            next_partition: 0,
            chaos: true,
            counts: Counts::default(),
            committed: Vec::new(),
            acked: Vec::new(),
            trace: 0xcbf2_9ce4_8422_2325,
            print_frames: std::env::var_os("FIBERGUN_SIM_TRACE").is_some(),
            config,
        }
    }

    /// A hash of everything that happened, in order: equal for two runs of the same seed.
    pub fn trace_hash(&self) -> u64 {
        self.trace
    }

    /// Virtual milliseconds elapsed.
    pub fn elapsed_ms(&self) -> u64 {
        self.now / MS
    }

    /// The relays' committed graphs (edges' not among them); the one store of a shared-store
    /// run.
    pub fn stores(&self) -> Vec<&MemStore> {
        if let Some(shared) = &self.shared {
            return vec![shared];
        }
        self.relays
            .iter()
            .filter(|r| !r.edge)
            .map(|r| &r.store)
            .collect()
    }

    /// Each edge's committed graph, with the souls its clients read or wrote.
    pub fn edges(&self) -> Vec<(&MemStore, &BTreeSet<Soul>)> {
        self.relays
            .iter()
            .filter(|r| r.edge)
            .map(|r| (&r.store, &r.used))
            .collect()
    }

    /// In a shared-store run, what each client's relay answered its final GETs: (client, soul →
    /// the `put` of the answer).
    pub fn final_answers(&self) -> Vec<(usize, &BTreeMap<String, Json>)> {
        self.clients
            .iter()
            .enumerate()
            .filter(|(_, c)| c.conn.is_some())
            .map(|(i, c)| (i, &c.final_answers))
            .collect()
    }

    /// Folds `bytes` into the run's fingerprint, eight at a time: a multiply per byte was a chain
    /// of several cycles a byte over every frame, a large part of the simulator's own time. Each
    /// step is a bijection of the fingerprint, so a difference anywhere carries to the end; the
    /// length goes in with the last word, so trailing zeros count.
    fn record(&mut self, bytes: &[u8]) {
        const MUL: u64 = 0x9e37_79b9_7f4a_7c15;
        let step = |trace: u64, word: u64| (trace ^ word).wrapping_mul(MUL).rotate_left(23);
        let mut words = bytes.chunks_exact(8);
        for word in &mut words {
            let word = u64::from_le_bytes(word.try_into().expect("chunks of eight"));
            self.trace = step(self.trace, word);
        }
        let mut last = [0u8; 8];
        last[..words.remainder().len()].copy_from_slice(words.remainder());
        let last = u64::from_le_bytes(last) ^ (bytes.len() as u64).rotate_right(8);
        self.trace = step(self.trace, last);
    }

    fn schedule(&mut self, at: Time, ev: Ev) {
        self.seq += 1;
        self.queued_work += usize::from(ev.is_work());
        self.queue.push(Reverse(Scheduled {
            at,
            seq: self.seq,
            ev,
        }));
    }

    fn chance(&mut self, p: f64) -> bool {
        p > 0.0 && (self.rng.below(1_000_000) as f64) < p * 1_000_000.0
    }

    fn between(&mut self, (lo, hi): (u64, u64)) -> u64 {
        lo + self.rng.below(hi.saturating_sub(lo) + 1)
    }

    fn now_for(&self, relay: usize) -> Now {
        Now {
            mono: self.base + Duration::from_micros(self.now),
            wall_ms: START_WALL_MS + (self.now / MS) as f64 + self.relays[relay].skew_ms as f64,
        }
    }

    /// Runs the chaos phase, heals, and drives the world until nothing is left to do. Returns an
    /// error if it does not settle within the event budget.
    pub fn run(&mut self) -> Result<(), String> {
        for r in 0..self.relays.len() {
            self.start_relay(r);
        }
        for c in 0..self.clients.len() {
            self.schedule(0, Ev::DialClient { client: c });
            let first = self.rng.below(50) * MS;
            self.schedule(first, Ev::ClientOp { client: c });
        }
        self.schedule(100 * MS, Ev::Fault);
        let heal_at = self.config.chaos_ms * MS;
        self.schedule(heal_at, Ev::Heal);
        // After the heal: frames, commits and deferred states (ahead by at most the skew plus a
        // few seconds) all settle well within this.
        let settle_until = heal_at + (self.config.faults.max_skew_ms + 10_000) * MS;
        while let Some(Reverse(next)) = self.queue.pop() {
            self.counts.events += 1;
            if self.counts.events > self.config.max_events {
                return Err(format!(
                    "no quiescence within {} events",
                    self.config.max_events
                ));
            }
            self.now = self.now.max(next.at);
            self.queued_work -= usize::from(next.ev.is_work());
            self.handle(next.ev);
            let busy = self.queued_work > 0 || self.relays.iter().any(|r| !r.pending.is_empty());
            if self.now >= settle_until && !busy {
                if self.shared.is_some() && !self.final_reads {
                    // Quiet: every client reads every soul through its relay, whose cache must
                    // agree with the store.
                    self.final_reads = true;
                    self.final_read();
                    continue;
                }
                return Ok(());
            }
        }
        Ok(())
    }

    fn handle(&mut self, ev: Ev) {
        match ev {
            Ev::Deliver { conn, to_b, text } => self.deliver(conn, to_b, text),
            Ev::Commit { relay, epoch } => self.commit(relay, epoch),
            Ev::Timer { relay, epoch } => {
                if self.relays[relay].epoch == epoch {
                    self.relays[relay].timer_at = None;
                    self.relay_input(relay, Input::Timeout);
                }
            }
            Ev::ClientOp { client } => self.client_op(client),
            Ev::Dial {
                relay,
                epoch,
                remote,
            } => self.dial(relay, epoch, remote),
            Ev::Verified {
                relay,
                epoch,
                id,
                results,
            } => {
                if self.relays[relay].epoch == epoch {
                    self.relay_input(
                        relay,
                        Input::Verified {
                            id,
                            results: &results,
                        },
                    );
                }
            }
            Ev::DialClient { client } => self.dial_client(client),
            Ev::Fault => self.fault(),
            Ev::Restart { relay } => {
                if self.relays[relay].peer.is_none() {
                    self.start_relay(relay);
                }
            }
            Ev::EndPartition { id } => {
                self.cuts.remove(&id);
            }
            Ev::Heal => self.heal(),
            Ev::Reread { client } => self.reread(client),
            Ev::Feed {
                relay,
                epoch,
                change,
            } => {
                let (soul, keys) = *change;
                self.feed(relay, epoch, soul, &keys)
            }
            Ev::FeedBack { relay } => self.feed_back(relay),
            Ev::StoreResults {
                relay,
                epoch,
                results,
            } => self.store_results(relay, epoch, results),
        }
    }

    // Relays.

    fn start_relay(&mut self, r: usize) {
        let lives = self.relays[r].lives;
        self.relays[r].lives += 1;
        let dials: Vec<String> = self.relays[r]
            .dials
            .iter()
            .map(|b| format!("sim://relay/{b}"))
            .collect();
        let (peers, upstreams) = if self.relays[r].edge {
            (Vec::new(), dials)
        } else {
            (dials, Vec::new())
        };
        let config = Config {
            seed: self.config.seed ^ ((r as u64 + 1) << 32) ^ (lives << 48),
            peers,
            upstreams,
            limits: Limits {
                // Short enough that links lost in the chaos are back soon after the heal.
                reconnect_min_ms: 50,
                reconnect_max_ms: 2_000,
                // Lost frames and silent upstreams are found out fast.
                upstream_ack_ms: 500,
                upstream_wait_ms: 500,
                ..Limits::default()
            },
            ..Config::default()
        };
        let now = self.now_for(r);
        self.relays[r].peer = Some(Peer::new(config, now));
        self.relays[r].timer_at = None;
        // A new peer asks at once to dial its configured peers.
        self.carry_out(r);
    }

    fn relay_input(&mut self, r: usize, input: Input<'_>) {
        let now = self.now_for(r);
        let Some(peer) = self.relays[r].peer.as_mut() else {
            return;
        };
        peer.handle_input(now, input)
            .expect("the simulator follows the driving contract");
        self.carry_out(r);
    }

    /// Carries out everything relay `r`'s core asks for.
    fn carry_out(&mut self, r: usize) {
        let Some(peer) = self.relays[r].peer.as_mut() else {
            return;
        };
        // The outputs are gathered first (handling one needs the whole world), into a buffer
        // kept between calls.
        let mut outputs = std::mem::take(&mut self.outputs);
        while let Some(out) = peer.poll_output() {
            outputs.push(out);
        }
        for out in outputs.drain(..) {
            match out {
                Output::Send { conn, text } => self.transmit(conn.0, End::Relay(r), text),
                Output::Close { conn, .. } => self.close(conn.0),
                Output::Store(op) => {
                    self.relays[r].pending.push(op);
                    if !self.relays[r].commit_scheduled {
                        self.relays[r].commit_scheduled = true;
                        let at = self.now + self.between(self.config.commit_ms) * MS;
                        let epoch = self.relays[r].epoch;
                        self.schedule(at, Ev::Commit { relay: r, epoch });
                    }
                }
                Output::Verify { id, checks } => {
                    // Checks are pure: run them now, and answer after a commit's worth of time.
                    let results = checks.iter().map(|c| c.holds()).collect();
                    let at = self.now + self.between(self.config.commit_ms) * MS;
                    let epoch = self.relays[r].epoch;
                    self.schedule(
                        at,
                        Ev::Verified {
                            relay: r,
                            epoch,
                            id,
                            results,
                        },
                    );
                }
                Output::Dial { remote, .. } => {
                    let at = self.now + self.between(self.config.latency_ms) * MS;
                    let epoch = self.relays[r].epoch;
                    self.schedule(
                        at,
                        Ev::Dial {
                            relay: r,
                            epoch,
                            remote,
                        },
                    );
                }
                // The check at the end reads the stores; events say nothing it needs.
                Output::Event(_) => {}
            }
        }
        self.outputs = outputs;
        self.reschedule_timer(r);
    }

    fn reschedule_timer(&mut self, r: usize) {
        let Some(peer) = self.relays[r].peer.as_ref() else {
            return;
        };
        let Some(deadline) = peer.poll_timeout() else {
            return;
        };
        // Round up: a timer delivered even a nanosecond early finds nothing due and is re-armed
        // for the same instant.
        let nanos = deadline.saturating_duration_since(self.base).as_nanos();
        let at = (nanos.div_ceil(1_000) as Time).max(self.now);
        if self.relays[r].timer_at.is_none_or(|t| at < t) {
            self.relays[r].timer_at = Some(at);
            let epoch = self.relays[r].epoch;
            self.schedule(at, Ev::Timer { relay: r, epoch });
        }
    }

    fn commit(&mut self, r: usize, epoch: u64) {
        if self.relays[r].epoch != epoch {
            return; // scheduled before a crash
        }
        self.relays[r].commit_scheduled = false;
        let ops = std::mem::take(&mut self.relays[r].pending);
        if ops.is_empty() {
            return;
        }
        self.counts.commits += 1;
        for op in &ops {
            if let StoreOp::Merge { soul, fields, .. } = op {
                for (k, f) in fields {
                    self.committed.push((soul.clone(), k.clone(), f.clone()));
                }
            }
        }
        let ids: Vec<_> = ops.iter().map(StoreOp::id).collect();
        let souls: Vec<Option<Soul>> = ops
            .iter()
            .map(|op| match op {
                StoreOp::Merge { soul, .. } => Some(soul.clone()),
                _ => None,
            })
            .collect();
        let results = match self.shared.as_mut() {
            Some(shared) => shared.apply(ops),
            None => self.relays[r].store.apply(ops),
        };
        self.record(format!("commit {r} {}", ids.len()).as_bytes());
        let results: Vec<_> = ids.into_iter().zip(results).collect();
        if self.shared.is_some() {
            self.announce(r, &souls, &results);
            // The answers travel back from the database, so the feed's reports of later commits
            // by others may overtake them. One batch is in flight at a time.
            self.relays[r].commit_scheduled = true;
            let at = self.now + self.between(self.config.commit_ms) * MS;
            self.schedule(
                at,
                Ev::StoreResults {
                    relay: r,
                    epoch,
                    results,
                },
            );
            return;
        }
        self.store_results(r, epoch, results);
    }

    fn store_results(&mut self, r: usize, epoch: u64, results: Vec<(fibergun::OpId, StoreResult)>) {
        if self.relays[r].epoch != epoch {
            return; // committed, but the relay crashed before it heard
        }
        self.relays[r].commit_scheduled = false;
        for (op, result) in results {
            self.relay_input(r, Input::StoreDone { op, result });
        }
        if !self.relays[r].pending.is_empty() && !self.relays[r].commit_scheduled {
            self.relays[r].commit_scheduled = true;
            let at = self.now + self.between(self.config.commit_ms) * MS;
            self.schedule(at, Ev::Commit { relay: r, epoch });
        }
    }

    /// The shared store's change feed: the other relays hear of what relay `r` just committed,
    /// each after a network delay (unless its feed is cut).
    fn announce(
        &mut self,
        r: usize,
        souls: &[Option<Soul>],
        results: &[(fibergun::OpId, StoreResult)],
    ) {
        let mut changed: BTreeMap<Soul, BTreeSet<Key>> = BTreeMap::new();
        for (soul, (_, result)) in souls.iter().zip(results) {
            if let (
                Some(soul),
                StoreResult::Merged {
                    changed: fields, ..
                },
            ) = (soul, result)
            {
                changed
                    .entry(soul.clone())
                    .or_default()
                    .extend(fields.iter().map(|(k, _)| k.clone()));
            }
        }
        for j in 0..self.relays.len() {
            if j == r || self.feed_cut[j] || self.relays[j].peer.is_none() {
                continue;
            }
            for (soul, keys) in &changed {
                if keys.is_empty() {
                    continue;
                }
                let at = self.now + self.between(self.config.latency_ms) * MS;
                let ev = Ev::Feed {
                    relay: j,
                    epoch: self.relays[j].epoch,
                    change: Box::new((soul.clone(), keys.iter().cloned().collect())),
                };
                self.schedule(at, ev);
            }
        }
    }

    /// A change reaches relay `j`: the keys as the store holds them now.
    fn feed(&mut self, j: usize, epoch: u64, soul: Soul, keys: &[Key]) {
        if self.relays[j].epoch != epoch || self.feed_cut[j] {
            return;
        }
        let Some(node) = self.shared.as_ref().and_then(|s| s.nodes.get(&soul)) else {
            return;
        };
        let fields: Vec<(Key, Field)> = keys
            .iter()
            .filter_map(|k| node.get(k).map(|f| (k.clone(), f.clone())))
            .collect();
        self.counts.feed_changes += 1;
        self.relay_input(j, Input::StoreChanged { soul, fields });
    }

    /// Relay `j`'s feed listens again: it reports the gap.
    fn feed_back(&mut self, j: usize) {
        if !self.feed_cut[j] {
            return;
        }
        self.feed_cut[j] = false;
        self.record(format!("feed back {j}").as_bytes());
        self.relay_input(j, Input::StoreFeedGap);
    }

    /// Every client GETs every soul through its relay.
    fn final_read(&mut self) {
        for c in 0..self.clients.len() {
            let Some(conn) = self.clients[c].conn else {
                continue;
            };
            for s in 0..self.config.souls {
                let get = json!({"#": format!("c{c}.final.s{s}"), "get": {"#": format!("s{s}")}});
                self.transmit(conn, End::Client(c), get.to_string());
            }
        }
    }

    fn crash(&mut self, r: usize) {
        if self.relays[r].peer.is_none() {
            return;
        }
        self.counts.crashes += 1;
        self.record(format!("crash {r}").as_bytes());
        let relay = &mut self.relays[r];
        relay.peer = None;
        relay.pending.clear();
        relay.commit_scheduled = false;
        relay.timer_at = None;
        relay.epoch += 1;
        let touching: Vec<u64> = self
            .conns
            .iter()
            .filter(|(_, c)| c.open && (c.a == End::Relay(r) || c.b == End::Relay(r)))
            .map(|(id, _)| *id)
            .collect();
        for conn in touching {
            self.close(conn);
        }
        let downtime = self.between((100, 2_000)) * MS;
        self.schedule(self.now + downtime, Ev::Restart { relay: r });
    }

    // The network.

    fn transmit(&mut self, conn: u64, from: End, mut text: String) {
        let Some(c) = self.conns.get(&conn) else {
            return;
        };
        if !c.open {
            return;
        }
        let to_b = c.a == from;
        let faults = self.chaos && matches!((c.a, c.b), (End::Relay(_), End::Relay(_)));
        let latency = self.between(self.config.latency_ms) * MS;
        if faults && self.chance(self.config.faults.drop) {
            self.counts.dropped += 1;
            return;
        }
        let copies = if faults && self.chance(self.config.faults.duplicate) {
            self.counts.duplicated += 1;
            2
        } else {
            1
        };
        let reorder = faults && self.chance(self.config.faults.reorder);
        for copies_left in (0..copies).rev() {
            let mut at = self.now + latency;
            if reorder {
                self.counts.reordered += 1;
                at += self.rng.below(self.config.faults.max_extra_delay_ms + 1) * MS;
            } else {
                // In order, as on one TCP connection.
                let c = self.conns.get_mut(&conn).expect("looked up above");
                let last = if to_b {
                    &mut c.last_to_b
                } else {
                    &mut c.last_to_a
                };
                at = at.max(*last + 1);
                *last = at;
            }
            self.schedule(
                at,
                Ev::Deliver {
                    conn,
                    to_b,
                    // The last copy takes the text itself.
                    text: if copies_left == 0 {
                        std::mem::take(&mut text)
                    } else {
                        text.clone()
                    },
                },
            );
        }
    }

    fn deliver(&mut self, conn: u64, to_b: bool, text: String) {
        let Some(c) = self.conns.get(&conn) else {
            return;
        };
        if !c.open {
            return;
        }
        let to = if to_b { c.b } else { c.a };
        if self.print_frames {
            let from = if to_b { c.a } else { c.b };
            eprintln!(
                "{:>9.3} {from:?} -> {to:?} #{conn}: {}",
                self.now as f64 / 1000.0,
                &text[..text.floor_char_boundary(300)]
            );
        }
        self.counts.frames += 1;
        self.counts.messages += if text.starts_with('[') {
            text.matches("{\"#\"").count().max(1) as u64
        } else {
            1
        };
        self.record(&conn.to_le_bytes());
        self.record(text.as_bytes());
        match to {
            End::Relay(r) => self.relay_input(
                r,
                Input::Frame {
                    conn: ConnId(conn),
                    text: &text,
                },
            ),
            End::Client(c) => self.client_receive(c, &text),
        }
    }

    /// Opens a connection from `a` to `b`. A relay that dialled it for a configured peer reports
    /// it as [`Input::Dialled`] with `remote`.
    fn open_conn(&mut self, a: End, b: End, remote: Option<RemoteId>) -> u64 {
        let id = self.next_conn;
        self.next_conn += 1;
        self.conns.insert(
            id,
            Conn {
                a,
                b,
                open: true,
                last_to_a: 0,
                last_to_b: 0,
            },
        );
        self.record(format!("open {id} {a:?} {b:?}").as_bytes());
        if let End::Relay(r) = b {
            self.relay_input(
                r,
                Input::Connected {
                    conn: ConnId(id),
                    direction: Direction::Inbound,
                },
            );
        }
        if let End::Relay(r) = a {
            let input = match remote {
                Some(remote) => Input::Dialled {
                    remote,
                    conn: ConnId(id),
                },
                None => Input::Connected {
                    conn: ConnId(id),
                    direction: Direction::Outbound,
                },
            };
            self.relay_input(r, input);
        }
        id
    }

    fn close(&mut self, conn: u64) {
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        if !c.open {
            return;
        }
        c.open = false;
        let ends = [c.a, c.b];
        self.record(format!("close {conn}").as_bytes());
        for end in ends {
            match end {
                End::Relay(r) => self.relay_input(r, Input::Disconnected { conn: ConnId(conn) }),
                End::Client(c) => {
                    self.clients[c].conn = None;
                    let at = self.now + self.between((50, 500)) * MS;
                    self.schedule(at, Ev::DialClient { client: c });
                }
            }
        }
    }

    fn cut(&self, a: usize, b: usize) -> bool {
        self.cuts
            .values()
            .any(|c| c.contains(&(a.min(b), a.max(b))))
    }

    /// A dial by relay `r` (in the life `epoch`) of its configured peer `remote` arrives: it
    /// connects unless the other relay is down or cut off.
    fn dial(&mut self, r: usize, epoch: u64, remote: RemoteId) {
        if self.relays[r].epoch != epoch || self.relays[r].peer.is_none() {
            return; // dialled by a life that has since crashed
        }
        let b = self.relays[r].dials[remote.0 as usize];
        self.counts.dials += 1;
        if self.relays[b].peer.is_none() || self.cut(r, b) {
            self.counts.dials_failed += 1;
            self.record(format!("dial failed {r} {b}").as_bytes());
            self.relay_input(r, Input::DialFailed { remote });
            return;
        }
        self.open_conn(End::Relay(r), End::Relay(b), Some(remote));
    }

    fn dial_client(&mut self, c: usize) {
        if self.clients[c].conn.is_some() {
            return;
        }
        let relay = self.clients[c].relay;
        if self.relays[relay].peer.is_none() {
            let at = self.now + self.between((100, 500)) * MS;
            self.schedule(at, Ev::DialClient { client: c });
            return;
        }
        let conn = self.open_conn(End::Client(c), End::Relay(relay), None);
        self.clients[c].conn = Some(conn);
    }

    // Faults.

    fn fault(&mut self) {
        if !self.chaos {
            return;
        }
        let n = self.relays.len();
        if n > 1 && self.chance(self.config.faults.partition) {
            // Split the relays in two: every link across the split goes down until it ends.
            let side: Vec<bool> = (0..n).map(|_| self.rng.below(2) == 1).collect();
            let cut: BTreeSet<(usize, usize)> = (0..n)
                .flat_map(|i| (i + 1..n).map(move |j| (i, j)))
                .filter(|&(i, j)| side[i] != side[j])
                .collect();
            if !cut.is_empty() {
                self.counts.partitions += 1;
                let id = self.next_partition;
                self.next_partition += 1;
                let across: Vec<u64> = self
                    .conns
                    .iter()
                    .filter(|(_, c)| c.open)
                    .filter_map(|(id, c)| match (c.a, c.b) {
                        (End::Relay(a), End::Relay(b)) => {
                            cut.contains(&(a.min(b), a.max(b))).then_some(*id)
                        }
                        _ => None,
                    })
                    .collect();
                self.cuts.insert(id, cut);
                for conn in across {
                    self.close(conn);
                }
                let until = self.now + self.between((200, 3_000)) * MS;
                self.schedule(until, Ev::EndPartition { id });
            }
        }
        if self.shared.is_some() && self.chance(self.config.faults.partition) {
            let j = self.rng.below(n as u64) as usize;
            if !self.feed_cut[j] {
                self.counts.feed_cuts += 1;
                self.feed_cut[j] = true;
                let back = self.now + self.between((200, 3_000)) * MS;
                self.schedule(back, Ev::FeedBack { relay: j });
            }
        }
        if self.chance(self.config.faults.crash) {
            let r = self.rng.below(n as u64) as usize;
            self.crash(r);
        }
        let next = self.now + self.between((100, 400)) * MS;
        self.schedule(next, Ev::Fault);
    }

    /// Ends the chaos: partitions end, crashed relays restart, faults stop, and every relay link is
    /// made anew, so that relays exchange what they have.
    fn heal(&mut self) {
        self.chaos = false;
        self.cuts.clear();
        self.record(b"heal");
        for r in 0..self.relays.len() {
            if self.relays[r].peer.is_none() {
                self.start_relay(r);
            }
            self.feed_back(r);
        }
        // Every relay link is lost and dialled anew by the cores, after their backoff.
        let links: Vec<u64> = self
            .conns
            .iter()
            .filter(|(_, c)| c.open && matches!((c.a, c.b), (End::Relay(_), End::Relay(_))))
            .map(|(id, _)| *id)
            .collect();
        for conn in links {
            self.close(conn);
        }
        for c in 0..self.clients.len() {
            self.dial_client(c);
            // A client of an edge reads again what it used, as a GUN client resubscribes
            // (after the edge's links are back, a little later).
            if self.relays[self.clients[c].relay].edge {
                let at = self.now + self.between((2_500, 3_500)) * MS;
                self.schedule(at, Ev::Reread { client: c });
            }
        }
    }

    /// A client sends a GET for every soul it read or wrote.
    fn reread(&mut self, c: usize) {
        let Some(conn) = self.clients[c].conn else {
            let at = self.now + 200 * MS;
            self.schedule(at, Ev::Reread { client: c });
            return;
        };
        let souls: Vec<String> = self.clients[c].used.iter().cloned().collect();
        for soul in souls {
            self.clients[c].next_id += 1;
            let id = format!("c{c}.r{}", self.clients[c].next_id);
            let get = json!({"#": id, "get": {"#": soul}});
            self.transmit(conn, End::Client(c), get.to_string());
        }
    }

    // Clients.

    fn client_op(&mut self, c: usize) {
        if !self.chaos || self.clients[c].ops_left == 0 {
            return;
        }
        let gap = self.config.chaos_ms / u64::from(self.config.ops_per_client.max(1));
        let next = self.now + self.between((1, gap.max(2))) * MS;
        self.schedule(next, Ev::ClientOp { client: c });
        let Some(conn) = self.clients[c].conn else {
            return;
        };
        self.clients[c].ops_left -= 1;
        self.clients[c].next_id += 1;
        let id = format!("c{c}.{}", self.clients[c].next_id);
        let soul = format!("s{}", self.rng.below(u64::from(self.config.souls)));
        self.clients[c].used.insert(soul.clone());
        let node = self.clients[c].relay;
        self.relays[node]
            .used
            .insert(Soul::new(&soul).expect("non-empty"));
        if self.rng.below(10) < 3 {
            self.counts.gets += 1;
            let get = json!({"#": id, "get": {"#": soul}});
            self.transmit(conn, End::Client(c), get.to_string());
            return;
        }
        let key = format!("k{}", self.rng.below(u64::from(self.config.keys)));
        let value = match self.rng.below(6) {
            0 => Value::Null,
            1 => Value::Bool(self.rng.below(2) == 1),
            2 => Value::Number(self.rng.below(4) as f64),
            3 => Value::Link(Soul::new(&format!("s{}", self.rng.below(3))).expect("non-empty")),
            _ => {
                Value::String(["a", "b", "a!", "😀", "\u{ff61}"][self.rng.below(5) as usize].into())
            }
        };
        let wall = START_WALL_MS + (self.now / MS) as f64 + self.clients[c].skew_ms as f64;
        let state = match self.rng.below(10) {
            // A coarse state, shared by every client writing in the same second: ties.
            0..=2 => (wall / 1000.0).floor() * 1000.0,
            // Ahead of the relays' clocks: held until its time comes.
            3 => wall + self.rng.below(3_000) as f64,
            4 => wall - self.rng.below(5_000) as f64,
            _ => wall + self.rng.below(999) as f64 / 999.0,
        };
        let field = Field {
            value,
            state: State::new(state).expect("finite"),
        };
        let msg = json!({"#": id, "put": {&soul: {"_": {"#": &soul, ">": {&key: state}}, &key: field.value.to_json()}}});
        self.counts.puts += 1;
        let soul = Soul::new(&soul).expect("non-empty");
        let key = Key::new(&key).expect("valid");
        self.clients[c].puts.insert(id, (soul, key, field));
        self.transmit(conn, End::Client(c), msg.to_string());
    }

    fn client_receive(&mut self, c: usize, text: &str) {
        let final_prefix = format!("c{c}.final.");
        if text.contains(final_prefix.as_str()) {
            return self.client_receive_final(c, text, &final_prefix);
        }
        // Every other frame is read as a GUN peer reads it, by the wire reader (no JSON tree),
        // for its acks. Relays batch freely, so no frame limit applies.
        let limits = Limits {
            max_frame_bytes: usize::MAX,
            max_messages_per_frame: usize::MAX,
            ..Limits::default()
        };
        let msgs = match fibergun::wire::parse_frame(text, &limits, String::new) {
            Ok(msgs) => msgs,
            Err(e) => panic!("a relay sent a frame that cannot be read ({e}): {text}"),
        };
        for msg in msgs.into_iter().flatten() {
            if msg.ok.as_deref() != Some(&Json::Bool(true)) {
                continue;
            }
            if let Some(to) = msg.reply_to {
                self.acked_by_relay(c, &to);
            }
        }
    }

    /// The write `to` was acked: it is a write the relay now holds.
    fn acked_by_relay(&mut self, c: usize, to: &str) {
        if let Some(write) = self.clients[c].puts.remove(to) {
            self.counts.acked += 1;
            if self.relays[self.clients[c].relay].edge {
                self.counts.edge_acked += 1;
            }
            self.acked.push(write);
        }
    }

    /// A frame with answers to the final reads, which are kept as the JSON trees the check
    /// compares, and maybe acks.
    fn client_receive_final(&mut self, c: usize, text: &str, final_prefix: &str) {
        let msgs = match serde_json::from_str::<Json>(text) {
            Ok(Json::Array(items)) => items,
            Ok(one) => vec![one],
            Err(e) => panic!("a relay sent a frame that is not JSON ({e}): {text}"),
        };
        for msg in msgs {
            if let Some(soul) = msg
                .get("@")
                .and_then(Json::as_str)
                .and_then(|to| to.strip_prefix(final_prefix))
            {
                let answer = msg["put"].get(soul).cloned().unwrap_or(Json::Null);
                self.clients[c]
                    .final_answers
                    .insert(soul.to_owned(), answer);
                continue;
            }
            if msg.get("ok") != Some(&Json::Bool(true)) {
                continue;
            }
            if let Some(to) = msg.get("@").and_then(Json::as_str) {
                self.acked_by_relay(c, to);
            }
        }
    }
}
