//! The admin API of the `fibergun` binary (`--admin-token`): bans and takedowns on a running
//! relay, applied to WebSocket clients, REST and relay links alike, kept across a kill -9, listed,
//! lifted and restored with nothing lost; a purge; 401 without the token; refusals in /metrics.

use crate::BINARY;

use std::time::{Duration, Instant};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use fibergun::sea::{KeyPair, SignedValue};
use fibergun_testkit::{now_ms, put_msg, reply_node, serve_must_fail, temp_data_dir, Peer, Server};
use serde_json::{json, Value as Json};
use ureq::http::StatusCode;

const TOKEN: &str = "admin-secret-0123456789abcdef";
const WAIT: Duration = Duration::from_secs(15);

fn pair(seed: u8) -> KeyPair {
    KeyPair::from_private(&URL_SAFE_NO_PAD.encode([seed; 32])).unwrap()
}

fn space(owner: &KeyPair) -> String {
    format!("~{}", owner.public().as_str())
}

/// `owner`'s put of `key` = `value` into its own space.
fn own_put(id: &str, owner: &KeyPair, key: &str, value: Json) -> Json {
    let soul = space(owner);
    let state = now_ms();
    let signed = SignedValue::sign(owner, &soul, key, &value, state);
    put_msg(id, &soul, &[(key, json!(signed))], state)
}

/// An HTTP client of one server, presenting `token` as a bearer when given.
struct Http {
    base: String,
    agent: ureq::Agent,
}

impl Http {
    fn new(server: &Server) -> Http {
        Http {
            base: format!("http://127.0.0.1:{}", server.port),
            agent: ureq::Agent::config_builder()
                .http_status_as_error(false)
                .timeout_global(Some(WAIT))
                .build()
                .into(),
        }
    }

    fn call(&self, method: &str, path: &str, token: Option<&str>) -> (StatusCode, Json) {
        let mut request = ureq::http::Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base));
        if let Some(token) = token {
            request = request.header("Authorization", format!("Bearer {token}"));
        }
        let mut response = self
            .agent
            .run(request.body(()).expect("a request"))
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        let status = response.status();
        let text = response.body_mut().read_to_string().expect("a body");
        let body = serde_json::from_str(&text).unwrap_or(Json::Null);
        if !status.is_success() {
            assert!(
                body["error"].is_string(),
                "{status} without a JSON error: {text}"
            );
        }
        (status, body)
    }

    /// An admin call that must succeed.
    fn admin(&self, method: &str, path: &str) -> Json {
        let (status, body) = self.call(method, &format!("/api/v1/admin/{path}"), Some(TOKEN));
        assert_eq!(status, StatusCode::OK, "{method} {path}: {body}");
        body
    }
}

/// A GET from a new connection (a fresh client), with an id of its own.
fn fresh_get(server: &Server, soul: &str) -> Json {
    static CALLS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let mut peer = Peer::connect(&server.ws_url());
    peer.get(&format!("fresh{n}"), soul, None, WAIT)
}

fn served(server: &Server, soul: &str) -> Option<Json> {
    reply_node(&fresh_get(server, soul), soul).cloned()
}

fn refused_with(reply: &Json, text: &str) {
    let err = reply["err"]
        .as_str()
        .unwrap_or_else(|| panic!("not refused: {reply}"));
    assert!(err.contains(text), "{err}");
}

fn start(data: &std::path::Path, extra: &[&str]) -> Server {
    let mut args = vec!["--admin-token", TOKEN];
    args.extend_from_slice(extra);
    Server::start(BINARY, data, &args)
}

#[test]
fn a_ban_refuses_a_key_s_writes_and_hides_its_space_until_lifted_across_restarts() {
    let data = temp_data_dir();
    let mut server = start(data.path(), &[]);
    let http = Http::new(&server);
    let (alice, bob) = (pair(61), pair(62));
    let mut client = Peer::connect(&server.ws_url());
    client.put_ok(&own_put("a1", &alice, "name", json!("Alice")), WAIT);
    client.put_ok(&own_put("b1", &bob, "name", json!("Bob")), WAIT);

    let key = alice.public().as_str().to_owned();
    assert_eq!(http.admin("PUT", &format!("bans/{key}"))["banned"], key);
    assert_eq!(http.admin("GET", "bans"), json!({ "bans": [key] }));
    // Her writes are refused, her space is not served (WebSocket and REST); bob goes on.
    assert!(client.send_json(&own_put("a2", &alice, "city", json!("Lisbon"))));
    refused_with(&client.expect_reply("a2", WAIT), "banned");
    refused_with(&fresh_get(&server, &space(&alice)), "banned");
    let (status, body) = http.call("GET", &format!("/api/v1/data/{}", space(&alice)), None);
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    client.put_ok(&own_put("b2", &bob, "city", json!("Porto")), WAIT);

    // A kill -9 and a start again: the ban holds.
    server.restart();
    refused_with(&fresh_get(&server, &space(&alice)), "banned");
    let mut client = Peer::connect(&server.ws_url());
    assert!(client.send_json(&own_put("a3", &alice, "city", json!("Lisbon"))));
    refused_with(&client.expect_reply("a3", WAIT), "banned");

    // Lifted: served again, nothing lost; she writes again.
    assert_eq!(http.admin("DELETE", &format!("bans/{key}"))["lifted"], key);
    assert_eq!(http.admin("GET", "bans"), json!({ "bans": [] }));
    let node = served(&server, &space(&alice)).expect("alice's space served again");
    assert!(
        node["name"].as_str().is_some_and(|v| v.contains("Alice")),
        "{node}"
    );
    assert!(node.get("city").is_none(), "{node}");
    client.put_ok(&own_put("a4", &alice, "city", json!("Lisbon")), WAIT);

    let text = ureq::get(&format!("{}/metrics", http.base))
        .call()
        .expect("GET /metrics")
        .body_mut()
        .read_to_string()
        .expect("the metrics text");
    assert!(
        text.lines().any(
            |l| l.starts_with("fibergun_refusals_total{rule=\"banned\"} ") && !l.ends_with(" 0")
        ),
        "{text}"
    );
    server.assert_alive("after the bans");
}

#[test]
fn a_takedown_hides_a_soul_from_clients_rest_and_relay_links_until_restored_and_a_purge_erases_it()
{
    let data = temp_data_dir();
    let mut server = start(data.path(), &[]);
    let http = Http::new(&server);
    let mut client = Peer::connect(&server.ws_url());
    let state = now_ms();
    client.put_ok(
        &put_msg("p1", "post-1", &[("text", json!("fine"))], state),
        WAIT,
    );
    client.put_ok(
        &put_msg("p2", "post-2", &[("text", json!("awful"))], state),
        WAIT,
    );

    assert_eq!(
        http.admin("PUT", "takedowns/post-2")["taken_down"],
        "post-2"
    );
    assert_eq!(
        http.admin("GET", "takedowns"),
        json!({ "takedowns": ["post-2"] })
    );
    refused_with(&fresh_get(&server, "post-2"), "taken down");
    assert!(served(&server, "post-1").is_some());
    let (status, body) = http.call("GET", "/api/v1/data/post-2", None);
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert!(client.send_json(&put_msg(
        "p3",
        "post-2",
        &[("text", json!("again"))],
        now_ms()
    )));
    refused_with(&client.expect_reply("p3", WAIT), "taken down");
    // Clients cannot read or write the lists themselves.
    refused_with(
        &fresh_get(&server, fibergun::moderation::TAKEDOWNS),
        "reserved",
    );

    // A relay dialling this one gets post-1 and not post-2, by sync or by asking.
    let mesh_data = temp_data_dir();
    let redial = ["--reconnect-min-ms", "100", "--reconnect-max-ms", "500"];
    let mut mesh_args = redial.to_vec();
    let url = server.ws_url();
    mesh_args.extend(["--peer", url.as_str()]);
    let mesh = Server::start(BINARY, mesh_data.path(), &mesh_args);
    let end = Instant::now() + WAIT;
    while served(&mesh, "post-1").is_none() {
        assert!(
            Instant::now() < end,
            "post-1 never reached the relay dialling in"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let reply = fresh_get(&mesh, "post-2");
    assert!(reply_node(&reply, "post-2").is_none(), "relayed: {reply}");

    // A kill -9 and a start again: the takedown holds; the data is kept.
    server.restart();
    refused_with(&fresh_get(&server, "post-2"), "taken down");
    // The purge needs a takedown; it erases the content; restored, the soul is empty.
    let (status, body) = http.call("POST", "/api/v1/admin/purge/post-1", Some(TOKEN));
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(
        http.admin("DELETE", "takedowns/post-2")["restored"],
        "post-2"
    );
    let node = served(&server, "post-2").expect("post-2 served again");
    assert_eq!(node["text"], "awful", "{node}");
    // The relay dialling in (redialled since the restart) gets it now.
    let end = Instant::now() + WAIT;
    while served(&mesh, "post-2").is_none_or(|n| n["text"] != "awful") {
        assert!(
            Instant::now() < end,
            "post-2 never reached the relay dialling in once restored"
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    http.admin("PUT", "takedowns/post-2");
    assert_eq!(http.admin("POST", "purge/post-2")["purged"], "post-2");
    http.admin("DELETE", "takedowns/post-2");
    let node = served(&server, "post-2").expect("post-2 served, purged");
    assert_eq!(node["text"], Json::Null, "{node}");
    server.assert_alive("after the takedowns");
}

#[test]
fn the_admin_api_answers_401_without_its_token_and_404_when_off() {
    let data = temp_data_dir();
    let server = start(data.path(), &["--token", "app=client-secret-0123456789"]);
    let http = Http::new(&server);
    for token in [
        None,
        Some("wrong-secret-0123456789abcdef"),
        Some("client-secret-0123456789"),
    ] {
        for (method, path) in [
            ("GET", "/api/v1/admin/bans"),
            ("PUT", "/api/v1/admin/bans/somekey"),
            ("DELETE", "/api/v1/admin/takedowns/x"),
            ("POST", "/api/v1/admin/purge/x"),
        ] {
            let (status, body) = http.call(method, path, token);
            assert_eq!(
                status,
                StatusCode::UNAUTHORIZED,
                "{method} {path} with {token:?}: {body}"
            );
        }
    }
    assert_eq!(http.admin("GET", "bans"), json!({ "bans": [] }));
    let (status, _) = http.call("PATCH", "/api/v1/admin/bans", Some(TOKEN));
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);

    let off_data = temp_data_dir();
    let off = Server::start(BINARY, off_data.path(), &[]);
    let (status, _) = Http::new(&off).call("GET", "/api/v1/admin/bans", Some(TOKEN));
    assert_eq!(status, StatusCode::NOT_FOUND);
    let message = serve_must_fail(BINARY, off_data.path(), &["--admin-token", "short"]);
    assert!(message.contains("admin"), "{message}");
}

/// Relays on one PostgreSQL database share the lists: a ban through one holds on the other, at
/// once (the change feed) and after a restart; a takedown through the other holds on the first.
#[test]
fn relays_on_one_database_share_their_bans_and_takedowns() {
    let pg = fibergun_testkit::postgres::PgServer::start();
    let url = pg.url();
    let flags = ["--store", "postgres", "--postgres-url", url.as_str()];
    let (a_data, b_data) = (temp_data_dir(), temp_data_dir());
    let a = start(a_data.path(), &flags);
    let mut b = start(b_data.path(), &flags);
    let alice = pair(63);
    let key = alice.public().as_str().to_owned();
    let mut client = Peer::connect(&b.ws_url());
    client.put_ok(&own_put("a1", &alice, "name", json!("Alice")), WAIT);
    client.put_ok(
        &put_msg("n1", "note-1", &[("text", json!("hi"))], now_ms()),
        WAIT,
    );

    Http::new(&a).admin("PUT", &format!("bans/{key}"));
    Http::new(&b).admin("PUT", "takedowns/note-1");
    let end = Instant::now() + WAIT;
    loop {
        let space_hidden = fresh_get(&b, &space(&alice))["err"].is_string();
        let note_hidden = fresh_get(&a, "note-1")["err"].is_string();
        if space_hidden && note_hidden {
            break;
        }
        assert!(
            Instant::now() < end,
            "the lists never reached the other relay"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(Http::new(&b).admin("GET", "bans"), json!({ "bans": [key] }));
    b.restart();
    refused_with(&fresh_get(&b, &space(&alice)), "banned");
    let mut client = Peer::connect(&b.ws_url());
    assert!(client.send_json(&own_put("a2", &alice, "city", json!("Lisbon"))));
    refused_with(&client.expect_reply("a2", WAIT), "banned");
}
