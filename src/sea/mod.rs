//! SEA, GUN's signatures: the pieces a relay needs to check that a write into a user's space was
//! signed by that user's key, and that an embedding program needs to sign its own writes, both
//! exactly as GUN JS makes and checks them.
//!
//! - Keys: a SEA public key is `base64url(x) + "." + base64url(y)` of an ECDSA P-256 point.
//! - Signatures: SEA signs the SHA-256 digest of a text with WebCrypto's ECDSA-SHA-256, so the
//!   digest is hashed again; the signature is raw `r||s` in standard base64. High-S signatures
//!   (WebCrypto does not normalise) verify.
//! - Values in user space travel as the JSON text `{":":value,"~":signature}`, where the signature
//!   covers `{"#":soul,".":key,":":value,">":state}` written as JavaScript's `JSON.stringify`
//!   writes it. A certified writer adds `"+"` (the certificate) and `"*"` (the writer's key).
//!
//! All of this is pure computation on its inputs: no clock, no randomness (signing is
//! deterministic, RFC 6979).

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use p256::ecdsa::signature::Signer;
use p256::ecdsa::{Signature, SigningKey, VerifyingKey};
use ring::signature;
use serde_json::{Map, Value as Json};
use sha2::{Digest, Sha256};

use crate::json;

pub mod rules;

/// A SEA public key (`x.y`, base64url without padding).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PublicKey {
    text: String,
    /// The SEC1 uncompressed point `0x04||x||y`, checked to be on the curve.
    point: [u8; 65],
}

/// Why a SEA key, signature or signed value could not be used.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SeaError(pub String);

impl std::fmt::Display for SeaError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for SeaError {}

fn fail(what: impl Into<String>) -> SeaError {
    SeaError(what.into())
}

impl PublicKey {
    /// Reads `x.y`: two base64url coordinates of 32 bytes each, a point on P-256.
    pub fn parse(text: &str) -> Result<PublicKey, SeaError> {
        let (x, y) = text
            .split_once('.')
            .ok_or_else(|| fail("a public key is two base64url coordinates joined by '.'"))?;
        let mut point = [0u8; 65];
        point[0] = 0x04;
        for (coordinate, at) in [(x, 1), (y, 33)] {
            let bytes = URL_SAFE_NO_PAD
                .decode(coordinate)
                .map_err(|_| fail("a public key coordinate is not base64url"))?;
            if bytes.len() != 32 {
                return Err(fail("a public key coordinate is not 32 bytes"));
            }
            point[at..at + 32].copy_from_slice(&bytes);
        }
        VerifyingKey::from_sec1_bytes(&point)
            .map_err(|_| fail("the public key is not a point on P-256"))?;
        Ok(PublicKey {
            text: text.to_owned(),
            point,
        })
    }

    /// The key as SEA writes it.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Whether `signature` (standard base64 of `r||s`) signs `text` with this key, as
    /// `SEA.verify` decides.
    pub fn verifies(&self, text: &str, signature: &str) -> bool {
        let Ok(raw) = STANDARD.decode(signature) else {
            return false;
        };
        // ring checks P-256 signatures three times as fast as p256 (75 against 225 µs); its
        // FIXED form is raw `r||s`, and it hashes the message once more, as WebCrypto does.
        // High-S signatures verify, as in WebCrypto.
        let digest = Sha256::digest(text.as_bytes());
        signature::UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, &self.point)
            .verify(&digest, &raw)
            .is_ok()
    }
}

/// A SEA key pair's signing half (`priv`, base64url of the P-256 scalar).
#[derive(Clone, Debug)]
pub struct KeyPair {
    signing: SigningKey,
    public: PublicKey,
}

impl KeyPair {
    /// Reads a pair's `priv`; its `pub` is derived from it.
    pub fn from_private(private: &str) -> Result<KeyPair, SeaError> {
        let bytes = URL_SAFE_NO_PAD
            .decode(private)
            .map_err(|_| fail("a private key is not base64url"))?;
        let signing =
            SigningKey::from_slice(&bytes).map_err(|_| fail("not a P-256 private key"))?;
        let point = signing.verifying_key().to_sec1_point(false);
        let bytes = point.as_bytes();
        let text = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(&bytes[1..33]),
            URL_SAFE_NO_PAD.encode(&bytes[33..65])
        );
        let public = PublicKey::parse(&text)?;
        Ok(KeyPair { signing, public })
    }

    /// Reads a key pair as GUN JS's `SEA.pair()` makes it (`{"pub":…,"priv":…,"epub":…,"epriv":…}`);
    /// only the signing half is used, and `pub` must belong to `priv`.
    pub fn from_gun_pair(pair: &str) -> Result<KeyPair, SeaError> {
        let parsed: Json = serde_json::from_str(pair).map_err(|_| fail("the pair is not JSON"))?;
        let Some(Json::String(private)) = parsed.get("priv") else {
            return Err(fail("the pair has no priv"));
        };
        let pair = KeyPair::from_private(private)?;
        match parsed.get("pub") {
            Some(Json::String(public)) if public == pair.public.as_str() => Ok(pair),
            Some(_) => Err(fail("the pair's pub does not belong to its priv")),
            None => Err(fail("the pair has no pub")),
        }
    }

    /// The public key, as SEA writes it.
    pub fn public(&self) -> &PublicKey {
        &self.public
    }

    /// Signs `text` as `SEA.sign` does: standard base64 of `r||s` over SHA-256(text).
    pub fn sign(&self, text: &str) -> String {
        let digest = Sha256::digest(text.as_bytes());
        let signature: Signature = self.signing.sign(&digest);
        STANDARD.encode(signature.to_bytes())
    }
}

/// The text a value in user space is signed over:
/// `{"#":soul,".":key,":":value,">":state}`, as JavaScript writes it.
pub fn field_text(soul: &str, key: &str, value: &Json, state: f64) -> String {
    let mut out = String::with_capacity(64 + soul.len() + key.len());
    out.push_str("{\"#\":");
    json::write_string(&mut out, soul);
    out.push_str(",\".\":");
    json::write_string(&mut out, key);
    out.push_str(",\":\":");
    json::write_json(&mut out, value);
    out.push_str(",\">\":");
    json::write_number(&mut out, state);
    out.push('}');
    out
}

/// A value as it is stored in user space: the plain value, its signature, and for a certified
/// writer the certificate (`+`) and the writer's key (`*`).
#[derive(Clone, Debug, PartialEq)]
pub struct SignedValue {
    /// `:`: the value itself.
    pub value: Json,
    /// `~`: the signature over [`field_text`].
    pub signature: String,
    /// `+`: the certificate, `{"m":…,"s":…}`.
    pub certificate: Option<Map<String, Json>>,
    /// `*`: the writer's public key, when it is not the owner.
    pub writer: Option<String>,
}

impl SignedValue {
    /// Reads the text stored in the graph. Anything but a JSON object with `:` and a string `~`
    /// is not a signed value.
    pub fn parse(text: &str) -> Result<SignedValue, SeaError> {
        let parsed: Json =
            serde_json::from_str(text).map_err(|_| fail("the value is not signed"))?;
        let Json::Object(mut object) = parsed else {
            return Err(fail("the value is not signed"));
        };
        let value = object
            .remove(":")
            .ok_or_else(|| fail("the signed value has no ':'"))?;
        let Some(Json::String(signature)) = object.remove("~") else {
            return Err(fail("the signed value has no signature"));
        };
        let certificate = match object.remove("+") {
            None => None,
            Some(Json::Object(cert)) => Some(cert),
            Some(_) => return Err(fail("the certificate is not an object")),
        };
        let writer = match object.remove("*") {
            None => None,
            Some(Json::String(w)) => Some(w),
            Some(_) => return Err(fail("the writer's key is not a string")),
        };
        Ok(SignedValue {
            value,
            signature,
            certificate,
            writer,
        })
    }

    /// The text stored in the graph for `value` signed by `pair` at `soul`, `key`, `state`.
    pub fn sign(pair: &KeyPair, soul: &str, key: &str, value: &Json, state: f64) -> String {
        let signature = pair.sign(&field_text(soul, key, value, state));
        let mut out = String::from("{\":\":");
        json::write_json(&mut out, value);
        out.push_str(",\"~\":");
        json::write_string(&mut out, &signature);
        out.push('}');
        out
    }

    /// Whether the signature covers this value at `soul`, `key`, `state` with `key_of_signer`.
    pub fn signed_by(&self, key_of_signer: &PublicKey, soul: &str, key: &str, state: f64) -> bool {
        key_of_signer.verifies(&field_text(soul, key, &self.value, state), &self.signature)
    }
}

/// A field read from the graph that passed [`verify_field`].
#[derive(Clone, Debug, PartialEq)]
pub struct VerifiedField {
    /// The plain value: for a signed value its `:`, otherwise the stored value itself.
    pub value: Json,
    /// Whose signature covered it: the owner, or a certified writer. `None` where no signature
    /// is needed (public souls, `~@alias` entries, content-addressed souls, an account's `pub`).
    pub signer: Option<String>,
    /// A certified write names a block list; a reader that wants to honour it looks up this
    /// field and treats `true` or `1` as revoked.
    pub block_list: Option<rules::BlockList>,
}

/// Checks a field read from the graph (`soul`.`key` holding `value` written at `state`) against
/// the rules a relay applies to a write of it, signatures included, and gives its plain value.
/// `now_ms` is the wall clock, for `<?N` souls whose values expire.
pub fn verify_field(
    soul: &str,
    key: &str,
    value: &crate::graph::Value,
    state: f64,
    now_ms: f64,
) -> Result<VerifiedField, SeaError> {
    match rules::plan(soul, key, value, state, now_ms).map_err(SeaError)? {
        rules::Plan::Accept => Ok(VerifiedField {
            value: value.to_json(),
            signer: None,
            block_list: None,
        }),
        rules::Plan::Drop => Err(fail("the value has expired")),
        rules::Plan::Verify { checks, block_list } => {
            if let Some(broken) = checks.iter().find(|c| !c.holds()) {
                return Err(fail(broken.refusal));
            }
            let crate::graph::Value::String(text) = value else {
                return Err(fail("Unverified data."));
            };
            let signed = SignedValue::parse(text)?;
            Ok(VerifiedField {
                value: signed.value,
                signer: checks.first().map(|c| c.signer.clone()),
                block_list,
            })
        }
    }
}

/// The owner's public key named by a soul, as `SEA.opt.pub` finds it: the text between the
/// first `~` and the next `~` (or the end), cut at every character outside `[A-Za-z0-9_-]`; with
/// at least two pieces, the first not starting with `@`, the key is `piece0.piece1`.
#[inline]
pub fn owner_of(soul: &str) -> Option<String> {
    // Most souls are in no user space: a byte scan, inlined where it is asked, says so.
    let at = soul.bytes().position(|b| b == b'~')?;
    owner_after(&soul[at + 1..])
}

/// The owner named by what follows a soul's first `~`.
fn owner_after(after: &str) -> Option<String> {
    let between = after.split('~').next().unwrap_or(after);
    let mut pieces = between
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '-'))
        .filter(|p| !p.is_empty());
    let first = pieces.next()?;
    let second = pieces.next()?;
    if between.starts_with('@') {
        return None;
    }
    Some(format!("{first}.{second}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const PUB: &str =
        "6kAbX3pa1UGpniyp1ljLh4heaAFZarVrTxqdNcRxRl0.bVFylHoc6QxKrcm1R5GhMP1VBaYCQiewdtcL3vkaySU";
    const PRIV: &str = "rSRdCZ2OxJ1NT2VZ14drp-GWZLw1O50eCW0s41EAhVk";

    #[test]
    fn gun_js_signatures_verify_and_tampering_does_not() {
        let key = PublicKey::parse(PUB).unwrap();
        let hello = "deVB54MSrMhVvXvg2ZYxuZy8GRSl3plsWgVqgVlBGDAwci1KjDMcM48vTpTS+ZADn0gpRo8g7h5d7BumQ/wKGg==";
        assert!(key.verifies("hello", hello));
        assert!(
            !key.verifies("\"hello\"", hello),
            "the text is signed unquoted"
        );
        assert!(!key.verifies("hellp", hello));
        let object = "zYbsDUuVNhLHOby/8NeXMz+E4Vozdsl3SZwrOe/4lw5RF7oSJ48MgGJGjB3UlabzgmEFz40i3rL7COFRCRYgaA==";
        assert!(key.verifies(r#"{"a":1,"b":"x"}"#, object));
        assert!(!key.verifies(r#"{"b":"x","a":1}"#, object));
    }

    #[test]
    fn a_value_from_gun_js_user_space_verifies_bound_to_its_place_and_state() {
        let soul = "~6LHYiwdkGMqW45nTBKAjUNO_OyxIauOltwNKF-9mJCQ.yqQrGr1yC-N0VBahwYnbnt9D9Y05OoaQbcPneDzM-3A";
        let stored = r#"{":":"testing123","~":"/UTDwurvc52XoZoNOoVaF6Uncc9VzRBomczHKidrnbMcJIIxbLJiezYHONGXe5RIWmVZoLWrGjqUYf/1DuRHJQ=="}"#;
        let owner = PublicKey::parse(&owner_of(soul).unwrap()).unwrap();
        let signed = SignedValue::parse(stored).unwrap();
        assert_eq!(signed.value, json!("testing123"));
        assert!(signed.signed_by(&owner, soul, "alias", 1620286970971.0));
        // Replayed at another state, under another key or at another soul: refused.
        assert!(!signed.signed_by(&owner, soul, "alias", 1620286970972.0));
        assert!(!signed.signed_by(&owner, soul, "name", 1620286970971.0));
        assert!(!signed.signed_by(&owner, &format!("{soul}/x"), "alias", 1620286970971.0));
        let other = PublicKey::parse(PUB).unwrap();
        assert!(!signed.signed_by(&other, soul, "alias", 1620286970971.0));
    }

    #[test]
    fn signing_here_verifies_and_derives_gun_js_s_public_key() {
        let pair = KeyPair::from_private(PRIV).unwrap();
        assert_eq!(pair.public().as_str(), PUB);
        let soul = format!("~{PUB}/profile");
        let stored = SignedValue::sign(&pair, &soul, "name", &json!("A"), 1700000000000.5);
        let signed = SignedValue::parse(&stored).unwrap();
        assert!(signed.signed_by(pair.public(), &soul, "name", 1700000000000.5));
        assert!(stored.starts_with(r#"{":":"A","~":""#));
    }

    #[test]
    fn a_field_read_from_the_graph_is_verified_and_unpacked() {
        use crate::graph::Value;
        let soul = "~6LHYiwdkGMqW45nTBKAjUNO_OyxIauOltwNKF-9mJCQ.yqQrGr1yC-N0VBahwYnbnt9D9Y05OoaQbcPneDzM-3A";
        let stored: Value = Value::String(r#"{":":"testing123","~":"/UTDwurvc52XoZoNOoVaF6Uncc9VzRBomczHKidrnbMcJIIxbLJiezYHONGXe5RIWmVZoLWrGjqUYf/1DuRHJQ=="}"#.into());
        let now = 1.8e12;
        let read = verify_field(soul, "alias", &stored, 1620286970971.0, now).unwrap();
        assert_eq!(read.value, json!("testing123"));
        assert_eq!(read.signer.as_deref(), owner_of(soul).as_deref());
        let wrong_state = verify_field(soul, "alias", &stored, 1620286970972.0, now);
        assert_eq!(wrong_state.unwrap_err().0, "Unverified data.");
        let unsigned = verify_field(soul, "alias", &Value::String("x".into()), 1.0, now);
        assert!(unsigned.is_err());
        // Public souls need no signature; the stored value is the plain value.
        let public = verify_field("chat", "msg", &Value::Number(3.0), 1.0, now).unwrap();
        assert_eq!((public.value, public.signer), (json!(3), None));
    }

    #[test]
    fn a_gun_js_pair_is_read_for_signing() {
        let pair = format!(r#"{{"pub":"{PUB}","priv":"{PRIV}","epub":"x","epriv":"y"}}"#);
        let read = KeyPair::from_gun_pair(&pair).unwrap();
        assert_eq!(read.public().as_str(), PUB);
        let mismatched = format!(r#"{{"pub":"{PUB}","priv":"{}"}}"#, "A".repeat(43));
        assert!(KeyPair::from_gun_pair(&mismatched).is_err());
        assert!(KeyPair::from_gun_pair(r#"{"pub":"a.b"}"#).is_err());
    }

    #[test]
    fn the_signed_text_is_written_as_javascript_writes_it() {
        assert_eq!(
            field_text("~a.b", "k", &json!({"#": "~a.b/said"}), 1620286973647.001),
            r##"{"#":"~a.b",".":"k",":":{"#":"~a.b/said"},">":1620286973647.001}"##
        );
        assert_eq!(
            field_text("s", "k", &json!(null), 1e21),
            r##"{"#":"s",".":"k",":":null,">":1e+21}"##
        );
    }

    #[test]
    fn owners_are_found_as_sea_finds_them() {
        assert_eq!(owner_of("~X.Y").as_deref(), Some("X.Y"));
        assert_eq!(owner_of("~X.Y/profile").as_deref(), Some("X.Y"));
        assert_eq!(owner_of("app~X.Y/x").as_deref(), Some("X.Y"));
        assert_eq!(owner_of("~foo/bar").as_deref(), Some("foo.bar"));
        assert_eq!(owner_of("~foo"), None);
        assert_eq!(owner_of("~@alice"), None);
        assert_eq!(owner_of("plain"), None);
    }

    #[test]
    fn bad_keys_and_values_are_refused_with_a_reason() {
        assert!(PublicKey::parse("nodot").is_err());
        assert!(PublicKey::parse("AAAA.AAAA").is_err());
        let zero = format!("{}.{}", "A".repeat(43), "A".repeat(43));
        assert!(PublicKey::parse(&zero).is_err(), "not on the curve");
        assert!(SignedValue::parse("plain").is_err());
        assert!(SignedValue::parse(r#"{":":1}"#).is_err());
        assert!(SignedValue::parse(r#"{"~":"x"}"#).is_err());
        let key = PublicKey::parse(PUB).unwrap();
        assert!(!key.verifies("hello", "not base64!"));
        assert!(!key.verifies("hello", "AAAA"));
    }
}
