//! Backup and restore, export and import, through the `fibergun` command: a backup taken while
//! the relay runs restores into a relay that serves the same graph (as of the backup); an export
//! imports into a new folder with every node and state intact; a folder in use by a running
//! relay is refused for import.

use crate::BINARY;

use std::path::Path;
use std::time::Duration;

use fibergun_testkit::{
    fibergun_tool, holds_numbered, reply_node, temp_data_dir, write_numbered, Peer, Server,
};

const WAIT: Duration = Duration::from_secs(10);

/// Runs a `fibergun` tool: whether it succeeded, and what it said.
fn fibergun(args: &[&str]) -> (bool, String) {
    fibergun_tool(BINARY, args)
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn a_backup_of_a_running_relay_restores_the_graph_as_of_the_backup() {
    let data = temp_data_dir();
    let server = Server::start(BINARY, data.path(), &[]);
    let mut peer = Peer::connect(&server.ws_url());
    write_numbered(&mut peer, "before", 200);
    let scratch = temp_data_dir();
    let file = scratch.path().join("relay.backup");
    let (ok, said) = fibergun(&["backup", "--data", path(data.path()), "--out", path(&file)]);
    assert!(ok, "backup failed: {said}");
    write_numbered(&mut peer, "after", 20);
    drop(server);

    let restored = scratch.path().join("restored");
    let (ok, said) = fibergun(&["restore", "--from", path(&file), "--data", path(&restored)]);
    assert!(ok, "restore failed: {said}");
    let server = Server::start(BINARY, &restored, &[]);
    assert_eq!(holds_numbered(&server, "before", 200), 200);
    assert_eq!(
        holds_numbered(&server, "after", 20),
        0,
        "writes after the backup are not in it"
    );
    let (ok, said) = fibergun(&["restore", "--from", path(&file), "--data", path(&restored)]);
    assert!(!ok && said.contains("not empty"), "{said}");
}

#[test]
fn an_export_imports_into_a_new_folder_and_a_running_relay_s_folder_is_refused() {
    let data = temp_data_dir();
    let server = Server::start(BINARY, data.path(), &[]);
    let mut peer = Peer::connect(&server.ws_url());
    write_numbered(&mut peer, "doc", 150);
    let scratch = temp_data_dir();
    let export = scratch.path().join("graph.jsonl");
    let (ok, said) = fibergun(&[
        "export",
        "--data",
        path(data.path()),
        "--out",
        path(&export),
    ]);
    assert!(ok && said.contains("exported 150 nodes"), "{said}");
    // The relay's own folder is in use.
    let (ok, said) = fibergun(&["import", "--data", path(data.path()), path(&export)]);
    assert!(
        !ok && said.contains("another fibergun process is using"),
        "{said}"
    );

    let fresh = scratch.path().join("fresh");
    let (ok, said) = fibergun(&["import", "--data", path(&fresh), path(&export)]);
    assert!(ok && said.contains("imported 150 nodes"), "{said}");
    let imported = Server::start(BINARY, &fresh, &[]);
    assert_eq!(holds_numbered(&imported, "doc", 150), 150);
    // States travel: the same node read from both relays is the same text.
    let mut a = Peer::connect(&server.ws_url());
    let mut b = Peer::connect(&imported.ws_url());
    let one = a.get("x1", "doc/7", None, WAIT);
    let two = b.get("x2", "doc/7", None, WAIT);
    assert_eq!(reply_node(&one, "doc/7"), reply_node(&two, "doc/7"));
}
