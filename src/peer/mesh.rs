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
        self.ask_for_everything(conn);
    }

    /// Forwards a GET that found nothing here to every link but the one it came from and those
    /// its `><` names, keeping its `#` so that replies can find their way back. Its own `><` names
    /// this peer and every link it goes to, so none of them sends it to another.
    pub(super) fn forward_get(&mut self, from: ConnId, msg_id: &str, forward: &Forward) {
        let links: Vec<(ConnId, Option<String>)> = self
            .conns
            .iter()
            .filter(|(c, state)| state.link && **c != from)
            .filter(|(_, state)| !forward.skips(state.pid.as_deref()))
            .map(|(c, state)| (*c, state.pid.clone()))
            .collect();
        if let Get::Node { .. } = forward.get {
            let mut get = String::with_capacity(48);
            wire::write_get(&mut get, &forward.get);
            self.remember_get(&get);
        }
        if links.is_empty() {
            return;
        }
        let mut skip = self.pid.clone();
        for pid in links.iter().filter_map(|(_, pid)| pid.as_deref()).take(7) {
            skip.push(',');
            skip.push_str(pid);
        }
        let mut msg = String::with_capacity(64);
        msg.push_str("{\"#\":");
        json::write_string(&mut msg, msg_id);
        msg.push_str(",\"get\":");
        wire::write_get(&mut msg, &forward.get);
        msg.push_str(",\"><\":");
        json::write_string(&mut msg, &skip);
        msg.push('}');
        for (link, _) in links {
            self.send(link, msg.clone());
        }
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
