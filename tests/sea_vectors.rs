//! SEA signatures captured from GUN JS (`tests/vectors/j_sea.jsonl`: `user.create`, `user.auth`,
//! a profile write, then raw forgeries) are judged here as the GUN JS relay judged them: every
//! value it acknowledged in a user's space verifies under the owner's key, and every value it
//! refused as "Unverified data." does not.

use std::collections::BTreeMap;

use fibergun::sea::{owner_of, PublicKey, SignedValue};
use serde_json::Value as Json;

fn messages(raw: &str) -> Vec<Json> {
    match serde_json::from_str::<Json>(raw) {
        Ok(Json::Array(items)) => items,
        Ok(one) => vec![one],
        Err(_) => Vec::new(),
    }
}

#[test]
fn gun_js_verdicts_on_user_space_writes_are_reproduced() {
    let path = format!("{}/tests/vectors/j_sea.jsonl", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).expect("the SEA capture");
    let events: Vec<Json> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("a capture line is JSON"))
        .collect();
    let raw_of = |dir: &'static str| {
        events
            .iter()
            .filter(move |e| e["dir"] == dir)
            .filter_map(|e| e["raw"].as_str())
            .flat_map(messages)
    };
    // The relay's verdict on each put: acknowledged, or the error it gave.
    let mut verdicts: BTreeMap<String, Result<(), String>> = BTreeMap::new();
    for reply in raw_of("s2c") {
        let Some(to) = reply["@"].as_str() else {
            continue;
        };
        if let Some(err) = reply["err"].as_str() {
            verdicts.insert(to.to_owned(), Err(err.to_owned()));
        } else if reply["ok"].as_bool() == Some(true) || reply["ok"].is_number() {
            verdicts.entry(to.to_owned()).or_insert(Ok(()));
        }
    }
    let (mut accepted, mut refused) = (0, 0);
    for put in raw_of("c2s") {
        if put.get("@").is_some() {
            continue; // a GET reply, not a write
        }
        let (Some(id), Some(graph)) = (put["#"].as_str(), put["put"].as_object()) else {
            continue;
        };
        let Some(verdict) = verdicts.get(id) else {
            continue;
        };
        for (soul, node) in graph {
            let Some(owner) = owner_of(soul) else {
                continue;
            };
            let owner = PublicKey::parse(&owner).expect("the capture's keys are valid");
            for (key, value) in node.as_object().expect("a node is an object") {
                if key == "_" || (key == "pub" && *soul == format!("~{}", owner.as_str())) {
                    continue; // metadata, and the account's unsigned `pub`
                }
                let state = node["_"][">"][key].as_f64().expect("every key has a state");
                let verifies = value
                    .as_str()
                    .and_then(|text| SignedValue::parse(text).ok())
                    .is_some_and(|signed| signed.signed_by(&owner, soul, key, state));
                match verdict {
                    Ok(()) => {
                        assert!(verifies, "GUN JS accepted {soul} {key} = {value}");
                        accepted += 1;
                    }
                    Err(e) if e == "Unverified data." => {
                        assert!(!verifies, "GUN JS refused {soul} {key} = {value}");
                        refused += 1;
                    }
                    Err(_) => {}
                }
            }
        }
    }
    assert!(accepted >= 5, "{accepted} accepted values checked");
    assert!(refused >= 5, "{refused} refused values checked");
}
