//! The operator's rules for what is served and taken, beyond SEA's: bans and takedowns
//! ([`crate::moderation`]), signed-only writes, space quotas and write rates per key
//! ([`crate::WritePolicy`]). They bind every connection, relay links included; only the operator
//! itself ([`Principal::Admin`]) is bound by none of them. Every refusal is an `err` naming its
//! rule, counted by rule, and told as [`Event::RuleRefused`] with the key, soul or space it
//! concerned (never the data).

use std::collections::BTreeSet;

use super::{ConnId, ErrorKind, Event, Output, Peer};
use crate::access::Principal;
use crate::graph::{Graph, Value};
use crate::moderation::Hidden;
use crate::sea::rules::{space, Space};
use crate::sea::SignedValue;
use crate::write_policy::Rule;

/// Spaces whose size is remembered at most (past it the table starts again: a space not known
/// is learned at its next write).
const MAX_SPACES: usize = 100_000;

/// A refusal: the rule, what it concerned, and the error text.
pub(super) struct Refusal {
    pub(super) rule: Rule,
    pub(super) subject: String,
    pub(super) text: String,
}

impl Refusal {
    fn new(rule: Rule, subject: impl Into<String>, text: String) -> Refusal {
        Refusal {
            rule,
            subject: subject.into(),
            text,
        }
    }
}

fn hidden_refusal(soul: &str, hidden: Hidden, writing: bool) -> Refusal {
    match hidden {
        Hidden::Reserved => Refusal::new(
            Rule::Reserved,
            "a reserved soul",
            "Access denied: this soul is reserved for the relay's operator.".into(),
        ),
        Hidden::TakenDown => Refusal::new(
            Rule::TakenDown,
            soul,
            format!("'{soul}' was taken down on this relay."),
        ),
        Hidden::OwnerBanned(owner) => {
            let text = if writing {
                format!("Key {owner} is banned on this relay.")
            } else {
                format!("'{soul}' is not served here: its owner {owner} is banned.")
            };
            Refusal::new(Rule::Banned, owner, text)
        }
    }
}

impl Peer {
    fn is_admin(&self, conn: ConnId) -> bool {
        self.conns
            .get(&conn)
            .is_some_and(|c| c.principal == Principal::Admin)
    }

    /// Why `conn` may not read `soul`, if it may not.
    pub(super) fn read_refusal(&self, conn: ConnId, soul: &str) -> Option<Refusal> {
        if self.is_admin(conn) {
            return None;
        }
        if let Some(hidden) = self.moderation.hidden(soul) {
            return Some(hidden_refusal(soul, hidden, false));
        }
        let allowed = match (&self.access, self.conns.get(&conn)) {
            (None, _) => true,
            (Some(policy), Some(c)) => policy.may_read(&c.principal, soul),
            (Some(_), None) => false,
        };
        (!allowed).then(|| {
            Refusal::new(
                Rule::Access,
                soul,
                format!("Access denied: this connection may not read '{soul}'."),
            )
        })
    }

    /// Why `conn` may not write `soul`, if it may not, by the rules that need only the soul.
    pub(super) fn write_refusal(&self, conn: ConnId, soul: &str) -> Option<Refusal> {
        if self.is_admin(conn) {
            return None;
        }
        if let Some(hidden) = self.moderation.hidden(soul) {
            return Some(hidden_refusal(soul, hidden, true));
        }
        let allowed = match (&self.access, self.conns.get(&conn)) {
            (None, _) => true,
            (Some(policy), Some(c)) => policy.may_write(&c.principal, soul),
            (Some(_), None) => false,
        };
        if !allowed {
            return Some(Refusal::new(
                Rule::Access,
                soul,
                format!("Access denied: this connection may not write '{soul}'."),
            ));
        }
        if self.writes.signed_only && space(soul) == Space::Public {
            return Some(Refusal::new(
                Rule::SignedOnly,
                soul,
                format!(
                    "This relay takes signed writes only: '{soul}' is in the public space. Write in a user space (~PUB…), under a content hash (#), or to an alias list (~@…)."
                ),
            ));
        }
        None
    }

    /// A put into a space already past its quota, as far as this peer knows the space's size.
    pub(super) fn quota_refusal(&self, conn: ConnId, graph: &Graph) -> Option<Refusal> {
        if self.is_admin(conn) {
            return None;
        }
        for node in &graph.nodes {
            let Some(space) = crate::store::space_of(node.soul.as_str()) else {
                continue;
            };
            let (quota, rule) = if space.is_empty() {
                (self.writes.shared_space_bytes, Rule::SharedQuota)
            } else {
                (self.writes.user_space_bytes, Rule::UserQuota)
            };
            let held = self.spaces.get(&space).copied().unwrap_or(0);
            if quota == 0 || held < quota {
                continue;
            }
            return Some(if space.is_empty() {
                Refusal::new(
                    rule,
                    "the public space",
                    format!(
                        "The public space of this relay is full ({held} bytes, its quota is {quota}): writes to it are refused."
                    ),
                )
            } else {
                Refusal::new(
                    rule,
                    space.clone(),
                    format!(
                        "The user space of {space} holds {held} bytes, its quota is {quota}: its writes are refused."
                    ),
                )
            });
        }
        None
    }

    /// Why a put is refused by its writers (the keys writing into user spaces in `graph`: each
    /// field's owner, or the holder of the owner's certificate who signed it): one is banned, or
    /// has no write left at its rate. Charges nothing: see [`Peer::charge_writers`].
    pub(super) fn writer_refusal(&self, conn: ConnId, graph: &Graph) -> Option<Refusal> {
        // Finding the writers parses every signed value: only when a rule asks for them.
        let rated = self.writes.writes_per_key_per_sec > 0.0;
        if self.is_admin(conn) || (!rated && !self.moderation.any_banned()) {
            return None;
        }
        let writers = writers(graph);
        if let Some(banned) = writers.iter().find(|w| self.moderation.is_banned(w)) {
            return Some(Refusal::new(
                Rule::Banned,
                banned.clone(),
                format!("Key {banned} is banned on this relay."),
            ));
        }
        let room = self
            .rates
            .has_room(writers.iter().map(String::as_str), self.now.mono);
        room.err().map(|key| self.rate_refusal(key))
    }

    /// Counts a put against its writers' rates, or refuses it if one has no write left. Called
    /// once its signatures hold, so a forger naming another key spends none of that key's rate.
    pub(super) fn charge_writers(&mut self, conn: ConnId, graph: &Graph) -> Option<Refusal> {
        if self.is_admin(conn) || self.writes.writes_per_key_per_sec <= 0.0 {
            return None;
        }
        let writers = writers(graph);
        let now = self.now.mono;
        let admitted = self.rates.admit(writers.iter().map(String::as_str), now);
        admitted.err().map(|key| self.rate_refusal(key))
    }

    fn rate_refusal(&self, key: &str) -> Refusal {
        let per_sec = self.writes.writes_per_key_per_sec;
        Refusal::new(
            Rule::Rate,
            key,
            format!("Too many writes by key {key}: at most {per_sec} a second on this relay; retry later."),
        )
    }

    /// Remembers a space's size, as a merge into it reported.
    pub(super) fn learn_space(&mut self, soul: &str, bytes: u64) {
        let Some(space) = crate::store::space_of(soul) else {
            return;
        };
        if self.spaces.len() >= MAX_SPACES && !self.spaces.contains_key(&space) {
            self.spaces.clear();
        }
        self.spaces.insert(space, bytes);
    }

    /// Answers a request refused by a rule: an `err` to `msg_id`, counted, and told.
    pub(super) fn refused_by(&mut self, conn: ConnId, msg_id: &str, refusal: Refusal) {
        let kind = match refusal.rule {
            Rule::Rate => ErrorKind::Busy,
            Rule::UserQuota | Rule::SharedQuota => ErrorKind::Quota,
            _ => ErrorKind::Unauthorized,
        };
        self.stats.errors.count(kind);
        let id = self.new_id();
        self.send(conn, crate::wire::error_reply(&id, msg_id, &refusal.text));
        self.tell_refusal(conn, refusal.rule, refusal.subject);
    }

    /// Counts a refusal by `rule` and tells it, with what it concerned.
    pub(super) fn tell_refusal(&mut self, conn: ConnId, rule: Rule, subject: String) {
        self.stats.refusals.count(rule);
        self.outputs.push_back(Output::Event(Event::RuleRefused {
            conn,
            rule,
            subject,
        }));
    }
}

/// The keys writing into user spaces in `graph`: each field's owner, or the holder of the
/// owner's certificate who signed it.
fn writers(graph: &Graph) -> BTreeSet<String> {
    let mut writers = BTreeSet::new();
    for node in &graph.nodes {
        let Space::User(owner) = space(node.soul.as_str()) else {
            continue;
        };
        for field in node.fields.values() {
            let writer = match &field.value {
                Value::String(text) => SignedValue::parse(text)
                    .ok()
                    .and_then(|signed| signed.writer),
                _ => None,
            };
            writers.insert(writer.unwrap_or_else(|| owner.clone()));
        }
    }
    writers
}
