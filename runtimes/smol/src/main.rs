//! The `fibergun` command.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use fibergun_host::{init_logging, ServeArgs};
use fibergun_smol::serve;
use futures_util::StreamExt;

#[derive(Parser)]
#[command(name = "fibergun", version, about = "A GUN-compatible relay server")]
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
    let config = args.into_config();
    let signals =
        match async_signal::Signals::new([async_signal::Signal::Int, async_signal::Signal::Term]) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("fibergun: cannot install signal handlers: {e}");
                return ExitCode::FAILURE;
            }
        };
    let shutdown = async move {
        let mut signals = signals;
        if let Some(Ok(signal)) = signals.next().await {
            tracing::info!("received {signal:?}");
        }
    };
    match serve(config, shutdown) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("fibergun: {e}");
            ExitCode::FAILURE
        }
    }
}
