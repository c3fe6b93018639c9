//! fibergun's JSON writer against node's own `JSON.stringify`: numbers near every formatting
//! boundary, strings with control characters, quotes, U+2028 and characters above U+FFFF, and
//! nested objects whose key order must be kept. One node process checks every value.

use std::io::Write;
use std::process::{Command, Stdio};

use fibergun::json::{cmp_utf16, string_hash, write_json};
use fibergun::rng::Rng;
use serde_json::{Map, Value as Json};

fn number(rng: &mut Rng) -> f64 {
    let special = [
        0.0,
        -0.0,
        1e21,
        1e-7,
        9.999999999999999e20,
        1.0000000000000001e21,
        1e-6,
        9.99e-7,
        0.1,
        0.2 + 0.1,
        5e-324,
        f64::MAX,
        f64::MIN_POSITIVE,
        1700000000000.0,
        1620286973647.001,
        2f64.powi(53),
        2f64.powi(53) + 2.0,
        -1e300,
        123456789012345680000.0,
    ];
    match rng.below(4) {
        0 => special[rng.below(special.len() as u64) as usize],
        1 => (rng.next_u64() as i64 >> rng.below(60)) as f64,
        2 => {
            let f = f64::from_bits(rng.next_u64());
            if f.is_finite() {
                f
            } else {
                1.5
            }
        }
        _ => {
            (rng.below(1 << 40) as f64) / 10f64.powi(rng.below(30) as i32)
                * 10f64.powi(rng.below(30) as i32)
        }
    }
}

fn string(rng: &mut Rng) -> String {
    let len = rng.below(12);
    (0..len)
        .map(|_| {
            let c = match rng.below(8) {
                0 => rng.below(0x20) as u32,
                1 => ['"', '\\', '/', '\u{7f}', '\u{2028}', '\u{2029}', '\u{feff}']
                    [rng.below(7) as usize] as u32,
                2 => 0x1f600 + rng.below(0x50) as u32,
                3 => 0xe000 + rng.below(0x2000) as u32,
                4 => 0x80 + rng.below(0x700) as u32,
                _ => 0x20 + rng.below(0x5f) as u32,
            };
            char::from_u32(c).unwrap_or('?')
        })
        .collect()
}

fn value(rng: &mut Rng, depth: u32) -> Json {
    match rng.below(if depth > 2 { 5 } else { 7 }) {
        0 => Json::Null,
        1 => Json::Bool(rng.below(2) == 1),
        2 | 3 => serde_json::Number::from_f64(number(rng)).map_or(Json::Null, Json::Number),
        4 => Json::String(string(rng)),
        5 => Json::Array((0..rng.below(4)).map(|_| value(rng, depth + 1)).collect()),
        _ => {
            let mut m = Map::new();
            for _ in 0..rng.below(4) {
                // Keys that look like array indices are reordered by JavaScript; GUN keys that
                // matter for signatures never are, so leave them out here.
                let mut k = string(rng);
                if k.parse::<u32>().is_ok() {
                    k.push('k');
                }
                m.insert(k, value(rng, depth + 1));
            }
            Json::Object(m)
        }
    }
}

/// Runs a node script with `input` on its stdin; returns its stdout.
fn node(script: &str, input: String) -> Vec<u8> {
    let mut child = Command::new("node")
        .args(["-e", script])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("node must be installed to run this test (see README)");
    let mut stdin = child.stdin.take().unwrap();
    let writer = std::thread::spawn(move || stdin.write_all(input.as_bytes()));
    let output = child.wait_with_output().unwrap();
    writer.join().unwrap().unwrap();
    assert!(output.status.success(), "node failed");
    output.stdout
}

#[test]
fn stringify_matches_node() {
    let mut rng = Rng::new(20261125);
    let values: Vec<Json> = (0..20_000).map(|_| value(&mut rng, 0)).collect();
    let script = r#"
        const lines = require('fs').readFileSync(0, 'utf8').split('\n').filter(Boolean);
        const out = lines.map(l => { const s = JSON.stringify(JSON.parse(l));
            let h = 0; for (let i = 0; i < s.length; i++) { h = (h * 31 + s.charCodeAt(i)) | 0; }
            return JSON.stringify([s, h]); });
        process.stdout.write(out.join('\n') + '\n');
    "#;
    let mut input = String::new();
    for v in &values {
        // serde_json (float_roundtrip) writes numbers that parse back to the same f64 in node.
        input.push_str(&serde_json::to_string(v).unwrap());
        input.push('\n');
    }
    let output = node(script, input);
    let lines: Vec<&str> = std::str::from_utf8(&output).unwrap().lines().collect();
    assert_eq!(lines.len(), values.len());
    for (v, line) in values.iter().zip(lines) {
        let (expected, hash): (String, i32) = serde_json::from_str(line).unwrap();
        let mut ours = String::new();
        write_json(&mut ours, v);
        assert_eq!(ours, expected, "JSON text differs for {v:?}");
        assert_eq!(string_hash(&ours), hash, "String.hash differs for {ours}");
    }
}

#[test]
fn utf16_comparison_matches_node() {
    let mut rng = Rng::new(7);
    let pairs: Vec<(String, String)> = (0..5_000)
        .map(|_| (string(&mut rng), string(&mut rng)))
        .collect();
    let script = r#"
        const pairs = JSON.parse(require('fs').readFileSync(0, 'utf8'));
        process.stdout.write(JSON.stringify(pairs.map(([a, b]) => a < b ? -1 : a > b ? 1 : 0)));
    "#;
    let output = node(script, serde_json::to_string(&pairs).unwrap());
    let verdicts: Vec<i8> = serde_json::from_slice(&output).unwrap();
    for ((a, b), v) in pairs.iter().zip(verdicts) {
        assert_eq!(cmp_utf16(a, b) as i8, v, "{a:?} vs {b:?}");
    }
}
