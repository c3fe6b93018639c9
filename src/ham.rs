//! HAM, GUN's conflict rule, exactly as GUN JS decides it (`src/root.js`, spec section 4).
//!
//! For one incoming `(value, state)` against the current field, in this order:
//! 1. a state ahead of the machine's wall clock is deferred until its time comes;
//! 2. a state below the current one is historical and dropped;
//! 3. at an equal state the value whose JSON text is greater, compared by UTF-16 code units, wins;
//!    an equal text changes nothing;
//! 4. otherwise (a greater state) the incoming value wins.

use std::cmp::Ordering;

use crate::graph::{Field, State, Value};
use crate::json;

/// What HAM decides for one incoming field.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// The state is ahead of the wall clock: hold it and decide again when its time comes.
    Defer,
    /// The state is older than the current one: drop it.
    Historical,
    /// Same state, and the value is the same or loses the tie-break: nothing changes.
    Same,
    /// Apply it.
    Accept,
}

/// Decides an incoming field against the current one (`None` when the key is absent), with the
/// machine's wall clock `now` in milliseconds.
pub fn decide(incoming: &Field, current: Option<&Field>, now: State) -> Decision {
    if incoming.state > now {
        return Decision::Defer;
    }
    merge(incoming, current)
}

/// HAM without the clock: the rule for data whose time has come, used by stores to merge.
pub fn merge(incoming: &Field, current: Option<&Field>) -> Decision {
    let Some(current) = current else {
        return Decision::Accept;
    };
    match incoming.state.cmp(&current.state) {
        Ordering::Less => Decision::Historical,
        Ordering::Greater => Decision::Accept,
        Ordering::Equal => match compare_values(&incoming.value, &current.value) {
            Ordering::Greater => Decision::Accept,
            _ => Decision::Same,
        },
    }
}

/// Orders two values by their JSON text under JavaScript string comparison.
pub fn compare_values(a: &Value, b: &Value) -> Ordering {
    match (a, b) {
        // Both texts are quoted strings: compare the escaped texts, which is what JS does.
        _ if a == b => Ordering::Equal,
        _ => json::cmp_utf16(&a.json_text(), &b.json_text()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::Soul;

    fn f(value: Value, state: f64) -> Field {
        Field {
            value,
            state: State::new(state).unwrap(),
        }
    }
    fn s(x: &str) -> Value {
        Value::String(x.into())
    }
    const NOW: f64 = 1_000.0;
    fn now() -> State {
        State::new(NOW).unwrap()
    }

    #[test]
    fn the_decision_table() {
        assert_eq!(decide(&f(s("a"), 1001.0), None, now()), Decision::Defer);
        assert_eq!(decide(&f(s("a"), 5.0), None, now()), Decision::Accept);
        assert_eq!(
            decide(&f(s("a"), 4.0), Some(&f(s("b"), 5.0)), now()),
            Decision::Historical
        );
        assert_eq!(
            decide(&f(s("a"), 6.0), Some(&f(s("b"), 5.0)), now()),
            Decision::Accept
        );
        assert_eq!(
            decide(&f(s("a"), 5.0), Some(&f(s("a"), 5.0)), now()),
            Decision::Same
        );
        assert_eq!(
            decide(&f(s("b"), 5.0), Some(&f(s("a"), 5.0)), now()),
            Decision::Accept
        );
        assert_eq!(
            decide(&f(s("a"), 5.0), Some(&f(s("b"), 5.0)), now()),
            Decision::Same
        );
        // Fractional states are kept, not rounded.
        assert_eq!(
            decide(&f(s("a"), 5.001), Some(&f(s("b"), 5.0)), now()),
            Decision::Accept
        );
    }

    #[test]
    fn ties_break_on_json_text_as_observed_on_gun_js() {
        // Number 5 beats string "5": `5` (0x35) > `"` (0x22).
        assert_eq!(
            compare_values(&Value::Number(5.0), &s("5")),
            Ordering::Greater
        );
        // A link beats true; "b" beats "a".
        let link = Value::Link(Soul::new("x").unwrap());
        assert_eq!(compare_values(&link, &Value::Bool(true)), Ordering::Greater);
        assert_eq!(compare_values(&s("b"), &s("a")), Ordering::Greater);
        // "a" beats "a!": the texts differ at the closing quote, 0x22 > 0x21.
        assert_eq!(compare_values(&s("a"), &s("a!")), Ordering::Greater);
        // Order of first characters: strings < numbers < false < null < true < links.
        let order = [
            s("z"),
            Value::Number(-1.0),
            Value::Bool(false),
            Value::Null,
            Value::Bool(true),
            link,
        ];
        for w in order.windows(2) {
            assert_eq!(compare_values(&w[0], &w[1]), Ordering::Less, "{w:?}");
        }
    }
}
