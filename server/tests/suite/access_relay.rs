//! Access control on the server: `--read`, `--write` and tokens, over WebSockets. A token comes
//! with the upgrade (here `?token=`, as a GUN JS peer URL can carry it); an unknown token is
//! refused at the upgrade. Declared by each runtime's package.

use crate::BINARY;

use std::time::Duration;

use fibergun_testkit::{now_ms, put_msg, temp_data_dir, Peer, Server};
use serde_json::json;

const SECRET: &str = "s3cret-token-0123456789";
const WAIT: Duration = Duration::from_secs(10);

fn token_flag() -> String {
    format!("ci={SECRET}")
}

#[test]
fn writes_need_a_token_and_reads_do_not() {
    let data = temp_data_dir();
    let flag = token_flag();
    let server = Server::start(BINARY, data.path(), &["--write", "token", "--token", &flag]);
    let mut anonymous = Peer::connect(&server.ws_url());
    let state = now_ms();
    assert!(anonymous.send_json(&put_msg("a1", "doc", &[("k", json!(1))], state)));
    let refused = anonymous.expect_reply("a1", WAIT);
    assert_eq!(
        refused["err"], "Access denied: this connection may not write 'doc'.",
        "{refused}"
    );
    let mut holder = Peer::connect(&format!("{}?token={SECRET}", server.ws_url()));
    holder.put_ok(&put_msg("h1", "doc", &[("k", json!(2))], state), WAIT);
    let read = anonymous.get("g1", "doc", None, WAIT);
    assert_eq!(read["put"]["doc"]["k"], 2, "{read}");
    // An unknown token is refused at the upgrade.
    let wrong = Peer::try_connect(&format!(
        "{}?token=not-a-known-token-at-all",
        server.ws_url()
    ));
    assert!(wrong.is_err(), "an unknown token was let in");
}

#[test]
fn a_read_only_relay_refuses_every_client_write() {
    let data = temp_data_dir();
    let flag = token_flag();
    let server = Server::start(
        BINARY,
        data.path(),
        &["--write", "nobody", "--read", "token", "--token", &flag],
    );
    let mut holder = Peer::connect(&format!("{}?token={SECRET}", server.ws_url()));
    assert!(holder.send_json(&put_msg("w", "doc", &[("k", json!(1))], now_ms())));
    assert!(holder.expect_reply("w", WAIT)["err"]
        .as_str()
        .is_some_and(|e| e.starts_with("Access denied")));
    // Reading needs the token: anonymous GETs are refused, the holder's are answered.
    let mut anonymous = Peer::connect(&server.ws_url());
    let reply = anonymous.get("g", "doc", None, WAIT);
    assert!(
        reply["err"]
            .as_str()
            .is_some_and(|e| e.starts_with("Access denied")),
        "{reply}"
    );
    let reply = holder.get("g2", "doc", None, WAIT);
    assert!(reply.get("err").is_none(), "{reply}");
}

#[test]
fn bad_access_settings_stop_the_server_at_start() {
    let data = temp_data_dir();
    let err = fibergun_testkit::serve_must_fail(BINARY, data.path(), &["--write", "token"]);
    assert!(err.contains("no token is configured"), "{err}");
}
