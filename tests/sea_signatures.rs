//! Signatures and certificates made by GUN JS's own SEA (`tests/vectors/sea_signatures.json`,
//! written by `testkit/gunjs/make_sea_vectors.js`) verify here: the signed text is written
//! exactly as GUN JS wrote it, high-S signatures verify, and none verifies once moved to another
//! state, key, soul or signer.

use fibergun::sea::{field_text, PublicKey, SignedValue};
use serde_json::{json, Value as Json};

fn vectors() -> Json {
    let text = include_str!("vectors/sea_signatures.json");
    serde_json::from_str(text).expect("the vector file is JSON")
}

#[test]
fn gun_js_field_signatures_verify_bound_to_their_place() {
    let vectors = vectors();
    let fields = vectors["fields"].as_array().expect("fields");
    assert!(fields.len() >= 200, "{} field vectors", fields.len());
    let mut high_s = 0;
    for (i, f) in fields.iter().enumerate() {
        let key = PublicKey::parse(f["pub"].as_str().unwrap()).unwrap();
        let (soul, field) = (f["soul"].as_str().unwrap(), f["key"].as_str().unwrap());
        let state = f["state"].as_f64().unwrap();
        let value = &f["value"];
        assert_eq!(
            field_text(soul, field, value, state),
            f["text"].as_str().unwrap(),
            "vector {i}: the signed text differs from GUN JS's"
        );
        let stored = json!({ ":": value, "~": f["sig"] }).to_string();
        let signed = SignedValue::parse(&stored).unwrap();
        assert!(
            signed.signed_by(&key, soul, field, state),
            "vector {i} does not verify"
        );
        assert!(
            !signed.signed_by(&key, soul, field, state + 1.0),
            "vector {i} at another state"
        );
        assert!(
            !signed.signed_by(&key, soul, &format!("{field}x"), state),
            "vector {i} under another key"
        );
        assert!(
            !signed.signed_by(&key, &format!("{soul}/x"), field, state),
            "vector {i} at another soul"
        );
        let other = &fields[(i + 1) % fields.len()];
        if other["pub"] != f["pub"] {
            let other_key = PublicKey::parse(other["pub"].as_str().unwrap()).unwrap();
            assert!(
                !signed.signed_by(&other_key, soul, field, state),
                "vector {i} by another key"
            );
        }
        high_s += usize::from(f["high_s"] == true);
    }
    // WebCrypto does not normalise s, so about half are high-S; they must verify too.
    assert!(
        high_s >= fields.len() / 4,
        "only {high_s} high-S signatures among the vectors"
    );
}

#[test]
fn gun_js_certificates_verify_over_their_terms() {
    let vectors = vectors();
    let certificates = vectors["certificates"].as_array().expect("certificates");
    assert!(!certificates.is_empty());
    for (i, c) in certificates.iter().enumerate() {
        let key = PublicKey::parse(c["pub"].as_str().unwrap()).unwrap();
        let terms = &c["cert"]["m"];
        let signature = c["cert"]["s"].as_str().unwrap();
        let text = fibergun::json::stringify(terms);
        assert_eq!(
            text,
            c["text"].as_str().unwrap(),
            "certificate {i}: terms text"
        );
        assert!(
            key.verifies(&text, signature),
            "certificate {i} does not verify"
        );
        let mut changed = terms.clone();
        changed["c"] = json!("someone else");
        assert!(
            !key.verifies(&fibergun::json::stringify(&changed), signature),
            "certificate {i} verifies with other writers"
        );
    }
}
