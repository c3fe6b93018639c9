//! The `fibergun-threads` command: `fibergun serve` on the std-thread runtime.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use fibergun_host::{init_logging, ServeArgs};
use fibergun_threads::Server;
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

#[derive(Parser)]
#[command(
    name = "fibergun-threads",
    version,
    about = "A GUN-compatible relay server (std-thread runtime)"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a relay: the GUN WebSocket endpoint at /gun, on an embedded LMDB store.
    Serve(ServeArgs),
}

fn main() -> ExitCode {
    init_logging();
    let Cli {
        command: Command::Serve(args),
    } = Cli::parse();
    let mut signals = match Signals::new([SIGINT, SIGTERM]) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("fibergun: cannot install signal handlers: {e}");
            return ExitCode::FAILURE;
        }
    };
    let server = match Server::start(args.into_config()) {
        Ok(server) => server,
        Err(e) => {
            eprintln!("fibergun: {e}");
            return ExitCode::FAILURE;
        }
    };
    if let Some(signal) = signals.forever().next() {
        tracing::info!("received signal {signal}");
    }
    server.shutdown();
    ExitCode::SUCCESS
}
