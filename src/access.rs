//! Who may read and write what: a hook the embedder supplies ([`AccessPolicy`]), asked by the
//! peer for every GET, every put and every push, with the principal the runtime authenticated
//! for the connection ([`crate::Input::Authenticated`]). Without a policy everything is open;
//! SEA's rules for user spaces apply either way, after this.
//!
//! [`TokenAccess`] is the policy the server's flags configure: reading and writing each open to
//! all, to connections with a token, or (writing) to no client at all.

/// Who is at the other end of a connection.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub enum Principal {
    /// Nothing presented.
    #[default]
    Anonymous,
    /// A client that presented the token of this name.
    Token(String),
    /// A relay this peer dialled (a configured peer): trusted as this peer itself, though still
    /// bound by the operator's rules ([`crate::WritePolicy`], bans and takedowns).
    Peer,
    /// The relay's operator (its admin API): bound by no rule, and the only one that may read
    /// and write the reserved souls of [`crate::moderation`].
    Admin,
}

/// Decides reads and writes per soul. Must be pure: the same answer for the same question, so
/// a run stays a function of its inputs.
pub trait AccessPolicy: std::fmt::Debug + Send + Sync {
    /// Whether `who` may read `soul` (GETs, and pushes of its changes).
    fn may_read(&self, who: &Principal, soul: &str) -> bool;
    /// Whether `who` may write `soul`.
    fn may_write(&self, who: &Principal, soul: &str) -> bool;
}

/// Who an operation is open to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Open {
    /// Everyone.
    Everyone,
    /// Connections that presented a token.
    TokenHolders,
    /// No client (relays this peer dialled still may).
    Nobody,
}

/// Reading and writing each open to everyone, token holders, or nobody (relays this peer
/// dialled always may). `TokenAccess { read: Everyone, write: Nobody }` is a public read-only
/// relay; `{ read: Everyone, write: TokenHolders }` takes writes only with a token.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TokenAccess {
    /// Who may read.
    pub read: Open,
    /// Who may write.
    pub write: Open,
}

fn allowed(open: Open, who: &Principal) -> bool {
    matches!(
        (open, who),
        (_, Principal::Peer | Principal::Admin)
            | (Open::Everyone, _)
            | (Open::TokenHolders, Principal::Token(_))
    )
}

impl AccessPolicy for TokenAccess {
    fn may_read(&self, who: &Principal, _soul: &str) -> bool {
        allowed(self.read, who)
    }

    fn may_write(&self, who: &Principal, _soul: &str) -> bool {
        allowed(self.write, who)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_access_opens_each_operation_to_whom_it_says() {
        let read_only = TokenAccess {
            read: Open::Everyone,
            write: Open::Nobody,
        };
        let anyone = Principal::Anonymous;
        let holder = Principal::Token("ci".into());
        assert!(read_only.may_read(&anyone, "x"));
        assert!(!read_only.may_write(&anyone, "x"));
        assert!(!read_only.may_write(&holder, "x"));
        assert!(read_only.may_write(&Principal::Peer, "x"));
        let token_writes = TokenAccess {
            read: Open::Everyone,
            write: Open::TokenHolders,
        };
        assert!(!token_writes.may_write(&anyone, "x"));
        assert!(token_writes.may_write(&holder, "x"));
    }
}
