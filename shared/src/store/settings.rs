//! Which blob store to use: the same variables and flags for the server and the workers.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::Args;

use super::{BlobStore, FsBlobStore, S3BlobStore, S3Options, StoreError};

#[derive(Debug, Clone, Args)]
pub struct StoreSettings {
    /// Folder for the server's database and, by default, the blob store.
    #[arg(long, env = "IMAGEAPI_DATA_DIR", default_value = "./data", global = true)]
    pub data_dir: PathBuf,
    /// Folder for originals and thumbnails when IMAGEAPI_BLOB_URL is unset (default: DATA_DIR/blobs).
    #[arg(long, env = "IMAGEAPI_BLOB_DIR", global = true)]
    pub blob_dir: Option<PathBuf>,
    /// Keep blobs in an S3-compatible bucket: `s3://bucket` or `s3://bucket/prefix` (unset: the
    /// directory store). The server and every worker must name the same store.
    #[arg(long, env = "IMAGEAPI_BLOB_URL", global = true)]
    pub blob_url: Option<String>,
    /// S3 endpoint of a self-hosted server, e.g. `http://minio:9000` (unset: AWS).
    #[arg(long, env = "IMAGEAPI_S3_ENDPOINT", global = true)]
    pub s3_endpoint: Option<String>,
    /// S3 region (unset: AWS_REGION or AWS_DEFAULT_REGION, else us-east-1).
    #[arg(long, env = "IMAGEAPI_S3_REGION", global = true)]
    pub s3_region: Option<String>,
    /// Path-style requests (`endpoint/bucket/key`) instead of virtual-hosted ones (default:
    /// path-style when IMAGEAPI_S3_ENDPOINT is set, as self-hosted servers expect).
    #[arg(long, env = "IMAGEAPI_S3_PATH_STYLE", global = true)]
    pub s3_path_style: Option<bool>,
    /// S3 access key id.
    #[arg(long, env = "AWS_ACCESS_KEY_ID", hide_env_values = true, global = true)]
    pub s3_access_key_id: Option<String>,
    /// S3 secret access key (prefer the environment: a flag shows in `ps`).
    #[arg(long, env = "AWS_SECRET_ACCESS_KEY", hide_env_values = true, global = true)]
    pub s3_secret_access_key: Option<String>,
    /// S3 session token, for temporary credentials.
    #[arg(long, env = "AWS_SESSION_TOKEN", hide_env_values = true, global = true)]
    pub s3_session_token: Option<String>,
    /// Longest time one S3 request may take, in seconds.
    #[arg(long, env = "IMAGEAPI_S3_TIMEOUT_SECS", default_value_t = 30, global = true)]
    pub s3_timeout_secs: u64,
    /// How long a failing S3 request is retried (with exponential backoff) before the error
    /// counts: an upload then answers 503, a thumbnail job is retried later.
    #[arg(long, env = "IMAGEAPI_S3_RETRY_SECS", default_value_t = 5, global = true)]
    pub s3_retry_secs: u64,
}

impl StoreSettings {
    pub fn blob_dir(&self) -> PathBuf {
        self.blob_dir.clone().unwrap_or_else(|| self.data_dir.join("blobs"))
    }

    /// The folder of a directory store; `None` for S3.
    pub fn local_dir(&self) -> Option<PathBuf> {
        match self.blob_url.as_deref() {
            None => Some(self.blob_dir()),
            Some(url) if url.starts_with("s3://") => None,
            Some(url) => Some(PathBuf::from(url.strip_prefix("file://").unwrap_or(url))),
        }
    }

    /// The configured store.
    pub fn open(&self) -> Result<Arc<dyn BlobStore>, StoreError> {
        match &self.blob_url {
            Some(url) => self.open_url(url),
            None => open_dir(self.blob_dir()),
        }
    }

    /// The store a URL names, with this configuration's S3 settings: `s3://bucket[/prefix]`,
    /// `file:///path` or a plain path.
    pub fn open_url(&self, url: &str) -> Result<Arc<dyn BlobStore>, StoreError> {
        if let Some(rest) = url.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            if bucket.is_empty() {
                return Err(StoreError::Config(format!("{url}: the URL names no bucket (s3://bucket/prefix)")));
            }
            let options = S3Options {
                bucket: bucket.to_owned(),
                prefix: prefix.trim_matches('/').to_owned(),
                endpoint: self.s3_endpoint.clone(),
                region: self.s3_region.clone(),
                path_style: self.s3_path_style.unwrap_or(self.s3_endpoint.is_some()),
                access_key_id: self.s3_access_key_id.clone(),
                secret_access_key: self.s3_secret_access_key.clone(),
                session_token: self.s3_session_token.clone(),
                request_timeout: Duration::from_secs(self.s3_timeout_secs.max(1)),
                retry_for: Duration::from_secs(self.s3_retry_secs),
            };
            return Ok(Arc::new(S3BlobStore::open(&options)?));
        }
        if let Some(path) = url.strip_prefix("file://") {
            return open_dir(PathBuf::from(path));
        }
        if url.contains("://") {
            return Err(StoreError::Config(format!("{url}: unknown store (use s3://bucket/prefix or a directory)")));
        }
        open_dir(PathBuf::from(url))
    }
}

fn open_dir(dir: PathBuf) -> Result<Arc<dyn BlobStore>, StoreError> {
    let store = FsBlobStore::open(&dir)
        .map_err(|e| StoreError::Config(format!("cannot open the blob directory {}: {e}", dir.display())))?;
    Ok(Arc::new(store))
}
