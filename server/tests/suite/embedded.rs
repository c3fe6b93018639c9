//! The chain API of a relay embedded through the runtime's library (`fibergun_drive::gun`, on
//! an LMDB store the program opens): put, once, load, map, set, delete, on/off, in blocking and
//! async form; durability across a restart; both ways with GUN JS; and a peer embedded on a
//! memory store that syncs with an upstream relay, offline and back.

use std::time::{Duration, Instant};

use crate::runtime::Relay;
use fibergun_drive::gun::{Gun, GunError, Subscription};
use fibergun_drive::RelayConfig;
use fibergun_lmdb::{LmdbStore, DEFAULT_MAP_SIZE};
use fibergun_testkit::gunjs::{ensure_node_deps, expect_success, run_node};
use serde::Serialize;
use serde_json::{json, Value as Json};

fn start(dir: &std::path::Path) -> Relay {
    start_on(dir, "127.0.0.1:0".parse().unwrap())
}

fn start_on(dir: &std::path::Path, listen: std::net::SocketAddr) -> Relay {
    let store = LmdbStore::open(dir, DEFAULT_MAP_SIZE).expect("the store opens");
    let config = RelayConfig {
        listen,
        threads: 2,
        verify_threads: 1,
        ..RelayConfig::default()
    };
    Relay::start(config, store).expect("the relay starts")
}

/// Waits for a change whose node satisfies `pred`.
fn wait_for(sub: &mut Subscription, what: &str, pred: impl Fn(&Json) -> bool) -> Json {
    let end = Instant::now() + Duration::from_secs(10);
    while Instant::now() < end {
        match sub.try_next() {
            Some(change) if pred(&change.node) => return change.node,
            Some(_) => {}
            None => std::thread::sleep(Duration::from_millis(5)),
        }
    }
    panic!("no change {what} within 10 s");
}

#[derive(Serialize)]
struct Person {
    name: String,
    age: u32,
    address: Address,
}

#[derive(Serialize)]
struct Address {
    city: String,
}

#[test]
fn the_chain_api_reads_and_writes_the_graph() {
    let dir = fibergun_testkit::temp_data_dir();
    let server = start(dir.path());
    let gun = server.gun();

    // put of a serde value: nested structs become linked nodes.
    let ann = Person {
        name: "Ann".into(),
        age: 31,
        address: Address {
            city: "Oslo".into(),
        },
    };
    let written = gun.get("people").get("ann").put_blocking(&ann).unwrap();
    assert_eq!(written.soul, "people/ann");
    assert_eq!(
        gun.get("people").get("ann").once_blocking().unwrap(),
        Some(json!({"name": "Ann", "age": 31, "address": {"#": "people/ann/address"}}))
    );
    assert_eq!(
        gun.get("people").load_blocking(3).unwrap(),
        Some(json!({"ann": {"name": "Ann", "age": 31, "address": {"city": "Oslo"}}}))
    );
    assert_eq!(
        gun.get("people")
            .get("ann")
            .get("address")
            .get("city")
            .once_blocking()
            .unwrap(),
        Some(json!("Oslo"))
    );
    assert_eq!(gun.get("nobody").once_blocking().unwrap(), None);

    // A value under a key, then merged objects.
    gun.get("people")
        .get("ann")
        .get("age")
        .put_blocking(&32)
        .unwrap();
    gun.get("people")
        .get("ann")
        .put_blocking(&json!({"email": "ann@example.org"}))
        .unwrap();
    let now = gun
        .get("people")
        .get("ann")
        .once_blocking()
        .unwrap()
        .unwrap();
    assert_eq!(
        (now["age"].clone(), now["name"].clone()),
        (json!(32), json!("Ann"))
    );
    assert_eq!(now["email"], json!("ann@example.org"));

    // set and map.
    let todos = gun.get("todos").get("ann");
    let milk = todos
        .set_blocking(&json!({"text": "milk", "done": false}))
        .unwrap();
    todos
        .set_blocking(&json!({"text": "bread", "done": false}))
        .unwrap();
    let items = todos.map().once_blocking().unwrap();
    assert_eq!(items.len(), 2);
    let key = milk.key.clone().unwrap();
    todos
        .get(&key)
        .put_blocking(&json!({"done": true}))
        .unwrap();
    let items = todos.map().once_blocking().unwrap();
    let milk_now = items.iter().find(|(k, _)| *k == key).unwrap();
    assert_eq!(milk_now.1, json!({"text": "milk", "done": true}));

    // delete: an item (its key in the set becomes null, so map leaves it out), then a value.
    todos.get(&key).delete_blocking().unwrap();
    assert_eq!(todos.get(&key).once_blocking().unwrap(), Some(Json::Null));
    assert_eq!(todos.map().once_blocking().unwrap().len(), 1);
    assert_eq!(
        todos.get(&key).delete_blocking().unwrap(),
        None,
        "already deleted"
    );
    gun.get("people")
        .get("ann")
        .get("email")
        .delete_blocking()
        .unwrap();
    assert_eq!(
        gun.get("people")
            .get("ann")
            .get("email")
            .once_blocking()
            .unwrap(),
        Some(Json::Null)
    );

    // Bad input is refused, with a reason.
    assert!(matches!(
        gun.get("x").put_blocking(&json!([1, 2])),
        Err(GunError::Invalid(_))
    ));
    assert!(matches!(
        gun.get("x").put_blocking(&"needs a key"),
        Err(GunError::Invalid(_))
    ));
    assert!(matches!(
        gun.get("~someone.key").get("name").put_blocking(&"unsigned"),
        Err(GunError::Refused(e)) if e == "Unverified data."
    ));
    server.shutdown();
}

#[test]
fn subscriptions_see_other_handles_and_their_own_writes_until_off() {
    let dir = fibergun_testkit::temp_data_dir();
    let server = start(dir.path());
    let (watcher, writer) = (server.gun(), server.gun());
    let room = watcher.get("chat").get("room1");
    room.put_blocking(&json!({"topic": "rust"})).unwrap();
    let mut live = room.on().unwrap();
    wait_for(&mut live, "with the current node", |n| n["topic"] == "rust");
    writer
        .get("chat")
        .get("room1")
        .put_blocking(&json!({"m1": "hello"}))
        .unwrap();
    wait_for(&mut live, "from the other handle", |n| n["m1"] == "hello");
    room.put_blocking(&json!({"m2": "own"})).unwrap();
    wait_for(&mut live, "from its own write", |n| n["m2"] == "own");
    live.off();
    // Closing a handle fails what is in flight and what comes after.
    watcher.close();
    assert_eq!(room.once_blocking(), Err(GunError::Closed));
    // The other handle goes on.
    assert!(writer
        .get("chat")
        .get("room1")
        .once_blocking()
        .unwrap()
        .is_some());
    server.shutdown();
}

#[test]
fn the_async_api_runs_on_any_executor() {
    let dir = fibergun_testkit::temp_data_dir();
    let server = start(dir.path());
    let gun: Gun = server.gun();
    let read = futures_lite::future::block_on(async {
        let list = gun.get("async").get("list");
        for i in 0..20 {
            list.set(&json!({ "i": i })).await?;
        }
        let mut live = list.on()?;
        let first = live.next().await.expect("the current node");
        let items = list.map().once().await?;
        Ok::<_, GunError>((first, items))
    })
    .unwrap();
    assert_eq!(read.0.node.as_object().unwrap().len(), 20);
    assert_eq!(read.1.len(), 20);
    server.shutdown();
}

#[test]
fn acknowledged_writes_survive_a_restart() {
    let dir = fibergun_testkit::temp_data_dir();
    let server = start(dir.path());
    let gun = server.gun();
    for i in 0..50 {
        gun.get("durable")
            .get(&format!("k{i}"))
            .put_blocking(&i)
            .unwrap();
    }
    drop(gun);
    server.shutdown();
    let again = start(dir.path());
    let node = again.gun().get("durable").once_blocking().unwrap().unwrap();
    assert_eq!(node.as_object().unwrap().len(), 50);
    assert_eq!(node["k49"], json!(49));
    again.shutdown();
}

#[test]
fn gun_js_and_the_embedded_api_see_each_other() {
    ensure_node_deps();
    let dir = fibergun_testkit::temp_data_dir();
    let server = start(dir.path());
    let gun = server.gun();
    let run = format!("{}", std::process::id());
    gun.get(&format!("rust-{run}"))
        .put_blocking(&json!({"name": "Ferris", "address": {"city": "Berlin"}}))
        .unwrap();
    let mut live = gun.get(&format!("js-{run}")).on().unwrap();
    let url = format!("http://{}/gun", server.local_addr());
    let node = run_node("embedded_peer.js", &[&url, &run]);
    expect_success(&node, "node embedded_peer.js");
    wait_for(&mut live, "from GUN JS", |n| n["title"] == "from js");
    let tree = gun
        .get(&format!("js-{run}"))
        .load_blocking(2)
        .unwrap()
        .unwrap();
    assert_eq!(tree["inner"], json!({"n": 1}));
    let list = gun
        .get(&format!("js-{run}"))
        .get("list")
        .map()
        .once_blocking()
        .unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0].1, json!({"item": "first"}));
    server.shutdown();
}

/// A peer embedded with the runtime's library on a memory store, syncing with `upstream` (given
/// in GUN's `http://…/gun` form).
fn embedded_peer(upstream: std::net::SocketAddr) -> Relay {
    let config = RelayConfig {
        upstreams: vec![format!("http://{upstream}/gun")],
        threads: 1,
        verify_threads: 1,
        limits: fibergun::Limits {
            reconnect_min_ms: 50,
            reconnect_max_ms: 200,
            ..fibergun::Limits::default()
        },
        ..RelayConfig::default()
    };
    Relay::embedded(config, fibergun::MemStore::new()).expect("the peer starts")
}

/// Waits until `pred` holds for the peer's single upstream, and returns what it last saw.
fn wait_status(
    peer: &Relay,
    what: &str,
    pred: impl Fn(&fibergun::UpstreamStatus) -> bool,
) -> fibergun::UpstreamStatus {
    let end = Instant::now() + Duration::from_secs(15);
    loop {
        let status = peer.sync_status();
        assert_eq!(status.len(), 1, "{status:?}");
        if pred(&status[0]) {
            return status[0].clone();
        }
        assert!(
            Instant::now() < end,
            "the upstream never {what}: {status:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn an_embedded_peer_on_a_memory_store_works_offline_and_syncs_with_its_upstream() {
    let dir = fibergun_testkit::temp_data_dir();
    let relay = start(dir.path());
    let addr = relay.local_addr();
    let peer = embedded_peer(addr);
    let gun = peer.gun();
    wait_status(&peer, "connected", |s| s.connected && s.waiting == Some(0));

    // Both ways while connected, and live.
    relay
        .gun()
        .get("notes")
        .put_blocking(&json!({"from": "relay"}))
        .unwrap();
    assert_eq!(
        gun.get("notes").get("from").once_blocking().unwrap(),
        Some(json!("relay"))
    );
    let mut live = gun.get("notes").on().unwrap();
    relay
        .gun()
        .get("notes")
        .put_blocking(&json!({"live": 1}))
        .unwrap();
    wait_for(&mut live, "pushed by the upstream", |n| n["live"] == 1);
    gun.get("notes")
        .put_blocking(&json!({"from_peer": true}))
        .unwrap();
    wait_status(&peer, "acknowledged the write", |s| s.waiting == Some(0));
    assert_eq!(
        relay
            .gun()
            .get("notes")
            .get("from_peer")
            .once_blocking()
            .unwrap(),
        Some(json!(true))
    );

    // The upstream goes away: writes are acknowledged here and wait, reads answer from here.
    relay.shutdown();
    wait_status(&peer, "went", |s| !s.connected);
    for i in 0..20 {
        gun.get("offline")
            .get(&format!("k{i}"))
            .put_blocking(&i)
            .unwrap();
    }
    assert_eq!(
        gun.get("notes").get("from").once_blocking().unwrap(),
        Some(json!("relay"))
    );
    let offline = wait_status(&peer, "counted the writes", |s| s.waiting == Some(20));
    assert!(!offline.connected);

    // It comes back on the same address (its store kept): every write reaches it.
    let relay = start_on(dir.path(), addr);
    wait_status(&peer, "caught up", |s| s.connected && s.waiting == Some(0));
    let node = relay.gun().get("offline").once_blocking().unwrap().unwrap();
    assert_eq!(node.as_object().unwrap().len(), 20, "{node}");
    assert_eq!(node["k19"], json!(19));
    // The changes it missed meanwhile reach the peer's live subscription on reconnect.
    relay
        .gun()
        .get("notes")
        .put_blocking(&json!({"after": "restart"}))
        .unwrap();
    wait_for(&mut live, "after the reconnect", |n| {
        n["after"] == "restart"
    });
    drop(gun);
    peer.shutdown();
    relay.shutdown();
}
