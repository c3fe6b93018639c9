//! A strict JSON reader over a message's text, one pass, no intermediate tree: the message reader
//! (`direct.rs`) walks objects entry by entry and takes each value in the form it needs. It
//! accepts exactly the JSON that `serde_json` accepts, reads numbers to the same
//! [`serde_json::Number`], and bounds nesting itself (so no separate depth scan runs first).
//!
//! One deliberate difference: an escape of a lone UTF-16 surrogate (`\uD800`..`\uDFFF` not in a
//! pair), which JavaScript writes and UTF-8 cannot hold, reads as U+FFFD instead of failing.

use std::borrow::Cow;
use std::fmt;

use serde_json::{Map, Number, Value as Json};

use crate::json;

/// Why a text could not be read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum ReadError {
    /// Arrays and objects nest deeper than the reader allows.
    TooDeep,
    /// Not JSON: what was wrong, and the byte offset where it was found.
    Bad { what: &'static str, at: usize },
}

impl fmt::Display for ReadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReadError::TooDeep => f.write_str("nested too deep"),
            ReadError::Bad { what, at } => write!(f, "{what} at byte {at}"),
        }
    }
}

pub(super) type Read<T> = Result<T, ReadError>;

/// A value that is neither a string nor a container.
pub(super) enum Scalar {
    Null,
    Bool(bool),
    Number(Number),
}

/// A cursor over the text, with the nesting depth it stands at.
pub(super) struct Reader<'de> {
    text: &'de str,
    at: usize,
    depth: usize,
    max_depth: usize,
}

impl<'de> Reader<'de> {
    /// A reader at the start of `text`, refusing arrays and objects nested more than
    /// `max_depth` deep.
    pub fn new(text: &'de str, max_depth: usize) -> Self {
        Reader {
            text,
            at: 0,
            depth: 0,
            max_depth,
        }
    }

    fn bytes(&self) -> &'de [u8] {
        self.text.as_bytes()
    }

    fn bad<T>(&self, what: &'static str) -> Read<T> {
        Err(ReadError::Bad { what, at: self.at })
    }

    /// The next byte that is not whitespace, the reader moved to it.
    pub fn peek(&mut self) -> Option<u8> {
        let bytes = self.bytes();
        while let Some(b' ' | b'\n' | b'\t' | b'\r') = bytes.get(self.at) {
            self.at += 1;
        }
        bytes.get(self.at).copied()
    }

    /// Succeeds when nothing but whitespace is left.
    pub fn end(&mut self) -> Read<()> {
        match self.peek() {
            None => Ok(()),
            Some(_) => self.bad("trailing characters"),
        }
    }

    fn enter(&mut self) -> Read<()> {
        self.depth += 1;
        if self.depth > self.max_depth {
            return Err(ReadError::TooDeep);
        }
        self.at += 1;
        Ok(())
    }

    /// Reads the object the reader stands at, calling `entry` with each key while the reader
    /// stands at that key's value, which `entry` must read.
    pub fn object(
        &mut self,
        mut entry: impl FnMut(&mut Self, Cow<'de, str>) -> Read<()>,
    ) -> Read<()> {
        self.enter()?;
        if self.peek() == Some(b'}') {
            self.at += 1;
            self.depth -= 1;
            return Ok(());
        }
        loop {
            if self.peek() != Some(b'"') {
                return self.bad("expected a key");
            }
            self.at += 1;
            let key = self.string()?;
            if self.peek() != Some(b':') {
                return self.bad("expected `:`");
            }
            self.at += 1;
            entry(self, key)?;
            match self.peek() {
                Some(b',') => self.at += 1,
                Some(b'}') => break,
                _ => return self.bad("expected `,` or `}`"),
            }
        }
        self.at += 1;
        self.depth -= 1;
        Ok(())
    }

    /// Reads the array the reader stands at, calling `item` while it stands at each element.
    fn array(&mut self, mut item: impl FnMut(&mut Self) -> Read<()>) -> Read<()> {
        self.enter()?;
        if self.peek() == Some(b']') {
            self.at += 1;
            self.depth -= 1;
            return Ok(());
        }
        loop {
            item(self)?;
            match self.peek() {
                Some(b',') => self.at += 1,
                Some(b']') => break,
                _ => return self.bad("expected `,` or `]`"),
            }
        }
        self.at += 1;
        self.depth -= 1;
        Ok(())
    }

    /// Reads an object with `read`, or anything else as `other` (read, checked and dropped).
    pub fn object_or<T>(&mut self, read: impl FnOnce(&mut Self) -> Read<T>, other: T) -> Read<T> {
        if self.peek() == Some(b'{') {
            return read(self);
        }
        self.skip()?;
        Ok(other)
    }

    /// Reads a value and drops it.
    pub fn skip(&mut self) -> Read<()> {
        match self.peek() {
            Some(b'"') => {
                self.at += 1;
                self.string().map(drop)
            }
            Some(b'{') => self.object(|r, _| r.skip()),
            Some(b'[') => self.array(Self::skip),
            _ => self.scalar().map(drop),
        }
    }

    /// Reads a value as a JSON tree, as `serde_json` would build it (a repeated key keeps its
    /// last value, at its first place).
    pub fn tree(&mut self) -> Read<Json> {
        Ok(match self.peek() {
            Some(b'"') => {
                self.at += 1;
                Json::String(self.string()?.into_owned())
            }
            Some(b'{') => {
                let mut map = Map::new();
                self.object(|r, key| {
                    let value = r.tree()?;
                    map.insert(key.into_owned(), value);
                    Ok(())
                })?;
                Json::Object(map)
            }
            Some(b'[') => {
                let mut items = Vec::new();
                self.array(|r| {
                    items.push(r.tree()?);
                    Ok(())
                })?;
                Json::Array(items)
            }
            _ => match self.scalar()? {
                Scalar::Null => Json::Null,
                Scalar::Bool(b) => Json::Bool(b),
                Scalar::Number(n) => Json::Number(n),
            },
        })
    }

    /// A string when the reader stands at one (read), else `None` (nothing read).
    pub fn string_here(&mut self) -> Read<Option<Cow<'de, str>>> {
        if self.peek() != Some(b'"') {
            return Ok(None);
        }
        self.at += 1;
        self.string().map(Some)
    }

    /// `null`, `true`, `false` or a number.
    pub fn scalar(&mut self) -> Read<Scalar> {
        let rest = &self.bytes()[self.at..];
        let (scalar, len) = match rest.first() {
            Some(b'-' | b'0'..=b'9') => return self.number().map(Scalar::Number),
            Some(b'n') if rest.starts_with(b"null") => (Scalar::Null, 4),
            Some(b't') if rest.starts_with(b"true") => (Scalar::Bool(true), 4),
            Some(b'f') if rest.starts_with(b"false") => (Scalar::Bool(false), 5),
            None => return self.bad("the text ends where a value should be"),
            Some(_) => return self.bad("expected a value"),
        };
        self.at += len;
        Ok(scalar)
    }

    /// A number, by JSON's grammar. Whole numbers of up to 18 digits are read here; the rest go
    /// to `serde_json`, so that every number reads as it would there.
    fn number(&mut self) -> Read<Number> {
        let bytes = self.bytes();
        let start = self.at;
        let digits = |mut i: usize| {
            while bytes.get(i).is_some_and(u8::is_ascii_digit) {
                i += 1;
            }
            i
        };
        let negative = bytes[start] == b'-';
        let int_start = start + usize::from(negative);
        // The whole part, its value gathered as it is scanned (wrapping: it is used only when
        // it has at most 18 digits).
        let mut whole = 0u64;
        let int_end = match bytes.get(int_start) {
            Some(b'0') => int_start + 1,
            Some(b'1'..=b'9') => {
                let mut i = int_start;
                while let Some(&d @ b'0'..=b'9') = bytes.get(i) {
                    whole = whole.wrapping_mul(10).wrapping_add(u64::from(d - b'0'));
                    i += 1;
                }
                i
            }
            _ => {
                return Err(ReadError::Bad {
                    what: "invalid number",
                    at: int_start,
                })
            }
        };
        let mut end = int_end;
        if bytes.get(end) == Some(&b'.') {
            if !bytes.get(end + 1).is_some_and(u8::is_ascii_digit) {
                return Err(ReadError::Bad {
                    what: "invalid number",
                    at: end + 1,
                });
            }
            end = digits(end + 1);
        }
        if let Some(b'e' | b'E') = bytes.get(end) {
            end += 1;
            if let Some(b'+' | b'-') = bytes.get(end) {
                end += 1;
            }
            if !bytes.get(end).is_some_and(u8::is_ascii_digit) {
                return Err(ReadError::Bad {
                    what: "invalid number",
                    at: end,
                });
            }
            end = digits(end);
        }
        self.at = end;
        if end == int_end && int_end - int_start <= 18 {
            match (negative, whole) {
                (false, n) => return Ok(Number::from(n)),
                // Negative zero is a float, as in serde_json.
                (true, 0) => {}
                (true, n) => return Ok(Number::from(-(n as i64))),
            }
        }
        self.text[start..end]
            .parse::<Number>()
            .map_err(|_| ReadError::Bad {
                what: "number out of range",
                at: start,
            })
    }

    /// A string's contents, the reader just past its opening quote: borrowed from the text when
    /// it holds no escapes.
    fn string(&mut self) -> Read<Cow<'de, str>> {
        let bytes = self.bytes();
        let text = self.text;
        let start = self.at;
        let mut i = match json::special(&bytes[start..]) {
            Some(stop) => start + stop,
            None => return self.unclosed(),
        };
        if bytes[i] == b'"' {
            self.at = i + 1;
            return Ok(Cow::Borrowed(&text[start..i]));
        }
        let mut out = String::with_capacity(i - start + 16);
        let mut from = start;
        loop {
            out.push_str(&text[from..i]);
            match bytes[i] {
                b'"' => {
                    self.at = i + 1;
                    return Ok(Cow::Owned(out));
                }
                b'\\' => i = self.escape(i + 1, &mut out)?,
                _ => {
                    self.at = i;
                    return self.bad("a control character in a string");
                }
            }
            from = i;
            i = match json::special(&bytes[i..]) {
                Some(stop) => i + stop,
                None => return self.unclosed(),
            };
        }
    }

    fn unclosed<T>(&mut self) -> Read<T> {
        self.at = self.text.len();
        self.bad("the text ends in a string")
    }

    /// Decodes the escape whose letter is at `i` into `out`; returns where the text goes on.
    fn escape(&mut self, i: usize, out: &mut String) -> Read<usize> {
        let bytes = self.bytes();
        let c = match bytes.get(i) {
            Some(b'"') => '"',
            Some(b'\\') => '\\',
            Some(b'/') => '/',
            Some(b'b') => '\u{8}',
            Some(b'f') => '\u{c}',
            Some(b'n') => '\n',
            Some(b'r') => '\r',
            Some(b't') => '\t',
            Some(b'u') => {
                let Some(unit) = hex4(bytes, i + 1) else {
                    self.at = i;
                    return self.bad("an invalid unicode escape");
                };
                let low = (bytes.get(i + 5..i + 7) == Some(b"\\u"))
                    .then(|| hex4(bytes, i + 7))
                    .flatten()
                    .filter(|low| (0xdc00..0xe000).contains(low));
                let (c, next) = match (unit, low) {
                    (0xd800..=0xdbff, Some(low)) => {
                        let code = 0x10000 + ((unit - 0xd800) << 10) + (low - 0xdc00);
                        (char::from_u32(code), i + 11)
                    }
                    (unit, _) => (char::from_u32(unit), i + 5),
                };
                // A lone surrogate is not a char.
                out.push(c.unwrap_or('\u{fffd}'));
                return Ok(next);
            }
            _ => {
                self.at = i;
                return self.bad("an invalid escape");
            }
        };
        out.push(c);
        Ok(i + 1)
    }
}

/// The four hex digits at `at`, as a number.
fn hex4(bytes: &[u8], at: usize) -> Option<u32> {
    let digits = bytes.get(at..at + 4)?;
    digits.iter().try_fold(0u32, |n, &d| {
        let v = (d as char).to_digit(16)?;
        Some(n * 16 + v)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The tree `serde_json` reads, with lone surrogate escapes first made U+FFFD.
    fn by_serde(text: &str) -> Option<Json> {
        let fixed = super::super::replace_lone_surrogates(text);
        serde_json::from_str(&fixed).ok()
    }

    fn by_reader(text: &str) -> Option<Json> {
        let mut r = Reader::new(text, 64);
        let tree = r.tree().ok()?;
        r.end().ok()?;
        Some(tree)
    }

    #[test]
    fn reads_what_serde_json_reads() {
        for text in [
            r#"{"a":[1,-2,3.5,-0,0,1e3,1E-3,2.5e+2,-0.0],"b":{"c":null,"d":true,"e":false}}"#,
            r#"  {"x" : "y" , "x":"z"}  "#,
            r#""\" \\ \/ \b \f \n \r \t \u0041 \u00e9 \ud83d\ude00 \ud800 \udc00 \ud800\u0041""#,
            r#""long string with no escapes that spans many eight-byte words, é and ✓""#,
            "123456789012345678",
            "1234567890123456789",
            "18446744073709551615",
            "18446744073709551616",
            "-9223372036854775808",
            "-9223372036854775809",
            "1e400",
            "-1e400",
            "1e-400",
            "[]",
            "{}",
            "[[],{}]",
            "01",
            "1.",
            ".5",
            "-",
            "1e",
            "+1",
            "nul",
            "truex",
            "[1,]",
            r#"{"a":1,}"#,
            r#"{"a" 1}"#,
            r#"{a:1}"#,
            "\"tab\there\"",
            r#""\x""#,
            r#""\u12""#,
            r#""\uZZZZ""#,
            r#""unclosed"#,
            r#"{"a":1}x"#,
            "",
            "   ",
        ] {
            assert_eq!(by_reader(text), by_serde(text), "{text:?}");
        }
    }

    #[test]
    fn bounds_nesting() {
        let deep = |n: usize| format!("{}{}", "[".repeat(n), "]".repeat(n));
        assert!(Reader::new(&deep(4), 4).tree().is_ok());
        assert_eq!(Reader::new(&deep(5), 4).tree(), Err(ReadError::TooDeep));
        let mut r = Reader::new(r#"{"a":{"b":{}}}"#, 2);
        assert_eq!(r.skip(), Err(ReadError::TooDeep));
    }

    proptest::proptest! {
        /// Text made of JSON's pieces, most of it not JSON: the reader accepts what serde_json
        /// accepts and reads it to the same tree.
        #[test]
        fn agrees_with_serde_json(pieces in proptest::collection::vec(
            proptest::sample::select(vec![
                "{", "}", "[", "]", ",", ":", "\"", "\"a\"", "\"k\":", " ", "\n", "0", "1", "-",
                "12", ".", "5", "e", "E", "+", "1e400", "null", "true", "false", "nul", "\\",
                "\\n", "\\u", "\\ud83d", "\\ude00", "\\u0041", "00e9", "x", "é", "\t", "\u{1}",
            ]),
            0..24,
        )) {
            let text = pieces.concat();
            proptest::prop_assert_eq!(by_reader(&text), by_serde(&text), "{:?}", text);
        }
    }
}
