//! Who a request comes from: the token it presents, checked against the server's tokens. A
//! WebSocket presents it once, at its upgrade; a REST request with each request. The token may
//! come as `Authorization: Bearer TOKEN`, a cookie `fibergun_token=TOKEN`, or a query parameter
//! `?token=TOKEN` (what a GUN JS peer URL can carry: `http://host:8765/gun?token=TOKEN`).
//! No token is anonymous; an unknown token is refused (401), not treated as anonymous.

use std::collections::HashMap;
use std::path::Path;

use fibergun::access::{Open, Principal, TokenAccess};
use percent_encoding::percent_decode_str;

/// The server's tokens, by secret, each with a name (the principal's name in logs and policy).
#[derive(Clone, Debug, Default)]
pub struct Tokens {
    by_secret: HashMap<String, String>,
}

impl Tokens {
    /// Reads `NAME=SECRET` entries (from `--token`, or the lines of a tokens file).
    pub fn parse<'a>(entries: impl IntoIterator<Item = &'a str>) -> Result<Tokens, String> {
        let mut tokens = Tokens::default();
        for entry in entries {
            let entry = entry.trim();
            if entry.is_empty() || entry.starts_with('#') {
                continue;
            }
            let Some((name, secret)) = entry.split_once('=') else {
                return Err("a token is NAME=SECRET".into());
            };
            let (name, secret) = (name.trim(), secret.trim());
            if name.is_empty() || secret.len() < 16 {
                return Err(format!(
                    "token {name:?}: a name and a secret of at least 16 characters"
                ));
            }
            if tokens
                .by_secret
                .insert(secret.to_owned(), name.to_owned())
                .is_some()
            {
                return Err(format!("token {name:?}: its secret is used twice"));
            }
        }
        Ok(tokens)
    }

    /// Whether `secret` is one of these tokens' secrets.
    pub fn has_secret(&self, secret: &str) -> bool {
        self.by_secret.contains_key(secret)
    }

    /// Reads a tokens file: one `NAME=SECRET` per line; `#` starts a comment line.
    pub fn read_file(path: &Path) -> Result<Tokens, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read the tokens file {}: {e}", path.display()))?;
        Tokens::parse(text.lines())
    }

    /// Adds the tokens of `other`.
    pub fn extend(&mut self, other: Tokens) {
        self.by_secret.extend(other.by_secret);
    }

    /// How many there are.
    pub fn len(&self) -> usize {
        self.by_secret.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.by_secret.is_empty()
    }

    /// The principal for a presented secret.
    fn principal(&self, secret: &str) -> Option<Principal> {
        self.by_secret.get(secret).cloned().map(Principal::Token)
    }
}

/// Who may read and write, and the tokens that open what is open to token holders.
#[derive(Clone, Debug)]
pub struct AccessConfig {
    /// Who may read.
    pub read: Open,
    /// Who may write.
    pub write: Open,
    /// The tokens.
    pub tokens: Tokens,
}

impl Default for AccessConfig {
    fn default() -> Self {
        AccessConfig {
            read: Open::Everyone,
            write: Open::Everyone,
            tokens: Tokens::default(),
        }
    }
}

impl AccessConfig {
    /// The core's policy; `None` when everything is open.
    pub fn policy(&self) -> Option<TokenAccess> {
        (self.read != Open::Everyone || self.write != Open::Everyone).then_some(TokenAccess {
            read: self.read,
            write: self.write,
        })
    }

    /// Refuses a configuration that opens something to token holders but has no tokens.
    pub fn validate(&self) -> Result<(), String> {
        let needs_tokens = self.read == Open::TokenHolders || self.write == Open::TokenHolders;
        if needs_tokens && self.tokens.is_empty() {
            return Err("access is open to token holders, but no token is configured (--token NAME=SECRET or --tokens-file)".into());
        }
        if self.read == Open::Nobody {
            return Err("reading cannot be closed to everyone (--read everyone|token)".into());
        }
        Ok(())
    }

    /// Who presents what: `header` looks a request header up by name (any case), `query` is the
    /// URL's query. An unknown token is an error.
    pub fn authenticate<'a>(
        &self,
        header: impl Fn(&str) -> Option<&'a str>,
        query: Option<&str>,
    ) -> Result<Principal, Unauthorized> {
        let bearer = header("authorization").and_then(|v| {
            let (scheme, token) = v.trim().split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
        });
        let cookie = header("cookie").and_then(|v| {
            v.split(';')
                .filter_map(|c| c.trim().split_once('='))
                .find(|(name, _)| *name == "fibergun_token")
                .map(|(_, value)| value)
        });
        let from_query = query.and_then(|q| {
            q.split('&')
                .filter_map(|pair| pair.split_once('='))
                .find(|(name, _)| *name == "token")
                .and_then(|(_, value)| percent_decode_str(value).decode_utf8().ok())
                .map(|v| v.into_owned())
        });
        let presented = bearer
            .map(str::to_owned)
            .or_else(|| cookie.map(str::to_owned))
            .or(from_query);
        match presented {
            None => Ok(Principal::Anonymous),
            Some(secret) => self.tokens.principal(&secret).ok_or(Unauthorized),
        }
    }
}

/// A request presented a token the server does not know.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Unauthorized;

impl Unauthorized {
    /// The JSON body of the 401 answer.
    pub fn body() -> String {
        fibergun_drive::error_json("unknown token")
    }
}

/// Who may write, as `--write` says it: one of [`parse_open`]'s, or `signed` (everyone, but only
/// what SEA vouches for: the public space refuses writes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WriteOpen {
    /// Who may write.
    pub open: Open,
    /// Only signed writes.
    pub signed_only: bool,
}

/// Reads `everyone`, `token`, `nobody` or `signed`.
pub fn parse_write(text: &str) -> Result<WriteOpen, String> {
    if text == "signed" {
        return Ok(WriteOpen {
            open: Open::Everyone,
            signed_only: true,
        });
    }
    parse_open(text)
        .map(|open| WriteOpen {
            open,
            signed_only: false,
        })
        .map_err(|_| format!("{text:?}: use everyone, signed, token or nobody"))
}

/// Reads `everyone`, `token` or `nobody`.
pub fn parse_open(text: &str) -> Result<Open, String> {
    match text {
        "everyone" => Ok(Open::Everyone),
        "token" => Ok(Open::TokenHolders),
        "nobody" => Ok(Open::Nobody),
        other => Err(format!("{other:?}: use everyone, token or nobody")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> AccessConfig {
        AccessConfig {
            read: Open::Everyone,
            write: Open::TokenHolders,
            tokens: Tokens::parse(["ci=0123456789abcdef0123"]).unwrap(),
        }
    }

    #[test]
    fn a_token_is_read_from_a_header_a_cookie_or_the_query() {
        let c = config();
        let ci = Ok(Principal::Token("ci".into()));
        let none = |_: &str| None;
        assert_eq!(c.authenticate(none, None), Ok(Principal::Anonymous));
        let bearer = |h: &str| (h == "authorization").then_some("Bearer 0123456789abcdef0123");
        assert_eq!(c.authenticate(bearer, None), ci);
        let cookie =
            |h: &str| (h == "cookie").then_some("a=b; fibergun_token=0123456789abcdef0123");
        assert_eq!(c.authenticate(cookie, None), ci);
        assert_eq!(
            c.authenticate(none, Some("x=1&token=0123456789abcdef0123")),
            ci
        );
        assert_eq!(c.authenticate(none, Some("token=wrong")), Err(Unauthorized));
    }

    #[test]
    fn tokens_and_access_are_checked() {
        assert!(Tokens::parse(["no-equals"]).is_err());
        assert!(Tokens::parse(["short=abc"]).is_err());
        assert!(Tokens::parse(["a=0123456789abcdef", "b=0123456789abcdef"]).is_err());
        let open = AccessConfig::default();
        assert!(open.policy().is_none() && open.validate().is_ok());
        let no_tokens = AccessConfig {
            write: Open::TokenHolders,
            ..AccessConfig::default()
        };
        assert!(no_tokens.validate().is_err());
        assert!(config().validate().is_ok());
        assert_eq!(parse_open("token"), Ok(Open::TokenHolders));
        assert!(parse_open("sometimes").is_err());
    }
}
