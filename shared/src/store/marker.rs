//! The store marker: a random id the server writes into its blob store at first start. Workers
//! compare the marker of the store they see with the one the server publishes, so a worker
//! pointed at another store (a wrong bucket, a local folder instead of the shared one) takes no
//! jobs instead of failing every thumbnail.

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::{BlobKey, BlobStore, StoreError};

/// A store's identity as the server publishes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoreMarker {
    pub id: String,
    /// Where the server sees the store (for error messages naming both sides).
    pub location: String,
}

/// The marker's id in `store`, or `None` when it has none.
pub async fn read_marker(store: &dyn BlobStore) -> Result<Option<String>, StoreError> {
    match store.get(&BlobKey::store_marker()).await {
        Ok(bytes) => Ok(Some(String::from_utf8_lossy(&bytes).trim().to_owned())),
        Err(StoreError::NotFound(_)) => Ok(None),
        Err(e) => Err(e),
    }
}

/// The store's marker, written first if it has none.
pub async fn ensure_marker(store: &dyn BlobStore) -> Result<StoreMarker, StoreError> {
    let location = store.location();
    if let Some(id) = read_marker(store).await? {
        return Ok(StoreMarker { id, location });
    }
    let id = ulid::Ulid::new().to_string();
    store.put(&BlobKey::store_marker(), Bytes::from(id.clone())).await?;
    // Two servers starting at once on a new store: whichever write landed last is the marker.
    let id = read_marker(store).await?.unwrap_or(id);
    tracing::info!(store = %location, marker = %id, "wrote the store marker into a new blob store");
    Ok(StoreMarker { id, location })
}
