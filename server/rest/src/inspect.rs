//! What the admin console reads of the graph: souls by prefix, a page at a time in lex order, and
//! one node with each field's state. Read as the operator ([`Principal::Admin`]) through an
//! in-process connection of its own, opened for the request and closed after it (a soul-range
//! GET subscribes its connection to the range, which a one-off read must not keep).
//!
//! | request | answers |
//! |---|---|
//! | `GET /api/v1/admin/souls?prefix=P&after=S&limit=N` | `{"souls":[{"soul","fields"}…],"next":S\|null}`: souls starting with `P`, after `S`, at most `N` (1 to 500, default 100) |
//! | `GET /api/v1/admin/nodes/{soul}` | `{"soul","fields":[{"key","value","state","link"}…]}` (`link`: the soul a link leads to, else `null`); 404 when the soul has no fields |

use http::{Response, StatusCode};
use serde_json::{json, Map, Value as Json};

use fibergun::access::Principal;
use fibergun_drive::local::{Connector, LocalConnection};

use crate::{error_response, json_response};

/// Souls in one page by default, and at most.
pub const DEFAULT_PAGE: usize = 100;
/// The most souls one page may ask for.
pub const MAX_PAGE: usize = 500;
/// The value bytes one page's read may take.
const PAGE_BYTES: u64 = 1 << 20;

/// A page of souls.
pub async fn souls(connector: &Connector, query: Option<&str>) -> Response<String> {
    let params = match SoulsQuery::parse(query) {
        Ok(params) => params,
        Err(text) => return error_response(StatusCode::BAD_REQUEST, &text),
    };
    // A lower bound and no prefix: GUN's lex ignores bounds beside a prefix, so the prefix is
    // applied here. A lower bound always, too: a range with none is a relay's "everything",
    // which would make this connection a relay link; "\0" is below every soul.
    let lower = match &params.after {
        Some(after) if *after > params.prefix => after.clone(),
        _ if !params.prefix.is_empty() => params.prefix.clone(),
        _ => "\0".into(),
    };
    let mut lex = Map::new();
    lex.insert(">".into(), Json::String(lower));
    let get = json!({"get": {"#": lex, "%": PAGE_BYTES}});
    let Answer { nodes, bytes } = match ask(connector, get).await {
        Ok(answer) => answer,
        Err(e) => return e,
    };
    // An answer near its byte budget may have been cut short: then there may be more.
    let maybe_cut = bytes as u64 >= PAGE_BYTES / 2;
    // Souls come in order: the first past the prefix ends the answer.
    let past_prefix = nodes
        .iter()
        .any(|(soul, _)| !soul.starts_with(&params.prefix));
    // `>` is inclusive: the soul the previous page ended on is not shown again.
    let mut found: Vec<(String, usize)> = nodes
        .into_iter()
        .filter(|(soul, _)| soul.starts_with(&params.prefix))
        .filter(|(soul, _)| Some(soul) != params.after.as_ref())
        .map(|(soul, node)| (soul, fields_of(&node).len()))
        .collect();
    found.dedup_by(|a, b| a.0 == b.0);
    let next = if found.len() > params.limit || (maybe_cut && !past_prefix) {
        found.truncate(params.limit);
        found.last().map(|(soul, _)| soul.clone())
    } else {
        None
    };
    let souls: Vec<Json> = found
        .into_iter()
        .map(|(soul, fields)| json!({"soul": soul, "fields": fields}))
        .collect();
    json_response(
        StatusCode::OK,
        json!({"souls": souls, "next": next}).to_string(),
    )
}

/// One node, each field with its state and where a link leads.
pub async fn node(connector: &Connector, soul: &str) -> Response<String> {
    let get = json!({"get": {"#": soul}});
    let nodes = match ask(connector, get).await {
        Ok(answer) => answer.nodes,
        Err(e) => return e,
    };
    let mut fields: Vec<Json> = Vec::new();
    for (_, node) in nodes.iter().filter(|(s, _)| s == soul) {
        let states = node.get("_").and_then(|m| m.get(">"));
        for (key, value) in fields_of(node) {
            let state = states
                .and_then(|s| s.get(key))
                .cloned()
                .unwrap_or(Json::Null);
            let link = value
                .get("#")
                .filter(|_| value.as_object().is_some_and(|o| o.len() == 1));
            fields.push(json!({"key": key, "value": value, "state": state, "link": link}));
        }
    }
    if fields.is_empty() {
        return error_response(StatusCode::NOT_FOUND, "no node with this soul");
    }
    fields.sort_by(|a, b| a["key"].as_str().cmp(&b["key"].as_str()));
    fields.dedup_by(|a, b| a["key"] == b["key"]);
    json_response(
        StatusCode::OK,
        json!({"soul": soul, "fields": fields}).to_string(),
    )
}

/// A node's fields, without its metadata.
fn fields_of(node: &Json) -> Vec<(&String, &Json)> {
    node.as_object()
        .map(|o| o.iter().filter(|(k, _)| k.as_str() != "_").collect())
        .unwrap_or_default()
}

/// A read's answer: its nodes (soul, node) in the order they came, and the bytes of the frames
/// that brought them.
struct Answer {
    nodes: Vec<(String, Json)>,
    bytes: usize,
}

/// Sends `get` on a connection of its own and gathers the answer's nodes (soul, node), in the
/// order they came, until its last page.
async fn ask(connector: &Connector, mut get: Json) -> Result<Answer, Response<String>> {
    let conn = connector.open_as(Principal::Admin);
    // An id of its own: a relay drops a message id it saw in the last seconds.
    let id = format!("console-{}", conn.id().0);
    get["#"] = Json::String(id.clone());
    let answer = gather(&conn, &id, get).await;
    conn.close();
    answer
}

async fn gather(conn: &LocalConnection, id: &str, get: Json) -> Result<Answer, Response<String>> {
    let gone = || error_response(StatusCode::SERVICE_UNAVAILABLE, "the relay is stopping");
    conn.send(get.to_string()).await.map_err(|_| gone())?;
    let mut nodes = Vec::new();
    let mut bytes = 0;
    loop {
        let text = conn.recv().await.map_err(|_| gone())?;
        bytes += text.len();
        let messages = match serde_json::from_str::<Json>(&text) {
            Ok(Json::Array(items)) => items,
            Ok(one) => vec![one],
            Err(_) => continue,
        };
        for m in messages {
            if m.get("@").and_then(Json::as_str) != Some(id) {
                continue;
            }
            if let Some(err) = m.get("err").and_then(Json::as_str) {
                return Err(error_response(StatusCode::SERVICE_UNAVAILABLE, err));
            }
            if let Some(graph) = m.get("put").and_then(Json::as_object) {
                nodes.extend(graph.iter().map(|(s, n)| (s.clone(), n.clone())));
            }
            if m.get("more") != Some(&Json::Bool(true)) {
                return Ok(Answer { nodes, bytes });
            }
        }
    }
}

struct SoulsQuery {
    prefix: String,
    after: Option<String>,
    limit: usize,
}

impl SoulsQuery {
    fn parse(query: Option<&str>) -> Result<SoulsQuery, String> {
        let mut q = SoulsQuery {
            prefix: String::new(),
            after: None,
            limit: DEFAULT_PAGE,
        };
        for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            let value = percent_encoding::percent_decode_str(&value.replace('+', " "))
                .decode_utf8()
                .map_err(|_| format!("'{name}' is not UTF-8 once percent-decoded"))?
                .into_owned();
            match name {
                "prefix" => q.prefix = value,
                "after" => q.after = Some(value).filter(|v| !v.is_empty()),
                "limit" => {
                    q.limit = value
                        .parse()
                        .ok()
                        .filter(|n| (1..=MAX_PAGE).contains(n))
                        .ok_or_else(|| {
                            format!("limit must be a whole number from 1 to {MAX_PAGE}")
                        })?
                }
                other => {
                    return Err(format!(
                        "unknown parameter '{other}': prefix, after and limit are known"
                    ))
                }
            }
        }
        Ok(q)
    }
}
