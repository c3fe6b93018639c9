//! How a store is laid out in its bucket (under the configured prefix):
//!
//! ```text
//! segments/00000000000000000042.jsonl          one write batch: the fields it changed
//! snapshots/00000000000000000040/part-000000.jsonl   the whole graph, begun at batch 40, in parts
//! snapshots/00000000000000000040/manifest.json       written last: complete, and which batch
//!                                                    (40 or later) it holds everything up to
//! ```
//!
//! Both kinds of object hold nodes as export lines (`{"soul":{"_":{…states…},…}}`), so a
//! segment or a snapshot part can be read with nothing but a JSON parser, and merging them by
//! HAM in any order gives the same graph. Batch numbers are zero-padded so that key order is
//! batch order.

/// The keys of write batches start with this.
pub const SEGMENTS: &str = "segments/";
/// The keys of snapshots start with this.
pub const SNAPSHOTS: &str = "snapshots/";
/// What a snapshot's manifest says its format is.
pub const FORMAT: &str = "fibergun-s3-1";

/// The key of batch `seq`.
pub fn segment_key(seq: u64) -> String {
    format!("{SEGMENTS}{seq:020}.jsonl")
}

/// The batch number of a segment's key.
pub fn segment_seq(key: &str) -> Option<u64> {
    key.strip_prefix(SEGMENTS)?
        .strip_suffix(".jsonl")?
        .parse()
        .ok()
}

/// The key of part `part` of snapshot `id`.
pub fn snapshot_part_key(id: u64, part: usize) -> String {
    format!("{SNAPSHOTS}{id:020}/part-{part:06}.jsonl")
}

/// The key of the manifest of snapshot `id`.
pub fn manifest_key(id: u64) -> String {
    format!("{SNAPSHOTS}{id:020}/manifest.json")
}

/// The id of the snapshot an object (part or manifest) belongs to.
pub fn snapshot_seq(key: &str) -> Option<u64> {
    key.strip_prefix(SNAPSHOTS)?.split('/').next()?.parse().ok()
}

/// Whether `key` is a snapshot's manifest.
pub fn is_manifest(key: &str) -> bool {
    key.starts_with(SNAPSHOTS) && key.ends_with("/manifest.json")
}

/// A complete snapshot's description.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    /// The batch the snapshot holds everything up to.
    pub through: u64,
    /// Its parts, numbered from 0.
    pub parts: usize,
    /// The nodes in it.
    pub nodes: u64,
    /// Its size in bytes.
    pub bytes: u64,
}

impl Manifest {
    /// The manifest as JSON.
    pub fn to_json(&self) -> String {
        serde_json::json!({
            "format": FORMAT,
            "through": self.through,
            "parts": self.parts,
            "nodes": self.nodes,
            "bytes": self.bytes,
        })
        .to_string()
    }

    /// Reads a manifest; one of another format is an error that says so.
    pub fn parse(text: &[u8]) -> Result<Manifest, String> {
        let json: serde_json::Value = serde_json::from_slice(text)
            .map_err(|e| format!("a manifest that is not JSON: {e}"))?;
        let format = json.get("format").and_then(|f| f.as_str());
        if format != Some(FORMAT) {
            return Err(format!(
                "a snapshot of format {format:?}, which this version does not read (it reads {FORMAT})"
            ));
        }
        let number = |name: &str| {
            json.get(name)
                .and_then(serde_json::Value::as_u64)
                .ok_or_else(|| format!("a manifest without {name:?}"))
        };
        Ok(Manifest {
            through: number("through")?,
            parts: number("parts")? as usize,
            nodes: number("nodes")?,
            bytes: number("bytes")?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_sort_in_batch_order_and_read_back() {
        assert!(segment_key(9) < segment_key(10));
        assert_eq!(segment_seq(&segment_key(12345)), Some(12345));
        assert_eq!(segment_seq("segments/x.jsonl"), None);
        assert_eq!(snapshot_seq(&snapshot_part_key(7, 3)), Some(7));
        assert_eq!(snapshot_seq(&manifest_key(8)), Some(8));
        assert!(is_manifest(&manifest_key(8)));
        assert!(!is_manifest(&snapshot_part_key(8, 0)));
    }

    #[test]
    fn manifests_round_trip_and_other_formats_are_refused() {
        let manifest = Manifest {
            through: 41,
            parts: 2,
            nodes: 100,
            bytes: 5000,
        };
        assert_eq!(Manifest::parse(manifest.to_json().as_bytes()), Ok(manifest));
        let other = br#"{"format":"fibergun-s3-9","through":1,"parts":1,"nodes":1,"bytes":1}"#;
        assert!(Manifest::parse(other)
            .unwrap_err()
            .contains("fibergun-s3-9"));
    }
}
