//! Every HTTP route of the REST contract, in one table ([`ROUTES`]) that the server dispatches by
//! ([`find`]) and that the OpenAPI document (`server/rest/openapi.json`, served at
//! [`OPENAPI_PATH`]) is held to by a test: a route the document lacks, or one it has that is
//! not here, fails it. The console's pages (`/admin…`, HTML) and `/gun` (GUN's WebSocket) are not
//! part of the REST contract.

use http::Method;

/// Where the OpenAPI document is served.
pub const OPENAPI_PATH: &str = "/api/v1/openapi.json";

/// The OpenAPI 3.1 document of these routes.
pub const OPENAPI: &str = include_str!("../openapi.json");

/// A request's route. Names are the rest of the path, as sent (percent-encoded).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Route {
    /// `/api/v1/data/{path}`.
    Data,
    /// `/api/v1/subscribe/{path}`.
    Subscribe,
    /// `/api/v1/openapi.json`.
    OpenApi,
    /// `/health`.
    Health,
    /// `/metrics`.
    Metrics,
    /// `/api/v1/admin/status`.
    Status,
    /// `/api/v1/admin/bans`.
    Bans,
    /// `/api/v1/admin/bans/{key}`.
    Ban(String),
    /// `/api/v1/admin/takedowns`.
    Takedowns,
    /// `/api/v1/admin/takedowns/{soul}`.
    Takedown(String),
    /// `/api/v1/admin/purge/{soul}`.
    Purge(String),
    /// `/api/v1/admin/souls`.
    Souls,
    /// `/api/v1/admin/nodes/{soul}`.
    Node(String),
    /// `/api/v1/admin/watch/{soul}`.
    Watch(String),
}

impl Route {
    /// Whether it is one of the admin API's (the admin token needed).
    pub fn is_admin(&self) -> bool {
        !matches!(
            self,
            Route::Data | Route::Subscribe | Route::OpenApi | Route::Health | Route::Metrics
        )
    }
}

/// Each route's path, in OpenAPI's template form, and its methods.
pub const ROUTES: &[(&str, &[&str])] = &[
    (
        "/api/v1/data/{path}",
        &["GET", "HEAD", "PUT", "POST", "DELETE", "OPTIONS"],
    ),
    ("/api/v1/subscribe/{path}", &["GET"]),
    ("/api/v1/openapi.json", &["GET"]),
    ("/health", &["GET"]),
    ("/metrics", &["GET"]),
    ("/api/v1/admin/status", &["GET"]),
    ("/api/v1/admin/bans", &["GET"]),
    ("/api/v1/admin/bans/{key}", &["PUT", "DELETE"]),
    ("/api/v1/admin/takedowns", &["GET"]),
    ("/api/v1/admin/takedowns/{soul}", &["PUT", "DELETE"]),
    ("/api/v1/admin/purge/{soul}", &["POST"]),
    ("/api/v1/admin/souls", &["GET"]),
    ("/api/v1/admin/nodes/{soul}", &["GET"]),
    ("/api/v1/admin/watch/{soul}", &["GET"]),
];

/// What [`find`] says of a request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Found {
    /// One of the routes, with a method it takes.
    Route(Route),
    /// One of the routes' paths, with a method it does not take; the methods it takes.
    MethodNotAllowed(&'static [&'static str]),
    /// An admin path that is no route.
    NoAdminRoute,
}

/// The route of `method` on `path`; `None` when the path is none of the REST contract's (the
/// console's pages, static files, `/gun`).
pub fn find(method: &Method, path: &str) -> Option<Found> {
    let Some((route, template)) = route_of(path)? else {
        return Some(Found::NoAdminRoute);
    };
    let methods = ROUTES
        .iter()
        .find(|(t, _)| *t == template)
        .map(|(_, m)| *m)
        .expect("every route is in the table");
    Some(if methods.contains(&method.as_str()) {
        Found::Route(route)
    } else {
        Found::MethodNotAllowed(methods)
    })
}

/// The route of `path` and its template: `None` when the path is not the REST contract's,
/// `Some(None)` for an admin path that is no route (answered 401 before 404, like the others).
fn route_of(path: &str) -> Option<Option<(Route, &'static str)>> {
    let name = |rest: &str, route: fn(String) -> Route, template| {
        (!rest.is_empty()).then(|| (route(rest.to_owned()), template))
    };
    if path.starts_with(crate::DATA_PREFIX) {
        return Some(Some((Route::Data, "/api/v1/data/{path}")));
    }
    if path.starts_with(crate::SUBSCRIBE_PREFIX) {
        return Some(Some((Route::Subscribe, "/api/v1/subscribe/{path}")));
    }
    match path {
        OPENAPI_PATH => return Some(Some((Route::OpenApi, "/api/v1/openapi.json"))),
        "/health" => return Some(Some((Route::Health, "/health"))),
        "/metrics" => return Some(Some((Route::Metrics, "/metrics"))),
        _ => {}
    }
    let admin = path.strip_prefix(crate::admin::ADMIN_PREFIX)?;
    let found = match admin.split_once('/') {
        None => match admin {
            "status" => Some((Route::Status, "/api/v1/admin/status")),
            "bans" => Some((Route::Bans, "/api/v1/admin/bans")),
            "takedowns" => Some((Route::Takedowns, "/api/v1/admin/takedowns")),
            "souls" => Some((Route::Souls, "/api/v1/admin/souls")),
            _ => None,
        },
        Some(("bans", rest)) => name(rest, Route::Ban, "/api/v1/admin/bans/{key}"),
        Some(("takedowns", rest)) => name(rest, Route::Takedown, "/api/v1/admin/takedowns/{soul}"),
        Some(("purge", rest)) => name(rest, Route::Purge, "/api/v1/admin/purge/{soul}"),
        Some(("nodes", rest)) => name(rest, Route::Node, "/api/v1/admin/nodes/{soul}"),
        Some(("watch", rest)) => name(rest, Route::Watch, "/api/v1/admin/watch/{soul}"),
        Some(_) => None,
    };
    Some(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn methods_of(doc: &serde_json::Value) -> Vec<(String, String)> {
        let mut out = Vec::new();
        for (path, item) in doc["paths"].as_object().expect("paths") {
            for method in item.as_object().expect("a path item").keys() {
                if ["get", "head", "put", "post", "delete", "options", "patch"]
                    .contains(&method.as_str())
                {
                    out.push((path.clone(), method.to_uppercase()));
                }
            }
        }
        out.sort();
        out
    }

    #[test]
    fn the_openapi_document_has_every_route_and_no_other() {
        let doc: serde_json::Value = serde_json::from_str(OPENAPI).expect("openapi.json is JSON");
        assert_eq!(doc["openapi"].as_str().map(|v| &v[..4]), Some("3.1."));
        let mut table: Vec<(String, String)> = ROUTES
            .iter()
            .flat_map(|(path, methods)| {
                methods
                    .iter()
                    .map(move |m| (path.to_string(), m.to_string()))
            })
            .collect();
        table.sort();
        assert_eq!(methods_of(&doc), table, "openapi.json and ROUTES differ");
    }

    #[test]
    fn every_route_in_the_table_is_found_by_its_paths_and_methods() {
        for (template, methods) in ROUTES {
            let path = template
                .replace("{path}", "people/ann")
                .replace("{key}", "some-key")
                .replace("{soul}", "a/b");
            for method in *methods {
                let method = Method::from_bytes(method.as_bytes()).unwrap();
                assert!(
                    matches!(find(&method, &path), Some(Found::Route(_))),
                    "{method} {path}"
                );
            }
            assert!(
                matches!(
                    find(&Method::PATCH, &path),
                    Some(Found::MethodNotAllowed(_))
                ),
                "PATCH {path}"
            );
        }
        assert_eq!(
            find(&Method::GET, "/api/v1/admin/nothing"),
            Some(Found::NoAdminRoute)
        );
        assert_eq!(
            find(&Method::GET, "/api/v1/admin/bans/"),
            Some(Found::NoAdminRoute)
        );
        assert_eq!(find(&Method::GET, "/gun"), None);
        assert_eq!(find(&Method::GET, "/admin"), None);
    }
}
