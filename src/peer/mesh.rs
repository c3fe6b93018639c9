//! The mesh: relay links, and the routing that lets requests and replies cross several hops.
//!
//! A connection becomes a *link* when we dial it (an outbound peer) or when it asks for every soul
//! (`{"get":{"#":{"*":""}}}`), which is how fibergun relays ask each other. On a link, both sides
//! ask for every soul: each receives the other's whole graph, page by page, and is then subscribed
//! to every change. So relays that were apart, or restarted, converge as soon as they reconnect,
//! and every committed change travels on. Changes are pushed only when a merge changed something,
//! so a write that comes round a ring a second time stops there.
//!
//! GETs that find nothing here are forwarded to the links (keeping their `#`); replies, acks and
//! errors go back along the connection their request came from, found in the dedup table.

use super::{ConnId, Peer};
use crate::json;
use crate::wire::{self, Get, Message};

/// A GET to send on to the links if nothing is found here, with its `><`: the peers it was
/// already sent to, which need not get it again.
#[derive(Clone, Debug)]
pub(super) struct Forward {
    pub(super) get: Get,
    skip: Option<String>,
}

impl Forward {
    pub(super) fn new(get: Get, skip: Option<String>) -> Forward {
        Forward { get, skip }
    }

    /// Whether the peer with this pid was already sent the request.
    fn skips(&self, pid: Option<&str>) -> bool {
        skip_list_names(self.skip.as_deref(), pid)
    }
}

/// Whether a `><` list names `pid`. GUN reads only its first 99 characters.
pub(super) fn skip_list_names(skip: Option<&str>, pid: Option<&str>) -> bool {
    let (Some(skip), Some(pid)) = (skip, pid) else {
        return false;
    };
    let head = match skip.char_indices().nth(99) {
        Some((cut, _)) => &skip[..cut],
        None => skip,
    };
    head.split(',').any(|p| p == pid)
}

impl Peer {
    /// Asks a connection for every soul: the answer is its whole graph, then every change to it.
    pub(super) fn ask_for_everything(&mut self, conn: ConnId) {
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        c.link = true;
        self.links.insert(conn);
        if c.asked_all {
            return;
        }
        c.asked_all = true;
        let id = self.new_id();
        let mut msg = String::with_capacity(48);
        msg.push_str("{\"#\":");
        json::write_string(&mut msg, &id);
        msg.push_str(",\"get\":{\"#\":{\"*\":\"\"}}}");
        self.send(conn, msg);
    }

    /// A connection asked for every soul: it is a relay. Ask it back, so both sides end up with
    /// the union of their graphs.
    pub(super) fn linked_by(&mut self, conn: ConnId) {
        if let Some(c) = self.conns.get_mut(&conn) {
            c.asked_us_all = true;
            c.upstream = Default::default();
        }
        self.ask_for_everything(conn);
    }

    /// A GET for a soul is being answered here: links that push only what they are asked for (a
    /// GUN JS relay we dialled) are asked too, once per distinct GET, so that later changes made
    /// there reach this relay and its subscribers. Links that asked us for everything keep us in
    /// step already.
    pub(super) fn subscribe_upstream(&mut self, from: ConnId, msg_id: &str, forward: &Forward) {
        if !matches!(forward.get, Get::Node { .. }) {
            return;
        }
        let asks_soul_by_soul = |c: &super::Conn| c.link && !c.asked_us_all;
        let any = self
            .links
            .iter()
            .any(|id| *id != from && self.conns.get(id).is_some_and(asks_soul_by_soul));
        if !any {
            return;
        }
        let mut get = String::with_capacity(48);
        wire::write_get(&mut get, &forward.get);
        let max = self.limits.max_subscriptions_per_connection;
        let mut targets = Vec::new();
        for id in &self.links {
            let Some(c) = self.conns.get_mut(id) else {
                continue;
            };
            if !asks_soul_by_soul(c) || *id == from || c.upstream.contains(&get) {
                continue;
            }
            if forward.skips(c.pid.as_deref()) {
                continue;
            }
            if c.upstream.len() < max {
                c.upstream.insert(get.clone());
            }
            targets.push((*id, c.pid.clone()));
        }
        if targets.is_empty() {
            return;
        }
        self.remember_get(&get);
        let pids: Vec<&str> = targets.iter().filter_map(|(_, p)| p.as_deref()).collect();
        let msg = self.forwarded_get(msg_id, &forward.get, &pids);
        for (target, _) in targets {
            self.send(target, msg.clone());
        }
    }

    /// Forwards a GET that found nothing here to every link but the one it came from, those its
    /// `><` names, and those [`Peer::subscribe_upstream`] already asked, keeping its `#` so that
    /// replies can find their way back. Its own `><` names this peer and every link it goes to, so
    /// none of them sends it to another.
    pub(super) fn forward_get(&mut self, from: ConnId, msg_id: &str, forward: &Forward) {
        if self.links.is_empty() && !self.has_remotes() {
            return; // a lone relay: nowhere to forward, nothing to remember
        }
        let mut get = String::with_capacity(48);
        wire::write_get(&mut get, &forward.get);
        let links: Vec<(ConnId, Option<String>)> = self
            .links
            .iter()
            .filter(|c| **c != from)
            .filter_map(|c| self.conns.get(c).map(|state| (*c, state)))
            .filter(|(_, state)| !forward.skips(state.pid.as_deref()))
            .filter(|(_, state)| state.asked_us_all || !state.upstream.contains(&get))
            .map(|(c, state)| (c, state.pid.clone()))
            .collect();
        if let Get::Node { .. } = forward.get {
            self.remember_get(&get);
        }
        if links.is_empty() {
            return;
        }
        let pids: Vec<&str> = links.iter().filter_map(|(_, pid)| pid.as_deref()).collect();
        let msg = self.forwarded_get(msg_id, &forward.get, &pids);
        for (link, _) in links {
            self.send(link, msg.clone());
        }
    }

    /// A GET as it is forwarded: its own `#`, and a `><` naming this peer and up to seven of the
    /// peers it goes to.
    pub(super) fn forwarded_get(&self, msg_id: &str, get: &Get, to: &[&str]) -> String {
        let mut skip = self.pid.clone();
        for pid in to.iter().take(7) {
            skip.push(',');
            skip.push_str(pid);
        }
        let mut msg = String::with_capacity(64);
        msg.push_str("{\"#\":");
        json::write_string(&mut msg, msg_id);
        msg.push_str(",\"get\":");
        wire::write_get(&mut msg, get);
        msg.push_str(",\"><\":");
        json::write_string(&mut msg, &skip);
        msg.push('}');
        msg
    }

    /// Sends a reply (data, ack or error) on to the connection its request came from, if that was
    /// another connection than the one the reply came on.
    pub(super) fn route_reply(&mut self, from: ConnId, msg: &Message) {
        let Some(to) = msg.reply_to.as_deref() else {
            return;
        };
        let Some(via) = self.dedup.via(to) else {
            return;
        };
        if via == from || !self.conns.contains_key(&via) {
            return;
        }
        self.send(via, wire::write_message(msg));
    }
}
