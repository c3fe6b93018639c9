//! Dialling configured peers: a TCP connection and a WebSocket handshake, then the same socket
//! pump as accepted connections. The core decides when to dial and when to try again.

use std::sync::Arc;
use std::time::Duration;

use async_tungstenite::tungstenite::client::IntoClientRequest;
use fibergun::RemoteId;
use fibergun_host::PeerUrl;
use smol::net::TcpStream;

use crate::http::{run_socket, websocket_config, DriverEvent, HttpContext};

/// How long a dial may take, connection and handshake together.
const DIAL_TIMEOUT: Duration = Duration::from_secs(10);

/// Dials `url` for the configured peer `remote`, then pumps the connection until it closes. A
/// failure is reported to the driver, which tells the core.
pub async fn dial(remote: RemoteId, url: String, ctx: Arc<HttpContext>) {
    let attempt = async {
        let ws = connect(&url, ctx.max_frame_bytes).await?;
        Ok::<_, String>(ws)
    };
    let timeout = async {
        async_io::Timer::after(DIAL_TIMEOUT).await;
        Err(format!("no connection within {DIAL_TIMEOUT:?}"))
    };
    match smol::future::or(attempt, timeout).await {
        Ok(ws) => {
            tracing::info!(remote = remote.0, "connected to peer {url}");
            run_socket(
                ws,
                ctx,
                Some(remote),
                fibergun::access::Principal::Peer,
                None,
            )
            .await;
            tracing::info!(remote = remote.0, "connection to peer {url} closed");
        }
        Err(e) => {
            tracing::warn!(remote = remote.0, "cannot reach peer {url}: {e}");
            let _ = ctx.events.send(DriverEvent::DialFailed { remote }).await;
        }
    }
}

async fn connect(
    url: &str,
    max_frame_bytes: usize,
) -> Result<async_tungstenite::WebSocketStream<TcpStream>, String> {
    let peer = PeerUrl::parse(url)?;
    let stream = TcpStream::connect((peer.host.as_str(), peer.port))
        .await
        .map_err(|e| e.to_string())?;
    let _ = stream.set_nodelay(true);
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
