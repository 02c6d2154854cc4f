//! Metadata: users and tokens, tiers, images and thumbnails, expiring links, thumbnail jobs.
//!
//! One trait per concern, async, with [`RepoError`] and no engine types in any signature; the
//! server holds them as one [`SharedRepo`] (`Arc<dyn Repo>`). Two engines implement them and
//! pass the same contract suite ([`contract`]):
//!
//! - [`sled`](self::sled): embedded, the default. Every call runs off the async threads;
//!   writes share group-committed flushes.
//! - [`postgres`]: `IMAGEAPI_DATABASE_URL=postgres://…`, for several API servers on one
//!   database. A pool of connections, migrations embedded and run at start.
//!
//! The contract both keep: a write is durable when its call returns (so a handler may
//! acknowledge at once), and every write that touches several records is atomic.

#[cfg(test)]
mod contract;
pub mod migrate;
pub mod postgres;
mod quota;
mod records;
pub mod sled;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use imageapi_core::domain::{Formats, Heights, ImageId, JobId, LimitField, LinkId, TierId, TierName, TokenId, UserId};
use imageapi_core::image::ThumbnailFormat;
use imageapi_core::jobs::{JobReport, ThumbnailJob, ThumbnailOutcome};

pub use quota::{check_upload, QuotaRefusal, UploadWindow};
pub use records::{hex, ImageRecord, LinkRecord, ThumbState, TierRecord, TokenRecord, UserRecord};

pub type RepoResult<T> = Result<T, RepoError>;

#[derive(Debug, thiserror::Error)]
pub enum RepoError {
    #[error("not found")]
    NotFound,
    #[error("{0}")]
    Conflict(String),
    #[error("the database at {path} is locked by another process (is an imageapi-server running on it?)")]
    Locked { path: String },
    /// The database cannot be reached now (connection refused, pool exhausted, timeout): the
    /// client may try again.
    #[error("the metadata database is unavailable: {0}")]
    Unavailable(String),
    /// The disk under the database is full; the write was refused. `outcome_unknown`: it may
    /// still become durable (sled had applied it in memory when its flush failed), so what it
    /// refers to (an uploaded original) must be kept.
    #[error("the metadata database is out of disk space")]
    OutOfSpace { outcome_unknown: bool },
    /// The upload would go over a limit of the owner's tier.
    #[error("over the {} limit", .0.quota.as_str())]
    Quota(QuotaRefusal),
    /// The owner already holds the most live links allowed.
    #[error("the owner already holds {} live links", .0.max_live)]
    LinkLimit(LinkLimit),
    #[error("database error: {0}")]
    Storage(String),
    #[error("corrupt record: {0}")]
    Corrupt(String),
}

/// A refused link: the cap, and when the owner's soonest link expires (and frees a place).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinkLimit {
    pub max_live: usize,
    pub next_free_at: DateTime<Utc>,
}

impl From<serde_json::Error> for RepoError {
    fn from(e: serde_json::Error) -> Self {
        RepoError::Corrupt(e.to_string())
    }
}

/// The repository as the server holds it.
pub type SharedRepo = Arc<dyn Repo>;

/// What an admin may change on a user; `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct UserEdit {
    pub tier: Option<TierId>,
    pub is_active: Option<bool>,
    pub is_admin: Option<bool>,
    /// A new password's hash; bumps `credentials_version`, ending cached verifications.
    pub password_hash: Option<String>,
}

impl UserEdit {
    /// Whether the edit could take an active admin's rights away (then the repository checks,
    /// in the same atomic step as the write, that another active admin remains).
    pub fn may_remove_an_admin(&self) -> bool {
        self.is_admin == Some(false) || self.is_active == Some(false)
    }

    pub fn apply(&self, user: &mut UserRecord) {
        if let Some(tier) = &self.tier {
            user.tier = tier.clone();
        }
        if let Some(active) = self.is_active {
            user.is_active = active;
        }
        if let Some(admin) = self.is_admin {
            user.is_admin = admin;
        }
        if let Some(hash) = &self.password_hash {
            user.password_hash = hash.clone();
            user.credentials_version += 1;
        }
    }
}

/// The refusal of a write that would leave no active admin (nobody could administer the
/// service until a restart with `IMAGEAPI_ADMIN_*`).
pub fn last_admin_conflict() -> RepoError {
    RepoError::Conflict("at least one active admin must remain: make another user an admin first".to_owned())
}

/// What an admin may change on a tier; `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct TierEdit {
    pub name: Option<TierName>,
    pub thumbnail_heights: Option<Heights>,
    pub original_link: Option<bool>,
    pub expiring_links: Option<bool>,
    pub formats: Option<Formats>,
    /// Limits to set (`None` inside: unlimited); those not listed stay.
    pub limits: Vec<(LimitField, Option<u64>)>,
}

impl TierEdit {
    pub fn apply(&self, tier: &mut TierRecord) {
        if let Some(name) = &self.name {
            tier.name = name.clone();
        }
        if let Some(heights) = &self.thumbnail_heights {
            tier.thumbnail_heights = heights.clone();
        }
        if let Some(flag) = self.original_link {
            tier.original_link = flag;
        }
        if let Some(flag) = self.expiring_links {
            tier.expiring_links = flag;
        }
        if let Some(formats) = &self.formats {
            tier.formats = formats.clone();
        }
        for &(field, value) in &self.limits {
            tier.limits.set(field, value);
        }
    }
}

/// A recorded upload: the tier whose heights it got, and the job that makes them.
#[derive(Debug, Clone)]
pub struct NewImage {
    pub tier: TierRecord,
    pub job: Option<ThumbnailJob>,
}

/// What recording an upload did.
#[derive(Debug, Clone)]
pub enum Inserted {
    New(NewImage),
    /// The owner already holds an image of the same content (the same SHA-256): nothing was
    /// recorded and no limit was counted; this is the image a retry gets back.
    Existing(ImageRecord),
}

#[cfg(test)]
impl Inserted {
    /// The new image (tests that upload distinct content).
    pub fn created(self) -> NewImage {
        match self {
            Inserted::New(new) => new,
            Inserted::Existing(held) => panic!("expected a new image, got the held {}", held.id),
        }
    }
}

/// A user queued for reconciliation, with the generation of the change that queued them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReconcileEntry {
    pub user: UserId,
    pub generation: u64,
}

/// What applying a report found.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Applied {
    /// Whether the job was still in the outbox (false: a repeated report).
    pub was_outstanding: bool,
    /// Ready thumbnails of images deleted meanwhile: their blobs are orphans to remove.
    pub orphans: Vec<ThumbnailOutcome>,
}

/// One thumbnail variant of an image: its requested height and encoding.
pub type ThumbSlot = (u32, ThumbnailFormat);

/// Thumbnail states of one image by requested height and encoding.
pub type ThumbStates = BTreeMap<ThumbSlot, ThumbState>;

/// What a user's images take up: kept in the transactions that add and remove images and
/// make thumbnails, so reading it is one lookup.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Usage {
    pub images: u64,
    /// Bytes of the originals, as uploaded.
    pub original_bytes: u64,
    /// Bytes of the ready thumbnails (every recorded one, granted by the tier now or not).
    pub thumbnail_bytes: u64,
    /// Recent uploads, against the tier's `uploads_per_hour`.
    pub uploads: UploadWindow,
}

impl Usage {
    /// What counts against `max_storage_bytes`: originals and ready thumbnails.
    pub fn storage_bytes(&self) -> u64 {
        self.original_bytes.saturating_add(self.thumbnail_bytes)
    }
}

/// Which images an admin browses. Every part is optional; all given parts must hold.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImageFilter {
    pub owner: Option<UserId>,
    /// A substring of the file name, compared case-insensitively; stored lowercased.
    name_contains: Option<String>,
    /// Uploaded strictly after / strictly before.
    pub uploaded_after: Option<DateTime<Utc>>,
    pub uploaded_before: Option<DateTime<Utc>>,
}

impl ImageFilter {
    pub fn with_name(mut self, needle: &str) -> Self {
        self.name_contains = Some(needle.to_lowercase()).filter(|n| !n.is_empty());
        self
    }

    pub fn name_contains(&self) -> Option<&str> {
        self.name_contains.as_deref()
    }

    pub fn matches(&self, image: &ImageRecord) -> bool {
        self.owner.is_none_or(|o| o == image.owner)
            && self.name_contains.as_deref().is_none_or(|n| image.name.to_lowercase().contains(n))
            && self.uploaded_after.is_none_or(|t| image.created_at > t)
            && self.uploaded_before.is_none_or(|t| image.created_at < t)
    }
}

/// A page of a filtered browse, newest first.
#[derive(Debug, Default)]
pub struct ImageScan {
    pub images: Vec<ImageRecord>,
    /// Where the next page starts (exclusive); `None` when the browse is done. A page may hold
    /// fewer images than asked for (even none) and still have a next one: a scan reads at most
    /// [`SCAN_BUDGET`] records per call, so a rare match cannot make one request read them all.
    pub next: Option<ImageId>,
}

/// The most image records one filtered browse call reads (small in unit tests, to reach it).
pub const SCAN_BUDGET: usize = if cfg!(test) { 40 } else { 5_000 };

#[async_trait]
pub trait TierRepo: Send + Sync {
    /// Inserts the builtin tiers that are missing (first start); edited builtins are kept.
    async fn seed_builtin_tiers(&self) -> RepoResult<()>;
    async fn tier(&self, id: &TierId) -> RepoResult<TierRecord>;
    async fn tiers(&self) -> RepoResult<Vec<TierRecord>>;
    async fn tier_user_count(&self, id: &TierId) -> RepoResult<u64>;
    /// `Conflict` if the id is taken.
    async fn create_tier(&self, tier: &TierRecord) -> RepoResult<()>;
    /// Edits a tier and queues a reconciliation of every user holding it, atomically, so an
    /// acknowledged edit always reaches existing images.
    async fn update_tier(&self, id: &TierId, edit: &TierEdit) -> RepoResult<TierRecord>;
    /// `Conflict` for a builtin tier or one that users hold.
    async fn delete_tier(&self, id: &TierId) -> RepoResult<()>;
}

#[async_trait]
pub trait UserRepo: Send + Sync {
    async fn user(&self, id: UserId) -> RepoResult<UserRecord>;
    async fn user_by_name(&self, name: &str) -> RepoResult<Option<UserRecord>>;
    /// Every user, by username.
    async fn users(&self) -> RepoResult<Vec<UserRecord>>;
    /// `Conflict` if the username is taken, `NotFound` if the tier does not exist.
    async fn create_user(&self, user: &UserRecord) -> RepoResult<()>;
    /// A tier change also queues a reconciliation of the user's images, atomically. The new
    /// tier must exist. `Conflict` ([`last_admin_conflict`]) if the edit would leave no active
    /// admin: the check and the write are one atomic step, also across servers.
    async fn update_user(&self, id: UserId, edit: &UserEdit) -> RepoResult<UserRecord>;
    /// Deletes a user with their tokens and links. Their images must be deleted first (with
    /// their blobs), through [`ImageRepo::delete_image`]. `Conflict` for the last active admin.
    async fn delete_user(&self, id: UserId) -> RepoResult<()>;
    async fn insert_token(&self, record: &TokenRecord, hash: &[u8; 32]) -> RepoResult<()>;
    /// The user an API token belongs to (one lookup on every Bearer request); `None` for an
    /// unknown or revoked token.
    async fn user_by_token(&self, hash: &[u8; 32]) -> RepoResult<Option<UserRecord>>;
    async fn user_tokens(&self, user: UserId) -> RepoResult<Vec<TokenRecord>>;
    async fn delete_token(&self, user: UserId, token: TokenId) -> RepoResult<()>;
}

#[async_trait]
pub trait ImageRepo: Send + Sync {
    /// Records an image with a pending thumbnail for every height its owner's tier grants and
    /// the job that makes them, atomically. The owner and tier are read in the same
    /// transaction, so an upload racing with a tier change or the owner's deletion lands
    /// before it or sees its outcome. `NotFound` if the owner is gone or inactive.
    ///
    /// In the same atomic step: if the owner already holds an image with the same `sha256`,
    /// that one is returned and nothing is written; else the tier's limits are checked against
    /// the owner's usage at `image.created_at` (`Quota` when one would be exceeded), and the
    /// upload is counted in the owner's usage and upload window.
    async fn insert_image(&self, image: &ImageRecord, job_id: JobId) -> RepoResult<Inserted>;
    async fn image(&self, id: ImageId) -> RepoResult<ImageRecord>;
    /// The owner's image of this content, if any (one lookup keyed by owner and hash).
    async fn image_by_content(&self, owner: UserId, sha256: &[u8; 32]) -> RepoResult<Option<ImageRecord>>;
    async fn usage(&self, user: UserId) -> RepoResult<Usage>;
    /// A user's images, newest first, after `cursor` (exclusive).
    async fn user_images(&self, user: UserId, cursor: Option<ImageId>, limit: usize) -> RepoResult<Vec<ImageRecord>>;
    /// Every image id of a user (to delete the user).
    async fn user_image_ids(&self, user: UserId) -> RepoResult<Vec<ImageId>>;
    /// Images matching `filter`, newest first, after `cursor` (admin browsing): at most
    /// `limit`, reading at most [`SCAN_BUDGET`] records (see [`ImageScan::next`]).
    async fn find_images(&self, filter: &ImageFilter, cursor: Option<ImageId>, limit: usize) -> RepoResult<ImageScan>;
    async fn thumbnail(&self, image: ImageId, height: u32, format: ThumbnailFormat) -> RepoResult<Option<ThumbState>>;
    /// The recorded thumbnails of an image among `heights`, in every encoding.
    async fn thumbnails_of_heights(&self, image: ImageId, heights: &[u32]) -> RepoResult<ThumbStates>;
    /// Every recorded thumbnail of each image (one round trip for a page of images).
    async fn thumbnails_of_images(&self, images: &[ImageId]) -> RepoResult<HashMap<ImageId, ThumbStates>>;
    /// Marks every (height, format) of `heights` × `formats` pending on each image where not
    /// yet recorded, with one job per image for those newly pending, atomically. Returns the
    /// jobs (each makes its image's new heights in its new formats).
    async fn ensure_thumbnails(
        &self,
        images: &[ImageId],
        heights: &[u32],
        formats: &[ThumbnailFormat],
    ) -> RepoResult<Vec<ThumbnailJob>>;
    /// Deletes an image's record, its thumbnails' records and its links, atomically.
    async fn delete_image(&self, id: ImageId) -> RepoResult<ImageRecord>;
    /// Users whose images must be brought in line with their tier.
    async fn reconcile_queue(&self) -> RepoResult<Vec<ReconcileEntry>>;
    /// Clears an entry unless a newer change re-queued the user meanwhile.
    async fn reconcile_done(&self, entry: ReconcileEntry) -> RepoResult<()>;
}

#[async_trait]
pub trait LinkRepo: Send + Sync {
    /// Records a link unless its owner already holds `max_live` links unexpired at the link's
    /// creation (`LinkLimit` then); the count and the write are one atomic step, also across
    /// servers. `NotFound` if the image was deleted meanwhile.
    async fn insert_link(&self, link: &LinkRecord, token_hash: &[u8; 32], max_live: usize) -> RepoResult<()>;
    async fn link(&self, id: LinkId) -> RepoResult<LinkRecord>;
    async fn link_by_token_hash(&self, hash: &[u8; 32]) -> RepoResult<Option<LinkRecord>>;
    /// Whether the token belonged to a link pruned after its expiry and not yet forgotten
    /// (it answers 410, not 404).
    async fn is_expired_link_token(&self, hash: &[u8; 32]) -> RepoResult<bool>;
    /// Every stored link of a user (live, or expired and not yet pruned).
    async fn user_links(&self, user: UserId) -> RepoResult<Vec<LinkRecord>>;
    /// A user's links unexpired at `now`, newest first, after `cursor` (exclusive).
    async fn user_live_links(
        &self,
        user: UserId,
        now: DateTime<Utc>,
        cursor: Option<LinkId>,
        limit: usize,
    ) -> RepoResult<Vec<LinkRecord>>;
    async fn image_links(&self, image: ImageId) -> RepoResult<Vec<LinkRecord>>;
    /// Every link unexpired at `now`, newest first, after `cursor` (exclusive).
    async fn live_links(&self, now: DateTime<Utc>, cursor: Option<LinkId>, limit: usize)
        -> RepoResult<Vec<LinkRecord>>;
    async fn delete_link(&self, id: LinkId) -> RepoResult<()>;
    /// Deletes the links of `user` their grant no longer covers: all of them when the user is
    /// inactive or the tier has no expiring links, else those to variants the tier does not
    /// grant. A link that died stays dead when the grant comes back. Returns how many went.
    async fn revoke_links_not_granted(&self, user: &UserRecord, tier: &TierRecord) -> RepoResult<usize>;
    /// Removes the links expired at `now` from every list and count, keeping their tokens to
    /// answer 410, and forgets the tokens of links that expired before `forget_before`.
    /// Returns (pruned, forgotten).
    async fn prune_expired_links(&self, now: DateTime<Utc>, forget_before: DateTime<Utc>)
        -> RepoResult<(usize, usize)>;
}

/// The outbox of thumbnail jobs: every unfinished job is a record here, written with the
/// thumbnails it makes pending; it goes only in the transaction that applies its report.
#[async_trait]
pub trait JobRepo: Send + Sync {
    /// Outbox jobs in id (creation) order, after `after`.
    async fn outbox_jobs(&self, after: Option<JobId>, limit: usize) -> RepoResult<Vec<ThumbnailJob>>;
    /// Every job id in the outbox (the queue's records of others can go).
    async fn outbox_ids(&self) -> RepoResult<BTreeSet<JobId>>;
    /// Whether the job is still in the outbox (not applied, its image not deleted).
    async fn in_outbox(&self, job: JobId) -> RepoResult<bool>;
    async fn outbox_len(&self) -> RepoResult<u64>;
    /// Applies reports and retires their jobs, atomically per report. Idempotent: a thumbnail
    /// already ready stays so, a repeated report changes nothing. `Conflict` for a report that
    /// mixes images (it can never apply).
    async fn apply_reports(&self, reports: &[JobReport]) -> RepoResult<Vec<Applied>>;
    /// Removes outbox jobs whose image was deleted. Returns how many.
    async fn retire_jobs_of_deleted_images(&self) -> RepoResult<usize>;
    /// Records jobs for pending thumbnails no outbox job covers, restoring "pending ⇒ a job
    /// exists" (old data, or a job lost to a bug). Returns the jobs created.
    async fn adopt_uncovered_pending(&self) -> RepoResult<Vec<ThumbnailJob>>;
}

/// Everything the server needs of its metadata.
#[async_trait]
pub trait Repo: TierRepo + UserRepo + ImageRepo + LinkRepo + JobRepo {
    /// `sled` or `postgres`, for logs and metrics.
    fn backend(&self) -> &'static str;
    /// For readiness: does the database answer?
    async fn check(&self) -> RepoResult<()>;
    /// The id of the blob store this metadata belongs to, once recorded.
    async fn store_marker(&self) -> RepoResult<Option<String>>;
    async fn record_store_marker(&self, id: &str) -> RepoResult<()>;
    /// Changes whenever any server sharing this database applies job reports; `None` when
    /// this process is the only writer (then its own signal suffices).
    fn thumbnail_changes(&self) -> Option<tokio::sync::watch::Receiver<u64>> {
        None
    }
    /// Why the database takes no writes now although it answers reads (sled after a full
    /// disk, until the server restarts); `None` when it takes writes.
    fn writes_refused(&self) -> Option<&'static str> {
        None
    }
    /// Ends background work after a last flush; false if that did not finish in `deadline`.
    /// Synchronous, so that a hang cannot keep the runtime alive at exit.
    fn close(&self, deadline: Duration) -> bool;
}

/// Where the metadata lives (the server's configuration, and the command-line tools').
#[derive(Debug, Clone)]
pub struct RepoSettings {
    /// PostgreSQL when set; else sled in `sled_dir`.
    pub database_url: Option<String>,
    pub pool_size: usize,
    pub sled_dir: std::path::PathBuf,
    pub sled_cache_bytes: u64,
}

/// Opens the repository the settings name and seeds the builtin tiers.
pub async fn open(settings: &RepoSettings) -> RepoResult<SharedRepo> {
    let repo: SharedRepo = match &settings.database_url {
        Some(url) => Arc::new(postgres::PgRepo::connect(url, settings.pool_size).await?),
        None => {
            let (dir, cache) = (settings.sled_dir.clone(), settings.sled_cache_bytes);
            let db = tokio::task::spawn_blocking(move || sled::SledDb::open_with_cache(&dir, cache))
                .await
                .map_err(|e| RepoError::Storage(format!("opening the database: {e}")))??;
            Arc::new(sled::SledRepo::new(db))
        }
    };
    repo.seed_builtin_tiers().await?;
    Ok(repo)
}
