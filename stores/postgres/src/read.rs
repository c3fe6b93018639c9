//! Reads, in the batch's transaction (so a read sees the merges before it): one field, a node
//! or a key range of it, or a page of a soul range, each by the primary key's index and fetched
//! a few hundred rows at a time, never further than the byte budget needs.

use fibergun::graph::{Field, Key, Node, Soul};
use fibergun::lex::{Budget, KeyQuery, Range};
use fibergun::store::ReadQuery;
use postgres::types::ToSql;
use postgres::Transaction;

use crate::codec::{decode_field, decode_key, decode_soul, past_prefix};

/// Rows fetched at a time.
const ROWS: i64 = 256;

/// A range's bounds on bytes: inclusive lower, and upper (exclusive for a prefix, inclusive
/// otherwise).
struct Bounds {
    lower: Vec<u8>,
    upper: Option<(Vec<u8>, bool)>,
}

fn bounds(range: &Range) -> Bounds {
    match &range.prefix {
        Some(p) => Bounds {
            lower: p.as_bytes().to_vec(),
            upper: Some((past_prefix(p), false)),
        },
        None => Bounds {
            lower: range.lower.as_deref().unwrap_or("").as_bytes().to_vec(),
            upper: range.upper.as_ref().map(|u| (u.as_bytes().to_vec(), true)),
        },
    }
}

pub(crate) fn read(txn: &mut Transaction<'_>, query: &ReadQuery) -> Result<Vec<Node>, String> {
    match query {
        ReadQuery::Node {
            soul,
            keys: KeyQuery::One(key),
            ..
        } => {
            let rows = txn
                .query(
                    "SELECT state, value FROM fibergun_fields WHERE soul = $1 AND key = $2",
                    &[&soul.as_str().as_bytes(), &key.as_str().as_bytes()],
                )
                .map_err(|e| crate::describe(&e))?;
            let Some(row) = rows.first() else {
                return Ok(Vec::new());
            };
            let field = decode_field(row.get(0), row.get(1))?;
            let mut node = Node::new(soul.clone());
            node.fields.insert(key.clone(), field);
            Ok(vec![node])
        }
        ReadQuery::Node {
            soul,
            keys,
            reverse,
            budget,
        } => {
            let all = Range::default();
            let range = match keys {
                KeyQuery::Range(r) => r,
                _ => &all,
            };
            read_node(txn, soul, range, *reverse, *budget)
        }
        ReadQuery::Souls {
            range,
            reverse,
            budget,
            after,
        } => read_souls(txn, range, *reverse, *budget, after.as_ref()),
    }
}

fn read_node(
    txn: &mut Transaction<'_>,
    soul: &Soul,
    range: &Range,
    reverse: bool,
    budget: u64,
) -> Result<Vec<Node>, String> {
    let b = bounds(range);
    let soul_bytes = soul.as_str().as_bytes();
    let mut budget = Budget::new(budget);
    let mut node = Node::new(soul.clone());
    // Keyset pagination: the next page starts past the last key taken.
    let mut cursor: Option<Vec<u8>> = None;
    loop {
        let mut sql = String::from("SELECT key, state, value FROM fibergun_fields WHERE soul = $1");
        let mut params: Vec<&(dyn ToSql + Sync)> = vec![&soul_bytes];
        sql.push_str(" AND key >= $2");
        params.push(&b.lower);
        if let Some((upper, inclusive)) = &b.upper {
            sql.push_str(if *inclusive {
                " AND key <= $3"
            } else {
                " AND key < $3"
            });
            params.push(upper);
        }
        if let Some(c) = &cursor {
            sql.push_str(&format!(
                " AND key {} ${}",
                if reverse { "<" } else { ">" },
                params.len() + 1
            ));
            params.push(c);
        }
        sql.push_str(if reverse {
            " ORDER BY key DESC LIMIT "
        } else {
            " ORDER BY key LIMIT "
        });
        sql.push_str(&ROWS.to_string());
        let rows = txn.query(&sql, &params).map_err(|e| crate::describe(&e))?;
        for row in &rows {
            let key_bytes: &[u8] = row.get(0);
            let key = decode_key(key_bytes)?;
            let field = decode_field(row.get(1), row.get(2))?;
            if !range.contains(key.as_str()) {
                continue;
            }
            if !budget.admit(&field.value) {
                return Ok(finish(node));
            }
            node.fields.insert(key, field);
        }
        if (rows.len() as i64) < ROWS {
            return Ok(finish(node));
        }
        let last: &[u8] = rows.last().expect("a full page").get(0);
        cursor = Some(last.to_vec());
    }
}

fn finish(node: Node) -> Vec<Node> {
    if node.fields.is_empty() {
        Vec::new()
    } else {
        vec![node]
    }
}

fn read_souls(
    txn: &mut Transaction<'_>,
    range: &Range,
    reverse: bool,
    budget: u64,
    after: Option<&(Soul, Key)>,
) -> Result<Vec<Node>, String> {
    let b = bounds(range);
    let mut budget = Budget::new(budget);
    let mut fields: Vec<(Soul, Key, Field)> = Vec::new();
    let mut cursor: Option<(Vec<u8>, Vec<u8>)> = after.filter(|_| !reverse).map(|(s, k)| {
        (
            s.as_str().as_bytes().to_vec(),
            k.as_str().as_bytes().to_vec(),
        )
    });
    'pages: loop {
        let mut sql =
            String::from("SELECT soul, key, state, value FROM fibergun_fields WHERE soul >= $1");
        let mut params: Vec<&(dyn ToSql + Sync)> = vec![&b.lower];
        if let Some((upper, inclusive)) = &b.upper {
            sql.push_str(if *inclusive {
                " AND soul <= $2"
            } else {
                " AND soul < $2"
            });
            params.push(upper);
        }
        if let Some((s, k)) = &cursor {
            let n = params.len();
            sql.push_str(&format!(
                " AND (soul, key) {} (${}, ${})",
                if reverse { "<" } else { ">" },
                n + 1,
                n + 2
            ));
            params.push(s);
            params.push(k);
        }
        sql.push_str(if reverse {
            " ORDER BY soul DESC, key DESC LIMIT "
        } else {
            " ORDER BY soul, key LIMIT "
        });
        sql.push_str(&ROWS.to_string());
        let rows = txn.query(&sql, &params).map_err(|e| crate::describe(&e))?;
        for row in &rows {
            let soul = decode_soul(row.get(0))?;
            if !range.contains(soul.as_str()) {
                continue;
            }
            let key = decode_key(row.get(1))?;
            let field = decode_field(row.get(2), row.get(3))?;
            if !budget.admit(&field.value) {
                break 'pages;
            }
            fields.push((soul, key, field));
        }
        if (rows.len() as i64) < ROWS {
            break;
        }
        let last = rows.last().expect("a full page");
        let (s, k): (&[u8], &[u8]) = (last.get(0), last.get(1));
        cursor = Some((s.to_vec(), k.to_vec()));
    }
    Ok(fibergun::store::page_of_nodes(
        fields.iter().map(|(s, k, f)| (s, k, f)),
        u64::MAX,
    ))
}

/// Hands every node to `each`, in soul order, as of the transaction's snapshot; returns how
/// many. Rows are fetched a page at a time, so a node is held whole but the graph never is.
pub(crate) fn for_each_node(
    txn: &mut Transaction<'_>,
    mut each: impl FnMut(Node) -> Result<(), String>,
) -> Result<u64, String> {
    let mut nodes = 0;
    let mut current: Option<Node> = None;
    let mut cursor: Option<(Vec<u8>, Vec<u8>)> = None;
    loop {
        let rows = match &cursor {
            None => txn.query(
                "SELECT soul, key, state, value FROM fibergun_fields ORDER BY soul, key LIMIT 1000",
                &[],
            ),
            Some((s, k)) => txn.query(
                "SELECT soul, key, state, value FROM fibergun_fields WHERE (soul, key) > ($1, $2) \
                 ORDER BY soul, key LIMIT 1000",
                &[s, k],
            ),
        }
        .map_err(|e| crate::describe(&e))?;
        for row in &rows {
            let soul = decode_soul(row.get(0))?;
            let key = decode_key(row.get(1))?;
            let field = decode_field(row.get(2), row.get(3))?;
            if current.as_ref().is_some_and(|n| n.soul != soul) {
                each(current.take().expect("checked"))?;
                nodes += 1;
            }
            current
                .get_or_insert_with(|| Node::new(soul))
                .fields
                .insert(key, field);
        }
        if rows.len() < 1000 {
            break;
        }
        let last = rows.last().expect("a full page");
        let (s, k): (&[u8], &[u8]) = (last.get(0), last.get(1));
        cursor = Some((s.to_vec(), k.to_vec()));
    }
    if let Some(node) = current {
        each(node)?;
        nodes += 1;
    }
    Ok(nodes)
}
