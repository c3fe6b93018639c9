//! JSON trees and GUN's graph: how a nested object is cut into linked nodes (as GUN JS's `put`
//! cuts it), and how nodes read back are joined into a tree again.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value as Json};

use crate::graph::Value;

/// A node's fields as the client holds them: key → (value, state).
pub type Fields = BTreeMap<String, (Value, f64)>;

/// Why a value cannot be written.
pub fn check_leaf(value: &Json, max_value_bytes: usize) -> Result<Value, String> {
    Value::from_json(value, max_value_bytes)
}

/// Whether `value` is an object to be written as a node of its own (anything but a link).
pub fn is_nested(value: &Json) -> bool {
    match value {
        Json::Object(map) => !is_link(map),
        _ => false,
    }
}

/// Whether an object is a link, `{"#":soul}`.
pub fn is_link(map: &Map<String, Json>) -> bool {
    map.len() == 1 && map.contains_key("#")
}

/// A node joined into a tree: each link followed while `depth` allows and its node was read,
/// other links left as `{"#":soul}`. A link back to a node already on the way down stays a
/// link, so cycles end.
pub fn join(
    soul: &str,
    nodes: &BTreeMap<String, Fields>,
    depth: usize,
    on_path: &mut BTreeSet<String>,
) -> Json {
    let Some(fields) = nodes.get(soul) else {
        return link_json(soul);
    };
    on_path.insert(soul.to_owned());
    let mut out = Map::new();
    for (key, (value, _)) in fields {
        let json = match value {
            Value::Link(to) if depth > 0 && !on_path.contains(to.as_str()) => {
                join(to.as_str(), nodes, depth - 1, on_path)
            }
            other => other.to_json(),
        };
        out.insert(key.clone(), json);
    }
    on_path.remove(soul);
    Json::Object(out)
}

fn link_json(soul: &str) -> Json {
    let mut m = Map::new();
    m.insert("#".into(), Json::String(soul.to_owned()));
    Json::Object(m)
}

/// Merges `incoming` into `node` by HAM (the higher state wins; equal states go to the greater
/// value text, as GUN breaks ties). Returns the keys that changed.
pub fn merge(node: &mut Fields, incoming: &Fields) -> Vec<String> {
    let mut changed = Vec::new();
    for (key, (value, state)) in incoming {
        let wins = match node.get(key) {
            None => true,
            Some((old, old_state)) => {
                state > old_state || (state == old_state && value.json_text() > old.json_text())
            }
        };
        if wins {
            node.insert(key.clone(), (value.clone(), *state));
            changed.push(key.clone());
        }
    }
    changed
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::Soul;
    use serde_json::json;

    fn fields(pairs: &[(&str, Value)]) -> Fields {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), (v.clone(), 1.0)))
            .collect()
    }

    #[test]
    fn links_are_followed_to_the_depth_asked_and_cycles_stay_links() {
        let link = |s: &str| Value::Link(Soul::new(s).unwrap());
        let mut nodes = BTreeMap::new();
        nodes.insert(
            "a".to_string(),
            fields(&[("b", link("a/b")), ("n", Value::Number(1.0))]),
        );
        nodes.insert(
            "a/b".to_string(),
            fields(&[("back", link("a")), ("x", Value::Bool(true))]),
        );
        let tree = join("a", &nodes, 5, &mut BTreeSet::new());
        assert_eq!(tree, json!({"b": {"back": {"#": "a"}, "x": true}, "n": 1}));
        let shallow = join("a", &nodes, 0, &mut BTreeSet::new());
        assert_eq!(shallow, json!({"b": {"#": "a/b"}, "n": 1}));
    }

    #[test]
    fn merging_keeps_the_higher_state_and_reports_what_changed() {
        let mut node = fields(&[("a", Value::Number(1.0))]);
        let mut newer = fields(&[("a", Value::Number(2.0)), ("b", Value::Null)]);
        newer.get_mut("a").unwrap().1 = 2.0;
        assert_eq!(merge(&mut node, &newer), vec!["a", "b"]);
        let mut older = fields(&[("a", Value::Number(3.0))]);
        older.get_mut("a").unwrap().1 = 0.5;
        assert!(merge(&mut node, &older).is_empty());
        assert_eq!(node["a"].0, Value::Number(2.0));
    }

    #[test]
    fn only_objects_that_are_not_links_are_nested_nodes() {
        assert!(is_nested(&json!({"x": 1})));
        assert!(is_nested(&json!({})));
        assert!(!is_nested(&json!({"#": "soul"})));
        assert!(!is_nested(&json!("text")));
    }
}
