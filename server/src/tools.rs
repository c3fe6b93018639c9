//! The tools on a store: `backup` and `restore` (a consistent LMDB copy, to a file or an S3
//! object), `export` and `import` (JSON Lines, merged by HAM), and `import-radata` (a GUN JS
//! relay's files).

use crate::cli::Command;

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
            Command::Export { data, out } => {
                let store = LmdbStore::open_beside(&data, fibergun_lmdb::DEFAULT_MAP_SIZE)
                    .map_err(|e| e.0)?;
                let nodes = match &out {
                    Some(path) => {
                        let file = std::fs::File::create(path)
                            .map_err(|e| format!("{}: {e}", path.display()))?;
                        store.export(&mut std::io::BufWriter::new(file))?
                    }
                    None => store.export(&mut std::io::BufWriter::new(std::io::stdout().lock()))?,
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
                Ok(format!(
                    "imported {nodes} nodes into {}",
                    target.data.display()
                ))
            }
            Command::ImportRadata { target, radata } => {
                let mut store = target.open()?;
                let (files, fields) = fibergun_lmdb::import_radata(&mut store, &radata)?;
                Ok(format!(
                    "imported {fields} fields from {files} radata files into {}",
                    target.data.display()
                ))
            }
        }
    }
}
