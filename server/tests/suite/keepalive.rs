//! Dead peers and slow handshakes: the server pings every connection, closes one from which
//! nothing (not even a pong) came for the idle timeout, keeps one that answers, and drops a
//! client that does not finish its HTTP request head in time. Declared by each runtime's package.

use crate::BINARY;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use fibergun_testkit::{temp_data_dir, Peer, Server};
use tungstenite::Message;

/// Reads until the server closes the socket; how long that took, or `None` past `limit`.
fn closed_within(stream: &mut TcpStream, limit: Duration) -> Option<Duration> {
    let start = Instant::now();
    stream
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let mut buf = [0u8; 4096];
    while start.elapsed() < limit {
        match stream.read(&mut buf) {
            Ok(0) => return Some(start.elapsed()),
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => return Some(start.elapsed()),
        }
    }
    None
}

#[test]
fn a_silent_peer_is_closed_and_a_live_one_kept() {
    let data = temp_data_dir();
    let server = Server::start(
        BINARY,
        data.path(),
        &["--ping-interval-secs", "1", "--idle-timeout-secs", "2"],
    );
    // A WebSocket client that completes the upgrade, then never reads (so never answers a ping).
    let mut silent = TcpStream::connect(("127.0.0.1", server.port)).unwrap();
    let request = format!(
        "GET /gun HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
        server.port
    );
    silent.write_all(request.as_bytes()).unwrap();
    // A client that keeps reading, on a thread of its own (tungstenite answers pings as it reads).
    let url = server.ws_url();
    let live = std::thread::spawn(move || {
        let mut live = Peer::connect(&url);
        let mut pings = 0;
        let end = Instant::now() + Duration::from_secs(5);
        while Instant::now() < end {
            let _ = live
                .ws
                .get_ref()
                .set_read_timeout(Some(Duration::from_millis(200)));
            match live.ws.read() {
                Ok(Message::Ping(_)) => pings += 1,
                Ok(_) | Err(tungstenite::Error::Io(_)) => {}
                Err(e) => return Err(format!("the live peer was closed: {e}")),
            }
        }
        assert!(live.send_json(&serde_json::json!({"#": "x", "get": {"#": "still-here"}})));
        match live.wait_reply("x", Duration::from_secs(5)) {
            Some(_) => Ok(pings),
            None => Err("the live peer is no longer served".to_string()),
        }
    });
    // The silent one is closed after the idle timeout (2 s), give or take a ping interval.
    let took = closed_within(&mut silent, Duration::from_secs(10))
        .expect("the silent peer was never closed");
    assert!(
        took >= Duration::from_millis(1500),
        "closed too early: {took:?}"
    );
    let pings = live.join().unwrap().unwrap();
    assert!(pings >= 2, "{pings} pings reached the live peer in 5 s");
}

#[test]
fn a_client_that_never_finishes_its_request_is_dropped() {
    let data = temp_data_dir();
    let server = Server::start(BINARY, data.path(), &["--handshake-timeout-secs", "1"]);
    let mut stalled = TcpStream::connect(("127.0.0.1", server.port)).unwrap();
    stalled
        .write_all(b"GET /gun HTTP/1.1\r\nHost: x\r\n")
        .unwrap();
    let took = closed_within(&mut stalled, Duration::from_secs(10))
        .expect("the stalled client was never dropped");
    assert!(took < Duration::from_secs(5), "dropped only after {took:?}");
}
