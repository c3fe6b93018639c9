//! `fibergun get`, `put` and `watch`: the command line as a GUN client of any relay (fibergun or
//! GUN JS), over one WebSocket, with the core's client ([`fibergun::client::Client`]) turning
//! paths into GUN messages. Exit codes are a contract:
//!
//! | exit | get | put | watch |
//! |---|---|---|---|
//! | 0 | printed the JSON at the path | a relay acknowledged the write | interrupted |
//! | 1 | nothing at the path (nothing printed) | refused (the reason on stderr) | — |
//! | 2 | the relay could not be reached, or did not answer within `--timeout`; or the request could not be made (a bad address or JSON) |||

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use fibergun::client::{Client, ClientError, ClientEvent, ClientInput, ClientOutput, Reply};
use fibergun::{Limits, Now};
use fibergun_drive::PeerUrl;
use serde_json::Value as Json;
use tungstenite::client::IntoClientRequest;
use tungstenite::http::HeaderValue;
use tungstenite::protocol::WebSocketConfig;
use tungstenite::{Message, WebSocket};

/// Where the relay is, and how long to wait for it.
#[derive(clap::Args, Debug, Clone)]
pub struct RelayArgs {
    /// The relay: `http://host:port/gun` (GUN's form), `ws://…`, or `https://` / `wss://`.
    #[arg(long = "peer", value_name = "URL", env = "FIBERGUN_PEER")]
    pub peer: String,
    /// Seconds to wait for the relay to connect and answer.
    #[arg(long, default_value_t = 10.0, value_name = "SECS")]
    pub timeout: f64,
    /// A token for a relay that asks for one (sent as `Authorization: Bearer TOKEN`).
    #[arg(long, value_name = "SECRET", env = "FIBERGUN_TOKEN")]
    pub token: Option<String>,
    /// A PEM file of certificates to trust besides the web's roots (a relay with a private or
    /// self-signed certificate).
    #[arg(long, value_name = "FILE")]
    pub peer_ca: Option<PathBuf>,
}

/// A command against a relay.
#[derive(clap::Subcommand, Debug, Clone)]
pub enum RemoteCommand {
    /// Print the JSON at PATH (`chat/room1` is `gun.get('chat').get('room1')`).
    Get {
        #[command(flatten)]
        relay: RelayArgs,
        /// The path, its parts separated by `/`.
        path: String,
        /// Follow links this many levels below PATH (0: links print as `{"#":soul}`).
        #[arg(long, default_value_t = 0)]
        depth: usize,
    },
    /// Merge JSON at PATH: an object into the node there, any other value under its last key.
    /// Exits once a relay acknowledged it.
    Put {
        #[command(flatten)]
        relay: RelayArgs,
        /// The path, its parts separated by `/`.
        path: String,
        /// The JSON to write.
        json: String,
    },
    /// Print the node at PATH, then one JSON line per change of it, until interrupted.
    Watch {
        #[command(flatten)]
        relay: RelayArgs,
        /// The path, its parts separated by `/`.
        path: String,
    },
}

/// Why a command stopped short.
enum Failure {
    /// Exit 1: the answer is no (nothing there, a refusal).
    No(String),
    /// Exit 2: no answer (unreachable, too slow, a request that cannot be made).
    Unanswered(String),
}

impl RemoteCommand {
    /// Runs the command; its exit code says how it went, messages go to stderr as `bin: …`.
    pub fn run(self, bin: &str) -> ExitCode {
        let outcome = match self {
            RemoteCommand::Get { relay, path, depth } => get(&relay, &path, depth),
            RemoteCommand::Put { relay, path, json } => put(&relay, &path, &json),
            RemoteCommand::Watch { relay, path } => watch(&relay, &path, bin),
        };
        match outcome {
            Ok(()) => ExitCode::SUCCESS,
            Err(Failure::No(why)) => {
                eprintln!("{bin}: {why}");
                ExitCode::from(1)
            }
            Err(Failure::Unanswered(why)) => {
                eprintln!("{bin}: {why}");
                ExitCode::from(2)
            }
        }
    }
}

fn get(relay: &RelayArgs, path: &str, depth: usize) -> Result<(), Failure> {
    let parts = parse_path(path)?;
    let deadline = deadline(relay)?;
    let mut session = Session::open(relay, deadline)?;
    let op = session.client.read(&parts, depth);
    match session.until_done(op, deadline)? {
        Ok(Reply::Read(Some(json))) => {
            println!("{json}");
            Ok(())
        }
        Ok(_) => Err(Failure::No(format!("nothing at {path}"))),
        Err(e) => Err(refusal(e)),
    }
}

fn put(relay: &RelayArgs, path: &str, json: &str) -> Result<(), Failure> {
    let parts = parse_path(path)?;
    let value: Json =
        serde_json::from_str(json).map_err(|e| Failure::Unanswered(format!("JSON: {e}")))?;
    let deadline = deadline(relay)?;
    let mut session = Session::open(relay, deadline)?;
    let op = session.client.put(&parts, value, wall_ms());
    match session.until_done(op, deadline)? {
        Ok(_) => Ok(()),
        Err(e) => Err(refusal(e)),
    }
}

fn watch(relay: &RelayArgs, path: &str, bin: &str) -> Result<(), Failure> {
    let parts = parse_path(path)?;
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(signal, stop.clone())
            .map_err(|e| Failure::Unanswered(format!("cannot watch for signals: {e}")))?;
    }
    // The first connection must come within the timeout; after that a lost connection is made
    // again (with the subscription) until interrupted.
    let mut session = Session::open(relay, deadline(relay)?)?;
    let mut backoff = Duration::from_millis(500);
    let mut stdout = std::io::stdout();
    loop {
        session
            .client
            .subscribe(&parts)
            .map_err(|e| Failure::Unanswered(e.to_string()))?;
        let lost = session.watch(&stop, |change| {
            // A closed stdout (a pipe whose reader left) ends the watch like an interrupt.
            writeln!(stdout, "{change}")
                .and_then(|()| stdout.flush())
                .is_ok()
        });
        match lost {
            None => return Ok(()),
            Some(why) => eprintln!("{bin}: {why}; connecting again"),
        }
        session = loop {
            if stop.load(Ordering::Relaxed) {
                return Ok(());
            }
            std::thread::sleep(backoff);
            backoff = (backoff * 2).min(Duration::from_secs(10));
            match Session::open(relay, Instant::now() + timeout(relay)?) {
                Ok(session) => break session,
                Err(Failure::No(why) | Failure::Unanswered(why)) => eprintln!("{bin}: {why}"),
            }
        };
        backoff = Duration::from_millis(500);
    }
}

fn refusal(e: ClientError) -> Failure {
    match e {
        ClientError::Refused(text) => Failure::No(text),
        ClientError::Invalid(text) => Failure::No(format!("not written: {text}")),
    }
}

/// `chat/room1` as `["chat", "room1"]`.
fn parse_path(path: &str) -> Result<Vec<&str>, Failure> {
    let parts: Vec<&str> = path.split('/').collect();
    if parts.iter().any(|p| p.is_empty()) {
        return Err(Failure::Unanswered(format!(
            "{path:?} is not a path (parts separated by single `/`, none empty)"
        )));
    }
    Ok(parts)
}

fn timeout(relay: &RelayArgs) -> Result<Duration, Failure> {
    Duration::try_from_secs_f64(relay.timeout)
        .ok()
        .filter(|t| !t.is_zero())
        .ok_or_else(|| Failure::Unanswered("--timeout must be a positive number".into()))
}

fn deadline(relay: &RelayArgs) -> Result<Instant, Failure> {
    Ok(Instant::now() + timeout(relay)?)
}

fn now() -> Now {
    fibergun_drive::clock::now()
}

fn wall_ms() -> f64 {
    now().wall_ms
}

/// A byte stream to a relay: TCP, or TLS over TCP.
trait Stream: Read + Write + Send {}
impl<T: Read + Write + Send> Stream for T {}

/// One connection to a relay and the client speaking over it.
struct Session {
    ws: WebSocket<Box<dyn Stream>>,
    /// The TCP socket under `ws`, for its read timeouts.
    tcp: TcpStream,
    client: Client,
}

impl Session {
    /// Connects to the relay, by `deadline`.
    fn open(relay: &RelayArgs, deadline: Instant) -> Result<Session, Failure> {
        let peer = PeerUrl::parse(&relay.peer).map_err(Failure::Unanswered)?;
        let unreachable = |why: String| Failure::Unanswered(format!("{}: {why}", relay.peer));
        let tcp = connect_tcp(&peer, deadline).map_err(unreachable)?;
        let _ = tcp.set_nodelay(true);
        tcp.set_read_timeout(Some(left(deadline)?))
            .map_err(|e| unreachable(e.to_string()))?;
        let stream: Box<dyn Stream> = if peer.tls {
            Box::new(tls_stream(
                &peer,
                relay,
                tcp.try_clone().map_err(|e| unreachable(e.to_string()))?,
            )?)
        } else {
            Box::new(tcp.try_clone().map_err(|e| unreachable(e.to_string()))?)
        };
        let mut request = peer
            .ws_url
            .as_str()
            .into_client_request()
            .map_err(|e| unreachable(e.to_string()))?;
        if let Some(token) = &relay.token {
            let value = HeaderValue::from_str(&format!("Bearer {token}"))
                .map_err(|_| Failure::Unanswered("the token is not a header value".into()))?;
            request.headers_mut().insert("authorization", value);
        }
        let config = WebSocketConfig::default()
            .max_message_size(Some(Limits::default().max_frame_bytes))
            .max_frame_size(Some(Limits::default().max_frame_bytes));
        let (ws, _) = tungstenite::client::client_with_config(request, stream, Some(config))
            .map_err(|e| match e {
                tungstenite::HandshakeError::Failure(tungstenite::Error::Http(response)) => {
                    let body = response
                        .body()
                        .as_deref()
                        .map(String::from_utf8_lossy)
                        .unwrap_or_default()
                        .into_owned();
                    Failure::Unanswered(format!(
                        "{}: refused the connection ({}) {body}",
                        relay.peer,
                        response.status()
                    ))
                }
                other => unreachable(format!("WebSocket handshake: {other}")),
            })?;
        Ok(Session {
            ws,
            tcp,
            client: Client::new(fibergun_drive::clock::fresh_seed(), Limits::default()),
        })
    }

    /// Sends what the client has to send; its events go to `event`.
    fn flush(&mut self, mut event: impl FnMut(ClientEvent)) -> Result<(), String> {
        while let Some(output) = self.client.poll_output() {
            match output {
                ClientOutput::Send { text } => self
                    .ws
                    .send(Message::text(text))
                    .map_err(|e| format!("the connection failed: {e}"))?,
                ClientOutput::Event(e) => event(e),
            }
        }
        Ok(())
    }

    /// Reads one message within `wait`: its text, `None` when the wait passed.
    fn read(&mut self, wait: Duration) -> Result<Option<String>, String> {
        self.tcp
            .set_read_timeout(Some(wait.max(Duration::from_millis(1))))
            .map_err(|e| e.to_string())?;
        loop {
            match self.ws.read() {
                Ok(Message::Text(text)) => return Ok(Some(text.as_str().to_owned())),
                Ok(Message::Close(_)) => return Err("the relay closed the connection".into()),
                Ok(_) => continue,
                // The wait passed, or a signal came (which the caller looks for).
                Err(tungstenite::Error::Io(e))
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock
                            | std::io::ErrorKind::TimedOut
                            | std::io::ErrorKind::Interrupted
                    ) =>
                {
                    return Ok(None)
                }
                Err(e) => return Err(format!("the connection failed: {e}")),
            }
        }
    }

    /// Carries frames both ways until operation `op` is done, by `deadline`.
    fn until_done(
        &mut self,
        op: fibergun::client::OpId,
        deadline: Instant,
    ) -> Result<Result<Reply, ClientError>, Failure> {
        let mut outcome = None;
        loop {
            self.flush(|e| {
                if let ClientEvent::Done { op: done, result } = e {
                    if done == op {
                        outcome = Some(result);
                    }
                }
            })
            .map_err(Failure::Unanswered)?;
            if let Some(outcome) = outcome {
                return Ok(outcome);
            }
            let Some(text) = self.read(left(deadline)?).map_err(Failure::Unanswered)? else {
                continue;
            };
            let _ = self
                .client
                .handle_input(now(), ClientInput::Frame { text: &text });
        }
    }

    /// Carries frames both ways, passing each change of the watched node to `print` (as JSON),
    /// until `stop` is set or `print` says to stop (`None`), or the connection is lost (why).
    fn watch(&mut self, stop: &AtomicBool, mut print: impl FnMut(&Json) -> bool) -> Option<String> {
        loop {
            let mut go_on = true;
            let flushed = self.flush(|e| {
                if let ClientEvent::Changed { node, .. } = e {
                    go_on &= print(&node);
                }
            });
            if let Err(why) = flushed {
                return Some(why);
            }
            if !go_on || stop.load(Ordering::Relaxed) {
                let _ = self.ws.close(None);
                return None;
            }
            match self.read(Duration::from_millis(200)) {
                Ok(Some(text)) => {
                    let _ = self
                        .client
                        .handle_input(now(), ClientInput::Frame { text: &text });
                }
                Ok(None) => {}
                Err(why) => return Some(why),
            }
        }
    }
}

/// The time left until `deadline`; an error once it has passed.
fn left(deadline: Instant) -> Result<Duration, Failure> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        return Err(Failure::Unanswered(
            "the relay did not answer in time (--timeout)".into(),
        ));
    }
    Ok(left)
}

fn connect_tcp(peer: &PeerUrl, deadline: Instant) -> Result<TcpStream, String> {
    let addrs = (peer.host.as_str(), peer.port)
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {}: {e}", peer.host))?;
    let mut last = format!("{} has no address", peer.host);
    for addr in addrs {
        let wait = deadline.saturating_duration_since(Instant::now());
        if wait.is_zero() {
            return Err("no connection in time (--timeout)".into());
        }
        match TcpStream::connect_timeout(&addr, wait) {
            Ok(tcp) => return Ok(tcp),
            Err(e) => last = format!("{addr}: {e}"),
        }
    }
    Err(last)
}

fn tls_stream(
    peer: &PeerUrl,
    relay: &RelayArgs,
    tcp: TcpStream,
) -> Result<rustls::StreamOwned<rustls::ClientConnection, TcpStream>, Failure> {
    let dial = fibergun_smol::TlsDial::new(relay.peer_ca.as_deref())
        .map_err(|e| Failure::Unanswered(format!("--peer-ca {e}")))?;
    let name = rustls::pki_types::ServerName::try_from(peer.host.clone())
        .map_err(|e| Failure::Unanswered(format!("{:?}: {e}", peer.host)))?;
    let connection = rustls::ClientConnection::new(dial.client_config(), name)
        .map_err(|e| Failure::Unanswered(format!("TLS: {e}")))?;
    Ok(rustls::StreamOwned::new(connection, tcp))
}
