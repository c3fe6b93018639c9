//! The command line: `serve` and its flags (which fill a [`ServerConfig`]), and the tools on a
//! store (`backup`, `restore`, `export`, `import`, `import-radata`). The same in both binaries.

use std::net::SocketAddr;
use std::path::PathBuf;

use fibergun::Limits;
use fibergun_drive::config::default_threads;
use fibergun_drive::{Keepalive, RelayConfig, StartError};

use crate::storage::StoreKind;
use crate::tools::Tool;
use crate::ServerConfig;

/// Reads a size: a number of bytes, or with a K, M, G or T suffix (powers of 1024; `B` and `iB`
/// may follow), e.g. `500M`, `2GiB`.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let t = t
        .strip_suffix("iB")
        .or_else(|| t.strip_suffix('B'))
        .unwrap_or(t);
    let (digits, shift) = match t.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => {
            let shift = match c.to_ascii_uppercase() {
                'K' => 10,
                'M' => 20,
                'G' => 30,
                'T' => 40,
                _ => return Err(format!("{text:?}: the unit is K, M, G or T")),
            };
            (&t[..i], shift)
        }
        _ => (t, 0),
    };
    let n: u64 = digits
        .trim()
        .parse()
        .map_err(|_| format!("{text:?} is not a size (bytes, or like 500M)"))?;
    n.checked_shl(shift)
        .filter(|v| v >> shift == n)
        .ok_or_else(|| format!("{text:?} is too large"))
}

/// The flags of `serve`.
#[derive(clap::Args, Debug)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8765", env = "FIBERGUN_LISTEN")]
    pub listen: SocketAddr,
    /// Directory of the store (created if missing).
    #[arg(long, default_value = "./fibergun-data", env = "FIBERGUN_DATA")]
    pub data: PathBuf,
    /// Where the graph is kept: `lmdb` in --data (durable), `s3` in a bucket (durable, with
    /// --data as its local replica; see the --s3 flags), `postgres` in a PostgreSQL database
    /// that many relays may share (see --postgres-url), or `memory` (for tests and ephemeral
    /// relays: acks mean in memory only; a restart starts empty).
    #[arg(long, default_value = "lmdb", value_parser = crate::storage::parse_store_kind)]
    pub store: crate::storage::StoreKind,
    #[command(flatten)]
    pub s3: crate::storage::s3_flags::S3Flags,
    #[command(flatten)]
    pub postgres: crate::storage::PostgresFlags,
    /// A relay to dial and stay connected to, fibergun or GUN JS (`ws://host:port/gun` or
    /// `http://host:port/gun`; `wss://` or `https://` for TLS). Repeat for several; connections
    /// are retried with backoff.
    #[arg(long = "peer", value_name = "URL")]
    pub peers: Vec<String>,
    /// A relay to sync with on demand, fibergun or GUN JS, as a GUN peer does: what this
    /// relay's clients read is asked of it too, what they write is sent to it (kept in the
    /// store's outbox until it acknowledges, across restarts). Only what is read or written here
    /// is held. Repeat for several; every write goes to each.
    #[arg(long = "upstream", value_name = "URL")]
    pub upstreams: Vec<String>,
    /// A PEM file of certificates to trust for TLS peers besides the web's usual roots (a relay
    /// with a private or self-signed certificate).
    #[arg(long, value_name = "FILE")]
    pub peer_ca: Option<PathBuf>,
    /// Largest accepted WebSocket frame, in bytes.
    #[arg(long, default_value_t = Limits::default().max_frame_bytes)]
    pub max_frame_bytes: usize,
    /// Deepest JSON nesting accepted in a frame.
    #[arg(long, default_value_t = Limits::default().max_json_depth)]
    pub max_depth: usize,
    /// Largest string value, in bytes.
    #[arg(long, default_value_t = Limits::default().max_value_bytes)]
    pub max_value_bytes: usize,
    /// Bytes queued for one connection before it is dropped as too slow to read.
    #[arg(long, default_value_t = Limits::default().max_outbound_queue_bytes)]
    pub max_outbound_queue_bytes: usize,
    /// Storage operations in flight before the relay stops reading sockets until storage
    /// catches up (half of this) or refuses a write as busy (all of it).
    #[arg(long, default_value_t = Limits::default().max_pending_store_ops)]
    pub max_pending_store_ops: usize,
    /// First wait before dialling a peer again, in milliseconds (it doubles up to the maximum).
    #[arg(long, default_value_t = Limits::default().reconnect_min_ms)]
    pub reconnect_min_ms: u64,
    /// Longest wait between dials of a peer, in milliseconds.
    #[arg(long, default_value_t = Limits::default().reconnect_max_ms)]
    pub reconnect_max_ms: u64,
    /// How long a read that finds nothing here waits for an upstream's answer before it is
    /// answered "not found", in milliseconds.
    #[arg(long, default_value_t = Limits::default().upstream_wait_ms)]
    pub upstream_wait_ms: u64,
    /// How long a write sent to an upstream waits for its acknowledgement before it is read
    /// back there (GUN JS does not acknowledge a write that changes nothing) and, if missing,
    /// sent again, in milliseconds.
    #[arg(long, default_value_t = Limits::default().upstream_ack_ms)]
    pub upstream_ack_ms: u64,
    /// Most the store may grow to, in bytes.
    #[arg(long, default_value_t = fibergun_lmdb::DEFAULT_MAP_SIZE)]
    pub map_size: usize,
    /// Threads checking the signatures of writes into user space [default: one per core].
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..=256))]
    pub verify_threads: Option<u16>,
    /// Largest REST request body, in bytes.
    #[arg(long, default_value_t = fibergun_rest::RestConfig::default().max_body_bytes)]
    pub max_body_bytes: usize,
    /// An origin allowed to call the REST API from a browser (CORS), e.g.
    /// `https://app.example`; `*` allows any. Repeat for several. None by default.
    #[arg(long = "cors-origin", value_name = "ORIGIN")]
    pub cors_origins: Vec<String>,
    /// A folder to serve at `/` (web pages, GUN JS's browser bundle).
    #[arg(long = "static", value_name = "DIR")]
    pub static_dir: Option<PathBuf>,
    /// Who may read: `everyone` or `token` (clients presenting a token).
    #[arg(long, default_value = "everyone", value_parser = fibergun_rest::tokens::parse_open)]
    pub read: fibergun::access::Open,
    /// Who may write: `everyone`; `signed` (everyone, but only what SEA vouches for: writes in
    /// a user space signed by its owner or a certificate holder, content-addressed `#` souls,
    /// alias lists; the public space refuses); `token`; or `nobody` (a read-only relay; peers it
    /// dials still write).
    #[arg(long, default_value = "everyone", value_parser = fibergun_rest::tokens::parse_write)]
    pub write: fibergun_rest::tokens::WriteOpen,
    /// Bytes one user space (`~PUB…`) may hold, e.g. `10M`; past it that user's writes are
    /// refused, others go on. No limit by default.
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    pub user_quota: Option<u64>,
    /// Bytes the public space (everything outside user spaces) may hold altogether, e.g. `1G`;
    /// past it, writes there are refused. No limit by default.
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    pub public_quota: Option<u64>,
    /// Writes one key may make per second (over every connection and relay link, in bursts of
    /// a second's worth); past it that key's writes are refused with an `err`. No limit by
    /// default.
    #[arg(long, value_name = "N")]
    pub user_writes_per_sec: Option<f64>,
    /// The bearer token of the admin API (`/api/v1/admin/…`: bans and takedowns), at least 16
    /// characters, distinct from every client token. The admin API is off without it.
    #[arg(
        long,
        value_name = "SECRET",
        env = "FIBERGUN_ADMIN_TOKEN",
        hide_env_values = true
    )]
    pub admin_token: Option<String>,
    /// A token, `NAME=SECRET` (a secret of at least 16 characters). Repeat for several. Clients
    /// present the secret as `Authorization: Bearer SECRET`, a `fibergun_token` cookie, or
    /// `?token=SECRET` on the URL.
    #[arg(long = "token", value_name = "NAME=SECRET")]
    pub tokens: Vec<String>,
    /// A file of tokens, one `NAME=SECRET` per line (keeps secrets off the command line).
    #[arg(long, value_name = "PATH", env = "FIBERGUN_TOKENS_FILE")]
    pub tokens_file: Option<PathBuf>,
    /// Seconds between WebSocket pings to each connection.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub ping_interval_secs: u64,
    /// Seconds of silence (no frame, no pong) after which a connection is closed as dead.
    #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..=86400))]
    pub idle_timeout_secs: u64,
    /// Seconds a client may take to send its HTTP request head (the WebSocket handshake).
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=600))]
    pub handshake_timeout_secs: u64,
    /// Most connections open at once (clients, peers, in-process).
    #[arg(long, default_value_t = Limits::default().max_connections)]
    pub max_connections: usize,
    /// Most connections one client address may have open (0: no limit). Over it: HTTP 429.
    #[arg(long, default_value_t = 0)]
    pub max_connections_per_address: usize,
    /// New connections one address may open per second, in bursts of twice that (0: no limit).
    #[arg(long, default_value_t = 0.0)]
    pub max_connects_per_sec_per_address: f64,
    /// Frames one address may send per second over all its connections, in bursts of twice
    /// that (0: no limit). Faster senders are read more slowly, not cut off.
    #[arg(long, default_value_t = 0.0)]
    pub max_frames_per_sec_per_address: f64,
    /// Refuse writes (with an `err`) once the store uses this much, e.g. `10G`; reads go on.
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    pub storage_quota: Option<u64>,
    /// The memory the server's buffers may use together, e.g. `512M`: frames queued to
    /// connections (half; past it the slowest readers are dropped), frames read and not yet
    /// handled (an eighth; past it sockets are read more slowly), the node cache (an eighth).
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    pub memory_limit: Option<u64>,
}

impl ServeArgs {
    /// The configuration these flags describe; an error for unreadable or malformed tokens.
    pub fn into_config(self) -> Result<ServerConfig, StartError> {
        let mut tokens =
            fibergun_rest::tokens::Tokens::parse(self.tokens.iter().map(String::as_str))
                .map_err(StartError)?;
        if let Some(file) = &self.tokens_file {
            tokens.extend(fibergun_rest::tokens::Tokens::read_file(file).map_err(StartError)?);
        }
        let access = fibergun_rest::tokens::AccessConfig {
            read: self.read,
            write: self.write.open,
            tokens,
        };
        if self
            .user_writes_per_sec
            .is_some_and(|n| !(n.is_finite() && n > 0.0))
        {
            return Err(StartError(
                "--user-writes-per-sec must be a number above 0".into(),
            ));
        }
        let writes = fibergun::WritePolicy {
            signed_only: self.write.signed_only,
            user_space_bytes: self.user_quota.unwrap_or(0),
            shared_space_bytes: self.public_quota.unwrap_or(0),
            writes_per_key_per_sec: self.user_writes_per_sec.unwrap_or(0.0),
        };
        let limits = Limits {
            max_frame_bytes: self.max_frame_bytes,
            max_json_depth: self.max_depth,
            max_value_bytes: self.max_value_bytes,
            max_outbound_queue_bytes: self.max_outbound_queue_bytes,
            max_pending_store_ops: self.max_pending_store_ops,
            reconnect_min_ms: self.reconnect_min_ms,
            reconnect_max_ms: self.reconnect_max_ms,
            upstream_wait_ms: self.upstream_wait_ms,
            upstream_ack_ms: self.upstream_ack_ms,
            max_connections: self.max_connections,
            ..Limits::default()
        };
        let s3 = store_s3_settings(self.store, &self.s3)?;
        let relay = RelayConfig {
            listen: self.listen,
            limits,
            peers: self.peers,
            upstreams: self.upstreams,
            verify_threads: self
                .verify_threads
                .map_or_else(default_threads, usize::from),
            keepalive: Keepalive {
                ping_interval: std::time::Duration::from_secs(self.ping_interval_secs),
                idle_timeout: std::time::Duration::from_secs(self.idle_timeout_secs),
            },
            handshake_timeout: std::time::Duration::from_secs(self.handshake_timeout_secs),
            memory_limit: self.memory_limit,
            writes,
            ..RelayConfig::default()
        };
        Ok(ServerConfig {
            relay,
            data_dir: self.data,
            map_size: self.map_size,
            peer_ca: self.peer_ca,
            rest: fibergun_rest::RestConfig {
                max_body_bytes: self.max_body_bytes,
                cors_origins: self.cors_origins,
            },
            static_dir: self.static_dir,
            access,
            storage_quota: self.storage_quota,
            store: self.store,
            s3,
            postgres_url: self.postgres.postgres_url,
            admin_token: self.admin_token,
            address_limits: crate::gate::address_limits::AddressLimitConfig {
                max_connections: self.max_connections_per_address,
                connects_per_sec: self.max_connects_per_sec_per_address.max(0.0),
                frames_per_sec: self.max_frames_per_sec_per_address.max(0.0),
            },
        })
    }
}

/// The S3 settings `--store` needs: those of the flags for `s3`, none otherwise (and S3 flags
/// without `--store s3` are a mistake worth an error).
fn store_s3_settings(
    store: StoreKind,
    flags: &crate::storage::s3_flags::S3Flags,
) -> Result<Option<crate::storage::s3_flags::S3Settings>, StartError> {
    match store {
        StoreKind::S3 => flags.store_settings().map(Some).map_err(StartError),
        _ if flags.names_a_store() => Err(StartError("--s3-bucket needs --store s3".into())),
        _ => Ok(None),
    }
}

/// Logs to stderr through `tracing`, filtered by `RUST_LOG` (default `info`).
pub fn init_logging() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
}

#[derive(clap::Parser)]
#[command(version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Subcommand)]
pub(crate) enum Command {
    /// Run a relay: the GUN WebSocket endpoint at /gun, on its store (LMDB by default).
    Serve(Box<ServeArgs>),
    /// Write a consistent copy of a store to a file or an S3 object, while its relay keeps
    /// running.
    Backup {
        /// The relay's data folder.
        #[arg(long, default_value = "./fibergun-data", env = "FIBERGUN_DATA")]
        data: PathBuf,
        /// The backup file to create, or `s3://BUCKET/KEY` (with --s3-endpoint).
        #[arg(long)]
        out: PathBuf,
        #[command(flatten)]
        s3: Box<crate::storage::s3_flags::S3Flags>,
    },
    /// Make a new data folder from a backup file or S3 object.
    Restore {
        /// The backup file, or `s3://BUCKET/KEY` (with --s3-endpoint).
        #[arg(long)]
        from: PathBuf,
        /// The data folder to create (new or empty).
        #[arg(long)]
        data: PathBuf,
        #[command(flatten)]
        s3: Box<crate::storage::s3_flags::S3Flags>,
    },
    /// Write every node of a store as JSON Lines (one node per line, with its states).
    Export {
        /// The data folder (its relay may keep running).
        #[arg(long, default_value = "./fibergun-data", env = "FIBERGUN_DATA")]
        data: PathBuf,
        /// `lmdb` (the folder's store), or `postgres` (a database, as of one moment, while its
        /// relays keep running).
        #[arg(long, default_value = "lmdb", value_parser = crate::storage::parse_store_kind)]
        store: StoreKind,
        #[command(flatten)]
        postgres: crate::storage::PostgresFlags,
        /// The file to write (standard output when not given).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Merge an export (JSON Lines) into a store, by HAM. Its relay must be stopped (relays on
    /// PostgreSQL may keep running).
    Import {
        #[command(flatten)]
        target: Box<ImportTarget>,
        /// The export to read (`-` for standard input).
        file: PathBuf,
    },
    /// Merge a GUN JS `radata` folder (radisk's files) into a store, by HAM: moving a GUN JS
    /// relay's data to fibergun. The store's relay must be stopped.
    ImportRadata {
        #[command(flatten)]
        target: Box<ImportTarget>,
        /// The GUN JS relay's `radata` folder (its `file` option).
        radata: PathBuf,
    },
    #[command(flatten)]
    Remote(crate::remote::RemoteCommand),
}

/// The store an import merges into.
#[derive(clap::Args)]
pub(crate) struct ImportTarget {
    /// The data folder (created if missing); with `--store s3`, the S3 store's replica; not
    /// used with `--store postgres`.
    #[arg(long, default_value = "./fibergun-data", env = "FIBERGUN_DATA")]
    pub(crate) data: PathBuf,
    /// `lmdb`; `s3` (the nodes are written to the bucket as the relay writes them); or
    /// `postgres` (merged into the database, whose relays may keep running and hear of them).
    #[arg(long, default_value = "lmdb", value_parser = crate::storage::parse_store_kind)]
    store: StoreKind,
    #[command(flatten)]
    s3: crate::storage::s3_flags::S3Flags,
    #[command(flatten)]
    postgres: crate::storage::PostgresFlags,
}

impl ImportTarget {
    /// Where the import goes, for its report.
    pub(crate) fn describe(&self) -> String {
        match self.store {
            StoreKind::Postgres => "the PostgreSQL database".into(),
            _ => self.data.display().to_string(),
        }
    }

    pub(crate) fn open(&self) -> Result<crate::storage::Backend, String> {
        if self.store == StoreKind::Memory {
            return Err("importing into a memory store would lose it at once".into());
        }
        let config = ServerConfig {
            data_dir: self.data.clone(),
            store: self.store,
            s3: store_s3_settings(self.store, &self.s3).map_err(|e| e.0)?,
            postgres_url: self.postgres.postgres_url.clone(),
            ..ServerConfig::default()
        };
        if self.postgres.postgres_url.is_some() && self.store != StoreKind::Postgres {
            return Err("--postgres-url needs --store postgres".into());
        }
        crate::storage::Backend::open(&config)
            .map(|(backend, _)| backend)
            .map_err(|e| e.0)
    }
}

/// What the command line asks for.
pub enum Invocation {
    /// Run a relay.
    Serve(Box<ServeArgs>),
    /// Run a tool on a store, then exit.
    Tool(Tool),
    /// Talk to a running relay (get, put, watch), then exit.
    Remote(crate::remote::RemoteCommand),
}

/// Reads the command line. Bad input ends the process with clap's message (and `--help` and
/// `--version` with their answers), as any command line tool does.
pub fn parse_command(bin: &'static str, about: &'static str) -> Invocation {
    use clap::{CommandFactory, FromArgMatches};
    let matches = Cli::command()
        .name(bin)
        .bin_name(bin)
        .about(about)
        .get_matches();
    match Cli::from_arg_matches(&matches) {
        Ok(Cli {
            command: Command::Serve(args),
        }) => Invocation::Serve(args),
        Ok(Cli {
            command: Command::Remote(remote),
        }) => Invocation::Remote(remote),
        Ok(Cli { command }) => Invocation::Tool(Tool(command)),
        Err(e) => e.exit(),
    }
}

#[cfg(test)]
mod tests {
    use super::parse_size;

    #[test]
    fn sizes_are_read_with_binary_units() {
        assert_eq!(parse_size("1024"), Ok(1024));
        assert_eq!(parse_size("500M"), Ok(500 << 20));
        assert_eq!(parse_size("2GiB"), Ok(2 << 30));
        assert_eq!(parse_size("64kB"), Ok(64 << 10));
        assert!(parse_size("12X").is_err());
        assert!(parse_size("lots").is_err());
        assert!(parse_size("99999999999T").is_err());
    }
}
