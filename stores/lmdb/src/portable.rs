//! Moving a store's graph in and out: a consistent backup file of a running store and its
//! restore, and export and import as JSON Lines, one node per line in GUN's wire form
//! (`{"soul":{"_":{"#":"soul",">":{…states…}},…fields…}}`), states kept, so an import merges by
//! HAM exactly as the writes first did.

use std::io::{BufRead, Write};
use std::path::Path;

use fibergun::graph::{Graph, Node, Soul};
use fibergun::store::{OpId, Store, StoreOp, StoreResult};
use fibergun::Limits;
use heed::CompactionOption;

use crate::codec::{decode_field, split_key};
use crate::meta::LOG_POSITION_KEY;
use crate::{LmdbStore, OpenError};

/// The nodes of one line of an export: `{"soul":{…node…}}`, with no size limits but JSON's.
pub fn read_node_line(line: &str) -> Result<Vec<Node>, String> {
    let limits = Limits {
        max_value_bytes: usize::MAX,
        max_keys_per_node: usize::MAX,
        max_nodes_per_put: usize::MAX,
        ..Limits::default()
    };
    let json: serde_json::Value =
        serde_json::from_str(line).map_err(|e| format!("not JSON: {e}"))?;
    Graph::from_json(&json, &limits)
        .map(|graph| graph.nodes)
        .map_err(|e| e.0)
}

/// Writes `node` as one line of an export (newline included) to `line`.
pub fn write_node_line(line: &mut String, node: &Node) {
    line.push('{');
    fibergun::json::write_string(line, node.soul.as_str());
    line.push(':');
    node.write_json(line);
    line.push_str("}\n");
}

/// Nodes merged per transaction by an import.
const IMPORT_BATCH: usize = 1_000;

impl LmdbStore {
    /// Writes a consistent copy of the store (as of one moment; writers go on meanwhile) to
    /// `path`, compacted. Returns its size in bytes.
    pub fn backup_to(&self, path: &Path) -> Result<u64, String> {
        if path.exists() {
            return Err(format!(
                "{} exists already; give a new file",
                path.display()
            ));
        }
        let file = self
            .env
            .copy_to_path(path, CompactionOption::Enabled)
            .map_err(|e| format!("backup to {}: {e}", path.display()))?;
        file.sync_all().map_err(|e| e.to_string())?;
        file.metadata().map(|m| m.len()).map_err(|e| e.to_string())
    }

    /// Writes every node as one line of JSON, in soul order. Returns the number of nodes.
    pub fn export(&self, out: &mut impl Write) -> Result<u64, String> {
        self.export_positioned(out).map(|(nodes, _)| nodes)
    }

    /// [`LmdbStore::export`], also giving the log position the export is as of (read in the
    /// same transaction, so the two agree).
    pub fn export_positioned(&self, out: &mut impl Write) -> Result<(u64, Option<u64>), String> {
        let rtxn = self.env.read_txn().map_err(|e| e.to_string())?;
        let position = self
            .meta
            .get(&rtxn, LOG_POSITION_KEY)
            .map_err(|e| e.to_string())?
            .and_then(|bytes| <[u8; 8]>::try_from(bytes).ok())
            .map(u64::from_le_bytes);
        let mut nodes = 0u64;
        let mut current: Option<Node> = None;
        let mut line = String::new();
        let mut flush = |node: Node, out: &mut dyn Write| -> Result<(), String> {
            line.clear();
            write_node_line(&mut line, &node);
            out.write_all(line.as_bytes()).map_err(|e| e.to_string())
        };
        for entry in self.fields.iter(&rtxn).map_err(|e| e.to_string())? {
            let (key, value) = entry.map_err(|e| e.to_string())?;
            let Some((soul, field_key)) = split_key(key) else {
                continue;
            };
            let (Ok(field_key), Some(field)) = (
                std::str::from_utf8(field_key)
                    .map_err(|_| ())
                    .and_then(|k| fibergun::Key::new(k).map_err(|_| ())),
                decode_field(value),
            ) else {
                continue;
            };
            if current.as_ref().is_some_and(|n| n.soul.as_str() != soul) {
                flush(current.take().expect("checked"), out)?;
                nodes += 1;
            }
            let node = current.get_or_insert_with(|| {
                Node::new(Soul::new(&soul).expect("stored souls are not empty"))
            });
            node.fields.insert(field_key, field);
        }
        if let Some(node) = current {
            flush(node, out)?;
            nodes += 1;
        }
        out.flush().map_err(|e| e.to_string())?;
        Ok((nodes, position))
    }

    /// Merges the nodes of an export (JSON Lines) by HAM (see [`import`]).
    pub fn import(&mut self, input: impl BufRead) -> Result<u64, String> {
        import(self, input)
    }

    /// Merges a GUN JS `radata` folder by HAM (see [`import_radata`]).
    pub fn import_radata(&mut self, dir: &Path) -> Result<(usize, u64), String> {
        import_radata(self, dir)
    }

    /// Makes `dir` (new or empty) a store restored from a backup file, and checks it opens.
    pub fn restore(backup: &Path, dir: &Path) -> Result<(), OpenError> {
        std::fs::create_dir_all(dir)
            .map_err(|e| OpenError(format!("cannot create {}: {e}", dir.display())))?;
        let occupied = std::fs::read_dir(dir)
            .map_err(|e| OpenError(format!("cannot read {}: {e}", dir.display())))?
            .next()
            .is_some();
        if occupied {
            return Err(OpenError(format!(
                "{} is not empty: restore into a new folder",
                dir.display()
            )));
        }
        std::fs::copy(backup, dir.join("data.mdb"))
            .map_err(|e| OpenError(format!("cannot copy {}: {e}", backup.display())))?;
        LmdbStore::open_beside(dir, crate::DEFAULT_MAP_SIZE).map(|_| ())
    }
}

/// Merges the nodes of an export (JSON Lines) into `store` by HAM. Returns the nodes read; a
/// line that is not a valid node fails the import with its line number, after the batches
/// before it.
pub fn import(store: &mut impl Store, input: impl BufRead) -> Result<u64, String> {
    import_batches(input, |batch, _| merge_batch(store, batch))
}

/// Reads an export's nodes as merge ops and hands them to `merge` in batches of
/// [`IMPORT_BATCH`] nodes; the last batch (possibly empty) comes with `true`. Returns the nodes
/// read; a line that is not a valid node is an error with its line number, after the batches
/// before it.
pub fn import_batches(
    input: impl BufRead,
    mut merge: impl FnMut(Vec<StoreOp>, bool) -> Result<(), String>,
) -> Result<u64, String> {
    let mut batch = Vec::new();
    let mut nodes = 0u64;
    let mut op = 0u64;
    for (n, line) in input.lines().enumerate() {
        let line = line.map_err(|e| format!("line {}: {e}", n + 1))?;
        if line.trim().is_empty() {
            continue;
        }
        let nodes_of_line = read_node_line(&line).map_err(|e| format!("line {}: {e}", n + 1))?;
        for node in nodes_of_line {
            nodes += 1;
            op += 1;
            batch.push(StoreOp::Merge {
                op: OpId(op),
                soul: node.soul,
                fields: node.fields.into_iter().collect(),
            });
        }
        if batch.len() >= IMPORT_BATCH {
            merge(std::mem::take(&mut batch), false)?;
        }
    }
    merge(batch, true)?;
    Ok(nodes)
}

/// Merges a GUN JS `radata` folder (radisk's JSON radix files, GUN JS's default since
/// 2020) by HAM. Every entry `soul ESC key → {":": value, ">": state}` becomes a field.
/// Returns the files read and the fields merged. The pre-2020 text format is refused.
pub fn import_radata(store: &mut impl Store, dir: &Path) -> Result<(usize, u64), String> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))? {
        let entry = entry.map_err(|e| e.to_string())?;
        let name = entry.file_name().to_string_lossy().into_owned();
        // `%1C` is radisk's directory of files; temporary files are half-written ones.
        if name == "%1C" || name.ends_with(".tmp") || !entry.path().is_file() {
            continue;
        }
        files.push(entry.path());
    }
    files.sort();
    let mut fields: std::collections::BTreeMap<
        String,
        Vec<(fibergun::Key, fibergun::graph::Field)>,
    > = Default::default();
    let mut count = 0u64;
    for file in &files {
        let text = std::fs::read_to_string(file).map_err(|e| format!("{}: {e}", file.display()))?;
        let tree: serde_json::Value = serde_json::from_str(&text).map_err(|_| {
            format!(
                "{}: not a JSON radix file (radata written before 2020 is not supported)",
                file.display()
            )
        })?;
        let mut leaves = Vec::new();
        radix_leaves(&tree, String::new(), &mut leaves);
        for (path, leaf) in leaves {
            let Some((soul, key)) = path.split_once('\u{1b}') else {
                continue;
            };
            let (Ok(_), Ok(key)) = (Soul::new(soul), fibergun::Key::new(key)) else {
                continue;
            };
            let Some(state) = leaf.get(">").and_then(serde_json::Value::as_f64) else {
                continue;
            };
            let Some(value) = leaf.get(":") else { continue };
            let (Ok(value), Ok(state)) = (
                fibergun::Value::from_json(value, usize::MAX),
                fibergun::graph::State::new(state),
            ) else {
                continue;
            };
            fields
                .entry(soul.to_owned())
                .or_default()
                .push((key, fibergun::graph::Field { value, state }));
            count += 1;
        }
    }
    let mut batch = Vec::new();
    for (op, (soul, node)) in fields.into_iter().enumerate() {
        batch.push(StoreOp::Merge {
            op: OpId(op as u64),
            soul: Soul::new(&soul).expect("checked"),
            fields: node,
        });
        if batch.len() >= IMPORT_BATCH {
            merge_batch(store, std::mem::take(&mut batch))?;
        }
    }
    merge_batch(store, batch)?;
    Ok((files.len(), count))
}

fn merge_batch(store: &mut impl Store, batch: Vec<StoreOp>) -> Result<(), String> {
    for result in store.apply(batch) {
        if let StoreResult::Failed { reason } = result {
            return Err(reason);
        }
    }
    Ok(())
}

/// The leaves of a radix tree: the fragments on the way down, joined, and the value under `""`.
fn radix_leaves<'a>(
    node: &'a serde_json::Value,
    prefix: String,
    out: &mut Vec<(String, &'a serde_json::Value)>,
) {
    let serde_json::Value::Object(map) = node else {
        return;
    };
    for (fragment, child) in map {
        if fragment.is_empty() {
            out.push((prefix.clone(), child));
        } else {
            radix_leaves(child, format!("{prefix}{fragment}"), out);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{merge_op as merge, read_node as read};
    use fibergun::graph::{Key, Value};

    fn sample(dir: &Path) -> LmdbStore {
        let mut store = LmdbStore::open(dir, 1 << 26).unwrap();
        store.apply(vec![
            merge(1, "a", "x", Value::Number(1.5), 10.0),
            merge(2, "a", "y", Value::Link(Soul::new("b").unwrap()), 11.0),
            merge(3, "b", "s", Value::String("héllo \"q\"".into()), 12.0),
            merge(4, "c\u{0}odd", "n", Value::Null, 13.0),
        ]);
        store
    }

    #[test]
    fn an_export_imports_into_an_equal_store() {
        let (from, to) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let mut source = sample(from.path());
        let mut text = Vec::new();
        assert_eq!(source.export(&mut text).unwrap(), 3);
        let mut target = LmdbStore::open(to.path(), 1 << 26).unwrap();
        assert_eq!(target.import(&text[..]).unwrap(), 3);
        for soul in ["a", "b", "c\u{0}odd"] {
            assert_eq!(read(&mut target, soul), read(&mut source, soul), "{soul}");
        }
        // Importing again changes nothing; an older state does not win.
        let older = b"{\"a\":{\"_\":{\"#\":\"a\",\">\":{\"x\":1}},\"x\":99}}\n";
        target.import(&older[..]).unwrap();
        assert_eq!(read(&mut target, "a"), read(&mut source, "a"));
        let bad = b"{\"a\":[1]}\n";
        assert!(target.import(&bad[..]).unwrap_err().starts_with("line 1"));
    }

    #[test]
    fn a_radata_folder_imports_every_entry() {
        let (radata, to) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let file = r##"{"alice\u001b":{"name":{"":{":":"Alicia",">":1700000000001}},"age":{"":{":":30,">":1700000000000}}},
 "jsnode":{"\u001b":{"hello":{"":{":":"world",">":1795574686707}},
                     "nested":{"":{":":{"#":"jsnode/nested"},">":1795574686707}}},
           "/nested\u001bdeep":{"":{":":1,">":1795574686707}}}}"##;
        std::fs::write(radata.path().join("!"), file).unwrap();
        std::fs::write(radata.path().join("%1C"), r#"{"!":{"":1}}"#).unwrap();
        let mut store = LmdbStore::open(to.path(), 1 << 26).unwrap();
        assert_eq!(store.import_radata(radata.path()).unwrap(), (1, 5));
        let alice = read(&mut store, "alice").unwrap();
        assert_eq!(
            alice.fields[&Key::new("name").unwrap()].value,
            Value::String("Alicia".into())
        );
        assert_eq!(
            alice.fields[&Key::new("age").unwrap()].state.ms(),
            1700000000000.0
        );
        let js = read(&mut store, "jsnode").unwrap();
        assert_eq!(
            js.fields[&Key::new("nested").unwrap()].value,
            Value::Link(Soul::new("jsnode/nested").unwrap())
        );
        assert!(read(&mut store, "jsnode/nested").is_some());
        std::fs::write(radata.path().join("old"), "\u{1f}+0\u{1f}#\u{1f}\"x").unwrap();
        assert!(store
            .import_radata(radata.path())
            .unwrap_err()
            .contains("not a JSON radix file"));
    }

    #[test]
    fn a_backup_restores_into_an_equal_store() {
        let (from, to) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let mut source = sample(from.path());
        let file = from
            .path()
            .parent()
            .unwrap()
            .join(format!("fibergun-backup-{}.mdb", std::process::id()));
        let _ = std::fs::remove_file(&file);
        assert!(source.backup_to(&file).unwrap() > 0);
        assert!(
            source.backup_to(&file).is_err(),
            "an existing file is not overwritten"
        );
        let restored = to.path().join("store");
        LmdbStore::restore(&file, &restored).unwrap();
        let mut copy = LmdbStore::open(&restored, 1 << 26).unwrap();
        assert!(
            LmdbStore::open(&restored, 1 << 26).is_err(),
            "a second writer is refused"
        );
        for soul in ["a", "b", "c\u{0}odd"] {
            assert_eq!(read(&mut copy, soul), read(&mut source, soul), "{soul}");
        }
        assert!(
            LmdbStore::restore(&file, &restored).is_err(),
            "only into a new folder"
        );
        std::fs::remove_file(&file).unwrap();
    }
}
