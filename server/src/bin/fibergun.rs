//! The `fibergun` command.

use std::process::ExitCode;

use fibergun_server::{init_logging, parse_command, serve, Invocation};
use futures_util::StreamExt;

fn main() -> ExitCode {
    init_logging();
    let args = match parse_command("fibergun", "A GUN-compatible relay server") {
        Invocation::Serve(args) => args,
        Invocation::Tool(tool) => return tool.run_reporting("fibergun"),
        Invocation::Remote(command) => return command.run("fibergun"),
    };
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
    let config = match args.into_config() {
        Ok(config) => config,
        Err(e) => {
            eprintln!("fibergun: {e}");
            return ExitCode::from(2);
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
