//! The schema: created at the first start, versioned, and checked at every start. Everything
//! fibergun keeps is in tables and views named `fibergun_*`, so the database may hold others.
//!
//! - `fibergun_fields (soul bytea, key bytea, state double precision, value text)`: one row per
//!   field, keyed by (soul, key). Souls and keys are their UTF-8 bytes (any character, NUL
//!   included); `value` is the field's JSON text (a link is `{"#":"soul"}`).
//! - `fibergun_graph (soul text, key text, value json, state double precision)`: the same rows
//!   for people and SQL tools (a soul or key holding U+0000 shows as NULL here; its exact bytes
//!   are in `fibergun_fields`).
//! - `fibergun_spaces (space text, bytes bigint)`: the bytes each space holds (the storage
//!   contract's rule 6): a user's, by its public key, and the shared space, `''`.
//! - `fibergun_schema (version integer)`: one row, the schema's version.

use postgres::Client;

/// The version this build creates and reads.
pub const SCHEMA_VERSION: i32 = 1;

/// Held while the schema is checked or created, so relays starting together do it once.
const SCHEMA_LOCK: i64 = 0x6669_6265_7267_756e; // "fibergun"

const CREATE: &str = r#"
CREATE TABLE fibergun_fields (
    soul bytea NOT NULL,
    key bytea NOT NULL,
    state double precision NOT NULL,
    value text NOT NULL,
    PRIMARY KEY (soul, key)
);
CREATE VIEW fibergun_graph AS
    SELECT CASE WHEN position('\x00'::bytea IN soul) = 0 THEN convert_from(soul, 'UTF8') END AS soul,
           CASE WHEN position('\x00'::bytea IN key) = 0 THEN convert_from(key, 'UTF8') END AS key,
           value::json AS value,
           state
    FROM fibergun_fields;
CREATE TABLE fibergun_spaces (
    space text PRIMARY KEY,
    bytes bigint NOT NULL
);
CREATE TABLE fibergun_schema (version integer NOT NULL);
"#;

/// Checks the schema, creating it in an empty database. A database whose `fibergun_*` tables
/// are of another version, or were not made by fibergun, is refused with a message saying so.
pub(crate) fn prepare(client: &mut Client) -> Result<(), String> {
    let encoding: String = client
        .query_one("SHOW server_encoding", &[])
        .map_err(|e| crate::describe(&e))?
        .get(0);
    if encoding != "UTF8" {
        return Err(format!(
            "the database's encoding is {encoding}; fibergun needs UTF8 (CREATE DATABASE … ENCODING 'UTF8')"
        ));
    }
    let mut txn = client.transaction().map_err(|e| crate::describe(&e))?;
    txn.execute("SELECT pg_advisory_xact_lock($1)", &[&SCHEMA_LOCK])
        .map_err(|e| crate::describe(&e))?;
    let exists = |txn: &mut postgres::Transaction<'_>, name: &str| -> Result<bool, String> {
        let row = txn
            .query_one("SELECT to_regclass($1) IS NOT NULL", &[&name])
            .map_err(|e| crate::describe(&e))?;
        Ok(row.get(0))
    };
    if exists(&mut txn, "fibergun_schema")? {
        let versions: Vec<i32> = txn
            .query("SELECT version FROM fibergun_schema", &[])
            .map_err(|e| crate::describe(&e))?
            .iter()
            .map(|r| r.get(0))
            .collect();
        return match versions.as_slice() {
            [v] if *v == SCHEMA_VERSION => Ok(()),
            [v] => Err(format!(
                "the database holds fibergun's schema version {v}; this fibergun reads version {SCHEMA_VERSION}"
            )),
            _ => Err(format!(
                "the database's fibergun_schema table holds {} rows, not one: it was not made by fibergun",
                versions.len()
            )),
        };
    }
    for table in ["fibergun_fields", "fibergun_graph", "fibergun_spaces"] {
        if exists(&mut txn, table)? {
            return Err(format!(
                "the database holds a {table} table or view without fibergun_schema: it was not made by fibergun"
            ));
        }
    }
    txn.batch_execute(CREATE).map_err(|e| crate::describe(&e))?;
    txn.execute(
        "INSERT INTO fibergun_schema (version) VALUES ($1)",
        &[&SCHEMA_VERSION],
    )
    .map_err(|e| crate::describe(&e))?;
    txn.commit().map_err(|e| crate::describe(&e))?;
    tracing::info!("created fibergun's schema (version {SCHEMA_VERSION}) in the database");
    Ok(())
}
