//! The sans-IO client (`fibergun::client`) against a real core: paths, nested objects as linked
//! nodes the way GUN JS makes them, sets, subscriptions, paged reads and refusals.

use fibergun::client::{
    Client, ClientError, ClientEvent, ClientInput, ClientOutput, OpId, Reply, SubId,
};
use fibergun::testing::{Harness, START_WALL_MS};
use fibergun::{Config, Limits};
use serde_json::{json, Value as Json};

/// A core and clients connected to it, carried frame by frame until both are quiet.
struct World {
    relay: Harness,
    clients: Vec<(u64, Client)>,
    events: Vec<(usize, ClientEvent)>,
}

impl World {
    fn new(clients: usize) -> World {
        World::with_config(clients, Config::default())
    }

    fn with_config(clients: usize, config: Config) -> World {
        let mut relay = Harness::new(config);
        let clients = (0..clients)
            .map(|i| {
                let conn = 100 + i as u64;
                relay.connect(conn);
                (conn, Client::new(7 + i as u64, Limits::default()))
            })
            .collect();
        let mut w = World {
            relay,
            clients,
            events: Vec::new(),
        };
        w.settle();
        w
    }

    fn settle(&mut self) {
        loop {
            let mut moved = false;
            for (i, (conn, client)) in self.clients.iter_mut().enumerate() {
                while let Some(output) = client.poll_output() {
                    match output {
                        ClientOutput::Send { text } => {
                            self.relay.frame(*conn, &text);
                            moved = true;
                        }
                        ClientOutput::Event(e) => self.events.push((i, e)),
                    }
                }
            }
            let frames = std::mem::take(&mut self.relay.frames);
            let now = self.relay.now;
            for (conn, text) in frames {
                if let Some((_, client)) = self.clients.iter_mut().find(|(c, _)| *c == conn.0) {
                    client
                        .handle_input(now, ClientInput::Frame { text: &text })
                        .expect("a frame is never a misuse");
                    moved = true;
                }
            }
            if !moved {
                return;
            }
        }
    }

    /// A new relay on the same store (so nothing is cached), with every client reconnected.
    fn restart_relay(&mut self, config: Config) {
        let store = std::mem::replace(&mut self.relay.store, fibergun::MemStore::new());
        let now = self.relay.now;
        self.relay = Harness::new(config);
        self.relay.store = store;
        self.relay.now = now;
        for (conn, _) in &self.clients {
            self.relay.connect(*conn);
        }
    }

    fn client(&mut self, i: usize) -> &mut Client {
        &mut self.clients[i].1
    }

    fn result(&mut self, i: usize, op: OpId) -> Result<Reply, ClientError> {
        self.settle();
        let at = self
            .events
            .iter()
            .position(|(c, e)| *c == i && matches!(e, ClientEvent::Done { op: o, .. } if *o == op))
            .unwrap_or_else(|| panic!("op {op:?} of client {i} did not finish"));
        match self.events.remove(at).1 {
            ClientEvent::Done { result, .. } => result,
            _ => unreachable!(),
        }
    }

    /// The wall clock for a write: a millisecond later each time, so no state is in the future.
    fn now(&mut self) -> f64 {
        self.relay.advance(1);
        self.relay.now.wall_ms
    }

    fn put(&mut self, i: usize, path: &[&str], value: Json) -> Reply {
        let now = self.now();
        let op = self.client(i).put(path, value, now);
        self.result(i, op).expect("the put is acknowledged")
    }

    fn read(&mut self, i: usize, path: &[&str], depth: usize) -> Option<Json> {
        let op = self.client(i).read(path, depth);
        match self.result(i, op).expect("the read succeeds") {
            Reply::Read(found) => found,
            other => panic!("a read gave {other:?}"),
        }
    }

    fn changes(&mut self, i: usize, sub: SubId) -> Vec<Json> {
        self.settle();
        let mut out = Vec::new();
        self.events.retain(|(c, e)| match e {
            ClientEvent::Changed { sub: s, node, .. } if *c == i && *s == sub => {
                out.push(node.clone());
                false
            }
            _ => true,
        });
        out
    }
}

/// A relay whose pages are small (2 KiB of values), so answers come in several.
fn small_pages() -> Config {
    Config {
        limits: Limits {
            batch_frame_bytes: 4096,
            ..Limits::default()
        },
        ..Config::default()
    }
}

#[test]
fn a_nested_object_is_written_as_linked_nodes_and_read_back_as_a_tree() {
    let mut w = World::new(2);
    let person =
        json!({"name": "bob", "age": 42, "address": {"city": "Paris", "geo": {"lat": 48.85}}});
    let reply = w.put(0, &["person"], person.clone());
    assert_eq!(
        reply,
        Reply::Written {
            soul: "person".into(),
            key: None
        }
    );
    // Souls are the path, as GUN JS makes them.
    let raw = w.read(1, &["person"], 0).unwrap();
    assert_eq!(raw["address"], json!({"#": "person/address"}));
    let geo = w.read(1, &["person/address/geo"], 0).unwrap();
    assert_eq!(geo, json!({"lat": 48.85}));
    // Read as a tree, and by path.
    let tree = w.read(1, &["person"], 5).unwrap();
    assert_eq!(
        tree,
        json!({"name": "bob", "age": 42, "address": {"city": "Paris", "geo": {"lat": 48.85}}})
    );
    assert_eq!(
        w.read(1, &["person", "address", "city"], 0),
        Some(json!("Paris"))
    );
    assert_eq!(w.read(1, &["person", "address", "zip"], 0), None);
    assert_eq!(w.read(1, &["nobody"], 3), None);
}

#[test]
fn writes_along_a_path_reuse_existing_links_and_create_missing_ones() {
    let mut w = World::new(1);
    // An existing link somewhere else than the path soul.
    w.put(0, &["elsewhere"], json!({"x": 1}));
    let relay = &mut w.relay;
    relay.frame(
        100,
        r##"{"#":"l1","put":{"root":{"_":{"#":"root",">":{"child":1}},"child":{"#":"elsewhere"}}}}"##,
    );
    w.settle();
    w.put(0, &["root", "child", "deep", "leaf"], json!("v"));
    // The existing link was followed; the missing hop was created as a path soul.
    assert_eq!(
        w.read(0, &["elsewhere"], 0).unwrap()["deep"],
        json!({"#": "elsewhere/deep"})
    );
    assert_eq!(w.read(0, &["elsewhere/deep", "leaf"], 0), Some(json!("v")));
    assert_eq!(
        w.read(0, &["root", "child", "deep", "leaf"], 0),
        Some(json!("v"))
    );
    // A nested object lands on the node an existing link points at.
    w.put(0, &["root"], json!({"child": {"y": 2}}));
    assert_eq!(w.read(0, &["elsewhere", "y"], 0), Some(json!(2)));
}

#[test]
fn set_adds_items_under_new_keys_and_map_reads_them() {
    let mut w = World::new(2);
    let first = w.put(0, &["todos"], json!({"title": "list"}));
    assert!(matches!(first, Reply::Written { .. }));
    let now = w.now();
    let op = w.client(0).set(
        &["todos", "items"],
        json!({"text": "milk", "done": false}),
        now,
    );
    let Reply::Written { soul, key } = w.result(0, op).unwrap() else {
        panic!("not a write")
    };
    assert_eq!(Some(soul.clone()), key, "an object item's soul is its key");
    let now = w.now();
    let op = w.client(0).set(&["todos", "items"], json!("plain"), now);
    let Reply::Written {
        key: Some(plain_key),
        ..
    } = w.result(0, op).unwrap()
    else {
        panic!("not a write")
    };
    let items = w.read(1, &["todos", "items"], 1).unwrap();
    let items = items.as_object().unwrap();
    assert_eq!(items.len(), 2);
    assert_eq!(items[&soul], json!({"text": "milk", "done": false}));
    assert_eq!(items[&plain_key], json!("plain"));
}

#[test]
fn subscriptions_see_the_current_node_then_every_change_including_their_own() {
    let mut w = World::new(2);
    w.put(0, &["chat", "room1"], json!({"topic": "rust"}));
    let sub = w.client(1).subscribe(&["chat", "room1"]).unwrap();
    assert_eq!(w.changes(1, sub), vec![json!({"topic": "rust"})]);
    // Another client's write is pushed.
    w.put(0, &["chat", "room1"], json!({"m1": "hello"}));
    assert_eq!(
        w.changes(1, sub),
        vec![json!({"topic": "rust", "m1": "hello"})]
    );
    // Its own write too.
    w.put(1, &["chat", "room1"], json!({"m2": "hi back"}));
    let own = w.changes(1, sub);
    assert_eq!(own.len(), 1);
    assert_eq!(own[0]["m2"], json!("hi back"));
    // Off: nothing more.
    w.client(1).unsubscribe(sub);
    w.put(0, &["chat", "room1"], json!({"m3": "gone"}));
    assert!(w.changes(1, sub).is_empty());
}

#[test]
fn a_subscription_to_a_path_not_written_yet_sees_its_first_write() {
    let mut w = World::new(2);
    let sub = w.client(1).subscribe(&["rooms", "new"]).unwrap();
    assert!(w.changes(1, sub).is_empty());
    w.put(0, &["rooms", "new"], json!({"first": 1}));
    assert_eq!(w.changes(1, sub), vec![json!({"first": 1})]);
}

#[test]
fn bad_values_are_refused_before_sending_and_relay_errors_come_back() {
    let mut w = World::new(1);
    let sent_before = w.relay.frames.len();
    for (path, value) in [
        (vec!["a"], json!([1, 2])),
        (vec!["a"], json!("a value needs a key")),
        (vec!["a", "k"], json!({"list": [1]})),
        (vec![], json!({"x": 1})),
        (vec!["a", "_"], json!(1)),
    ] {
        let op = w.client(0).put(&path, value.clone(), START_WALL_MS);
        let result = w.result(0, op);
        assert!(
            matches!(result, Err(ClientError::Invalid(_))),
            "{path:?} {value}: {result:?}"
        );
    }
    assert_eq!(w.relay.frames.len(), sent_before, "nothing was sent");
    // A write into a user's space without a signature: refused by the relay, with its reason.
    let op = w
        .client(0)
        .put(&["~abc.def", "name"], json!("x"), START_WALL_MS);
    assert_eq!(
        w.result(0, op),
        Err(ClientError::Refused("Unverified data.".into()))
    );
}

#[test]
fn a_node_larger_than_a_page_is_read_whole() {
    let mut w = World::with_config(1, small_pages());
    let mut big = serde_json::Map::new();
    for i in 0..200 {
        big.insert(format!("k{i:03}"), json!("x".repeat(100)));
    }
    w.put(0, &["big"], Json::Object(big.clone()));
    // A fresh client reads it from a relay that has not cached it: the answer comes page by
    // page from the store.
    w.clients.push((200, Client::new(99, Limits::default())));
    w.restart_relay(small_pages());
    let node = w.read(1, &["big"], 0).unwrap();
    assert_eq!(node.as_object().unwrap().len(), 200);
    // On the wire: several replies, every one but the last marked as having more to come.
    w.relay.connect(300);
    w.relay.frame(300, r##"{"#":"raw","get":{"#":"big"}}"##);
    let replies = w.relay.replies_to(300, "raw");
    assert!(replies.len() > 2, "{} replies", replies.len());
    let (last, rest) = replies.split_last().unwrap();
    assert!(rest.iter().all(|r| r["more"] == json!(true)));
    assert!(last.get("more").is_none());
}

#[test]
fn a_paged_answer_whose_last_page_is_empty_still_ends() {
    let mut w = World::with_config(1, small_pages());
    // Two values of 1,024 bytes fill the first page (2,048 bytes) exactly, so the page after
    // it is empty.
    let mut exact = serde_json::Map::new();
    for i in 0..2 {
        exact.insert(format!("k{i}"), json!("y".repeat(1024)));
    }
    w.put(0, &["exact"], Json::Object(exact));
    w.restart_relay(small_pages());
    w.relay.connect(300);
    w.relay.frame(300, r##"{"#":"raw","get":{"#":"exact"}}"##);
    let replies = w.relay.replies_to(300, "raw");
    let (last, rest) = replies.split_last().unwrap();
    assert!(rest.iter().all(|r| r["more"] == json!(true)), "{replies:?}");
    assert!(last.get("more").is_none(), "{replies:?}");
    assert_eq!(
        last["put"],
        json!({"exact": {"_": {"#": "exact", ">": {}}}}),
        "an empty last page ends the answer with an empty node: {replies:?}"
    );
    w.clients.push((200, Client::new(99, Limits::default())));
    w.relay.connect(200);
    let node = w.read(1, &["exact"], 0).unwrap();
    assert_eq!(node.as_object().unwrap().len(), 2);
}

/// One generic driver steps both machines: it feeds an input at `now` and drains every output.
fn step<M: fibergun::Machine>(
    machine: &mut M,
    now: fibergun::Now,
    input: M::Input<'_>,
) -> Vec<M::Output> {
    machine
        .handle_input(now, input)
        .expect("the driver follows the contract");
    std::iter::from_fn(|| machine.poll_output()).collect()
}

#[test]
fn one_generic_driver_steps_a_client_and_a_peer() {
    use fibergun::{ConnId, Direction, Input, MemStore, Output, Peer, Store};
    let now = fibergun::Now {
        mono: std::time::Instant::now(),
        wall_ms: START_WALL_MS,
    };
    let mut peer = Peer::new(Config::default(), now);
    let mut store = MemStore::new();
    let mut client = Client::new(7, Limits::default());
    let conn = ConnId(1);
    let connected = Input::Connected {
        conn,
        direction: Direction::Inbound,
    };
    let mut to_peer: Vec<String> = Vec::new();
    let mut to_client: Vec<String> = Vec::new();
    let mut events = Vec::new();
    for out in step(&mut peer, now, connected) {
        if let Output::Send { text, .. } = out {
            to_client.push(text);
        }
    }
    let write = client.put(&["greeting"], json!({"text": "hello"}), START_WALL_MS);
    to_peer.extend(
        std::iter::from_fn(|| client.poll_output()).filter_map(|o| match o {
            ClientOutput::Send { text } => Some(text),
            ClientOutput::Event(e) => {
                events.push(e);
                None
            }
        }),
    );
    // Carry frames both ways, storage in between, until both are quiet.
    while !to_peer.is_empty() || !to_client.is_empty() {
        let mut ops = Vec::new();
        for text in std::mem::take(&mut to_peer) {
            for out in step(&mut peer, now, Input::Frame { conn, text: &text }) {
                match out {
                    Output::Send { text, .. } => to_client.push(text),
                    Output::Store(op) => ops.push(op),
                    Output::Close { .. }
                    | Output::Event(_)
                    | Output::Verify { .. }
                    | Output::Dial { .. } => {}
                }
            }
        }
        let ids: Vec<_> = ops.iter().map(|op| op.id()).collect();
        for (op, result) in ids.into_iter().zip(store.apply(ops)) {
            for out in step(&mut peer, now, Input::StoreDone { op, result }) {
                if let Output::Send { text, .. } = out {
                    to_client.push(text);
                }
            }
        }
        for text in std::mem::take(&mut to_client) {
            for out in step(&mut client, now, ClientInput::Frame { text: &text }) {
                match out {
                    ClientOutput::Send { text } => to_peer.push(text),
                    ClientOutput::Event(e) => events.push(e),
                }
            }
        }
    }
    let done = events.iter().find_map(|e| match e {
        ClientEvent::Done { op, result } if *op == write => Some(result.clone()),
        _ => None,
    });
    assert!(
        matches!(done, Some(Ok(Reply::Written { .. }))),
        "{events:?}"
    );
    assert!(
        store.nodes.contains_key("greeting"),
        "the write reached the store"
    );
    assert_eq!(client.poll_timeout(), None, "the client arms no timer");
    assert!(
        peer.poll_timeout().is_some(),
        "the peer's keepalive is armed"
    );
}

#[test]
fn states_are_whole_milliseconds_as_gun_s_clock_gives_them() {
    // A fraction from the wall clock would put the state up to 1 ms ahead of a GUN JS relay on the
    // same clock, and GUN JS never acknowledges a write it deferred as from the future.
    let mut w = World::new(1);
    let state = |w: &World, key: &str| {
        let soul = fibergun::Soul::new("doc").unwrap();
        let key = fibergun::Key::new(key).unwrap();
        w.relay.store.nodes[&soul][&key].state.ms()
    };
    let now = w.now();
    let op = w.client(0).put(&["doc"], json!({"a": 1}), now + 0.75);
    w.result(0, op).expect("acknowledged");
    assert_eq!(state(&w, "a"), now);
    // A second write in the same millisecond comes after the first, as GUN's clock orders them.
    let op = w.client(0).put(&["doc"], json!({"b": 2}), now + 0.9);
    w.settle();
    // The relay holds a write from its future until its clock reaches the write's state.
    w.relay.advance(1);
    w.result(0, op).expect("acknowledged");
    assert_eq!(state(&w, "b"), now + 0.001);
}
