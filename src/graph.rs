//! The graph: souls, keys, states, values, nodes.
//!
//! Each type can only be built through a checking constructor, so holding one means it is valid:
//! a [`Soul`] is a non-empty string, a [`State`] is a finite number, a [`Value`] is one of the five
//! kinds GUN allows. [`Graph::from_json`] turns the `put` of a message into these types and refuses
//! the whole graph, naming the problem, if any part of it is bad.

use std::borrow::Cow;
use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::fmt;

use serde_json::{Map, Value as Json};

use crate::json;
use crate::limits::Limits;

/// A node's id. Non-empty. A soul is kept in many places at once (a store op, the purpose of its
/// result, subscriptions, caches) on every write's path, so a clone copies no text: a short soul
/// (up to 24 bytes, as GUN's random ids are) is held inline, and a map keyed by souls compares
/// it without following a pointer to memory the lookup would not otherwise touch; a longer one is
/// shared.
#[derive(Clone)]
pub struct Soul(SoulText);

#[derive(Clone)]
enum SoulText {
    /// At most [`SoulText::INLINE`] bytes: the string is inline, and cloning it allocates nothing.
    Short(compact_str::CompactString),
    Long(std::sync::Arc<str>),
}

impl SoulText {
    const INLINE: usize = std::mem::size_of::<compact_str::CompactString>();

    fn new(s: &str) -> SoulText {
        if s.len() <= SoulText::INLINE {
            SoulText::Short(compact_str::CompactString::new(s))
        } else {
            SoulText::Long(s.into())
        }
    }
}

impl std::ops::Deref for SoulText {
    type Target = str;
    fn deref(&self) -> &str {
        match self {
            SoulText::Short(s) => s,
            SoulText::Long(s) => s,
        }
    }
}

impl PartialEq for Soul {
    fn eq(&self, other: &Soul) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for Soul {}

impl PartialOrd for Soul {
    fn partial_cmp(&self, other: &Soul) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Soul {
    fn cmp(&self, other: &Soul) -> std::cmp::Ordering {
        self.as_str().cmp(other.as_str())
    }
}

impl std::hash::Hash for Soul {
    /// As the soul's text hashes, so that maps keyed by souls are searched by `&str` too.
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.as_str().hash(state)
    }
}

/// A field name inside a node. Non-empty and not `_` (the metadata key).
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Key(compact_str::CompactString);

/// A HAM state: milliseconds since the Unix epoch as a finite `f64`, fractions kept.
///
/// States are totally ordered; `-0` is stored as `0` so that equal states compare equal.
#[derive(Clone, Copy, PartialEq)]
pub struct State(f64);

/// A field value: what GUN's `valid()` accepts.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    /// The tombstone: a deleted field.
    Null,
    /// `true` or `false`.
    Bool(bool),
    /// A finite number.
    Number(f64),
    /// Any string.
    String(Box<str>),
    /// A link to another node, `{"#": soul}` on the wire.
    Link(Soul),
}

/// One field of a node: its value and the state it was written at.
#[derive(Clone, Debug, PartialEq)]
pub struct Field {
    /// The value.
    pub value: Value,
    /// The HAM state of the write.
    pub state: State,
}

/// A node: a soul and its fields, in key order.
#[derive(Clone, Debug, PartialEq)]
pub struct Node {
    /// The node's id.
    pub soul: Soul,
    /// Its fields, ordered by key.
    pub fields: BTreeMap<Key, Field>,
}

/// A set of nodes, as carried by a `put`, in the order they arrived.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Graph {
    /// The nodes. No two share a soul.
    pub nodes: Vec<Node>,
}

/// Why a graph, or a part of one, was refused. The text names the soul and key concerned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GraphError(pub String);

impl fmt::Display for GraphError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for GraphError {}

fn err<T>(text: String) -> Result<T, GraphError> {
    Err(GraphError(text))
}

/// Shortens user-supplied text for an error message, so replies stay small.
pub(crate) fn excerpt(s: &str) -> std::borrow::Cow<'_, str> {
    const MAX: usize = 64;
    if s.len() <= MAX {
        return std::borrow::Cow::Borrowed(s);
    }
    let mut end = MAX;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    std::borrow::Cow::Owned(format!("{}…", &s[..end]))
}

impl Soul {
    /// Checks and wraps a soul.
    pub fn new(s: &str) -> Result<Soul, GraphError> {
        if s.is_empty() {
            return err("empty soul".into());
        }
        Ok(Soul(SoulText::new(s)))
    }

    /// The soul as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Key {
    /// Checks and wraps a key.
    pub fn new(s: &str) -> Result<Key, GraphError> {
        if s.is_empty() {
            return err("empty key".into());
        }
        if s == "_" {
            return err("key '_' is reserved for node metadata".into());
        }
        Ok(Key(compact_str::CompactString::new(s)))
    }

    /// The key as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl State {
    /// Checks and wraps a state. Only finite numbers are states.
    pub fn new(ms: f64) -> Result<State, GraphError> {
        if !ms.is_finite() {
            return err(format!("state {ms} is not a finite number"));
        }
        Ok(State(if ms == 0.0 { 0.0 } else { ms }))
    }

    /// The state in milliseconds.
    pub fn ms(self) -> f64 {
        self.0
    }
}

impl Eq for State {}

impl PartialOrd for State {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for State {
    fn cmp(&self, other: &Self) -> Ordering {
        self.0.total_cmp(&other.0)
    }
}

macro_rules! show_as_text {
    ($($t:ty),*) => {$(
        impl fmt::Debug for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Debug::fmt(&*self.0, f)
            }
        }
        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
        impl std::borrow::Borrow<str> for $t {
            fn borrow(&self) -> &str {
                &self.0
            }
        }
    )*};
}
show_as_text!(Soul, Key);

impl fmt::Debug for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut s = String::new();
        json::write_number(&mut s, self.0);
        f.write_str(&s)
    }
}

impl Value {
    /// Checks a JSON value against GUN's rules for field values. `max_bytes` bounds strings.
    pub fn from_json(v: &Json, max_bytes: usize) -> Result<Value, String> {
        match v {
            Json::Null => Ok(Value::Null),
            Json::Bool(b) => Ok(Value::Bool(*b)),
            Json::Number(n) => Value::from_number(n.as_f64()),
            Json::String(s) => Value::from_str_within(s, max_bytes),
            Json::Object(map) => match (map.len(), map.get("#")) {
                (1, Some(Json::String(s))) if !s.is_empty() => {
                    Ok(Value::Link(Soul(SoulText::new(s.as_str()))))
                }
                (1, Some(Json::String(_))) => Err("a link with an empty soul".into()),
                (1, Some(_)) => Err("a link whose soul is not a string".into()),
                _ => Err("an object that is not a link (a link is exactly {\"#\":soul})".into()),
            },
            Json::Array(_) => {
                Err("an array (GUN values are null, booleans, numbers, strings or links)".into())
            }
        }
    }

    /// Appends the value's JSON text, as JavaScript writes it.
    pub fn write_json(&self, out: &mut String) {
        match self {
            Value::Null => out.push_str("null"),
            Value::Bool(true) => out.push_str("true"),
            Value::Bool(false) => out.push_str("false"),
            Value::Number(n) => json::write_number(out, *n),
            Value::String(s) => json::write_string(out, s),
            Value::Link(soul) => {
                out.push_str("{\"#\":");
                json::write_string(out, soul.as_str());
                out.push('}');
            }
        }
    }

    /// The value's JSON text, as JavaScript writes it.
    pub fn json_text(&self) -> String {
        let mut s = String::new();
        self.write_json(&mut s);
        s
    }

    /// The value as a JSON tree.
    pub fn to_json(&self) -> Json {
        match self {
            Value::Null => Json::Null,
            Value::Bool(b) => Json::Bool(*b),
            // Whole numbers come out as integers, as JavaScript writes them (`31`, not `31.0`).
            Value::Number(n) => match json::safe_integer(*n) {
                Some(whole) => Json::Number(whole.into()),
                None => serde_json::Number::from_f64(*n).map_or(Json::Null, Json::Number),
            },
            Value::String(s) => Json::String(s.to_string()),
            Value::Link(soul) => {
                let mut m = Map::new();
                m.insert("#".into(), Json::String(soul.to_string()));
                Json::Object(m)
            }
        }
    }

    /// The bytes this value counts for against a read budget: a string's length, 9 otherwise
    /// (GUN's radisk rule).
    pub fn budget_bytes(&self) -> u64 {
        match self {
            Value::String(s) => s.len() as u64,
            _ => 9,
        }
    }
}

impl Node {
    /// An empty node.
    pub fn new(soul: Soul) -> Node {
        Node {
            soul,
            fields: BTreeMap::new(),
        }
    }

    /// Appends the node in GUN's wire form: `{"_":{"#":soul,">":{key:state…}},key:value…}`.
    pub fn write_json(&self, out: &mut String) {
        write_node(out, &self.soul, self.fields.iter());
    }

    /// Reads one node of a `put`. `soul` is the graph key it was found under.
    pub fn from_json(soul: &str, v: &Json, limits: &Limits) -> Result<Node, GraphError> {
        Node::from_parts(soul, NodeInput::<&Json>::of_json(v), limits)
    }

    /// Checks a node's parts, as read from a `put`, against GUN's rules and the limits.
    pub(crate) fn from_parts<V: InputValue + Clone>(
        soul: &str,
        input: NodeInput<'_, V>,
        limits: &Limits,
    ) -> Result<Node, GraphError> {
        let at = || excerpt(soul);
        let soul = Soul::new(soul).map_err(|e| GraphError(format!("invalid graph: {e}")))?;
        let NodeInput::Object { meta, fields } = input else {
            return err(format!("invalid graph: '{}' is not a node object", at()));
        };
        let Some(meta) = meta else {
            return err(format!(
                "invalid graph: node '{}' has no metadata '_'",
                at()
            ));
        };
        let MetaInput::Object {
            soul: meta_soul,
            states,
        } = meta
        else {
            return err(format!(
                "invalid graph: metadata of '{}' is not an object",
                at()
            ));
        };
        match meta_soul {
            Some(s) if s == soul.as_str() => {}
            _ => {
                return err(format!(
                    "invalid graph: metadata soul '_.#' of '{}' is not the same as its graph key",
                    at()
                ))
            }
        }
        let Some(states) = states else {
            return err(format!(
                "invalid graph: node '{}' has no states '_.>'",
                at()
            ));
        };
        let keys = fields.len();
        if keys > limits.max_keys_per_node {
            return err(format!(
                "invalid graph: node '{}' has {keys} keys, over the limit of {}",
                at(),
                limits.max_keys_per_node
            ));
        }
        // Many keys: an index, so that finding each key's state stays linear in all.
        let index: Option<crate::HashMap<&str, &V>> =
            (states.len() > 16).then(|| states.iter().map(|(k, v)| (k.as_ref(), v)).collect());
        let state_of = |k: &str| match &index {
            Some(index) => index.get(k).copied(),
            None => states.iter().rev().find(|(s, _)| *s == k).map(|(_, v)| v),
        };
        let mut node = Node::new(soul);
        for (k, v) in fields.iter() {
            let k = k.as_ref();
            let key = Key::new(k)
                .map_err(|e| GraphError(format!("invalid graph: {e} in node '{}'", at())))?;
            let kat = || excerpt(k);
            limits.check_soul_key(node.soul.as_str(), k).map_err(|e| {
                GraphError(format!("invalid graph: key '{}' of '{}': {e}", kat(), at()))
            })?;
            let state = match state_of(k) {
                None => {
                    return err(format!(
                        "invalid graph: key '{}' of '{}' has no state",
                        kat(),
                        at()
                    ))
                }
                Some(state) => match state.number() {
                    Some(n) => n.and_then(|f| State::new(f).ok()).ok_or_else(|| {
                        GraphError(format!(
                            "invalid graph: state of key '{}' of '{}' is not finite",
                            kat(),
                            at()
                        ))
                    })?,
                    None => {
                        return err(format!(
                            "invalid graph: state of key '{}' of '{}' is not a number: {}",
                            kat(),
                            at(),
                            excerpt(&state.json_text())
                        ))
                    }
                },
            };
            let value = v.to_value(limits.max_value_bytes).map_err(|why| {
                GraphError(format!(
                    "invalid graph: value of key '{}' of '{}' is {why}",
                    kat(),
                    at()
                ))
            })?;
            if let Value::Link(target) = &value {
                limits.check_soul_key(target.as_str(), "").map_err(|e| {
                    GraphError(format!(
                        "invalid graph: link of key '{}' of '{}': {e}",
                        kat(),
                        at()
                    ))
                })?;
            }
            node.fields.insert(key, Field { value, state });
        }
        Ok(node)
    }
}

/// A value of a `put` as read (a field's value, a state, a metadata soul), before its rules are
/// checked: a JSON tree's value, or one read straight from a frame's text (the wire reader),
/// which holds a string without a JSON tree's allocation.
pub(crate) trait InputValue {
    /// The value, checked against GUN's rules for field values. `max_bytes` bounds strings.
    fn to_value(&self, max_bytes: usize) -> Result<Value, String>;
    /// `Some` when the value is a number: its `f64`, if it has one.
    fn number(&self) -> Option<Option<f64>>;
    /// The string, when the value is one.
    fn as_str(&self) -> Option<&str>;
    /// The value's JSON text, for an error message.
    fn json_text(&self) -> String;
}

impl<T: InputValue + ?Sized> InputValue for &T {
    fn to_value(&self, max_bytes: usize) -> Result<Value, String> {
        (**self).to_value(max_bytes)
    }

    fn number(&self) -> Option<Option<f64>> {
        (**self).number()
    }

    fn as_str(&self) -> Option<&str> {
        (**self).as_str()
    }

    fn json_text(&self) -> String {
        (**self).json_text()
    }
}

impl InputValue for Json {
    fn to_value(&self, max_bytes: usize) -> Result<Value, String> {
        Value::from_json(self, max_bytes)
    }

    fn number(&self) -> Option<Option<f64>> {
        match self {
            Json::Number(n) => Some(n.as_f64()),
            _ => None,
        }
    }

    fn as_str(&self) -> Option<&str> {
        Json::as_str(self)
    }

    fn json_text(&self) -> String {
        json::stringify(self)
    }
}

impl Value {
    /// A string value, checked against the size limit (as [`Value::from_json`] checks it).
    pub(crate) fn from_str_within(s: &str, max_bytes: usize) -> Result<Value, String> {
        if s.len() > max_bytes {
            Err(format!(
                "a string of {} bytes, over the limit of {max_bytes}",
                s.len()
            ))
        } else {
            Ok(Value::String(s.into()))
        }
    }

    /// A number value, checked (as [`Value::from_json`] checks it).
    pub(crate) fn from_number(n: Option<f64>) -> Result<Value, String> {
        match n {
            Some(f) if f.is_finite() => Ok(Value::Number(if f == 0.0 { 0.0 } else { f })),
            _ => Err("a number that is not finite".into()),
        }
    }
}

/// A node of a `put` as read, before its rules are checked: from a JSON tree
/// ([`NodeInput::of_json`]) or straight from a frame's text (the wire reader), whose entries are
/// borrowed as they were read.
pub(crate) enum NodeInput<'a, V: Clone> {
    /// Not a JSON object.
    NotObject,
    /// An object.
    Object {
        /// Its metadata `_`, if it has one.
        meta: Option<MetaInput<'a, V>>,
        /// Its other keys and their values, in order, each key once.
        fields: Entries<'a, V>,
    },
}

/// An object's entries as read: each key once, in order.
pub(crate) type Entries<'a, V> = Cow<'a, [(Cow<'a, str>, V)]>;

/// A node's metadata `_` as read.
pub(crate) enum MetaInput<'a, V: Clone> {
    /// Not a JSON object.
    NotObject,
    /// An object.
    Object {
        /// Its `#`, if it is a string.
        soul: Option<&'a str>,
        /// Its `>`, when that is an object: each key once, with its state.
        states: Option<Entries<'a, V>>,
    },
}

impl<'a> NodeInput<'a, &'a Json> {
    /// The parts of a node held in a JSON tree.
    pub(crate) fn of_json(v: &'a Json) -> NodeInput<'a, &'a Json> {
        let Json::Object(map) = v else {
            return NodeInput::NotObject;
        };
        let entries = |map: &'a serde_json::Map<String, Json>| -> Entries<'a, &'a Json> {
            map.iter()
                .filter(|(k, _)| *k != "_")
                .map(|(k, v)| (Cow::Borrowed(k.as_str()), v))
                .collect()
        };
        let meta = map.get("_").map(|meta| match meta {
            Json::Object(meta) => MetaInput::Object {
                soul: meta.get("#").and_then(Json::as_str),
                states: match meta.get(">") {
                    // `_` is a key like any other among states.
                    Some(Json::Object(states)) => Some(
                        states
                            .iter()
                            .map(|(k, v)| (Cow::Borrowed(k.as_str()), v))
                            .collect(),
                    ),
                    _ => None,
                },
            },
            _ => MetaInput::NotObject,
        });
        NodeInput::Object {
            meta,
            fields: entries(map),
        }
    }
}

/// Writes a node in wire form from any sequence of fields, so callers need not build a [`Node`].
pub fn write_node<'a>(
    out: &mut String,
    soul: &Soul,
    fields: impl Iterator<Item = (&'a Key, &'a Field)> + Clone,
) {
    out.push_str("{\"_\":{\"#\":");
    json::write_string(out, soul.as_str());
    write_node_rest(out, fields);
}

/// Writes a graph's entry for one node, `"soul":{node}`. The soul's JSON text is written once and
/// copied into the metadata.
pub fn write_graph_entry<'a>(
    out: &mut String,
    soul: &Soul,
    fields: impl Iterator<Item = (&'a Key, &'a Field)> + Clone,
) {
    let soul_at = out.len();
    json::write_string(out, soul.as_str());
    let soul_text = soul_at..out.len();
    out.push_str(":{\"_\":{\"#\":");
    out.extend_from_within(soul_text);
    write_node_rest(out, fields);
}

/// The rest of a node after its metadata's soul: the states, then the values. Each key's JSON text
/// is written once, with its state, and copied before its value (for the first
/// [`COPIED_KEYS`] fields); a state the same as the one before it (a put's fields mostly share
/// one) is copied too.
fn write_node_rest<'a>(
    out: &mut String,
    fields: impl Iterator<Item = (&'a Key, &'a Field)> + Clone,
) {
    const COPIED_KEYS: usize = 16;
    let mut key_text = [(0, 0); COPIED_KEYS];
    let mut last_state: Option<(State, std::ops::Range<usize>)> = None;
    out.push_str(",\">\":{");
    for (i, (k, f)) in fields.clone().enumerate() {
        if i > 0 {
            out.push(',');
        }
        let key_at = out.len();
        json::write_string(out, k.as_str());
        if let Some(slot) = key_text.get_mut(i) {
            *slot = (key_at, out.len());
        }
        out.push(':');
        match &last_state {
            Some((state, text)) if *state == f.state => out.extend_from_within(text.clone()),
            _ => {
                let state_at = out.len();
                json::write_number(out, f.state.ms());
                last_state = Some((f.state, state_at..out.len()));
            }
        }
    }
    out.push_str("}}");
    for (i, (k, f)) in fields.enumerate() {
        out.push(',');
        match key_text.get(i) {
            Some(&(from, to)) => out.extend_from_within(from..to),
            None => json::write_string(out, k.as_str()),
        }
        out.push(':');
        f.value.write_json(out);
    }
    out.push('}');
}

impl Graph {
    /// Reads the `put` of a message. Any bad node, key, state or value refuses the whole graph.
    pub fn from_json(v: &Json, limits: &Limits) -> Result<Graph, GraphError> {
        let Json::Object(map) = v else {
            return err(Graph::NOT_AN_OBJECT.into());
        };
        let nodes = map
            .iter()
            .map(|(soul, node)| (soul.as_str(), NodeInput::<&Json>::of_json(node)));
        Graph::from_parts(map.len(), nodes, limits)
    }

    /// Why a `put` that is not a JSON object is refused.
    pub(crate) const NOT_AN_OBJECT: &'static str =
        "invalid graph: 'put' is not an object of souls to nodes";

    /// Checks the `count` nodes of a `put`, as read, against GUN's rules and the limits.
    pub(crate) fn from_parts<'a, V: InputValue + Clone + 'a>(
        count: usize,
        nodes: impl Iterator<Item = (&'a str, NodeInput<'a, V>)>,
        limits: &Limits,
    ) -> Result<Graph, GraphError> {
        if count == 0 {
            return err("invalid graph: 'put' has no nodes".into());
        }
        if count > limits.max_nodes_per_put {
            return err(format!(
                "invalid graph: {count} nodes in one put, over the limit of {}",
                limits.max_nodes_per_put
            ));
        }
        let nodes = nodes
            .map(|(soul, node)| Node::from_parts(soul, node, limits))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Graph { nodes })
    }

    /// Appends the graph in wire form: `{soul: node, …}`.
    pub fn write_json(&self, out: &mut String) {
        out.push('{');
        for (i, node) in self.nodes.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            write_graph_entry(out, &node.soul, node.fields.iter());
        }
        out.push('}');
    }

    /// About how long the graph's wire form is (a little more when values need no escapes), so
    /// a message can be written without growing its buffer.
    pub fn json_len_hint(&self) -> usize {
        let field = |(key, field): (&Key, &Field)| {
            let value = match &field.value {
                Value::String(s) => s.len() + 2,
                Value::Link(soul) => soul.as_str().len() + 8,
                _ => 24,
            };
            // The key twice (its state, its value), a state of up to 17 digits, punctuation.
            2 * key.as_str().len() + value + 24
        };
        self.nodes
            .iter()
            .map(|n| 2 * n.soul.as_str().len() + 20 + n.fields.iter().map(field).sum::<usize>())
            .sum::<usize>()
            + 2
    }

    /// The number of fields in all nodes.
    pub fn field_count(&self) -> usize {
        self.nodes.iter().map(|n| n.fields.len()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Graph, GraphError> {
        Graph::from_json(&serde_json::from_str(text).unwrap(), &Limits::default())
    }

    /// The writer copies a soul, keys and repeated states it has written once; what it writes is
    /// what writing each piece afresh gives, past the keys it remembers and with states that
    /// repeat, change and come back.
    #[test]
    fn a_node_writes_as_each_piece_written_afresh() {
        let soul = Soul::new("a\"b/c").unwrap();
        let mut fields = BTreeMap::new();
        for i in 0..40 {
            let key = Key::new(&format!("k{i:02}\n{}", "é".repeat(i % 3))).unwrap();
            let state = State::new([5.0, 5.0, 1.5, 5.0][i % 4]).unwrap();
            let value = Value::String(format!("v{i}").into());
            fields.insert(key, Field { value, state });
        }
        let string = |s: &str| serde_json::to_string(s).unwrap();
        let states: Vec<String> = fields
            .iter()
            .map(|(k, f)| format!("{}:{}", string(k.as_str()), f.state.ms()))
            .collect();
        let values: Vec<String> = fields
            .iter()
            .map(|(k, f)| format!(",{}:{}", string(k.as_str()), f.value.json_text()))
            .collect();
        let node = format!(
            "{{\"_\":{{\"#\":{},\">\":{{{}}}}}{}}}",
            string(soul.as_str()),
            states.join(","),
            values.concat()
        );
        let graph = Graph {
            nodes: vec![Node {
                soul: soul.clone(),
                fields,
            }],
        };
        let mut written = String::new();
        graph.write_json(&mut written);
        assert_eq!(written, format!("{{{}:{node}}}", string(soul.as_str())));
        let mut alone = String::new();
        graph.nodes[0].write_json(&mut alone);
        assert_eq!(alone, node);
    }

    #[test]
    fn reads_a_node_with_every_kind_of_value() {
        let g = parse(
            r##"{"a":{"_":{">":{"n":1,"s":2,"b":3,"z":4,"l":1620286973647.001},"#":"a"},
                "n":1.5,"s":"x","b":true,"z":null,"l":{"#":"b"}}}"##,
        )
        .unwrap();
        let node = &g.nodes[0];
        assert_eq!(node.soul.as_str(), "a");
        assert_eq!(node.fields["l"].value, Value::Link(Soul::new("b").unwrap()));
        assert_eq!(node.fields["l"].state.ms(), 1620286973647.001);
        let mut out = String::new();
        g.write_json(&mut out);
        assert_eq!(
            out,
            r##"{"a":{"_":{"#":"a",">":{"b":3,"l":1620286973647.001,"n":1,"s":2,"z":4}},"b":true,"l":{"#":"b"},"n":1.5,"s":"x","z":null}}"##
        );
    }

    #[test]
    fn refuses_what_gun_refuses_and_says_why() {
        let cases = [
            (r##""x""##, "not an object"),
            (r##"{}"##, "no nodes"),
            (r##"{"a":5}"##, "not a node object"),
            (r##"{"a":{"x":1}}"##, "no metadata"),
            (r##"{"a":{"_":{"#":"b",">":{}}}}"##, "not the same"),
            (r##"{"a":{"_":{"#":"a"},"x":1}}"##, "no states"),
            (r##"{"a":{"_":{"#":"a",">":{}},"x":1}}"##, "has no state"),
            (
                r##"{"a":{"_":{"#":"a",">":{"x":"1"}},"x":1}}"##,
                "not a number",
            ),
            (
                r##"{"a":{"_":{"#":"a",">":{"x":null}},"x":1}}"##,
                "not a number",
            ),
            (
                r##"{"a":{"_":{"#":"a",">":{"x":1}},"x":{"y":1}}}"##,
                "not a link",
            ),
            (r##"{"a":{"_":{"#":"a",">":{"x":1}},"x":[1]}}"##, "an array"),
            (
                r##"{"a":{"_":{"#":"a",">":{"x":1}},"x":{"#":"b","c":1}}}"##,
                "not a link",
            ),
            (
                r##"{"a":{"_":{"#":"a",">":{"x":1}},"x":{"#":""}}}"##,
                "empty soul",
            ),
            (r##"{"":{"_":{"#":"",">":{}}}}"##, "empty soul"),
            (r##"{"a":{"_":{"#":"a",">":{"":1}},"":1}}"##, "empty key"),
        ];
        for (text, why) in cases {
            let e = parse(text).expect_err(text);
            assert!(e.0.contains(why), "{text}: {e} should mention {why}");
        }
    }

    #[test]
    fn one_bad_node_refuses_the_whole_graph() {
        let e = parse(r##"{"a":{"_":{"#":"a",">":{"x":1}},"x":1},"b":{"x":1}}"##).unwrap_err();
        assert!(e.0.contains("'b'"));
    }

    #[test]
    fn limits_bound_nodes_keys_and_values() {
        let limits = Limits {
            max_nodes_per_put: 1,
            max_keys_per_node: 1,
            max_value_bytes: 3,
            ..Limits::default()
        };
        let g = |t: &str| Graph::from_json(&serde_json::from_str(t).unwrap(), &limits);
        assert!(g(r##"{"a":{"_":{"#":"a",">":{}}},"b":{"_":{"#":"b",">":{}}}}"##).is_err());
        assert!(g(r##"{"a":{"_":{"#":"a",">":{"x":1,"y":1}},"x":1,"y":1}}"##).is_err());
        assert!(g(r##"{"a":{"_":{"#":"a",">":{"x":1}},"x":"abcd"}}"##).is_err());
        assert!(g(r##"{"a":{"_":{"#":"a",">":{"x":1}},"x":"abc"}}"##).is_ok());
    }

    #[test]
    fn states_are_totally_ordered_and_minus_zero_is_zero() {
        assert_eq!(State::new(-0.0).unwrap(), State::new(0.0).unwrap());
        assert!(State::new(1.5).unwrap() > State::new(1.0).unwrap());
        assert!(State::new(f64::INFINITY).is_err());
    }
}
