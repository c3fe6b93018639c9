//! A blocking S3 client for the few calls the store makes: requests are signed by rusty-s3
//! (SigV4, no I/O) and sent by ureq on the calling thread. Transient failures (the connection,
//! a 5xx, a 429) are retried a few times with a growing pause.

use std::io::{Read, Write};
use std::time::Duration;

use rusty_s3::actions::{CreateBucket, ListObjectsV2};
use rusty_s3::{Bucket, Credentials, S3Action, UrlStyle};

/// Where the objects live and who may touch them.
#[derive(Clone, PartialEq, Eq)]
pub struct S3Config {
    /// The service's base URL, such as `https://s3.eu-west-1.amazonaws.com` or
    /// `http://127.0.0.1:8333`.
    pub endpoint: String,
    /// The bucket.
    pub bucket: String,
    /// Prepended to every object's key (`relay-1/`, say), so that one bucket can hold several
    /// stores. Empty for the bucket's root.
    pub prefix: String,
    /// The region requests are signed for.
    pub region: String,
    /// The access key id.
    pub access_key: String,
    /// The secret key.
    pub secret_key: String,
    /// Bucket in the path (`endpoint/bucket/key`) rather than in the host name: what most
    /// S3-compatible servers want.
    pub path_style: bool,
}

impl std::fmt::Debug for S3Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The secret stays out of logs.
        f.debug_struct("S3Config")
            .field("endpoint", &self.endpoint)
            .field("bucket", &self.bucket)
            .field("prefix", &self.prefix)
            .field("region", &self.region)
            .field("access_key", &self.access_key)
            .field("path_style", &self.path_style)
            .finish()
    }
}

impl S3Config {
    /// Where this configuration's objects are, for messages and for telling stores apart:
    /// `endpoint/bucket/prefix`.
    pub fn location(&self) -> String {
        format!(
            "{}/{}/{}",
            self.endpoint.trim_end_matches('/'),
            self.bucket,
            self.prefix
        )
    }
}

/// Why a request failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum S3Error {
    /// The object is not there (404).
    NotFound,
    /// A create-only write found the key taken (412).
    Exists,
    /// The service answered with another status.
    Status {
        /// The HTTP status.
        code: u16,
        /// The start of its body (S3's XML error).
        body: String,
    },
    /// No answer: the connection failed or timed out.
    Transport(String),
    /// The configuration cannot address a bucket.
    Config(String),
}

impl std::fmt::Display for S3Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            S3Error::NotFound => f.write_str("no such object"),
            S3Error::Exists => f.write_str("the object exists already"),
            S3Error::Status { code, body } => write!(f, "HTTP {code}: {body}"),
            S3Error::Transport(e) => write!(f, "no answer: {e}"),
            S3Error::Config(e) => f.write_str(e),
        }
    }
}

impl std::error::Error for S3Error {}

impl S3Error {
    fn is_transient(&self) -> bool {
        match self {
            S3Error::Transport(_) => true,
            S3Error::Status { code, .. } => *code >= 500 || *code == 429,
            _ => false,
        }
    }
}

/// How long a signed request stays valid: long enough for a slow upload.
const SIGNED_FOR: Duration = Duration::from_secs(15 * 60);
/// How long a connection, a read or a write may stall before the attempt fails.
const STALL: Duration = Duration::from_secs(20);
/// Attempts per request, the first included.
const ATTEMPTS: u32 = 4;
/// Objects this size or larger are uploaded in parts of this size.
pub const PART_BYTES: usize = 16 << 20;
/// The most a single GET reads into memory.
const MAX_OBJECT_BYTES: u64 = 1 << 30;

/// One bucket (and prefix) of an S3-compatible service.
pub struct ObjectStore {
    bucket: Bucket,
    credentials: Credentials,
    agent: ureq::Agent,
    prefix: String,
    location: String,
}

impl std::fmt::Debug for ObjectStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ObjectStore({})", self.location)
    }
}

type Response = ureq::http::Response<ureq::Body>;

impl ObjectStore {
    /// A client for `config`'s bucket. Makes no request.
    pub fn new(config: &S3Config) -> Result<ObjectStore, S3Error> {
        let endpoint = config
            .endpoint
            .parse()
            .map_err(|e| S3Error::Config(format!("S3 endpoint {:?}: {e}", config.endpoint)))?;
        let style = if config.path_style {
            UrlStyle::Path
        } else {
            UrlStyle::VirtualHost
        };
        let bucket = Bucket::new(
            endpoint,
            style,
            config.bucket.clone(),
            config.region.clone(),
        )
        .map_err(|e| S3Error::Config(format!("S3 bucket {:?}: {e}", config.bucket)))?;
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            // A stalled service fails a request (and is retried) instead of holding the store
            // thread; bodies of any size still stream, as long as they move.
            .timeout_connect(Some(STALL))
            .timeout_per_read(Some(STALL))
            .timeout_per_write(Some(STALL))
            .build()
            .into();
        Ok(ObjectStore {
            bucket,
            credentials: Credentials::new(config.access_key.clone(), config.secret_key.clone()),
            agent,
            prefix: config.prefix.clone(),
            location: config.location(),
        })
    }

    /// `endpoint/bucket/prefix`.
    pub fn location(&self) -> &str {
        &self.location
    }

    fn full_key(&self, key: &str) -> String {
        format!("{}{key}", self.prefix)
    }

    /// Runs `request` until it succeeds, fails for good, or runs out of attempts.
    fn retrying<T>(&self, mut request: impl FnMut() -> Result<T, S3Error>) -> Result<T, S3Error> {
        let mut pause = Duration::from_millis(50);
        let mut attempt = 1;
        loop {
            match request() {
                Err(e) if e.is_transient() && attempt < ATTEMPTS => {
                    tracing::warn!("S3 request failed ({e}); trying again in {pause:?}");
                    std::thread::sleep(pause);
                    pause *= 4;
                    attempt += 1;
                }
                other => return other,
            }
        }
    }

    /// Creates the bucket (for tests and first setups); one that exists already is fine.
    pub fn create_bucket(&self) -> Result<(), S3Error> {
        let url = CreateBucket::new(&self.bucket, &self.credentials).sign(SIGNED_FOR);
        self.retrying(|| {
            let response = send(self.agent.put(url.as_str()).send(&[] as &[u8]))?;
            match checked(response) {
                Ok(_) => Ok(()),
                Err(S3Error::Status { code: 409, .. }) => Ok(()),
                Err(e) => Err(e),
            }
        })
    }

    /// Writes `body` at `key`, replacing what is there.
    pub fn put(&self, key: &str, body: &[u8]) -> Result<(), S3Error> {
        let key = self.full_key(key);
        let url = self
            .bucket
            .put_object(Some(&self.credentials), &key)
            .sign(SIGNED_FOR);
        self.retrying(|| checked(send(self.agent.put(url.as_str()).send(body))?).map(drop))
    }

    /// Writes `body` at `key` only if `key` is free (`If-None-Match: *`): two writers can never
    /// both think they wrote it. A retry after a lost answer that finds the same bytes there
    /// counts as success.
    pub fn put_new(&self, key: &str, body: &[u8]) -> Result<(), S3Error> {
        let full = self.full_key(key);
        let mut action = self.bucket.put_object(Some(&self.credentials), &full);
        action.headers_mut().insert("if-none-match", "*");
        let url = action.sign(SIGNED_FOR);
        let mut lost_answer = false;
        let result = self.retrying(|| {
            let sent = send(
                self.agent
                    .put(url.as_str())
                    .header("if-none-match", "*")
                    .send(body),
            );
            if matches!(sent, Err(S3Error::Transport(_))) {
                lost_answer = true;
            }
            checked(sent?).map(drop)
        });
        match result {
            Err(S3Error::Exists) if lost_answer => match self.get(key) {
                Ok(stored) if stored == body => Ok(()),
                _ => Err(S3Error::Exists),
            },
            other => other,
        }
    }

    /// Reads the object at `key` into memory.
    pub fn get(&self, key: &str) -> Result<Vec<u8>, S3Error> {
        let key = self.full_key(key);
        let url = self
            .bucket
            .get_object(Some(&self.credentials), &key)
            .sign(SIGNED_FOR);
        self.retrying(|| {
            let mut response = checked(send(self.agent.get(url.as_str()).call())?)?;
            response
                .body_mut()
                .with_config()
                .limit(MAX_OBJECT_BYTES)
                .read_to_vec()
                .map_err(|e| S3Error::Transport(e.to_string()))
        })
    }

    /// Streams the object at `key` into `out`. Returns its size.
    pub fn get_to(&self, key: &str, out: &mut impl Write) -> Result<u64, S3Error> {
        let key = self.full_key(key);
        let url = self
            .bucket
            .get_object(Some(&self.credentials), &key)
            .sign(SIGNED_FOR);
        let mut response = checked(send(self.agent.get(url.as_str()).call())?)?;
        let mut reader = response.body_mut().with_config().limit(u64::MAX).reader();
        std::io::copy(&mut reader, out).map_err(|e| S3Error::Transport(e.to_string()))
    }

    /// The keys (without the store's prefix) and sizes of the objects whose keys start with
    /// `prefix`, in key order, after `start_after` when given.
    pub fn list(
        &self,
        prefix: &str,
        start_after: Option<&str>,
    ) -> Result<Vec<(String, u64)>, S3Error> {
        let full_prefix = self.full_key(prefix);
        let full_start = start_after.map(|s| self.full_key(s));
        let mut found = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut action = ListObjectsV2::new(&self.bucket, Some(&self.credentials));
            action.with_prefix(full_prefix.as_str());
            if let Some(token) = &token {
                action.with_continuation_token(token.as_str());
            } else if let Some(start) = &full_start {
                action.with_start_after(start.as_str());
            }
            let url = action.sign(SIGNED_FOR);
            let text = self.retrying(|| {
                let mut response = checked(send(self.agent.get(url.as_str()).call())?)?;
                response
                    .body_mut()
                    .with_config()
                    .limit(64 << 20)
                    .read_to_string()
                    .map_err(|e| S3Error::Transport(e.to_string()))
            })?;
            let page = ListObjectsV2::parse_response(&text).map_err(|e| S3Error::Status {
                code: 200,
                body: format!("an object listing that does not parse: {e}"),
            })?;
            for object in page.contents {
                if let Some(key) = object.key.strip_prefix(&self.prefix) {
                    found.push((key.to_owned(), object.size.unwrap_or(0)));
                }
            }
            match page.next_continuation_token {
                Some(next) => token = Some(next),
                None => break,
            }
        }
        Ok(found)
    }

    /// Deletes the object at `key` (one that is not there is fine).
    pub fn delete(&self, key: &str) -> Result<(), S3Error> {
        let key = self.full_key(key);
        let url = self
            .bucket
            .delete_object(Some(&self.credentials), &key)
            .sign(SIGNED_FOR);
        self.retrying(
            || match checked(send(self.agent.delete(url.as_str()).call())?) {
                Ok(_) | Err(S3Error::NotFound) => Ok(()),
                Err(e) => Err(e),
            },
        )
    }

    /// Uploads everything `input` gives (`size` bytes) to `key`: in one request when small, in
    /// parts of [`PART_BYTES`] otherwise, so memory stays bounded whatever the size.
    pub fn upload(&self, key: &str, input: &mut impl Read, size: u64) -> Result<(), S3Error> {
        if size < PART_BYTES as u64 {
            let mut body = Vec::with_capacity(size as usize);
            input
                .read_to_end(&mut body)
                .map_err(|e| S3Error::Transport(format!("reading the upload: {e}")))?;
            return self.put(key, &body);
        }
        let full = self.full_key(key);
        let url = self
            .bucket
            .create_multipart_upload(Some(&self.credentials), &full)
            .sign(SIGNED_FOR);
        let text = self.retrying(|| {
            let mut response = checked(send(self.agent.post(url.as_str()).send(&[] as &[u8]))?)?;
            response
                .body_mut()
                .read_to_string()
                .map_err(|e| S3Error::Transport(e.to_string()))
        })?;
        let created = rusty_s3::actions::CreateMultipartUpload::parse_response(&text)
            .map_err(|e| S3Error::Transport(format!("multipart upload answer: {e}")))?;
        let upload_id = created.upload_id().to_owned();
        let uploaded = self.upload_parts(&full, &upload_id, input);
        match uploaded {
            Ok(etags) => {
                let action = self.bucket.complete_multipart_upload(
                    Some(&self.credentials),
                    &full,
                    &upload_id,
                    etags.iter().map(String::as_str),
                );
                let url = action.sign(SIGNED_FOR);
                let body = action.body();
                self.retrying(|| {
                    checked(send(self.agent.post(url.as_str()).send(body.as_str()))?).map(drop)
                })
            }
            Err(e) => {
                let url = self
                    .bucket
                    .abort_multipart_upload(Some(&self.credentials), &full, &upload_id)
                    .sign(SIGNED_FOR);
                if let Err(abort) = send(self.agent.delete(url.as_str()).call()) {
                    tracing::warn!("aborting the multipart upload of {full}: {abort}");
                }
                Err(e)
            }
        }
    }

    fn upload_parts(
        &self,
        full_key: &str,
        upload_id: &str,
        input: &mut impl Read,
    ) -> Result<Vec<String>, S3Error> {
        let mut etags = Vec::new();
        let mut part = vec![0u8; PART_BYTES];
        loop {
            let filled = fill(input, &mut part)
                .map_err(|e| S3Error::Transport(format!("reading the upload: {e}")))?;
            if filled == 0 {
                break;
            }
            let number = u16::try_from(etags.len() + 1)
                .map_err(|_| S3Error::Config("the upload has too many parts".into()))?;
            let url = self
                .bucket
                .upload_part(Some(&self.credentials), full_key, number, upload_id)
                .sign(SIGNED_FOR);
            let body = &part[..filled];
            let etag = self.retrying(|| {
                let response = checked(send(self.agent.put(url.as_str()).send(body))?)?;
                response
                    .headers()
                    .get("etag")
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned)
                    .ok_or_else(|| S3Error::Transport("a part's answer has no ETag".into()))
            })?;
            etags.push(etag);
            if filled < part.len() {
                break;
            }
        }
        Ok(etags)
    }
}

/// Reads until `buf` is full or the input ends.
fn fill(input: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match input.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

fn send(result: Result<Response, ureq::Error>) -> Result<Response, S3Error> {
    result.map_err(|e| S3Error::Transport(e.to_string()))
}

/// A 2xx answer, or the error its status means.
fn checked(mut response: Response) -> Result<Response, S3Error> {
    let code = response.status().as_u16();
    match code {
        200..=299 => Ok(response),
        404 => Err(S3Error::NotFound),
        412 => Err(S3Error::Exists),
        _ => {
            let mut body = response
                .body_mut()
                .with_config()
                .limit(4096)
                .lossy_utf8(true)
                .read_to_string()
                .unwrap_or_default();
            body.truncate(400);
            Err(S3Error::Status { code, body })
        }
    }
}
