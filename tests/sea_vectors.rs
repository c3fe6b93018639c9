//! SEA writes captured from GUN JS (`tests/vectors/j_sea.jsonl`: `user.create`, `user.auth`, a
//! profile write, then raw forgeries) are judged here as the GUN JS relay judged them: every field
//! it acknowledged passes fibergun's rules and signature checks, and every field it refused is
//! refused with the same error.

use std::collections::BTreeMap;

use fibergun::sea::rules::{plan, Plan};
use fibergun::Value;
use serde_json::Value as Json;

/// fibergun's verdict on one field: Ok to store, or the error.
fn judge(soul: &str, key: &str, value: &Json, state: f64) -> Result<(), String> {
    let value = Value::from_json(value, 1 << 20).map_err(|e| format!("bad value: {e}"))?;
    // The capture's states are its own wall clock: judge at that time.
    match plan(soul, key, &value, state, state)? {
        Plan::Accept | Plan::Drop => Ok(()),
        Plan::Verify { checks, .. } => match checks.iter().find(|c| !c.holds()) {
            Some(failed) => Err(failed.refusal.to_owned()),
            None => Ok(()),
        },
    }
}

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
            for (key, value) in node.as_object().expect("a node is an object") {
                if key == "_" {
                    continue;
                }
                let state = node["_"][">"][key].as_f64().expect("every key has a state");
                let ours = judge(soul, key, value, state);
                match verdict {
                    Ok(()) => {
                        assert_eq!(ours, Ok(()), "GUN JS accepted {soul} {key} = {value}");
                        accepted += 1;
                    }
                    Err(theirs) => {
                        assert_eq!(
                            ours.as_ref().err(),
                            Some(theirs),
                            "GUN JS refused {soul} {key} = {value}"
                        );
                        refused += 1;
                    }
                }
            }
        }
    }
    assert!(accepted >= 5, "{accepted} accepted values checked");
    assert!(refused >= 5, "{refused} refused values checked");
}
