//! Reading a message straight from its text: the `put` graph is read into its nodes' parts
//! (keys borrowed from the text where they hold no escapes) without first building a JSON tree
//! of it, whose maps (hashed, every key a new string) cost most of a frame's parse. What is read
//! is then checked by the same rules as a JSON tree is ([`Graph::from_parts`]), so both paths
//! accept and refuse alike; the message's other fields are read into JSON values as before.
//!
//! Objects keep the semantics of the JSON tree they replace: a repeated key holds its last value,
//! at its first place.

use std::borrow::Cow;
use std::fmt;

use serde::de::{DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value as Json};

use serde::Deserialize;

use crate::graph::{Graph, GraphError, InputValue, MetaInput, NodeInput, Value};
use crate::limits::Limits;

/// A message object: its `put`, read directly, the other fields the core reads each in its own
/// place, and the rest as they came.
pub(super) struct RawMessage<'de> {
    /// `#`, `@`, `err`, `><`, `pid`, `dam`, `ok` and `##`.
    pub known: Known<'de>,
    /// Every other field but `put`, in order.
    pub extra: Map<String, Json>,
    /// `put`, if the message has one.
    pub put: Option<RawPut<'de>>,
    /// `get`, if the message has one.
    pub get: Option<RawGet<'de>>,
}

/// A `get` as read: its fields, a lex object among them as a JSON tree.
pub(super) enum RawGet<'de> {
    NotObject,
    Object(Entries<'de, RawValue<'de>>),
}

/// The fields of a message the core reads, as read (their types are checked afterwards).
#[derive(Default)]
pub(super) struct Known<'de> {
    pub id: Option<RawValue<'de>>,
    pub reply_to: Option<RawValue<'de>>,
    pub err: Option<RawValue<'de>>,
    pub skip: Option<RawValue<'de>>,
    pub pid: Option<RawValue<'de>>,
    pub dam: Option<RawValue<'de>>,
    pub ok: Option<RawValue<'de>>,
    pub hash: Option<RawValue<'de>>,
}

impl<'de> Known<'de> {
    /// The place of the field named `key`, if the core reads it.
    fn slot(&mut self, key: &str) -> Option<&mut Option<RawValue<'de>>> {
        Some(match key {
            "#" => &mut self.id,
            "@" => &mut self.reply_to,
            "err" => &mut self.err,
            "><" => &mut self.skip,
            "pid" => &mut self.pid,
            "dam" => &mut self.dam,
            "ok" => &mut self.ok,
            "##" => &mut self.hash,
            _ => return None,
        })
    }
}

/// A JSON value as read: scalars as they are, a string borrowed from the text where it holds no
/// escapes, and an array or object as a JSON tree. Small (32 bytes), so a message's fields move
/// cheaply, and a string costs one allocation where it is kept, not one more to read it.
#[derive(Debug)]
pub(super) enum RawValue<'de> {
    Null,
    Bool(bool),
    Number(serde_json::Number),
    Str(Cow<'de, str>),
    Tree(Box<Json>),
}

impl RawValue<'_> {
    /// The value as a JSON tree.
    pub fn into_json(self) -> Json {
        match self {
            RawValue::Null => Json::Null,
            RawValue::Bool(b) => Json::Bool(b),
            RawValue::Number(n) => Json::Number(n),
            RawValue::Str(s) => Json::String(s.into_owned()),
            RawValue::Tree(tree) => *tree,
        }
    }
}

impl InputValue for RawValue<'_> {
    fn to_value(&self, max_bytes: usize) -> Result<Value, String> {
        match self {
            RawValue::Null => Ok(Value::Null),
            RawValue::Bool(b) => Ok(Value::Bool(*b)),
            RawValue::Number(n) => Value::from_number(n.as_f64()),
            RawValue::Str(s) => Value::from_str_within(s, max_bytes),
            RawValue::Tree(tree) => Value::from_json(tree, max_bytes),
        }
    }

    fn number(&self) -> Option<Option<f64>> {
        match self {
            RawValue::Number(n) => Some(n.as_f64()),
            _ => None,
        }
    }

    fn as_str(&self) -> Option<&str> {
        match self {
            RawValue::Str(s) => Some(s),
            _ => None,
        }
    }

    fn json_text(&self) -> String {
        match self {
            RawValue::Tree(tree) => crate::json::stringify(tree),
            RawValue::Str(s) => {
                let mut out = String::with_capacity(s.len() + 2);
                crate::json::write_string(&mut out, s);
                out
            }
            RawValue::Null => "null".into(),
            RawValue::Bool(b) => b.to_string(),
            RawValue::Number(n) => crate::json::stringify(&Json::Number(n.clone())),
        }
    }
}

impl<'de> serde::Deserialize<'de> for RawValue<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(de: D) -> Result<Self, D::Error> {
        de.deserialize_any(RawValueVisitor)
    }
}

struct RawValueVisitor;

impl<'de> Visitor<'de> for RawValueVisitor {
    type Value = RawValue<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_unit<E>(self) -> Result<RawValue<'de>, E> {
        Ok(RawValue::Null)
    }

    fn visit_bool<E>(self, v: bool) -> Result<RawValue<'de>, E> {
        Ok(RawValue::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<RawValue<'de>, E> {
        Ok(RawValue::Number(v.into()))
    }

    fn visit_u64<E>(self, v: u64) -> Result<RawValue<'de>, E> {
        Ok(RawValue::Number(v.into()))
    }

    fn visit_f64<E>(self, v: f64) -> Result<RawValue<'de>, E> {
        // As a JSON tree reads it: a number JSON cannot hold is null.
        Ok(serde_json::Number::from_f64(v).map_or(RawValue::Null, RawValue::Number))
    }

    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<RawValue<'de>, E> {
        Ok(RawValue::Str(Cow::Borrowed(v)))
    }

    fn visit_str<E>(self, v: &str) -> Result<RawValue<'de>, E> {
        Ok(RawValue::Str(Cow::Owned(v.to_owned())))
    }

    fn visit_string<E>(self, v: String) -> Result<RawValue<'de>, E> {
        Ok(RawValue::Str(Cow::Owned(v)))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<RawValue<'de>, A::Error> {
        let tree = Json::deserialize(serde::de::value::SeqAccessDeserializer::new(seq))?;
        Ok(RawValue::Tree(Box::new(tree)))
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<RawValue<'de>, A::Error> {
        let tree = Json::deserialize(serde::de::value::MapAccessDeserializer::new(map))?;
        Ok(RawValue::Tree(Box::new(tree)))
    }
}

/// A `put` as read.
pub(super) enum RawPut<'de> {
    NotObject,
    Nodes(Entries<'de, RawNode<'de>>),
}

/// A node of a `put` as read.
pub(super) enum RawNode<'de> {
    NotObject,
    Object {
        meta: Option<RawMeta<'de>>,
        fields: Entries<'de, RawValue<'de>>,
    },
}

/// A node's `_` as read.
pub(super) enum RawMeta<'de> {
    NotObject,
    Object {
        soul: Option<RawValue<'de>>,
        states: Option<Entries<'de, RawValue<'de>>>,
    },
}

impl RawPut<'_> {
    /// The graph, checked by the rules every `put` is checked by.
    pub fn into_graph(self, limits: &Limits) -> Result<Graph, GraphError> {
        let RawPut::Nodes(nodes) = self else {
            return Err(GraphError(Graph::NOT_AN_OBJECT.into()));
        };
        let count = nodes.list.len();
        let parts = nodes.list.iter().map(|(soul, node)| {
            let input = match node {
                RawNode::NotObject => NodeInput::NotObject,
                RawNode::Object { meta, fields } => NodeInput::Object {
                    meta: meta.as_ref().map(|meta| match meta {
                        RawMeta::NotObject => MetaInput::NotObject,
                        RawMeta::Object { soul, states } => MetaInput::Object {
                            soul: soul.as_ref(),
                            states: states.as_ref().map(Entries::pairs),
                        },
                    }),
                    fields: fields.pairs(),
                },
            };
            (soul.as_ref(), input)
        });
        Graph::from_parts(count, parts, limits)
    }
}

/// An object's entries in order, each key once: a repeated key's last value, at its first place.
pub(super) struct Entries<'de, T> {
    list: Vec<(Cow<'de, str>, T)>,
    /// Where each key is, once there are too many to search one by one. Boxed: most objects
    /// never need one, and a small `Entries` moves cheaply.
    index: Option<Box<crate::HashMap<String, usize>>>,
}

impl<'de, T> Entries<'de, T> {
    fn new() -> Self {
        Entries {
            list: Vec::new(),
            index: None,
        }
    }

    fn insert(&mut self, key: Cow<'de, str>, value: T) {
        const SEARCHED: usize = 16;
        let at = match &self.index {
            Some(index) => index.get(key.as_ref()).copied(),
            None => self.list.iter().position(|(k, _)| *k == key),
        };
        if let Some(at) = at {
            self.list[at].1 = value;
            return;
        }
        if let Some(index) = &mut self.index {
            index.insert(key.as_ref().to_owned(), self.list.len());
        } else if self.list.len() == SEARCHED {
            let mut index = Box::<crate::HashMap<String, usize>>::default();
            for (i, (k, _)) in self.list.iter().enumerate() {
                index.insert(k.as_ref().to_owned(), i);
            }
            index.insert(key.as_ref().to_owned(), self.list.len());
            self.index = Some(index);
        }
        self.list.push((key, value));
    }

    /// The value of `key`.
    pub fn get(&self, key: &str) -> Option<&T> {
        match &self.index {
            Some(index) => index.get(key).map(|&at| &self.list[at].1),
            None => self.list.iter().find(|(k, _)| k == key).map(|(_, v)| v),
        }
    }

    fn pairs(&self) -> Vec<(&str, &T)> {
        self.list.iter().map(|(k, v)| (k.as_ref(), v)).collect()
    }
}

/// Reads a message object (`None` when the text holds another JSON value). Fails only where the
/// JSON itself is bad; what the message says is checked afterwards.
pub(super) fn read_message(text: &str) -> Result<Option<RawMessage<'_>>, serde_json::Error> {
    let mut de = serde_json::Deserializer::from_str(text);
    let mut message = RawMessage {
        known: Known::default(),
        extra: Map::new(),
        put: None,
        get: None,
    };
    // Read in place: the message is big enough that moving it out of each visitor costs.
    let is_object = MapOr(MessageSeed(&mut message)).deserialize(&mut de)?;
    de.end()?;
    Ok(is_object.then_some(message))
}

/// Reads a map with the seed `S`, or anything else as `S::other()` (consumed and dropped).
struct MapOr<S>(S);

trait MapSeed<'de> {
    type Out;
    fn other() -> Self::Out;
    fn map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Out, A::Error>;
}

impl<'de, S: MapSeed<'de>> DeserializeSeed<'de> for MapOr<S> {
    type Value = S::Out;

    fn deserialize<D: serde::Deserializer<'de>>(self, de: D) -> Result<S::Out, D::Error> {
        de.deserialize_any(self)
    }
}

impl<'de, S: MapSeed<'de>> Visitor<'de> for MapOr<S> {
    type Value = S::Out;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<S::Out, E> {
        Ok(S::other())
    }

    fn visit_i64<E>(self, _: i64) -> Result<S::Out, E> {
        Ok(S::other())
    }

    fn visit_u64<E>(self, _: u64) -> Result<S::Out, E> {
        Ok(S::other())
    }

    fn visit_f64<E>(self, _: f64) -> Result<S::Out, E> {
        Ok(S::other())
    }

    fn visit_str<E>(self, _: &str) -> Result<S::Out, E> {
        Ok(S::other())
    }

    fn visit_unit<E>(self) -> Result<S::Out, E> {
        Ok(S::other())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<S::Out, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(S::other())
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<S::Out, A::Error> {
        self.0.map(map)
    }
}

/// A key, borrowed from the text when it holds no escapes.
struct KeySeed;

impl<'de> DeserializeSeed<'de> for KeySeed {
    type Value = Cow<'de, str>;

    fn deserialize<D: serde::Deserializer<'de>>(self, de: D) -> Result<Cow<'de, str>, D::Error> {
        de.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for KeySeed {
    type Value = Cow<'de, str>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a key")
    }

    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Cow<'de, str>, E> {
        Ok(Cow::Borrowed(v))
    }

    fn visit_str<E>(self, v: &str) -> Result<Cow<'de, str>, E> {
        Ok(Cow::Owned(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Cow<'de, str>, E> {
        Ok(Cow::Owned(v))
    }
}

/// The message object, read into the message given; `false` when the text holds another JSON
/// value.
struct MessageSeed<'a, 'de>(&'a mut RawMessage<'de>);

impl<'de> MapSeed<'de> for MessageSeed<'_, 'de> {
    type Out = bool;

    fn other() -> Self::Out {
        false
    }

    fn map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Out, A::Error> {
        let message = self.0;
        while let Some(key) = map.next_key_seed(KeySeed)? {
            if key == "put" {
                message.put = Some(map.next_value_seed(MapOr(PutSeed))?);
            } else if key == "get" {
                message.get = Some(map.next_value_seed(MapOr(GetSeed))?);
            } else if let Some(slot) = message.known.slot(&key) {
                *slot = Some(map.next_value()?);
            } else {
                let value: Json = map.next_value()?;
                message.extra.insert(key.into_owned(), value);
            }
        }
        Ok(true)
    }
}

struct PutSeed;

impl<'de> MapSeed<'de> for PutSeed {
    type Out = RawPut<'de>;

    fn other() -> Self::Out {
        RawPut::NotObject
    }

    fn map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Out, A::Error> {
        let mut nodes = Entries::new();
        while let Some(soul) = map.next_key_seed(KeySeed)? {
            let node = map.next_value_seed(MapOr(NodeSeed))?;
            nodes.insert(soul, node);
        }
        Ok(RawPut::Nodes(nodes))
    }
}

struct NodeSeed;

impl<'de> MapSeed<'de> for NodeSeed {
    type Out = RawNode<'de>;

    fn other() -> Self::Out {
        RawNode::NotObject
    }

    fn map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Out, A::Error> {
        let mut meta = None;
        let mut fields = Entries::new();
        while let Some(key) = map.next_key_seed(KeySeed)? {
            if key == "_" {
                meta = Some(map.next_value_seed(MapOr(MetaSeed))?);
            } else {
                fields.insert(key, map.next_value()?);
            }
        }
        Ok(RawNode::Object { meta, fields })
    }
}

struct MetaSeed;

impl<'de> MapSeed<'de> for MetaSeed {
    type Out = RawMeta<'de>;

    fn other() -> Self::Out {
        RawMeta::NotObject
    }

    fn map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Out, A::Error> {
        let (mut soul, mut states) = (None, None);
        while let Some(key) = map.next_key_seed(KeySeed)? {
            match key.as_ref() {
                "#" => soul = Some(map.next_value()?),
                ">" => states = map.next_value_seed(MapOr(StatesSeed))?,
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(RawMeta::Object { soul, states })
    }
}

struct GetSeed;

impl<'de> MapSeed<'de> for GetSeed {
    type Out = RawGet<'de>;

    fn other() -> Self::Out {
        RawGet::NotObject
    }

    fn map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Out, A::Error> {
        read_values(map).map(RawGet::Object)
    }
}

struct StatesSeed;

impl<'de> MapSeed<'de> for StatesSeed {
    type Out = Option<Entries<'de, RawValue<'de>>>;

    fn other() -> Self::Out {
        None
    }

    fn map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Out, A::Error> {
        read_values(map).map(Some)
    }
}

/// An object's entries, each value read as a [`RawValue`].
fn read_values<'de, A: MapAccess<'de>>(
    mut map: A,
) -> Result<Entries<'de, RawValue<'de>>, A::Error> {
    let mut values = Entries::new();
    while let Some(key) = map.next_key_seed(KeySeed)? {
        values.insert(key, map.next_value()?);
    }
    Ok(values)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The graph a JSON tree of the same text gives.
    fn by_tree(put: &str) -> Result<Graph, GraphError> {
        Graph::from_json(&serde_json::from_str(put).unwrap(), &Limits::default())
    }

    fn direct(put: &str) -> Result<Graph, GraphError> {
        let text = format!(r#"{{"put":{put}}}"#);
        read_message(&text)
            .unwrap()
            .unwrap()
            .put
            .unwrap()
            .into_graph(&Limits::default())
    }

    #[test]
    fn reads_and_refuses_as_the_json_tree_does() {
        // Over the 16 entries searched one by one, with a repeated key.
        let states: Vec<String> = (0..40).map(|i| format!("\"k{i}\":{i}")).collect();
        let fields: Vec<String> = (0..40).map(|i| format!("\"k{i}\":\"v{i}\"")).collect();
        let many_keys = format!(
            "{{\"a\":{{\"_\":{{\"#\":\"a\",\">\":{{{}}}}},{},\"k3\":\"again\"}}}}",
            states.join(","),
            fields.join(",")
        );
        for put in [
            r##"{"a":{"_":{"#":"a",">":{"x":1,"y":2}},"x":"s","y":{"#":"b"}}}"##,
            r##"{"a":{"x":1,"_":{">":{"x":1},"#":"a"}}}"##,
            r##"{"a":{"_":{"#":"a",">":{"x":1,"x":2}},"x":1,"x":"last"}}"##,
            r##"{"a":{"_":{"#":"a",">":{"x":1}},"x":1},"a":{"_":{"#":"a",">":{"y":1}},"y":2}}"##,
            r##"{"a\u0041":{"_":{"#":"aA",">":{"k\n":1}},"k\n":true}}"##,
            r##"{"a":{"_":{"#":"a",">":{"x":1},">":5},"x":1}}"##,
            r##"{"a":{"_":{"#":"a",">":{"x":"1"}},"x":1}}"##,
            r##"{"a":{"_":{"#":"b",">":{"x":1}},"x":1}}"##,
            r##"{"a":{"_":[1,{"x":2}],"x":1}}"##,
            r##"{"a":{"_":{"#":"a",">":{}},"x":1}}"##,
            r##"{"a":{"_":{"#":"a",">":{"x":1}},"x":[1]}}"##,
            r##"{"a":{"_":{"#":"a",">":{"x":1}},"x":{"#":"b","c":1}}}"##,
            r##"{"a":[{"x":1}]}"##,
            r##"{"":{"_":{"#":"",">":{"x":1}},"x":1}}"##,
            r##"{"a":{"_":{"#":"a",">":{"_":1}},"_":null}}"##,
            r##"{}"##,
            r##"[1,2]"##,
            r##""put""##,
            many_keys.as_str(),
        ] {
            assert_eq!(direct(put), by_tree(put), "{put}");
        }
    }

    /// A JSON value whose objects may repeat keys (which a JSON tree cannot hold).
    #[derive(Clone, Debug)]
    enum J {
        Null,
        Bool(bool),
        Num(f64),
        Str(&'static str),
        Arr(Vec<J>),
        Obj(Vec<(&'static str, J)>),
    }

    fn render(j: &J, out: &mut String) {
        match j {
            J::Null => out.push_str("null"),
            J::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            J::Num(n) => crate::json::write_number(out, *n),
            J::Str(s) => out.push_str(&format!("\"{s}\"")),
            J::Arr(items) => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    render(item, out);
                }
                out.push(']');
            }
            J::Obj(entries) => {
                out.push('{');
                for (i, (k, v)) in entries.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    out.push_str(&format!("\"{k}\":"));
                    render(v, out);
                }
                out.push('}');
            }
        }
    }

    fn json() -> impl proptest::strategy::Strategy<Value = J> {
        use proptest::prelude::*;
        let names = || prop::sample::select(vec!["a", "b", "x", "_", "#", ">", "", "\\u0061"]);
        let leaf = prop_oneof![
            Just(J::Null),
            any::<bool>().prop_map(J::Bool),
            prop::sample::select(vec![0.0, 1.0, 2.5, -3.0, 1.7e12]).prop_map(J::Num),
            names().prop_map(J::Str),
        ];
        leaf.prop_recursive(4, 40, 4, move |inner| {
            let names = prop::sample::select(vec!["a", "b", "x", "_", "#", ">", "", "\\u0061"]);
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..3).prop_map(J::Arr),
                prop::collection::vec((names, inner), 0..5).prop_map(J::Obj),
            ]
        })
    }

    proptest::proptest! {
        /// Any put, valid or not, with repeated keys or not: the direct reader and the JSON tree
        /// give the same graph or the same refusal.
        #[test]
        fn the_direct_reader_agrees_with_the_json_tree(put in json()) {
            let mut text = String::new();
            render(&put, &mut text);
            proptest::prop_assert_eq!(direct(&text), by_tree(&text), "{}", text);
        }
    }

    #[test]
    fn a_message_that_is_not_an_object_is_refused() {
        assert!(read_message("[1]").unwrap().is_none());
        assert!(read_message(r##"{"#":"a"} x"##).is_err());
        assert!(read_message(r#"{"put":{"a":1e400}}"#).is_err());
    }
}
