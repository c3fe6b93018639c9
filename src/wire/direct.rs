//! Reading a message straight from its text: the `put` graph is read into its nodes' parts
//! (keys borrowed from the text where they hold no escapes) without first building a JSON tree
//! of it, whose maps (hashed, every key a new string) cost most of a frame's parse. What is read
//! is then checked by the same rules as a JSON tree is ([`Graph::from_parts`]), so both paths
//! accept and refuse alike; the message's other fields are read into JSON values as before. The
//! text is walked once, by the strict reader of `reader.rs`.
//!
//! Objects keep the semantics of the JSON tree they replace: a repeated key holds its last value,
//! at its first place.

use std::borrow::Cow;

use serde_json::{Map, Value as Json};

use super::reader::{Read, Reader, Scalar};
use crate::graph::{Graph, GraphError, InputValue, MetaInput, NodeInput, Value};
use crate::limits::Limits;

/// A message object: its `put`, read directly, the other fields the core reads each in its own
/// place, and the rest as they came.
pub(super) struct RawMessage<'de> {
    /// `#`, `@`, `err`, `><`, `pid`, `dam`, `ok` and `##`.
    pub known: Known<'de>,
    /// Every other field but `put`, in order (`None` when there are none).
    pub extra: Option<Box<Map<String, Json>>>,
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
#[derive(Clone, Debug)]
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
                            soul: soul.as_ref().and_then(InputValue::as_str),
                            states: states
                                .as_ref()
                                .map(|states| Cow::Borrowed(&states.list[..])),
                        },
                    }),
                    fields: Cow::Borrowed(&fields.list[..]),
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
}

/// Reads a message object (`None` when the text holds another JSON value), nested at most
/// `max_depth` deep. Fails only where the JSON itself is bad; what the message says is checked
/// afterwards.
pub(super) fn read_message(text: &str, max_depth: usize) -> Read<Option<RawMessage<'_>>> {
    let mut r = Reader::new(text, max_depth);
    if r.peek() != Some(b'{') {
        r.skip()?;
        r.end()?;
        return Ok(None);
    }
    let mut message = RawMessage {
        known: Known::default(),
        extra: None,
        put: None,
        get: None,
    };
    r.object(|r, key| {
        if key == "put" {
            message.put = Some(r.object_or(read_put, RawPut::NotObject)?);
        } else if key == "get" {
            let get = r.object_or(|r| read_values(r).map(RawGet::Object), RawGet::NotObject)?;
            message.get = Some(get);
        } else if let Some(slot) = message.known.slot(&key) {
            *slot = Some(raw_value(r)?);
        } else {
            let value = r.tree()?;
            let extra = message.extra.get_or_insert_with(Default::default);
            extra.insert(key.into_owned(), value);
        }
        Ok(())
    })?;
    r.end()?;
    Ok(Some(message))
}

/// A value, a string borrowed where it can be.
fn raw_value<'de>(r: &mut Reader<'de>) -> Read<RawValue<'de>> {
    if let Some(s) = r.string_here()? {
        return Ok(RawValue::Str(s));
    }
    if let Some(b'{' | b'[') = r.peek() {
        return Ok(RawValue::Tree(Box::new(r.tree()?)));
    }
    Ok(match r.scalar()? {
        Scalar::Null => RawValue::Null,
        Scalar::Bool(b) => RawValue::Bool(b),
        Scalar::Number(n) => RawValue::Number(n),
    })
}

fn read_put<'de>(r: &mut Reader<'de>) -> Read<RawPut<'de>> {
    let mut nodes = Entries::new();
    r.object(|r, soul| {
        let node = r.object_or(read_node, RawNode::NotObject)?;
        nodes.insert(soul, node);
        Ok(())
    })?;
    Ok(RawPut::Nodes(nodes))
}

fn read_node<'de>(r: &mut Reader<'de>) -> Read<RawNode<'de>> {
    let mut meta = None;
    let mut fields = Entries::new();
    r.object(|r, key| {
        if key == "_" {
            meta = Some(r.object_or(read_meta, RawMeta::NotObject)?);
        } else {
            fields.insert(key, raw_value(r)?);
        }
        Ok(())
    })?;
    Ok(RawNode::Object { meta, fields })
}

fn read_meta<'de>(r: &mut Reader<'de>) -> Read<RawMeta<'de>> {
    let (mut soul, mut states) = (None, None);
    r.object(|r, key| {
        match key.as_ref() {
            "#" => soul = Some(raw_value(r)?),
            ">" => states = r.object_or(|r| read_values(r).map(Some), None)?,
            _ => r.skip()?,
        }
        Ok(())
    })?;
    Ok(RawMeta::Object { soul, states })
}

/// An object's entries, each value read as a [`RawValue`].
fn read_values<'de>(r: &mut Reader<'de>) -> Read<Entries<'de, RawValue<'de>>> {
    let mut values = Entries::new();
    r.object(|r, key| {
        values.insert(key, raw_value(r)?);
        Ok(())
    })?;
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
        read_message(&text, 32)
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
        assert!(read_message("[1]", 32).unwrap().is_none());
        assert!(read_message(r##"{"#":"a"} x"##, 32).is_err());
        assert!(read_message(r#"{"put":{"a":1e400}}"#, 32).is_err());
    }
}
