//! The tools on a store: `backup` and `restore` (a consistent LMDB copy, to a file or an S3
//! object), `export` and `import` (JSON Lines, merged by HAM), and `import-radata` (a GUN JS
//! relay's files).

use std::io::Write;

use crate::cli::Command;
use crate::storage::StoreKind;

/// A tool on a store (see `fibergun --help`).
pub struct Tool(pub(crate) Command);

impl Tool {
    /// Runs it and says how it went on standard error, as `bin`.
    pub fn run_reporting(self, bin: &str) -> std::process::ExitCode {
        match self.run() {
            Ok(done) => {
                eprintln!("{bin}: {done}");
                std::process::ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("{bin}: {e}");
                std::process::ExitCode::FAILURE
            }
        }
    }

    /// Runs it; what to print on success, or why it failed.
    pub fn run(self) -> Result<String, String> {
        use fibergun_lmdb::LmdbStore;
        match self.0 {
            Command::Serve(_) => Err("serve is not a tool".into()),
            Command::Remote(_) => Err("get, put and watch are not tools on a store".into()),
            Command::Backup { data, out, s3 } => {
                if let Some(url) = crate::storage::s3_flags::S3Url::parse(&out) {
                    let url = url?;
                    let bytes = crate::storage::s3_flags::backup_to_s3(&data, &url, &s3)?;
                    return Ok(format!(
                        "backed up {} to {url} ({bytes} bytes)",
                        data.display()
                    ));
                }
                let store = LmdbStore::open_beside(&data, fibergun_lmdb::DEFAULT_MAP_SIZE)
                    .map_err(|e| e.0)?;
                let bytes = store.backup_to(&out)?;
                Ok(format!(
                    "backed up {} to {} ({bytes} bytes)",
                    data.display(),
                    out.display()
                ))
            }
            Command::Restore { from, data, s3 } => {
                if let Some(url) = crate::storage::s3_flags::S3Url::parse(&from) {
                    let url = url?;
                    let bytes = crate::storage::s3_flags::restore_from_s3(&url, &data, &s3)?;
                    return Ok(format!(
                        "restored {url} ({bytes} bytes) into {}",
                        data.display()
                    ));
                }
                LmdbStore::restore(&from, &data).map_err(|e| e.0)?;
                Ok(format!(
                    "restored {} into {}",
                    from.display(),
                    data.display()
                ))
            }
            Command::Export {
                data,
                store,
                postgres,
                out,
            } => {
                let mut out: Box<dyn std::io::Write> = match &out {
                    Some(path) => Box::new(std::io::BufWriter::new(
                        std::fs::File::create(path)
                            .map_err(|e| format!("{}: {e}", path.display()))?,
                    )),
                    None => Box::new(std::io::BufWriter::new(std::io::stdout().lock())),
                };
                let nodes = match (store, postgres.postgres_url) {
                    (StoreKind::Lmdb, None) => {
                        LmdbStore::open_beside(&data, fibergun_lmdb::DEFAULT_MAP_SIZE)
                            .map_err(|e| e.0)?
                            .export(&mut out)?
                    }
                    (StoreKind::Postgres, Some(url)) => {
                        let mut store = fibergun_postgres::PgStore::open(&url)?;
                        let mut line = String::new();
                        let nodes = store.for_each_node(|node| {
                            line.clear();
                            fibergun_lmdb::write_node_line(&mut line, &node);
                            out.write_all(line.as_bytes()).map_err(|e| e.to_string())
                        })?;
                        out.flush().map_err(|e| e.to_string())?;
                        nodes
                    }
                    (StoreKind::Postgres, None) => {
                        return Err("--store postgres needs --postgres-url (or FIBERGUN_POSTGRES_URL)".into())
                    }
                    (StoreKind::Lmdb, Some(_)) => {
                        return Err("--postgres-url needs --store postgres".into())
                    }
                    (other, _) => {
                        return Err(format!(
                            "export reads an lmdb folder (an S3 store's replica is one) or a postgres database, not {other:?}"
                        ))
                    }
                };
                Ok(format!("exported {nodes} nodes"))
            }
            Command::Import { target, file } => {
                let mut store = target.open()?;
                let nodes = if file.as_os_str() == "-" {
                    fibergun_lmdb::import(&mut store, std::io::stdin().lock())?
                } else {
                    let f = std::fs::File::open(&file)
                        .map_err(|e| format!("{}: {e}", file.display()))?;
                    fibergun_lmdb::import(&mut store, std::io::BufReader::new(f))?
                };
                Ok(format!("imported {nodes} nodes into {}", target.describe()))
            }
            Command::ImportRadata { target, radata } => {
                let mut store = target.open()?;
                let (files, fields) = fibergun_lmdb::import_radata(&mut store, &radata)?;
                Ok(format!(
                    "imported {fields} fields from {files} radata files into {}",
                    target.describe()
                ))
            }
        }
    }
}
