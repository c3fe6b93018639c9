//! The change feed between relays on one database. A batch that changed fields announces them
//! with `NOTIFY fibergun_changes` inside its transaction, so the announcement is delivered only
//! once it has committed, in commit order, and never if it rolled back. Each relay listens on a
//! connection of its own; for every announcement from another relay it reads the fields named
//! (as they are stored now: never older than the announced commit) and hands them to the core.
//! A relay whose listening connection was lost misses what was announced meanwhile: once it
//! listens again it reports a gap, and the core reads again what its subscribers watch.
//!
//! A payload is JSON, at most [`PAYLOAD_BYTES`]: `{"o":origin,"c":[[soul,[key,…]],[soul],…]}`
//! (a soul without keys: read the whole node), or `{"o":origin,"gap":true}` when even one soul
//! does not fit (every listener then reads again what it watches).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use fibergun::graph::{Field, Key, Soul};
use fibergun::{FeedEvent, FeedSink};
use postgres::fallible_iterator::FallibleIterator;
use postgres::{Client, Transaction};
use serde_json::{json, Value as Json};

use crate::codec::{decode_field, decode_key, decode_soul};
use crate::stats::PgStats;

/// The channel relays announce on.
const CHANNEL: &str = "fibergun_changes";

/// PostgreSQL takes payloads under 8,000 bytes.
pub(crate) const PAYLOAD_BYTES: usize = 7_000;

/// Announces `changed` from the relay `origin`, inside the transaction that commits it.
pub(crate) fn announce(
    txn: &mut Transaction<'_>,
    origin: &str,
    changed: &BTreeMap<Soul, BTreeSet<Key>>,
) -> Result<(), String> {
    for payload in payloads(origin, changed) {
        txn.execute("SELECT pg_notify($1, $2)", &[&CHANNEL, &payload])
            .map_err(|e| crate::describe(&e))?;
    }
    Ok(())
}

/// The payloads that announce `changed`, each under [`PAYLOAD_BYTES`].
fn payloads(origin: &str, changed: &BTreeMap<Soul, BTreeSet<Key>>) -> Vec<String> {
    let head = json!({ "o": origin, "c": [] }).to_string().len();
    let mut out = Vec::new();
    let mut chunk: Vec<Json> = Vec::new();
    let mut size = head;
    for (soul, keys) in changed {
        let mut entry = json!([
            soul.as_str(),
            keys.iter().map(Key::as_str).collect::<Vec<_>>()
        ]);
        let mut len = entry.to_string().len() + 1;
        if head + len > PAYLOAD_BYTES {
            entry = json!([soul.as_str()]);
            len = entry.to_string().len() + 1;
        }
        if head + len > PAYLOAD_BYTES {
            return vec![json!({ "o": origin, "gap": true }).to_string()];
        }
        if size + len > PAYLOAD_BYTES {
            out.push(json!({ "o": origin, "c": std::mem::take(&mut chunk) }).to_string());
            size = head;
        }
        chunk.push(entry);
        size += len;
    }
    if !chunk.is_empty() {
        out.push(json!({ "o": origin, "c": chunk }).to_string());
    }
    out
}

/// What one announcement asks a listener to read.
#[derive(Debug, Default, PartialEq)]
struct Wanted {
    /// (soul, key) pairs.
    fields: Vec<(Soul, Key)>,
    /// Whole nodes.
    nodes: Vec<Soul>,
    gap: bool,
}

/// Reads a payload; `None` for this relay's own, or one that is not fibergun's.
fn parse(payload: &str, own: &str) -> Option<Wanted> {
    let json: Json = serde_json::from_str(payload).ok()?;
    if json["o"].as_str()? == own {
        return None;
    }
    let mut wanted = Wanted {
        gap: json["gap"] == true,
        ..Wanted::default()
    };
    for entry in json["c"].as_array().into_iter().flatten() {
        let Some(soul) = entry[0].as_str().and_then(|s| Soul::new(s).ok()) else {
            continue;
        };
        match entry[1].as_array() {
            Some(keys) => {
                for key in keys.iter().filter_map(|k| k.as_str()) {
                    if let Ok(key) = Key::new(key) {
                        wanted.fields.push((soul.clone(), key));
                    }
                }
            }
            None => wanted.nodes.push(soul),
        }
    }
    Some(wanted)
}

/// The listening thread: runs until `stop`.
pub(crate) struct Listener {
    pub(crate) config: postgres::Config,
    pub(crate) origin: String,
    pub(crate) sink: FeedSink,
    pub(crate) stop: Arc<AtomicBool>,
    pub(crate) stats: PgStats,
}

impl Listener {
    pub(crate) fn run(self) {
        let mut first = true;
        let mut wait = Duration::from_millis(100);
        while !self.stop.load(Ordering::Relaxed) {
            let mut client = match self.listen() {
                Ok(client) => client,
                Err(e) => {
                    tracing::warn!("the change feed cannot listen: {e}; trying again");
                    std::thread::sleep(wait);
                    wait = (wait * 2).min(Duration::from_secs(2));
                    continue;
                }
            };
            wait = Duration::from_millis(100);
            self.stats.feed_connected(true);
            if !first {
                self.stats.feed_gap();
                tracing::info!("the change feed listens again: subscribed nodes are read again");
            }
            // Also on the first connection: what was committed between the relay's start (its
            // first reads) and this LISTEN was announced to no one here.
            (self.sink)(FeedEvent::Gap);
            first = false;
            if let Err(e) = self.follow(&mut client) {
                tracing::warn!("the change feed lost its connection: {e}");
            }
            self.stats.feed_connected(false);
        }
    }

    fn listen(&self) -> Result<Client, String> {
        // Named apart from the store's own connection, for operators reading pg_stat_activity.
        let mut config = self.config.clone();
        let name = format!(
            "{} feed",
            config.get_application_name().unwrap_or("fibergun")
        );
        config.application_name(&name);
        let mut client = crate::connect(&config)?;
        client
            .batch_execute(&format!("LISTEN {CHANNEL}"))
            .map_err(|e| crate::describe(&e))?;
        Ok(client)
    }

    /// Hands announcements on until the connection is lost or the store is dropped.
    fn follow(&self, client: &mut Client) -> Result<(), String> {
        loop {
            if self.stop.load(Ordering::Relaxed) {
                return Ok(());
            }
            // Wait for one, then take every one already here, to read them together.
            let mut payloads = Vec::new();
            {
                let mut notifications = client.notifications();
                let first = notifications
                    .timeout_iter(Duration::from_millis(500))
                    .next();
                match first {
                    Ok(Some(n)) => payloads.push(n.payload().to_owned()),
                    Ok(None) => {}
                    Err(e) => return Err(crate::describe(&e)),
                }
                let mut ready = notifications.iter();
                while payloads.len() < 256 {
                    match ready.next() {
                        Ok(Some(n)) => payloads.push(n.payload().to_owned()),
                        Ok(None) => break,
                        Err(e) => return Err(crate::describe(&e)),
                    }
                }
            }
            if client.is_closed() {
                return Err("the connection closed".into());
            }
            let mut wanted = Wanted::default();
            for payload in &payloads {
                if let Some(w) = parse(payload, &self.origin) {
                    wanted.fields.extend(w.fields);
                    wanted.nodes.extend(w.nodes);
                    wanted.gap |= w.gap;
                }
            }
            if wanted.gap {
                self.stats.feed_gap();
                (self.sink)(FeedEvent::Gap);
            }
            if !wanted.fields.is_empty() || !wanted.nodes.is_empty() {
                for (soul, fields) in read_wanted(client, &wanted)? {
                    self.stats.feed_change();
                    (self.sink)(FeedEvent::Changed { soul, fields });
                }
            }
        }
    }
}

/// The wanted fields and nodes as stored now, by soul.
fn read_wanted(
    client: &mut Client,
    wanted: &Wanted,
) -> Result<BTreeMap<Soul, Vec<(Key, Field)>>, String> {
    let mut by_soul: BTreeMap<Soul, BTreeMap<Key, Field>> = BTreeMap::new();
    let mut take = |rows: Vec<postgres::Row>| -> Result<(), String> {
        for row in rows {
            let soul = decode_soul(row.get(0))?;
            let key = decode_key(row.get(1))?;
            let field = decode_field(row.get(2), row.get(3))?;
            by_soul.entry(soul).or_default().insert(key, field);
        }
        Ok(())
    };
    if !wanted.fields.is_empty() {
        let souls: Vec<&[u8]> = wanted
            .fields
            .iter()
            .map(|(s, _)| s.as_str().as_bytes())
            .collect();
        let keys: Vec<&[u8]> = wanted
            .fields
            .iter()
            .map(|(_, k)| k.as_str().as_bytes())
            .collect();
        take(
            client
                .query(
                    "SELECT f.soul, f.key, f.state, f.value FROM fibergun_fields f \
                     JOIN (SELECT DISTINCT * FROM unnest($1::bytea[], $2::bytea[])) AS u(soul, key) \
                     ON f.soul = u.soul AND f.key = u.key",
                    &[&souls, &keys],
                )
                .map_err(|e| crate::describe(&e))?,
        )?;
    }
    if !wanted.nodes.is_empty() {
        let souls: Vec<&[u8]> = wanted.nodes.iter().map(|s| s.as_str().as_bytes()).collect();
        take(
            client
                .query(
                    "SELECT soul, key, state, value FROM fibergun_fields WHERE soul = ANY($1)",
                    &[&souls],
                )
                .map_err(|e| crate::describe(&e))?,
        )?;
    }
    Ok(by_soul
        .into_iter()
        .map(|(soul, fields)| (soul, fields.into_iter().collect()))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn changed(entries: &[(&str, &[&str])]) -> BTreeMap<Soul, BTreeSet<Key>> {
        entries
            .iter()
            .map(|(s, ks)| {
                (
                    Soul::new(s).unwrap(),
                    ks.iter().map(|k| Key::new(k).unwrap()).collect(),
                )
            })
            .collect()
    }

    #[test]
    fn announcements_name_every_change_in_payloads_that_fit() {
        let many: Vec<(String, Vec<String>)> = (0..2000)
            .map(|i| (format!("soul-{i}"), vec![format!("k{i}"), "x".into()]))
            .collect();
        let entries: Vec<(&str, Vec<&str>)> = many
            .iter()
            .map(|(s, ks)| (s.as_str(), ks.iter().map(String::as_str).collect()))
            .collect();
        let refs: Vec<(&str, &[&str])> =
            entries.iter().map(|(s, ks)| (*s, ks.as_slice())).collect();
        let out = payloads("me", &changed(&refs));
        assert!(out.len() > 1);
        let mut fields = 0;
        for p in &out {
            assert!(p.len() <= PAYLOAD_BYTES, "{}", p.len());
            assert!(parse(p, "me").is_none(), "one's own is skipped");
            fields += parse(p, "other").unwrap().fields.len();
        }
        assert_eq!(fields, 4000);
    }

    #[test]
    fn a_soul_too_long_for_its_keys_is_named_alone_and_one_too_long_at_all_is_a_gap() {
        let long_key = "k".repeat(PAYLOAD_BYTES);
        let out = payloads("me", &changed(&[("a", &[long_key.as_str()])]));
        let wanted = parse(&out[0], "other").unwrap();
        assert_eq!(wanted.nodes, vec![Soul::new("a").unwrap()]);
        let long_soul = "s".repeat(PAYLOAD_BYTES);
        let out = payloads("me", &changed(&[(long_soul.as_str(), &["k"])]));
        assert!(parse(&out[0], "other").unwrap().gap);
    }

    #[test]
    fn hostile_names_survive_the_payload() {
        let name = "quote \" backslash \\ nul \u{0} astral 😀 '; DROP TABLE x; --";
        let out = payloads("me", &changed(&[(name, &[name])]));
        let wanted = parse(&out[0], "other").unwrap();
        assert_eq!(wanted.fields[0].0.as_str(), name);
        assert_eq!(wanted.fields[0].1.as_str(), name);
    }
}
