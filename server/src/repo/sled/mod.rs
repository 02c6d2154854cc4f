//! Metadata in sled, the embedded default: one tree per logical map, keys laid out so that
//! every hot query is a point lookup or a prefix/range scan: a user's images are
//! `user ++ image` keys with time-ordered image ids, so "newest first after a cursor" is a
//! reverse range scan, never a full scan. Writes that touch several trees run in one sled
//! transaction.
//!
//! [`SledDb`] is synchronous (sled is); [`SledRepo`] implements the repository traits over it,
//! running every call on tokio's blocking threads and making each write durable before it
//! returns through one group commit shared by concurrent writers ([`group_commit`]).

mod adapter;
mod export;
mod group_commit;
mod images;
mod jobs;
mod links;
mod users;

use std::path::Path;
use std::sync::Mutex;

use imageapi_shared::domain::{ImageId, TierId, UserId};
use serde::de::DeserializeOwned;
use serde::Serialize;
use sled::transaction::{ConflictableTransactionError, TransactionError};
use sled::{IVec, Tree};

pub use adapter::SledRepo;

use super::{
    ImageRecord, LinkRecord, ReconcileEntry, RepoError, ThumbState, ThumbStates, TierEdit, TierRecord, TokenRecord,
    UserEdit, UserRecord,
};

impl From<sled::Error> for RepoError {
    fn from(e: sled::Error) -> Self {
        RepoError::Storage(e.to_string())
    }
}

impl From<group_commit::FlushError> for RepoError {
    fn from(e: group_commit::FlushError) -> Self {
        RepoError::Storage(e.to_string())
    }
}

type TxResult<T> = Result<T, ConflictableTransactionError<RepoError>>;

impl From<TransactionError<RepoError>> for RepoError {
    fn from(e: TransactionError<RepoError>) -> Self {
        match e {
            TransactionError::Abort(e) => e,
            TransactionError::Storage(e) => e.into(),
        }
    }
}

fn abort<T>(e: RepoError) -> TxResult<T> {
    Err(ConflictableTransactionError::Abort(e))
}

fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, RepoError> {
    Ok(serde_json::to_vec(value)?)
}

fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, RepoError> {
    Ok(serde_json::from_slice(bytes)?)
}

fn tx_encode<T: Serialize>(value: &T) -> TxResult<Vec<u8>> {
    encode(value).map_err(ConflictableTransactionError::Abort)
}

fn tx_decode<T: DeserializeOwned>(bytes: &[u8]) -> TxResult<T> {
    decode(bytes).map_err(ConflictableTransactionError::Abort)
}

fn cat(a: &[u8], b: &[u8]) -> Vec<u8> {
    let mut key = Vec::with_capacity(a.len() + b.len());
    key.extend_from_slice(a);
    key.extend_from_slice(b);
    key
}

fn thumb_key(image: ImageId, height: u32) -> Vec<u8> {
    cat(&image.to_bytes(), &height.to_be_bytes())
}

fn tier_user_key(tier: &TierId, user: UserId) -> Vec<u8> {
    let mut key = cat(tier.as_str().as_bytes(), &[0]);
    key.extend_from_slice(&user.to_bytes());
    key
}

fn tier_prefix(tier: &TierId) -> Vec<u8> {
    cat(tier.as_str().as_bytes(), &[0])
}

fn id16(bytes: &[u8]) -> Option<[u8; 16]> {
    bytes.try_into().ok()
}

fn add_count(current: Option<IVec>, delta: i64) -> [u8; 8] {
    let n = current.and_then(|v| <[u8; 8]>::try_from(v.as_ref()).ok()).map(u64::from_be_bytes).unwrap_or(0);
    n.saturating_add_signed(delta).to_be_bytes()
}

pub struct SledDb {
    db: sled::Db,
    users: Tree,
    usernames: Tree,
    users_by_tier: Tree,
    tokens: Tree,
    user_tokens: Tree,
    tiers: Tree,
    images: Tree,
    user_images: Tree,
    image_counts: Tree,
    thumbs: Tree,
    pending: Tree,
    links: Tree,
    link_tokens: Tree,
    user_links: Tree,
    image_links: Tree,
    reconcile: Tree,
    /// Unfinished thumbnail jobs by job id: the outbox the dispatcher delivers to the queue.
    outbox: Tree,
    /// Serialises admin writes to users and tiers, so that checks like "no user holds this
    /// tier" cannot race with a user being moved onto it. These writes are rare.
    admin_writes: Mutex<()>,
    /// The one flusher: acknowledged writes wait for it (see [`group_commit`]).
    commit: group_commit::GroupCommit,
}

/// sled's page cache when none is configured. sled's own default (1 GiB) would let the cache
/// alone outgrow a small server; pict-rs uses 64 MiB too.
pub const DEFAULT_CACHE_BYTES: u64 = 64 * 1024 * 1024;

/// In sled's default tree, beside the named trees.
const STORE_MARKER_KEY: &[u8] = b"store_marker";

impl SledDb {
    /// Opens (or creates) the database with the default cache.
    pub fn open(path: &Path) -> Result<Self, RepoError> {
        Self::open_with_cache(path, DEFAULT_CACHE_BYTES)
    }

    /// Opens (or creates) the database with a page cache of `cache_bytes`.
    pub fn open_with_cache(path: &Path, cache_bytes: u64) -> Result<Self, RepoError> {
        let db = sled::Config::new().path(path).cache_capacity(cache_bytes).open().map_err(|e| match e {
            sled::Error::Io(ref io)
                if io.kind() == std::io::ErrorKind::WouldBlock || io.to_string().contains("lock") =>
            {
                RepoError::Locked { path: path.display().to_string() }
            }
            other => other.into(),
        })?;
        let tree = |name: &str| db.open_tree(name);
        Ok(Self {
            users: tree("users")?,
            usernames: tree("usernames")?,
            users_by_tier: tree("users_by_tier")?,
            tokens: tree("tokens")?,
            user_tokens: tree("user_tokens")?,
            tiers: tree("tiers")?,
            images: tree("images")?,
            user_images: tree("user_images")?,
            image_counts: tree("image_counts")?,
            thumbs: tree("thumbs")?,
            pending: tree("pending")?,
            links: tree("links")?,
            link_tokens: tree("link_tokens")?,
            user_links: tree("user_links")?,
            image_links: tree("image_links")?,
            reconcile: tree("reconcile")?,
            outbox: tree("outbox")?,
            admin_writes: Mutex::new(()),
            commit: {
                let db = db.clone();
                group_commit::GroupCommit::start(move || db.flush().map(|_| ()).map_err(|e| e.to_string()))
                    .map_err(|e| RepoError::Storage(format!("starting the flusher: {e}")))?
            },
            db,
        })
    }

    /// Makes every write that finished before this call durable. Call before acknowledging a
    /// write. Concurrent callers share one flush (never sled's `flush_async`, which deadlocks).
    pub async fn flush(&self) -> Result<(), RepoError> {
        Ok(self.commit.flush().await?)
    }

    /// Flushes run so far by the group commit.
    pub fn flushes(&self) -> u64 {
        self.commit.flushes()
    }

    /// Stops the flusher after a final flush; false if that did not finish within `deadline`.
    pub fn close(&self, deadline: std::time::Duration) -> bool {
        self.commit.stop(deadline)
    }

    /// [`Self::flush`] for synchronous callers (command-line tools).
    pub fn flush_blocking(&self) -> Result<(), RepoError> {
        self.db.flush()?;
        Ok(())
    }

    pub fn check(&self) -> Result<(), RepoError> {
        self.tiers.get(TierId::BASIC)?;
        Ok(())
    }

    /// The id of the blob store this metadata belongs to (see
    /// [`imageapi_shared::store::StoreMarker`]), once recorded.
    pub fn store_marker(&self) -> Result<Option<String>, RepoError> {
        Ok(self.db.get(STORE_MARKER_KEY)?.map(|v| String::from_utf8_lossy(&v).into_owned()))
    }

    /// Records the blob store's id; durable when the next flush returns.
    pub fn record_store_marker(&self, id: &str) -> Result<(), RepoError> {
        self.db.insert(STORE_MARKER_KEY, id.as_bytes())?;
        Ok(())
    }

    fn lock_admin(&self) -> std::sync::MutexGuard<'_, ()> {
        // A poisoned lock only means another admin write panicked; the data is in sled.
        self.admin_writes.lock().unwrap_or_else(|e| e.into_inner())
    }
}
