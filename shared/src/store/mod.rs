//! Blob storage for originals and thumbnails, behind [`BlobStore`]: a directory
//! ([`FsBlobStore`]) or an S3-compatible bucket ([`S3BlobStore`]), chosen by
//! [`StoreSettings`]. Keys are [`BlobKey`]s built only from ids and heights — never from
//! anything a user sent — so a key cannot escape the store's root.

mod fs;
mod marker;
mod s3;
mod settings;

use std::io;

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::stream::BoxStream;

use imageapi_core::domain::ImageId;
use imageapi_core::image::{ImageFormat, ThumbnailFormat};

pub use fs::FsBlobStore;
pub use marker::{ensure_marker, read_marker, StoreMarker};
pub use s3::{S3BlobStore, S3Options};
pub use settings::StoreSettings;

/// Where a blob lives inside a store.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct BlobKey(String);

impl BlobKey {
    /// The uploaded file, byte for byte.
    pub fn original(id: ImageId) -> Self {
        Self(format!("originals/{}/{id}", shard(id)))
    }

    /// One thumbnail variant of an image (`format` is the image's): the requested height and
    /// the variant's extension name it (`200.jpg`, `200.webp`, `200.avif`).
    pub fn thumbnail(id: ImageId, requested_height: u32, format: ImageFormat, variant: ThumbnailFormat) -> Self {
        Self(format!("thumbnails/{}/{id}/{requested_height}.{}", shard(id), variant.extension(format)))
    }

    /// The folder-like prefix holding all thumbnails of an image.
    fn thumbnails_of(id: ImageId) -> Self {
        Self(format!("thumbnails/{}/{id}", shard(id)))
    }

    /// The store's identity (see [`StoreMarker`]), outside the blob folders.
    pub fn store_marker() -> Self {
        Self("imageapi-store-id".to_owned())
    }

    /// A key found by listing a store, if it has one of the shapes above (anything else in
    /// the store — temporary files, foreign objects — is not ours and is skipped).
    fn from_listing(relative: &str) -> Option<Self> {
        let parts: Vec<&str> = relative.split('/').collect();
        let id_of = |shard_part: &str, id: &str| {
            let id = ImageId::parse(id)?;
            (shard(id) == shard_part).then_some(id)
        };
        let valid = match parts.as_slice() {
            ["imageapi-store-id"] => true,
            ["originals", shard_part, id] => id_of(shard_part, id).is_some(),
            ["thumbnails", shard_part, id, file] => {
                id_of(shard_part, id).is_some()
                    && file.split_once('.').is_some_and(|(height, ext)| {
                        height.parse::<u32>().is_ok() && matches!(ext, "jpg" | "png" | "webp" | "avif")
                    })
            }
            _ => false,
        };
        valid.then(|| Self(relative.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Two characters from the random end of the ULID spread files over 1024 folders
/// (the leading characters are a timestamp and would put everything in one).
fn shard(id: ImageId) -> String {
    let text = id.to_string();
    text[text.len() - 2..].to_ascii_lowercase()
}

/// An inclusive byte range, already checked against the blob's length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteRange {
    pub start: u64,
    pub end: u64,
}

impl ByteRange {
    pub fn len(self) -> u64 {
        self.end - self.start + 1
    }
    pub fn is_empty(self) -> bool {
        false
    }
}

/// A blob opened for streaming.
pub type BlobStream = BoxStream<'static, io::Result<Bytes>>;

/// Blobs (or ranges) up to this size are read whole and sent with the response headers in one
/// write; larger ones stream in chunks, so memory per download stays bounded.
pub const WHOLE_BODY_MAX: u64 = 512 * 1024;

/// What [`BlobStore::open`] gives for serving a blob.
pub enum BlobBody {
    /// Small: the bytes themselves (one read; no per-chunk round trips).
    Whole(Bytes),
    /// Large: a stream of chunks.
    Stream { len: u64, stream: BlobStream },
}

/// One blob found by [`BlobStore::list`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobInfo {
    pub key: BlobKey,
    pub size: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("blob {0} not found")]
    NotFound(String),
    /// The store did not answer (in time), after retries: try again later.
    #[error("blob store unavailable for {key}: {detail}")]
    Unavailable { key: String, detail: String },
    #[error("blob store configuration: {0}")]
    Config(String),
    /// The store's disk (or the object store's quota) is full: nothing was stored, and a retry
    /// can work once there is room.
    #[error("blob store out of space writing {key}")]
    OutOfSpace { key: String },
    #[error("blob store I/O on {key}: {source}")]
    Io {
        key: String,
        #[source]
        source: io::Error,
    },
}

#[async_trait]
pub trait BlobStore: Send + Sync + 'static {
    /// Stores `bytes` under `key`, replacing any previous blob. Durable once it returns.
    async fn put(&self, key: &BlobKey, bytes: Bytes) -> Result<(), StoreError>;

    /// The whole blob in memory (workers reading an original).
    async fn get(&self, key: &BlobKey) -> Result<Bytes, StoreError>;

    /// The blob, or the given range of it, for serving: whole when it is at most
    /// [`WHOLE_BODY_MAX`] bytes, else streamed in chunks (bounded memory).
    async fn open(&self, key: &BlobKey, range: Option<ByteRange>) -> Result<BlobBody, StoreError>;

    /// Removes one blob; a missing blob is not an error.
    async fn delete(&self, key: &BlobKey) -> Result<(), StoreError>;

    /// Removes an image's original and all its thumbnails; missing blobs are not an error.
    async fn delete_image(&self, id: ImageId) -> Result<(), StoreError>;

    /// Cheap check that the store is usable (for readiness).
    async fn check(&self) -> Result<(), StoreError>;

    /// The blob's size, or `None` when there is no such blob.
    async fn size(&self, key: &BlobKey) -> Result<Option<u64>, StoreError>;

    /// Every blob of the store (originals, thumbnails and the marker), in no particular order.
    fn list(&self) -> BoxStream<'_, Result<BlobInfo, StoreError>>;

    /// Where the store is, for logs and error messages (`s3://bucket/prefix at endpoint`, or
    /// the directory).
    fn location(&self) -> String;
}

/// Whether an I/O error says the disk (or the user's quota) is full: `ENOSPC`, `EDQUOT`.
pub fn is_out_of_space(e: &io::Error) -> bool {
    matches!(e.kind(), io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded)
        // Libraries that wrap the OS error (sled) keep it as the source of a custom error.
        || e.get_ref().and_then(|inner| inner.downcast_ref::<io::Error>()).is_some_and(is_out_of_space)
}

/// Makes ring the process's TLS crypto provider (HTTPS to S3). Idempotent; the build has no
/// other provider (see the workspace's Cargo.toml), so this cannot pick the wrong one.
pub fn install_tls_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}
