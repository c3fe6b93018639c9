//! JSON text exactly as JavaScript's `JSON.stringify` writes it.
//!
//! GUN hashes and signs JSON text (HAM's tie-break, the `##` reply hash, SEA signatures), so every byte
//! must match what a JavaScript peer would produce: numbers in `Number.prototype.toString` form (`30`,
//! `1e+21`, `1.5e-7`, never `30.0`), strings escaped only where JSON requires it, keys in the order
//! given. This module is the one place fibergun writes JSON; everything it sends goes through it.

use std::cmp::Ordering;

use serde_json::Value as Json;

/// Appends `n` as JavaScript's `String(n)` would print it. `n` must be finite (JSON has no NaN or
/// Infinity); non-finite input prints `null`, as `JSON.stringify` does.
pub fn write_number(out: &mut String, n: f64) {
    if !n.is_finite() {
        out.push_str("null");
        return;
    }
    if n == 0.0 {
        // Covers -0, which JavaScript prints as `0`.
        out.push('0');
        return;
    }
    // Whole numbers below 2^53 (every HAM state, most values) print as their digits, as in
    // JavaScript; the general formatter is several times slower.
    if let Some(whole) = safe_integer(n) {
        out.push_str(itoa::Buffer::new().format(whole));
        return;
    }
    let mut buf = ryu_js::Buffer::new();
    out.push_str(buf.format_finite(n));
}

/// `n` as an integer when it is a whole number JavaScript holds exactly (below 2^53 in size).
/// A cast there and back says so: `f64::fract` is a library call on baseline x86-64.
pub fn safe_integer(n: f64) -> Option<i64> {
    let whole = n as i64; // saturates; NaN becomes 0
    (whole as f64 == n && whole.unsigned_abs() < 1 << 53).then_some(whole)
}

/// The bytes a JSON string escapes: `"`, `\` and the control characters.
const ESCAPED: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 0x20 {
        table[b] = true;
        b += 1;
    }
    table[b'"' as usize] = true;
    table[b'\\' as usize] = true;
    table
};

/// Appends `s` as a JSON string literal with JavaScript's escaping: `"` and `\` escaped, the
/// short escapes `\b \f \n \r \t`, other control characters as lower-case `\u00xx`, and nothing
/// else (`/`, DEL, U+2028 and non-ASCII stay as they are).
pub fn write_string(out: &mut String, s: &str) {
    out.reserve(s.len() + 2);
    out.push('"');
    let bytes = s.as_bytes();
    // Most strings need no escape, and are copied whole once a pass says so: a table lookup a
    // byte for short strings (keys, ids), one pass without an early exit (which vectorizes) for
    // longer ones.
    let clean = if bytes.len() < 16 {
        !bytes.iter().any(|&b| ESCAPED[b as usize])
    } else {
        let needs_escape = |b: u8| b < 0x20 || b == b'"' || b == b'\\';
        !bytes.iter().fold(false, |any, &b| any | needs_escape(b))
    };
    if clean {
        out.push_str(s);
        out.push('"');
        return;
    }
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let escape: &str = match b {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            0x08 => "\\b",
            0x0c => "\\f",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            0x00..=0x1f => "",
            _ => continue,
        };
        out.push_str(&s[start..i]);
        if escape.is_empty() {
            const HEX: &[u8; 16] = b"0123456789abcdef";
            out.push_str("\\u00");
            out.push(HEX[(b >> 4) as usize] as char);
            out.push(HEX[(b & 0xf) as usize] as char);
        } else {
            out.push_str(escape);
        }
        start = i + 1;
    }
    out.push_str(&s[start..]);
    out.push('"');
}

/// Appends any JSON value in `JSON.stringify` form, object keys in their stored order.
pub fn write_json(out: &mut String, value: &Json) {
    match value {
        Json::Null => out.push_str("null"),
        Json::Bool(true) => out.push_str("true"),
        Json::Bool(false) => out.push_str("false"),
        Json::Number(n) => write_number(out, n.as_f64().unwrap_or(f64::NAN)),
        Json::String(s) => write_string(out, s),
        Json::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_json(out, item);
            }
            out.push(']');
        }
        Json::Object(map) => {
            out.push('{');
            for (i, (k, v)) in map.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_string(out, k);
                out.push(':');
                write_json(out, v);
            }
            out.push('}');
        }
    }
}

/// `JSON.stringify(value)` for a parsed JSON value.
pub fn stringify(value: &Json) -> String {
    let mut out = String::new();
    write_json(&mut out, value);
    out
}

/// Compares two strings as JavaScript's `<` does: by UTF-16 code units, not by bytes. The two
/// orders differ only when a character above U+FFFF meets one in U+E000..=U+FFFF.
pub fn cmp_utf16(a: &str, b: &str) -> Ordering {
    // Byte order equals code point order; only the surrogate range reorders, so take the fast path
    // when neither string has a 4-byte character.
    let wide = |s: &str| s.bytes().any(|b| b >= 0xf0);
    if !wide(a) && !wide(b) {
        return a.cmp(b);
    }
    a.encode_utf16().cmp(b.encode_utf16())
}

/// GUN's `String.hash`: Java's string hash over UTF-16 code units, wrapping in 32 bits.
pub fn string_hash(s: &str) -> i32 {
    s.encode_utf16()
        .fold(0i32, |h, unit| h.wrapping_mul(31).wrapping_add(unit as i32))
}

/// Where the first `"`, `\` or control character in `bytes` is: eight bytes at a time, each word
/// tested for the three at once.
pub fn special(bytes: &[u8]) -> Option<usize> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    // A byte of `(x - ONES * n) & !x` has its high bit set where x's byte is below n, counting
    // from the lowest byte; a borrow can mark bytes above a marked one, never below it.
    let below = |x: u64, n: u8| x.wrapping_sub(ONES * u64::from(n)) & !x;
    let mut i = 0;
    while let Some(chunk) = bytes.get(i..i + 8) {
        let word = u64::from_le_bytes(chunk.try_into().expect("eight bytes"));
        let quote = word ^ (ONES * u64::from(b'"'));
        let backslash = word ^ (ONES * u64::from(b'\\'));
        let found = (below(quote, 1) | below(backslash, 1) | below(word, 0x20)) & HIGH;
        if found != 0 {
            return Some(i + (found.trailing_zeros() / 8) as usize);
        }
        i += 8;
    }
    bytes[i..]
        .iter()
        .position(|&b| b == b'"' || b == b'\\' || b < 0x20)
        .map(|at| i + at)
}

/// Where the string whose contents start at `from` in `bytes` ends (its closing quote), or
/// `None` when it is not closed.
pub fn string_end(bytes: &[u8], mut from: usize) -> Option<usize> {
    loop {
        from += string_stop(bytes.get(from..)?)?;
        if bytes[from] == b'"' {
            return Some(from);
        }
        from += 2;
    }
}

/// Where the next `"` or `\\` is in `bytes`: byte by byte for the first few (most strings of a
/// message, its keys and ids, are short, and a SIMD search costs more to start), then by memchr.
fn string_stop(bytes: &[u8]) -> Option<usize> {
    const SHORT: usize = 16;
    let head = &bytes[..bytes.len().min(SHORT)];
    if let Some(at) = head.iter().position(|&b| b == b'"' || b == b'\\') {
        return Some(at);
    }
    let rest = bytes.get(SHORT..)?;
    memchr::memchr2(b'"', b'\\', rest).map(|at| SHORT + at)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn num(n: f64) -> String {
        let mut s = String::new();
        write_number(&mut s, n);
        s
    }

    #[test]
    fn numbers_print_like_javascript() {
        assert_eq!(num(30.0), "30");
        assert_eq!(num(-0.0), "0");
        assert_eq!(num(1700000000000.0), "1700000000000");
        assert_eq!(num(1620286973647.001), "1620286973647.001");
        assert_eq!(num(1e21), "1e+21");
        assert_eq!(num(1e-7), "1e-7");
        assert_eq!(num(0.000001), "0.000001");
        assert_eq!(num(123456789012345680000.0), "123456789012345680000");
        assert_eq!(num(-42.0), "-42");
        assert_eq!(num(9007199254740991.0), "9007199254740991");
        assert_eq!(num(9007199254740992.0), "9007199254740992");
        assert_eq!(num(-9007199254740993.0), "-9007199254740992");
        assert_eq!(num(1e20), "100000000000000000000");
        assert_eq!(num(f64::NAN), "null");
        assert_eq!(num(f64::INFINITY), "null");
        assert_eq!(num(9223372036854775808.0), "9223372036854776000");
        assert_eq!(num(-1.5), "-1.5");
        assert_eq!(safe_integer(9007199254740992.0), None);
        assert_eq!(safe_integer(-9007199254740991.0), Some(-9007199254740991));
        assert_eq!(safe_integer(f64::NAN), None);
    }

    proptest::proptest! {
        /// The fast path for whole numbers prints what the general (JavaScript) formatter does.
        #[test]
        fn whole_numbers_print_as_the_general_formatter_does(
            n in -9_007_199_254_740_991i64..9_007_199_254_740_991
        ) {
            let n = n as f64;
            let mut general = ryu_js::Buffer::new();
            let expected = if n == 0.0 { "0" } else { general.format_finite(n) };
            proptest::prop_assert_eq!(num(n), expected);
        }

        /// Every finite number, whole or not, prints as the general (JavaScript) formatter
        /// prints it, whichever path it takes.
        #[test]
        fn any_number_prints_as_the_general_formatter_does(
            n in proptest::num::f64::POSITIVE
                | proptest::num::f64::NEGATIVE
                | proptest::num::f64::NORMAL
                | proptest::num::f64::SUBNORMAL
                | proptest::num::f64::ZERO
        ) {
            let mut general = ryu_js::Buffer::new();
            let expected = if n == 0.0 { "0" } else { general.format_finite(n) };
            proptest::prop_assert_eq!(num(n), expected);
        }

        /// Whole numbers of every size, both signs, on both sides of 2^53 and past 2^63, print
        /// as the general formatter prints them.
        #[test]
        fn whole_numbers_of_any_size_print_as_the_general_formatter_does(
            n in -1.9e19f64..1.9e19
        ) {
            let n = n.trunc();
            let mut general = ryu_js::Buffer::new();
            let expected = if n == 0.0 { "0" } else { general.format_finite(n) };
            proptest::prop_assert_eq!(num(n), expected);
        }

        /// The end of a string, found by jumps, is where a walk byte by byte finds it.
        #[test]
        fn string_ends_agree_with_a_walk_byte_by_byte(text in "([\"\\\\ud]|a{1,40}){0,30}") {
            let bytes = text.as_bytes();
            let mut escaped = false;
            let walked = bytes.iter().enumerate().find_map(|(i, &b)| {
                let end = !escaped && b == b'"';
                escaped = !escaped && b == b'\\';
                end.then_some(i)
            });
            proptest::prop_assert_eq!(string_end(bytes, 0), walked);
        }

        /// The fast path for strings without escapes writes what the escaping loop does.
        #[test]
        fn strings_print_alike_on_both_paths(s in "[ -~\u{0}-\u{1f}é😀]{0,40}") {
            let mut fast = String::new();
            write_string(&mut fast, &s);
            // serde_json escapes as JavaScript does: short escapes, else lower-case `\u00xx`.
            proptest::prop_assert_eq!(fast, serde_json::to_string(&s).unwrap());
        }
    }

    #[test]
    fn strings_escape_like_javascript() {
        let mut s = String::new();
        write_string(
            &mut s,
            "a\"b\\c\u{8}\u{c}\n\r\t\u{1}\u{1f}/\u{7f}\u{2028}é😀",
        );
        assert_eq!(
            s,
            "\"a\\\"b\\\\c\\b\\f\\n\\r\\t\\u0001\\u001f/\u{7f}\u{2028}é😀\""
        );
    }

    #[test]
    fn utf16_order_differs_from_byte_order_above_the_bmp() {
        // U+FF61 (3 bytes) vs U+1F600 (surrogates D83D DE00): bytes say FF61 < 1F600,
        // UTF-16 says D83D < FF61.
        assert_eq!(cmp_utf16("\u{ff61}", "😀"), Ordering::Greater);
        assert_eq!("\u{ff61}".cmp("😀"), Ordering::Less);
        assert_eq!(cmp_utf16("a", "b"), Ordering::Less);
    }

    #[test]
    fn string_hash_matches_gun() {
        // The observed `##` of a GET reply (spec section 5.6).
        let text = r##"{"alice":{"_":{"#":"alice",">":{"age":1700000000000,"name":1700000000000}},"age":30,"name":"Alice"}}"##;
        assert_eq!(string_hash(text), 581035059);
    }

    #[test]
    fn finds_special_bytes_in_every_lane() {
        for len in 0..40 {
            for at in 0..len {
                for b in [b'"', b'\\', 0x00, 0x1f] {
                    let mut bytes = vec![b'a'; len];
                    bytes[at] = b;
                    // A marked byte after the first must not hide it.
                    if at + 1 < len {
                        bytes[at + 1] = b'"';
                    }
                    assert_eq!(special(&bytes), Some(at), "{len} {at} {b}");
                }
            }
            assert_eq!(special(&vec![0xffu8; len]), None);
            assert_eq!(special(&vec![b' '; len]), None);
        }
    }
}
