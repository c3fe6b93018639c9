//! HAM decided by GUN JS's own code and by fibergun's, over random cases: zero disagreements.
//!
//! Each case is (current value and state, or absent; incoming value and state; wall clock). The
//! cases stress ties (equal states, often with values whose JSON texts differ only in ways UTF-16
//! order and JavaScript's number formatting decide), historical and future states, fractional
//! states and neighbouring floats. `FIBERGUN_HAM_CASES` sets the count (default 100,000) and
//! `FIBERGUN_HAM_SEED` the seed.

use std::io::Write;
use std::process::{Command, Stdio};

use fibergun::ham::{decide, Decision};
use fibergun::rng::Rng;
use fibergun::{Field, Soul, State, Value};
use serde_json::{json, Value as Json};

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn string(rng: &mut Rng) -> String {
    let len = rng.below(5);
    (0..len)
        .map(|_| {
            let c = match rng.below(9) {
                0 => rng.below(0x20) as u32,
                1 => ['"', '\\', '!', '#', '{', '5', '-', 't', 'n'][rng.below(9) as usize] as u32,
                2 => 0x1f600 + rng.below(4) as u32,
                3 => 0xff61 + rng.below(4) as u32,
                4 => 0xe9 + rng.below(3) as u32,
                _ => 'a' as u32 + rng.below(3) as u32,
            };
            char::from_u32(c).unwrap_or('?')
        })
        .collect()
}

fn number(rng: &mut Rng) -> f64 {
    const EDGES: [f64; 14] = [
        0.0,
        5.0,
        -5.0,
        1e21,
        1e-7,
        1e-6,
        999999999999999900000.0,
        0.1,
        123.456,
        1e300,
        -1e-300,
        5e-324,
        9007199254740993.0,
        1.5,
    ];
    match rng.below(3) {
        0 => EDGES[rng.below(EDGES.len() as u64) as usize],
        1 => rng.below(10) as f64,
        _ => f64::from_bits(rng.next_u64() >> 2).min(1e300),
    }
}

fn value(rng: &mut Rng) -> Value {
    match rng.below(8) {
        0 => Value::Null,
        1 => Value::Bool(rng.below(2) == 0),
        2 | 3 => Value::Number(number(rng)),
        4 => Value::Link(Soul::new(&format!("{}x", string(rng))).expect("non-empty")),
        _ => Value::String(string(rng).into()),
    }
}

/// A state near `around`: equal, a neighbouring float, a fraction of a millisecond away, or far.
fn state(rng: &mut Rng, around: f64, wall: f64) -> f64 {
    match rng.below(10) {
        0..=2 => around,
        3 => f64::from_bits(around.to_bits() + 1),
        4 => f64::from_bits(around.to_bits() - 1),
        5 => around + (rng.below(3) as f64 + 1.0) / 999.0,
        6 => wall + rng.below(5_000) as f64,
        7 => wall + 3e9,
        8 => wall - rng.below(1 << 40) as f64,
        _ => around - rng.below(10) as f64,
    }
}

fn field(value: Value, state: f64) -> Field {
    Field {
        value,
        state: State::new(state).expect("finite"),
    }
}

#[test]
fn ham_agrees_with_gun_js() {
    fibergun_testkit::gunjs::ensure_node_deps();
    let count = env_or("FIBERGUN_HAM_CASES", 100_000);
    let mut rng = Rng::new(env_or("FIBERGUN_HAM_SEED", 4_2021));
    let mut wall = 1_795_574_541_471.0;
    let mut cases = Vec::with_capacity(count as usize);
    for _ in 0..count {
        wall += 1.0 + rng.below(1_000) as f64;
        let base = wall - rng.below(100_000) as f64;
        let current =
            (rng.below(5) != 0).then(|| field(value(&mut rng), state(&mut rng, base, wall)));
        let around = current.as_ref().map_or(base, |f| f.state.ms());
        // Often the same value (or one whose JSON text differs only slightly) at the same state.
        let incoming_value = match (&current, rng.below(4)) {
            (Some(c), 0) => c.value.clone(),
            _ => value(&mut rng),
        };
        let incoming = field(incoming_value, state(&mut rng, around, wall));
        cases.push((current, incoming, wall));
    }
    let mut input = String::new();
    for (current, incoming, wall) in &cases {
        let cur = current
            .as_ref()
            .map_or(Json::Null, |f| json!([f.value.to_json(), f.state.ms()]));
        let line = json!([cur, [incoming.value.to_json(), incoming.state.ms()], wall]);
        input.push_str(&line.to_string());
        input.push('\n');
    }
    let script = fibergun_testkit::gunjs::gunjs_dir().join("ham-differential.js");
    let mut child = Command::new("node")
        .arg(&script)
        .env("MULTICAST", "false")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("node must be installed to run this test");
    let mut stdin = child.stdin.take().expect("piped");
    let writer = std::thread::spawn(move || stdin.write_all(input.as_bytes()));
    let output = child.wait_with_output().expect("node ran");
    writer.join().expect("writer thread").expect("write cases");
    assert!(
        output.status.success(),
        "node failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let answers: Vec<Json> = std::str::from_utf8(&output.stdout)
        .expect("utf-8")
        .lines()
        // GUN greets on stdout when it loads; the answers are the lines that are JSON arrays.
        .filter(|l| l.starts_with('['))
        .map(|l| serde_json::from_str(l).expect("node prints JSON"))
        .collect();
    assert_eq!(answers.len(), cases.len());

    let mut disagreements = Vec::new();
    let mut tally = [0usize; 4];
    for (i, ((current, incoming, wall), gun)) in cases.iter().zip(&answers).enumerate() {
        let now = State::new(*wall).expect("finite");
        let decision = decide(incoming, current.as_ref(), now);
        tally[decision as usize] += 1;
        let after = match decision {
            Decision::Accept => Some(incoming),
            _ => current.as_ref(),
        };
        let ours = json!([
            decision == Decision::Defer,
            after.map_or(Json::Null, |f| f.value.to_json()),
            after.map_or(Json::Null, |f| json!(f.state.ms())),
        ]);
        // Compare values as JavaScript's JSON text (numbers in JS form), states as numbers.
        let text = |v: &Json| fibergun::json::stringify(v);
        if text(&ours[1]) != text(&gun[1])
            || ours[0] != gun[0]
            || ours[2].as_f64() != gun[2].as_f64()
        {
            disagreements.push(format!(
                "case {i}: current {current:?} incoming {incoming:?} wall {wall}: fibergun {ours} GUN {gun}"
            ));
        }
    }
    eprintln!(
        "{} cases: {} deferred, {} historical, {} same/lost tie, {} accepted; {} disagreements",
        cases.len(),
        tally[Decision::Defer as usize],
        tally[Decision::Historical as usize],
        tally[Decision::Same as usize],
        tally[Decision::Accept as usize],
        disagreements.len()
    );
    assert!(
        disagreements.is_empty(),
        "{}",
        disagreements[..disagreements.len().min(20)].join("\n")
    );
}
