//! The chat example: a fibergun server with the chat page, and a Rust program in the room.
//!
//! ```sh
//! npm ci --prefix examples            # GUN JS's browser bundle, served from examples/node_modules
//! cargo run -p fibergun-server --example chat -- [LISTEN] [DATA_DIR]
//! ```
//!
//! Then open `http://LISTEN/chat/?room=lobby` in two browsers. The program follows room `lobby`
//! through the Rust chain API: it prints every message, and answers `!time` with the time.
//! Over REST: `curl -X POST localhost:8765/api/v1/data/chat/lobby -d '{"who":"curl","text":"hi","at":1}'`.

mod support;

use serde_json::json;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let server = support::start_server("./chat-data")?;
    println!("chat at http://{}/chat/?room=lobby", server.local_addr());

    let gun = server.gun();
    let room = gun.get("chat").get("lobby");
    room.set_blocking(&json!({"who": "fibergun", "text": "welcome to #lobby", "at": now()}))?;
    let mut live = room.on()?;
    let mut seen = std::collections::HashSet::new();
    while let Some(change) = live.next_blocking() {
        for key in change.changed {
            if !seen.insert(key.clone()) {
                continue;
            }
            let Some(msg) = room.get(&key).once_blocking()? else {
                continue;
            };
            let (who, text) = (msg["who"].as_str().unwrap_or("?"), msg["text"].as_str());
            let Some(text) = text else { continue };
            println!("{who}: {text}");
            if text == "!time" {
                let reply = format!("it is {} ms since 1970", now());
                room.set_blocking(&json!({"who": "fibergun", "text": reply, "at": now()}))?;
            }
        }
    }
    Ok(())
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
