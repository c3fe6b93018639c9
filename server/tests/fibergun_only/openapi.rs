//! The REST contract: `/api/v1/openapi.json` serves the document kept in the repository, and
//! Schemathesis fuzzes the running server against it (data routes as an anonymous client, admin
//! routes with the admin token): no 5xx, every status, content type and body as documented,
//! undocumented methods answered 405 with `Allow`. The streams (`subscribe`, `watch`) are left
//! out: they never end. A fixed seed and 100 cases an operation keep it short and repeatable;
//! `FIBERGUN_SCHEMATHESIS_EXAMPLES` asks for more.

use crate::BINARY;

use std::process::Command;
use std::time::Duration;

use fibergun_testkit::schemathesis::st_binary;
use fibergun_testkit::{now_ms, put_msg, repo_root, temp_data_dir, Peer, Server};
use serde_json::json;

const TOKEN: &str = "openapi-secret-0123456789abcdef";

#[test]
fn the_server_keeps_to_its_openapi_document_under_schemathesis() {
    let st = st_binary();
    let data = temp_data_dir();
    let mut server = Server::start(BINARY, data.path(), &["--admin-token", TOKEN]);
    let base = format!("http://127.0.0.1:{}", server.port);
    let mut peer = Peer::connect(&server.ws_url());
    for i in 0..20 {
        let msg = put_msg(
            &format!("w{i}"),
            &format!("people/{i}"),
            &[("name", json!(i))],
            now_ms(),
        );
        peer.put_ok(&msg, Duration::from_secs(15));
    }

    let document = repo_root().join("server/rest/openapi.json");
    let served = ureq::get(&format!("{base}/api/v1/openapi.json"))
        .call()
        .expect("GET /api/v1/openapi.json")
        .body_mut()
        .read_to_string()
        .unwrap();
    assert_eq!(served, std::fs::read_to_string(&document).unwrap());

    let examples = std::env::var("FIBERGUN_SCHEMATHESIS_EXAMPLES").unwrap_or_else(|_| "100".into());
    let admin_header = format!("Authorization: Bearer {TOKEN}");
    for (what, extra) in [
        (
            "data, health, metrics",
            vec!["--exclude-path-regex", "admin|subscribe"],
        ),
        (
            "admin",
            vec![
                "--include-path-regex",
                "admin",
                "--exclude-path-regex",
                "watch",
                "-H",
                &admin_header,
            ],
        ),
    ] {
        // Schemathesis keeps a cache where it runs: a folder of its own, not the repository.
        let scratch = temp_data_dir();
        let output = Command::new(&st)
            .current_dir(scratch.path())
            .arg("run")
            .arg(&document)
            // One worker: Python 3.11's parser is not safe to call from two threads at once, and
            // Hypothesis parses lambdas' sources as it builds strategies.
            .args(["--url", &base, "--seed", "17", "--max-examples", &examples, "--workers", "1"])
            .args([
                "--checks",
                "not_a_server_error,response_schema_conformance,status_code_conformance,content_type_conformance,unsupported_method,allow_header_conformance",
            ])
            .args(&extra)
            .env("SCHEMATHESIS_TELEMETRY", "false")
            .output()
            .expect("running st");
        let text = String::from_utf8_lossy(&output.stdout);
        let summary: Vec<&str> = text.lines().filter(|l| l.contains("generated")).collect();
        println!("schemathesis, {what}: {}", summary.join(" "));
        assert!(
            output.status.success(),
            "Schemathesis found problems ({what}):\n{text}\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    server.assert_alive("after Schemathesis");
}
