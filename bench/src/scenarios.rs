//! Scenarios beyond request/reply load: idle connections (memory per connection) and fan-out
//! (one writer, many subscribers of one soul, delivery latency).

use std::time::{Duration, Instant};

/// Resident memory of a process now, in KiB (Linux).
pub fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        .unwrap_or(0)
}

/// What holding idle connections cost the server.
#[derive(Clone, Debug)]
pub struct Idle {
    /// The server's RSS before any connection, in KiB.
    pub before_kib: u64,
    /// Its RSS with the connections open and idle, in KiB.
    pub with_kib: u64,
    /// Connections held.
    pub conns: usize,
}

impl Idle {
    /// Bytes per connection.
    pub fn per_conn_bytes(&self) -> f64 {
        (self.with_kib.saturating_sub(self.before_kib) * 1024) as f64 / self.conns as f64
    }
}

/// Connections opened from one source address at most: one address reaches one server address
/// through at most the ephemeral port range (about 28,000 ports on Linux), so more connections
/// come from further loopback addresses (127.0.0.2, …; all of 127/8 is loopback).
const CONNS_PER_SOURCE: usize = 20_000;

/// Opens `conns` WebSockets that then stay idle, and measures the server's memory.
pub fn idle(url: &str, conns: usize, server_pid: u32) -> Result<Idle, String> {
    let server: std::net::SocketAddr = ws_addr(url)?
        .parse()
        .map_err(|e| format!("{url}: the idle scenario needs an IP address and port: {e}"))?;
    std::thread::sleep(Duration::from_millis(500));
    let before_kib = rss_kib(server_pid);
    let open = smol::block_on(async {
        let mut sockets = Vec::with_capacity(conns);
        // Open in waves so the accept backlog is never overrun.
        for wave in (0..conns).collect::<Vec<_>>().chunks(200) {
            let tasks: Vec<_> = wave
                .iter()
                .map(|&i| {
                    let source =
                        std::net::Ipv4Addr::new(127, 0, 0, 1 + (i / CONNS_PER_SOURCE) as u8);
                    smol::spawn(connect_from(url.to_owned(), server, source))
                })
                .collect();
            for t in tasks {
                sockets.push(t.await?);
            }
        }
        Ok::<_, String>(sockets)
    })?;
    // Let the handshakes and greetings settle, then measure.
    std::thread::sleep(Duration::from_secs(2));
    let with_kib = rss_kib(server_pid);
    drop(open);
    Ok(Idle {
        before_kib,
        with_kib,
        conns,
    })
}

/// A WebSocket to `url` (at `server`) from the address `source`.
async fn connect_from(
    url: String,
    server: std::net::SocketAddr,
    source: std::net::Ipv4Addr,
) -> Result<async_tungstenite::WebSocketStream<smol::Async<std::net::TcpStream>>, String> {
    use socket2::{Domain, Socket, Type};
    let failed = |e: std::io::Error| format!("connect from {source}: {e}");
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None).map_err(failed)?;
    socket
        .bind(&std::net::SocketAddr::from((source, 0)).into())
        .map_err(failed)?;
    socket.set_nonblocking(true).map_err(failed)?;
    match socket.connect(&server.into()) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
        Err(e) => return Err(failed(e)),
    }
    let stream = smol::Async::new(std::net::TcpStream::from(socket)).map_err(failed)?;
    stream.writable().await.map_err(failed)?;
    if let Some(e) = stream.get_ref().take_error().map_err(failed)? {
        return Err(failed(e));
    }
    let (ws, _) = async_tungstenite::client_async(url, stream)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    Ok(ws)
}

/// Raises this process's open-file limit (which the servers it starts inherit) to `needed`, or
/// says why it cannot: past the hard limit, raising takes `CAP_SYS_RESOURCE`.
pub fn raise_file_limit(needed: u64) -> Result<(), String> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit only read and write the struct passed.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return Err(format!(
            "cannot read the file limit: {}",
            std::io::Error::last_os_error()
        ));
    }
    if limit.rlim_cur >= needed {
        return Ok(());
    }
    let raised = libc::rlimit {
        rlim_cur: needed,
        rlim_max: limit.rlim_max.max(needed),
    };
    // SAFETY: as above.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } != 0 {
        return Err(format!(
            "the open-file limit is {} (hard {}), below the {needed} this needs, and cannot be raised here: {}",
            limit.rlim_cur,
            limit.rlim_max,
            std::io::Error::last_os_error()
        ));
    }
    Ok(())
}

/// Files a process needs to hold `conns` connections: one each, and room for the rest.
pub fn files_for(conns: usize) -> u64 {
    conns as u64 + 1_024
}

/// What a fan-out run measured.
#[derive(Clone, Debug, Default)]
pub struct Fanout {
    /// Deliveries received (an update to a subscriber), and expected.
    pub delivered: usize,
    /// Deliveries expected: updates times subscribers.
    pub expected: usize,
    /// Delivery latency percentiles, in milliseconds (writer send to subscriber receive).
    pub p50_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// Largest.
    pub max_ms: f64,
    /// The timeline of an update: its median latency to the first subscriber that got it…
    pub first_p50_ms: f64,
    /// …and to the last one: the difference is the time spent pushing it to every socket and
    /// reading it from every socket, one after another.
    pub last_p50_ms: f64,
    /// The writer's puts, from send to ack: the 99th percentile, in milliseconds. A server acks
    /// once the put is durable where it keeps it, and (fibergun and the bare server alike) after
    /// pushing it to the subscribers.
    pub ack_p99_ms: f64,
    /// Puts the writer saw acknowledged.
    pub acked: usize,
}

/// Until `until`, reads what comes to the fan-out writer, timing each ack of run `run_id` as it
/// is read. Past `until` it still reads what has already arrived, without waiting, so that an ack
/// is timed when it came, not after the next put's gap.
fn read_acks(
    writer: &mut async_tungstenite::tungstenite::WebSocket<std::net::TcpStream>,
    until: Instant,
    acked: &mut [Option<Instant>],
    run_id: &str,
) -> Result<(), String> {
    use async_tungstenite::tungstenite::{Error, Message as Frame};
    let result = loop {
        let left = until.saturating_duration_since(Instant::now());
        let waiting = left >= Duration::from_micros(100);
        let socket = writer.get_mut();
        let set = if waiting {
            socket
                .set_nonblocking(false)
                .and_then(|()| socket.set_read_timeout(Some(left)))
        } else {
            socket.set_nonblocking(true)
        };
        if let Err(e) = set {
            break Err(e.to_string());
        }
        match writer.read() {
            Ok(Frame::Text(text)) => {
                let now = Instant::now();
                for i in acked_updates(&text, run_id) {
                    if let Some(slot) = acked.get_mut(i) {
                        slot.get_or_insert(now);
                    }
                }
            }
            Ok(_) => {}
            Err(Error::Io(e))
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                if !waiting {
                    break Ok(());
                }
            }
            Err(e) => break Err(format!("the writer's socket: {e}")),
        }
    };
    // The next put is written blocking.
    writer
        .get_mut()
        .set_nonblocking(false)
        .map_err(|e| e.to_string())?;
    result
}

/// The updates of run `run_id` that a frame to the writer acknowledges: each message whose `@` is
/// `w<i>.<run_id>.` and which says `ok`, not `err` (a refused put is not acknowledged).
fn acked_updates(text: &str, run_id: &str) -> Vec<usize> {
    if !text.contains("\"@\":\"w") {
        return Vec::new();
    }
    crate::load::frame_messages(text)
        .iter()
        .filter(|m| m.get("err").is_none() && m.get("ok").is_some())
        .filter_map(|m| {
            let reply_to = m.get("@")?.as_str()?;
            let (number, rest) = reply_to.strip_prefix('w')?.split_once('.')?;
            (rest.strip_suffix('.')? == run_id).then(|| number.parse().ok())?
        })
        .collect()
}

/// The keys in the state maps (`">":{…}`) of a frame: the updates it carries, found without
/// parsing it (this scan costs the load generator less than a parse, per delivery).
fn state_keys(text: &str) -> impl Iterator<Item = &str> {
    text.match_indices("\">\":{").flat_map(move |(at, m)| {
        let map = &text[at + m.len()..];
        let map = &map[..map.find('}').unwrap_or(map.len())];
        map.split(',')
            .filter_map(|pair| pair.strip_prefix('"')?.split('"').next())
    })
}

/// The number of the update a key names (`u17` is update 17).
fn update_number(key: &str) -> Option<usize> {
    key.strip_prefix('u')?.parse().ok()
}

/// The `p` percentile of sorted microseconds, in milliseconds.
fn percentile_ms(sorted_us: &[u64], p: f64) -> f64 {
    let at = ((sorted_us.len() as f64 * p) as usize).min(sorted_us.len().saturating_sub(1));
    sorted_us.get(at).map_or(0.0, |us| *us as f64 / 1000.0)
}

/// One complete server frame at the start of `b`: its opcode, where its payload lies, and its
/// whole length; `None` until all of it has arrived.
fn ws_frame(b: &[u8]) -> Option<(u8, std::ops::Range<usize>)> {
    let (&b0, &b1) = (b.first()?, b.get(1)?);
    let (len, head) = match b1 & 0x7f {
        126 => (
            u16::from_be_bytes(b.get(2..4)?.try_into().ok()?) as usize,
            4,
        ),
        127 => (
            u64::from_be_bytes(b.get(2..10)?.try_into().ok()?) as usize,
            10,
        ),
        n => (n as usize, 2),
    };
    // A server does not mask its frames; skip a key if one did.
    let head = head + if b1 & 0x80 != 0 { 4 } else { 0 };
    (b.len() >= head + len).then_some((b0 & 0x0f, head..head + len))
}

/// The `host:port` of a `ws://` URL.
fn ws_addr(url: &str) -> Result<&str, String> {
    url.strip_prefix("ws://")
        .and_then(|rest| rest.split('/').next())
        .ok_or_else(|| format!("not a ws:// URL: {url}"))
}

/// A subscriber's socket after its handshake and its GET, read raw (one `read` and a scan per
/// delivery): tungstenite and a task per socket cost the generator more than the servers spend
/// on a delivery, and made the generator the ceiling of this scenario.
struct Subscriber {
    /// The WebSocket until [`Subscriber::go_raw`].
    ws: Option<async_tungstenite::tungstenite::WebSocket<std::net::TcpStream>>,
    buf: Vec<u8>,
    /// Which updates arrived, so a repeat is not counted twice.
    seen: Vec<bool>,
    /// When each update arrived.
    arrivals: Vec<(usize, Instant)>,
    closed: bool,
}

impl Subscriber {
    /// Connects, subscribes to `soul` and waits for the GET's answer; then the socket is read
    /// raw and without blocking.
    fn connect(url: &str, soul: &str, id: &str, updates: usize) -> Result<Subscriber, String> {
        use async_tungstenite::tungstenite::{client, Message as Frame};
        let stream =
            std::net::TcpStream::connect(ws_addr(url)?).map_err(|e| format!("connect: {e}"))?;
        stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .map_err(|e| e.to_string())?;
        let _ = stream.set_nodelay(true);
        let (mut ws, _) = client(url, stream).map_err(|e| format!("handshake: {e}"))?;
        let get = format!(r##"{{"#":"{id}","get":{{"#":"{soul}"}}}}"##);
        ws.send(Frame::text(get)).map_err(|e| e.to_string())?;
        let answer = format!(r##""@":"{id}""##);
        loop {
            match ws.read().map_err(|e| format!("a subscriber's GET: {e}"))? {
                Frame::Text(text) if text.as_str().contains(&answer) => break,
                _ => {}
            }
        }
        Ok(Subscriber {
            ws: Some(ws),
            buf: Vec::with_capacity(64 << 10),
            seen: vec![false; updates],
            arrivals: Vec::with_capacity(updates),
            closed: false,
        })
    }

    /// Reads and drops what else the GET's answer brought (a second part of it) and hands the
    /// socket over to raw reads, which start at a frame's first byte.
    fn go_raw(&mut self) -> Result<std::net::TcpStream, String> {
        let mut ws = self.ws.take().ok_or("already raw")?;
        ws.get_ref()
            .set_nonblocking(true)
            .map_err(|e| e.to_string())?;
        while ws.read().is_ok() {}
        ws.get_ref().try_clone().map_err(|e| e.to_string())
    }

    /// Reads once from a readable socket and notes the updates in its complete frames. One read:
    /// the poller is level-triggered, so what a read leaves is reported again.
    fn read_ready(&mut self, stream: &mut std::net::TcpStream) {
        use std::io::Read;
        let len = self.buf.len();
        self.buf.resize(len + (64 << 10), 0);
        let read = stream.read(&mut self.buf[len..]);
        match read {
            Ok(n) if n > 0 => self.buf.truncate(len + n),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => self.buf.truncate(len),
            _ => {
                self.buf.truncate(len);
                self.closed = true;
            }
        }
        let now = Instant::now();
        let mut at = 0;
        while let Some((opcode, payload)) = ws_frame(&self.buf[at..]) {
            let frame = &self.buf[at + payload.start..at + payload.end];
            match (opcode, std::str::from_utf8(frame)) {
                (0 | 1, Ok(text)) => {
                    for i in state_keys(text).filter_map(update_number) {
                        if i < self.seen.len() && !std::mem::replace(&mut self.seen[i], true) {
                            self.arrivals.push((i, now));
                        }
                    }
                }
                (8, _) => self.closed = true,
                _ => {}
            }
            at += payload.end;
        }
        self.buf.drain(..at);
    }

    fn done(&self) -> bool {
        self.closed || self.arrivals.len() == self.seen.len()
    }
}

/// `subscribers` connections to `url` subscribe to one soul; one writer, connected to
/// `writer_url` (the same relay, or another relay on the same graph), puts a new key to it
/// `rate` times a second for `seconds`; every subscriber should receive every key once.
///
/// One thread reads every subscriber's socket as it becomes readable and notes when each update
/// reached it, and nothing else; latencies are computed afterwards.
pub fn fanout(
    url: &str,
    writer_url: &str,
    subscribers: usize,
    rate: u32,
    seconds: u32,
    run_id: &str,
) -> Result<Fanout, String> {
    use async_tungstenite::tungstenite::{client, Message as Frame};
    let soul = format!("{run_id}/room");
    let updates = (rate * seconds) as usize;
    let mut subs = (0..subscribers)
        .map(|s| Subscriber::connect(url, &soul, &format!("sub{s}.{run_id}."), updates))
        .collect::<Result<Vec<_>, _>>()?;
    // Whatever a relay sends after a GET's answer has arrived by now.
    std::thread::sleep(Duration::from_millis(200));
    let mut streams = subs
        .iter_mut()
        .map(Subscriber::go_raw)
        .collect::<Result<Vec<_>, _>>()?;
    let poller = polling::Poller::new().map_err(|e| e.to_string())?;
    for (key, stream) in streams.iter().enumerate() {
        // SAFETY: each socket stays open (in `streams`) until it is deleted from the poller below.
        unsafe {
            poller.add_with_mode(
                stream,
                polling::Event::readable(key),
                polling::PollMode::Level,
            )
        }
        .map_err(|e| e.to_string())?;
    }
    let end_by = Instant::now() + Duration::from_secs(u64::from(seconds) + 20);
    let reader = std::thread::spawn(move || {
        let mut events = polling::Events::new();
        while Instant::now() < end_by && !subs.iter().all(Subscriber::done) {
            events.clear();
            if poller
                .wait(&mut events, Some(Duration::from_millis(100)))
                .is_err()
            {
                break;
            }
            for ev in events.iter() {
                subs[ev.key].read_ready(&mut streams[ev.key]);
            }
        }
        for stream in &streams {
            let _ = poller.delete(stream);
        }
        subs
    });
    // The writer: one put of a new key every 1/rate s.
    let stream =
        std::net::TcpStream::connect(ws_addr(writer_url)?).map_err(|e| format!("connect: {e}"))?;
    let _ = stream.set_nodelay(true);
    let (mut writer, _) = client(writer_url, stream).map_err(|e| format!("handshake: {e}"))?;
    let mut sent = vec![None; updates];
    let mut acked = vec![None; updates];
    let started = Instant::now();
    let mut state = 1_700_000_000_000.0f64.max(crate::load::wall_ms());
    for (i, sent) in sent.iter_mut().enumerate() {
        let due = started + Duration::from_secs_f64(i as f64 / f64::from(rate));
        read_acks(&mut writer, due, &mut acked, run_id)?;
        state += 0.001;
        let text = format!(
            r##"{{"#":"w{i}.{run_id}.","put":{{"{soul}":{{"_":{{"#":"{soul}",">":{{"u{i}":{state}}}}},"u{i}":"update {i}"}}}}}}"##
        );
        *sent = Some(Instant::now());
        writer.send(Frame::text(text)).map_err(|e| e.to_string())?;
    }
    // The last acks: a bounded wait.
    let acks_by = Instant::now() + Duration::from_secs(5);
    while acked.iter().any(Option::is_none) && Instant::now() < acks_by {
        read_acks(
            &mut writer,
            Instant::now() + Duration::from_millis(50),
            &mut acked,
            run_id,
        )?;
    }
    let mut ack_us: Vec<u64> = sent
        .iter()
        .zip(&acked)
        .filter_map(|(sent, acked)| Some(acked.as_ref()?.saturating_duration_since((*sent)?)))
        .map(|took| took.as_micros() as u64)
        .collect();
    ack_us.sort_unstable();
    let subs = reader
        .join()
        .map_err(|_| "the fan-out reader panicked".to_string())?;
    let mut all = Vec::new();
    let mut first = vec![u64::MAX; updates];
    let mut last = vec![0u64; updates];
    for (i, at) in subs.iter().flat_map(|s| &s.arrivals) {
        let Some(sent) = sent[*i] else { continue };
        let us = at.saturating_duration_since(sent).as_micros() as u64;
        all.push(us);
        first[*i] = first[*i].min(us);
        last[*i] = last[*i].max(us);
    }
    all.sort_unstable();
    first.retain(|us| *us != u64::MAX);
    first.sort_unstable();
    last.retain(|us| *us != 0);
    last.sort_unstable();
    Ok(Fanout {
        delivered: all.len(),
        expected: updates * subscribers,
        p50_ms: percentile_ms(&all, 0.5),
        p99_ms: percentile_ms(&all, 0.99),
        max_ms: all.last().map_or(0.0, |us| *us as f64 / 1000.0),
        first_p50_ms: percentile_ms(&first, 0.5),
        last_p50_ms: percentile_ms(&last, 0.5),
        ack_p99_ms: percentile_ms(&ack_us, 0.99),
        acked: ack_us.len(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_updates_a_frame_carries() {
        let frame = r##"[{"#":"a","put":{"f/room":{"_":{"#":"f/room",">":{"u3":1.5,"u12":2}},"u3":"update 3","u12":"update 12"}}},{"#":"b","@":"sub0.f.","ok":true}]"##;
        let keys: Vec<_> = state_keys(frame).collect();
        assert_eq!(keys, ["u3", "u12"]);
        assert_eq!(
            keys.iter()
                .filter_map(|k| update_number(k))
                .collect::<Vec<_>>(),
            [3, 12]
        );
        assert_eq!(state_keys(r##"{"#":"b","@":"x","ok":true}"##).count(), 0);
    }

    #[test]
    fn finds_the_updates_a_frame_acknowledges() {
        let frame = r##"[{"#":"a","@":"w3.f7.","ok":true},{"#":"b","@":"w12.f7.","ok":{"":1}},{"@":"w4.f77.","ok":1},{"@":"sub0.f7."},{"#":"c","@":"w5.f7.","err":"refused"},{"@":"w6.f7."}]"##;
        // Acks of this run only; an error reply, or a reply that says neither, is no ack.
        assert_eq!(acked_updates(frame, "f7"), [3, 12]);
        assert_eq!(
            acked_updates(r##"{"#":"d","@":"w9.f7.","ok":true}"##, "f7"),
            [9]
        );
    }

    #[test]
    fn every_subscriber_of_a_relay_gets_every_update() {
        let dir = tempfile::tempdir().unwrap();
        let relay = crate::in_process::launch(dir.path(), &[]).unwrap();
        let f = fanout(&relay.url, &relay.url, 5, 50, 1, "fan1").unwrap();
        (relay.stop)();
        assert_eq!((f.delivered, f.expected), (250, 250), "{f:?}");
        assert!(
            f.first_p50_ms > 0.0 && f.last_p50_ms >= f.first_p50_ms,
            "{f:?}"
        );
        assert_eq!(f.acked, 50, "every put is acknowledged: {f:?}");
        assert!(f.ack_p99_ms > 0.0, "{f:?}");
    }

    #[test]
    fn the_bare_fan_out_server_forwards_every_put_to_every_subscriber() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .unwrap()
            .port();
        std::thread::spawn(move || crate::limit::serve(&format!("127.0.0.1:{port}")));
        let url = format!("ws://127.0.0.1:{port}/gun");
        let end = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() && Instant::now() < end {
            std::thread::sleep(Duration::from_millis(10));
        }
        let f = fanout(&url, &url, 5, 50, 1, "fan2").unwrap();
        assert_eq!((f.delivered, f.expected), (250, 250), "{f:?}");
        assert_eq!(
            f.acked, 50,
            "the bare server acknowledges every put too: {f:?}"
        );
    }

    #[test]
    fn reads_server_frames_of_every_length() {
        let short = [0x81, 3, b'a', b'b', b'c', 0x81];
        assert_eq!(ws_frame(&short), Some((1, 2..5)));
        assert_eq!(ws_frame(&short[..4]), None);
        let mut mid = vec![0x81, 126, 1, 0];
        mid.extend(vec![b'x'; 256]);
        assert_eq!(ws_frame(&mid), Some((1, 4..260)));
        let mut long = vec![0x88, 127, 0, 0, 0, 0, 0, 1, 0, 0];
        long.extend(vec![0; 65536]);
        assert_eq!(ws_frame(&long), Some((8, 10..65546)));
    }
}
