//! The axum application with fibergun mounted: GUN JS clients use `/gun` through axum, and the
//! REST routes answer through axum, on one embedded fibergun.

use std::net::SocketAddr;

use axum::routing::get;
use axum::Router;
use fibergun_axum_example::{routes, Fibergun};
use fibergun_drive::RelayConfig;
use fibergun_lmdb::{LmdbStore, DEFAULT_MAP_SIZE};
use fibergun_rest::tokens::AccessConfig;
use fibergun_rest::RestConfig;
use fibergun_testkit::gunjs;
use fibergun_threads::Relay;

/// Starts the application on a free port, on a tokio runtime of its own.
fn start(data: &std::path::Path) -> (SocketAddr, Relay) {
    let config = RelayConfig {
        threads: 1,
        verify_threads: 1,
        ..RelayConfig::default()
    };
    let store = LmdbStore::open(data, DEFAULT_MAP_SIZE).expect("the store opens");
    let (rest, access) = (RestConfig::default(), AccessConfig::default());
    let server = Relay::embedded(config, store).expect("fibergun starts");
    let app = Router::new()
        .route("/", get(|| async { "app" }))
        .merge(routes(Fibergun::new(
            server.connector().clone(),
            rest,
            access,
        )));
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap()
            .block_on(async move {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                tx.send(listener.local_addr().unwrap()).unwrap();
                axum::serve(listener, app).await.unwrap();
            })
    });
    (rx.recv().unwrap(), server)
}

#[test]
fn gun_js_and_rest_work_through_axum() {
    gunjs::ensure_node_deps();
    let data = tempfile::tempdir().unwrap();
    let (addr, server) = start(data.path());
    let url = format!("http://{addr}/gun");
    for script in ["put_flat.js", "set_map.js", "on_update.js"] {
        let run = gunjs::run_node(script, &[&url]);
        gunjs::expect_success(&run, &format!("node {script} through axum"));
    }

    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let base = format!("http://{addr}");
    let mut put = agent
        .put(format!("{base}/api/v1/data/axum/doc"))
        .send(r#"{"from":"rest","n":{"deep":1}}"#)
        .unwrap();
    assert_eq!(
        put.status(),
        200,
        "{}",
        put.body_mut().read_to_string().unwrap()
    );
    let mut got = agent
        .get(format!("{base}/api/v1/data/axum/doc?depth=1"))
        .call()
        .unwrap();
    let body: serde_json::Value =
        serde_json::from_str(&got.body_mut().read_to_string().unwrap()).unwrap();
    assert_eq!(body, serde_json::json!({"from": "rest", "n": {"deep": 1}}));
    let mut missing = agent
        .get(format!("{base}/api/v1/data/nothing"))
        .call()
        .unwrap();
    assert_eq!(missing.status(), 404);
    assert!(missing
        .body_mut()
        .read_to_string()
        .unwrap()
        .contains("\"error\""));
    let mut app = agent.get(format!("{base}/")).call().unwrap();
    assert_eq!(app.body_mut().read_to_string().unwrap(), "app");
    server.shutdown();
}
