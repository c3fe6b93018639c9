//! Upstreams: relays this peer syncs with on demand, as a GUN JS browser or node peer does with
//! its `peers` (a relay link, by contrast, exchanges whole graphs).
//!
//! - **Reads.** A GET from a local client is answered here and also asked of every connected
//!   upstream (keeping its `#`, so the answer is routed back to the asker, and stored). When
//!   nothing is held here and an upstream is connected, the local "not found" waits for the
//!   upstream's answer, at most [`Limits::upstream_wait_ms`](crate::Limits::upstream_wait_ms).
//!   While an upstream is being dialled (at start, say) the GET waits for the dial: it is asked
//!   as soon as the connection opens, or answered here at once if the dial fails.
//! - **Live.** The upstream subscribes this peer to what it was asked, and to the souls written
//!   here (asked once each); its pushes are merged and passed on to local subscribers. Puts from
//!   an upstream for souls not read or written here are dropped: a peer holds only what is used
//!   here. On every reconnect the GETs asked are asked again, so what changed meanwhile comes
//!   back.
//! - **Writes.** A local write is merged, committed and acknowledged here, and appended to the
//!   store's outbox in the same transaction (the storage contract's rule 5); a part whose state
//!   is ahead of the clock is appended when it is merged, at its time. Each upstream is
//!   sent the outbox in order from its mark, a window at a time; an entry leaves the outbox once
//!   every upstream has acknowledged it. A GUN JS relay does not acknowledge a put that changes
//!   nothing there, so an entry not acknowledged within
//!   [`Limits::upstream_ack_ms`](crate::Limits::upstream_ack_ms) is checked by reading its nodes
//!   back: if the upstream holds every field as it is, or one that beats it under HAM, it counts
//!   as acknowledged; if not, it is sent again.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::mesh::Forward;
use super::{ConnId, OpPurpose, Peer, RemoteId};
use crate::graph::{Field, Graph, Key, Node, Soul};
use crate::ham;
use crate::store::{StoreOp, StoreResult};
use crate::wire::{self, Body, Message};

/// Bytes of outbox entries read from the store at a time for one upstream.
const READ_BYTES: u64 = 256 << 10;

/// Entries appended in this process, kept in memory so that upstreams sending live need not read
/// them back from the store: at most this many bytes.
const RECENT_BYTES: usize = 1 << 20;

/// The outbox as this peer knows it.
#[derive(Debug, Default)]
pub(super) struct OutboxLog {
    /// The store's status has been read (the last number and the marks).
    loaded: bool,
    /// The last number the store gave.
    last: u64,
    /// Recently appended entries.
    recent: BTreeMap<u64, Arc<str>>,
    recent_bytes: usize,
}

/// An entry sent to an upstream and not acknowledged yet.
#[derive(Debug)]
struct InFlight {
    seq: u64,
    entry: Arc<str>,
    sent: Instant,
    /// A read-back under way (see the module docs).
    probe: Option<Probe>,
}

/// Reading an entry's nodes back from an upstream that did not acknowledge it.
#[derive(Debug, Default)]
struct Probe {
    /// The entry's fields not yet seen there as they are or beaten under HAM: (soul, key) →
    /// field.
    unconfirmed: BTreeMap<(String, String), Field>,
    /// The GETs whose answers are still to come.
    asked: BTreeSet<String>,
}

/// What this peer keeps for one upstream.
#[derive(Debug, Default)]
pub(super) struct Upstream {
    /// Every entry up to this one is acknowledged.
    acked: u64,
    /// Entries acknowledged beyond `acked`, out of order.
    acked_ahead: BTreeSet<u64>,
    /// The mark written to the store, or being written.
    mark_saved: u64,
    mark_writing: bool,
    /// The next entry to send on the current connection.
    next: u64,
    /// Sent and not yet acknowledged, by the put's message id.
    in_flight: BTreeMap<String, InFlight>,
    /// Read-back GET ids → the put they check.
    probes: BTreeMap<String, String>,
    /// A read of the outbox for this upstream is under way.
    reading: bool,
    /// Entries read for it and not sent yet.
    buffered: BTreeMap<u64, Arc<str>>,
}

/// A local GET that an upstream was asked too.
#[derive(Debug)]
pub(super) struct Awaiting {
    asker: super::ConnRef,
    until: Instant,
    /// Its local answer was "not found", held back for the upstream's.
    held: bool,
}

/// Where an upstream stands, for an application's sync status.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UpstreamStatus {
    /// Its address.
    pub url: String,
    /// Whether it is connected now.
    pub connected: bool,
    /// Local writes it has not acknowledged yet; `None` until the store's outbox has been read
    /// (just after start).
    pub waiting: Option<u64>,
}

impl Upstream {
    /// Entries not acknowledged, of those the outbox has given numbers to.
    fn waiting(&self, last: u64) -> u64 {
        let ahead = self.acked_ahead.iter().filter(|s| **s <= last).count() as u64;
        last.saturating_sub(self.acked).saturating_sub(ahead)
    }
}

impl Peer {
    /// Adds an upstream (a `ws://` or `wss://` URL); the first dial is requested at once.
    pub fn add_upstream(&mut self, url: &str) -> RemoteId {
        let first = !self.has_upstreams();
        let id = self.add_remote(url);
        if let Some(r) = self.remote_mut(id) {
            r.upstream = Some(Box::default());
        }
        if first {
            self.issue(OpPurpose::OutboxStatus, |op| StoreOp::OutboxStatus { op });
        }
        id
    }

    /// Where each upstream stands, in the order they were added.
    pub fn upstreams(&self) -> Vec<UpstreamStatus> {
        self.remotes
            .iter()
            .filter_map(|r| {
                let up = r.upstream.as_ref()?;
                Some(UpstreamStatus {
                    url: r.url.clone(),
                    connected: matches!(r.state, super::RemoteState::Open(_)),
                    waiting: self
                        .outbox_log
                        .loaded
                        .then(|| up.waiting(self.outbox_log.last)),
                })
            })
            .collect()
    }

    pub(super) fn has_upstreams(&self) -> bool {
        self.remotes.iter().any(|r| r.upstream.is_some())
    }

    /// Whether `conn` is a connection to an upstream.
    pub(super) fn is_upstream_conn(&self, conn: ConnId) -> bool {
        self.conns
            .get(&conn)
            .and_then(|c| c.remote)
            .and_then(|id| self.remotes.get(id.0 as usize))
            .is_some_and(|r| r.upstream.is_some())
    }

    fn upstream_mut(&mut self, id: RemoteId) -> Option<&mut Upstream> {
        self.remotes
            .get_mut(id.0 as usize)
            .and_then(|r| r.upstream.as_deref_mut())
    }

    /// The upstreams connected now, with their connections.
    fn open_upstreams(&self) -> Vec<(RemoteId, ConnId)> {
        self.remotes
            .iter()
            .enumerate()
            .filter(|(_, r)| r.upstream.is_some())
            .filter_map(|(i, r)| match r.state {
                super::RemoteState::Open(conn) => Some((RemoteId(i as u32), conn)),
                _ => None,
            })
            .collect()
    }

    // Reads.

    /// A local client's GET: asks every connected upstream too, and, if one is, lets the local
    /// "not found" wait for its answer.
    pub(super) fn ask_upstreams(&mut self, from: ConnId, msg_id: &str, forward: &Forward) {
        if !self.has_upstreams() || self.is_upstream_conn(from) {
            return;
        }
        let mut get = String::with_capacity(48);
        wire::write_get(&mut get, &forward.get);
        self.remember_get(&get);
        if let wire::Get::Node { soul, .. } = &forward.get {
            if self.interest.len() < self.limits.max_remote_gets {
                self.interest.insert(soul.clone());
            }
        }
        let open = self.open_upstreams();
        if open.is_empty() && !self.dialing_upstreams() {
            return; // offline: the local answer is the answer
        }
        let msg = self.forwarded_get(msg_id, &forward.get, &[]);
        for (_, conn) in &open {
            self.send(*conn, msg.clone());
        }
        if self.dialing_upstreams() && self.asks_on_connect.len() < self.limits.max_remote_gets {
            self.asks_on_connect.push(msg);
        }
        if self.awaiting_upstream.len() < self.limits.max_remote_gets {
            let at = self.now.mono + Duration::from_millis(self.limits.upstream_wait_ms);
            let asker = self.conn_ref(from);
            self.awaiting_upstream.insert(
                msg_id.to_owned(),
                Awaiting {
                    asker,
                    until: at,
                    held: false,
                },
            );
            self.upstream_deadlines.insert((at, msg_id.to_owned()));
        }
    }

    /// Whether an upstream is being dialled (its answer may come soon).
    fn dialing_upstreams(&self) -> bool {
        self.remotes
            .iter()
            .any(|r| r.upstream.is_some() && r.state == super::RemoteState::Dialing)
    }

    /// A dial of an upstream failed: if no upstream is connected or being dialled now, the GETs
    /// waiting for one are answered here at once.
    pub(super) fn upstream_dial_failed(&mut self) {
        if !self.open_upstreams().is_empty() || self.dialing_upstreams() {
            return;
        }
        self.asks_on_connect.clear();
        self.upstream_deadlines.clear();
        for (msg_id, wait) in std::mem::take(&mut self.awaiting_upstream) {
            self.stop_waiting(&msg_id, wait);
        }
    }

    /// Holds back the local "not found" for `msg_id` when an upstream's answer may come; false
    /// when it should go now.
    pub(super) fn hold_not_found(&mut self, msg_id: &str) -> bool {
        match self.awaiting_upstream.get_mut(msg_id) {
            Some(wait) => {
                wait.held = true;
                true
            }
            None => false,
        }
    }

    /// The asker of `msg_id` was answered (here, or by an upstream): nothing waits any more.
    pub(super) fn answered_from_anywhere(&mut self, msg_id: &str) {
        if let Some(wait) = self.awaiting_upstream.remove(msg_id) {
            self.upstream_deadlines
                .remove(&(wait.until, msg_id.to_owned()));
        }
    }

    /// No upstream answer will come for `msg_id`: the "not found" held back goes out. (One not
    /// held back yet goes out when the local read ends, as no wait is left for it.)
    fn stop_waiting(&mut self, msg_id: &str, wait: Awaiting) {
        if wait.held {
            let id = self.new_id();
            self.send_to(wait.asker, wire::not_found(&id, msg_id));
        }
    }

    /// Askers whose upstreams did not answer in time get the local "not found".
    fn expire_upstream_waits(&mut self) {
        while let Some((at, msg_id)) = self.upstream_deadlines.first().cloned() {
            if at > self.now.mono {
                break;
            }
            self.upstream_deadlines.pop_first();
            if let Some(wait) = self.awaiting_upstream.remove(&msg_id) {
                self.stop_waiting(&msg_id, wait);
            }
        }
    }

    /// Whether a put from an upstream may be merged into `soul`: it was read or written here,
    /// or some local connection is subscribed to it (a relay link wants everything).
    pub(super) fn wanted_here(&self, soul: &crate::Soul) -> bool {
        self.interest.contains(soul)
            || self
                .subs
                .subscribers(soul)
                .into_iter()
                .any(|c| !self.is_upstream_conn(c))
    }

    /// A soul written here: the upstreams are asked for it once (and again on every
    /// reconnect), so that what others write to it reaches this peer too.
    pub(super) fn written_here(&mut self, soul: &crate::Soul) {
        if self.interest.contains(soul) || self.interest.len() >= self.limits.max_remote_gets {
            return;
        }
        self.interest.insert(soul.clone());
        let mut get = String::with_capacity(soul.as_str().len() + 8);
        get.push_str("{\"#\":");
        crate::json::write_string(&mut get, soul.as_str());
        get.push('}');
        self.remember_get(&get);
        for (_, conn) in self.open_upstreams() {
            self.ask_as_self(conn, &get);
        }
    }

    /// Sends `get` (a GET's JSON body) to `conn` with a new id of this peer's own, so the
    /// answers are merged here and not routed on.
    fn ask_as_self(&mut self, conn: ConnId, get: &str) {
        let msg_id = self.new_id();
        let mut msg = String::with_capacity(get.len() + 48);
        msg.push_str("{\"#\":");
        crate::json::write_string(&mut msg, &msg_id);
        msg.push_str(",\"get\":");
        msg.push_str(get);
        msg.push('}');
        self.dedup.check_and_track(&msg_id, conn, self.now.mono);
        self.send(conn, msg);
    }

    /// A put arrived from an upstream: keeps the nodes some local connection asked for, and
    /// drops the rest. `None` when nothing is left.
    pub(super) fn keep_wanted(&self, mut graph: Graph) -> Option<Graph> {
        graph.nodes.retain(|n| self.wanted_here(&n.soul));
        (!graph.nodes.is_empty()).then_some(graph)
    }

    // Writes.

    /// The outbox's status was read: the last number, and each upstream's mark.
    pub(super) fn on_outbox_status(&mut self, result: StoreResult) {
        let StoreResult::OutboxStatus { last, marks } = result else {
            // The store cannot keep an outbox: writes go on being refused by it (their
            // appends fail), and nothing is sent.
            if let StoreResult::Failed { reason } = result {
                self.outputs
                    .push_back(super::Output::Event(super::Event::StoreFailed { reason }));
            }
            return;
        };
        self.outbox_log.loaded = true;
        self.outbox_log.last = self.outbox_log.last.max(last);
        let marks: BTreeMap<String, u64> = marks.into_iter().collect();
        for i in 0..self.remotes.len() {
            let url = self.remotes[i].url.clone();
            if let Some(up) = self.remotes[i].upstream.as_deref_mut() {
                let mark = marks.get(&url).copied().unwrap_or(0);
                up.acked = up.acked.max(mark);
                up.mark_saved = up.acked;
                up.next = up.next.max(up.acked + 1);
            }
        }
        self.pump_upstreams();
    }

    /// Appends a local write to the outbox, as one more part of its put.
    pub(super) fn append_to_outbox(&mut self, put: u64, graph: &Graph) {
        let mut text = String::new();
        graph.write_json(&mut text);
        let entry: Arc<str> = text.as_str().into();
        self.issue(
            OpPurpose::OutboxAppend {
                put,
                entry: entry.clone(),
            },
            |op| StoreOp::OutboxAppend { op, entry: text },
        );
    }

    /// Appends the part of a local write that waited for its state's time, as one more part of
    /// its put (issued just before its merge, so both commit together).
    pub(super) fn append_deferred_to_outbox(
        &mut self,
        put: u64,
        soul: &Soul,
        fields: &[(Key, Field)],
    ) {
        if let Some(pending) = self.puts.get_mut(&put) {
            pending.parts_left += 1;
        }
        let graph = Graph {
            nodes: vec![Node {
                soul: soul.clone(),
                fields: fields.iter().cloned().collect(),
            }],
        };
        self.append_to_outbox(put, &graph);
    }

    /// An append committed (its number) or failed.
    pub(super) fn on_outbox_appended(&mut self, put: u64, entry: Arc<str>, result: StoreResult) {
        let failure = match result {
            StoreResult::Appended { seq } => {
                self.outbox_log.last = self.outbox_log.last.max(seq);
                self.outbox_log.recent_bytes += entry.len();
                self.outbox_log.recent.insert(seq, entry);
                while self.outbox_log.recent_bytes > RECENT_BYTES {
                    let Some((_, old)) = self.outbox_log.recent.pop_first() else {
                        break;
                    };
                    self.outbox_log.recent_bytes -= old.len();
                }
                self.pump_upstreams();
                None
            }
            StoreResult::Failed { reason } => Some(format!("Storage failed: {reason}")),
            _ => Some("Storage failed: the store answered an append with something else".into()),
        };
        self.put_part_done(put, failure);
    }

    /// Sends every connected upstream what it can take of the outbox.
    pub(super) fn pump_upstreams(&mut self) {
        for (id, conn) in self.open_upstreams() {
            self.pump(id, conn);
        }
    }

    fn pump(&mut self, id: RemoteId, conn: ConnId) {
        if !self.outbox_log.loaded {
            return;
        }
        let window = self.limits.max_upstream_in_flight;
        let last = self.outbox_log.last;
        loop {
            let Some(up) = self.upstream_mut(id) else {
                return;
            };
            if up.in_flight.len() >= window || up.next > last {
                return;
            }
            let seq = up.next;
            if seq <= up.acked || up.acked_ahead.contains(&seq) {
                up.next += 1;
                continue;
            }
            let entry = match up.buffered.remove(&seq) {
                Some(entry) => entry,
                None => match self.outbox_log.recent.get(&seq) {
                    Some(entry) => entry.clone(),
                    None => {
                        let Some(up) = self.upstream_mut(id) else {
                            return;
                        };
                        if !up.reading {
                            up.reading = true;
                            self.issue(OpPurpose::OutboxRead { remote: id }, |op| {
                                StoreOp::OutboxRead {
                                    op,
                                    after: seq - 1,
                                    budget: READ_BYTES,
                                }
                            });
                        }
                        return;
                    }
                },
            };
            if let Some(up) = self.upstream_mut(id) {
                up.next += 1;
            }
            self.send_entry(id, conn, seq, entry);
        }
    }

    fn send_entry(&mut self, id: RemoteId, conn: ConnId, seq: u64, entry: Arc<str>) {
        let msg_id = self.new_id();
        // An upstream that sends it back (a mesh) finds it already seen.
        self.dedup.check_and_track(&msg_id, conn, self.now.mono);
        self.send(
            conn,
            wire::put_message(&msg_id, None, entry.len(), |out| out.push_str(&entry)),
        );
        let sent = self.now.mono;
        if let Some(up) = self.upstream_mut(id) {
            up.in_flight.insert(
                msg_id,
                InFlight {
                    seq,
                    entry,
                    sent,
                    probe: None,
                },
            );
        }
    }

    /// Entries read from the store for upstream `id`.
    pub(super) fn on_outbox_read(&mut self, id: RemoteId, result: StoreResult) {
        let entries = match result {
            StoreResult::Outbox { entries } => entries,
            StoreResult::Failed { reason } => {
                self.outputs
                    .push_back(super::Output::Event(super::Event::StoreFailed { reason }));
                Vec::new()
            }
            _ => Vec::new(),
        };
        let Some(up) = self.upstream_mut(id) else {
            return;
        };
        up.reading = false;
        for (seq, entry) in entries {
            if seq >= up.next {
                up.buffered.insert(seq, entry.into());
            }
        }
        if let Some(super::RemoteState::Open(conn)) =
            self.remotes.get(id.0 as usize).map(|r| r.state)
        {
            self.pump(id, conn);
        }
    }

    /// A reply from upstream `id` to something this peer sent it: an acknowledgement (or a
    /// refusal) of an outbox entry, or the answer to a read-back.
    pub(super) fn upstream_replied(&mut self, id: RemoteId, msg: &Message) {
        let Some(to) = msg.reply_to.as_deref() else {
            return;
        };
        let Some(up) = self.upstream_mut(id) else {
            return;
        };
        if let Some(put_id) = up.probes.get(to).cloned() {
            return self.on_probe_answer(id, &put_id, to, msg);
        }
        if !up.in_flight.contains_key(to) {
            return;
        }
        if let Some(err) = &msg.err {
            if err.starts_with("Server busy") {
                // Not taken for now: sent again after a while (as an unacknowledged one).
                return;
            }
            // Refused for good (a rule the upstream keeps that this peer does not): it is not
            // sent again, and the refusal is told.
            self.outputs
                .push_back(super::Output::Event(super::Event::UpstreamRefused {
                    remote: id,
                    reason: err.clone(),
                }));
        }
        self.entry_acknowledged(id, to);
    }

    fn entry_acknowledged(&mut self, id: RemoteId, put_id: &str) {
        let Some(up) = self.upstream_mut(id) else {
            return;
        };
        let Some(done) = up.in_flight.remove(put_id) else {
            return;
        };
        if let Some(probe) = &done.probe {
            for get in &probe.asked {
                up.probes.remove(get);
            }
        }
        if done.seq == up.acked + 1 {
            up.acked = done.seq;
            while up.acked_ahead.remove(&(up.acked + 1)) {
                up.acked += 1;
            }
        } else if done.seq > up.acked {
            up.acked_ahead.insert(done.seq);
        }
        self.save_marks();
        if let Some(super::RemoteState::Open(conn)) =
            self.remotes.get(id.0 as usize).map(|r| r.state)
        {
            self.pump(id, conn);
        }
    }

    /// Writes each upstream's mark that moved (one write at a time per upstream), trimming what
    /// every upstream has.
    fn save_marks(&mut self) {
        if !self.outbox_log.loaded {
            return;
        }
        let trim = self
            .remotes
            .iter()
            .filter_map(|r| r.upstream.as_ref().map(|u| u.acked))
            .min()
            .unwrap_or(0);
        for i in 0..self.remotes.len() {
            let url = self.remotes[i].url.clone();
            let Some(up) = self.remotes[i].upstream.as_deref_mut() else {
                continue;
            };
            if up.mark_writing || up.mark_saved >= up.acked {
                continue;
            }
            up.mark_writing = true;
            let upto = up.acked;
            self.issue(
                OpPurpose::OutboxMark {
                    remote: RemoteId(i as u32),
                    upto,
                },
                |op| StoreOp::OutboxAcked {
                    op,
                    upstream: url,
                    upto,
                    trim,
                },
            );
        }
    }

    /// A mark was written (or failed: it is written again with the next acknowledgement).
    pub(super) fn on_mark_saved(&mut self, id: RemoteId, upto: u64, result: StoreResult) {
        if let Some(up) = self.upstream_mut(id) {
            up.mark_writing = false;
            if result == StoreResult::Done {
                up.mark_saved = up.mark_saved.max(upto);
            }
        }
        self.save_marks();
    }

    /// The runtime connected an upstream: ask again what was asked, and send it the outbox from
    /// its mark.
    pub(super) fn upstream_connected(&mut self, id: RemoteId, conn: ConnId) {
        let gets: Vec<String> = self
            .remotes
            .get(id.0 as usize)
            .map(|r| r.gets.iter().cloned().collect())
            .unwrap_or_default();
        for get in gets {
            self.ask_as_self(conn, &get);
        }
        // GETs made while it was being dialled, asked with their own ids so the answers reach
        // their askers.
        for msg in std::mem::take(&mut self.asks_on_connect) {
            self.send(conn, msg);
        }
        if let Some(up) = self.upstream_mut(id) {
            up.next = up.acked + 1;
            up.in_flight.clear();
            up.probes.clear();
        }
        self.pump(id, conn);
    }

    /// An upstream's connection closed: what was in flight is sent again on the next one.
    pub(super) fn upstream_disconnected(&mut self, id: RemoteId) {
        if let Some(up) = self.upstream_mut(id) {
            up.in_flight.clear();
            up.probes.clear();
            up.buffered.clear();
            up.next = up.acked + 1;
        }
    }

    // Time.

    /// The next upstream timer: a GET's wait, or an entry's wait for its acknowledgement.
    pub(super) fn next_upstream_timer(&self) -> Option<Instant> {
        let ack_wait = Duration::from_millis(self.limits.upstream_ack_ms);
        let acks = self
            .remotes
            .iter()
            .filter_map(|r| r.upstream.as_ref())
            .flat_map(|u| u.in_flight.values().map(|f| f.sent + ack_wait))
            .min();
        let waits = self.upstream_deadlines.first().map(|(at, _)| *at);
        [acks, waits].into_iter().flatten().min()
    }

    pub(super) fn upstream_timers(&mut self) {
        self.expire_upstream_waits();
        let ack_wait = Duration::from_millis(self.limits.upstream_ack_ms);
        for (id, conn) in self.open_upstreams() {
            let now = self.now.mono;
            let due: Vec<String> = self
                .upstream_mut(id)
                .map(|up| {
                    up.in_flight
                        .iter()
                        .filter(|(_, f)| f.sent + ack_wait <= now)
                        .map(|(put_id, _)| put_id.clone())
                        .collect()
                })
                .unwrap_or_default();
            for put_id in due {
                self.unacknowledged(id, conn, &put_id);
            }
        }
    }

    /// An entry waited its time without an acknowledgement: read its nodes back (the first
    /// time), or send it again (after a read-back that did not find it all).
    fn unacknowledged(&mut self, id: RemoteId, conn: ConnId, put_id: &str) {
        let now = self.now.mono;
        let Some(up) = self.upstream_mut(id) else {
            return;
        };
        let Some(flight) = up.in_flight.get_mut(put_id) else {
            return;
        };
        if flight.probe.is_some() {
            // The read-back did not settle it in time either: send it again.
            let flight = up.in_flight.remove(put_id).expect("found above");
            if let Some(probe) = &flight.probe {
                for get in &probe.asked {
                    up.probes.remove(get);
                }
            }
            return self.send_entry(id, conn, flight.seq, flight.entry);
        }
        flight.sent = now;
        let entry = flight.entry.clone();
        let Ok(graph) = serde_json::from_str::<serde_json::Value>(&entry)
            .map_err(|e| e.to_string())
            .and_then(|json| Graph::from_json(&json, &self.limits).map_err(|e| e.to_string()))
        else {
            return; // an entry this peer wrote itself always reads back; if not, it waits
        };
        let mut probe = Probe::default();
        let mut gets = Vec::new();
        for node in &graph.nodes {
            for (key, field) in &node.fields {
                probe.unconfirmed.insert(
                    (node.soul.as_str().to_owned(), key.as_str().to_owned()),
                    field.clone(),
                );
            }
            let get_id = self.new_id();
            let mut msg = String::with_capacity(48);
            msg.push_str("{\"#\":");
            crate::json::write_string(&mut msg, &get_id);
            msg.push_str(",\"get\":{\"#\":");
            crate::json::write_string(&mut msg, node.soul.as_str());
            msg.push_str("}}");
            probe.asked.insert(get_id.clone());
            gets.push((get_id, msg));
        }
        let Some(up) = self.upstream_mut(id) else {
            return;
        };
        for (get_id, _) in &gets {
            up.probes.insert(get_id.clone(), put_id.to_owned());
        }
        if let Some(flight) = up.in_flight.get_mut(put_id) {
            flight.probe = Some(probe);
        }
        for (get_id, msg) in gets {
            self.dedup.check_and_track(&get_id, conn, now);
            self.send(conn, msg);
        }
    }

    /// An answer to a read-back GET `get_id` of the entry sent as `put_id`.
    fn on_probe_answer(&mut self, id: RemoteId, put_id: &str, get_id: &str, msg: &Message) {
        let more = msg.extra("more").is_some_and(|m| m == true);
        let Some(up) = self.upstream_mut(id) else {
            return;
        };
        let Some(probe) = up.in_flight.get_mut(put_id).and_then(|f| f.probe.as_mut()) else {
            up.probes.remove(get_id);
            return;
        };
        if let Body::Put(graph) = &msg.body {
            for node in &graph.nodes {
                for (key, field) in &node.fields {
                    let at = (node.soul.as_str().to_owned(), key.as_str().to_owned());
                    // Held there if merging ours into theirs would change nothing (a newer
                    // state, or the same state with a value that wins the tie or is ours).
                    if probe.unconfirmed.get(&at).is_some_and(|ours| {
                        !matches!(ham::merge(ours, Some(field)), ham::Decision::Accept)
                    }) {
                        probe.unconfirmed.remove(&at);
                    }
                }
            }
        }
        if !more {
            probe.asked.remove(get_id);
        }
        let (confirmed, settled) = (probe.unconfirmed.is_empty(), probe.asked.is_empty());
        if !more {
            up.probes.remove(get_id);
        }
        if confirmed {
            self.entry_acknowledged(id, put_id);
        } else if settled {
            // Read back and not all there: send it again now.
            let Some(super::RemoteState::Open(conn)) =
                self.remotes.get(id.0 as usize).map(|r| r.state)
            else {
                return;
            };
            let Some(up) = self.upstream_mut(id) else {
                return;
            };
            if let Some(flight) = up.in_flight.remove(put_id) {
                self.send_entry(id, conn, flight.seq, flight.entry);
            }
        }
    }

    /// The asker of a GET answered by an upstream (its reply routed back) waits no more.
    pub(super) fn upstream_answered(&mut self, msg: &Message) {
        if let Some(to) = msg.reply_to.as_deref() {
            self.answered_from_anywhere(to);
        }
    }
}
