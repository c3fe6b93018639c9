//! Writing messages as JSON text: [`write_message`] for relaying a parsed message, and the
//! builders for the messages fibergun sends itself.

use serde_json::Value as Json;

use super::{Body, Get, Message};
use crate::json;
use crate::lex::KeyQuery;
use crate::lex::Range;

/// Writes a message back out, every field included (those the core does not know as well), so a
/// relayed message loses nothing.
pub fn write_message(msg: &Message) -> String {
    let body = match &msg.body {
        Body::Put(graph) => graph.json_len_hint(),
        _ => 64,
    };
    let mut out = String::with_capacity(64 + msg.id.len() + body);
    open(&mut out, &msg.id);
    if let Some(r) = &msg.reply_to {
        reply_field(&mut out, r);
    }
    match &msg.body {
        Body::Dam { verb, pid } => {
            out.push_str(",\"dam\":");
            json::write_string(&mut out, verb);
            if let Some(pid) = pid {
                out.push_str(",\"pid\":");
                json::write_string(&mut out, pid);
            }
        }
        Body::Get(get) => {
            out.push_str(",\"get\":");
            write_get(&mut out, get);
        }
        Body::Put(graph) => {
            out.push_str(",\"put\":");
            graph.write_json(&mut out);
        }
        Body::Other => {}
    }
    let mut field = |name: &str, value: &Json| {
        out.push(',');
        json::write_string(&mut out, name);
        out.push(':');
        json::write_json(&mut out, value);
    };
    if let Some(ok) = &msg.ok {
        field("ok", ok);
    }
    if let Some(err) = &msg.err {
        field("err", &Json::String(err.clone()));
    }
    if let Some(hash) = msg.hash {
        field("##", &Json::from(hash));
    }
    if let Some(skip) = &msg.skip {
        field("><", &Json::String(skip.clone()));
    }
    for (k, v) in msg.extra.iter().flat_map(|extra| extra.iter()) {
        field(k, v);
    }
    out.push('}');
    out
}

fn write_range(out: &mut String, range: &Range, reverse: bool) {
    out.push('{');
    let mut first = true;
    let mut item = |out: &mut String, k: &str, v: &str| {
        if !first {
            out.push(',');
        }
        first = false;
        json::write_string(out, k);
        out.push(':');
        json::write_string(out, v);
    };
    if let Some(p) = &range.prefix {
        item(out, "*", p);
    }
    if let Some(l) = &range.lower {
        item(out, ">", l);
    }
    if let Some(u) = &range.upper {
        item(out, "<", u);
    }
    if reverse {
        if !first {
            out.push(',');
        }
        out.push_str("\"-\":1");
    }
    out.push('}');
}

/// Writes a GET's `get` object.
pub fn write_get(out: &mut String, get: &Get) {
    let (reverse, budget) = match get {
        Get::Node {
            soul,
            keys,
            reverse,
            budget,
        } => {
            out.push_str("{\"#\":");
            json::write_string(out, soul.as_str());
            match keys {
                KeyQuery::All => {}
                KeyQuery::One(k) => {
                    out.push_str(",\".\":");
                    json::write_string(out, k.as_str());
                }
                KeyQuery::Range(r) => {
                    out.push_str(",\".\":");
                    write_range(out, r, false);
                }
            }
            (*reverse, *budget)
        }
        Get::Souls {
            range,
            reverse,
            budget,
        } => {
            out.push_str("{\"#\":");
            write_range(out, range, false);
            (*reverse, *budget)
        }
    };
    if reverse {
        out.push_str(",\"-\":1");
    }
    if let Some(b) = budget {
        out.push_str(",\"%\":");
        json::write_number(out, b as f64);
    }
    out.push('}');
}

// Builders for the messages fibergun sends. Each writes one JSON object.

fn open(out: &mut String, id: &str) {
    out.push_str("{\"#\":");
    json::write_string(out, id);
}

fn reply_field(out: &mut String, reply_to: &str) {
    out.push_str(",\"@\":");
    json::write_string(out, reply_to);
}

/// `{"#":id,"@":reply_to,"ok":true}`: a write is durable.
pub fn ack(id: &str, reply_to: &str) -> String {
    let mut out = String::with_capacity(48);
    open(&mut out, id);
    reply_field(&mut out, reply_to);
    out.push_str(",\"ok\":true}");
    out
}

/// `{"#":id,"@":reply_to,"err":text}`: a request failed.
pub fn error_reply(id: &str, reply_to: &str, text: &str) -> String {
    let mut out = String::with_capacity(48 + text.len());
    open(&mut out, id);
    reply_field(&mut out, reply_to);
    out.push_str(",\"err\":");
    json::write_string(&mut out, text);
    out.push('}');
    out
}

/// `{"#":id,"@":reply_to}`: nothing matched a GET.
pub fn not_found(id: &str, reply_to: &str) -> String {
    let mut out = String::with_capacity(32);
    open(&mut out, id);
    reply_field(&mut out, reply_to);
    out.push('}');
    out
}

/// Marks a reply to a GET as not the last of its answer: `"more":true` is added. A long answer
/// goes out page by page, and a client that wants the whole answer (fibergun's own) waits for a
/// reply without it. GUN JS ignores the field.
pub fn mark_more(reply: &mut String) {
    debug_assert!(reply.ends_with('}'), "a message is a JSON object");
    reply.pop();
    reply.push_str(",\"more\":true}");
}

/// The end of a paged answer whose last page came out empty: the last node sent, again, with
/// no fields: `{"#":id,"@":reply_to,"put":{soul:{"_":{"#":soul,">":{}}}}}`. Merging it changes
/// nothing anywhere.
pub fn end_of_answer(id: &str, reply_to: &str, soul: &str) -> String {
    put_message(id, Some(reply_to), 2 * soul.len() + 24, |out| {
        out.push('{');
        crate::json::write_string(out, soul);
        out.push_str(":{\"_\":{\"#\":");
        crate::json::write_string(out, soul);
        out.push_str(",\">\":{}}}}");
    })
}

/// `{"#":id,"@":reply_to,"put":graph}` (with `@`) or `{"#":id,"put":graph}` (a push), where
/// `write_graph` appends the graph's JSON, of about `graph_bytes` (so the text is written without
/// growing its buffer).
pub fn put_message(
    id: &str,
    reply_to: Option<&str>,
    graph_bytes: usize,
    write_graph: impl FnOnce(&mut String),
) -> String {
    let reply_bytes = reply_to.map_or(0, |r| r.len() + 8);
    let mut out = String::with_capacity(24 + id.len() + reply_bytes + graph_bytes);
    open(&mut out, id);
    if let Some(r) = reply_to {
        reply_field(&mut out, r);
    }
    out.push_str(",\"put\":");
    write_graph(&mut out);
    out.push('}');
    out
}

/// `{"#":id,"dam":"?","pid":pid}`, with `@` when it answers another `?`.
pub fn dam_hello(id: &str, reply_to: Option<&str>, pid: &str) -> String {
    let mut out = String::with_capacity(64);
    open(&mut out, id);
    if let Some(r) = reply_to {
        reply_field(&mut out, r);
    }
    out.push_str(",\"dam\":\"?\",\"pid\":");
    json::write_string(&mut out, pid);
    out.push('}');
    out
}

/// `{"#":id,"dam":verb,"err":text}` (with `@` when it answers a message): a hop-local error.
pub fn dam_error(id: &str, verb: &str, reply_to: Option<&str>, text: &str) -> String {
    let mut out = String::with_capacity(64 + text.len());
    open(&mut out, id);
    if let Some(r) = reply_to {
        reply_field(&mut out, r);
    }
    out.push_str(",\"dam\":");
    json::write_string(&mut out, verb);
    out.push_str(",\"err\":");
    json::write_string(&mut out, text);
    out.push('}');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builders_write_gun_messages() {
        assert_eq!(ack("a", "p\"1"), r##"{"#":"a","@":"p\"1","ok":true}"##);
        assert_eq!(not_found("a", "g"), r##"{"#":"a","@":"g"}"##);
        assert_eq!(
            dam_hello("a", None, "pid"),
            r##"{"#":"a","dam":"?","pid":"pid"}"##
        );
        assert_eq!(
            error_reply("a", "p", "bad"),
            r##"{"#":"a","@":"p","err":"bad"}"##
        );
    }
}
