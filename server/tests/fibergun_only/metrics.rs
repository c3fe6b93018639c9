//! `/metrics` and `/health` of the `fibergun` binary: the figures follow the traffic, the text
//! passes `promtool check metrics` (installed by `.ci/run`), and health answers ready.

use crate::BINARY;

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use fibergun_testkit::{now_ms, put_msg, temp_data_dir, Peer, Server};
use serde_json::{json, Value as Json};

fn get(url: &str, accept: Option<&str>) -> (u16, String, String) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let mut request = agent.get(url);
    if let Some(a) = accept {
        request = request.header("Accept", a);
    }
    let mut r = request.call().expect("HTTP GET");
    let content_type = r
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let body = r.body_mut().read_to_string().expect("a body");
    (r.status().as_u16(), content_type, body)
}

/// The value of the sample named exactly `name` (with its labels, if any).
fn sample(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no sample {name} in:\n{text}"))
        .trim()
        .parse()
        .unwrap()
}

#[test]
fn metrics_follow_the_traffic_and_pass_promtool() {
    let data = temp_data_dir();
    let server = Server::start(BINARY, data.path(), &[]);
    let base = format!("http://127.0.0.1:{}", server.port);
    let mut client = Peer::connect(&server.ws_url());
    let state = now_ms();
    for i in 0..20 {
        client.put_ok(
            &put_msg(
                &format!("p{i}"),
                &format!("m{i}"),
                &[("v", json!(i))],
                state,
            ),
            Duration::from_secs(10),
        );
    }
    client.get("g1", "m3", None, Duration::from_secs(10));
    client.get("g2", "missing", None, Duration::from_secs(10));
    assert!(client.send_text("not json"));
    assert!(client.send_json(&put_msg("bad", "~abc.def", &[("k", json!("x"))], state)));
    client.expect_reply("bad", Duration::from_secs(10));

    let (status, content_type, text) = get(&format!("{base}/metrics"), None);
    assert_eq!(status, 200);
    assert!(
        content_type.starts_with("text/plain; version=0.0.4"),
        "{content_type}"
    );
    assert_eq!(sample(&text, "fibergun_puts_acked_total"), 20.0);
    assert_eq!(sample(&text, "fibergun_puts_received_total"), 21.0);
    assert_eq!(sample(&text, "fibergun_put_ack_seconds_count"), 20.0);
    // Each put waited for its own commit (one at a time), and the GET of a soul not in the
    // cache read the store: at least 21 batches, each timed.
    let batches = sample(&text, "fibergun_store_batch_seconds_count");
    assert!(batches >= 21.0, "{batches} store batches");
    assert!(sample(&text, "fibergun_store_batch_seconds_sum") > 0.0);
    assert!(sample(&text, "fibergun_gets_received_total") >= 2.0);
    assert_eq!(
        sample(&text, "fibergun_errors_total{kind=\"malformed\"}"),
        1.0
    );
    assert_eq!(
        sample(&text, "fibergun_errors_total{kind=\"unauthorized\"}"),
        1.0
    );
    assert_eq!(sample(&text, "fibergun_stored_nodes"), 20.0);
    assert_eq!(sample(&text, "fibergun_stored_fields"), 20.0);
    assert!(sample(&text, "fibergun_connections") >= 1.0);
    assert!(sample(&text, "fibergun_received_bytes_total") > 1000.0);
    assert!(sample(&text, "fibergun_sent_bytes_total") > 1000.0);
    assert!(sample(&text, "process_resident_memory_bytes") > 1e6);

    // Prometheus asks for OpenMetrics and gets it.
    let (_, open_type, open_text) = get(
        &format!("{base}/metrics"),
        Some("application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5"),
    );
    assert!(
        open_type.starts_with("application/openmetrics-text"),
        "{open_type}"
    );
    assert!(open_text.trim_end().ends_with("# EOF"));

    promtool_check(&text);

    let (status, _, health) = get(&format!("{base}/health"), None);
    assert_eq!(status, 200, "{health}");
    let health: Json = serde_json::from_str(&health).unwrap();
    assert_eq!(health["ready"], true);
    assert_eq!(health["live"], true);
}

/// `promtool check metrics` on the text. promtool comes from Debian's `prometheus` package,
/// which `.ci/run` installs; without it the check is skipped, except under CI.
fn promtool_check(text: &str) {
    let Ok(mut child) = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    else {
        assert!(
            std::env::var_os("CI").is_none(),
            "promtool is not installed (apt-get install prometheus)"
        );
        eprintln!("promtool not found: the promtool check is skipped (CI runs it)");
        return;
    };
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
