//! What an operator may ask of a relay open to the public, beyond SEA's rules (which always
//! apply): take only signed writes, bound each user's space and the shared space, and bound how
//! fast each key writes. Everything is off by default. Bans and takedowns are in
//! [`crate::moderation`].

/// The operator's write rules.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct WritePolicy {
    /// Take only writes SEA vouches for: in a user space (`~PUB…`, signed by its owner or a
    /// holder of the owner's certificate), under a content hash (`#`), or to an alias list
    /// (`~@…`). Writes to the public space are refused.
    pub signed_only: bool,
    /// Bytes one user space may hold ([`crate::store::stored_bytes`] per field); past it that
    /// user's writes are refused. 0: no limit.
    pub user_space_bytes: u64,
    /// Bytes the shared space (everything outside user spaces) may hold altogether; past it,
    /// writes there are refused. 0: no limit.
    pub shared_space_bytes: u64,
    /// Writes a second one key may make (a token bucket per key, over every connection and
    /// relay link, with bursts of one second's worth); past it that key's writes are refused.
    /// 0: no limit.
    pub writes_per_key_per_sec: f64,
}

/// The rule a request was refused by (for metrics and logs).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Rule {
    /// The access policy (tokens).
    Access,
    /// SEA: a signature, certificate, alias or hash that does not hold.
    Sea,
    /// [`WritePolicy::signed_only`]: a write to the public space.
    SignedOnly,
    /// [`WritePolicy::user_space_bytes`].
    UserQuota,
    /// [`WritePolicy::shared_space_bytes`].
    SharedQuota,
    /// [`WritePolicy::writes_per_key_per_sec`].
    Rate,
    /// A banned key's write, or a read of its space.
    Banned,
    /// A taken-down soul.
    TakenDown,
    /// One of the operator's reserved souls.
    Reserved,
}

impl Rule {
    /// Every rule, in a fixed order.
    pub const ALL: [Rule; 9] = [
        Rule::Access,
        Rule::Sea,
        Rule::SignedOnly,
        Rule::UserQuota,
        Rule::SharedQuota,
        Rule::Rate,
        Rule::Banned,
        Rule::TakenDown,
        Rule::Reserved,
    ];

    /// Its name in metrics and logs.
    pub fn name(self) -> &'static str {
        match self {
            Rule::Access => "access",
            Rule::Sea => "sea",
            Rule::SignedOnly => "signed_only",
            Rule::UserQuota => "user_quota",
            Rule::SharedQuota => "public_quota",
            Rule::Rate => "rate",
            Rule::Banned => "banned",
            Rule::TakenDown => "taken_down",
            Rule::Reserved => "reserved",
        }
    }
}

/// Refusals by [`Rule`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RefusalCounts([u64; Rule::ALL.len()]);

impl RefusalCounts {
    /// Counts one refusal by `rule`.
    pub fn count(&mut self, rule: Rule) {
        self.0[rule as usize] += 1;
    }

    /// How many `rule` refused.
    pub fn of(&self, rule: Rule) -> u64 {
        self.0[rule as usize]
    }

    /// Each rule with its count, in [`Rule::ALL`]'s order.
    pub fn by_rule(&self) -> impl Iterator<Item = (Rule, u64)> + '_ {
        Rule::ALL.into_iter().map(|r| (r, self.of(r)))
    }
}
