//! The suite every runtime passes, through its binary ([`crate::BINARY`]) and its library
//! ([`crate::runtime`]): each module is one concern, and each test starts its own servers.

mod access_relay;
mod address_limits;
mod bad_input;
mod durability;
mod embedded;
mod interop;
mod keepalive;
mod memory_limit;
mod memory_store;
mod open_relay;
mod postgres_relays;
mod relay_mesh;
mod remote_cli;
mod s3_relay;
mod sea_relay;
mod shutdown;
mod slow_reader;
mod store_faults;
mod store_full;
mod upstream;

/// The server's `/metrics` text (the `fibergun` binary's; see [`crate::SERVES_METRICS`]).
fn scrape(server: &fibergun_testkit::Server) -> String {
    ureq::get(&format!("http://127.0.0.1:{}/metrics", server.port))
        .call()
        .expect("GET /metrics")
        .body_mut()
        .read_to_string()
        .expect("the metrics text")
}

/// The value of the sample `name` (no labels) in a metrics text.
fn sample(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in\n{text}"))
}
