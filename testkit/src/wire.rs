//! A raw GUN-wire client ([`Peer`], a synchronous `tungstenite` WebSocket that sends text frames
//! and collects every message the server sends, a frame holding one message or an array of
//! them), message builders ([`put_msg`], [`get_msg`], …) and predicates ([`is_frame_err`],
//! [`is_msg_err`], …). Every connection goes to 127.0.0.1 only.

use std::net::{Shutdown, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tungstenite::protocol::WebSocket;
use tungstenite::Message;

use crate::process::Server;

/// A raw WebSocket peer. Every message received is appended to `inbox` (array frames are split into their
/// elements). A text frame that is not JSON is recorded as `{"__unparsed": text}`, a binary frame as
/// `{"__binary": len}` -- the server should never send either.
pub struct Peer {
    pub ws: WebSocket<TcpStream>,
    pub inbox: Vec<Value>,
    /// Every text frame received, verbatim.
    pub frames: Vec<String>,
    /// Set once the connection is closed or broken (with the reason).
    pub closed: Option<String>,
}

impl Peer {
    /// Connect to `ws://127.0.0.1:PORT/gun`. Panics if the handshake fails.
    pub fn connect(url: &str) -> Peer {
        Self::try_connect(url).unwrap_or_else(|e| panic!("websocket connect to {url}: {e}"))
    }

    pub fn try_connect(url: &str) -> Result<Peer, String> {
        let rest = url
            .strip_prefix("ws://")
            .ok_or_else(|| format!("not a ws:// url: {url}"))?;
        let hostport = rest.split('/').next().unwrap_or(rest);
        let addr: SocketAddr = hostport
            .parse()
            .map_err(|e| format!("bad address {hostport}: {e}"))?;
        assert!(addr.ip().is_loopback(), "tests only talk to loopback");
        let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
            .map_err(|e| format!("tcp connect {addr}: {e}"))?;
        stream.set_nodelay(true).ok();
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .map_err(|e| e.to_string())?;
        let (ws, _resp) =
            tungstenite::client(url, stream).map_err(|e| format!("handshake: {e}"))?;
        Ok(Peer {
            ws,
            inbox: Vec::new(),
            frames: Vec::new(),
            closed: None,
        })
    }

    pub fn is_open(&self) -> bool {
        self.closed.is_none()
    }

    /// The underlying TCP stream (e.g. to clone it for a writer thread).
    pub fn stream(&self) -> &TcpStream {
        self.ws.get_ref()
    }

    /// Send a text frame. Returns false (and marks the peer closed) if the connection is gone.
    pub fn send_text(&mut self, text: impl Into<String>) -> bool {
        let text: String = text.into();
        self.send_msg(Message::text(text))
    }

    pub fn send_json(&mut self, v: &Value) -> bool {
        self.send_text(v.to_string())
    }

    pub fn send_binary(&mut self, bytes: Vec<u8>) -> bool {
        self.send_msg(Message::binary(bytes))
    }

    fn send_msg(&mut self, m: Message) -> bool {
        if self.closed.is_some() {
            return false;
        }
        match self.ws.send(m) {
            Ok(()) => true,
            Err(e) => {
                self.closed = Some(format!("send failed: {e}"));
                false
            }
        }
    }

    /// Read at most one frame, waiting up to `timeout`. Returns false on timeout or when closed.
    pub fn pump(&mut self, timeout: Duration) -> bool {
        if self.closed.is_some() {
            return false;
        }
        let t = timeout.max(Duration::from_millis(1));
        let _ = self.ws.get_ref().set_read_timeout(Some(t));
        match self.ws.read() {
            Ok(Message::Text(t)) => {
                let s = t.as_str().to_owned();
                match serde_json::from_str::<Value>(&s) {
                    Ok(Value::Array(items)) => self.inbox.extend(items),
                    Ok(v) => self.inbox.push(v),
                    Err(_) => self.inbox.push(json!({ "__unparsed": s })),
                }
                self.frames.push(s);
                true
            }
            Ok(Message::Binary(b)) => {
                self.inbox.push(json!({ "__binary": b.len() }));
                true
            }
            Ok(Message::Close(c)) => {
                self.closed = Some(format!("closed by server: {c:?}"));
                false
            }
            Ok(_) => true, // ping/pong: tungstenite answers pings itself
            Err(tungstenite::Error::Io(e))
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                false
            }
            Err(e) => {
                self.closed = Some(format!("read failed: {e}"));
                false
            }
        }
    }

    /// Read everything that arrives during `dur`.
    pub fn drain(&mut self, dur: Duration) {
        let end = Instant::now() + dur;
        while self.closed.is_none() {
            let now = Instant::now();
            if now >= end {
                break;
            }
            self.pump(end - now);
        }
    }

    /// The first message in the inbox (already received, or arriving within `timeout`) matching `pred`.
    pub fn wait_for(&mut self, timeout: Duration, pred: impl Fn(&Value) -> bool) -> Option<Value> {
        let end = Instant::now() + timeout;
        let mut seen = 0;
        loop {
            if let Some(m) = self.inbox[seen..].iter().find(|m| pred(m)) {
                return Some(m.clone());
            }
            seen = self.inbox.len();
            let now = Instant::now();
            if now >= end || self.closed.is_some() {
                return None;
            }
            self.pump(end - now);
        }
    }

    /// The first reply whose `@` is `id`.
    pub fn wait_reply(&mut self, id: &str, timeout: Duration) -> Option<Value> {
        self.wait_for(timeout, |m| replies_to(m, id))
    }

    /// Like [`Peer::wait_reply`] but panics with the inbox when nothing comes.
    pub fn expect_reply(&mut self, id: &str, timeout: Duration) -> Value {
        match self.wait_reply(id, timeout) {
            Some(v) => v,
            None => panic!(
                "no reply to {id:?} within {timeout:?} (connection: {}); received so far: {}",
                self.closed.as_deref().unwrap_or("open"),
                self.inbox_summary()
            ),
        }
    }

    /// Send a put and wait for its reply; panics unless it is a success ack.
    pub fn put_ok(&mut self, msg: &Value, timeout: Duration) -> Value {
        let id = msg_id(msg).expect("put has an id").to_owned();
        assert!(self.send_json(msg), "connection closed: {:?}", self.closed);
        let r = self.expect_reply(&id, timeout);
        assert!(is_ok_ack(&r), "put {id} was not acked ok: {r}");
        r
    }

    /// GET a soul (optionally one key) and return the reply.
    pub fn get(&mut self, id: &str, soul: &str, key: Option<&str>, timeout: Duration) -> Value {
        assert!(
            self.send_json(&get_msg(id, soul, key)),
            "connection closed: {:?}",
            self.closed
        );
        self.expect_reply(id, timeout)
    }

    /// Remove and return everything received so far.
    pub fn take_inbox(&mut self) -> Vec<Value> {
        std::mem::take(&mut self.inbox)
    }

    /// The inbox as text, shortened, for panic messages.
    pub fn inbox_summary(&self) -> String {
        summarize(&self.inbox)
    }

    pub fn close(mut self) {
        let _ = self.ws.close(None);
        let _ = self.ws.flush();
        let _ = self.ws.get_ref().shutdown(Shutdown::Both);
    }
}

/// Messages as text, each cut to 300 chars, at most 40 of them.
pub fn summarize(msgs: &[Value]) -> String {
    let mut out = String::new();
    for m in msgs.iter().take(40) {
        let s = m.to_string();
        let cut: String = s.chars().take(300).collect();
        out.push_str("\n  ");
        out.push_str(&cut);
        if cut.len() < s.len() {
            out.push('…');
        }
    }
    if msgs.len() > 40 {
        out.push_str(&format!("\n  … and {} more", msgs.len() - 40));
    }
    if msgs.is_empty() {
        out.push_str("(nothing)");
    }
    out
}

// ---------------------------------------------------------------------------------------------------------
// Messages
// ---------------------------------------------------------------------------------------------------------

/// `{"#":id,"put":{soul:{"_":{"#":soul,">":{k:state…}},k:v…}}}`.
pub fn put_msg(id: &str, soul: &str, kv: &[(&str, Value)], state: f64) -> Value {
    json!({ "#": id, "put": { soul: node(soul, kv, state) } })
}

/// One node: `{"_":{"#":soul,">":{k:state…}},k:v…}`.
pub fn node(soul: &str, kv: &[(&str, Value)], state: f64) -> Value {
    let mut states = serde_json::Map::new();
    let mut n = serde_json::Map::new();
    for (k, _) in kv {
        states.insert((*k).to_owned(), state_value(state));
    }
    n.insert("_".into(), json!({ "#": soul, ">": Value::Object(states) }));
    for (k, v) in kv {
        n.insert((*k).to_owned(), v.clone());
    }
    Value::Object(n)
}

/// A state as JSON: integral states as integers (`1700000000000`, like JS prints them), others as floats.
pub fn state_value(state: f64) -> Value {
    if state.fract() == 0.0 && state.abs() < 9.0e15 {
        json!(state as i64)
    } else {
        json!(state)
    }
}

/// `{"#":id,"get":{"#":soul}}` or with `".":key`.
pub fn get_msg(id: &str, soul: &str, key: Option<&str>) -> Value {
    match key {
        Some(k) => json!({ "#": id, "get": { "#": soul, ".": k } }),
        None => json!({ "#": id, "get": { "#": soul } }),
    }
}

/// Milliseconds since the Unix epoch, as GUN states are.
pub fn now_ms() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_millis() as f64
}

pub fn msg_id(m: &Value) -> Option<&str> {
    m.get("#").and_then(Value::as_str)
}

/// Whether `m` is addressed to message `id` (`"@": id`).
pub fn replies_to(m: &Value, id: &str) -> bool {
    m.get("@").and_then(Value::as_str) == Some(id)
}

fn has_err(m: &Value) -> bool {
    match m.get("err") {
        Some(Value::String(s)) => !s.is_empty(),
        Some(Value::Null) | None => false,
        Some(_) => true,
    }
}

/// A frame-level error notice: `{"dam":"!","err":"…"}`.
pub fn is_frame_err(m: &Value) -> bool {
    m.get("dam").and_then(Value::as_str) == Some("!") && has_err(m)
}

/// A message-level error reply to `id`: `{"@":id,"err":"…"}`.
pub fn is_msg_err(m: &Value, id: &str) -> bool {
    replies_to(m, id) && has_err(m)
}

/// Any error reply at all (frame-level, or message-level to any id).
pub fn is_any_err(m: &Value) -> bool {
    has_err(m)
}

/// A successful put ack: `@` present, `ok` truthy, no `err`.
pub fn is_ok_ack(m: &Value) -> bool {
    if has_err(m) || m.get("@").is_none() {
        return false;
    }
    match m.get("ok") {
        None | Some(Value::Null) | Some(Value::Bool(false)) => false,
        Some(Value::Number(n)) => n.as_f64() != Some(0.0),
        Some(_) => true,
    }
}

/// The node for `soul` in a GET reply, if the reply carries one.
pub fn reply_node<'a>(reply: &'a Value, soul: &str) -> Option<&'a Value> {
    reply.get("put").and_then(|p| p.get(soul))
}

/// A "not found" reply: no `put` data for `soul` and no `err`.
pub fn is_not_found(reply: &Value, soul: &str) -> bool {
    !has_err(reply) && reply_node(reply, soul).is_none()
}

/// The handshake greeting `{"dam":"?",…}` (and any other `dam:"?"`), which can arrive at any time.
pub fn is_greeting(m: &Value) -> bool {
    m.get("dam").and_then(Value::as_str) == Some("?")
}

/// Puts 4 KB values (`v`) under new souls `{prefix}{i}` until one is refused; returns its error
/// text and the souls written (each acknowledged).
pub fn fill_until_refused(peer: &mut Peer, prefix: &str, max: usize) -> (String, Vec<String>) {
    let value = "v".repeat(4000);
    let mut written = Vec::new();
    for i in 0..max {
        let soul = format!("{prefix}{i}");
        let id = format!("{prefix}put{i}");
        assert!(peer.send_json(&put_msg(&id, &soul, &[("v", json!(value))], now_ms())));
        let reply = peer.expect_reply(&id, Duration::from_secs(15));
        if let Some(err) = reply["err"].as_str() {
            return (err.to_owned(), written);
        }
        assert_eq!(reply["ok"], true, "{reply}");
        written.push(soul);
    }
    panic!("{max} puts of 4 KB were all taken");
}

/// Writes `n` nodes `{prefix}/{i}` with `v: i`, each acked.
pub fn write_numbered(peer: &mut Peer, prefix: &str, n: usize) {
    for i in 0..n {
        let msg = put_msg(
            &format!("{prefix}{i}"),
            &format!("{prefix}/{i}"),
            &[("v", json!(i))],
            now_ms(),
        );
        peer.put_ok(&msg, Duration::from_secs(15));
    }
}

/// How many of the nodes [`write_numbered`] wrote `server` serves, each with its value.
pub fn holds_numbered(server: &Server, prefix: &str, n: usize) -> usize {
    holds_numbered_at(&server.ws_url(), prefix, n)
}

/// [`holds_numbered`] for the relay at `url` (`ws://…`, or GUN's `http://…` form). Each call
/// asks with new message ids: a relay drops an id it saw in the last 9 s, so asking again with
/// the same ones would go unanswered.
pub fn holds_numbered_at(url: &str, prefix: &str, n: usize) -> usize {
    static CALLS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let call = CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let mut peer = Peer::connect(&url.replacen("http://", "ws://", 1));
    (0..n)
        .filter(|i| {
            let soul = format!("{prefix}/{i}");
            let reply = peer.get(
                &format!("check-{prefix}-{i}-{call}"),
                &soul,
                None,
                Duration::from_secs(15),
            );
            reply_node(&reply, &soul).is_some_and(|node| node["v"] == *i)
        })
        .count()
}
