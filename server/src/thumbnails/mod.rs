//! Thumbnail bookkeeping on the server side: jobs from the outbox to the queue, reports back
//! into the metadata, waiting for a pending thumbnail, and reconciling images with tier changes.
//!
//! The invariant that makes this crash-safe: every thumbnail that should exist and is not
//! ready is `pending` in the metadata, and every pending thumbnail is covered by a job in its
//! outbox, both written durably (in one transaction) before anything is acknowledged. A job leaves the outbox
//! only in the transaction that applies its report. The queue (in-process or Redis) is only a
//! delivery mechanism: whatever it loses, the dispatcher delivers again.
//!
//! - [`dispatch`]: the dispatcher (outbox → queue), the Redis results reader, the vacuum.
//! - [`reconcile`]: tier changes reaching existing images.

mod dispatch;
mod reconcile;

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use imageapi_shared::domain::{ImageId, JobId};
use imageapi_shared::jobs::{JobReport, ThumbnailJob, ThumbnailResult};
use imageapi_shared::queue::{JobQueue, OutcomeSink, QueueError, QueueMode, QueueSnapshot};
use imageapi_shared::store::{BlobKey, BlobStore};
use tokio::sync::{watch, Notify};

use crate::metrics::ServerMetrics;
use crate::repo::{RepoError, SharedRepo, ThumbState};

pub use dispatch::spawn_redis_tasks;

/// How long a new job's hand-over to the queue may take before the dispatcher is left to it.
const PUSH_TIMEOUT: Duration = Duration::from_secs(2);
/// The window of the throughput figure.
const THROUGHPUT_WINDOW: Duration = Duration::from_secs(60);

pub struct Thumbnails {
    repo: SharedRepo,
    store: Arc<dyn BlobStore>,
    queue: Arc<dyn JobQueue>,
    metrics: ServerMetrics,
    /// Bumped after each applied report; waiters re-check when it changes.
    applied: watch::Sender<u64>,
    reconcile_wake: Notify,
    dispatch_wake: Notify,
    /// Jobs known not to be in the queue since a delivery failed (for admins).
    backlog: AtomicU64,
    /// False while the queue cannot be reached (uploads are still accepted: the outbox keeps them).
    queue_reachable: AtomicBool,
    /// Set when any call to the queue failed: it may have restarted and forgotten jobs, so
    /// the dispatcher delivers every outbox job again once it answers.
    queue_interrupted: AtomicBool,
    /// When recent jobs finished, for the throughput figure.
    finished: Mutex<VecDeque<Instant>>,
}

/// What admins see of the queue: its own view plus the server's.
pub struct QueueStatus {
    pub snapshot: QueueSnapshot,
    /// Jobs accepted but not yet handed to the queue (it was unreachable).
    pub undelivered: u64,
    pub finished_last_minute: u64,
}

pub enum QueueHealth {
    Ok,
    /// The queue is away, uploads still work: jobs wait in the outbox.
    Degraded(String),
    /// Jobs cannot be delivered at all.
    Down(String),
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Thumbnails {
    pub fn new(repo: SharedRepo, store: Arc<dyn BlobStore>, queue: Arc<dyn JobQueue>, metrics: ServerMetrics) -> Self {
        let applied = watch::Sender::new(0u64);
        if let Some(mut elsewhere) = repo.thumbnail_changes() {
            // Other servers apply reports too: their results wake this server's waiters.
            let local = applied.clone();
            tokio::spawn(async move {
                while elsewhere.changed().await.is_ok() {
                    local.send_modify(|n| *n = n.wrapping_add(1));
                }
            });
        }
        Self {
            repo,
            store,
            queue,
            metrics,
            applied,
            reconcile_wake: Notify::new(),
            dispatch_wake: Notify::new(),
            backlog: AtomicU64::new(0),
            queue_reachable: AtomicBool::new(true),
            queue_interrupted: AtomicBool::new(false),
            finished: Mutex::new(VecDeque::new()),
        }
    }

    /// Jobs were recorded (durably) in the outbox: hands them to the queue now. Nothing is
    /// kept here: if the queue is away or the call fails, the dispatcher's next pass over the
    /// outbox delivers them.
    pub async fn submitted(&self, jobs: &[ThumbnailJob]) {
        if jobs.is_empty() {
            return;
        }
        self.metrics.jobs_enqueued.inc_by(jobs.len() as u64);
        if !self.queue_reachable.load(Ordering::Relaxed) {
            return;
        }
        let failure = match tokio::time::timeout(PUSH_TIMEOUT, self.queue.push(jobs)).await {
            Ok(Ok(())) => return,
            Ok(Err(e)) => e.to_string(),
            Err(_) => format!("no answer within {PUSH_TIMEOUT:?}"),
        };
        tracing::debug!(error = %failure, "handing new jobs to the queue failed; the dispatcher will");
        self.queue_interrupted.store(true, Ordering::Relaxed);
        self.dispatch_wake.notify_one();
    }

    /// Applies reports durably (one repository call for all), then wakes waiters. Ready thumbnails of
    /// images deleted meanwhile are removed from the blob store.
    pub async fn apply_reports(&self, reports: Vec<JobReport>) -> Result<(), RepoError> {
        if reports.is_empty() {
            return Ok(());
        }
        let outcomes = self.repo.apply_reports(&reports).await?;
        let applied: Vec<_> = reports.into_iter().zip(outcomes).collect();
        let now = Instant::now();
        {
            // (Delivered ids are forgotten by the dispatcher's next full pass, not here: a pass
            // running now could otherwise deliver a finished job again.)
            let mut finished = lock(&self.finished);
            for _ in &applied {
                finished.push_back(now);
            }
            while finished.front().is_some_and(|t| now.duration_since(*t) > THROUGHPUT_WINDOW) {
                finished.pop_front();
            }
        }
        for (report, outcome) in applied {
            if outcome.was_outstanding {
                let failed = report.outcomes.iter().any(|o| matches!(o.result, ThumbnailResult::Failed { .. }));
                self.metrics.jobs_completed.with_label_values(&[if failed { "failed" } else { "ready" }]).inc();
                let created = report.job_id.ulid().datetime();
                if let Ok(age) = std::time::SystemTime::now().duration_since(created) {
                    self.metrics.job_latency.observe(age.as_secs_f64());
                }
            }
            for orphan in outcome.orphans {
                let key = BlobKey::thumbnail(orphan.image_id, orphan.requested_height, orphan.format);
                if let Err(e) = self.store.delete(&key).await {
                    tracing::warn!(error = %e, "could not remove the thumbnail of a deleted image");
                }
            }
        }
        self.applied.send_modify(|n| *n = n.wrapping_add(1));
        Ok(())
    }

    /// The state of a thumbnail, waiting up to `wait` while it is pending.
    pub async fn wait_for(&self, image: ImageId, height: u32, wait: Duration) -> Result<ThumbState, RepoError> {
        let deadline = tokio::time::Instant::now() + wait;
        let mut changes = self.applied.subscribe();
        loop {
            changes.mark_unchanged();
            let state = self.repo.thumbnail(image, height).await?.unwrap_or(ThumbState::Pending);
            if state != ThumbState::Pending {
                return Ok(state);
            }
            match tokio::time::timeout_at(deadline, changes.changed()).await {
                Ok(Ok(())) => continue,
                _ => return Ok(ThumbState::Pending),
            }
        }
    }

    /// Restores "every pending thumbnail has a job" at start (see the module docs).
    pub async fn adopt_uncovered_pending(&self) -> Result<usize, RepoError> {
        let created = self.repo.adopt_uncovered_pending().await?;
        self.submitted(&created).await;
        Ok(created.len())
    }

    pub fn wake_reconciler(&self) {
        self.reconcile_wake.notify_one();
    }

    /// The queue's view for admins.
    pub async fn queue_status(&self) -> Result<QueueStatus, QueueError> {
        let snapshot = self.queue.snapshot().await?;
        let outbox = self.repo.outbox_len().await.unwrap_or(0);
        let finished_last_minute = {
            let now = Instant::now();
            lock(&self.finished).iter().filter(|t| now.duration_since(**t) <= THROUGHPUT_WINDOW).count() as u64
        };
        self.metrics.queue_pending.set(snapshot.pending as i64);
        self.metrics.queue_running.set(snapshot.running as i64);
        self.metrics.queue_failed.set(snapshot.failed as i64);
        self.metrics.outbox.set(outbox as i64);
        let undelivered = self.backlog.load(Ordering::Relaxed);
        Ok(QueueStatus { snapshot, undelivered, finished_last_minute })
    }

    pub async fn retry_failed(&self, job: JobId) -> Result<bool, QueueError> {
        self.queue.retry_failed(job).await
    }

    /// For readiness: can jobs reach workers?
    pub async fn queue_health(&self) -> QueueHealth {
        let ping = tokio::time::timeout(Duration::from_secs(2), self.queue.ping()).await;
        let failure = match ping {
            Ok(Ok(())) => return QueueHealth::Ok,
            Ok(Err(e)) => e.to_string(),
            Err(_) => "the queue did not answer within 2 s".to_owned(),
        };
        if self.queue.mode() == QueueMode::Redis {
            QueueHealth::Degraded(failure)
        } else {
            QueueHealth::Down(failure)
        }
    }
}

/// The embedded worker reports straight into the repository.
pub struct DirectSink(pub Arc<Thumbnails>);

#[async_trait]
impl OutcomeSink for DirectSink {
    async fn report(&self, report: JobReport) -> anyhow::Result<()> {
        Ok(self.0.apply_reports(vec![report]).await?)
    }

    async fn is_wanted(&self, job: &ThumbnailJob) -> anyhow::Result<bool> {
        // A deleted image's job stays in the outbox until the sweep retires it (a minute), so
        // the image itself is asked too: its missing original is then no reason to retry.
        if !self.0.repo.in_outbox(job.id).await? {
            return Ok(false);
        }
        match self.0.repo.image(job.image_id).await {
            Ok(_) => Ok(true),
            Err(RepoError::NotFound) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }
}

#[cfg(test)]
mod tests;
