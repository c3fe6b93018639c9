//! The admin console of the `fibergun` binary: in headless Chromium
//! (`testkit/gunjs/browser_console.js`: sign-in refused with a wrong token, the relay at a glance,
//! a GUN JS client's node found, opened and watched live, a ban added and lifted), and its JSON
//! endpoints: 401 without the token, souls paged in lex order within their bounds, 404 for an
//! unknown soul.

use crate::BINARY;

use std::time::Duration;

use fibergun_testkit::gunjs::{ensure_node_deps, expect_success, run_node};
use fibergun_testkit::{now_ms, put_msg, temp_data_dir, Peer, Server};
use serde_json::{json, Value as Json};

const TOKEN: &str = "console-secret-0123456789abcdef";

fn call(server: &Server, path: &str, token: Option<&str>) -> (u16, Json) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(20)))
        .build()
        .into();
    let mut request = agent.get(format!("http://127.0.0.1:{}{path}", server.port));
    if let Some(token) = token {
        request = request.header("Authorization", format!("Bearer {token}"));
    }
    let mut response = request.call().expect("a response");
    let status = response.status().as_u16();
    let text = response.body_mut().read_to_string().unwrap_or_default();
    (status, serde_json::from_str(&text).unwrap_or(Json::Null))
}

#[test]
fn the_console_works_in_a_real_browser() {
    if !super::browser::chromium_present() {
        return;
    }
    ensure_node_deps();
    let data = temp_data_dir();
    let mut server = Server::start(BINARY, data.path(), &["--admin-token", TOKEN]);
    let base = format!("http://127.0.0.1:{}", server.port);
    let run = format!("c{}", std::process::id());
    let out = run_node("browser_console.js", &[&base, TOKEN, &run]);
    expect_success(&out, "the console in a browser");
    server.assert_alive("after the console test");
}

#[test]
fn the_console_s_endpoints_need_the_token_and_are_bounded() {
    let data = temp_data_dir();
    let server = Server::start(BINARY, data.path(), &["--admin-token", TOKEN]);
    let mut peer = Peer::connect(&server.ws_url());
    let state = now_ms();
    for i in 0..250 {
        let soul = format!("page/{i:03}");
        peer.put_ok(
            &put_msg(&format!("w{i}"), &soul, &[("i", json!(i))], state),
            Duration::from_secs(15),
        );
    }
    for path in [
        "/admin",
        "/api/v1/admin/status",
        "/api/v1/admin/souls",
        "/api/v1/admin/nodes/page%2F001",
        "/api/v1/admin/watch/page%2F001",
    ] {
        assert_eq!(call(&server, path, None).0, 401, "{path}");
        assert_eq!(
            call(&server, path, Some("wrong-secret-0123456789abc")).0,
            401,
            "{path}"
        );
    }
    // Souls by prefix, a page at a time, in lex order, each once.
    let mut seen = Vec::new();
    let mut after: Option<String> = None;
    for _ in 0..10 {
        let mut path = "/api/v1/admin/souls?prefix=page%2F&limit=100".to_owned();
        if let Some(a) = &after {
            path.push_str(&format!("&after={}", a.replace('/', "%2F")));
        }
        let (status, page) = call(&server, &path, Some(TOKEN));
        assert_eq!(status, 200, "{page}");
        let souls = page["souls"].as_array().unwrap();
        assert!(souls.len() <= 100);
        seen.extend(souls.iter().map(|s| s["soul"].as_str().unwrap().to_owned()));
        match page["next"].as_str() {
            Some(next) => after = Some(next.to_owned()),
            None => break,
        }
    }
    let expected: Vec<String> = (0..250).map(|i| format!("page/{i:03}")).collect();
    assert_eq!(seen, expected);
    for bad in ["limit=0", "limit=501", "limit=x", "colour=red"] {
        let (status, body) = call(&server, &format!("/api/v1/admin/souls?{bad}"), Some(TOKEN));
        assert_eq!(status, 400, "{bad}: {body}");
        assert!(body["error"].is_string());
    }
    let (status, node) = call(&server, "/api/v1/admin/nodes/page%2F007", Some(TOKEN));
    assert_eq!(status, 200);
    assert_eq!(node["fields"][0]["key"], "i");
    assert_eq!(node["fields"][0]["value"], 7);
    assert!(
        node["fields"][0]["state"]
            .as_f64()
            .is_some_and(|s| s == state),
        "{node}"
    );
    let (status, body) = call(&server, "/api/v1/admin/nodes/no-such-soul", Some(TOKEN));
    assert_eq!(status, 404, "{body}");
    let (status, status_body) = call(&server, "/api/v1/admin/status", Some(TOKEN));
    assert_eq!(status, 200);
    assert!(status_body["connections"]["listed"]
        .as_array()
        .unwrap()
        .iter()
        .any(|c| c["kind"] == "client"
            && c["addr"]
                .as_str()
                .is_some_and(|a| a.starts_with("127.0.0.1:"))));
    assert_eq!(status_body["store"]["nodes"], 250);
}
