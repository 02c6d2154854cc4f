//! Moving jobs and results between the server and the queue.
//!
//! - A new job joins its owner's lane ([`Thumbnails::submitted`]); the dispatcher feeds the
//!   queue from the lanes, one owner at a time, keeping at most a window of unfinished jobs
//!   in the queue (see [`super::lanes`]). It reads the whole outbox into the lanes at start,
//!   after any failed call to the queue (it may have restarted empty), and every
//!   [`REDELIVER_EVERY`] (jobs recorded by other servers, or lost with a request): harmless,
//!   since the queue ignores a job id it holds. While the queue is unreachable it backs off;
//!   uploads go on and their jobs wait in the outbox.
//! - With Redis, the results reader applies reports from the results stream and acknowledges
//!   them once applied durably (several servers share the stream).
//! - The vacuum drops the queue's records of jobs whose report was applied, and retires jobs of
//!   images deleted meanwhile.

use std::collections::{BTreeSet, HashSet};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use imageapi_core::domain::JobId;
use imageapi_queue::redis::results::ResultsReader;
use imageapi_queue::QueueError;

use super::Thumbnails;
use crate::repo::RepoError;

/// Outbox jobs handed to the queue per call.
const BATCH: usize = 256;
const REDELIVER_EVERY: Duration = Duration::from_secs(30);
/// How often the dispatcher looks whether a pass is due (an atomic load).
const IDLE_CHECK: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(5);
const VACUUM_EVERY: Duration = Duration::from_secs(10);
/// Jobs of deleted images are looked for this often (a failed job of a deleted image would
/// otherwise wait for an admin forever).
const ORPHAN_SWEEP_EVERY: Duration = Duration::from_secs(60);
/// Results left unapplied by a server that went away are looked for this often.
const CLAIM_EVERY: Duration = Duration::from_secs(10);

enum DeliverError {
    Repo(crate::repo::RepoError),
    Queue(imageapi_queue::QueueError),
}

impl Thumbnails {
    /// Runs the dispatcher forever: it fills the lanes from the outbox (at start, after any
    /// failed call to the queue, and every [`REDELIVER_EVERY`]) and feeds the queue from the
    /// lanes whenever there may be room — a job submitted, a report applied (here or, with
    /// PostgreSQL, on another server), and every [`IDLE_CHECK`].
    pub async fn run_dispatcher(self: Arc<Self>) {
        let mut backoff = Duration::from_millis(250);
        let mut last_pass: Option<Instant> = None;
        let mut applied = self.applied.subscribe();
        loop {
            let interrupted = self.queue_interrupted.swap(false, Ordering::Relaxed);
            if interrupted {
                super::lock(&self.lanes).forget_fed();
            }
            let pass_due = interrupted || last_pass.is_none_or(|at| at.elapsed() >= REDELIVER_EVERY);
            let round = async {
                if pass_due {
                    let outbox = self.fill_lanes().await.map_err(DeliverError::Repo)?;
                    tracing::debug!(jobs = outbox, "read the outbox into the lanes");
                }
                self.feed().await.map_err(DeliverError::Queue)
            };
            match round.await {
                Ok(_) => {
                    if pass_due {
                        last_pass = Some(Instant::now());
                    }
                    if !self.queue_reachable.swap(true, Ordering::Relaxed) {
                        tracing::info!("the job queue is reachable again; delivering the jobs kept meanwhile");
                    }
                    backoff = Duration::from_millis(250);
                    applied.mark_unchanged();
                    tokio::select! {
                        () = self.dispatch_wake.notified() => {}
                        _ = applied.changed() => {}
                        () = tokio::time::sleep(IDLE_CHECK) => {}
                    }
                }
                Err(DeliverError::Queue(e)) => {
                    // What was taken from the lanes is in the outbox: the next pass puts it back.
                    self.queue_interrupted.store(true, Ordering::Relaxed);
                    if self.queue_reachable.swap(false, Ordering::Relaxed) {
                        tracing::warn!(error = %e, "the job queue is unreachable; uploads are accepted and their jobs kept until it is back");
                    }
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
                Err(DeliverError::Repo(e)) => {
                    tracing::error!(error = %e, "reading the job outbox failed");
                    self.queue_interrupted.store(true, Ordering::Relaxed);
                    tokio::time::sleep(MAX_BACKOFF).await;
                }
            }
        }
    }

    /// One pass over the whole outbox into the lanes: every unfinished job not handed to the
    /// queue waits for its turn (after the queue may have lost jobs, all of them: the queue
    /// skips those it holds when their turn comes), and jobs that left the outbox meanwhile
    /// leave the lanes. Returns the outbox's size.
    async fn fill_lanes(&self) -> Result<usize, RepoError> {
        let since = super::lock(&self.lanes).start_pass();
        let mut seen = HashSet::new();
        let mut after: Option<JobId> = None;
        loop {
            let page = self.repo.outbox_jobs(after, BATCH).await?;
            let Some(last) = page.last() else { break };
            after = Some(last.id);
            let mut lanes = super::lock(&self.lanes);
            for job in page {
                seen.insert(job.id);
                lanes.add(job);
            }
        }
        super::lock(&self.lanes).keep_only(&seen, since);
        Ok(seen.len())
    }

    /// Hands the queue jobs from the lanes, one owner at a time, until it holds `window`
    /// unfinished jobs or the lanes are empty. Returns how many were new to the queue.
    pub(super) async fn feed(&self) -> Result<usize, QueueError> {
        let _one_feeder = self.feeding.lock().await;
        let mut fed = 0;
        loop {
            let in_flight = usize::try_from(self.queue.in_flight().await?).unwrap_or(usize::MAX);
            let room = self.window.saturating_sub(in_flight);
            if room == 0 {
                return Ok(fed);
            }
            let batch = super::lock(&self.lanes).take(room);
            if batch.is_empty() {
                return Ok(fed);
            }
            // (On a failure the batch is in the outbox still: the pass after it lines it up again.)
            fed += self.queue.push(&batch).await?;
            super::lock(&self.lanes).fed(&batch);
        }
    }

    /// Applies reports from the Redis results stream forever; acknowledges once applied durably.
    async fn run_results_reader(self: Arc<Self>, mut reader: ResultsReader) {
        let mut failing = false;
        let mut last_claim = Instant::now();
        loop {
            if last_claim.elapsed() >= CLAIM_EVERY {
                last_claim = Instant::now();
                match reader.claim_abandoned().await {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(results = n, "took over job results another server had left unapplied"),
                    Err(e) => tracing::debug!(error = %e, "claiming abandoned job results failed"),
                }
            }
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
            if reader.take_group_recreated() {
                // Redis lost the stream, so it may have lost jobs too.
                self.queue_interrupted.store(true, Ordering::Relaxed);
            }
            let mut applied = Vec::with_capacity(deliveries.len());
            let mut stalled = false;
            for delivery in deliveries {
                let report = match delivery.report {
                    Ok(report) => report,
                    Err(why) => {
                        tracing::error!(entry = %delivery.entry, %why, "dropping an unreadable job result");
                        applied.push(delivery.entry);
                        continue;
                    }
                };
                match self.apply_reports(vec![report]).await {
                    Ok(()) => applied.push(delivery.entry),
                    // A report that can never apply must not hold up the ones behind it.
                    Err(e @ (RepoError::Conflict(_) | RepoError::Corrupt(_) | RepoError::NotFound)) => {
                        tracing::error!(entry = %delivery.entry, error = %e, "dropping a job result that cannot be applied");
                        applied.push(delivery.entry);
                    }
                    Err(e) => {
                        // Storage trouble: stop here, read the unacknowledged ones again.
                        tracing::error!(error = %e, "applying job results failed; will retry");
                        stalled = true;
                        break;
                    }
                }
            }
            if let Err(e) = reader.ack(&applied).await {
                // Applied but not acknowledged: they come again, and applying twice is harmless.
                tracing::warn!(error = %e, "acknowledging job results failed");
                stalled = true;
            }
            if stalled {
                reader.reread_pending();
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }

    /// Drops the queue's records of jobs the outbox no longer holds, and retires jobs of
    /// deleted images (their thumbnails are gone, so nothing is waiting for them).
    pub async fn run_vacuum(self: Arc<Self>) {
        let mut every = tokio::time::interval(VACUUM_EVERY);
        let mut last_orphan_sweep = Instant::now();
        loop {
            every.tick().await;
            if last_orphan_sweep.elapsed() >= ORPHAN_SWEEP_EVERY {
                last_orphan_sweep = Instant::now();
                match self.repo.retire_jobs_of_deleted_images().await {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(jobs = n, "retired jobs of deleted images"),
                    Err(e) => tracing::warn!(error = %e, "looking for jobs of deleted images failed"),
                }
            }
            let unfinished: BTreeSet<JobId> = match self.repo.outbox_ids().await {
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

/// The Redis mode's server-side task: the results reader.
pub fn spawn_redis_tasks(thumbnails: Arc<Thumbnails>, reader: ResultsReader) {
    actix_web::rt::spawn(thumbnails.run_results_reader(reader));
}
