//! Thumbnail bookkeeping on the server side: jobs from the outbox to the queue, reports back
//! into the metadata, waiting for a pending thumbnail, and reconciling images with tier changes.
//!
//! The invariant that makes this crash-safe: every thumbnail that should exist and is not
//! ready is `pending` in the metadata, and every pending thumbnail is covered by a job in its
//! outbox, both written durably (in one transaction) before anything is acknowledged. A job leaves the outbox
//! only in the transaction that applies its report. The queue (in-process or Redis) is only a
//! delivery mechanism: whatever it loses, the dispatcher delivers again.
//!
//! - [`dispatch`]: the dispatcher (outbox → lanes → queue), the Redis results reader, the vacuum.
//! - [`lanes`]: fair turns: jobs wait in one lane per owner and enter the queue round-robin,
//!   a small window at a time, so one user's backlog cannot hold up everyone else's.
//! - [`reconcile`]: tier changes reaching existing images.
//! - [`start`]: the one place that chooses the queue (Redis or embedded) and starts it all.

mod dispatch;
mod lanes;
mod reconcile;
mod start;

use std::collections::VecDeque;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use imageapi_core::api::{FailedJobView, QueueJobView, QueueView, QueueWorkerView};
use imageapi_core::domain::{ImageId, JobId};
use imageapi_core::image::ThumbnailFormat;
use imageapi_core::jobs::{JobReport, ThumbnailJob, ThumbnailResult};
use imageapi_core::queue::{QueueMode, QueueSnapshot};
use imageapi_queue::{JobQueue, OutcomeSink, QueueError};
use imageapi_shared::store::{BlobKey, BlobStore};
use tokio::sync::{watch, Notify};

use lanes::Lanes;

use crate::metrics::ServerMetrics;
use crate::repo::{RepoError, SharedRepo, ThumbState};

pub use dispatch::spawn_redis_tasks;
pub use start::{start, Running};

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
    /// Jobs waiting for their owner's turn (or for the queue to come back).
    lanes: Mutex<Lanes>,
    /// Most jobs in the queue at once (waiting or running); the rest wait in the lanes.
    window: usize,
    /// One feed at a time, so the window is not overshot by this server.
    feeding: tokio::sync::Mutex<()>,
    /// False while the queue cannot be reached (uploads are still accepted: the outbox keeps them).
    queue_reachable: AtomicBool,
    /// Set when any call to the queue failed: it may have restarted and forgotten jobs, so
    /// the dispatcher delivers every outbox job again once it answers.
    queue_interrupted: AtomicBool,
    /// When recent jobs finished, for the throughput figure.
    finished: Mutex<VecDeque<Instant>>,
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
    /// `window`: most jobs handed to the queue at once (see [`lanes`]).
    pub fn new(
        repo: SharedRepo,
        store: Arc<dyn BlobStore>,
        queue: Arc<dyn JobQueue>,
        metrics: ServerMetrics,
        window: usize,
    ) -> Self {
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
            lanes: Mutex::new(Lanes::default()),
            window: window.max(1),
            feeding: tokio::sync::Mutex::new(()),
            queue_reachable: AtomicBool::new(true),
            queue_interrupted: AtomicBool::new(false),
            finished: Mutex::new(VecDeque::new()),
        }
    }

    /// Jobs were recorded (durably) in the outbox: they join their owners' lanes, and the
    /// dispatcher hands them to the queue in turn. If this process stops first, its next
    /// start finds them in the outbox.
    pub async fn submitted(&self, jobs: &[ThumbnailJob]) {
        if jobs.is_empty() {
            return;
        }
        self.metrics.jobs_enqueued.inc_by(jobs.len() as u64);
        let mut lanes = lock(&self.lanes);
        for job in jobs {
            lanes.add(job.clone());
        }
        drop(lanes);
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
        {
            let mut lanes = lock(&self.lanes);
            for (report, _) in &applied {
                lanes.finished(report.job_id);
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
                let key = BlobKey::thumbnail(orphan.image_id, orphan.requested_height, orphan.format, orphan.variant);
                if let Err(e) = self.store.delete(&key).await {
                    tracing::warn!(error = %e, "could not remove the thumbnail of a deleted image");
                }
            }
        }
        self.applied.send_modify(|n| *n = n.wrapping_add(1));
        Ok(())
    }

    /// The first of `candidates` (best first) whose variant of the thumbnail is ready, waiting
    /// up to `wait` while none is and one may still become so. Otherwise the best candidate
    /// still pending, or, when every one failed, the best one's failure. `candidates` must not
    /// be empty.
    pub async fn wait_for(
        &self,
        image: ImageId,
        height: u32,
        candidates: &[ThumbnailFormat],
        wait: Duration,
    ) -> Result<(ThumbnailFormat, ThumbState), RepoError> {
        let deadline = tokio::time::Instant::now() + wait;
        let mut changes = self.applied.subscribe();
        loop {
            changes.mark_unchanged();
            let states: Vec<ThumbState> = match candidates {
                // One point read on the common path (no Accept, or an explicit extension).
                [only] => vec![self.repo.thumbnail(image, height, *only).await?.unwrap_or(ThumbState::Pending)],
                _ => {
                    let recorded = self.repo.thumbnails_of_heights(image, &[height]).await?;
                    candidates
                        .iter()
                        .map(|f| recorded.get(&(height, *f)).cloned().unwrap_or(ThumbState::Pending))
                        .collect()
                }
            };
            let pick = |wanted: fn(&ThumbState) -> bool| {
                candidates.iter().zip(&states).find(|(_, s)| wanted(s)).map(|(f, s)| (*f, s.clone()))
            };
            if let Some(ready) = pick(|s| matches!(s, ThumbState::Ready { .. })) {
                return Ok(ready);
            }
            let pending = pick(|s| *s == ThumbState::Pending);
            let Some(pending) = pending else {
                let best = candidates.first().copied().unwrap_or_default();
                return Ok((best, states.into_iter().next().unwrap_or(ThumbState::Pending)));
            };
            match tokio::time::timeout_at(deadline, changes.changed()).await {
                Ok(Ok(())) => continue,
                _ => return Ok(pending),
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

    /// The queue as admins see it: the queue's own picture plus this server's part (jobs
    /// waiting for their owner's turn, recent throughput). Refreshes the queue gauges too.
    pub async fn queue_view(&self, now: DateTime<Utc>) -> Result<QueueView, QueueError> {
        let snapshot = self.queue.snapshot().await?;
        let undelivered = lock(&self.lanes).len() as u64;
        // Waiting for their turn is waiting to run, as admins see it.
        let pending = snapshot.pending + undelivered;
        let outbox = self.repo.outbox_len().await.unwrap_or(0);
        let finished_last_minute = {
            let now = Instant::now();
            lock(&self.finished).iter().filter(|t| now.duration_since(**t) <= THROUGHPUT_WINDOW).count() as u64
        };
        self.metrics.queue_pending.set(pending as i64);
        self.metrics.queue_running.set(snapshot.running as i64);
        self.metrics.queue_failed.set(snapshot.failed as i64);
        self.metrics.outbox.set(outbox as i64);
        Ok(queue_view(snapshot, pending, undelivered, finished_last_minute, now))
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

fn queue_view(
    snapshot: QueueSnapshot,
    pending: u64,
    undelivered: u64,
    throughput: u64,
    now: DateTime<Utc>,
) -> QueueView {
    QueueView {
        mode: match snapshot.mode {
            QueueMode::Embedded => "embedded",
            QueueMode::Redis => "redis",
        }
        .to_owned(),
        pending,
        running: snapshot.running,
        done: snapshot.done,
        failed: snapshot.failed,
        undelivered,
        throughput_per_minute: throughput,
        workers: snapshot
            .workers
            .into_iter()
            .map(|w| QueueWorkerView {
                heartbeat_age_secs: (now - w.last_heartbeat).num_seconds().max(0),
                name: w.name,
                last_heartbeat: w.last_heartbeat,
                jobs: w
                    .jobs
                    .into_iter()
                    .map(|j| QueueJobView { job: j.job.to_string(), image_id: j.image.map(|i| i.to_string()) })
                    .collect(),
                status: if w.problem.is_some() { "misconfigured" } else { "ok" }.to_owned(),
                problem: w.problem,
            })
            .collect(),
        failed_jobs: snapshot
            .failed_jobs
            .into_iter()
            .map(|f| FailedJobView {
                job: f.job.to_string(),
                image_id: f.image.map(|i| i.to_string()),
                heights: f.heights,
                reason: f.reason,
                attempts: f.attempts,
                failed_at: f.failed_at,
            })
            .collect(),
    }
}
