//! LEX: GUN's query language for keys and souls (`*` prefix, `>`/`<` inclusive range, `=` exact,
//! `-` reverse, `%` byte budget), and the budget rule stores apply when they answer a range.

use serde_json::Value as Json;

use crate::graph::{Key, Value};

/// Which keys of a node a GET wants.
#[derive(Clone, Debug, PartialEq)]
pub enum KeyQuery {
    /// The whole node.
    All,
    /// One key (`.` as a string, or LEX `=`).
    One(Key),
    /// The keys in a LEX range.
    Range(Range),
}

/// A set of keys (or souls) chosen by prefix or by an inclusive range.
///
/// Keys compare by bytes, which is the stores' order; GUN JS compares by UTF-16 code units, and the
/// two orders differ only between characters above U+FFFF and those in U+E000..=U+FFFF.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Range {
    /// Keys starting with this (`*`). When set, the bounds are ignored, as in GUN.
    pub prefix: Option<String>,
    /// Keys at or above this (`>`).
    pub lower: Option<String>,
    /// Keys at or below this (`<`).
    pub upper: Option<String>,
}

impl Range {
    /// Whether `key` is in the range.
    pub fn contains(&self, key: &str) -> bool {
        if let Some(p) = &self.prefix {
            return key.starts_with(p.as_str());
        }
        self.lower.as_deref().is_none_or(|l| key >= l)
            && self.upper.as_deref().is_none_or(|u| key <= u)
    }

    /// Whether the range holds every key (no prefix, no bounds, or only empty ones).
    pub fn is_everything(&self) -> bool {
        let empty = |s: &Option<String>| s.as_deref().is_none_or(str::is_empty);
        empty(&self.prefix) && empty(&self.lower) && self.upper.is_none()
    }

    /// The smallest key a scan must start at.
    pub fn start(&self) -> &str {
        self.prefix
            .as_deref()
            .or(self.lower.as_deref())
            .unwrap_or("")
    }

    /// Whether a forward scan that reached `key` can stop: nothing at or after it is in range.
    pub fn is_past(&self, key: &str) -> bool {
        if let Some(p) = &self.prefix {
            return key > p.as_str() && !key.starts_with(p.as_str());
        }
        self.upper.as_deref().is_some_and(|u| key > u)
    }

    /// Reads a LEX object (`{"*":…}`, `{">":…,"<":…}`); `=` is not a range and is read by the caller.
    pub(crate) fn from_lex(map: &serde_json::Map<String, Json>) -> Result<Range, String> {
        let text = |k: &str| match map.get(k) {
            None => Ok(None),
            Some(Json::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(format!("lex '{k}' is not a string")),
        };
        let range = Range {
            prefix: text("*")?,
            lower: text(">")?,
            upper: text("<")?,
        };
        Ok(range)
    }
}

/// Counts what a range reply has taken against its `%` byte budget. Like radisk, the budget is
/// checked before each item is added, so a reply may pass it by one item.
#[derive(Clone, Copy, Debug)]
pub struct Budget {
    limit: u64,
    used: u64,
}

impl Budget {
    /// A budget of `limit` bytes.
    pub fn new(limit: u64) -> Budget {
        Budget { limit, used: 0 }
    }

    /// Takes one value if the budget is not yet spent; returns whether it was taken.
    pub fn admit(&mut self, value: &Value) -> bool {
        if self.used >= self.limit {
            return false;
        }
        self.used += value.budget_bytes();
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(p: Option<&str>, l: Option<&str>, u: Option<&str>) -> Range {
        Range {
            prefix: p.map(Into::into),
            lower: l.map(Into::into),
            upper: u.map(Into::into),
        }
    }

    #[test]
    fn prefix_and_inclusive_bounds() {
        let keys = ["a-z", "apple", "apricot", "banana"];
        let pick = |range: &Range| keys.iter().filter(|k| range.contains(k)).count();
        assert_eq!(pick(&r(Some("ap"), None, None)), 2);
        assert_eq!(pick(&r(None, Some("b"), None)), 1);
        assert_eq!(pick(&r(None, Some("a"), Some("b"))), 3);
        assert_eq!(pick(&r(None, None, Some("apple"))), 2);
        assert!(r(Some("ap"), None, None).is_past("b"));
        assert!(!r(Some("ap"), None, None).is_past("apz"));
        assert!(!r(Some("ap"), None, None).is_past("a"));
    }

    #[test]
    fn budget_is_checked_before_each_item() {
        // As observed on GUN JS: `%:20` over three numbers (9 bytes each) returns all three.
        let mut b = Budget::new(20);
        let n = Value::Number(1.0);
        assert!(b.admit(&n) && b.admit(&n) && b.admit(&n));
        assert!(!b.admit(&n));
    }
}

/// GUN's `String.match(text, lex)`, the test SEA certificates use for their write policies: a
/// string `lex` means `{"=": lex}`; then the first of `=`, `*`, `>`, `<` present matches exactly;
/// with `=` nothing else matches; `*` (or else `>`) matches as a prefix; with `*` nothing else;
/// with both bounds the text must be within them, with one it must be on its side. Strings compare
/// by UTF-16 code units, as JavaScript compares them. Like JavaScript's `||`, an empty string
/// counts as absent where GUN picks the first value present.
pub fn string_match(text: &str, lex: Option<&Json>) -> bool {
    let field = |name: &str| -> Option<&Json> {
        match lex {
            Some(Json::String(_)) if name == "=" => lex,
            Some(Json::Object(o)) => o.get(name),
            _ => None,
        }
    };
    // `t === tmp`, with tmp = o['='] || o['*'] || o['>'] || o['<'].
    let exact = js_or(js_or(js_or(field("="), field("*")), field(">")), field("<"));
    if exact.and_then(Json::as_str) == Some(text) {
        return true;
    }
    if field("=").is_some() {
        return false;
    }
    // `t.slice(0, (tmp||'').length) === tmp`, with tmp = o['*'] || o['>']: only a string can
    // equal the slice.
    if let Some(prefix) = js_or(field("*"), field(">")).and_then(Json::as_str) {
        if text.starts_with(prefix) {
            return true;
        }
    }
    if field("*").is_some() {
        return false;
    }
    let at_least = |bound: &Json| {
        bound
            .as_str()
            .is_some_and(|b| crate::json::cmp_utf16(text, b) != std::cmp::Ordering::Less)
    };
    let at_most = |bound: &Json| {
        bound
            .as_str()
            .is_some_and(|b| crate::json::cmp_utf16(text, b) != std::cmp::Ordering::Greater)
    };
    match (field(">"), field("<")) {
        (Some(lower), Some(upper)) => at_least(lower) && at_most(upper),
        (Some(lower), None) => at_least(lower),
        (None, Some(upper)) => at_most(upper),
        (None, None) => false,
    }
}

/// JavaScript's `a || b`: `a` when it is truthy, else `b`.
fn js_or<'a>(a: Option<&'a Json>, b: Option<&'a Json>) -> Option<&'a Json> {
    let truthy = match a {
        None | Some(Json::Null) | Some(Json::Bool(false)) => false,
        Some(Json::String(s)) => !s.is_empty(),
        Some(Json::Number(n)) => n.as_f64().is_some_and(|n| n != 0.0),
        Some(_) => true,
    };
    if truthy {
        a
    } else {
        b
    }
}

#[cfg(test)]
mod string_match_tests {
    use super::string_match;
    use serde_json::json;

    #[test]
    fn matches_as_gun_s_string_match() {
        let m = |t: &str, o: serde_json::Value| string_match(t, Some(&o));
        assert!(m("inbox", json!("inbox")));
        assert!(!m("inbox2", json!("inbox")), "a string is exact");
        assert!(m("inbox/1", json!({"*": "inbox"})));
        assert!(!m("outbox", json!({"*": "inbox"})));
        assert!(m("b", json!({">": "a", "<": "c"})));
        assert!(!m("d", json!({">": "a", "<": "c"})));
        assert!(m("abc", json!({">": "ab"})), "'>' also matches as a prefix");
        assert!(m("zz", json!({">": "b"})));
        assert!(!m("a", json!({">": "b"})));
        assert!(m("a", json!({"<": "b"})));
        assert!(!m("c", json!({"<": "b"})));
        assert!(
            !m("x", json!({"=": "y", ">": "a"})),
            "with '=' nothing else"
        );
        assert!(!m("x", json!({})));
        assert!(!string_match("x", None));
        // An empty '*' is absent to `||`, but its presence still ends the test.
        assert!(!m("x", json!({"*": ""})));
        // `'' || ''` is '', and every text starts with it.
        assert!(m("x", json!({">": ""})));
    }
}
