//! The `fibergun` command.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use fibergun::Limits;
use fibergun_smol::{serve, ServerConfig};
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

#[derive(clap::Args)]
struct ServeArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8765", env = "FIBERGUN_LISTEN")]
    listen: SocketAddr,
    /// Directory of the store (created if missing).
    #[arg(long, default_value = "./fibergun-data", env = "FIBERGUN_DATA")]
    data: PathBuf,
    /// Largest accepted WebSocket frame, in bytes.
    #[arg(long, default_value_t = Limits::default().max_frame_bytes)]
    max_frame_bytes: usize,
    /// Deepest JSON nesting accepted in a frame.
    #[arg(long, default_value_t = Limits::default().max_json_depth)]
    max_depth: usize,
    /// Largest string value, in bytes.
    #[arg(long, default_value_t = Limits::default().max_value_bytes)]
    max_value_bytes: usize,
    /// Bytes queued for one connection before it is dropped as too slow to read.
    #[arg(long, default_value_t = Limits::default().max_outbound_queue_bytes)]
    max_outbound_queue_bytes: usize,
    /// Most the store may grow to, in bytes.
    #[arg(long, default_value_t = fibergun_lmdb::DEFAULT_MAP_SIZE)]
    map_size: usize,
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let Cli {
        command: Command::Serve(args),
    } = Cli::parse();
    let limits = Limits {
        max_frame_bytes: args.max_frame_bytes,
        max_json_depth: args.max_depth,
        max_value_bytes: args.max_value_bytes,
        max_outbound_queue_bytes: args.max_outbound_queue_bytes,
        ..Limits::default()
    };
    let config = ServerConfig {
        listen: args.listen,
        data_dir: args.data,
        limits,
        map_size: args.map_size,
        ..ServerConfig::default()
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
    match serve(config, shutdown) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("fibergun: {e}");
            ExitCode::FAILURE
        }
    }
}
