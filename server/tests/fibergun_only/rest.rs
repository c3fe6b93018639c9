//! The REST API of the `fibergun` binary: `/api/v1/data/*path` (GET with depth, PUT, POST,
//! DELETE), `/api/v1/subscribe/*path` as Server-Sent Events and as a WebSocket, JSON errors with
//! fitting statuses, the body limit, CORS; and REST and GUN JS seeing each other's writes.

use crate::BINARY;

use std::io::{BufRead, BufReader};
use std::sync::mpsc;
use std::time::Duration;

use fibergun_testkit::{temp_data_dir, Server};
use serde_json::{json, Value as Json};
use ureq::http::{Request, StatusCode};

const ORIGIN: &str = "http://app.test";

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(20)))
        .build()
        .into()
}

struct Api {
    base: String,
    agent: ureq::Agent,
}

/// A status and a JSON body (`Null` when empty).
type Answer = (StatusCode, Json);

impl Api {
    fn new(server: &Server) -> Api {
        Api {
            base: format!("http://127.0.0.1:{}", server.port),
            agent: agent(),
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn answer(mut r: ureq::http::Response<ureq::Body>) -> Answer {
        let status = r.status();
        let text = r.body_mut().read_to_string().expect("a body");
        let body = if text.is_empty() {
            Json::Null
        } else {
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
        };
        if !status.is_success() {
            assert!(
                body["error"].is_string(),
                "an error without a JSON error body: {status} {text}"
            );
        }
        (status, body)
    }

    fn get(&self, path: &str) -> Answer {
        Api::answer(self.agent.get(self.url(path)).call().expect("GET"))
    }

    fn put(&self, path: &str, body: &str) -> Answer {
        let r = self
            .agent
            .put(self.url(path))
            .content_type("application/json");
        Api::answer(r.send(body).expect("PUT"))
    }

    fn post(&self, path: &str, body: &str) -> Answer {
        let r = self
            .agent
            .post(self.url(path))
            .content_type("application/json");
        Api::answer(r.send(body).expect("POST"))
    }

    fn delete(&self, path: &str) -> Answer {
        Api::answer(self.agent.delete(self.url(path)).call().expect("DELETE"))
    }
}

fn start() -> (tempfile::TempDir, Server) {
    let data = temp_data_dir();
    let server = Server::start(
        BINARY,
        data.path(),
        &["--cors-origin", ORIGIN, "--max-body-bytes", "4096"],
    );
    (data, server)
}

#[test]
fn data_routes_read_write_and_delete_the_graph() {
    let (_data, mut server) = start();
    let api = Api::new(&server);
    let (status, body) = api.put(
        "/api/v1/data/people/ann",
        r#"{"name":"Ann","age":31,"address":{"city":"Oslo"}}"#,
    );
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body, json!({"ok": true, "soul": "people/ann"}));

    let (status, node) = api.get("/api/v1/data/people/ann");
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        node,
        json!({"name": "Ann", "age": 31, "address": {"#": "people/ann/address"}})
    );
    let (_, tree) = api.get("/api/v1/data/people?depth=2");
    assert_eq!(tree["ann"]["address"], json!({"city": "Oslo"}));
    assert_eq!(
        api.get("/api/v1/data/people/ann/address/city").1,
        json!("Oslo")
    );
    // A key with a space, percent-encoded.
    api.put("/api/v1/data/people/ann/full%20name", r#""Ann Smith""#);
    assert_eq!(
        api.get("/api/v1/data/people/ann/full%20name").1,
        json!("Ann Smith")
    );

    // Sets: POST adds an item under a new key.
    let (status, added) = api.post("/api/v1/data/todos/ann", r#"{"text":"milk","done":false}"#);
    assert_eq!(status, StatusCode::CREATED, "{added}");
    let key = added["key"]
        .as_str()
        .expect("the new item's key")
        .to_owned();
    let (_, items) = api.get("/api/v1/data/todos/ann?depth=1");
    assert_eq!(items[&key], json!({"text": "milk", "done": false}));
    api.put(&format!("/api/v1/data/todos/ann/{key}"), r#"{"done":true}"#);
    assert_eq!(
        api.get(&format!("/api/v1/data/todos/ann/{key}/done")).1,
        json!(true)
    );

    // DELETE writes tombstones: a value; an item of a set (unlinked, as GUN deletes); and, for
    // a soul alone, every field of the node.
    assert_eq!(api.delete("/api/v1/data/people/ann/age").0, StatusCode::OK);
    assert_eq!(api.get("/api/v1/data/people/ann/age").1, Json::Null);
    assert_eq!(
        api.delete(&format!("/api/v1/data/todos/ann/{key}")).0,
        StatusCode::OK
    );
    assert_eq!(
        api.get(&format!("/api/v1/data/todos/ann/{key}")).1,
        Json::Null
    );
    let (_, items) = api.get("/api/v1/data/todos/ann?depth=1");
    assert_eq!(items[&key], Json::Null, "the item is unlinked from the set");
    assert_eq!(api.delete("/api/v1/data/todos").0, StatusCode::OK);
    assert_eq!(api.get("/api/v1/data/todos/ann").1, Json::Null);

    // Missing things are 404 with a JSON error.
    assert_eq!(api.get("/api/v1/data/nobody").0, StatusCode::NOT_FOUND);
    assert_eq!(api.get("/api/v1/data/people/bob").0, StatusCode::NOT_FOUND);
    assert_eq!(api.delete("/api/v1/data/nobody").0, StatusCode::NOT_FOUND);
    // Survives a restart: every PUT was answered after its commit.
    server.restart();
    let api = Api::new(&server);
    assert_eq!(api.get("/api/v1/data/people/ann/name").1, json!("Ann"));
}

#[test]
fn bad_requests_get_clear_json_errors() {
    let (_data, mut server) = start();
    let api = Api::new(&server);
    let cases: Vec<(&str, Answer, StatusCode)> = vec![
        (
            "invalid JSON",
            api.put("/api/v1/data/x", "{nope"),
            StatusCode::BAD_REQUEST,
        ),
        (
            "empty body",
            api.put("/api/v1/data/x", ""),
            StatusCode::BAD_REQUEST,
        ),
        (
            "an array",
            api.put("/api/v1/data/x", "[1,2]"),
            StatusCode::BAD_REQUEST,
        ),
        (
            "a nested array",
            api.put("/api/v1/data/x", r#"{"a":{"b":[1]}}"#),
            StatusCode::BAD_REQUEST,
        ),
        (
            "a value without a key",
            api.put("/api/v1/data/x", "5"),
            StatusCode::BAD_REQUEST,
        ),
        (
            "over the body limit",
            api.put(
                "/api/v1/data/x",
                &format!(r#"{{"a":"{}"}}"#, "x".repeat(5000)),
            ),
            StatusCode::PAYLOAD_TOO_LARGE,
        ),
        (
            "unsigned in user space",
            api.put("/api/v1/data/~abc.def/name", r#""mallory""#),
            StatusCode::FORBIDDEN,
        ),
        (
            "a depth too deep",
            api.get("/api/v1/data/x?depth=99"),
            StatusCode::BAD_REQUEST,
        ),
        ("no soul", api.get("/api/v1/data/"), StatusCode::BAD_REQUEST),
        (
            "an unknown route",
            api.get("/api/v2/nothing"),
            StatusCode::NOT_FOUND,
        ),
        (
            "subscribe without a stream",
            api.get("/api/v1/subscribe/x"),
            StatusCode::BAD_REQUEST,
        ),
    ];
    for (what, (status, body), expected) in cases {
        assert_eq!(status, expected, "{what}: {body}");
        assert!(
            body["error"].as_str().is_some_and(|e| !e.is_empty()),
            "{what}: {body}"
        );
    }
    let patch = api
        .agent
        .run(
            Request::builder()
                .method("PATCH")
                .uri(api.url("/api/v1/data/x"))
                .body(())
                .unwrap(),
        )
        .unwrap();
    assert_eq!(patch.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(
        api.get("/api/v1/data/x").0,
        StatusCode::NOT_FOUND,
        "nothing was written"
    );
    server.assert_alive("after bad requests");
}

#[test]
fn cors_answers_only_the_configured_origin() {
    let (_data, server) = start();
    let api = Api::new(&server);
    let preflight = |origin: &str| {
        api.agent
            .run(
                Request::builder()
                    .method("OPTIONS")
                    .uri(api.url("/api/v1/data/x"))
                    .header("Origin", origin)
                    .header("Access-Control-Request-Method", "PUT")
                    .body(())
                    .unwrap(),
            )
            .unwrap()
    };
    let allowed = preflight(ORIGIN);
    assert_eq!(allowed.status(), StatusCode::NO_CONTENT);
    assert_eq!(allowed.headers()["access-control-allow-origin"], ORIGIN);
    let refused = preflight("http://evil.test");
    assert!(refused
        .headers()
        .get("access-control-allow-origin")
        .is_none());
    let get = api
        .agent
        .get(api.url("/api/v1/data/x"))
        .header("Origin", ORIGIN)
        .call()
        .unwrap();
    assert_eq!(get.headers()["access-control-allow-origin"], ORIGIN);
}

#[test]
fn subscriptions_stream_changes_as_events_and_over_a_websocket() {
    let (_data, server) = start();
    let api = Api::new(&server);
    api.put("/api/v1/data/chat/room1", r#"{"topic":"rust"}"#);

    // Server-Sent Events, read on a thread of their own.
    let response = agent()
        .get(api.url("/api/v1/subscribe/chat/room1"))
        .header("Accept", "text/event-stream")
        .call()
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let (events_tx, events) = mpsc::channel::<Json>();
    std::thread::spawn(move || {
        let reader = BufReader::new(response.into_body().into_reader());
        for line in reader.lines() {
            let Ok(line) = line else { return };
            if let Some(data) = line.strip_prefix("data: ") {
                let _ = events_tx.send(serde_json::from_str(data).unwrap());
            }
        }
    });
    let first = events
        .recv_timeout(Duration::from_secs(10))
        .expect("the current node");
    assert_eq!(first["node"], json!({"topic": "rust"}));

    // A WebSocket subscription to the same node.
    let ws_url = format!("ws://127.0.0.1:{}/api/v1/subscribe/chat/room1", server.port);
    let (mut ws, _) = tungstenite::connect(ws_url).expect("websocket subscribe");
    let initial = ws.read().expect("the current node");
    let initial: Json = serde_json::from_str(initial.to_text().unwrap()).unwrap();
    assert_eq!(initial["node"]["topic"], "rust");

    api.put("/api/v1/data/chat/room1", r#"{"m1":"hello"}"#);
    let change = events
        .recv_timeout(Duration::from_secs(10))
        .expect("a change event");
    assert_eq!(change["node"]["m1"], "hello");
    assert_eq!(change["changed"], json!(["m1"]));
    let pushed = ws.read().expect("a change message");
    let pushed: Json = serde_json::from_str(pushed.to_text().unwrap()).unwrap();
    assert_eq!(pushed["node"]["m1"], "hello");
}

#[test]
fn rest_and_gun_js_see_each_others_writes() {
    fibergun_testkit::gunjs::ensure_node_deps();
    let (_data, server) = start();
    let api = Api::new(&server);
    api.put(
        "/api/v1/data/shared/doc",
        r#"{"from":"rest","nested":{"deep":1}}"#,
    );
    let run = fibergun_testkit::gunjs::run_node("rest_peer.js", &[&server.gun_url()]);
    fibergun_testkit::gunjs::expect_success(&run, "node rest_peer.js");
    // GUN JS wrote `shared/doc.js = "hello from js"` and a nested object.
    let (_, doc) = api.get("/api/v1/data/shared/doc?depth=1");
    assert_eq!(doc["js"], json!("hello from js"));
    assert_eq!(doc["jsnested"], json!({"n": 2}));
}

#[test]
fn rest_follows_the_access_policy() {
    let data = temp_data_dir();
    let secret = "rest-token-0123456789";
    let flag = format!("ci={secret}");
    let server = Server::start(BINARY, data.path(), &["--write", "token", "--token", &flag]);
    let api = Api::new(&server);
    let (status, body) = api.put("/api/v1/data/doc", r#"{"k":1}"#);
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert!(body["error"].as_str().unwrap().contains("Access denied"));
    let with = |token: &str| {
        let r = api
            .agent
            .put(api.url("/api/v1/data/doc"))
            .header("Authorization", &format!("Bearer {token}"))
            .content_type("application/json")
            .send(r#"{"k":2}"#)
            .unwrap();
        Api::answer(r)
    };
    assert_eq!(with(secret).0, StatusCode::OK);
    assert_eq!(with("unknown-token-0123456789").0, StatusCode::UNAUTHORIZED);
    // Reading is open to everyone.
    assert_eq!(api.get("/api/v1/data/doc/k").1, json!(2));
}
