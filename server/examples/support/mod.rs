//! What both example programs do first: start a server on the example pages.

use std::path::PathBuf;

use fibergun_server::{Server, ServerConfig};

/// Starts a server on `[LISTEN] [DATA_DIR]` from the command line (defaults `127.0.0.1:8765`
/// and `default_data`), serving the example pages (`examples/`) at `/`.
pub fn start_server(default_data: &str) -> Result<Server, Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let listen = args.next().unwrap_or_else(|| "127.0.0.1:8765".into());
    let data = args.next().unwrap_or_else(|| default_data.into());
    let pages = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples");
    if !pages.join("node_modules/gun/gun.js").is_file() {
        return Err("GUN JS is missing: run `npm ci --prefix examples` first".into());
    }
    Ok(Server::start(ServerConfig {
        relay: fibergun_drive::RelayConfig {
            listen: listen.parse()?,
            ..fibergun_drive::RelayConfig::default()
        },
        data_dir: data.into(),
        static_dir: Some(pages),
        ..ServerConfig::default()
    })?)
}
