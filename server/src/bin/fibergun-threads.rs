//! The `fibergun-threads` command: `fibergun serve` on the std-thread runtime.

use std::process::ExitCode;

use fibergun_server::serve::{check_for_threads, start_on_threads};
use fibergun_server::{init_logging, parse_command, Invocation};
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

fn main() -> ExitCode {
    init_logging();
    let args = match parse_command(
        "fibergun-threads",
        "A GUN-compatible relay server (std-thread runtime)",
    ) {
        Invocation::Serve(args) => args,
        Invocation::Tool(tool) => return tool.run_reporting("fibergun-threads"),
        Invocation::Remote(command) => return command.run("fibergun-threads"),
    };
    let mut signals = match Signals::new([SIGINT, SIGTERM]) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("fibergun: cannot install signal handlers: {e}");
            return ExitCode::FAILURE;
        }
    };
    let config = match args.into_config() {
        Ok(config) => config,
        Err(e) => {
            eprintln!("fibergun-threads: {e}");
            return ExitCode::from(2);
        }
    };
    // Flags this binary does not serve are a usage error, as a malformed flag is.
    if let Err(e) = check_for_threads(&config) {
        eprintln!("fibergun-threads: {e}");
        return ExitCode::from(2);
    }
    let server = match start_on_threads(config) {
        Ok(server) => server,
        Err(e) => {
            eprintln!("fibergun-threads: {e}");
            return ExitCode::FAILURE;
        }
    };
    if let Some(signal) = signals.forever().next() {
        tracing::info!("received signal {signal}");
    }
    server.shutdown();
    ExitCode::SUCCESS
}
