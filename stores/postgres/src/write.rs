//! One batch in one transaction. The souls the batch merges into are locked first (advisory
//! transaction locks on their hashes, taken in one order by every relay, so relays never
//! deadlock); their stored fields are read; HAM is decided here, with the core's own merge
//! (fractional states, the UTF-16 tie-break), exactly as the other stores decide it; the
//! winners are written before any read that follows them and at the end; and the changes are
//! announced with NOTIFY in the same transaction, so the other relays hear of them only once
//! they are committed.

use std::collections::{BTreeMap, BTreeSet};

use fibergun::graph::{Field, Key, Soul};
use fibergun::store::{merge_into, StoreOp, StoreResult};
use postgres::Transaction;

use crate::codec::{decode_field, decode_key, decode_soul, lock_key, value_text};
use crate::feed::announce;
use crate::read::read;

/// Fields decided in this transaction and not yet written.
type Dirty = BTreeMap<(Soul, Key), Field>;

/// Applies `ops` in `txn`; `over_quota` refuses the merges (reads go on).
pub(crate) fn apply_in(
    txn: &mut Transaction<'_>,
    ops: &[StoreOp],
    over_quota: Option<&str>,
    origin: &str,
) -> Result<Vec<StoreResult>, String> {
    let merging = over_quota.is_none();
    let mut known = if merging {
        lock_and_load(txn, ops)?
    } else {
        BTreeMap::new()
    };
    let mut dirty = Dirty::new();
    let mut changed_keys: BTreeMap<Soul, BTreeSet<Key>> = BTreeMap::new();
    // Each merge's space and growth, and how much each space grew in all.
    let mut merged_into: Vec<(usize, String, i64)> = Vec::new();
    let mut grew: BTreeMap<String, i64> = BTreeMap::new();
    let mut results = Vec::with_capacity(ops.len());
    for op in ops {
        results.push(match op {
            StoreOp::Merge { soul, fields, .. } => match over_quota {
                Some(reason) => StoreResult::Failed {
                    reason: reason.to_owned(),
                },
                None => {
                    let node = known.entry(soul.clone()).or_default();
                    let (changed, by) = merge_into(node, fields);
                    if let Some(space) = fibergun::store::space_of(soul.as_str()) {
                        *grew.entry(space.clone()).or_default() += by;
                        merged_into.push((results.len(), space, by));
                    }
                    for (key, field) in &changed {
                        dirty.insert((soul.clone(), key.clone()), field.clone());
                        changed_keys
                            .entry(soul.clone())
                            .or_default()
                            .insert(key.clone());
                    }
                    StoreResult::Merged {
                        changed,
                        space_bytes: None,
                    }
                }
            },
            StoreOp::Read { query, .. } => {
                flush(txn, &mut dirty)?;
                StoreResult::Read {
                    nodes: read(txn, query)?,
                }
            }
            StoreOp::OutboxAppend { .. }
            | StoreOp::OutboxRead { .. }
            | StoreOp::OutboxAcked { .. }
            | StoreOp::OutboxStatus { .. } => StoreResult::Failed {
                reason: "the PostgreSQL store keeps no outbox (a relay on PostgreSQL takes no upstreams)".into(),
            },
        });
    }
    flush(txn, &mut dirty)?;
    // Each merge reports its space's total just after it: the batch's total, less what the
    // merges after it in the batch added.
    let mut totals: BTreeMap<String, i64> = count_spaces(txn, &grew)?
        .into_iter()
        .map(|(space, bytes)| (space, bytes as i64))
        .collect();
    for (i, space, by) in merged_into.into_iter().rev() {
        let Some(total) = totals.get_mut(&space) else {
            continue;
        };
        if let StoreResult::Merged { space_bytes, .. } = &mut results[i] {
            *space_bytes = Some((*total).max(0) as u64);
        }
        *total -= by;
    }
    announce(txn, origin, &changed_keys)?;
    Ok(results)
}

/// Adds what each space grew by to its count, in space order (so relays lock the counts in one
/// order); returns each one's total after the batch.
fn count_spaces(
    txn: &mut Transaction<'_>,
    grew: &BTreeMap<String, i64>,
) -> Result<BTreeMap<String, u64>, String> {
    if grew.is_empty() {
        return Ok(BTreeMap::new());
    }
    let spaces: Vec<&str> = grew.keys().map(String::as_str).collect();
    let deltas: Vec<i64> = grew.values().copied().collect();
    let rows = txn
        .query(
            // A space's first row starts at its growth, which cannot be negative: nothing of
            // it was stored before.
            "INSERT INTO fibergun_spaces (space, bytes) \
             SELECT s, d FROM unnest($1::text[], $2::int8[]) AS u(s, d) ORDER BY s \
             ON CONFLICT (space) DO UPDATE \
             SET bytes = greatest(fibergun_spaces.bytes + excluded.bytes, 0) \
             RETURNING space, bytes",
            &[&spaces, &deltas],
        )
        .map_err(|e| crate::describe(&e))?;
    Ok(rows
        .iter()
        .map(|r| {
            let bytes: i64 = r.get(1);
            (r.get::<_, String>(0), bytes.max(0) as u64)
        })
        .collect())
}

/// Locks every soul the batch merges into and reads the stored fields its merges touch.
fn lock_and_load(
    txn: &mut Transaction<'_>,
    ops: &[StoreOp],
) -> Result<BTreeMap<Soul, BTreeMap<Key, Field>>, String> {
    let mut touched: BTreeMap<&Soul, BTreeSet<&Key>> = BTreeMap::new();
    for op in ops {
        if let StoreOp::Merge { soul, fields, .. } = op {
            touched
                .entry(soul)
                .or_default()
                .extend(fields.iter().map(|(k, _)| k));
        }
    }
    if touched.is_empty() {
        return Ok(BTreeMap::new());
    }
    let mut locks: Vec<i64> = touched.keys().map(|s| lock_key(s)).collect();
    locks.sort_unstable();
    locks.dedup();
    txn.execute(
        "SELECT pg_advisory_xact_lock(k) FROM unnest($1::int8[]) AS k",
        &[&locks],
    )
    .map_err(|e| crate::describe(&e))?;
    let (mut souls, mut keys): (Vec<&[u8]>, Vec<&[u8]>) = (Vec::new(), Vec::new());
    for (soul, ks) in &touched {
        for k in ks {
            souls.push(soul.as_str().as_bytes());
            keys.push(k.as_str().as_bytes());
        }
    }
    let rows = txn
        .query(
            "SELECT f.soul, f.key, f.state, f.value FROM fibergun_fields f \
             JOIN unnest($1::bytea[], $2::bytea[]) AS u(soul, key) \
             ON f.soul = u.soul AND f.key = u.key",
            &[&souls, &keys],
        )
        .map_err(|e| crate::describe(&e))?;
    let mut known: BTreeMap<Soul, BTreeMap<Key, Field>> = BTreeMap::new();
    for row in rows {
        let soul = decode_soul(row.get(0))?;
        let key = decode_key(row.get(1))?;
        let field = decode_field(row.get(2), row.get(3))?;
        known.entry(soul).or_default().insert(key, field);
    }
    Ok(known)
}

/// Writes the decided fields (the souls are locked: nobody else writes them meanwhile).
fn flush(txn: &mut Transaction<'_>, dirty: &mut Dirty) -> Result<(), String> {
    if dirty.is_empty() {
        return Ok(());
    }
    let mut souls: Vec<&[u8]> = Vec::with_capacity(dirty.len());
    let mut keys: Vec<&[u8]> = Vec::with_capacity(dirty.len());
    let mut states: Vec<f64> = Vec::with_capacity(dirty.len());
    let mut values: Vec<String> = Vec::with_capacity(dirty.len());
    for ((soul, key), field) in dirty.iter() {
        souls.push(soul.as_str().as_bytes());
        keys.push(key.as_str().as_bytes());
        states.push(field.state.ms());
        values.push(value_text(&field.value));
    }
    txn.execute(
        "INSERT INTO fibergun_fields (soul, key, state, value) \
         SELECT * FROM unnest($1::bytea[], $2::bytea[], $3::float8[], $4::text[]) \
         ON CONFLICT (soul, key) DO UPDATE SET state = excluded.state, value = excluded.value",
        &[&souls, &keys, &states, &values],
    )
    .map_err(|e| crate::describe(&e))?;
    dirty.clear();
    Ok(())
}
