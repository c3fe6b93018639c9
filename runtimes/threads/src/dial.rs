//! Dialling configured peers from a thread: a TCP connection and a WebSocket handshake, then the
//! same socket threads as accepted connections. The core decides when to dial and when to retry.

use std::io::Write;
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::time::Duration;

use fibergun::RemoteId;
use fibergun_drive::PeerUrl;
use tungstenite::handshake::client::generate_key;
use tungstenite::handshake::derive_accept_key;
use tungstenite::protocol::Role;

use crate::http::read_head;
use crate::socket::{run_socket, DriverEvent, SocketContext};

/// How long each step of a dial (connect, handshake) may take.
const DIAL_TIMEOUT: Duration = Duration::from_secs(10);

/// Starts a thread that dials `url` for the configured peer `remote` and then runs the
/// connection until it closes. A failure is reported to the driver, which tells the core.
pub fn spawn_dial(remote: RemoteId, url: String, ctx: Arc<SocketContext>) {
    let spawned = std::thread::Builder::new()
        .name(format!("fibergun-dial-{}", remote.0))
        .stack_size(256 << 10)
        .spawn(move || match connect(&url) {
            Ok((stream, leftover)) => {
                tracing::info!(remote = remote.0, "connected to peer {url}");
                run_socket(
                    stream,
                    leftover,
                    Role::Client,
                    &ctx,
                    Some(remote),
                    fibergun::access::Principal::Peer,
                    None,
                );
                tracing::info!(remote = remote.0, "connection to peer {url} closed");
            }
            Err(e) => {
                tracing::warn!(remote = remote.0, "cannot reach peer {url}: {e}");
                let _ = ctx.events.send(DriverEvent::DialFailed { remote });
            }
        });
    if let Err(e) = spawned {
        tracing::error!("cannot start a dial thread: {e}");
    }
}

/// Connects and completes the client handshake. Returns the socket and any bytes read past the
/// handshake (the server may greet at once).
fn connect(url: &str) -> Result<(TcpStream, Vec<u8>), String> {
    let peer = PeerUrl::parse(url)?;
    let addrs = (peer.host.as_str(), peer.port)
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {}: {e}", peer.host))?;
    let mut last = String::from("no address");
    let mut stream = None;
    for addr in addrs {
        match TcpStream::connect_timeout(&addr, DIAL_TIMEOUT) {
            Ok(s) => {
                stream = Some(s);
                break;
            }
            Err(e) => last = format!("{addr}: {e}"),
        }
    }
    let mut stream = stream.ok_or(last)?;
    let _ = stream.set_nodelay(true);
    stream
        .set_read_timeout(Some(DIAL_TIMEOUT))
        .map_err(|e| e.to_string())?;
    let key = generate_key();
    let request = format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n",
        peer.path, peer.authority
    );
    stream
        .write_all(request.as_bytes())
        .map_err(|e| e.to_string())?;
    let (buf, head_len) = read_head(&mut stream).map_err(str::to_owned)?;
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut response = httparse::Response::new(&mut headers);
    if !matches!(
        response.parse(&buf[..head_len]),
        Ok(httparse::Status::Complete(_))
    ) {
        return Err("the handshake answer is not HTTP".into());
    }
    if response.code != Some(101) {
        return Err(format!(
            "the peer answered {} instead of upgrading",
            response.code.unwrap_or(0)
        ));
    }
    let expected = derive_accept_key(key.as_bytes());
    let accepted = response
        .headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case("sec-websocket-accept"))
        .is_some_and(|h| h.value == expected.as_bytes());
    if !accepted {
        return Err("the peer's handshake answer has a wrong accept key".into());
    }
    stream.set_read_timeout(None).map_err(|e| e.to_string())?;
    Ok((stream, buf[head_len..].to_vec()))
}
