//! The HTTP front on a blocking socket: the request head is read and parsed, `/gun` is upgraded
//! to a WebSocket, and anything else gets a small JSON answer, as in the smol runtime.

use std::io::{Read, Write};
use std::net::TcpStream;

use tungstenite::handshake::derive_accept_key;
use tungstenite::protocol::Role;

use fibergun_drive::{error_json, server_info_json, Admission};

use crate::socket::{run_socket, SocketContext};

/// Largest request head read before answering 431.
const MAX_HEAD_BYTES: usize = 16 << 10;
/// Most headers parsed.
const MAX_HEADERS: usize = 64;

/// Reads an HTTP/1.1 head (up to the blank line) from `stream`. Returns the bytes read: the head
/// and whatever followed it, and where the head ends. An error when the peer closed, stalled or
/// sent too much.
pub fn read_head(stream: &mut TcpStream) -> Result<(Vec<u8>, usize), &'static str> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 2048];
    loop {
        if let Some(end) = find_blank_line(&buf) {
            return Ok((buf, end));
        }
        if buf.len() >= MAX_HEAD_BYTES {
            return Err("request head too large");
        }
        match stream.read(&mut chunk) {
            Ok(0) => return Err("closed before the request head ended"),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(_) => return Err("request head not received in time"),
        }
    }
}

fn find_blank_line(buf: &[u8]) -> Option<usize> {
    buf.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4)
}

/// Writes a whole JSON response and flushes it.
pub fn respond(stream: &mut TcpStream, status: &str, body: &str) {
    let text = format!(
        "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.write_all(text.as_bytes());
    let _ = stream.flush();
}

/// Serves one accepted TCP connection: one request, or one WebSocket until it closes.
pub fn serve_connection(mut stream: TcpStream, ctx: &SocketContext, admitted: Box<dyn Admission>) {
    let _ = stream.set_nodelay(true);
    let _ = stream.set_read_timeout(Some(ctx.handshake_timeout));
    let (buf, head_len) = match read_head(&mut stream) {
        Ok(head) => head,
        Err(why) => {
            tracing::debug!("http request dropped: {why}");
            if why == "request head too large" {
                respond(
                    &mut stream,
                    "431 Request Header Fields Too Large",
                    &error_json(why),
                );
            }
            return;
        }
    };
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    if !matches!(
        req.parse(&buf[..head_len]),
        Ok(httparse::Status::Complete(_))
    ) {
        respond(&mut stream, "400 Bad Request", &error_json("bad request"));
        return;
    }
    let target = req.path.unwrap_or("/");
    let (path, query) = match target.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (target, None),
    };
    let header = |name: &str| {
        req.headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| h.value)
    };
    match path {
        // GUN JS accepts only `/gun`; a trailing slash costs nothing to allow.
        "/gun" | "/gun/" => {
            let wants_ws = header("upgrade")
                .is_some_and(|v| String::from_utf8_lossy(v).eq_ignore_ascii_case("websocket"));
            let Some(key) = header("sec-websocket-key").filter(|_| wants_ws) else {
                respond(
                    &mut stream,
                    "426 Upgrade Required",
                    &error_json("/gun is a WebSocket endpoint"),
                );
                return;
            };
            let text_header = |name: &str| header(name).and_then(|v| std::str::from_utf8(v).ok());
            let principal = match ctx.gate.authenticate(&text_header, query) {
                Ok(principal) => principal,
                Err(refused) => {
                    let status = format!("{} {}", refused.status, refused.reason());
                    respond(&mut stream, &status, &refused.body);
                    return;
                }
            };
            let accept = derive_accept_key(key);
            let answer = format!(
                "HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: Upgrade\r\nsec-websocket-accept: {accept}\r\n\r\n"
            );
            if stream.write_all(answer.as_bytes()).is_err() {
                return;
            }
            let _ = stream.set_read_timeout(None);
            let leftover = buf[head_len..].to_vec();
            run_socket(
                stream,
                leftover,
                Role::Server,
                ctx,
                None,
                principal,
                Some(admitted),
            );
        }
        "/" => respond(&mut stream, "200 OK", &server_info_json()),
        _ => respond(&mut stream, "404 Not Found", &error_json("not found")),
    }
}
