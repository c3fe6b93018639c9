//! What a relay enforces before it takes a write, as GUN JS's SEA decides (spec §9.5), with the
//! holes GUN JS leaves closed. Checking a field is split in two: [`plan`] applies every rule that
//! needs no cryptography and says which signatures must verify; [`SignatureCheck::holds`] does the
//! cryptography, which a runtime can run away from its socket loops.
//!
//! Rules, first match wins (after the `<?N` expiry test):
//! - `~@`: the value is a link to `~@` + key.
//! - `~@alias`: the value is a link to a soul equal to the key.
//! - a soul naming an owner (`~PUB…`, see [`owner_of`]): the account's `pub` is the plain key;
//!   anything else is a signed value, signed by the owner, or by a writer (`*`) that carries a
//!   certificate (`+`) the owner signed, unexpired, naming the writer, whose write policy matches.
//!   A `*` without a certificate is refused (GUN JS accepts it: anyone could write anywhere).
//! - a soul with `#`: the key after its last `#` is the SHA-256 of the value (base64, or hex).
//! - anything else is public.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde_json::{Map, Value as Json};
use sha2::{Digest, Sha256};

use super::{field_text, owner_of, PublicKey, SignedValue};
use crate::graph::Value;
use crate::lex::string_match;

/// Which of SEA's spaces a soul is in: the rule [`plan`] applies to its fields.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Space {
    /// `~@` or `~@alias`: alias lists, holding links.
    AliasList,
    /// A user's space, named by its owner's public key.
    User(String),
    /// A soul with `#`: content addressed.
    Hashed,
    /// Everything else: anyone may write it.
    Public,
}

/// The space `soul` is in.
pub fn space(soul: &str) -> Space {
    if soul.starts_with("~@") {
        return Space::AliasList;
    }
    if let Some(owner) = owner_of(soul) {
        return Space::User(owner);
    }
    if soul.contains('#') {
        return Space::Hashed;
    }
    Space::Public
}

/// The key a value is stored under in a content-addressed (`#`) soul: the SHA-256 of its text,
/// in standard base64 (GUN's `SEA.work(text, null, null, {name: "SHA-256"})`).
pub fn content_hash(text: &str) -> String {
    STANDARD.encode(Sha256::digest(text.as_bytes()))
}

/// What [`plan`] decided for one field.
#[derive(Clone, Debug, PartialEq)]
pub enum Plan {
    /// Nothing more to check.
    Accept,
    /// Not stored, and not an error: a `<?N` soul's value older than N seconds (GUN drops these
    /// silently).
    Drop,
    /// Stored once every check holds (and, with a write-block list, once the writer is found
    /// not blocked).
    Verify {
        /// Signatures that must verify.
        checks: Vec<SignatureCheck>,
        /// A certificate's write-block list: the writer is refused if this soul has the writer's
        /// key set to `true` or `1`.
        block_list: Option<BlockList>,
    },
}

/// A signature that must verify for a write to be taken.
#[derive(Clone, Debug, PartialEq)]
pub struct SignatureCheck {
    /// Who must have signed.
    pub signer: String,
    /// What was signed; any one of these texts will do (a certificate is checked over its
    /// received key order, then sorted, as browsers and Node relays hash it differently).
    pub texts: Vec<String>,
    /// The signature, standard base64 of `r||s`.
    pub signature: String,
    /// The error to answer when it does not verify.
    pub refusal: &'static str,
}

impl SignatureCheck {
    /// Whether the signature verifies over one of the texts.
    pub fn holds(&self) -> bool {
        let Ok(key) = PublicKey::parse(&self.signer) else {
            return false;
        };
        self.texts.iter().any(|t| key.verifies(t, &self.signature))
    }
}

/// A certificate's write-block list: `soul`'s field `key` must not be `true` or `1`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BlockList {
    /// The node listing blocked writers.
    pub soul: String,
    /// The writer's key.
    pub key: String,
}

/// The error text for a refused field.
pub type Refusal = String;

/// The checks for writing `value` at `soul`.`key` with `state`, at wall-clock `now_ms`.
pub fn plan(
    soul: &str,
    key: &str,
    value: &Value,
    state: f64,
    now_ms: f64,
) -> Result<Plan, Refusal> {
    if soul.is_empty() || key.is_empty() {
        return Err("Soul and key must not be empty.".into());
    }
    if let Some(seconds) = expiry_seconds(soul) {
        if state < now_ms - seconds * 1000.0 {
            return Ok(Plan::Drop);
        }
    }
    if soul == "~@" {
        return match value {
            Value::Link(to) if to.as_str() == format!("~@{key}") => Ok(Plan::Accept),
            Value::Null | Value::Bool(false) => Err("Data must exist!".into()),
            _ => Err("Alias not same!".into()),
        };
    }
    if soul.starts_with("~@") {
        return match value {
            Value::Link(to) if to.as_str() == key => Ok(Plan::Accept),
            Value::Null | Value::Bool(false) => Err("Alias must exist!".into()),
            _ => Err("Alias not same!".into()),
        };
    }
    if let Some(owner) = owner_of(soul) {
        return user_space(soul, key, value, state, &owner);
    }
    if soul.contains('#') {
        return content_addressed(key, value);
    }
    Ok(Plan::Accept)
}

/// The N of a `<?N` soul: its values expire N seconds after their state.
fn expiry_seconds(soul: &str) -> Option<f64> {
    // A byte scan: this is asked of every field written.
    let at = soul.as_bytes().windows(2).position(|pair| pair == b"<?")?;
    let after = &soul[at + 2..];
    let digits: String = after
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.')
        .collect();
    digits.parse::<f64>().ok().filter(|n| n.is_finite())
}

fn content_addressed(key: &str, value: &Value) -> Result<Plan, Refusal> {
    let claimed = key.rsplit('#').next().unwrap_or(key);
    let text = match value {
        Value::String(s) => s.to_string(),
        other => other.json_text(),
    };
    let base64 = content_hash(&text);
    let hex_matches = decode_hex(claimed).is_some_and(|bytes| STANDARD.encode(bytes) == base64);
    if claimed == base64 || hex_matches {
        Ok(Plan::Accept)
    } else {
        Err("Data hash not same as hash!".into())
    }
}

fn decode_hex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).ok())
        .collect()
}

fn user_space(
    soul: &str,
    key: &str,
    value: &Value,
    state: f64,
    owner: &str,
) -> Result<Plan, Refusal> {
    let unverified = || -> Refusal { "Unverified data.".into() };
    if key == "pub" && soul.strip_prefix('~') == Some(owner) {
        return match value {
            Value::String(s) if &**s == owner => Ok(Plan::Accept),
            _ => Err("Account not same!".into()),
        };
    }
    let Value::String(text) = value else {
        return Err(unverified());
    };
    let signed = SignedValue::parse(text).map_err(|_| unverified())?;
    let field = field_text(soul, key, &signed.value, state);
    let writer = signed.writer.as_deref().filter(|w| *w != owner);
    let Some(writer) = writer else {
        return Ok(Plan::Verify {
            checks: vec![SignatureCheck {
                signer: owner.to_owned(),
                texts: vec![field],
                signature: signed.signature,
                refusal: "Unverified data.",
            }],
            block_list: None,
        });
    };
    // Someone else writes into the owner's space: only with the owner's certificate.
    let Some(certificate) = &signed.certificate else {
        return Err("A writer other than the owner needs a certificate.".into());
    };
    let (terms, cert_checks) = certificate_terms(certificate, owner)?;
    authorise(&terms, soul, key, writer, state)?;
    let block_list = block_list(&terms, owner, writer);
    let mut checks = vec![SignatureCheck {
        signer: writer.to_owned(),
        texts: vec![field],
        signature: signed.signature.clone(),
        refusal: "Unverified data.",
    }];
    checks.push(cert_checks);
    Ok(Plan::Verify { checks, block_list })
}

/// The certificate's terms (`m`) and the check that the owner signed them.
fn certificate_terms(
    certificate: &Map<String, Json>,
    owner: &str,
) -> Result<(Map<String, Json>, SignatureCheck), Refusal> {
    let invalid = || -> Refusal { "Certificate verification fail.".into() };
    let Some(Json::Object(terms)) = certificate.get("m") else {
        return Err(invalid());
    };
    let Some(Json::String(signature)) = certificate.get("s") else {
        return Err(invalid());
    };
    let as_received = crate::json::stringify(&Json::Object(terms.clone()));
    let mut sorted: Vec<(&String, &Json)> = terms.iter().collect();
    sorted.sort_by(|a, b| crate::json::cmp_utf16(a.0, b.0));
    let sorted = crate::json::stringify(&Json::Object(
        sorted
            .into_iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
    ));
    let mut texts = vec![as_received];
    if !texts.contains(&sorted) {
        texts.push(sorted);
    }
    Ok((
        terms.clone(),
        SignatureCheck {
            signer: owner.to_owned(),
            texts,
            signature: signature.clone(),
            refusal: "Certificate verification fail.",
        },
    ))
}

/// Whether the certificate's terms let `writer` write `soul`.`key` at `state`: unexpired, naming
/// the writer, with a write policy that matches.
fn authorise(
    terms: &Map<String, Json>,
    soul: &str,
    key: &str,
    writer: &str,
    state: f64,
) -> Result<(), Refusal> {
    let fail = || -> Refusal { "Certificate verification fail.".into() };
    if let Some(expiry) = terms.get("e") {
        let expiry = match expiry {
            Json::Number(n) => n.as_f64(),
            Json::String(s) => s.trim().parse::<f64>().ok(),
            _ => None,
        };
        if expiry.is_some_and(|e| state > e) {
            return Err("Certificate expired.".into());
        }
    }
    let names_writer = match terms.get("c") {
        Some(Json::String(c)) => c == writer || c == "*",
        Some(Json::Array(list)) => list
            .iter()
            .any(|c| c.as_str().is_some_and(|c| c == writer || c == "*")),
        _ => false,
    };
    if !names_writer {
        return Err(fail());
    }
    let path = soul.split_once('/').map_or("", |(_, p)| p);
    let policies: Vec<&Json> = match terms.get("w") {
        Some(Json::Array(list)) => list.iter().collect(),
        Some(w @ (Json::Object(_) | Json::String(_))) => vec![w],
        _ => Vec::new(),
    };
    for lex in policies {
        let part = |name: &str| lex.as_object().and_then(|o| o.get(name));
        let whole = if path.is_empty() {
            key.to_owned()
        } else {
            format!("{path}/{key}")
        };
        let matches = (string_match(path, part("#")) && string_match(key, part(".")))
            || (part(".").is_none() && string_match(path, part("#")))
            || (part("#").is_none() && string_match(key, part(".")))
            || string_match(&whole, part("#").or(Some(lex)));
        if !matches {
            continue;
        }
        let writer_must_appear = match part("+") {
            Some(Json::String(s)) => s.contains('*'),
            Some(Json::Array(list)) => list.iter().any(|v| v.as_str() == Some("*")),
            _ => false,
        };
        if writer_must_appear && !path.is_empty() && !path.contains(writer) && !key.contains(writer)
        {
            return Err(format!(
                "Path \"{path}\" or key \"{key}\" must contain string \"{writer}\"."
            ));
        }
        return Ok(());
    }
    Err(fail())
}

/// A certificate's write-block list for `writer`, if it names one: `wb` is a path (relative to
/// the owner's space unless it starts with `~`) or a link.
fn block_list(terms: &Map<String, Json>, owner: &str, writer: &str) -> Option<BlockList> {
    let soul = match terms.get("wb")? {
        Json::String(path) if path.starts_with('~') => path.clone(),
        Json::String(path) => format!("~{owner}/{path}"),
        Json::Object(link) => link.get("#")?.as_str()?.to_owned(),
        _ => return None,
    };
    Some(BlockList {
        soul,
        key: writer.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::Soul;
    use crate::sea::KeyPair;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use serde_json::json;

    const NOW: f64 = 1_700_000_000_000.0;

    fn pair(seed: u8) -> KeyPair {
        KeyPair::from_private(&URL_SAFE_NO_PAD.encode([seed; 32])).unwrap()
    }

    fn text(s: &str) -> Value {
        Value::String(s.into())
    }

    fn link(s: &str) -> Value {
        Value::Link(Soul::new(s).unwrap())
    }

    /// Plans a field and runs its signature checks: Ok when it may be stored.
    fn judge(soul: &str, key: &str, value: &Value, state: f64) -> Result<Plan, String> {
        let plan = plan(soul, key, value, state, NOW)?;
        if let Plan::Verify { checks, .. } = &plan {
            for check in checks {
                if !check.holds() {
                    return Err(check.refusal.to_owned());
                }
            }
        }
        Ok(plan)
    }

    #[test]
    fn alias_lists_hold_only_links_to_themselves() {
        assert_eq!(
            judge("~@", "alice", &link("~@alice"), NOW),
            Ok(Plan::Accept)
        );
        assert_eq!(
            judge("~@", "alice", &link("~@bob"), NOW),
            Err("Alias not same!".into())
        );
        assert_eq!(
            judge("~@", "alice", &Value::Null, NOW),
            Err("Data must exist!".into())
        );
        assert_eq!(
            judge("~@alice", "~P.Q", &link("~P.Q"), NOW),
            Ok(Plan::Accept)
        );
        assert_eq!(
            judge("~@mallory", "nope", &text("x"), NOW),
            Err("Alias not same!".into())
        );
    }

    #[test]
    fn content_addressed_keys_are_the_hash_of_the_value() {
        let key = "uU0nuZNNPgilLlLX2n2r+sSE7+N6U4DukIj3rOLvzek=";
        assert_eq!(judge("#", key, &text("hello world"), NOW), Ok(Plan::Accept));
        let hex = "b94d27b9934d3e08a52e52d7da7dabfac484efe37a5380ee9088f7ace2efcde9";
        assert_eq!(judge("#", hex, &text("hello world"), NOW), Ok(Plan::Accept));
        assert_eq!(
            judge("#", key, &text("hello world!"), NOW),
            Err("Data hash not same as hash!".into())
        );
        assert_eq!(
            judge("posts#", &format!("a#{key}"), &text("hello world"), NOW),
            Ok(Plan::Accept)
        );
    }

    #[test]
    fn expiring_souls_drop_old_values_silently() {
        assert_eq!(
            judge("room<?60", "k", &text("v"), NOW - 61_000.0),
            Ok(Plan::Drop)
        );
        assert_eq!(
            judge("room<?60", "k", &text("v"), NOW - 59_000.0),
            Ok(Plan::Accept)
        );
    }

    #[test]
    fn the_owner_writes_its_space_with_signed_values_only() {
        let owner = pair(1);
        let me = owner.public().as_str().to_owned();
        let soul = format!("~{me}");
        assert_eq!(judge(&soul, "pub", &text(&me), NOW), Ok(Plan::Accept));
        assert_eq!(
            judge(&soul, "pub", &text("someone else"), NOW),
            Err("Account not same!".into())
        );
        let signed = SignedValue::sign(&owner, &soul, "name", &json!("Alice"), NOW);
        assert!(matches!(
            judge(&soul, "name", &text(&signed), NOW),
            Ok(Plan::Verify { .. })
        ));
        // Replayed at another state or key, tampered, unsigned, not a string, another signer.
        let unverified = Err("Unverified data.".to_string());
        assert_eq!(judge(&soul, "name", &text(&signed), NOW + 1.0), unverified);
        assert_eq!(judge(&soul, "nick", &text(&signed), NOW), unverified);
        let tampered = signed.replace("Alice", "Mallory");
        assert_eq!(judge(&soul, "name", &text(&tampered), NOW), unverified);
        assert_eq!(judge(&soul, "name", &text("Alice"), NOW), unverified);
        assert_eq!(judge(&soul, "age", &Value::Number(3.0), NOW), unverified);
        let mallory = pair(2);
        let forged = SignedValue::sign(&mallory, &soul, "name", &json!("Alice"), NOW);
        assert_eq!(judge(&soul, "name", &text(&forged), NOW), unverified);
        // Sub-nodes of the space are the owner's too.
        let profile = format!("~{me}/profile");
        let signed = SignedValue::sign(&owner, &profile, "bio", &json!(null), NOW);
        assert!(judge(&profile, "bio", &text(&signed), NOW).is_ok());
    }

    /// A value `writer` signs for `soul`.`key`, carrying `certificate` (as GUN JS's `put` with
    /// `opt.cert` writes it).
    fn certified(writer: &KeyPair, soul: &str, key: &str, certificate: &Json) -> Value {
        let signature = writer.sign(&field_text(soul, key, &json!("hi"), NOW));
        let value =
            json!({":": "hi", "~": signature, "+": certificate, "*": writer.public().as_str()});
        text(&crate::json::stringify(&value))
    }

    fn certificate(owner: &KeyPair, terms: Json) -> Json {
        let signature = owner.sign(&crate::json::stringify(&terms));
        json!({"m": terms, "s": signature})
    }

    #[test]
    fn others_write_only_with_the_owner_s_certificate_as_it_allows() {
        let owner = pair(1);
        let writer = pair(3);
        let me = owner.public().as_str();
        let them = writer.public().as_str();
        let inbox = format!("~{me}/inbox");
        let terms = json!({"c": them, "e": NOW + 60_000.0, "w": {"*": "inbox", "+": "*"}});
        let cert = certificate(&owner, terms.clone());
        let key = format!("from-{them}");
        assert!(matches!(
            judge(&inbox, &key, &certified(&writer, &inbox, &key, &cert), NOW),
            Ok(Plan::Verify {
                block_list: None,
                ..
            })
        ));
        // The path or key must name the writer ('+': '*').
        let err = judge(
            &inbox,
            "anon",
            &certified(&writer, &inbox, "anon", &cert),
            NOW,
        );
        assert!(err.unwrap_err().contains("must contain"));
        // Outside the policy's path.
        let outbox = format!("~{me}/outbox");
        assert_eq!(
            judge(
                &outbox,
                &key,
                &certified(&writer, &outbox, &key, &cert),
                NOW
            ),
            Err("Certificate verification fail.".into())
        );
        // Expired.
        let old = certificate(&owner, json!({"c": them, "e": NOW - 1.0, "w": "inbox"}));
        assert_eq!(
            judge(&inbox, &key, &certified(&writer, &inbox, &key, &old), NOW),
            Err("Certificate expired.".into())
        );
        // Issued to someone else.
        let theirs = certificate(
            &owner,
            json!({"c": pair(4).public().as_str(), "w": {"*": "inbox"}}),
        );
        assert_eq!(
            judge(
                &inbox,
                &key,
                &certified(&writer, &inbox, &key, &theirs),
                NOW
            ),
            Err("Certificate verification fail.".into())
        );
        // Issued by the writer itself, not the owner.
        let self_made = certificate(&writer, terms.clone());
        assert_eq!(
            judge(
                &inbox,
                &key,
                &certified(&writer, &inbox, &key, &self_made),
                NOW
            ),
            Err("Certificate verification fail.".into())
        );
        // A writer's key without a certificate: GUN JS takes it; it is refused here.
        let signature = writer.sign(&field_text(&inbox, &key, &json!("hi"), NOW));
        let bare = json!({":": "hi", "~": signature, "*": them});
        assert!(
            judge(&inbox, &key, &text(&crate::json::stringify(&bare)), NOW)
                .unwrap_err()
                .contains("certificate")
        );
        // Anyone ('*'), and a write-block list to consult.
        let open = certificate(
            &owner,
            json!({"c": "*", "w": {"*": "inbox"}, "wb": "blocked"}),
        );
        let plan = judge(&inbox, &key, &certified(&writer, &inbox, &key, &open), NOW).unwrap();
        let Plan::Verify { block_list, .. } = plan else {
            panic!("a certified write is verified");
        };
        assert_eq!(
            block_list,
            Some(BlockList {
                soul: format!("~{me}/blocked"),
                key: them.to_owned()
            })
        );
    }

    #[test]
    fn a_certificate_signed_over_sorted_keys_verifies_too() {
        // Node relays hash certificates with sorted keys; browsers in insertion order.
        let owner = pair(1);
        let writer = pair(3);
        let me = owner.public().as_str();
        let them = writer.public().as_str();
        let received = json!({"w": "notes", "c": them});
        let sorted = json!({"c": them, "w": "notes"});
        let signature = owner.sign(&crate::json::stringify(&sorted));
        let cert = json!({"m": received, "s": signature});
        let soul = format!("~{me}");
        assert!(judge(
            &soul,
            "notes",
            &certified(&writer, &soul, "notes", &cert),
            NOW
        )
        .is_ok());
    }

    #[test]
    fn public_souls_take_anything_and_empty_names_nothing() {
        assert_eq!(judge("chat", "msg", &text("hi"), NOW), Ok(Plan::Accept));
        assert_eq!(
            judge("~foo", "x", &text("one piece is public"), NOW),
            Ok(Plan::Accept)
        );
        assert!(plan("", "k", &text("v"), NOW, NOW).is_err());
    }
}
