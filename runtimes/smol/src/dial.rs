//! Dialling configured peers: a TCP connection (with TLS for `wss://` peers) and a WebSocket
//! handshake, then the same socket pump as accepted connections. The core decides when to dial
//! and when to try again.

use std::sync::Arc;
use std::time::Duration;

use async_tungstenite::tungstenite::client::IntoClientRequest;
use fibergun::access::Principal;
use fibergun::RemoteId;
use fibergun_drive::PeerUrl;
use smol::net::TcpStream;

use crate::relay::{Context, DriverEvent};
use crate::socket::{run_socket, websocket_config};

/// How `wss://` peers are dialled: a TLS client configuration, made by `TlsDial::new` (the `tls`
/// feature). A build without the feature cannot make one, and refuses TLS peers at start.
#[derive(Clone)]
pub struct TlsDial {
    #[cfg(feature = "tls")]
    pub(crate) config: Arc<rustls::ClientConfig>,
    /// Keeps it opaque.
    pub(crate) _private: (),
}

/// How long a dial may take, connection and handshake together.
const DIAL_TIMEOUT: Duration = Duration::from_secs(10);

/// Dials `url` for the configured peer `remote`, then pumps the connection until it closes. A
/// failure is reported to the driver, which tells the core. `tls` is the configuration for
/// `wss://` peers (there is one whenever a peer needs it).
pub async fn dial(remote: RemoteId, url: String, ctx: Arc<Context>, tls: Option<TlsDial>) {
    let result = match PeerUrl::parse(&url) {
        Ok(peer) if peer.tls => match tls {
            #[cfg(feature = "tls")]
            Some(tls) => {
                let attempt = async {
                    let tcp = tcp(&peer).await?;
                    let name = crate::tls::server_name(&peer.host)?;
                    let stream = futures_rustls::TlsConnector::from(tls.config)
                        .connect(name, tcp)
                        .await
                        .map_err(|e| format!("TLS: {e}"))?;
                    handshake(&peer, stream, ctx.max_frame_bytes).await
                };
                pump(remote, &url, &ctx, within_time(attempt).await).await
            }
            #[cfg(not(feature = "tls"))]
            Some(_) => Err("this build dials no TLS peers (the tls feature)".to_owned()),
            None => Err("no TLS configuration for a wss:// peer".to_owned()),
        },
        Ok(peer) => {
            let attempt = async {
                let tcp = tcp(&peer).await?;
                handshake(&peer, tcp, ctx.max_frame_bytes).await
            };
            pump(remote, &url, &ctx, within_time(attempt).await).await
        }
        Err(e) => Err(e),
    };
    if let Err(e) = result {
        tracing::warn!(remote = remote.0, "cannot reach peer {url}: {e}");
        let _ = ctx.events.send(DriverEvent::DialFailed { remote }).await;
    }
}

/// `attempt`, or an error once [`DIAL_TIMEOUT`] has passed.
async fn within_time<T>(
    attempt: impl std::future::Future<Output = Result<T, String>>,
) -> Result<T, String> {
    let timeout = async {
        async_io::Timer::after(DIAL_TIMEOUT).await;
        Err(format!("no connection within {DIAL_TIMEOUT:?}"))
    };
    smol::future::or(attempt, timeout).await
}

/// Runs a dialled connection until it closes; the dial's error if there is none.
async fn pump<S>(
    remote: RemoteId,
    url: &str,
    ctx: &Arc<Context>,
    connected: Result<async_tungstenite::WebSocketStream<S>, String>,
) -> Result<(), String>
where
    S: smol::io::AsyncRead + smol::io::AsyncWrite + Unpin + Send + 'static,
{
    let ws = connected?;
    tracing::info!(remote = remote.0, "connected to peer {url}");
    run_socket(ws, ctx.clone(), None, Some(remote), Principal::Peer, None).await;
    tracing::info!(remote = remote.0, "connection to peer {url} closed");
    Ok(())
}

async fn tcp(peer: &PeerUrl) -> Result<TcpStream, String> {
    let stream = TcpStream::connect((peer.host.as_str(), peer.port))
        .await
        .map_err(|e| e.to_string())?;
    let _ = stream.set_nodelay(true);
    Ok(stream)
}

async fn handshake<S>(
    peer: &PeerUrl,
    stream: S,
    max_frame_bytes: usize,
) -> Result<async_tungstenite::WebSocketStream<S>, String>
where
    S: smol::io::AsyncRead + smol::io::AsyncWrite + Unpin,
{
    let request = peer
        .ws_url
        .as_str()
        .into_client_request()
        .map_err(|e| e.to_string())?;
    let (ws, _) = async_tungstenite::client_async_with_config(
        request,
        stream,
        Some(websocket_config(max_frame_bytes)),
    )
    .await
    .map_err(|e| format!("websocket handshake: {e}"))?;
    Ok(ws)
}
