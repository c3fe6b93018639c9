//! How the graph is kept in the database's columns: souls and keys as their UTF-8 bytes
//! (`bytea`: any character, NUL included, ordered by bytes as the other stores order them),
//! states as `double precision` (exact, fractions included), values as their JSON text as
//! JavaScript writes it (`text`; a link is `{"#":"soul"}`).

use fibergun::graph::{Field, Key, Soul, State, Value};

/// A stored value's column text.
pub(crate) fn value_text(value: &Value) -> String {
    value.json_text()
}

/// A field from its columns.
pub(crate) fn decode_field(state: f64, value: &str) -> Result<Field, String> {
    let json: serde_json::Value =
        serde_json::from_str(value).map_err(|e| format!("a stored value is not JSON: {e}"))?;
    Ok(Field {
        value: Value::from_json(&json, usize::MAX)?,
        state: State::new(state).map_err(|e| e.to_string())?,
    })
}

pub(crate) fn decode_soul(bytes: &[u8]) -> Result<Soul, String> {
    let text = std::str::from_utf8(bytes).map_err(|_| "a stored soul is not UTF-8".to_owned())?;
    Soul::new(text).map_err(|e| e.to_string())
}

pub(crate) fn decode_key(bytes: &[u8]) -> Result<Key, String> {
    let text = std::str::from_utf8(bytes).map_err(|_| "a stored key is not UTF-8".to_owned())?;
    Key::new(text).map_err(|e| e.to_string())
}

/// The advisory lock that guards a soul's fields while a transaction decides HAM for them: a
/// 64-bit FNV-1a hash of the soul, the same in every relay. Two souls that share a hash only
/// wait for each other.
pub(crate) fn lock_key(soul: &Soul) -> i64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in soul.as_str().as_bytes() {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash as i64
}

/// The first byte string after every string that starts with `prefix` (no UTF-8 text holds the
/// byte 0xFF): an exclusive upper bound for a prefix range.
pub(crate) fn past_prefix(prefix: &str) -> Vec<u8> {
    let mut bound = prefix.as_bytes().to_vec();
    bound.push(0xff);
    bound
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_round_trip_through_their_text() {
        for value in [
            Value::Null,
            Value::Bool(true),
            Value::Number(0.1 + 0.2),
            Value::Number(-1e300),
            Value::String("quote \" backslash \\ nul \u{0} astral 😀".into()),
            Value::Link(Soul::new("a/b").unwrap()),
        ] {
            let field = decode_field(1.5, &value_text(&value)).unwrap();
            assert_eq!(field.value, value);
            assert_eq!(field.state.ms(), 1.5);
        }
    }

    #[test]
    fn the_lock_key_is_fixed() {
        // Every relay must compute the same key: this is FNV-1a, not a seeded hasher.
        assert_eq!(
            lock_key(&Soul::new("a").unwrap()),
            0xaf63dc4c8601ec8c_u64 as i64
        );
    }
}
