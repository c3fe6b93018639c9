//! The end-of-run check, with its own HAM written from the specification rather than taken from
//! the core, so that a bug in the core's merge shows up as a difference, not as agreement.

use std::cmp::Ordering;
use std::collections::BTreeMap;

use fibergun::{Field, Key, MemStore, Soul, Value};

/// soul -> key -> field.
pub type Graph = BTreeMap<Soul, BTreeMap<Key, Field>>;

fn json_text(value: &Value) -> String {
    fibergun::json::stringify(&value.to_json())
}

/// Whether `incoming` replaces `current` under HAM: a higher state wins; at equal states the value
/// whose JSON text is greater, compared by UTF-16 code units, wins.
pub fn wins(incoming: &Field, current: &Field) -> bool {
    match incoming.state.cmp(&current.state) {
        Ordering::Greater => true,
        Ordering::Less => false,
        // The same value is no change (and most comparisons here are of a write with itself).
        Ordering::Equal if incoming.value == current.value => false,
        Ordering::Equal => {
            let (a, b) = (json_text(&incoming.value), json_text(&current.value));
            a.encode_utf16().cmp(b.encode_utf16()) == Ordering::Greater
        }
    }
}

/// The graph every store should hold: HAM over every write any store committed.
pub fn reference(committed: &[(Soul, Key, Field)]) -> Graph {
    let mut graph = Graph::new();
    for (soul, key, field) in committed {
        let node = graph.entry(soul.clone()).or_default();
        match node.get(key) {
            Some(current) if !wins(field, current) => {}
            _ => {
                node.insert(key.clone(), field.clone());
            }
        }
    }
    graph
}

/// Checks every store against the reference and every acknowledged write against every store.
pub fn converged(
    stores: &[&MemStore],
    committed: &[(Soul, Key, Field)],
    acked: &[(Soul, Key, Field)],
) -> Result<(), String> {
    let expected = reference(committed);
    for (i, store) in stores.iter().enumerate() {
        if store.nodes != expected {
            return Err(format!(
                "relay {i} differs from the reference merge: {}",
                first_difference(&store.nodes, &expected)
            ));
        }
    }
    for (soul, key, field) in acked {
        for (i, store) in stores.iter().enumerate() {
            let held = store.nodes.get(soul).and_then(|n| n.get(key));
            if held.is_none_or(|h| wins(field, h)) {
                return Err(format!("relay {i} lost an acknowledged write {soul}.{key} = {field:?} (holds {held:?})"));
            }
        }
    }
    Ok(())
}

/// Checks each edge: every field it holds is the reference's (what it read or wrote converged),
/// and it holds no soul its clients did not read or write.
pub fn edges_converged(
    edges: &[(&MemStore, &std::collections::BTreeSet<Soul>)],
    committed: &[(Soul, Key, Field)],
) -> Result<(), String> {
    let expected = reference(committed);
    for (i, (store, used)) in edges.iter().enumerate() {
        for (soul, node) in &store.nodes {
            if !used.contains(soul) {
                return Err(format!(
                    "edge {i} holds {soul}, which none of its clients read or wrote"
                ));
            }
            for (key, field) in node {
                let want = expected.get(soul).and_then(|n| n.get(key));
                if want != Some(field) {
                    return Err(format!(
                        "edge {i} holds {soul}.{key} = {field:?}, the reference {want:?}"
                    ));
                }
            }
        }
    }
    Ok(())
}

/// Checks a shared-store run: every client's relay answered its final GET of each soul with the
/// node as the store holds it (a relay answering from a cache the change feed let go stale
/// fails this).
pub fn answers_match_store(
    store: &MemStore,
    answers: &[(usize, &BTreeMap<String, serde_json::Value>)],
    souls: u32,
) -> Result<(), String> {
    for (client, answered) in answers {
        for s in 0..souls {
            let soul = format!("s{s}");
            let Some(answer) = answered.get(&soul) else {
                return Err(format!("client {client} got no answer for {soul}"));
            };
            let stored = store.nodes.get(soul.as_str());
            let mut got: BTreeMap<String, (serde_json::Value, Option<f64>)> = BTreeMap::new();
            if let Some(node) = answer.as_object() {
                let states = &node["_"][">"];
                for (key, value) in node.iter().filter(|(k, _)| *k != "_") {
                    got.insert(key.clone(), (value.clone(), states[key].as_f64()));
                }
            }
            let want: BTreeMap<String, (serde_json::Value, Option<f64>)> = stored
                .into_iter()
                .flatten()
                .map(|(k, f)| (k.to_string(), (f.value.to_json(), Some(f.state.ms()))))
                .collect();
            if got != want {
                return Err(format!(
                    "client {client}'s relay answers {soul} = {got:?}; the store holds {want:?}"
                ));
            }
        }
    }
    Ok(())
}

fn first_difference(got: &Graph, want: &Graph) -> String {
    for (soul, node) in want {
        for (key, field) in node {
            let have = got.get(soul).and_then(|n| n.get(key));
            if have != Some(field) {
                return format!("{soul}.{key}: has {have:?}, reference {field:?}");
            }
        }
    }
    for (soul, node) in got {
        for key in node.keys() {
            if want.get(soul).and_then(|n| n.get(key)).is_none() {
                return format!("{soul}.{key}: has a field nothing committed");
            }
        }
    }
    "no field differs".into()
}
