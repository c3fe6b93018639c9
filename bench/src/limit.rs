//! The physical limit of the network path: a bare server on the same WebSocket stack
//! (smol and async-tungstenite) that answers every message with nothing but its `@`, at once,
//! packing the replies to everything already read into one frame, as fibergun does. Whatever fibergun does beyond this
//! (parsing, merging, storing, subscribing) is what the fibergun / limit column shows.

use async_tungstenite::tungstenite::Message;
use std::fmt::Write as _;

use futures_util::{FutureExt, StreamExt};

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
                let mut replies = String::new();
                while let Some(Ok(first)) = rx.next().await {
                    // Answer everything already readable in one array frame, as fibergun packs
                    // its replies.
                    replies.clear();
                    let mut msg = Some(first);
                    while let Some(m) = msg.take() {
                        if let Message::Text(text) = m {
                            for id in message_ids(text.as_str()) {
                                replies.push(if replies.is_empty() { '[' } else { ',' });
                                let _ = write!(replies, r##"{{"#":"a","@":"{id}","ok":true}}"##);
                            }
                        }
                        msg = match rx.next().now_or_never() {
                            Some(Some(Ok(next))) => Some(next),
                            _ => None,
                        };
                    }
                    if replies.is_empty() {
                        continue;
                    }
                    replies.push(']');
                    if tx.send(Message::text(replies.as_str())).await.is_err() {
                        break;
                    }
                }
            })
            .detach();
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_message_ids_but_not_souls() {
        let frame = r##"[{"#":"r.0.1.","put":{"s":{"_":{"#":"s",">":{"v":1}},"v":"x"}}},{"#":"r.0.2.","get":{"#":"s"}}]"##;
        assert_eq!(message_ids(frame).collect::<Vec<_>>(), ["r.0.1.", "r.0.2."]);
    }
}
