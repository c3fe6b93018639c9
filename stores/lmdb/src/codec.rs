//! The on-disk encoding of the `fields` database: how a (soul, field key) pair becomes an LMDB
//! key and a field (state and value) becomes its value. Kept apart so that the read and write
//! paths, the export and the benchmarks all agree on one layout.
//!
//! Layout: one LMDB database, `fields`, whose key is the encoded soul followed by the field key and
//! whose value is the field's state and value (see [`encode_field`]). Souls are encoded so that a
//! node's fields are contiguous and nodes sort by soul: every `0x00` byte of the soul becomes
//! `0x00 0xFF`, and the soul ends with `0x00 0x01`.

use fibergun::graph::{Field, Key, Soul, State, Value};

pub(crate) fn encode_soul_bytes(soul: &[u8], terminate: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(soul.len() + 2);
    for &b in soul {
        out.push(b);
        if b == 0 {
            out.push(0xff);
        }
    }
    if terminate {
        out.extend_from_slice(&[0, 1]);
    }
    out
}

/// The key prefix of every field of `soul`.
pub fn soul_prefix(soul: &Soul) -> Vec<u8> {
    encode_soul_bytes(soul.as_str().as_bytes(), true)
}

/// Splits a stored key into the soul (decoded) and the field key bytes.
pub(crate) fn split_key(k: &[u8]) -> Option<(String, &[u8])> {
    let mut soul = Vec::new();
    let mut i = 0;
    while i < k.len() {
        if k[i] == 0 {
            match k.get(i + 1) {
                Some(0xff) => soul.push(0),
                Some(1) => return Some((String::from_utf8(soul).ok()?, &k[i + 2..])),
                _ => return None,
            }
            i += 2;
        } else {
            soul.push(k[i]);
            i += 1;
        }
    }
    None
}

pub(crate) fn decode_key(bytes: &[u8]) -> Option<Key> {
    Key::new(std::str::from_utf8(bytes).ok()?).ok()
}

const NULL: u8 = 0;
const FALSE: u8 = 1;
const TRUE: u8 = 2;
const NUMBER: u8 = 3;
const STRING: u8 = 4;
const LINK: u8 = 5;

/// A field as stored: the state as 8 big-endian bytes of its `f64`, a type tag, and the payload.
pub fn encode_field(field: &Field) -> Vec<u8> {
    let mut out = Vec::with_capacity(16);
    out.extend_from_slice(&field.state.ms().to_be_bytes());
    match &field.value {
        Value::Null => out.push(NULL),
        Value::Bool(false) => out.push(FALSE),
        Value::Bool(true) => out.push(TRUE),
        Value::Number(n) => {
            out.push(NUMBER);
            out.extend_from_slice(&n.to_be_bytes());
        }
        Value::String(s) => {
            out.push(STRING);
            out.extend_from_slice(s.as_bytes());
        }
        Value::Link(soul) => {
            out.push(LINK);
            out.extend_from_slice(soul.as_str().as_bytes());
        }
    }
    out
}

/// Reads a stored field; `None` if the bytes are not a field this store wrote.
pub fn decode_field(bytes: &[u8]) -> Option<Field> {
    let state = State::new(f64::from_be_bytes(bytes.get(..8)?.try_into().ok()?)).ok()?;
    let payload = bytes.get(9..)?;
    let value = match *bytes.get(8)? {
        NULL => Value::Null,
        FALSE => Value::Bool(false),
        TRUE => Value::Bool(true),
        NUMBER => Some(f64::from_be_bytes(payload.try_into().ok()?))
            .filter(|n| n.is_finite())
            .map(Value::Number)?,
        STRING => Value::String(std::str::from_utf8(payload).ok()?.into()),
        LINK => Value::Link(Soul::new(std::str::from_utf8(payload).ok()?).ok()?),
        _ => return None,
    };
    Some(Field { value, state })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn soul(s: &str) -> Soul {
        Soul::new(s).unwrap()
    }
    fn field(v: Value, s: f64) -> Field {
        Field {
            value: v,
            state: State::new(s).unwrap(),
        }
    }

    #[test]
    fn fields_round_trip() {
        for v in [
            Value::Null,
            Value::Bool(true),
            Value::Bool(false),
            Value::Number(-1.5e300),
            Value::String("héllo\0".into()),
            Value::Link(soul("a/b")),
        ] {
            let f = field(v, 1620286973647.001);
            assert_eq!(decode_field(&encode_field(&f)), Some(f));
        }
    }

    #[test]
    fn souls_with_nul_and_shared_prefixes_stay_apart() {
        let a = soul_prefix(&soul("a"));
        let a0 = soul_prefix(&soul("a\0"));
        let ab = soul_prefix(&soul("ab"));
        assert!(a < a0 && a0 < ab);
        assert!(!a0.starts_with(&a));
        assert_eq!(
            split_key(&[a0.clone(), b"k".to_vec()].concat()),
            Some(("a\0".into(), &b"k"[..]))
        );
    }
}
