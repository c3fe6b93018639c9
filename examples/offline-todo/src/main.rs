//! An offline-first todo list on the command line: a tokio program with a fibergun peer
//! embedded. The list lives in a local LMDB store (`--data`), so every command works without a
//! network; with `--upstream` (a fibergun or GUN JS relay) what it writes is sent there, kept in
//! the store's outbox until the relay acknowledges it, and what it reads is asked of the relay
//! too. A GUN JS app on the same relay sees the same list (`todos`, a set of
//! `{text, done}`).
//!
//! ```sh
//! offline-todo --data ./todo --upstream http://127.0.0.1:8765/gun add "buy milk"
//! offline-todo --data ./todo --upstream http://127.0.0.1:8765/gun list
//! offline-todo --data ./todo --upstream http://127.0.0.1:8765/gun done <id>
//! offline-todo --data ./todo --upstream http://127.0.0.1:8765/gun sync   # send what waits
//! ```
//!
//! The commands that write (and `sync`) end by waiting a few seconds at most for the upstream to
//! acknowledge the writes that wait for it, and say how many still do: those go out the next
//! time a command reaches the relay.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use fibergun_drive::gun::Gun;
use fibergun_drive::RelayConfig;
use fibergun_lmdb::{LmdbStore, DEFAULT_MAP_SIZE};
use fibergun_threads::Relay;
use serde_json::json;

const USAGE: &str =
    "usage: offline-todo --data DIR [--upstream URL]... add TEXT | list | done ID | sync";

/// How long a command waits for its writes to reach the upstream before it leaves them queued.
const SYNC_WAIT: Duration = Duration::from_secs(5);

#[tokio::main]
async fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let (mut data, mut upstreams, mut command) = (None, Vec::new(), Vec::new());
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--data" => data = args.next(),
            "--upstream" => upstreams.extend(args.next()),
            _ => command.push(arg),
        }
    }
    let Some(data) = data else {
        eprintln!("{USAGE}");
        return ExitCode::from(2);
    };
    let store = match LmdbStore::open(data.as_ref(), DEFAULT_MAP_SIZE) {
        Ok(store) => store,
        Err(e) => {
            eprintln!("offline-todo: {e}");
            return ExitCode::FAILURE;
        }
    };
    let config = RelayConfig {
        upstreams,
        threads: 1,
        verify_threads: 1,
        ..RelayConfig::default()
    };
    // The peer runs on threads of its own; its chain API's futures run on tokio (or any other
    // executor), and its blocking calls go to tokio's blocking pool.
    let peer = match Relay::embedded(config, store) {
        Ok(peer) => peer,
        Err(e) => {
            eprintln!("offline-todo: {e}");
            return ExitCode::FAILURE;
        }
    };
    let todos = peer.gun().get("todos");
    let command: Vec<&str> = command.iter().map(String::as_str).collect();
    let wait = if command == ["list"] {
        Duration::ZERO
    } else {
        SYNC_WAIT
    };
    let outcome = match command.as_slice() {
        ["add", text] => todos
            .set(&json!({"text": text, "done": false}))
            .await
            .map(|written| println!("added {}", written.key.unwrap_or(written.soul))),
        ["done", id] => todos
            .get(id)
            .put(&json!({"done": true}))
            .await
            .map(|_| println!("done {id}")),
        ["list"] => list(&peer.gun()).await,
        ["sync"] => Ok(()),
        _ => {
            eprintln!("{USAGE}");
            tokio::task::spawn_blocking(move || peer.shutdown())
                .await
                .ok();
            return ExitCode::from(2);
        }
    };
    if let Err(e) = outcome {
        eprintln!("offline-todo: {e}");
        tokio::task::spawn_blocking(move || peer.shutdown())
            .await
            .ok();
        return ExitCode::FAILURE;
    }
    let peer = tokio::task::spawn_blocking(move || {
        report_sync(&peer, wait);
        peer.shutdown();
    });
    let _ = peer.await;
    ExitCode::SUCCESS
}

/// Prints every todo, `[x]` when done, with its id.
async fn list(gun: &Gun) -> Result<(), fibergun_drive::gun::GunError> {
    let mut items = gun.get("todos").map().once().await?;
    items.sort_by(|a, b| a.0.cmp(&b.0));
    for (id, item) in items {
        let done = if item["done"] == true { "x" } else { " " };
        let text = item["text"].as_str().unwrap_or_default();
        println!("[{done}] {text}  ({id})");
    }
    Ok(())
}

/// Waits up to `wait` for the upstreams to acknowledge what waits for them, and says where it
/// stands.
fn report_sync(peer: &Relay, wait: Duration) {
    let end = Instant::now() + wait;
    loop {
        let status = peer.sync_status();
        if status.is_empty() {
            return println!("local only (no --upstream)");
        }
        // Not known until the peer has read its outbox, just after it starts.
        let waiting: Option<u64> = status.iter().map(|s| s.waiting).sum();
        if waiting == Some(0) {
            return println!("synced");
        }
        if Instant::now() >= end {
            let Some(waiting) = waiting else {
                return println!("not synced yet");
            };
            let offline = status.iter().filter(|s| !s.connected).count();
            return println!(
                "{waiting} write(s) waiting for the upstream ({offline} of {} unreachable); kept for the next time",
                status.len()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}
