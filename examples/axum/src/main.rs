//! An axum application with fibergun mounted in it.
//!
//! ```sh
//! cargo run -p fibergun-axum-example -- [LISTEN] [DATA_DIR]
//! ```
//!
//! GUN JS clients connect to `http://LISTEN/gun`; the REST API is at `/api/v1/data/*path`; `/`
//! is the application's own route.

use axum::routing::get;
use axum::Router;
use fibergun_axum_example::{routes, Fibergun};
use fibergun_drive::RelayConfig;
use fibergun_lmdb::{LmdbStore, DEFAULT_MAP_SIZE};
use fibergun_rest::tokens::AccessConfig;
use fibergun_rest::RestConfig;
use fibergun_threads::Relay;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let mut args = std::env::args().skip(1);
    let listen = args.next().unwrap_or_else(|| "127.0.0.1:8765".into());
    let data = args.next().unwrap_or_else(|| "./axum-data".into());
    let store = LmdbStore::open(data.as_ref(), DEFAULT_MAP_SIZE)?;
    let (rest, access) = (RestConfig::default(), AccessConfig::default());
    let server = Relay::embedded(RelayConfig::default(), store)?;
    let app = Router::new()
        .route(
            "/",
            get(|| async { "an axum application with fibergun at /gun" }),
        )
        .merge(routes(Fibergun::new(
            server.connector().clone(),
            rest,
            access,
        )));
    let listener = tokio::net::TcpListener::bind(&listen).await?;
    println!("listening on http://{}", listener.local_addr()?);
    axum::serve(listener, app)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    // Finish the writes in flight and close the store.
    tokio::task::spawn_blocking(move || server.shutdown()).await?;
    Ok(())
}
