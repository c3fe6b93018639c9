//! The physical limit of the network path: a bare server on the same WebSocket stack
//! (smol and async-tungstenite) that answers every message with nothing but its `@`, at once,
//! writing queued replies together as fibergun's writers do. Whatever fibergun does beyond this
//! (parsing, merging, storing, subscribing) is what the fibergun / limit column shows.

use async_tungstenite::tungstenite::Message;
use futures_util::{FutureExt, SinkExt, StreamExt};

/// The id of a message, found without parsing it: the string after `"#":"`.
fn message_ids(text: &str) -> impl Iterator<Item = &str> {
    text.match_indices("\"#\":\"").filter_map(move |(at, _)| {
        let rest = &text[at + 5..];
        let end = rest.find('"')?;
        // Only a message's own `#` ends in '.' (the load generator's ids); souls inside puts do not.
        rest[..end].ends_with('.').then(|| &rest[..end])
    })
}

/// Serves until the process is killed.
pub fn serve(listen: &str) -> Result<(), String> {
    smol::block_on(async {
        let listener = smol::net::TcpListener::bind(listen)
            .await
            .map_err(|e| format!("listen {listen}: {e}"))?;
        loop {
            let (stream, _) = listener.accept().await.map_err(|e| e.to_string())?;
            let _ = stream.set_nodelay(true);
            smol::spawn(async move {
                let Ok(ws) = async_tungstenite::accept_async(stream).await else {
                    return;
                };
                let (mut tx, mut rx) = ws.split();
                while let Some(Ok(first)) = rx.next().await {
                    // Answer everything already readable, then flush once, as fibergun does.
                    let mut msg = Some(first);
                    while let Some(m) = msg.take() {
                        if let Message::Text(text) = m {
                            for id in message_ids(text.as_str()) {
                                let reply = format!(r##"{{"#":"a","@":"{id}","ok":true}}"##);
                                if tx.feed(Message::text(reply)).await.is_err() {
                                    return;
                                }
                            }
                        }
                        msg = match rx.next().now_or_never() {
                            Some(Some(Ok(next))) => Some(next),
                            _ => None,
                        };
                    }
                    if tx.flush().await.is_err() {
                        break;
                    }
                }
            })
            .detach();
        }
    })
}
