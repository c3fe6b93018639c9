//! What an operator has banned and taken down on a relay. The lists live in the graph itself,
//! in two reserved souls that no client may read or write (only the operator, as
//! [`Principal::Admin`](crate::access::Principal::Admin)), so they are as durable as any write,
//! on every store, and relays sharing one database share them:
//!
//! - [`BANS`]: a field per banned public key, `true` while banned (lifting a ban writes `null`).
//!   A banned key's writes are refused, and its user space is not served, not pushed and not
//!   relayed; nothing of it is deleted.
//! - [`TAKEDOWNS`]: a field per taken-down soul, `true` while taken down (restoring writes
//!   `null`). The soul is neither served, nor pushed, nor relayed, nor written; it is kept.
//!
//! The peer keeps the lists in memory ([`Moderation`]), loaded from the store before it starts
//! ([`Moderation::load_ops`], [`Moderation::from_results`]) and updated as their fields change.

use std::collections::BTreeSet;

use crate::graph::{Field, Key, Soul, Value};
use crate::lex::KeyQuery;
use crate::store::{OpId, ReadQuery, StoreOp, StoreResult};

/// Every reserved soul starts with this (a NUL, which no GUN app puts in a soul).
pub const RESERVED_PREFIX: &str = "\u{0}fibergun/";
/// The banned public keys.
pub const BANS: &str = "\u{0}fibergun/bans";
/// The taken-down souls.
pub const TAKEDOWNS: &str = "\u{0}fibergun/takedowns";

/// Both lists' souls.
pub const LISTS: [&str; 2] = [BANS, TAKEDOWNS];

/// Whether `soul` is one of the operator's.
pub fn is_reserved(soul: &str) -> bool {
    soul.starts_with(RESERVED_PREFIX)
}

/// Why a soul is not served.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Hidden {
    /// One of the operator's own souls.
    Reserved,
    /// Taken down.
    TakenDown,
    /// In the user space of this banned key.
    OwnerBanned(String),
}

/// The banned keys and taken-down souls, as the reserved souls hold them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Moderation {
    banned: BTreeSet<String>,
    taken_down: BTreeSet<String>,
}

impl Moderation {
    /// The reads that load the lists (op ids 0 and 1), for a runtime to apply before it starts
    /// the peer.
    pub fn load_ops() -> Vec<StoreOp> {
        LISTS
            .into_iter()
            .enumerate()
            .map(|(i, soul)| StoreOp::Read {
                op: OpId(i as u64),
                query: ReadQuery::Node {
                    soul: Soul::new(soul).expect("a reserved soul is not empty"),
                    keys: KeyQuery::All,
                    reverse: false,
                    budget: u64::MAX,
                },
            })
            .collect()
    }

    /// The lists from the results of [`Moderation::load_ops`]; an error if the store failed.
    pub fn from_results(results: Vec<StoreResult>) -> Result<Moderation, String> {
        let mut lists = Moderation::default();
        for result in results {
            match result {
                StoreResult::Read { nodes } => {
                    for node in nodes {
                        let fields: Vec<(Key, Field)> = node.fields.into_iter().collect();
                        lists.apply(node.soul.as_str(), &fields);
                    }
                }
                StoreResult::Failed { reason } => {
                    return Err(format!("cannot read the bans and takedowns: {reason}"))
                }
                other => return Err(format!("the store answered a read with {other:?}")),
            }
        }
        Ok(lists)
    }

    /// Takes in fields of a reserved soul as stored now (committed here, or by another relay on
    /// a shared store). Fields of other souls are ignored.
    pub fn apply(&mut self, soul: &str, fields: &[(Key, Field)]) {
        let list = match soul {
            BANS => &mut self.banned,
            TAKEDOWNS => &mut self.taken_down,
            _ => return,
        };
        for (key, field) in fields {
            if field.value == Value::Bool(true) {
                list.insert(key.as_str().to_owned());
            } else {
                list.remove(key.as_str());
            }
        }
    }

    /// Whether any key is banned.
    pub fn any_banned(&self) -> bool {
        !self.banned.is_empty()
    }

    /// Whether `key` is banned.
    pub fn is_banned(&self, key: &str) -> bool {
        self.banned.contains(key)
    }

    /// Why `soul` is not served, if it is not.
    pub fn hidden(&self, soul: &str) -> Option<Hidden> {
        if is_reserved(soul) {
            return Some(Hidden::Reserved);
        }
        if !self.taken_down.is_empty() && self.taken_down.contains(soul) {
            return Some(Hidden::TakenDown);
        }
        if self.banned.is_empty() {
            return None;
        }
        match crate::sea::owner_of(soul) {
            Some(owner) if self.banned.contains(&owner) => Some(Hidden::OwnerBanned(owner)),
            _ => None,
        }
    }

    /// The banned keys, in order.
    pub fn banned(&self) -> impl Iterator<Item = &str> {
        self.banned.iter().map(String::as_str)
    }

    /// The taken-down souls, in order.
    pub fn taken_down(&self) -> impl Iterator<Item = &str> {
        self.taken_down.iter().map(String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::State;
    use crate::MemStore;
    use crate::Store;

    fn field(value: Value) -> Field {
        Field {
            value,
            state: State::new(1.0).unwrap(),
        }
    }

    #[test]
    fn lists_follow_their_fields_and_load_from_a_store() {
        const OWNER: &str = "AAAA.BBBB";
        let mut store = MemStore::new();
        store.apply(vec![
            StoreOp::Merge {
                op: OpId(0),
                soul: Soul::new(BANS).unwrap(),
                fields: vec![
                    (Key::new(OWNER).unwrap(), field(Value::Bool(true))),
                    (Key::new("lifted.key").unwrap(), field(Value::Null)),
                ],
            },
            StoreOp::Merge {
                op: OpId(1),
                soul: Soul::new(TAKEDOWNS).unwrap(),
                fields: vec![(Key::new("spam").unwrap(), field(Value::Bool(true)))],
            },
        ]);
        let mut lists = Moderation::from_results(store.apply(Moderation::load_ops())).unwrap();
        assert!(lists.is_banned(OWNER) && !lists.is_banned("lifted.key"));
        assert_eq!(
            lists.hidden(&format!("~{OWNER}/posts")),
            Some(Hidden::OwnerBanned(OWNER.into()))
        );
        assert_eq!(lists.hidden("spam"), Some(Hidden::TakenDown));
        assert_eq!(lists.hidden(BANS), Some(Hidden::Reserved));
        assert_eq!(lists.hidden("other"), None);
        lists.apply(
            TAKEDOWNS,
            &[(Key::new("spam").unwrap(), field(Value::Null))],
        );
        assert_eq!(lists.hidden("spam"), None);
    }
}
