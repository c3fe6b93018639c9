//! Limits per client address: open connections and connects per second (over them: HTTP 429 at
//! the upgrade), and frames per second (over it: read later, nothing refused). Declared by each
//! runtime's package.

use crate::BINARY;

use std::time::{Duration, Instant};

use fibergun_testkit::{now_ms, put_msg, temp_data_dir, Peer, Server};
use serde_json::json;

#[test]
fn connections_per_address_are_capped() {
    let data = temp_data_dir();
    let server = Server::start(BINARY, data.path(), &["--max-connections-per-address", "3"]);
    // The start-up check's own connection holds a slot until the server has seen it close; the
    // three are opened again (after closing any that got in) until all three get in together.
    let end = Instant::now() + Duration::from_secs(5);
    let mut open: Vec<Peer> = loop {
        let tries: Vec<_> = (0..3)
            .map(|_| Peer::try_connect(&server.ws_url()))
            .collect();
        if tries.iter().all(Result::is_ok) {
            break tries.into_iter().flatten().collect();
        }
        assert!(
            Instant::now() < end,
            "three connections never got in together"
        );
        drop(tries);
        std::thread::sleep(Duration::from_millis(50));
    };
    let refused = Peer::try_connect(&server.ws_url());
    assert!(refused.is_err(), "a fourth connection was let in");
    assert!(
        refused.err().unwrap().contains("429"),
        "not refused with 429"
    );
    open.pop().unwrap().close();
    // The slot comes back once the server has seen the close.
    let end = Instant::now() + Duration::from_secs(5);
    loop {
        match Peer::try_connect(&server.ws_url()) {
            Ok(_) => break,
            Err(e) if Instant::now() > end => panic!("the freed slot never came back: {e}"),
            Err(_) => std::thread::sleep(Duration::from_millis(50)),
        }
    }
}

#[test]
fn connects_per_second_are_limited() {
    let data = temp_data_dir();
    let server = Server::start(
        BINARY,
        data.path(),
        &["--max-connects-per-sec-per-address", "5"],
    );
    let results: Vec<bool> = (0..20)
        .map(|_| Peer::try_connect(&server.ws_url()).is_ok())
        .collect();
    // A burst of twice the rate: 10, less the connection the start-up check made.
    let admitted = results.iter().filter(|ok| **ok).count();
    assert!(
        (8..=11).contains(&admitted),
        "{admitted} of 20 admitted in a burst"
    );
    assert!(
        !results[15..].iter().any(|ok| *ok),
        "the end of the burst was let in"
    );
}

#[test]
fn frames_over_the_rate_are_slowed_not_refused() {
    let data = temp_data_dir();
    let server = Server::start(
        BINARY,
        data.path(),
        &["--max-frames-per-sec-per-address", "50"],
    );
    let mut peer = Peer::connect(&server.ws_url());
    let start = Instant::now();
    let state = now_ms();
    for i in 0..150 {
        assert!(peer.send_json(&put_msg(
            &format!("p{i}"),
            "rate",
            &[(&format!("k{i}"), json!(i))],
            state
        )));
    }
    for i in 0..150 {
        let reply = peer.expect_reply(&format!("p{i}"), Duration::from_secs(20));
        assert_eq!(reply["ok"], true, "{reply}");
    }
    // A burst of 100, then 50 more at 50 a second.
    let took = start.elapsed();
    assert!(
        took >= Duration::from_millis(800),
        "150 frames at 50/s took only {took:?}"
    );
}
