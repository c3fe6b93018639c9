//! The admin API: bans and takedowns on a running relay, for its operator. Every request carries
//! `Authorization: Bearer ADMIN_TOKEN` (the server's `--admin-token`, distinct from client
//! tokens); without it, or with another, the answer is 401. Changes are writes to the reserved
//! souls of [`fibergun::moderation`] by the operator's own in-process connection, answered once
//! committed, so they are as durable as any write and survive restarts.
//!
//! | request | does |
//! |---|---|
//! | `GET /api/v1/admin/bans` | `{"bans":[key,…]}` |
//! | `PUT /api/v1/admin/bans/{key}` | bans a public key: its writes are refused, its space is not served |
//! | `DELETE /api/v1/admin/bans/{key}` | lifts the ban |
//! | `GET /api/v1/admin/takedowns` | `{"takedowns":[soul,…]}` |
//! | `PUT /api/v1/admin/takedowns/{soul}` | takes a soul down: not served, written or relayed; kept |
//! | `DELETE /api/v1/admin/takedowns/{soul}` | restores it |
//! | `POST /api/v1/admin/purge/{soul}` | overwrites every field of a taken-down soul with `null` (GUN's delete): its content is gone from the store |
//! | `GET /api/v1/admin/souls`, `GET /api/v1/admin/nodes/{soul}` | the graph, read as the operator (see [`crate::inspect`]) |
//!
//! `{key}` and `{soul}` are the rest of the path, percent-decoded (a soul's `/` may be written as
//! is).

use http::{Method, Response, StatusCode};
use percent_encoding::percent_decode_str;
use serde_json::{json, Value as Json};

use fibergun::access::Principal;
use fibergun::moderation::{BANS, TAKEDOWNS};
use fibergun_drive::gun::Gun;

use crate::routes::Route;
use crate::{error_response, gun_error, json_response, Guns};

/// Where the admin routes start.
pub const ADMIN_PREFIX: &str = "/api/v1/admin/";

/// Whether `authorization` (the request's header) presents `token`, compared in constant time.
pub fn authorized(token: &str, authorization: Option<&str>) -> bool {
    let Some(presented) = authorization.and_then(|v| {
        let (scheme, secret) = v.trim().split_once(' ')?;
        scheme.eq_ignore_ascii_case("bearer").then(|| secret.trim())
    }) else {
        return false;
    };
    let (a, b) = (presented.as_bytes(), token.as_bytes());
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The 401 answer, with the scheme to use.
pub fn unauthorized() -> Response<String> {
    let mut r = error_response(
        StatusCode::UNAUTHORIZED,
        "the admin API needs Authorization: Bearer <the --admin-token secret>",
    );
    r.headers_mut().insert(
        http::header::WWW_AUTHENTICATE,
        http::HeaderValue::from_static("Bearer"),
    );
    r
}

/// Answers an admin request for `route` (found by [`crate::routes::find`], its method one the
/// route takes) whose token was checked; `query` is what follows the path's `?`. The status and
/// the watch stream are the server's (they need its runtime).
pub async fn handle(
    guns: &Guns,
    method: &Method,
    route: Route,
    query: Option<&str>,
) -> Response<String> {
    let gun = guns.acting_for(&Principal::Admin);
    let raw_name = match &route {
        Route::Ban(raw) | Route::Takedown(raw) | Route::Purge(raw) | Route::Node(raw) => {
            Some(raw.as_str())
        }
        _ => None,
    };
    let name = match raw_name.map(|raw| percent_decode_str(raw).decode_utf8()) {
        None => String::new(),
        Some(Ok(n)) if !n.is_empty() => n.into_owned(),
        Some(_) => {
            return error_response(
                StatusCode::BAD_REQUEST,
                "the name is empty or not UTF-8 once percent-decoded",
            )
        }
    };
    let put = *method == Method::PUT;
    match route {
        Route::Bans => list(&gun, BANS, "bans").await,
        Route::Takedowns => list(&gun, TAKEDOWNS, "takedowns").await,
        Route::Ban(_) if put => set(&gun, BANS, &name, true, "banned").await,
        Route::Ban(_) => set(&gun, BANS, &name, false, "lifted").await,
        Route::Takedown(_) if put => set(&gun, TAKEDOWNS, &name, true, "taken_down").await,
        Route::Takedown(_) => set(&gun, TAKEDOWNS, &name, false, "restored").await,
        Route::Purge(_) => purge(&gun, &name).await,
        Route::Souls => crate::inspect::souls(guns.connector(), query).await,
        Route::Node(_) => crate::inspect::node(guns.connector(), &name).await,
        Route::Status
        | Route::Watch(_)
        | Route::Data
        | Route::Subscribe
        | Route::OpenApi
        | Route::Health
        | Route::Metrics => not_found(),
    }
}

/// The answer to an admin path that is no route.
pub fn not_found() -> Response<String> {
    error_response(
        StatusCode::NOT_FOUND,
        "no such admin route: see /api/v1/openapi.json",
    )
}

/// The names set to `true` in the reserved soul `soul`.
async fn names(gun: &Gun, soul: &str) -> Result<Vec<String>, Response<String>> {
    match gun.get(soul).once().await {
        Ok(Some(Json::Object(fields))) => Ok(fields
            .into_iter()
            .filter(|(_, v)| *v == Json::Bool(true))
            .map(|(k, _)| k)
            .collect()),
        Ok(_) => Ok(Vec::new()),
        Err(e) => Err(gun_error(&e)),
    }
}

async fn list(gun: &Gun, soul: &str, name: &str) -> Response<String> {
    match names(gun, soul).await {
        Ok(mut list) => {
            list.sort();
            json_response(StatusCode::OK, json!({ name: list }).to_string())
        }
        Err(r) => r,
    }
}

async fn set(gun: &Gun, soul: &str, name: &str, on: bool, done: &str) -> Response<String> {
    let value = if on { Json::Bool(true) } else { Json::Null };
    match gun.get(soul).get(name).put(&value).await {
        Ok(_) => json_response(
            StatusCode::OK,
            json!({ "ok": true, done: name }).to_string(),
        ),
        Err(e) => gun_error(&e),
    }
}

async fn purge(gun: &Gun, soul: &str) -> Response<String> {
    match names(gun, TAKEDOWNS).await {
        Ok(down) if down.iter().any(|s| s == soul) => {}
        Ok(_) => {
            return error_response(
                StatusCode::CONFLICT,
                "take the soul down first (PUT /api/v1/admin/takedowns/{soul}); purge erases what a takedown keeps",
            )
        }
        Err(r) => return r,
    }
    match gun.get(soul).delete().await {
        Ok(_) => json_response(
            StatusCode::OK,
            json!({ "ok": true, "purged": soul }).to_string(),
        ),
        Err(e) => gun_error(&e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_admin_token_as_a_bearer_is_authorized() {
        let token = "admin-secret-0123456789";
        assert!(authorized(token, Some("Bearer admin-secret-0123456789")));
        assert!(authorized(token, Some("bearer  admin-secret-0123456789 ")));
        assert!(!authorized(token, Some("Bearer admin-secret-012345678")));
        assert!(!authorized(token, Some("Basic admin-secret-0123456789")));
        assert!(!authorized(token, None));
    }
}
