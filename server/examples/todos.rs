//! The todos example: a fibergun server with the todo page, and a Rust program that keeps a
//! list too.
//!
//! ```sh
//! npm ci --prefix examples            # GUN JS's browser bundle, served from examples/node_modules
//! cargo run -p fibergun-server --example todos -- [LISTEN] [DATA_DIR]
//! ```
//!
//! Open `http://LISTEN/todos/?user=demo`: the program adds two items to `demo`'s list if it is
//! empty, and prints the list whenever it changes, whoever changes it (the page, REST, GUN JS).
//! Over REST:
//!
//! ```sh
//! curl -X POST localhost:8765/api/v1/data/todos/demo -d '{"text":"milk","done":false}'
//! curl 'localhost:8765/api/v1/data/todos/demo?depth=1'
//! curl -X PUT localhost:8765/api/v1/data/todos/demo/KEY -d '{"done":true}'
//! curl -X DELETE localhost:8765/api/v1/data/todos/demo/KEY
//! ```

mod support;

use serde_json::json;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let server = support::start_server("./todos-data")?;
    println!("todos at http://{}/todos/?user=demo", server.local_addr());

    let gun = server.gun();
    let list = gun.get("todos").get("demo");
    if list.map().once_blocking()?.is_empty() {
        list.set_blocking(&json!({"text": "try fibergun", "done": true}))?;
        list.set_blocking(&json!({"text": "open this list in two browsers", "done": false}))?;
    }
    let mut live = list.on()?;
    while live.next_blocking().is_some() {
        println!("--- demo's list");
        for (key, item) in list.map().once_blocking()? {
            let mark = if item["done"] == true { "x" } else { " " };
            println!("[{mark}] {} ({key})", item["text"].as_str().unwrap_or("?"));
        }
    }
    Ok(())
}
