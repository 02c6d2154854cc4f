//! Thumbnail bookkeeping on the server side: enqueueing jobs, applying outcomes, waiting for a
//! pending thumbnail, re-enqueueing after a restart, and reconciling images with tier changes.
//!
//! The invariant that makes this crash-safe: every thumbnail that should exist and is not
//! ready has a `pending` record in sled, written and flushed before anything is acknowledged.
//! The queue is only a delivery mechanism; at start every pending record is enqueued again.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use imageapi_shared::domain::{ImageId, UserId};
use imageapi_shared::jobs::{ThumbnailJob, ThumbnailOutcome, ThumbnailResult};
use imageapi_shared::store::{BlobKey, BlobStore};
use imageapi_worker::{EmbeddedQueue, OutcomeSink};
use tokio::sync::{watch, Notify};

use crate::repo::{RepoError, SledRepo, ThumbState};

/// How many images of a user are reconciled per repository call.
const RECONCILE_BATCH: usize = 256;
/// How often pending thumbnails without a queued job are enqueued again (a job that failed
/// its last retry, e.g. on a passing storage error, leaves its thumbnails pending).
const SWEEP_INTERVAL: Duration = Duration::from_secs(60);

pub struct Thumbnails {
    repo: Arc<SledRepo>,
    store: Arc<dyn BlobStore>,
    queue: EmbeddedQueue,
    /// Bumped after each applied outcome; waiters re-check when it changes.
    applied: watch::Sender<u64>,
    reconcile_wake: Notify,
    /// Jobs queued or running per image, so the sweep only enqueues what no job covers.
    in_flight: Mutex<HashMap<ImageId, usize>>,
}

impl Thumbnails {
    pub fn new(repo: Arc<SledRepo>, store: Arc<dyn BlobStore>, queue: EmbeddedQueue) -> Self {
        Self {
            repo,
            store,
            queue,
            applied: watch::Sender::new(0),
            reconcile_wake: Notify::new(),
            in_flight: Mutex::new(HashMap::new()),
        }
    }

    /// Hands a job to the queue. The pending records are already durable, so a failure here
    /// only delays the job until the next start; it is logged, not returned.
    pub fn enqueue(&self, job: ThumbnailJob) {
        if job.heights.is_empty() {
            return;
        }
        let image = job.image_id;
        *self.in_flight().entry(image).or_insert(0) += 1;
        if let Err(e) = self.queue.push(job) {
            self.settled(image);
            tracing::error!(error = %e, "could not enqueue a thumbnail job; the sweep will try again");
        }
    }

    fn in_flight(&self) -> std::sync::MutexGuard<'_, HashMap<ImageId, usize>> {
        self.in_flight.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A job for `image` left the queue (done, or given up after its retries).
    pub fn settled(&self, image: ImageId) {
        let mut in_flight = self.in_flight();
        if let Some(n) = in_flight.get_mut(&image) {
            *n -= 1;
            if *n == 0 {
                in_flight.remove(&image);
            }
        }
    }

    /// Whether the queue can take jobs (readiness).
    pub fn queue_is_open(&self) -> bool {
        self.queue.is_open()
    }

    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&SledRepo) -> Result<T, RepoError> + Send + 'static,
    ) -> Result<T, RepoError> {
        self.repo.blocking(f).await
    }

    /// Applies an outcome durably and wakes waiters. An outcome for a deleted image removes
    /// the thumbnail the worker just wrote.
    pub async fn apply(&self, outcome: ThumbnailOutcome) -> Result<(), RepoError> {
        let o = outcome.clone();
        match self.blocking(move |repo| repo.apply_outcome(&o)).await {
            Ok(_) => {
                self.repo.flush().await?;
                self.applied.send_modify(|n| *n = n.wrapping_add(1));
                Ok(())
            }
            Err(RepoError::NotFound) => {
                if let ThumbnailResult::Ready { .. } = outcome.result {
                    let orphan = BlobKey::thumbnail(outcome.image_id, outcome.requested_height, outcome.format);
                    if let Err(e) = self.store.delete(&orphan).await {
                        tracing::warn!(error = %e, "could not remove the thumbnail of a deleted image");
                    }
                }
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    /// The state of a thumbnail, waiting up to `wait` while it is pending.
    pub async fn wait_for(&self, image: ImageId, height: u32, wait: Duration) -> Result<ThumbState, RepoError> {
        let deadline = tokio::time::Instant::now() + wait;
        let mut changes = self.applied.subscribe();
        loop {
            changes.mark_unchanged();
            let state = self.blocking(move |repo| repo.thumbnail(image, height)).await?.unwrap_or(ThumbState::Pending);
            if state != ThumbState::Pending {
                return Ok(state);
            }
            match tokio::time::timeout_at(deadline, changes.changed()).await {
                Ok(Ok(())) => continue,
                _ => return Ok(ThumbState::Pending),
            }
        }
    }

    /// Enqueues every pending thumbnail that no queued or running job covers: at start (jobs
    /// in the in-memory queue died with the previous process) and then periodically.
    pub async fn enqueue_uncovered_pending(&self) -> Result<usize, RepoError> {
        let pending = self.blocking(|repo| repo.pending_thumbnails()).await?;
        let mut jobs = 0;
        for (image_id, heights) in pending {
            if self.in_flight().contains_key(&image_id) {
                continue;
            }
            match self.blocking(move |repo| repo.image(image_id)).await {
                Ok(image) => {
                    self.enqueue(ThumbnailJob { image_id, format: image.format, heights });
                    jobs += 1;
                }
                Err(RepoError::NotFound) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(jobs)
    }

    /// Runs [`Self::enqueue_uncovered_pending`] every [`SWEEP_INTERVAL`].
    pub async fn run_sweeper(self: Arc<Self>) {
        let mut every = tokio::time::interval_at(tokio::time::Instant::now() + SWEEP_INTERVAL, SWEEP_INTERVAL);
        loop {
            every.tick().await;
            match self.enqueue_uncovered_pending().await {
                Ok(0) => {}
                Ok(n) => tracing::info!(jobs = n, "re-enqueued pending thumbnails that had no job"),
                Err(e) => tracing::error!(error = %e, "sweeping pending thumbnails failed"),
            }
        }
    }

    pub fn wake_reconciler(&self) {
        self.reconcile_wake.notify_one();
    }

    /// Brings every user queued for reconciliation in line with their tier: heights the tier
    /// grants but an image lacks become pending and are enqueued. (Heights no longer granted
    /// are hidden at read time; their thumbnails are kept in case the grant comes back.)
    pub async fn run_reconciler(self: Arc<Self>) {
        loop {
            match self.reconcile_all().await {
                Ok(()) => {}
                Err(e) => tracing::error!(error = %e, "reconciling tiers failed; retrying shortly"),
            }
            let _ = tokio::time::timeout(Duration::from_secs(30), self.reconcile_wake.notified()).await;
        }
    }

    async fn reconcile_all(&self) -> Result<(), RepoError> {
        for (user, generation) in self.blocking(|repo| repo.reconcile_queue()).await? {
            self.reconcile_user(user).await?;
            self.blocking(move |repo| repo.reconcile_done(user, &generation)).await?;
        }
        self.repo.flush().await?;
        Ok(())
    }

    async fn reconcile_user(&self, user_id: UserId) -> Result<(), RepoError> {
        let user = match self.blocking(move |repo| repo.user(user_id)).await {
            Ok(user) => user,
            Err(RepoError::NotFound) => return Ok(()),
            Err(e) => return Err(e),
        };
        let tier_id = user.tier.clone();
        let heights: Vec<u32> = match self.blocking(move |repo| repo.tier(&tier_id)).await {
            Ok(tier) => tier.thumbnail_heights.iter().map(|h| h.get()).collect(),
            Err(RepoError::NotFound) => return Ok(()),
            Err(e) => return Err(e),
        };
        let mut cursor = None;
        loop {
            let page = self.blocking(move |repo| repo.user_images(user_id, cursor, RECONCILE_BATCH)).await?;
            let Some(last) = page.last() else { break };
            cursor = Some(last.id);
            let wanted = heights.clone();
            let jobs = self
                .blocking(move |repo| {
                    let mut jobs = Vec::new();
                    for image in page {
                        let added = repo.ensure_thumbnails(image.id, &wanted)?;
                        if !added.is_empty() {
                            jobs.push(ThumbnailJob { image_id: image.id, format: image.format, heights: added });
                        }
                    }
                    Ok(jobs)
                })
                .await?;
            if !jobs.is_empty() {
                // Durable before enqueueing, as everywhere: a crash now re-enqueues at start.
                self.repo.flush().await?;
                jobs.into_iter().for_each(|job| self.enqueue(job));
            }
        }
        Ok(())
    }
}

/// The embedded worker reports straight into the repository.
pub struct DirectSink(pub Arc<Thumbnails>);

#[async_trait]
impl OutcomeSink for DirectSink {
    async fn report(&self, outcome: ThumbnailOutcome) -> anyhow::Result<()> {
        Ok(self.0.apply(outcome).await?)
    }

    fn job_settled(&self, job: &ThumbnailJob) {
        self.0.settled(job.image_id);
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use imageapi_shared::pipeline::ImageFormat;
    use imageapi_shared::store::{FsBlobStore, StoreError};

    use super::*;

    #[tokio::test]
    async fn a_ready_outcome_for_a_deleted_image_removes_the_orphaned_thumbnail() {
        let dir = tempfile::tempdir().expect("tempdir");
        let repo = Arc::new(SledRepo::open(&dir.path().join("db")).expect("repo"));
        let store: Arc<dyn BlobStore> = Arc::new(FsBlobStore::open(dir.path().join("blobs")).expect("store"));
        let (queue, _worker) = imageapi_worker::embedded::queue();
        let thumbnails = Thumbnails::new(repo, store.clone(), queue);
        let gone = ImageId::from_ulid(ulid::Ulid::new());
        let key = BlobKey::thumbnail(gone, 200, ImageFormat::Jpeg);
        store.put(&key, Bytes::from_static(b"thumb")).await.expect("put");

        let outcome = ThumbnailOutcome {
            image_id: gone,
            format: ImageFormat::Jpeg,
            requested_height: 200,
            result: ThumbnailResult::Ready { width: 300, height: 200, size_bytes: 5 },
        };
        thumbnails.apply(outcome).await.expect("applying for a deleted image is not an error");

        assert!(matches!(store.get(&key).await, Err(StoreError::NotFound(_))));
    }

    #[tokio::test]
    async fn the_sweep_enqueues_only_pending_thumbnails_that_no_job_covers() {
        let dir = tempfile::tempdir().expect("tempdir");
        let repo = Arc::new(SledRepo::open(&dir.path().join("db")).expect("repo"));
        repo.seed_builtin_tiers().expect("seed");
        let owner = crate::repo::UserRecord {
            id: UserId::from_ulid(ulid::Ulid::new()),
            username: imageapi_shared::domain::Username::parse("ann").expect("name"),
            password_hash: String::new(),
            tier: imageapi_shared::domain::TierId::parse("basic").expect("tier"),
            is_active: true,
            is_admin: false,
            created_at: chrono::Utc::now(),
            credentials_version: 0,
        };
        repo.create_user(&owner).expect("user");
        let image = crate::repo::ImageRecord {
            id: ImageId::from_ulid(ulid::Ulid::new()),
            owner: owner.id,
            name: "a.png".into(),
            format: ImageFormat::Png,
            width: 10,
            height: 10,
            size_bytes: 1,
            created_at: chrono::Utc::now(),
        };
        repo.insert_image(&image).expect("image");
        let store: Arc<dyn BlobStore> = Arc::new(FsBlobStore::open(dir.path().join("blobs")).expect("store"));
        let (queue, _worker) = imageapi_worker::embedded::queue();
        let thumbnails = Thumbnails::new(repo, store, queue);

        assert_eq!(thumbnails.enqueue_uncovered_pending().await.expect("sweep"), 1, "at start: not covered");
        assert_eq!(thumbnails.enqueue_uncovered_pending().await.expect("sweep"), 0, "its job is queued");
        thumbnails.settled(image.id);
        assert_eq!(thumbnails.enqueue_uncovered_pending().await.expect("sweep"), 1, "the job gave up: again");
    }
}
