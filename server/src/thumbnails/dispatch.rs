//! Moving jobs and results between the server and the queue.
//!
//! - The dispatcher hands outbox jobs to the queue: at start, on every new job, and (when the
//!   queue may lose jobs, i.e. Redis) all of them again after any failed call to the queue (it
//!   may have restarted empty) and every [`REDELIVER_EVERY`], which is harmless since the
//!   queue ignores a job id it holds. While the queue is unreachable it backs off; uploads
//!   go on and their jobs wait in the outbox.
//! - With Redis, the results reader applies reports from the results stream and acknowledges
//!   them after the flush, and the vacuum drops Redis' records of jobs whose report was applied.

use std::collections::BTreeSet;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use imageapi_shared::domain::JobId;
use imageapi_worker::redis::results::ResultsReader;

use super::{lock, Thumbnails};

/// Outbox jobs handed to the queue per call.
const BATCH: usize = 256;
const REDELIVER_EVERY: Duration = Duration::from_secs(30);
/// Even with no new job, look at the outbox this often (cheap: it holds unfinished jobs only).
const IDLE_CHECK: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(5);
const VACUUM_EVERY: Duration = Duration::from_secs(60);

enum DeliverError {
    Repo(crate::repo::RepoError),
    Queue(imageapi_worker::QueueError),
}

impl Thumbnails {
    /// Runs the dispatcher forever.
    pub async fn run_dispatcher(self: Arc<Self>) {
        let mut backoff = Duration::from_millis(250);
        let mut last_redelivery = Instant::now();
        loop {
            let interrupted = self.queue_interrupted.swap(false, Ordering::Relaxed);
            if self.queue.may_lose_jobs() && (interrupted || last_redelivery.elapsed() >= REDELIVER_EVERY) {
                lock(&self.delivered).clear();
                last_redelivery = Instant::now();
            }
            match self.deliver_outbox().await {
                Ok(delivered) => {
                    if !self.queue_reachable.swap(true, Ordering::Relaxed) {
                        tracing::info!("the job queue is reachable again; delivering the jobs kept meanwhile");
                    }
                    if delivered > 0 {
                        tracing::debug!(jobs = delivered, "delivered jobs to the queue");
                    }
                    backoff = Duration::from_millis(250);
                    let _ = tokio::time::timeout(IDLE_CHECK, self.dispatch_wake.notified()).await;
                }
                Err(DeliverError::Queue(e)) => {
                    self.queue_interrupted.store(true, Ordering::Relaxed);
                    if self.queue_reachable.swap(false, Ordering::Relaxed) {
                        tracing::warn!(error = %e, "the job queue is unreachable; uploads are accepted and their jobs kept until it is back");
                    }
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
                Err(DeliverError::Repo(e)) => {
                    tracing::error!(error = %e, "reading the job outbox failed");
                    tokio::time::sleep(MAX_BACKOFF).await;
                }
            }
        }
    }

    /// One pass over the outbox; returns how many jobs were handed over.
    async fn deliver_outbox(&self) -> Result<usize, DeliverError> {
        let mut after: Option<JobId> = None;
        let mut seen: Vec<JobId> = Vec::new();
        let mut total = 0;
        loop {
            let page = self.blocking(move |repo| repo.outbox_jobs(after, BATCH)).await.map_err(DeliverError::Repo)?;
            let Some(last) = page.last() else { break };
            after = Some(last.id);
            seen.extend(page.iter().map(|job| job.id));
            let fresh: Vec<_> = {
                let delivered = lock(&self.delivered);
                page.into_iter().filter(|job| !delivered.contains(&job.id)).collect()
            };
            if fresh.is_empty() {
                continue;
            }
            self.queue.push(&fresh).await.map_err(DeliverError::Queue)?;
            lock(&self.delivered).extend(fresh.iter().map(|job| job.id));
            total += fresh.len();
        }
        // Forget ids whose report was applied while this pass ran (they left the outbox).
        let seen: std::collections::HashSet<JobId> = seen.into_iter().collect();
        lock(&self.delivered).retain(|id| seen.contains(id));
        Ok(total)
    }

    /// Applies reports from the Redis results stream forever; acknowledges after the flush.
    async fn run_results_reader(self: Arc<Self>, mut reader: ResultsReader) {
        let mut failing = false;
        loop {
            let deliveries = match reader.read(64, 1000).await {
                Ok(deliveries) => {
                    if failing {
                        tracing::info!("reading job results again");
                        failing = false;
                    }
                    deliveries
                }
                Err(e) => {
                    self.queue_interrupted.store(true, Ordering::Relaxed);
                    if !failing {
                        tracing::warn!(error = %e, "cannot read job results; retrying");
                        failing = true;
                    }
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            };
            let mut reports = Vec::with_capacity(deliveries.len());
            let mut entries = Vec::with_capacity(deliveries.len());
            for delivery in deliveries {
                match delivery.report {
                    Ok(report) => reports.push(report),
                    Err(why) => tracing::error!(entry = %delivery.entry, %why, "dropping an unreadable job result"),
                }
                entries.push(delivery.entry);
            }
            if let Err(e) = self.apply_reports(reports).await {
                // Not acknowledged: read again from the pending entries.
                tracing::error!(error = %e, "applying job results failed; will retry");
                reader.reread_pending();
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
            if let Err(e) = reader.ack(&entries).await {
                // Applied but not acknowledged: they come again, and applying twice is harmless.
                tracing::warn!(error = %e, "acknowledging job results failed");
                reader.reread_pending();
            }
        }
    }

    async fn run_vacuum(self: Arc<Self>) {
        let mut every = tokio::time::interval(VACUUM_EVERY);
        loop {
            every.tick().await;
            let unfinished: BTreeSet<JobId> = match self.blocking(|repo| repo.outbox_ids()).await {
                Ok(ids) => ids,
                Err(e) => {
                    tracing::warn!(error = %e, "reading the outbox for the queue vacuum failed");
                    continue;
                }
            };
            match self.queue.vacuum(&unfinished).await {
                Ok(0) => {}
                Ok(n) => tracing::debug!(jobs = n, "vacuumed finished jobs from the queue"),
                Err(e) => tracing::debug!(error = %e, "queue vacuum failed"),
            }
        }
    }
}

/// The Redis mode's server-side tasks: the results reader and the vacuum.
pub fn spawn_redis_tasks(thumbnails: Arc<Thumbnails>, reader: ResultsReader) {
    actix_web::rt::spawn(thumbnails.clone().run_results_reader(reader));
    actix_web::rt::spawn(thumbnails.run_vacuum());
}
