//! The S3 flags (`--store s3`, and backups to and from `s3://bucket/key`), and moving backup
//! files in and out of a bucket.

use std::path::{Path, PathBuf};

use fibergun_s3::{ObjectStore, S3Config, SnapshotPolicy};

/// The environment variable holding the access key id.
pub const ACCESS_KEY_VAR: &str = "AWS_ACCESS_KEY_ID";
/// The environment variable holding the secret key.
pub const SECRET_KEY_VAR: &str = "AWS_SECRET_ACCESS_KEY";

/// Where an S3 store or backup lives. Credentials come from `AWS_ACCESS_KEY_ID` and
/// `AWS_SECRET_ACCESS_KEY`, never from the command line.
#[derive(clap::Args, Debug, Clone)]
pub struct S3Flags {
    /// The S3 service's URL, e.g. `https://s3.eu-west-1.amazonaws.com` or
    /// `http://127.0.0.1:8333`.
    #[arg(long, value_name = "URL", env = "FIBERGUN_S3_ENDPOINT")]
    pub s3_endpoint: Option<String>,
    /// The bucket of an S3 store (`--store s3`).
    #[arg(long, value_name = "NAME", env = "FIBERGUN_S3_BUCKET")]
    pub s3_bucket: Option<String>,
    /// A prefix for the store's objects, so that one bucket holds several relays' stores.
    #[arg(
        long,
        value_name = "PREFIX",
        default_value = "",
        env = "FIBERGUN_S3_PREFIX"
    )]
    pub s3_prefix: String,
    /// The region requests are signed for.
    #[arg(long, default_value = "us-east-1", env = "FIBERGUN_S3_REGION")]
    pub s3_region: String,
    /// Address the bucket as a host name (`bucket.endpoint`, as AWS prefers) rather than as a
    /// path (`endpoint/bucket`, what most S3-compatible servers want).
    #[arg(long)]
    pub s3_virtual_host: bool,
    /// Write a snapshot of the graph (and delete the batches it covers) after this much has
    /// been written in batches, or the size of the last snapshot if larger.
    #[arg(long, value_name = "SIZE", default_value = "64M", value_parser = crate::cli::parse_size)]
    pub s3_snapshot_after: u64,
}

/// An S3 store's settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct S3Settings {
    /// The bucket and credentials.
    pub config: S3Config,
    /// When snapshots are taken.
    pub snapshots: SnapshotPolicy,
}

impl S3Flags {
    /// The settings of an S3 store; an error naming what is missing.
    pub fn store_settings(&self) -> Result<S3Settings, String> {
        let bucket = self
            .s3_bucket
            .clone()
            .ok_or("--store s3 needs --s3-bucket")?;
        Ok(S3Settings {
            config: self.config_for(bucket, &self.s3_prefix)?,
            snapshots: SnapshotPolicy {
                after_bytes: self.s3_snapshot_after.max(1),
                ..SnapshotPolicy::default()
            },
        })
    }

    /// Whether any flag that only an S3 store reads was given.
    pub fn names_a_store(&self) -> bool {
        self.s3_bucket.is_some()
    }

    fn config_for(&self, bucket: String, prefix: &str) -> Result<S3Config, String> {
        let endpoint = self
            .s3_endpoint
            .clone()
            .ok_or("S3 needs --s3-endpoint (or FIBERGUN_S3_ENDPOINT)")?;
        let credential = |var: &str| {
            std::env::var(var).map_err(|_| format!("S3 needs the environment variable {var}"))
        };
        let mut prefix = prefix.trim_start_matches('/').to_owned();
        if !prefix.is_empty() && !prefix.ends_with('/') {
            prefix.push('/');
        }
        Ok(S3Config {
            endpoint,
            bucket,
            prefix,
            region: self.s3_region.clone(),
            access_key: credential(ACCESS_KEY_VAR)?,
            secret_key: credential(SECRET_KEY_VAR)?,
            path_style: !self.s3_virtual_host,
        })
    }

    /// A client for the object an `s3://bucket/key` URL names, and its key.
    fn object(&self, url: &S3Url) -> Result<ObjectStore, String> {
        let config = self.config_for(url.bucket.clone(), "")?;
        ObjectStore::new(&config).map_err(|e| e.to_string())
    }
}

/// An object named as `s3://bucket/key`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Url {
    /// The bucket.
    pub bucket: String,
    /// The object's key.
    pub key: String,
}

impl S3Url {
    /// Reads `s3://bucket/key`; `None` for a path that is not such a URL.
    pub fn parse(path: &Path) -> Option<Result<S3Url, String>> {
        let text = path.to_str()?.strip_prefix("s3://")?;
        Some(match text.split_once('/') {
            Some((bucket, key)) if !bucket.is_empty() && !key.is_empty() => Ok(S3Url {
                bucket: bucket.into(),
                key: key.into(),
            }),
            _ => Err(format!("{text:?}: give s3://BUCKET/KEY")),
        })
    }
}

impl std::fmt::Display for S3Url {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "s3://{}/{}", self.bucket, self.key)
    }
}

/// A file in the temporary folder, removed when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn new(what: &str) -> Scratch {
        Scratch(std::env::temp_dir().join(format!(
            "fibergun-{what}-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos())
        )))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Backs up the store in `data` to the object `url` (through a temporary file). Returns the
/// size.
pub fn backup_to_s3(data: &Path, url: &S3Url, flags: &S3Flags) -> Result<u64, String> {
    let objects = flags.object(url)?;
    let store = fibergun_lmdb::LmdbStore::open_beside(data, fibergun_lmdb::DEFAULT_MAP_SIZE)
        .map_err(|e| e.0)?;
    let scratch = Scratch::new("backup");
    let bytes = store.backup_to(&scratch.0)?;
    let mut file = std::fs::File::open(&scratch.0).map_err(|e| e.to_string())?;
    objects
        .upload(&url.key, &mut file, bytes)
        .map_err(|e| format!("uploading to {url}: {e}"))?;
    Ok(bytes)
}

/// Makes `data` a store restored from the backup at `url` (through a temporary file).
pub fn restore_from_s3(url: &S3Url, data: &Path, flags: &S3Flags) -> Result<u64, String> {
    let objects = flags.object(url)?;
    let scratch = Scratch::new("restore");
    let mut file = std::fs::File::create(&scratch.0).map_err(|e| e.to_string())?;
    let bytes = objects
        .get_to(&url.key, &mut file)
        .map_err(|e| format!("downloading {url}: {e}"))?;
    file.sync_all().map_err(|e| e.to_string())?;
    drop(file);
    fibergun_lmdb::LmdbStore::restore(&scratch.0, data).map_err(|e| e.0)?;
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn s3_urls_name_a_bucket_and_a_key() {
        assert_eq!(
            S3Url::parse(Path::new("s3://backups/relay/2026-12-02.mdb")),
            Some(Ok(S3Url {
                bucket: "backups".into(),
                key: "relay/2026-12-02.mdb".into()
            }))
        );
        assert!(S3Url::parse(Path::new("./backup.mdb")).is_none());
        assert!(matches!(
            S3Url::parse(Path::new("s3://bucket")),
            Some(Err(_))
        ));
        assert!(matches!(S3Url::parse(Path::new("s3:///key")), Some(Err(_))));
    }
}
