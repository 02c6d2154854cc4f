//! The repository traits over [`SledDb`]: each call on tokio's blocking threads (sled blocks
//! on IO past its cache), each write durable before it returns.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use imageapi_core::domain::{ImageId, JobId, LinkId, TierId, TokenId, UserId};
use imageapi_core::image::ThumbnailFormat;
use imageapi_core::jobs::{JobReport, ThumbnailJob};

use super::SledDb;
use crate::repo::{
    Applied, ImageFilter, ImageRecord, ImageRepo, ImageScan, Inserted, JobRepo, LinkRecord, LinkRepo, ReconcileEntry,
    Repo, RepoError, RepoResult, ThumbState, ThumbStates, TierEdit, TierRecord, TierRepo, TokenRecord, Usage, UserEdit,
    UserRecord, UserRepo,
};

pub struct SledRepo {
    db: Arc<SledDb>,
    tiers: TierCache,
    /// A write met a full disk: sled 0.34 takes none until it is reopened (see
    /// [`RepoError::OutOfSpace`]).
    out_of_space: AtomicBool,
}

/// What [`Repo::writes_refused`] says once sled met a full disk.
const WRITES_REFUSED: &str =
    "sled met a full disk and takes no writes until the server restarts (reads go on): free disk space, then restart";

/// Tiers by id, in memory: every media request reads its user's tier, tiers change rarely,
/// and this process is the database's only writer, so the cache is exact. Each tier write
/// bumps the generation; a read fills the cache only if no write began since it started.
#[derive(Default)]
struct TierCache {
    inner: Mutex<(u64, HashMap<TierId, TierRecord>)>,
}

impl TierCache {
    fn lock(&self) -> std::sync::MutexGuard<'_, (u64, HashMap<TierId, TierRecord>)> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The cached tier, or the generation a read must present to fill it.
    fn get(&self, id: &TierId) -> Result<TierRecord, u64> {
        let inner = self.lock();
        inner.1.get(id).cloned().ok_or(inner.0)
    }

    fn fill(&self, generation: u64, tier: &TierRecord) {
        let mut inner = self.lock();
        if inner.0 == generation {
            inner.1.insert(tier.id.clone(), tier.clone());
        }
    }

    fn invalidate(&self) {
        let mut inner = self.lock();
        inner.0 += 1;
        inner.1.clear();
    }
}

impl SledRepo {
    pub fn new(db: SledDb) -> Self {
        Self { db: Arc::new(db), tiers: TierCache::default(), out_of_space: AtomicBool::new(false) }
    }

    /// Runs `f` on a blocking thread.
    async fn read<T, F>(&self, f: F) -> RepoResult<T>
    where
        F: FnOnce(&SledDb) -> RepoResult<T> + Send + 'static,
        T: Send + 'static,
    {
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || f(&db))
            .await
            .map_err(|e| RepoError::Storage(format!("a database task failed: {e}")))?
    }

    /// [`Self::read`], then waits for the group commit that makes the write durable.
    async fn write<T, F>(&self, f: F) -> RepoResult<T>
    where
        F: FnOnce(&SledDb) -> RepoResult<T> + Send + 'static,
        T: Send + 'static,
    {
        let written = async {
            let out = self.read(f).await?;
            self.db.flush().await?;
            Ok(out)
        }
        .await;
        if matches!(written, Err(RepoError::OutOfSpace { .. })) && !self.out_of_space.swap(true, Ordering::SeqCst) {
            tracing::error!("the metadata database met a full disk: {WRITES_REFUSED}");
        }
        written
    }

    /// Flushes run so far by the group commit (tests check that writers share them).
    pub fn flushes(&self) -> u64 {
        self.db.flushes()
    }
}

#[async_trait]
impl TierRepo for SledRepo {
    async fn seed_builtin_tiers(&self) -> RepoResult<()> {
        let seeded = self.write(|db| db.seed_builtin_tiers()).await;
        self.tiers.invalidate();
        seeded
    }
    async fn tier(&self, id: &TierId) -> RepoResult<TierRecord> {
        let generation = match self.tiers.get(id) {
            Ok(tier) => return Ok(tier),
            Err(generation) => generation,
        };
        let id = id.clone();
        let tier = self.read(move |db| db.tier(&id)).await?;
        self.tiers.fill(generation, &tier);
        Ok(tier)
    }
    async fn tiers(&self) -> RepoResult<Vec<TierRecord>> {
        self.read(|db| db.tiers()).await
    }
    async fn tier_user_count(&self, id: &TierId) -> RepoResult<u64> {
        let id = id.clone();
        self.read(move |db| db.tier_user_count(&id)).await
    }
    async fn create_tier(&self, tier: &TierRecord) -> RepoResult<()> {
        let tier = tier.clone();
        let created = self.write(move |db| db.create_tier(&tier)).await;
        self.tiers.invalidate();
        created
    }
    async fn update_tier(&self, id: &TierId, edit: &TierEdit) -> RepoResult<TierRecord> {
        let (id, edit) = (id.clone(), edit.clone());
        let updated = self.write(move |db| db.update_tier(&id, &edit)).await;
        self.tiers.invalidate();
        updated
    }
    async fn delete_tier(&self, id: &TierId) -> RepoResult<()> {
        let id = id.clone();
        let deleted = self.write(move |db| db.delete_tier(&id)).await;
        self.tiers.invalidate();
        deleted
    }
}

#[async_trait]
impl UserRepo for SledRepo {
    async fn user(&self, id: UserId) -> RepoResult<UserRecord> {
        self.read(move |db| db.user(id)).await
    }
    async fn user_by_name(&self, name: &str) -> RepoResult<Option<UserRecord>> {
        let name = name.to_owned();
        self.read(move |db| db.user_by_name(&name)).await
    }
    async fn users(&self) -> RepoResult<Vec<UserRecord>> {
        self.read(|db| db.users()).await
    }
    async fn create_user(&self, user: &UserRecord) -> RepoResult<()> {
        let user = user.clone();
        self.write(move |db| db.create_user(&user)).await
    }
    async fn update_user(&self, id: UserId, edit: &UserEdit) -> RepoResult<UserRecord> {
        let edit = edit.clone();
        self.write(move |db| db.update_user(id, &edit)).await
    }
    async fn delete_user(&self, id: UserId) -> RepoResult<()> {
        self.write(move |db| db.delete_user(id)).await
    }
    async fn insert_token(&self, record: &TokenRecord, hash: &[u8; 32]) -> RepoResult<()> {
        let (record, hash) = (record.clone(), *hash);
        self.write(move |db| db.insert_token(&record, &hash)).await
    }
    async fn user_by_token(&self, hash: &[u8; 32]) -> RepoResult<Option<UserRecord>> {
        let hash = *hash;
        self.read(move |db| {
            let Some(token) = db.token_by_hash(&hash)? else { return Ok(None) };
            match db.user(token.user_id) {
                Ok(user) => Ok(Some(user)),
                Err(RepoError::NotFound) => Ok(None),
                Err(e) => Err(e),
            }
        })
        .await
    }
    async fn user_tokens(&self, user: UserId) -> RepoResult<Vec<TokenRecord>> {
        self.read(move |db| db.user_tokens(user)).await
    }
    async fn delete_token(&self, user: UserId, token: TokenId) -> RepoResult<()> {
        self.write(move |db| db.delete_token(user, token)).await
    }
}

#[async_trait]
impl ImageRepo for SledRepo {
    async fn insert_image(&self, image: &ImageRecord, job_id: JobId) -> RepoResult<Inserted> {
        let image = image.clone();
        self.write(move |db| db.insert_image(&image, job_id)).await
    }
    async fn image(&self, id: ImageId) -> RepoResult<ImageRecord> {
        self.read(move |db| db.image(id)).await
    }
    async fn image_by_content(&self, owner: UserId, sha256: &[u8; 32]) -> RepoResult<Option<ImageRecord>> {
        let sha256 = *sha256;
        self.read(move |db| db.image_by_content(owner, &sha256)).await
    }
    async fn usage(&self, user: UserId) -> RepoResult<Usage> {
        self.read(move |db| db.usage(user)).await
    }
    async fn user_images(&self, user: UserId, cursor: Option<ImageId>, limit: usize) -> RepoResult<Vec<ImageRecord>> {
        self.read(move |db| db.user_images(user, cursor, limit)).await
    }
    async fn user_image_ids(&self, user: UserId) -> RepoResult<Vec<ImageId>> {
        self.read(move |db| db.user_image_ids(user)).await
    }
    async fn find_images(&self, filter: &ImageFilter, cursor: Option<ImageId>, limit: usize) -> RepoResult<ImageScan> {
        let filter = filter.clone();
        self.read(move |db| db.find_images(&filter, cursor, limit)).await
    }
    async fn thumbnail(&self, image: ImageId, height: u32, format: ThumbnailFormat) -> RepoResult<Option<ThumbState>> {
        self.read(move |db| db.thumbnail(image, height, format)).await
    }
    async fn thumbnails_of_heights(&self, image: ImageId, heights: &[u32]) -> RepoResult<ThumbStates> {
        let heights = heights.to_vec();
        self.read(move |db| db.thumbnails_of_heights(image, &heights)).await
    }
    async fn thumbnails_of_images(&self, images: &[ImageId]) -> RepoResult<HashMap<ImageId, ThumbStates>> {
        let images = images.to_vec();
        self.read(move |db| db.thumbnails_of_images(&images)).await
    }
    async fn ensure_thumbnails(
        &self,
        images: &[ImageId],
        heights: &[u32],
        formats: &[ThumbnailFormat],
    ) -> RepoResult<Vec<ThumbnailJob>> {
        let (images, heights, formats) = (images.to_vec(), heights.to_vec(), formats.to_vec());
        self.write(move |db| db.ensure_thumbnails_of(&images, &heights, &formats)).await
    }
    async fn delete_image(&self, id: ImageId) -> RepoResult<ImageRecord> {
        self.write(move |db| db.delete_image(id)).await
    }
    async fn reconcile_queue(&self) -> RepoResult<Vec<ReconcileEntry>> {
        self.read(|db| db.reconcile_queue()).await
    }
    async fn reconcile_done(&self, entry: ReconcileEntry) -> RepoResult<()> {
        self.write(move |db| db.reconcile_done(entry)).await
    }
}

#[async_trait]
impl LinkRepo for SledRepo {
    async fn insert_link(&self, link: &LinkRecord, token_hash: &[u8; 32], max_live: usize) -> RepoResult<()> {
        let (link, hash) = (link.clone(), *token_hash);
        self.write(move |db| db.insert_link(&link, &hash, max_live)).await
    }
    async fn link(&self, id: LinkId) -> RepoResult<LinkRecord> {
        self.read(move |db| db.link(id)).await
    }
    async fn link_by_token_hash(&self, hash: &[u8; 32]) -> RepoResult<Option<LinkRecord>> {
        let hash = *hash;
        self.read(move |db| db.link_by_token_hash(&hash)).await
    }
    async fn is_expired_link_token(&self, hash: &[u8; 32]) -> RepoResult<bool> {
        let hash = *hash;
        self.read(move |db| db.is_expired_link_token(&hash)).await
    }
    async fn user_links(&self, user: UserId) -> RepoResult<Vec<LinkRecord>> {
        self.read(move |db| db.user_links(user)).await
    }
    async fn user_live_links(
        &self,
        user: UserId,
        now: DateTime<Utc>,
        cursor: Option<LinkId>,
        limit: usize,
    ) -> RepoResult<Vec<LinkRecord>> {
        self.read(move |db| db.user_live_links(user, now, cursor, limit)).await
    }
    async fn image_links(&self, image: ImageId) -> RepoResult<Vec<LinkRecord>> {
        self.read(move |db| db.image_links(image)).await
    }
    async fn live_links(
        &self,
        now: DateTime<Utc>,
        cursor: Option<LinkId>,
        limit: usize,
    ) -> RepoResult<Vec<LinkRecord>> {
        self.read(move |db| db.live_links(now, cursor, limit)).await
    }
    async fn delete_link(&self, id: LinkId) -> RepoResult<()> {
        self.write(move |db| db.delete_link(id)).await
    }
    async fn revoke_links_not_granted(&self, user: &UserRecord, tier: &TierRecord) -> RepoResult<usize> {
        let (user, tier) = (user.clone(), tier.clone());
        self.write(move |db| db.revoke_links_not_granted(&user, &tier)).await
    }
    async fn prune_expired_links(
        &self,
        now: DateTime<Utc>,
        forget_before: DateTime<Utc>,
    ) -> RepoResult<(usize, usize)> {
        self.write(move |db| db.prune_expired_links(now, forget_before)).await
    }
}

#[async_trait]
impl JobRepo for SledRepo {
    async fn outbox_jobs(&self, after: Option<JobId>, limit: usize) -> RepoResult<Vec<ThumbnailJob>> {
        self.read(move |db| db.outbox_jobs(after, limit)).await
    }
    async fn outbox_ids(&self) -> RepoResult<BTreeSet<JobId>> {
        self.read(|db| db.outbox_ids()).await
    }
    async fn in_outbox(&self, job: JobId) -> RepoResult<bool> {
        self.read(move |db| db.in_outbox(job)).await
    }
    async fn outbox_len(&self) -> RepoResult<u64> {
        self.read(|db| Ok(db.outbox_len())).await
    }
    async fn apply_reports(&self, reports: &[JobReport]) -> RepoResult<Vec<Applied>> {
        let reports = reports.to_vec();
        self.write(move |db| reports.iter().map(|r| db.apply_report(r)).collect()).await
    }
    async fn retire_jobs_of_deleted_images(&self) -> RepoResult<usize> {
        self.write(|db| db.retire_jobs_of_deleted_images()).await
    }
    async fn adopt_uncovered_pending(&self) -> RepoResult<Vec<ThumbnailJob>> {
        self.write(|db| db.adopt_uncovered_pending()).await
    }
}

#[async_trait]
impl Repo for SledRepo {
    fn backend(&self) -> &'static str {
        "sled"
    }
    async fn check(&self) -> RepoResult<()> {
        self.read(|db| db.check()).await
    }
    async fn store_marker(&self) -> RepoResult<Option<String>> {
        self.read(|db| db.store_marker()).await
    }
    async fn record_store_marker(&self, id: &str) -> RepoResult<()> {
        let id = id.to_owned();
        self.write(move |db| db.record_store_marker(&id)).await
    }
    fn writes_refused(&self) -> Option<&'static str> {
        self.out_of_space.load(Ordering::SeqCst).then_some(WRITES_REFUSED)
    }
    fn close(&self, deadline: Duration) -> bool {
        self.db.close(deadline)
    }
}
