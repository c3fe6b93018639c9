//! What only the `fibergun` binary is tested for: its HTTP routes (REST, metrics, static files in
//! a browser), TLS peers, the store tools, and the slow process tests that run once.

mod admin;
mod backup;
mod browser;
mod chaos;
mod console;
mod flood;
mod metrics;
mod openapi;
mod radata;
mod rest;
mod tls_peer;
