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
mod jobs;

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Mutex;

use imageapi_shared::domain::{ImageId, JobId, LinkId, TierId, TokenId, UserId};
use imageapi_shared::jobs::ThumbnailJob;
use serde::de::DeserializeOwned;
use serde::Serialize;
use sled::transaction::{ConflictableTransactionError, TransactionError};
use sled::{IVec, Transactional, Tree};

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

    // ---- tiers ---------------------------------------------------------------------------

    /// Inserts the builtin tiers that are missing (first start); edited builtins are kept.
    pub fn seed_builtin_tiers(&self) -> Result<(), RepoError> {
        for tier in TierRecord::builtins() {
            self.tiers.compare_and_swap(tier.id.as_str(), None::<&[u8]>, Some(encode(&tier)?))?.ok();
        }
        Ok(())
    }

    pub fn tier(&self, id: &TierId) -> Result<TierRecord, RepoError> {
        self.tiers.get(id.as_str())?.map(|v| decode(&v)).ok_or(RepoError::NotFound)?
    }

    pub fn tiers(&self) -> Result<Vec<TierRecord>, RepoError> {
        self.tiers.iter().values().map(|v| decode(&v?)).collect()
    }

    pub fn tier_user_count(&self, id: &TierId) -> Result<u64, RepoError> {
        let mut n = 0;
        for entry in self.users_by_tier.scan_prefix(tier_prefix(id)).keys() {
            entry?;
            n += 1;
        }
        Ok(n)
    }

    pub fn create_tier(&self, tier: &TierRecord) -> Result<(), RepoError> {
        let _guard = self.lock_admin();
        let swapped = self.tiers.compare_and_swap(tier.id.as_str(), None::<&[u8]>, Some(encode(tier)?))?;
        swapped.map_err(|_| RepoError::Conflict(format!("a tier with id '{}' already exists", tier.id)))
    }

    /// Applies `edit` to a tier and queues a reconciliation of every user holding it, in one
    /// transaction, so that an acknowledged edit always reaches existing images.
    pub fn update_tier(&self, id: &TierId, edit: &TierEdit) -> Result<TierRecord, RepoError> {
        let _guard = self.lock_admin();
        let holders = self.users_holding(id)?;
        let generation = self.db.generate_id()?.to_be_bytes();
        let tier = (&self.tiers, &self.reconcile).transaction(|(tiers, reconcile)| {
            let Some(current) = tiers.get(id.as_str())? else {
                return abort(RepoError::NotFound);
            };
            let mut tier: TierRecord = tx_decode(&current)?;
            edit.apply(&mut tier);
            tiers.insert(id.as_str(), tx_encode(&tier)?)?;
            for user in &holders {
                reconcile.insert(&user.to_bytes(), &generation)?;
            }
            Ok(tier)
        })?;
        Ok(tier)
    }

    pub fn delete_tier(&self, id: &TierId) -> Result<(), RepoError> {
        let _guard = self.lock_admin();
        let tier = self.tier(id)?;
        if tier.builtin {
            return Err(RepoError::Conflict(format!(
                "'{id}' is a builtin tier; builtin tiers can be edited but not deleted"
            )));
        }
        let holders = self.tier_user_count(id)?;
        if holders > 0 {
            return Err(RepoError::Conflict(format!(
                "{holders} user(s) hold tier '{id}'; move them to another tier first"
            )));
        }
        self.tiers.remove(id.as_str())?;
        Ok(())
    }

    fn users_holding(&self, tier: &TierId) -> Result<Vec<UserId>, RepoError> {
        let prefix = tier_prefix(tier);
        let mut users = Vec::new();
        for key in self.users_by_tier.scan_prefix(&prefix).keys() {
            let key = key?;
            if let Some(bytes) = id16(&key[prefix.len()..]) {
                users.push(UserId::from_bytes(bytes));
            }
        }
        Ok(users)
    }

    // ---- users and tokens -----------------------------------------------------------------

    pub fn user(&self, id: UserId) -> Result<UserRecord, RepoError> {
        self.users.get(id.to_bytes())?.map(|v| decode(&v)).ok_or(RepoError::NotFound)?
    }

    pub fn user_by_name(&self, name: &str) -> Result<Option<UserRecord>, RepoError> {
        match self.usernames.get(name)? {
            Some(id) => match id16(&id) {
                Some(bytes) => Ok(Some(self.user(UserId::from_bytes(bytes))?)),
                None => Ok(None),
            },
            None => Ok(None),
        }
    }

    pub fn users(&self) -> Result<Vec<UserRecord>, RepoError> {
        let mut users: Vec<UserRecord> = self.users.iter().values().map(|v| decode(&v?)).collect::<Result<_, _>>()?;
        users.sort_by(|a, b| a.username.as_str().cmp(b.username.as_str()));
        Ok(users)
    }

    pub fn image_count(&self, user: UserId) -> Result<u64, RepoError> {
        Ok(self
            .image_counts
            .get(user.to_bytes())?
            .and_then(|v| <[u8; 8]>::try_from(v.as_ref()).ok())
            .map(u64::from_be_bytes)
            .unwrap_or(0))
    }

    pub fn create_user(&self, user: &UserRecord) -> Result<(), RepoError> {
        let _guard = self.lock_admin();
        self.tier(&user.tier)?;
        (&self.users, &self.usernames, &self.users_by_tier).transaction(|(users, usernames, by_tier)| {
            if usernames.get(user.username.as_str())?.is_some() {
                return abort(RepoError::Conflict(format!("the username '{}' is taken", user.username)));
            }
            usernames.insert(user.username.as_str(), &user.id.to_bytes())?;
            users.insert(&user.id.to_bytes(), tx_encode(user)?)?;
            by_tier.insert(tier_user_key(&user.tier, user.id), &[])?;
            Ok(())
        })?;
        Ok(())
    }

    /// Applies `edit` to a user. A tier change also queues a reconciliation of the user's
    /// images (new heights to make), in the same transaction. The new tier must exist.
    pub fn update_user(&self, id: UserId, edit: &UserEdit) -> Result<UserRecord, RepoError> {
        let _guard = self.lock_admin();
        let mut preview = self.user(id)?;
        edit.apply(&mut preview);
        self.tier(&preview.tier)?;
        let generation = self.db.generate_id()?.to_be_bytes();
        let user = (&self.users, &self.users_by_tier, &self.reconcile).transaction(|(users, by_tier, reconcile)| {
            let Some(current) = users.get(id.to_bytes())? else {
                return abort(RepoError::NotFound);
            };
            let before: UserRecord = tx_decode(&current)?;
            let mut after = before.clone();
            edit.apply(&mut after);
            if before.tier != after.tier {
                by_tier.remove(tier_user_key(&before.tier, id))?;
                by_tier.insert(tier_user_key(&after.tier, id), &[])?;
                reconcile.insert(&id.to_bytes(), &generation)?;
            }
            users.insert(&id.to_bytes(), tx_encode(&after)?)?;
            Ok(after)
        })?;
        Ok(user)
    }

    /// A user's image ids (all of them; for deleting a user, who loses their images first).
    pub fn user_image_ids(&self, user: UserId) -> Result<Vec<ImageId>, RepoError> {
        let mut ids = Vec::new();
        for key in self.user_images.scan_prefix(user.to_bytes()).keys() {
            if let Some(bytes) = id16(&key?[16..]) {
                ids.push(ImageId::from_bytes(bytes));
            }
        }
        Ok(ids)
    }

    /// Deletes a user with their tokens and links. Their images must be deleted first
    /// (with blobs), through [`SledRepo::delete_image`].
    pub fn delete_user(&self, id: UserId) -> Result<(), RepoError> {
        let _guard = self.lock_admin();
        let user = self.user(id)?;
        let tokens: Vec<(IVec, IVec)> = self.user_tokens.scan_prefix(id.to_bytes()).collect::<Result<_, _>>()?;
        let links = self.user_links.scan_prefix(id.to_bytes()).keys().collect::<Result<Vec<_>, _>>()?;
        for key in links {
            if let Some(bytes) = id16(&key[16..]) {
                self.delete_link(LinkId::from_bytes(bytes))?;
            }
        }
        (
            &self.users,
            &self.usernames,
            &self.users_by_tier,
            &self.tokens,
            &self.user_tokens,
            &self.image_counts,
            &self.reconcile,
        )
            .transaction(|(users, usernames, by_tier, token_tree, user_tokens, counts, reconcile)| {
                users.remove(&id.to_bytes())?;
                usernames.remove(user.username.as_str())?;
                by_tier.remove(tier_user_key(&user.tier, id))?;
                for (key, hash) in &tokens {
                    token_tree.remove(hash)?;
                    user_tokens.remove(key)?;
                }
                counts.remove(&id.to_bytes())?;
                reconcile.remove(&id.to_bytes())?;
                Ok(())
            })?;
        Ok(())
    }

    pub fn insert_token(&self, record: &TokenRecord, hash: &[u8; 32]) -> Result<(), RepoError> {
        (&self.tokens, &self.user_tokens).transaction(|(tokens, user_tokens)| {
            tokens.insert(hash, tx_encode(record)?)?;
            user_tokens.insert(cat(&record.user_id.to_bytes(), &record.id.to_bytes()), hash)?;
            Ok(())
        })?;
        Ok(())
    }

    pub fn token_by_hash(&self, hash: &[u8; 32]) -> Result<Option<TokenRecord>, RepoError> {
        self.tokens.get(hash)?.map(|v| decode(&v)).transpose()
    }

    pub fn user_tokens(&self, user: UserId) -> Result<Vec<TokenRecord>, RepoError> {
        let mut out = Vec::new();
        for hash in self.user_tokens.scan_prefix(user.to_bytes()).values() {
            if let Some(record) = self.tokens.get(hash?)? {
                out.push(decode(&record)?);
            }
        }
        Ok(out)
    }

    pub fn delete_token(&self, user: UserId, token: TokenId) -> Result<(), RepoError> {
        let key = cat(&user.to_bytes(), &token.to_bytes());
        (&self.tokens, &self.user_tokens).transaction(|(tokens, user_tokens)| {
            let Some(hash) = user_tokens.remove(key.as_slice())? else {
                return abort(RepoError::NotFound);
            };
            tokens.remove(hash)?;
            Ok(())
        })?;
        Ok(())
    }

    // ---- images and thumbnails --------------------------------------------------------------

    /// Records a new image with a pending thumbnail for every height its owner's tier grants,
    /// atomically. The owner and tier are read inside the transaction, so an upload racing with
    /// a tier change or a user deletion either lands before it (and is reconciled or deleted
    /// with the rest) or sees its outcome: no image ever gets a stale tier's heights or an
    /// owner that no longer exists. Returns the tier applied; `NotFound` if the owner is gone
    /// or inactive.
    pub fn insert_image(&self, image: &ImageRecord, job_id: JobId) -> Result<super::NewImage, RepoError> {
        let trees = (
            &self.users,
            &self.tiers,
            &self.images,
            &self.user_images,
            &self.image_counts,
            &self.thumbs,
            &self.pending,
            &self.outbox,
        );
        let inserted = trees.transaction(|(users, tiers, images, user_images, counts, thumbs, pending, outbox)| {
            let Some(owner) = users.get(image.owner.to_bytes())? else {
                return abort(RepoError::NotFound);
            };
            let owner: UserRecord = tx_decode(&owner)?;
            if !owner.is_active {
                return abort(RepoError::NotFound);
            }
            let Some(tier) = tiers.get(owner.tier.as_str())? else {
                return abort(RepoError::NotFound);
            };
            let tier: TierRecord = tx_decode(&tier)?;
            images.insert(&image.id.to_bytes(), tx_encode(image)?)?;
            user_images.insert(cat(&image.owner.to_bytes(), &image.id.to_bytes()), &[])?;
            let count = add_count(counts.get(image.owner.to_bytes())?, 1);
            counts.insert(&image.owner.to_bytes(), &count)?;
            let state = tx_encode(&ThumbState::Pending)?;
            for h in tier.thumbnail_heights.iter() {
                let key = thumb_key(image.id, h.get());
                thumbs.insert(key.as_slice(), state.as_slice())?;
                pending.insert(key, &[])?;
            }
            let heights: Vec<u32> = tier.thumbnail_heights.iter().map(|h| h.get()).collect();
            let job = if heights.is_empty() {
                None
            } else {
                let job = ThumbnailJob { id: job_id, image_id: image.id, format: image.format, heights };
                outbox.insert(&job_id.to_bytes(), tx_encode(&job)?)?;
                Some(job)
            };
            Ok(super::NewImage { tier, job })
        })?;
        Ok(inserted)
    }

    pub fn image(&self, id: ImageId) -> Result<ImageRecord, RepoError> {
        self.images.get(id.to_bytes())?.map(|v| decode(&v)).ok_or(RepoError::NotFound)?
    }

    /// A user's images, newest first, starting after `cursor` (exclusive).
    pub fn user_images(
        &self,
        user: UserId,
        cursor: Option<ImageId>,
        limit: usize,
    ) -> Result<Vec<ImageRecord>, RepoError> {
        let start = user.to_bytes().to_vec();
        let end = match cursor {
            Some(c) => cat(&user.to_bytes(), &c.to_bytes()),
            None => cat(&user.to_bytes(), &[0xff; 17]),
        };
        let mut out = Vec::with_capacity(limit);
        for key in self.user_images.range(start..end).keys().rev() {
            if out.len() == limit {
                break;
            }
            if let Some(bytes) = id16(&key?[16..]) {
                // Deleted between the key scan and the lookup: not part of the page.
                match self.image(ImageId::from_bytes(bytes)) {
                    Ok(image) => out.push(image),
                    Err(RepoError::NotFound) => {}
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(out)
    }

    /// The recorded thumbnails of an image by requested height (whatever the tier now grants).
    pub fn thumbnails(&self, image: ImageId) -> Result<BTreeMap<u32, ThumbState>, RepoError> {
        let mut out = BTreeMap::new();
        for entry in self.thumbs.scan_prefix(image.to_bytes()) {
            let (key, value) = entry?;
            if let Ok(h) = <[u8; 4]>::try_from(&key[16..]) {
                out.insert(u32::from_be_bytes(h), decode(&value)?);
            }
        }
        Ok(out)
    }

    /// The recorded thumbnails of an image among `heights` (point reads: cheaper than the
    /// prefix scan of [`Self::thumbnails`] when the tier's heights are known).
    pub fn thumbnails_of_heights(&self, image: ImageId, heights: &[u32]) -> Result<ThumbStates, RepoError> {
        let mut out = BTreeMap::new();
        for &h in heights {
            if let Some(state) = self.thumbnail(image, h)? {
                out.insert(h, state);
            }
        }
        Ok(out)
    }

    pub fn thumbnails_of_images(&self, images: &[ImageId]) -> Result<HashMap<ImageId, ThumbStates>, RepoError> {
        images.iter().map(|&id| Ok((id, self.thumbnails(id)?))).collect()
    }

    pub fn thumbnail(&self, image: ImageId, height: u32) -> Result<Option<ThumbState>, RepoError> {
        self.thumbs.get(thumb_key(image, height))?.map(|v| decode(&v)).transpose()
    }

    /// Marks the given heights pending unless already recorded, and records a job for those
    /// newly pending in the outbox (returned), in one transaction.
    pub fn ensure_thumbnails(
        &self,
        image: ImageId,
        heights: &[u32],
        job_id: JobId,
    ) -> Result<Option<ThumbnailJob>, RepoError> {
        let job = (&self.images, &self.thumbs, &self.pending, &self.outbox).transaction(
            |(images, thumbs, pending, outbox)| {
                let Some(record) = images.get(image.to_bytes())? else {
                    return Ok(None);
                };
                let record: ImageRecord = tx_decode(&record)?;
                let state = tx_encode(&ThumbState::Pending)?;
                let mut added = Vec::new();
                for &h in heights {
                    let key = thumb_key(image, h);
                    if thumbs.get(key.as_slice())?.is_none() {
                        thumbs.insert(key.as_slice(), state.as_slice())?;
                        pending.insert(key, &[])?;
                        added.push(h);
                    }
                }
                if added.is_empty() {
                    return Ok(None);
                }
                let job = ThumbnailJob { id: job_id, image_id: image, format: record.format, heights: added };
                outbox.insert(&job_id.to_bytes(), tx_encode(&job)?)?;
                Ok(Some(job))
            },
        )?;
        Ok(job)
    }

    /// [`Self::ensure_thumbnails`] for each image, with fresh job ids.
    pub fn ensure_thumbnails_of(&self, images: &[ImageId], heights: &[u32]) -> Result<Vec<ThumbnailJob>, RepoError> {
        let mut jobs = Vec::new();
        for &image in images {
            jobs.extend(self.ensure_thumbnails(image, heights, crate::ids::new_job_id())?);
        }
        Ok(jobs)
    }

    /// Every pending thumbnail, grouped by image: what must be (re-)enqueued at start.
    pub fn pending_thumbnails(&self) -> Result<BTreeMap<ImageId, Vec<u32>>, RepoError> {
        let mut out: BTreeMap<ImageId, Vec<u32>> = BTreeMap::new();
        for key in self.pending.iter().keys() {
            let key = key?;
            if let (Some(id), Ok(h)) = (id16(&key[..16]), <[u8; 4]>::try_from(&key[16..])) {
                out.entry(ImageId::from_bytes(id)).or_default().push(u32::from_be_bytes(h));
            }
        }
        Ok(out)
    }

    /// Deletes an image's metadata, its thumbnails' records and its links, atomically.
    pub fn delete_image(&self, id: ImageId) -> Result<ImageRecord, RepoError> {
        let record = self.image(id)?;
        let thumb_keys = self.thumbs.scan_prefix(id.to_bytes()).keys().collect::<Result<Vec<_>, _>>()?;
        let link_ids: Vec<LinkId> = self
            .image_links
            .scan_prefix(id.to_bytes())
            .keys()
            .filter_map(|k| k.ok().and_then(|k| id16(&k[16..])).map(LinkId::from_bytes))
            .collect();
        for link in link_ids {
            match self.delete_link(link) {
                Ok(()) | Err(RepoError::NotFound) => {}
                Err(e) => return Err(e),
            }
        }
        (&self.images, &self.user_images, &self.image_counts, &self.thumbs, &self.pending).transaction(
            |(images, user_images, counts, thumbs, pending)| {
                if images.remove(&id.to_bytes())?.is_none() {
                    return abort(RepoError::NotFound);
                }
                user_images.remove(cat(&record.owner.to_bytes(), &id.to_bytes()))?;
                let count = add_count(counts.get(record.owner.to_bytes())?, -1);
                counts.insert(&record.owner.to_bytes(), &count)?;
                for key in &thumb_keys {
                    thumbs.remove(key)?;
                    pending.remove(key)?;
                }
                Ok(())
            },
        )?;
        Ok(record)
    }

    /// All images, newest first after `cursor`, optionally of one user (admin browsing).
    pub fn all_images(&self, cursor: Option<ImageId>, limit: usize) -> Result<Vec<ImageRecord>, RepoError> {
        let iter = match cursor {
            Some(c) => self.images.range(..c.to_bytes().to_vec()),
            None => self.images.range::<Vec<u8>, _>(..),
        };
        iter.values().rev().take(limit).map(|v| decode(&v?)).collect()
    }

    // ---- reconciliation (tier changes reaching existing images) --------------------------

    /// Users whose images must be brought in line with their tier, each with the generation
    /// of the change that queued them.
    pub fn reconcile_queue(&self) -> Result<Vec<ReconcileEntry>, RepoError> {
        let mut users = Vec::new();
        for entry in self.reconcile.iter() {
            let (key, generation) = entry?;
            if let (Some(bytes), Ok(generation)) = (id16(&key), <[u8; 8]>::try_from(generation.as_ref())) {
                users.push(ReconcileEntry {
                    user: UserId::from_bytes(bytes),
                    generation: u64::from_be_bytes(generation),
                });
            }
        }
        Ok(users)
    }

    /// Clears a user's entry unless a newer change re-queued them meanwhile (then the
    /// generation differs and the entry stays for the next pass).
    pub fn reconcile_done(&self, entry: ReconcileEntry) -> Result<(), RepoError> {
        let generation = entry.generation.to_be_bytes();
        let _ = self.reconcile.compare_and_swap(entry.user.to_bytes(), Some(&generation[..]), None::<&[u8]>)?;
        Ok(())
    }

    // ---- expiring links ---------------------------------------------------------------------

    pub fn insert_link(&self, link: &LinkRecord, token_hash: &[u8; 32]) -> Result<(), RepoError> {
        (&self.images, &self.links, &self.link_tokens, &self.user_links, &self.image_links).transaction(
            |(images, links, link_tokens, user_links, image_links)| {
                // The image may have been deleted since the handler looked it up.
                if images.get(link.image_id.to_bytes())?.is_none() {
                    return abort(RepoError::NotFound);
                }
                links.insert(&link.id.to_bytes(), tx_encode(link)?)?;
                link_tokens.insert(token_hash, &link.id.to_bytes())?;
                user_links.insert(cat(&link.owner.to_bytes(), &link.id.to_bytes()), token_hash)?;
                image_links.insert(cat(&link.image_id.to_bytes(), &link.id.to_bytes()), token_hash)?;
                Ok(())
            },
        )?;
        Ok(())
    }

    pub fn link(&self, id: LinkId) -> Result<LinkRecord, RepoError> {
        self.links.get(id.to_bytes())?.map(|v| decode(&v)).ok_or(RepoError::NotFound)?
    }

    pub fn link_by_token_hash(&self, hash: &[u8; 32]) -> Result<Option<LinkRecord>, RepoError> {
        match self.link_tokens.get(hash)?.and_then(|v| id16(&v)) {
            Some(id) => match self.link(LinkId::from_bytes(id)) {
                Ok(link) => Ok(Some(link)),
                Err(RepoError::NotFound) => Ok(None),
                Err(e) => Err(e),
            },
            None => Ok(None),
        }
    }

    pub fn user_links(&self, user: UserId) -> Result<Vec<LinkRecord>, RepoError> {
        let mut out = Vec::new();
        for key in self.user_links.scan_prefix(user.to_bytes()).keys() {
            if let Some(id) = id16(&key?[16..]) {
                match self.link(LinkId::from_bytes(id)) {
                    Ok(link) => out.push(link),
                    Err(RepoError::NotFound) => {}
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(out)
    }

    pub fn all_links(&self) -> Result<Vec<LinkRecord>, RepoError> {
        self.links.iter().values().map(|v| decode(&v?)).collect()
    }

    pub fn live_links(&self, now: chrono::DateTime<chrono::Utc>) -> Result<Vec<LinkRecord>, RepoError> {
        let mut links: Vec<LinkRecord> = self.all_links()?.into_iter().filter(|l| !l.is_expired(now)).collect();
        links.sort_by_key(|l| (l.expires_at, l.id));
        Ok(links)
    }

    pub fn delete_link(&self, id: LinkId) -> Result<(), RepoError> {
        (&self.links, &self.link_tokens, &self.user_links, &self.image_links).transaction(
            |(links, link_tokens, user_links, image_links)| {
                let Some(value) = links.remove(&id.to_bytes())? else {
                    return abort(RepoError::NotFound);
                };
                let link: LinkRecord = tx_decode(&value)?;
                if let Some(hash) = user_links.remove(cat(&link.owner.to_bytes(), &id.to_bytes()))? {
                    link_tokens.remove(hash)?;
                }
                image_links.remove(cat(&link.image_id.to_bytes(), &id.to_bytes()))?;
                Ok(())
            },
        )?;
        Ok(())
    }

    /// Deletes the links of `user` that their grant no longer covers: all of them when the user
    /// is inactive or the tier has no expiring links, else those to variants the tier does not
    /// grant. A link that died stays dead when the grant comes back. Returns how many went.
    pub fn revoke_links_not_granted(&self, user: &UserRecord, tier: &TierRecord) -> Result<usize, RepoError> {
        let mut revoked = 0;
        for link in self.user_links(user.id)? {
            if user.is_active && tier.expiring_links && tier.grants(link.variant) {
                continue;
            }
            match self.delete_link(link.id) {
                Ok(()) => revoked += 1,
                Err(RepoError::NotFound) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(revoked)
    }

    /// Removes links that expired before `cutoff` (kept until then to answer 410, not 404).
    pub fn purge_links_expired_before(&self, cutoff: chrono::DateTime<chrono::Utc>) -> Result<usize, RepoError> {
        let mut purged = 0;
        for link in self.all_links()? {
            if link.expires_at < cutoff {
                match self.delete_link(link.id) {
                    Ok(()) => purged += 1,
                    Err(RepoError::NotFound) => {}
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(purged)
    }
}
