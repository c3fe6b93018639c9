//! The physical limit of the network path: a bare server on the same WebSocket stack
//! (smol and async-tungstenite) that answers every message with nothing but its `@`, at once,
//! packing the replies to everything already read into one frame, as fibergun does. Whatever fibergun does beyond this
//! (parsing, merging, storing, subscribing) is what the fibergun / limit column shows.
//!
//! It is also the fan-out limit: a GET subscribes its connection to the soul it names, and a
//! put is forwarded, as the frame it came in, to every connection subscribed to its soul, from
//! the writer's own task, before the writer's ack. No parse, no store, no queue.

use async_tungstenite::tungstenite::Message;
use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex};

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

/// The string that follows `marker` in `text`, up to the next quote (a soul, for the load
/// generator's frames: `"get":{"#":"` names a read's soul, `"put":{"` a write's first).
fn string_after<'a>(text: &'a str, marker: &str) -> Option<&'a str> {
    let rest = &text[text.find(marker)? + marker.len()..];
    Some(&rest[..rest.find('"')?])
}

type Sink = async_tungstenite::WebSocketSender<smol::net::TcpStream>;
/// A connection's sending half, shared by its own task (acks) and writers to souls it reads.
type SharedSink = Arc<smol::lock::Mutex<Sink>>;
/// The connections subscribed to each soul.
type Subscribers = Arc<Mutex<HashMap<String, Vec<SharedSink>>>>;

/// Serves until the process is killed.
pub fn serve(listen: &str) -> Result<(), String> {
    smol::block_on(async {
        let listener = smol::net::TcpListener::bind(listen)
            .await
            .map_err(|e| format!("listen {listen}: {e}"))?;
        let subscribers = Subscribers::default();
        loop {
            let (stream, _) = listener.accept().await.map_err(|e| e.to_string())?;
            let _ = stream.set_nodelay(true);
            let subscribers = subscribers.clone();
            smol::spawn(async move {
                // fibergun's own WebSocket settings (its small read buffer among them).
                let config =
                    fibergun_smol::websocket_config(fibergun::Limits::default().max_frame_bytes);
                let Ok(ws) =
                    async_tungstenite::accept_async_with_config(stream, Some(config)).await
                else {
                    return;
                };
                let (tx, mut rx) = ws.split();
                let tx: SharedSink = Arc::new(smol::lock::Mutex::new(tx));
                let mut replies = String::new();
                while let Some(Ok(first)) = rx.next().await {
                    // Answer everything already readable in one array frame, as fibergun packs
                    // its replies.
                    replies.clear();
                    let mut msg = Some(first);
                    while let Some(m) = msg.take() {
                        if let Message::Text(text) = m {
                            fan_out(text.as_str(), &tx, &subscribers).await;
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
                    if tx
                        .lock()
                        .await
                        .send(Message::text(replies.as_str()))
                        .await
                        .is_err()
                    {
                        break;
                    }
                }
            })
            .detach();
        }
    })
}

/// Subscribes `tx` to the soul a GET names, or sends a put to every subscriber of its soul.
async fn fan_out(text: &str, tx: &SharedSink, subscribers: &Subscribers) {
    if let Some(soul) = string_after(text, "\"get\":{\"#\":\"") {
        let mut subs = subscribers.lock().expect("lock");
        let readers = subs.entry(soul.to_owned()).or_default();
        if !readers.iter().any(|r| Arc::ptr_eq(r, tx)) {
            readers.push(tx.clone());
        }
        return;
    }
    let Some(soul) = string_after(text, "\"put\":{\"") else {
        return;
    };
    let readers = subscribers.lock().expect("lock").get(soul).cloned();
    for reader in readers.unwrap_or_default() {
        let _ = reader.lock().await.send(Message::text(text)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_message_ids_but_not_souls() {
        let frame = r##"[{"#":"r.0.1.","put":{"s":{"_":{"#":"s",">":{"v":1}},"v":"x"}}},{"#":"r.0.2.","get":{"#":"s"}}]"##;
        assert_eq!(message_ids(frame).collect::<Vec<_>>(), ["r.0.1.", "r.0.2."]);
    }

    #[test]
    fn finds_the_soul_of_a_get_and_of_a_put() {
        let get = r##"{"#":"s1.","get":{"#":"f1/room"}}"##;
        let put = r##"{"#":"w1.","put":{"f1/room":{"_":{"#":"f1/room",">":{"u1":1}},"u1":"x"}}}"##;
        assert_eq!(string_after(get, "\"get\":{\"#\":\""), Some("f1/room"));
        assert_eq!(string_after(put, "\"put\":{\""), Some("f1/room"));
        assert_eq!(string_after(put, "\"get\":{\"#\":\""), None);
    }
}
