//! Reading frames and messages from JSON text, with the checks (sizes, types, limits) that
//! turn a bad message into a [`MessageError`] or a bad frame into a [`FrameError`].

use serde_json::{Map, Value as Json};

use super::direct::{self, RawValue};
use super::reader::ReadError;
use super::{Body, FrameError, Get, Message, MessageError, Parsed};
use crate::graph::{excerpt, InputValue, Key, Soul};
use crate::json;
use crate::lex::{KeyQuery, Range};
use crate::limits::Limits;

/// Reads a frame into its messages. `new_id` invents ids for messages that lack `#`.
pub fn parse_frame(
    text: &str,
    limits: &Limits,
    mut new_id: impl FnMut() -> String,
) -> Result<Vec<Parsed>, FrameError> {
    let mut out = Vec::new();
    read_frame(
        text,
        limits,
        &mut out,
        |_| new_id(),
        |out, parsed| out.push(parsed),
    )?;
    Ok(out)
}

/// Reads a frame, handing each message, or why it could not be read, to `each` in order as it
/// is read, with no list of them built. A frame that cannot be read at all hands none. Both
/// `new_id` (which invents ids for messages that lack `#`) and `each` are given `ctx`, so one
/// state can serve both.
pub fn read_frame<C: ?Sized>(
    text: &str,
    limits: &Limits,
    ctx: &mut C,
    mut new_id: impl FnMut(&mut C) -> String,
    mut each: impl FnMut(&mut C, Parsed),
) -> Result<(), FrameError> {
    if text.len() > limits.max_frame_bytes {
        return Err(FrameError::TooBig {
            bytes: text.len(),
            max: limits.max_frame_bytes,
        });
    }
    let body = text.trim_start_matches([' ', '\t', '\n', '\r']);
    if !body.starts_with(['{', '[']) {
        return Err(FrameError::NotMessages);
    }
    if body.starts_with('{') {
        return match parse_element(body, limits, &mut || new_id(ctx)) {
            Err(Unread::TooDeep) => Err(FrameError::TooDeep {
                max: limits.max_json_depth,
            }),
            Err(Unread::Bad(e)) => Err(FrameError::BadJson(e.reason)),
            Ok(parsed) => {
                each(ctx, parsed);
                Ok(())
            }
        };
    }
    // An array is read element by element, so one bad message does not sink the others.
    let elements = match split_array(body, limits.max_json_depth) {
        Ok(elements) => elements,
        Err(Split::TooDeep) => {
            return Err(FrameError::TooDeep {
                max: limits.max_json_depth,
            })
        }
        Err(Split::NotClosed) => return Err(FrameError::BadJson("the array is not closed".into())),
    };
    if elements.len() > limits.max_messages_per_frame {
        return Err(FrameError::TooManyMessages {
            count: elements.len(),
            max: limits.max_messages_per_frame,
        });
    }
    for element in elements {
        if !element.starts_with('{') {
            let reason = format!(
                "A frame element must be a message object, not {}.",
                excerpt(element)
            );
            each(ctx, Err(MessageError { id: None, reason }));
            continue;
        }
        // The array's depth was checked whole, so an element is never too deep here.
        let parsed = parse_element(element, limits, &mut || new_id(ctx)).unwrap_or_else(|unread| {
            Err(match unread {
                Unread::Bad(e) => e,
                Unread::TooDeep => MessageError {
                    id: None,
                    reason: FrameError::TooDeep {
                        max: limits.max_json_depth,
                    }
                    .to_string(),
                },
            })
        });
        each(ctx, parsed);
    }
    Ok(())
}

/// A message whose JSON could not be read at all.
enum Unread {
    /// Nested deeper than the limits allow.
    TooDeep,
    /// Not JSON.
    Bad(MessageError),
}

/// Reads one message object. Escapes of lone UTF-16 surrogates (which JavaScript can write but
/// UTF-8 cannot hold) become U+FFFD. When the JSON is bad, the error names the message's id if
/// it can be found.
fn parse_element(
    text: &str,
    limits: &Limits,
    new_id: &mut dyn FnMut() -> String,
) -> Result<Parsed, Unread> {
    match direct::read_message(text, limits.max_json_depth) {
        Ok(Some(raw)) => Ok(parse_message(raw, limits, new_id)),
        Ok(None) => Err(Unread::Bad(MessageError {
            id: None,
            reason: "A message must be a JSON object.".into(),
        })),
        Err(ReadError::TooDeep) => Err(Unread::TooDeep),
        Err(e) => Err(Unread::Bad(MessageError {
            id: find_id(text),
            reason: format!("DAM JSON parse error: {e}"),
        })),
    }
}

/// Why an array frame could not be split into its elements.
#[derive(Debug, PartialEq, Eq)]
enum Split {
    TooDeep,
    NotClosed,
}

/// The top-level elements of a JSON array, as text, once its nesting is checked against
/// `max_depth`. Only brackets and strings are tracked; each element is parsed on its own
/// afterwards.
fn split_array(text: &str, max_depth: usize) -> Result<Vec<&str>, Split> {
    let bytes = text.as_bytes();
    let mut depth = 0usize;
    let mut start = 1;
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'"' => i = json::string_end(bytes, i + 1).ok_or(Split::NotClosed)?,
            b'[' | b'{' => {
                depth += 1;
                if depth > max_depth {
                    return Err(Split::TooDeep);
                }
            }
            b']' | b'}' => {
                depth = depth.checked_sub(1).ok_or(Split::NotClosed)?;
                if depth == 0 {
                    let last = text[start..i].trim();
                    if !last.is_empty() || !out.is_empty() {
                        out.push(last);
                    }
                    return match text[i + 1..].trim().is_empty() {
                        true => Ok(out),
                        false => Err(Split::NotClosed),
                    };
                }
            }
            b',' if depth == 1 => {
                out.push(text[start..i].trim());
                start = i + 1;
            }
            _ => {}
        }
        i += 1;
    }
    Err(Split::NotClosed)
}

/// Finds `"#":"…"` among the top-level fields of a message that did not parse, so the error can
/// go back as a reply to it.
fn find_id(text: &str) -> Option<String> {
    let at = text.find("\"#\":")?;
    let rest = text[at + 4..].trim_start();
    let end = rest.char_indices().skip(1).scan(false, |escaped, (i, c)| {
        let done = !*escaped && c == '"';
        *escaped = !*escaped && c == '\\';
        Some((i, done))
    });
    let close = end.filter(|(_, done)| *done).map(|(i, _)| i).next()?;
    serde_json::from_str::<String>(&replace_lone_surrogates(&rest[..=close])).ok()
}

/// Rewrites `\uD800`..`\uDFFF` escapes that are not part of a surrogate pair as `\uFFFD`.
pub(crate) fn replace_lone_surrogates(text: &str) -> std::borrow::Cow<'_, str> {
    // One pass over the backslashes (most frames have none) for `\ud` or `\uD`.
    let bytes = text.as_bytes();
    let surrogate_escape = |(i, _): (usize, &str)| {
        bytes.get(i + 1) == Some(&b'u') && matches!(bytes.get(i + 2), Some(b'd' | b'D'))
    };
    if !text.match_indices('\\').any(surrogate_escape) {
        return std::borrow::Cow::Borrowed(text);
    }
    let hex = |s: &str| u16::from_str_radix(s, 16).ok();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' && i + 1 < bytes.len() {
            if bytes[i + 1] == b'u' && i + 6 <= bytes.len() {
                if let Some(unit) = text.get(i + 2..i + 6).and_then(hex) {
                    let next = text
                        .get(i + 6..i + 12)
                        .filter(|n| n.starts_with("\\u"))
                        .and_then(|n| hex(&n[2..]));
                    let is_high = (0xd800..0xdc00).contains(&unit);
                    let is_low = (0xdc00..0xe000).contains(&unit);
                    if is_high && next.is_some_and(|n| (0xdc00..0xe000).contains(&n)) {
                        out.push_str(&text[i..i + 12]);
                        i += 12;
                        continue;
                    }
                    if is_high || is_low {
                        out.push_str("\\ufffd");
                        i += 6;
                        continue;
                    }
                }
            }
            // Any other escape: copy it whole (the backslash and the character after it, which may
            // take several bytes), so an escaped backslash is not read as a new escape.
            let next = text[i + 1..].chars().next().map_or(0, char::len_utf8);
            out.push_str(&text[i..i + 1 + next]);
            i += 1 + next;
            continue;
        }
        let len = text[i..].chars().next().map_or(1, char::len_utf8);
        out.push_str(&text[i..i + len]);
        i += len;
    }
    std::borrow::Cow::Owned(out)
}

fn take_string(field: Option<direct::RawValue<'_>>, key: &str) -> Result<Option<String>, String> {
    match field {
        None => Ok(None),
        Some(direct::RawValue::Str(s)) => Ok(Some(s.into_owned())),
        Some(other) => Err(format!(
            "'{key}' must be a string, not {}",
            excerpt(&other.json_text())
        )),
    }
}

/// Reads one message object.
fn parse_message(
    raw: direct::RawMessage<'_>,
    limits: &Limits,
    new_id: &mut dyn FnMut() -> String,
) -> Parsed {
    let direct::RawMessage {
        known,
        extra,
        put,
        get,
    } = raw;
    let id = match take_string(known.id, "#") {
        Ok(Some(id)) if id.len() > limits.max_id_bytes => {
            return Err(MessageError {
                id: None,
                reason: format!(
                    "'#' of {} bytes, over the limit of {}",
                    id.len(),
                    limits.max_id_bytes
                ),
            })
        }
        Ok(Some(id)) => id,
        Ok(None) => new_id(),
        Err(reason) => return Err(MessageError { id: None, reason }),
    };
    let fail = |reason: String| MessageError {
        id: Some(id.clone()),
        reason,
    };
    let reply_to = take_string(known.reply_to, "@").map_err(fail)?;
    let err = take_string(known.err, "err").map_err(fail)?;
    let skip = take_string(known.skip, "><").map_err(fail)?;
    let pid = take_string(known.pid, "pid").map_err(fail)?;
    let dam = take_string(known.dam, "dam").map_err(fail)?;
    for (name, value) in [("@", &reply_to), ("pid", &pid), ("dam", &dam)] {
        if value
            .as_ref()
            .is_some_and(|v| v.len() > limits.max_id_bytes)
        {
            return Err(fail(format!(
                "'{name}' over the limit of {} bytes",
                limits.max_id_bytes
            )));
        }
    }
    // GUN reads only the first 99 characters of `><`; keep no more than a few times that.
    let skip = skip.map(|s| {
        let mut end = s.len().min(4 * limits.max_id_bytes);
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s[..end].to_owned()
    });
    let ok = known.ok.map(|ok| Box::new(ok.into_json()));
    let hash = match known.hash {
        None => None,
        Some(direct::RawValue::Number(n)) => n.as_f64().map(|f| f as i64 as i32),
        Some(_) => return Err(fail("'##' must be a number".into())),
    };
    let body = match (dam, get, put) {
        (Some(verb), _, _) => Body::Dam { verb, pid },
        (None, Some(_), Some(_)) => return Err(fail("a message cannot both get and put".into())),
        (None, Some(get), None) => Body::Get(parse_get(get, limits).map_err(fail)?),
        (None, None, Some(put)) => Body::Put(put.into_graph(limits).map_err(|e| fail(e.0))?),
        (None, None, None) => Body::Other,
    };
    Ok(Message {
        id,
        reply_to,
        body,
        ok,
        err,
        hash,
        skip,
        extra,
    })
}

fn is_truthy(v: Option<&Json>) -> bool {
    match v {
        None | Some(Json::Null) | Some(Json::Bool(false)) => false,
        Some(Json::Number(n)) => n.as_f64().is_some_and(|f| f != 0.0),
        Some(Json::String(s)) => !s.is_empty(),
        Some(_) => true,
    }
}

fn is_truthy_raw(v: Option<&RawValue<'_>>) -> bool {
    match v {
        None | Some(RawValue::Null) | Some(RawValue::Bool(false)) => false,
        Some(RawValue::Number(n)) => n.as_f64().is_some_and(|f| f != 0.0),
        Some(RawValue::Str(s)) => !s.is_empty(),
        Some(RawValue::Tree(tree)) => is_truthy(Some(tree)),
        Some(_) => true,
    }
}

/// The object of a value, when it is one.
fn as_object<'a>(v: &'a RawValue<'_>) -> Option<&'a Map<String, Json>> {
    match v {
        RawValue::Tree(tree) => tree.as_object(),
        _ => None,
    }
}

fn parse_get(get: direct::RawGet<'_>, limits: &Limits) -> Result<Get, String> {
    let direct::RawGet::Object(get) = get else {
        return Err("'get' must be an object with a soul '#'".into());
    };
    check_get_sizes(&get, limits)?;
    let mut reverse = is_truthy_raw(get.get("-"));
    // GUN allows `%` as a number or a numeric string.
    let budget = match get.get("%") {
        None => None,
        Some(v) => match v
            .number()
            .flatten()
            .or_else(|| v.as_str().and_then(|s| s.trim().parse().ok()))
        {
            Some(f) if f >= 0.0 => Some((f as u64).min(limits.max_lex_reply_bytes)),
            _ => return Err("get '%' must be a non-negative number".into()),
        },
    };
    match get.get("#") {
        None => Err("'get' has no soul '#'".into()),
        Some(RawValue::Str(soul)) => {
            let soul = Soul::new(soul).map_err(|e| format!("get: {e}"))?;
            let keys = match get.get(".") {
                None => KeyQuery::All,
                Some(RawValue::Str(k)) => {
                    KeyQuery::One(Key::new(k).map_err(|e| format!("get: {e}"))?)
                }
                Some(v) => match as_object(v) {
                    Some(lex) => {
                        reverse |= is_truthy(lex.get("-"));
                        match lex.get("=") {
                            Some(Json::String(k)) => {
                                KeyQuery::One(Key::new(k).map_err(|e| format!("get: {e}"))?)
                            }
                            Some(_) => return Err("get lex '=' must be a string".into()),
                            None => KeyQuery::Range(
                                Range::from_lex(lex).map_err(|e| format!("get: {e}"))?,
                            ),
                        }
                    }
                    None => return Err("get '.' must be a key or a lex object".into()),
                },
            };
            Ok(Get::Node {
                soul,
                keys,
                reverse,
                budget,
            })
        }
        Some(v) => {
            let Some(lex) = as_object(v) else {
                return Err("get '#' must be a soul or a lex object".into());
            };
            reverse |= is_truthy(lex.get("-"));
            if let Some(exact) = lex.get("=") {
                let Json::String(soul) = exact else {
                    return Err("get lex '=' must be a string".into());
                };
                return Ok(Get::Node {
                    soul: Soul::new(soul).map_err(|e| format!("get: {e}"))?,
                    keys: KeyQuery::All,
                    reverse,
                    budget,
                });
            }
            Ok(Get::Souls {
                range: Range::from_lex(lex).map_err(|e| format!("get: {e}"))?,
                reverse,
                budget,
            })
        }
    }
}

/// Bounds every soul, key and lex string of a GET, so that no read can ask a store for an
/// over-long key.
fn check_get_sizes(get: &direct::Entries<'_, RawValue<'_>>, limits: &Limits) -> Result<(), String> {
    let longest = |v: Option<&RawValue<'_>>| match v {
        Some(RawValue::Str(s)) => s.len(),
        Some(v) => as_object(v).map_or(0, |lex| {
            lex.values()
                .map(|v| if let Json::String(s) = v { s.len() } else { 0 })
                .max()
                .unwrap_or(0)
        }),
        None => 0,
    };
    let (soul, key) = (longest(get.get("#")), longest(get.get(".")));
    if soul + key > limits.max_soul_key_bytes {
        return Err(format!(
            "get: soul and key of {} bytes, over the limit of {}",
            soul + key,
            limits.max_soul_key_bytes
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::tests::{one, parse};

    #[test]
    fn reads_objects_and_arrays_and_keeps_unknown_fields() {
        let m = one(r##"{"#":"p1","put":{"a":{"_":{"#":"a",">":{"x":1}},"x":1}},"ok":{"@":9,"/":1},"FOO":1}"##)
            .unwrap();
        assert_eq!(m.id, "p1");
        assert!(matches!(m.body, Body::Put(_)));
        assert_eq!(m.ok.as_deref(), Some(&serde_json::json!({"@":9,"/":1})));
        assert_eq!(m.extra("FOO"), Some(&serde_json::json!(1)));
        let v = parse(r##"[{"dam":"hi","#":"h"},{"#":"g","get":{"#":"a"}}]"##).unwrap();
        assert_eq!(v.len(), 2);
        assert!(parse("[]").unwrap().is_empty());
    }

    #[test]
    fn invents_an_id_when_missing() {
        assert_eq!(one(r##"{"get":{"#":"a"}}"##).unwrap().id, "gen1");
    }

    #[test]
    fn reads_every_get_form() {
        let get = |t: &str| match one(t).unwrap().body {
            Body::Get(g) => g,
            other => panic!("{other:?}"),
        };
        assert!(matches!(
            get(r##"{"get":{"#":"a"}}"##),
            Get::Node {
                keys: KeyQuery::All,
                ..
            }
        ));
        assert!(matches!(
            get(r##"{"get":{"#":"a",".":"k"}}"##),
            Get::Node {
                keys: KeyQuery::One(_),
                ..
            }
        ));
        assert!(matches!(
            get(r##"{"get":{"#":"a",".":{"=":"k"}}}"##),
            Get::Node {
                keys: KeyQuery::One(_),
                ..
            }
        ));
        match get(r##"{"get":{"#":"a",".":{"*":"ap","-":1},"%":20}}"##) {
            Get::Node {
                keys: KeyQuery::Range(r),
                reverse: true,
                budget: Some(20),
                ..
            } => assert_eq!(r.prefix.as_deref(), Some("ap")),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            get(r##"{"get":{"#":{"*":"lex"}}}"##),
            Get::Souls { .. }
        ));
    }

    #[test]
    fn a_get_s_budget_and_direction_take_gun_s_forms() {
        let node = |t: &str| match one(t).unwrap().body {
            Body::Get(Get::Node {
                reverse, budget, ..
            }) => (reverse, budget),
            other => panic!("{other:?}"),
        };
        assert_eq!(node(r##"{"get":{"#":"a","%":" 20 "}}"##), (false, Some(20)));
        assert_eq!(
            node(r##"{"get":{"#":"a","%":7.9,"-":1}}"##),
            (true, Some(7))
        );
        assert_eq!(node(r##"{"get":{"#":"a","-":0,"-":""}}"##), (false, None));
        assert_eq!(node(r##"{"get":{"#":"a","-":[]}}"##), (true, None));
        assert_eq!(
            node(r##"{"get":{"#":"a",".":{"=":"k","-":"y"}}}"##),
            (true, None)
        );
        let long = "x".repeat(Limits::default().max_soul_key_bytes);
        let e = one(&format!(
            r##"{{"#":"g","get":{{"#":"{long}",".":{{">":"k"}}}}}}"##
        ));
        assert!(e.unwrap_err().reason.contains("soul and key of"));
    }

    #[test]
    fn bad_messages_name_their_id_and_problem() {
        for (text, why) in [
            (r##"{"#":"g","get":5}"##, "'get' must be an object"),
            (r##"{"#":"g","get":{}}"##, "no soul"),
            (r##"{"#":"g","get":{"#":5}}"##, "'#' must be a soul"),
            (r##"{"#":"g","get":{"#":"a",".":5}}"##, "'.' must be"),
            (r##"{"#":"g","get":{"#":["a"]}}"##, "'#' must be a soul"),
            (r##"{"#":"g","get":{"#":"a","%":-1}}"##, "non-negative"),
            (r##"{"#":"g","get":{"#":"a","%":"x"}}"##, "non-negative"),
            (
                r##"{"#":"g","get":{"#":"a",".":{"=":1}}}"##,
                "'=' must be a string",
            ),
            (r##"{"#":"p","put":"x"}"##, "not an object"),
            (r##"{"#":"p","put":null}"##, "not an object"),
        ] {
            let e = one(text).unwrap_err();
            assert_eq!(
                e.id.as_deref(),
                Some(text.split('"').nth(3).unwrap()),
                "{text}"
            );
            assert!(e.reason.contains(why), "{text}: {}", e.reason);
        }
        assert_eq!(one(r##"{"#":5}"##).unwrap_err().id, None);
        assert!(parse(r##"[1,{"#":"g","get":{"#":"a"}}]"##).unwrap()[0].is_err());
    }

    #[test]
    fn an_array_splits_at_its_own_commas_only() {
        let text = r#"[ {"a":"x,]\"}[{"} , {"b":[1,{"c":","}]},{"d":"\\"} ]"#;
        assert_eq!(
            split_array(text, 32).unwrap(),
            [
                r#"{"a":"x,]\"}[{"}"#,
                r#"{"b":[1,{"c":","}]}"#,
                r#"{"d":"\\"}"#
            ]
        );
        assert_eq!(split_array(r#"[{"a":"x]"#, 32), Err(Split::NotClosed));
        assert_eq!(split_array(r#"[{"a":1}] x"#, 32), Err(Split::NotClosed));
        assert_eq!(split_array("[ ]", 32).unwrap(), Vec::<&str>::new());
    }

    #[test]
    fn one_bad_element_does_not_sink_the_frame() {
        let v = parse(r##"[{"#":"g1","get":{"#":"a"}},{"#":"p1","put":{"a":1e400}},{"#":"g2","get":{"#":"b"}}]"##).unwrap();
        assert_eq!(v.len(), 3);
        assert!(v[0].is_ok() && v[2].is_ok());
        let e = v[1].as_ref().unwrap_err();
        assert_eq!(e.id.as_deref(), Some("p1"));
        assert!(e.reason.contains("parse error"));
        assert!(matches!(
            parse(r##"[{"#":"g1"},{"#":"b"##),
            Err(FrameError::BadJson(_))
        ));
        assert!(matches!(parse("[1,"), Err(FrameError::BadJson(_))));
        assert!(parse("[1]").unwrap()[0].is_err());
    }

    #[test]
    fn lone_surrogates_become_replacement_characters() {
        let m = one(r##"{"#":"p","put":{"a":{"_":{"#":"a",">":{"x":1,"y":1}},"x":"\ud83d!","y":"\ud83d\ude00\\ud800"}}}"##).unwrap();
        let Body::Put(g) = m.body else { panic!() };
        assert_eq!(
            g.nodes[0].fields["x"].value,
            crate::Value::String("\u{fffd}!".into())
        );
        assert_eq!(
            g.nodes[0].fields["y"].value,
            crate::Value::String("😀\\ud800".into())
        );
    }

    #[test]
    fn a_backslash_before_a_multibyte_character_is_not_split() {
        // Found by the parse_frame fuzzer (fuzz/regressions/parse_frame/).
        let text = "{\"#\":\"\\é\\ud800\"}";
        assert!(matches!(parse(text), Err(FrameError::BadJson(_))));
        let batch = format!("[{text},{{\"#\":\"g\",\"get\":{{\"#\":\"a\"}}}}]");
        let v = parse(&batch).unwrap();
        assert!(v[0].is_err() && v[1].is_ok());
    }

    #[test]
    fn ids_are_bounded() {
        let long = "x".repeat(300);
        let e = one(&format!(r##"{{"#":"{long}","get":{{"#":"a"}}}}"##)).unwrap_err();
        assert!(e.reason.contains("over the limit"));
        let e = one(&format!(r##"{{"#":"g","@":"{long}"}}"##)).unwrap_err();
        assert_eq!(e.id.as_deref(), Some("g"));
    }

    #[test]
    fn frame_errors() {
        assert!(matches!(parse("hello"), Err(FrameError::NotMessages)));
        assert!(matches!(parse("\"str\""), Err(FrameError::NotMessages)));
        assert!(matches!(
            parse("{\"#\":\"a\",\"get\":"),
            Err(FrameError::BadJson(_))
        ));
        assert!(matches!(
            parse(&"[".repeat(100)),
            Err(FrameError::TooDeep { .. })
        ));
        let limits = Limits {
            max_frame_bytes: 10,
            ..Limits::default()
        };
        assert!(matches!(
            parse_frame(&"x".repeat(11), &limits, String::new),
            Err(FrameError::TooBig { .. })
        ));
        let limits = Limits {
            max_messages_per_frame: 2,
            ..Limits::default()
        };
        assert!(parse_frame("[{},{}]", &limits, String::new).is_ok());
        assert!(matches!(
            parse_frame("[{},{},{}]", &limits, String::new),
            Err(FrameError::TooManyMessages { count: 3, max: 2 })
        ));
    }
}
