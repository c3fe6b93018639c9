//! For the benchmarks' short versions in `cargo test`: relays started in this process from
//! `serve`'s own flags, small (two threads), stopped in order.

use std::path::Path;

use clap::Parser;

use crate::s3::Relay;

/// `serve`'s flags, parsed as the binary parses them.
#[derive(Parser)]
struct Flags {
    #[command(flatten)]
    serve: fibergun_server::ServeArgs,
}

/// Starts a relay on `dir` with `extra` flags of `serve`; a [`crate::s3::Launcher`].
pub fn launch(dir: &Path, extra: &[String]) -> Result<Relay, String> {
    let mut args = vec!["serve", "--listen", "127.0.0.1:0", "--data"];
    args.push(dir.to_str().ok_or("a folder whose path is not UTF-8")?);
    args.extend(extra.iter().map(String::as_str));
    let mut config = Flags::try_parse_from(args)
        .map_err(|e| e.to_string())?
        .serve
        .into_config()
        .map_err(|e| e.0)?;
    config.relay.threads = 2;
    config.relay.verify_threads = 1;
    let server = fibergun_server::Server::start(config).map_err(|e| e.0)?;
    Ok(Relay {
        url: format!("ws://{}/gun", server.local_addr()),
        stop: Box::new(move || server.shutdown()),
    })
}
