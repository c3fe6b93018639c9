//! The server's HTTP routes besides `/gun` (which the runtime serves): the REST API
//! ([`fibergun_rest`], on hyper), `/metrics`, `/health`, and the `--static` folder, answered on
//! the smol runtime's HTTP front.

pub mod console;
pub mod metrics;
mod rest_hyper;
pub mod static_files;

use std::path::PathBuf;
use std::sync::Arc;

use fibergun_drive::local::Connector;
use fibergun_rest as rest;
use fibergun_smol::http::{error_reply, full, json_reply, Reply, ReplyFuture, Routes};
use fibergun_smol::Context;
use hyper::body::{Bytes, Incoming};
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::{Request, Response, StatusCode};

use crate::storage::StoreReaders;

/// How long an admin API request may take.
const ADMIN_DEADLINE: std::time::Duration = std::time::Duration::from_secs(10);

/// The routes, with what they need of the server.
pub struct HttpRoutes {
    /// The REST routes' body limit and CORS origins.
    rest: rest::RestConfig,
    /// The folder served at `/`, if any.
    static_dir: Option<PathBuf>,
    /// Reads the store's size and figures, for metrics.
    store_stats: StoreReaders,
    /// The chain API for the REST routes, one in-process connection per principal.
    guns: Arc<rest::Guns>,
    /// The admin API and console; off without a token.
    admin: Option<Admin>,
}

/// The admin API's token, and what the console shows of the relay's settings.
pub struct Admin {
    /// `--admin-token`.
    pub token: String,
    /// Shown in the console's status.
    pub settings: console::Settings,
    /// The console's charts, sampled from the relay's start.
    pub history: console::History,
}

impl HttpRoutes {
    /// The routes of the relay behind `connector`, with these settings.
    pub fn new(
        rest: rest::RestConfig,
        static_dir: Option<PathBuf>,
        store_stats: StoreReaders,
        connector: &Connector,
        admin: Option<Admin>,
    ) -> HttpRoutes {
        HttpRoutes {
            rest,
            static_dir,
            store_stats,
            guns: Arc::new(rest::Guns::new(connector.clone())),
            admin,
        }
    }

    /// `/api/v1/admin/…`: `route`, for a request that presented the admin token.
    fn admin_api(
        &self,
        req: Request<Incoming>,
        route: rest::routes::Route,
        relay: Arc<Context>,
    ) -> ReplyFuture {
        use rest::routes::Route;
        let method = req.method().clone();
        let query = req.uri().query().map(str::to_owned);
        match route {
            Route::Status => {
                let admin = self.admin.as_ref().expect("checked by the caller");
                let (stats, settings) = (self.store_stats.clone(), admin.settings.clone());
                let history = admin.history.clone();
                Box::pin(async move { console::status(&relay, &history, &stats, &settings).await })
            }
            Route::Watch(soul) => {
                let reply = rest_hyper::watch(&self.guns, &soul);
                Box::pin(async move { reply })
            }
            route => {
                let guns = self.guns.clone();
                Box::pin(async move {
                    let deadline = async {
                        async_io::Timer::after(ADMIN_DEADLINE).await;
                        error_reply(
                            StatusCode::SERVICE_UNAVAILABLE,
                            "the relay did not answer in time",
                        )
                    };
                    let answer = async {
                        let response =
                            rest::admin::handle(&guns, &method, route, query.as_deref()).await;
                        rest_hyper::into_reply(response)
                    };
                    smol::future::or(answer, deadline).await
                })
            }
        }
    }

    /// `/admin…`: the console's page and assets, signing in and out.
    fn console(&self, req: Request<Incoming>, admin: &Admin) -> ReplyFuture {
        let path = req.uri().path().to_owned();
        let post = req.method() == hyper::Method::POST;
        if post && (path == "/admin/login" || path == "/admin/logout") {
            let token = admin.token.clone();
            return Box::pin(async move {
                if path == "/admin/logout" {
                    return console::logout();
                }
                use http_body_util::{BodyExt, Limited};
                match Limited::new(req.into_body(), 4096).collect().await {
                    Ok(body) => console::login(&token, &body.to_bytes()),
                    Err(_) => error_reply(StatusCode::PAYLOAD_TOO_LARGE, "the form is too large"),
                }
            });
        }
        let signed_in =
            rest::admin::authorized(&admin.token, console::presented(req.headers()).as_deref());
        let reply = match console::asset(&path, signed_in) {
            Some(reply) if req.method() == hyper::Method::GET => reply,
            Some(_) => error_reply(
                StatusCode::METHOD_NOT_ALLOWED,
                "the console is read with GET",
            ),
            None => error_reply(StatusCode::NOT_FOUND, "no such page of the console"),
        };
        Box::pin(async move { reply })
    }
}

impl Routes for HttpRoutes {
    fn route(
        &self,
        req: Request<Incoming>,
        relay: Arc<Context>,
    ) -> Result<ReplyFuture, Request<Incoming>> {
        use rest::routes::{find, Found, Route};
        let ready = |reply: Reply| -> ReplyFuture { Box::pin(async move { reply }) };
        let Some(found) = find(req.method(), req.uri().path()) else {
            return self.outside_the_api(req);
        };
        // The admin API says nothing, not even which routes it has, without its token.
        if req.uri().path().starts_with(rest::admin::ADMIN_PREFIX) {
            let Some(admin) = &self.admin else {
                return Ok(ready(error_reply(
                    StatusCode::NOT_FOUND,
                    "the admin API is off: start the relay with --admin-token",
                )));
            };
            let presented = console::presented(req.headers());
            if !rest::admin::authorized(&admin.token, presented.as_deref()) {
                return Ok(ready(rest_hyper::into_reply(rest::admin::unauthorized())));
            }
        }
        let route = match found {
            Found::Route(route) => route,
            Found::MethodNotAllowed(methods) => {
                let mut reply = error_reply(
                    StatusCode::METHOD_NOT_ALLOWED,
                    &format!("this route takes {}", methods.join(", ")),
                );
                if let Ok(allow) = HeaderValue::from_str(&methods.join(", ")) {
                    reply.headers_mut().insert(hyper::header::ALLOW, allow);
                }
                return Ok(ready(reply));
            }
            Found::NoAdminRoute => {
                return Ok(ready(rest_hyper::into_reply(rest::admin::not_found())))
            }
        };
        if route.is_admin() {
            return Ok(self.admin_api(req, route, relay));
        }
        Ok(match route {
            Route::Subscribe => ready(rest_hyper::subscribe(req, &relay, &self.guns, &self.rest)),
            Route::Data => {
                let gun = relay
                    .authenticate(&req)
                    .map(|principal| self.guns.acting_for(&principal));
                let rest = self.rest.clone();
                Box::pin(async move { rest_hyper::data(req, gun, &rest).await })
            }
            Route::OpenApi => {
                let mut reply = Response::new(full(rest::routes::OPENAPI));
                reply
                    .headers_mut()
                    .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
                ready(reply)
            }
            Route::Metrics => {
                let accept = req
                    .headers()
                    .get(hyper::header::ACCEPT)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned);
                let stats = self.store_stats.clone();
                Box::pin(async move { metrics(&relay, &stats, accept).await })
            }
            Route::Health => {
                let stats = self.store_stats.clone();
                Box::pin(async move { health(&relay, &stats).await })
            }
            admin => unreachable!("admin routes are answered above: {admin:?}"),
        })
    }
}

impl HttpRoutes {
    /// What is not the REST contract's: the console's pages, then the static folder. Returns the
    /// request, as [`Routes::route`] does, when neither answers it.
    #[allow(clippy::result_large_err)] // the shape of `Routes::route`, which it answers for
    fn outside_the_api(&self, req: Request<Incoming>) -> Result<ReplyFuture, Request<Incoming>> {
        let path = req.uri().path();
        if let (Some(admin), true) = (
            &self.admin,
            path == console::PAGE || path.starts_with("/admin/"),
        ) {
            return Ok(self.console(req, admin));
        }
        // Without a static folder the runtime answers the rest: `/` with what this server is,
        // anything else with 404.
        match self.static_dir.clone() {
            Some(root) => Ok(Box::pin(async move { static_file(&req, &root).await })),
            None => Err(req),
        }
    }
}

/// A file of the `--static` folder.
async fn static_file(req: &Request<Incoming>, root: &std::path::Path) -> Reply {
    use static_files::{content_type, resolve, NotServed};
    if req.method() != hyper::Method::GET && req.method() != hyper::Method::HEAD {
        return error_reply(StatusCode::METHOD_NOT_ALLOWED, "static files are read-only");
    }
    let file = match resolve(root, req.uri().path()) {
        Ok(file) => file,
        Err(NotServed::NotFound) => return error_reply(StatusCode::NOT_FOUND, "not found"),
        Err(NotServed::TooLarge) => {
            return error_reply(
                StatusCode::PAYLOAD_TOO_LARGE,
                "the file is too large to serve",
            )
        }
    };
    let bytes = match smol::fs::read(&file).await {
        Ok(bytes) => bytes,
        Err(_) => return error_reply(StatusCode::NOT_FOUND, "not found"),
    };
    let body = if req.method() == hyper::Method::HEAD {
        full(Bytes::new())
    } else {
        full(bytes)
    };
    let mut r = Response::new(body);
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type(&file)));
    r
}

/// `/metrics`: OpenMetrics text for scrapers that ask for it, Prometheus text for the rest.
async fn metrics(relay: &Context, stats: &StoreReaders, accept: Option<String>) -> Reply {
    use metrics as m;
    let Some(peer) = relay.snapshot().await else {
        return error_reply(StatusCode::SERVICE_UNAVAILABLE, "the core is not answering");
    };
    let store = m::StoreFigures {
        size: stats.size.as_ref().and_then(|s| s.read().ok()),
        s3: stats.s3_figures(),
        postgres: stats.postgres_figures(),
    };
    let text = m::render(peer, store);
    let (text, content_type) = if m::wants_openmetrics(accept.as_deref()) {
        (text, m::CONTENT_TYPE)
    } else {
        (m::to_prometheus_text(&text), m::PROMETHEUS_CONTENT_TYPE)
    };
    let mut r = Response::new(full(text));
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

/// `/health`: 200 when ready, 503 when not, with what is wrong.
async fn health(relay: &Context, stats: &StoreReaders) -> Reply {
    let peer = relay.snapshot().await;
    let store = match (&stats.size, stats.postgres_figures()) {
        (Some(reader), _) => reader.read().map(Some),
        (None, Some(pg)) if !pg.feed_connected => {
            Err("PostgreSQL is not reachable (the change feed is not listening)".into())
        }
        (None, _) => Ok(None),
    };
    let (ready, body) = metrics::health_json(peer.as_ref(), &store);
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    json_reply(status, body)
}
