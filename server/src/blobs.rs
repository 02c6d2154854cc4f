//! Opening the blob store the configuration names, checked against the metadata, and copying
//! every blob into another store (`migrate-store`).

use std::sync::Arc;

use anyhow::{bail, Context};
use futures_util::{StreamExt, TryStreamExt};
use imageapi_shared::store::{ensure_marker, read_marker, BlobInfo, BlobKey, BlobStore, StoreMarker, StoreSettings};

use crate::repo::Repo;

/// The configured store and its marker. The first start records the store's marker in the
/// metadata; later starts refuse a store with another marker or none, since serving from it
/// would answer "missing blob" for every image (a mistyped bucket, an empty directory).
pub async fn open_checked(
    settings: &StoreSettings,
    repo: &dyn Repo,
) -> anyhow::Result<(Arc<dyn BlobStore>, StoreMarker)> {
    let store = settings.open()?;
    let location = store.location();
    let recorded = repo.store_marker().await?;
    let marker = match &recorded {
        None => ensure_marker(store.as_ref()).await.map(Some),
        Some(_) => read_marker(store.as_ref())
            .await
            .map(|found| found.map(|id| StoreMarker { id, location: location.clone() })),
    }
    .with_context(|| format!("reading the store marker of the blob store {location}"))?;
    let Some(marker) = marker else {
        bail!(
            "the blob store {location} has no store marker, but this server's metadata belongs to the store with marker {}: \
             IMAGEAPI_BLOB_URL / IMAGEAPI_BLOB_DIR name the wrong store (to move blobs, use `imageapi-server migrate-store`, which copies the marker)",
            recorded.unwrap_or_default()
        );
    };
    match recorded {
        Some(id) if id != marker.id => bail!(
            "the blob store {location} belongs to another installation (its marker is {}, this server's metadata belongs to {id}): \
             IMAGEAPI_BLOB_URL / IMAGEAPI_BLOB_DIR name the wrong store",
            marker.id
        ),
        Some(_) => {}
        None => {
            repo.record_store_marker(&marker.id).await?;
        }
    }
    tracing::info!(store = %location, marker = %marker.id, "blob store");
    Ok((store, marker))
}

/// What a migration did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Migrated {
    pub copied: u64,
    pub skipped: u64,
    pub bytes: u64,
}

impl Migrated {
    fn add(&mut self, other: Migrated) {
        self.copied += other.copied;
        self.skipped += other.skipped;
        self.bytes += other.bytes;
    }
}

/// Blobs copied at once: enough to hide S3's latency, few enough to bound memory.
const COPIES_IN_FLIGHT: usize = 8;

/// Copies every blob of `from` missing (or of another size) in `to`, verifying each copy's
/// size; the store marker goes last, so a store with the marker holds everything. Run again
/// after an interruption, it copies only what is still missing.
pub async fn migrate(from: &dyn BlobStore, to: &dyn BlobStore) -> anyhow::Result<Migrated> {
    to.check().await.with_context(|| format!("the destination store {} is not usable", to.location()))?;
    let blobs = from.list().try_filter(|blob| std::future::ready(blob.key != BlobKey::store_marker()));
    let mut total = blobs
        .map(|blob| async move { copy_one(from, to, blob?).await })
        .buffer_unordered(COPIES_IN_FLIGHT)
        .try_fold(Migrated::default(), |mut total, one| async move {
            total.add(one);
            if (total.copied + total.skipped) % 1000 == 0 {
                eprintln!("… {} blobs copied, {} already there", total.copied, total.skipped);
            }
            Ok(total)
        })
        .await?;
    if let Some(marker) = from.size(&BlobKey::store_marker()).await? {
        total.add(copy_one(from, to, BlobInfo { key: BlobKey::store_marker(), size: marker }).await?);
    }
    Ok(total)
}

async fn copy_one(from: &dyn BlobStore, to: &dyn BlobStore, blob: BlobInfo) -> anyhow::Result<Migrated> {
    if to.size(&blob.key).await? == Some(blob.size) {
        return Ok(Migrated { skipped: 1, ..Migrated::default() });
    }
    let bytes = from.get(&blob.key).await?;
    if bytes.len() as u64 != blob.size {
        bail!("{} changed while it was copied (listed {} bytes, read {})", blob.key.as_str(), blob.size, bytes.len());
    }
    let len = bytes.len() as u64;
    to.put(&blob.key, bytes).await?;
    match to.size(&blob.key).await? {
        Some(written) if written == len => Ok(Migrated { copied: 1, bytes: len, ..Migrated::default() }),
        other => bail!("{}: wrote {len} bytes, the destination holds {other:?}", blob.key.as_str()),
    }
}
