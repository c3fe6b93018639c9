//! fibergun dials a GUN JS relay served over TLS (`https://…/gun`, as relays on the web are),
//! trusting its certificate through `--peer-ca`; GUN JS clients on each side see each other's
//! writes. Without the certificate trusted, the dial fails with a TLS error and is retried, and a
//! bad `--peer-ca` file stops the start.

use crate::BINARY;

use std::time::{Duration, Instant};

use fibergun_testkit::gunjs::{expect_success, run_node, GunJsRelay};
use fibergun_testkit::{serve_must_fail, temp_data_dir, Server};

const REDIAL: [&str; 4] = ["--reconnect-min-ms", "100", "--reconnect-max-ms", "1000"];

/// A self-signed certificate for 127.0.0.1 and localhost, as PEM files in `dir`.
fn certificate(dir: &std::path::Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let made = rcgen::generate_simple_self_signed(vec!["127.0.0.1".into(), "localhost".into()])
        .expect("a certificate");
    let (cert, key) = (dir.join("relay.pem"), dir.join("relay.key"));
    std::fs::write(&cert, made.cert.pem()).unwrap();
    std::fs::write(&key, made.signing_key.serialize_pem()).unwrap();
    (cert, key)
}

#[test]
fn fibergun_dials_a_tls_gunjs_relay_and_clients_on_each_side_see_each_other() {
    let scratch = temp_data_dir();
    let (cert, key) = certificate(scratch.path());
    let gunjs = GunJsRelay::start_tls(&cert, &key);
    let url = gunjs.gun_url();
    assert!(url.starts_with("https://"), "{url}");

    // Not trusted: the dial fails on the certificate, and is retried.
    let untrusting = temp_data_dir();
    let mut args = REDIAL.to_vec();
    args.extend(["--peer", url.as_str()]);
    let mut server = Server::start(BINARY, untrusting.path(), &args);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !server.log().contains("cannot reach peer") {
        assert!(
            Instant::now() < deadline,
            "no failed dial: {}",
            server.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(server.log().contains("TLS"), "{}", server.log());
    server.assert_alive("after a refused certificate");
    drop(server);

    // Trusted through --peer-ca.
    let data = temp_data_dir();
    let mut args = REDIAL.to_vec();
    let cert_path = cert.to_str().unwrap();
    args.extend(["--peer", url.as_str(), "--peer-ca", cert_path]);
    let mut fibergun = Server::start(BINARY, data.path(), &args);
    // The node clients trust the certificate too.
    std::env::set_var("NODE_EXTRA_CA_CERTS", &cert);
    expect_success(
        &run_node("mesh_two_sides.js", &[&fibergun.gun_url(), &url]),
        "fibergun dials GUN JS over TLS",
    );
    assert!(
        fibergun.log().contains("connected to peer wss://"),
        "{}",
        fibergun.log()
    );
    fibergun.assert_alive("after the TLS mesh");

    // The command line reaches the TLS relay too, trusting the certificate the same way.
    let cli = |args: &[&str]| {
        std::process::Command::new(BINARY)
            .args(args)
            .output()
            .expect("run the command")
    };
    let put = cli(&[
        "put",
        "--peer",
        &url,
        "--peer-ca",
        cert_path,
        "tls/doc",
        r#"{"a":"b"}"#,
    ]);
    assert!(
        put.status.success(),
        "{}",
        String::from_utf8_lossy(&put.stderr)
    );
    let got = cli(&["get", "--peer", &url, "--peer-ca", cert_path, "tls/doc/a"]);
    assert_eq!(String::from_utf8_lossy(&got.stdout).trim(), r#""b""#);
    // Not trusted: no connection, exit 2.
    let refused = cli(&["get", "--peer", &url, "tls/doc/a"]);
    assert_eq!(refused.status.code(), Some(2));

    // A --peer-ca file without a certificate stops the start, saying so.
    let junk = scratch.path().join("junk.pem");
    std::fs::write(&junk, "not a certificate").unwrap();
    let said = serve_must_fail(
        BINARY,
        temp_data_dir().path(),
        &["--peer", url.as_str(), "--peer-ca", junk.to_str().unwrap()],
    );
    assert!(said.contains("no certificate"), "{said}");
}
