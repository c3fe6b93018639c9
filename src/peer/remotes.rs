//! Configured peers: relays this peer dials itself, keeps dialling with capped exponential backoff
//! and jitter, and keeps in step across reconnects.
//!
//! The core decides when to dial ([`Output::Dial`]); the runtime opens the socket and reports
//! [`Input::Dialled`] or [`Input::DialFailed`]. A configured peer is a link that receives every
//! committed change. Changes it has not acknowledged, and changes made while it was away, are kept
//! (bounded by [`Limits::max_redelivery_bytes`](crate::Limits::max_redelivery_bytes)) and sent again
//! when it is back, with the GETs this peer forwarded to it, so its subscriptions are renewed.
//!
//! [`Input::Dialled`]: super::Input::Dialled
//! [`Input::DialFailed`]: super::Input::DialFailed

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use super::{ConnId, Direction, Output, Peer};
use crate::lex::Range;
use crate::wire;

/// A configured peer: its index in [`Config::peers`](super::Config::peers), or as returned by
/// [`Peer::add_remote`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RemoteId(pub u32);

/// Where a configured peer stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RemoteState {
    /// Waiting to dial again, until this instant.
    Waiting(Instant),
    /// A dial is under way.
    Dialing,
    /// Connected on this connection.
    Open(ConnId),
    /// Another connection already joins us to the same peer (it dialled us): no need to dial.
    Covered(ConnId),
    /// Not dialled again: it turned out to be this peer itself.
    Stopped,
}

/// A change kept for a configured peer until it acknowledges it.
#[derive(Debug)]
struct Pending {
    /// The graph, as JSON text.
    graph: String,
    /// The id it was last sent with, while that connection is open.
    sent_as: Option<String>,
}

#[derive(Debug)]
pub(super) struct Remote {
    pub(super) url: String,
    pub(super) state: RemoteState,
    /// Failed dials (or connections lost before a handshake) in a row.
    failures: u32,
    pending: BTreeMap<u64, Pending>,
    /// Message id sent → its entry in `pending`.
    awaiting_ack: BTreeMap<String, u64>,
    next_seq: u64,
    pending_bytes: usize,
    /// GETs forwarded to it (as JSON text), to renew after a reconnect.
    pub(super) gets: BTreeSet<String>,
    /// For an upstream (synced on demand, not a relay link): its side of the outbox.
    pub(super) upstream: Option<Box<super::upstream::Upstream>>,
}

impl Remote {
    fn forget_sent(&mut self) {
        self.awaiting_ack.clear();
        for p in self.pending.values_mut() {
            p.sent_as = None;
        }
    }
}

/// What a runtime or operator may want to know about a configured peer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RemoteStatus {
    /// The address dialled.
    pub url: String,
    /// Where it stands.
    pub state: RemoteState,
    /// Failed dials in a row.
    pub failures: u32,
    /// Changes kept for it, not yet acknowledged.
    pub pending: usize,
}

impl Peer {
    /// Adds a peer to dial (a `ws://` or `wss://` URL); the first dial is requested at once.
    pub fn add_remote(&mut self, url: &str) -> RemoteId {
        let id = RemoteId(self.remotes.len() as u32);
        self.remotes.push(Remote {
            url: url.to_owned(),
            state: RemoteState::Dialing,
            failures: 0,
            pending: BTreeMap::new(),
            awaiting_ack: BTreeMap::new(),
            next_seq: 0,
            pending_bytes: 0,
            gets: BTreeSet::new(),
            upstream: None,
        });
        self.dial(id);
        id
    }

    /// The configured peers, in the order they were added.
    pub fn remotes(&self) -> Vec<RemoteStatus> {
        self.remotes
            .iter()
            .map(|r| RemoteStatus {
                url: r.url.clone(),
                state: r.state,
                failures: r.failures,
                pending: r.pending.len(),
            })
            .collect()
    }

    fn dial(&mut self, id: RemoteId) {
        let r = &mut self.remotes[id.0 as usize];
        r.state = RemoteState::Dialing;
        self.outputs.push_back(Output::Dial {
            remote: id,
            url: r.url.clone(),
        });
    }

    /// The wait before the next dial after `failures` failures in a row: doubling from the
    /// minimum up to the maximum, less up to half at random so that peers restarted together do
    /// not dial in step.
    fn backoff(&mut self, failures: u32) -> Duration {
        let min = self.limits.reconnect_min_ms;
        let full = min
            .saturating_mul(1u64 << failures.min(30))
            .min(self.limits.reconnect_max_ms);
        let jitter = self.rng.next_u64() % (full / 2 + 1);
        Duration::from_millis((full - jitter).max(1))
    }

    fn retry_later(&mut self, id: RemoteId) {
        let failures = self.remotes[id.0 as usize].failures;
        let wait = self.backoff(failures);
        let r = &mut self.remotes[id.0 as usize];
        r.failures = failures.saturating_add(1);
        r.state = RemoteState::Waiting(self.now.mono + wait);
        r.forget_sent();
    }

    pub(super) fn remote_mut(&mut self, id: RemoteId) -> Option<&mut Remote> {
        self.remotes.get_mut(id.0 as usize)
    }

    /// The runtime connected to a configured peer.
    pub(super) fn on_dialled(
        &mut self,
        id: RemoteId,
        conn: ConnId,
    ) -> Result<(), super::ApiMisuse> {
        let Some(remote) = self.remote_mut(id) else {
            return Err(super::ApiMisuse::UnknownRemote(id));
        };
        let upstream = remote.upstream.is_some();
        // A relay link is asked for everything; an upstream only for what is read here.
        self.open_conn(conn, Direction::Outbound, !upstream)?;
        let Some(c) = self.conns.get_mut(&conn) else {
            // Refused (the connection limit): try again later.
            self.retry_later(id);
            return Ok(());
        };
        c.remote = Some(id);
        c.principal = crate::access::Principal::Peer;
        self.remotes[id.0 as usize].state = RemoteState::Open(conn);
        if upstream {
            self.upstream_connected(id, conn);
            return Ok(());
        }
        // A configured peer receives every committed change.
        self.subs.subscribe_range(conn, &Range::default());
        self.redeliver(id, conn);
        Ok(())
    }

    /// Sends a returning peer what it missed: kept changes, then the GETs it was asked.
    fn redeliver(&mut self, id: RemoteId, conn: ConnId) {
        let r = &self.remotes[id.0 as usize];
        let graphs: Vec<(u64, String)> = r
            .pending
            .iter()
            .map(|(seq, p)| (*seq, p.graph.clone()))
            .collect();
        let gets: Vec<String> = r.gets.iter().cloned().collect();
        for (seq, graph) in graphs {
            let msg_id = self.new_id();
            self.send(
                conn,
                wire::put_message(&msg_id, None, graph.len(), |out| out.push_str(&graph)),
            );
            let r = &mut self.remotes[id.0 as usize];
            if let Some(p) = r.pending.get_mut(&seq) {
                p.sent_as = Some(msg_id.clone());
                r.awaiting_ack.insert(msg_id, seq);
            }
        }
        for get in gets {
            let msg_id = self.new_id();
            let mut msg = String::with_capacity(get.len() + 32);
            msg.push_str("{\"#\":");
            crate::json::write_string(&mut msg, &msg_id);
            msg.push_str(",\"get\":");
            msg.push_str(&get);
            msg.push('}');
            // Replies come back to us: remember the id as ours, so they are not routed on.
            self.dedup.check_and_track(&msg_id, conn, self.now.mono);
            self.send(conn, msg);
        }
    }

    pub(super) fn on_dial_failed(&mut self, id: RemoteId) -> Result<(), super::ApiMisuse> {
        match self.remote_mut(id).map(|r| r.state) {
            None => Err(super::ApiMisuse::UnknownRemote(id)),
            Some(RemoteState::Dialing) => {
                self.retry_later(id);
                if self.remotes[id.0 as usize].upstream.is_some() {
                    self.upstream_dial_failed();
                }
                Ok(())
            }
            Some(_) => Ok(()),
        }
    }

    /// A connection closed: a configured peer on it is dialled again after a backoff; one that
    /// was covered by it is dialled at once.
    pub(super) fn remote_conn_closed(&mut self, conn: ConnId) {
        for i in 0..self.remotes.len() {
            let id = RemoteId(i as u32);
            match self.remotes[i].state {
                RemoteState::Open(c) if c == conn => {
                    if self.remotes[i].upstream.is_some() {
                        self.upstream_disconnected(id);
                    }
                    self.retry_later(id)
                }
                RemoteState::Covered(c) if c == conn => self.dial(id),
                _ => {}
            }
        }
    }

    /// Dials the configured peers whose wait is over.
    pub(super) fn remote_timers(&mut self) {
        for i in 0..self.remotes.len() {
            if let RemoteState::Waiting(at) = self.remotes[i].state {
                if at <= self.now.mono {
                    self.dial(RemoteId(i as u32));
                }
            }
        }
    }

    /// The earliest redial.
    pub(super) fn next_redial(&self) -> Option<Instant> {
        self.remotes
            .iter()
            .filter_map(|r| match r.state {
                RemoteState::Waiting(at) => Some(at),
                _ => None,
            })
            .min()
    }

    /// Whether any peer is configured.
    pub(super) fn has_remotes(&self) -> bool {
        !self.remotes.is_empty()
    }

    /// Whether a relay link is away (and will want the changes made meanwhile). Upstreams
    /// catch up from the outbox instead.
    pub(super) fn has_absent_remotes(&self) -> bool {
        self.remotes.iter().any(|r| {
            r.upstream.is_none()
                && matches!(r.state, RemoteState::Waiting(_) | RemoteState::Dialing)
        })
    }

    /// Keeps a change for every relay link that is away (it gets it on return).
    pub(super) fn keep_for_absent_remotes(&mut self, graph: &str) {
        for i in 0..self.remotes.len() {
            if self.remotes[i].upstream.is_none()
                && matches!(
                    self.remotes[i].state,
                    RemoteState::Waiting(_) | RemoteState::Dialing
                )
            {
                self.keep(RemoteId(i as u32), graph, None);
            }
        }
    }

    /// Keeps a change for a relay link until it is acknowledged (an upstream has the outbox).
    pub(super) fn keep(&mut self, id: RemoteId, graph: &str, sent_as: Option<String>) {
        let max = self.limits.max_redelivery_bytes;
        let r = &mut self.remotes[id.0 as usize];
        if r.upstream.is_some() {
            return;
        }
        let seq = r.next_seq;
        r.next_seq += 1;
        if let Some(sent) = &sent_as {
            r.awaiting_ack.insert(sent.clone(), seq);
        }
        r.pending_bytes += graph.len();
        r.pending.insert(
            seq,
            Pending {
                graph: graph.to_owned(),
                sent_as,
            },
        );
        while r.pending_bytes > max {
            let Some((_, oldest)) = r.pending.pop_first() else {
                break;
            };
            r.pending_bytes -= oldest.graph.len();
            if let Some(sent) = oldest.sent_as {
                r.awaiting_ack.remove(&sent);
            }
        }
    }

    /// A reply from a configured peer: an ack (or a refusal) of a change sent to it ends its
    /// redelivery.
    pub(super) fn remote_replied(&mut self, id: RemoteId, reply_to: &str) {
        let Some(r) = self.remote_mut(id) else {
            return;
        };
        if let Some(seq) = r.awaiting_ack.remove(reply_to) {
            if let Some(p) = r.pending.remove(&seq) {
                r.pending_bytes -= p.graph.len();
            }
        }
    }

    /// Remembers a GET forwarded to the links, to renew it with every configured peer that comes
    /// back later.
    pub(super) fn remember_get(&mut self, get_json: &str) {
        let max = self.limits.max_remote_gets;
        for r in &mut self.remotes {
            if r.state != RemoteState::Stopped && r.gets.len() < max {
                r.gets.insert(get_json.to_owned());
            }
        }
    }

    /// The handshake told us who is at the other end of `conn`. A connection to ourselves is
    /// closed (and its address never dialled again). Of two connections to the same peer, both
    /// ends keep the one dialled by the side with the smaller pid; if the same side dialled both,
    /// the newer one (a redial replaces a connection that may be dead without either side having
    /// noticed). Both ends decide alike, so they agree without a further message.
    pub(super) fn identified(&mut self, conn: ConnId, pid: &str) {
        let Some(c) = self.conns.get(&conn) else {
            return;
        };
        let remote = c.remote;
        if let Some(id) = remote {
            self.remotes[id.0 as usize].failures = 0;
        }
        if pid == self.pid {
            if let Some(id) = remote {
                self.remotes[id.0 as usize].state = RemoteState::Stopped;
            }
            self.outputs.push_back(Output::Close {
                conn,
                reason: "connected to itself".into(),
            });
            return;
        }
        let other = self
            .conns
            .iter()
            .find(|(id, o)| **id != conn && o.pid.as_deref() == Some(pid))
            .map(|(id, o)| (*id, o.outbound, o.remote));
        let Some((other, other_outbound, other_remote)) = other else {
            return;
        };
        let this_outbound = self.conns.get(&conn).is_some_and(|c| c.outbound);
        let keep_this = if this_outbound == other_outbound {
            true // the same side dialled both: `conn` is the newer
        } else {
            // Exactly one of the two was dialled by us; keep it if our pid is the smaller.
            this_outbound == (self.pid.as_str() < pid)
        };
        let (keep, drop, dropped_remote) = if keep_this {
            (conn, other, other_remote)
        } else {
            (other, conn, remote)
        };
        if let Some(id) = dropped_remote {
            self.remotes[id.0 as usize].state = RemoteState::Covered(keep);
        }
        self.outputs.push_back(Output::Close {
            conn: drop,
            reason: "a second connection to the same peer".into(),
        });
    }
}
