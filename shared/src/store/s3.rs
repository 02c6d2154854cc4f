//! [`BlobStore`] on an S3-compatible object store (AWS S3, MinIO, Garage, Ceph, s3s-fs …),
//! through the `object_store` crate.
//!
//! Every request has a timeout, and failed requests are retried with exponential backoff for a
//! bounded time (see [`S3Options`]), so an unreachable store shows up as
//! [`StoreError::Unavailable`] after seconds, never as a hang. A PUT is atomic in S3: a blob is
//! either absent or complete; a multipart upload is completed or aborted. A store that answers
//! 507 (full) is [`StoreError::OutOfSpace`].

use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::stream::BoxStream;
use futures_util::{StreamExt, TryStreamExt};
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::path::Path;
use object_store::{
    BackoffConfig, ClientOptions, GetOptions, GetRange, ObjectStore, ObjectStoreExt, PutPayload, RetryConfig,
    WriteMultipart,
};

use super::{BlobBody, BlobInfo, BlobKey, BlobStore, ByteRange, StoreError, WHOLE_BODY_MAX};
use imageapi_core::domain::ImageId;

/// Blobs above this size are written as a multipart upload of parts this large (S3's minimum
/// part size is 5 MiB); smaller ones with one PUT.
const MULTIPART_PART: usize = 8 * 1024 * 1024;

/// Where and how to reach the bucket.
#[derive(Debug, Clone)]
pub struct S3Options {
    pub bucket: String,
    /// Folder-like prefix inside the bucket ("" for the bucket's root).
    pub prefix: String,
    /// `http(s)://host:port` of an S3-compatible server (unset: AWS for the region).
    pub endpoint: Option<String>,
    pub region: Option<String>,
    /// Path-style requests (`endpoint/bucket/key`), which most self-hosted servers need.
    pub path_style: bool,
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<String>,
    pub session_token: Option<String>,
    /// Longest time one request may take.
    pub request_timeout: Duration,
    /// How long a failing request is retried (with backoff) before the error is returned.
    pub retry_for: Duration,
}

pub struct S3BlobStore {
    store: Arc<AmazonS3>,
    prefix: String,
    location: String,
}

impl std::fmt::Debug for S3BlobStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3BlobStore").field("location", &self.location).finish()
    }
}

impl S3BlobStore {
    /// Builds the client; no request is made (see [`BlobStore::check`]).
    pub fn open(options: &S3Options) -> Result<Self, StoreError> {
        super::install_tls_provider();
        let mut builder = AmazonS3Builder::from_env()
            .with_bucket_name(&options.bucket)
            .with_virtual_hosted_style_request(!options.path_style)
            .with_client_options(
                ClientOptions::new()
                    .with_timeout(options.request_timeout)
                    .with_connect_timeout(Duration::from_secs(5).min(options.request_timeout))
                    .with_allow_http(true),
            )
            .with_retry(RetryConfig {
                backoff: BackoffConfig {
                    init_backoff: Duration::from_millis(100),
                    max_backoff: Duration::from_secs(2),
                    base: 2.0,
                },
                max_retries: 10,
                retry_timeout: options.retry_for,
            });
        if let Some(endpoint) = &options.endpoint {
            builder = builder.with_endpoint(endpoint);
        }
        builder = builder.with_region(options.region.clone().unwrap_or_else(|| "us-east-1".to_owned()));
        if let Some(key) = &options.access_key_id {
            builder = builder.with_access_key_id(key);
        }
        if let Some(secret) = &options.secret_access_key {
            builder = builder.with_secret_access_key(secret);
        }
        if let Some(token) = &options.session_token {
            builder = builder.with_token(token);
        }
        let location = format!(
            "s3://{}/{}{}",
            options.bucket,
            options.prefix,
            options.endpoint.as_ref().map(|e| format!(" at {e}")).unwrap_or_default()
        );
        let store = builder.build().map_err(|e| StoreError::Config(format!("S3 store {location}: {e}")))?;
        let prefix = options.prefix.trim_matches('/').to_owned();
        Ok(Self { store: Arc::new(store), prefix, location })
    }

    fn path(&self, key: &BlobKey) -> Path {
        if self.prefix.is_empty() {
            Path::from(key.as_str())
        } else {
            Path::from(format!("{}/{}", self.prefix, key.as_str()))
        }
    }

    fn key_of(&self, path: &Path) -> Option<BlobKey> {
        let full = path.as_ref();
        let relative =
            if self.prefix.is_empty() { full } else { full.strip_prefix(self.prefix.as_str())?.strip_prefix('/')? };
        BlobKey::from_listing(relative)
    }
}

fn s3_error(key: &BlobKey, e: object_store::Error) -> StoreError {
    match e {
        object_store::Error::NotFound { .. } => StoreError::NotFound(key.as_str().to_owned()),
        other if says_storage_full(&other) => StoreError::OutOfSpace { key: key.as_str().to_owned() },
        other => StoreError::Unavailable { key: key.as_str().to_owned(), detail: other.to_string() },
    }
}

/// Whether the object store answered that it is full: HTTP 507 Insufficient Storage (MinIO's
/// `XMinioStorageFull`) or a quota error code in the body. Other failures stay "unavailable".
/// (object_store keeps the status in a private type, so its message is what can be read.)
fn says_storage_full(e: &object_store::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(current) = source {
        let text = current.to_string();
        if text.contains("status code: 507") || text.contains("StorageFull") || text.contains("QuotaExceeded") {
            return true;
        }
        source = current.source();
    }
    false
}

#[async_trait]
impl BlobStore for S3BlobStore {
    async fn put(&self, key: &BlobKey, bytes: Bytes) -> Result<(), StoreError> {
        let path = self.path(key);
        if bytes.len() <= MULTIPART_PART {
            self.store.put(&path, PutPayload::from_bytes(bytes)).await.map_err(|e| s3_error(key, e))?;
            return Ok(());
        }
        let upload = self.store.put_multipart(&path).await.map_err(|e| s3_error(key, e))?;
        let mut writer = WriteMultipart::new_with_chunk_size(upload, MULTIPART_PART);
        // Bytes::slice shares the buffer: the parts are views, not copies.
        let mut offset = 0;
        while offset < bytes.len() {
            let end = (offset + MULTIPART_PART).min(bytes.len());
            if let Err(e) = writer.wait_for_capacity(2).await {
                // A multipart upload is completed or aborted, never left half-made in the bucket.
                if let Err(abort) = writer.abort().await {
                    tracing::warn!(key = key.as_str(), error = %abort, "aborting a failed multipart upload failed; the bucket's lifecycle rules must clear it");
                }
                return Err(s3_error(key, e));
            }
            writer.put(bytes.slice(offset..end));
            offset = end;
        }
        // `finish` aborts the upload itself when a part or the completion fails.
        writer.finish().await.map_err(|e| s3_error(key, e))?;
        Ok(())
    }

    async fn get(&self, key: &BlobKey) -> Result<Bytes, StoreError> {
        let result = self.store.get(&self.path(key)).await.map_err(|e| s3_error(key, e))?;
        result.bytes().await.map_err(|e| s3_error(key, e))
    }

    async fn open(&self, key: &BlobKey, range: Option<ByteRange>) -> Result<BlobBody, StoreError> {
        let options = GetOptions {
            range: range.map(|r| GetRange::Bounded(Range { start: r.start, end: r.end + 1 })),
            ..GetOptions::default()
        };
        let result = self.store.get_opts(&self.path(key), options).await.map_err(|e| s3_error(key, e))?;
        let len = result.range.end - result.range.start;
        if len <= WHOLE_BODY_MAX {
            return Ok(BlobBody::Whole(result.bytes().await.map_err(|e| s3_error(key, e))?));
        }
        let stream = result.into_stream().map_err(std::io::Error::other).boxed();
        Ok(BlobBody::Stream { len, stream })
    }

    async fn delete(&self, key: &BlobKey) -> Result<(), StoreError> {
        match self.store.delete(&self.path(key)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(s3_error(key, e)),
        }
    }

    async fn delete_image(&self, id: ImageId) -> Result<(), StoreError> {
        self.delete(&BlobKey::original(id)).await?;
        let thumbs = BlobKey::thumbnails_of(id);
        let prefix = self.path(&thumbs);
        let listed: Vec<Path> = self
            .store
            .list(Some(&prefix))
            .map_ok(|meta| meta.location)
            .try_collect()
            .await
            .map_err(|e| s3_error(&thumbs, e))?;
        for path in listed {
            match self.store.delete(&path).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(s3_error(&thumbs, e)),
            }
        }
        Ok(())
    }

    async fn check(&self) -> Result<(), StoreError> {
        // One LIST of a single name: it proves the bucket exists and the credentials work (a
        // HEAD could not: S3 answers a missing bucket and a missing object both with a bare 404).
        let key = BlobKey::store_marker();
        self.store.list_with_delimiter(Some(&self.path(&key))).await.map(|_| ()).map_err(|e| s3_error(&key, e))
    }

    async fn size(&self, key: &BlobKey) -> Result<Option<u64>, StoreError> {
        match self.store.head(&self.path(key)).await {
            Ok(meta) => Ok(Some(meta.size)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(s3_error(key, e)),
        }
    }

    fn list(&self) -> BoxStream<'_, Result<BlobInfo, StoreError>> {
        let root = BlobKey(String::new());
        let prefix = if self.prefix.is_empty() { None } else { Some(Path::from(self.prefix.as_str())) };
        self.store
            .list(prefix.as_ref())
            .map_err(move |e| s3_error(&root, e))
            .try_filter_map(move |meta| async move {
                Ok(self.key_of(&meta.location).map(|key| BlobInfo { key, size: meta.size }))
            })
            .boxed()
    }

    fn location(&self) -> String {
        self.location.clone()
    }
}
