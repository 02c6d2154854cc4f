//! One thumbnail job, independent of the queue that delivered it.
//!
//! Errors are split by what a retry could change: a bad image or a crashed renderer is final
//! and is reported as `failed` thumbnails (the job then succeeds, so the queue does not retry
//! it); a blob-store or reporting failure is transient and returned as [`JobError`], so the
//! queue retries the job. Reports are idempotent, so a job run twice (a retry, or an orphaned
//! job recovered from a dead worker) does no harm.

use std::sync::Arc;
use std::time::Instant;

use imageapi_shared::jobs::{JobReport, ThumbnailJob, ThumbnailOutcome, ThumbnailResult};
use imageapi_shared::pipeline::Limits;
use imageapi_shared::queue::OutcomeSink;
use imageapi_shared::store::{BlobKey, BlobStore, StoreError};

use crate::metrics::WorkerMetrics;
use crate::pool::{RenderError, ThumbnailPool};

/// What a job needs; shared by all jobs of a worker.
pub struct JobContext {
    pub pool: ThumbnailPool,
    pub store: Arc<dyn BlobStore>,
    pub sink: Arc<dyn OutcomeSink>,
    pub limits: Limits,
    /// Names the worker in reports and logs.
    pub worker_name: String,
    pub metrics: WorkerMetrics,
}

#[derive(Debug, thiserror::Error)]
pub enum JobError {
    #[error("blob store: {0}")]
    Store(#[from] StoreError),
    #[error("reporting the outcome failed: {0:#}")]
    Report(anyhow::Error),
    #[error(transparent)]
    PoolUnavailable(RenderError),
}

#[tracing::instrument(skip_all, fields(job = %job.id, image = %job.image_id, heights = ?job.heights))]
pub async fn run_job(job: ThumbnailJob, ctx: &JobContext) -> Result<(), JobError> {
    let started = Instant::now();
    let outcomes = match make_thumbnails(&job, ctx).await {
        Err(JobError::Store(StoreError::NotFound(key))) => {
            if !ctx.sink.is_wanted(&job).await.map_err(JobError::Report)? {
                tracing::debug!("the image was deleted after its job was queued; nothing to make");
                return Ok(());
            }
            return Err(JobError::Store(StoreError::NotFound(key)));
        }
        other => other?,
    };
    let duration = started.elapsed();
    ctx.metrics.job_duration.observe(duration.as_secs_f64());
    let failed = outcomes.iter().any(|o| matches!(o.result, ThumbnailResult::Failed { .. }));
    let report = JobReport {
        job_id: job.id,
        image_id: job.image_id,
        outcomes,
        worker: ctx.worker_name.clone(),
        duration_ms: duration.as_millis() as u64,
    };
    ctx.sink.report(report).await.map_err(JobError::Report)?;
    ctx.metrics.jobs.with_label_values(&[if failed { "failed" } else { "ready" }]).inc();
    Ok(())
}

/// Renders and stores every height; a bad image becomes `failed` outcomes, not an error.
async fn make_thumbnails(job: &ThumbnailJob, ctx: &JobContext) -> Result<Vec<ThumbnailOutcome>, JobError> {
    // A missing original is the store's fault, not the image's: this worker may not see the
    // server's store. The job is retried (then kept in the dead set for an admin), and the
    // thumbnails stay pending — unless the image was deleted meanwhile (see `run_job`).
    let original = ctx.store.get(&BlobKey::original(job.image_id)).await?;
    match ctx.pool.render(original, job.heights.clone(), ctx.limits).await {
        Ok(thumbnails) => {
            let mut outcomes = Vec::with_capacity(thumbnails.len());
            for thumb in thumbnails {
                let key = BlobKey::thumbnail(job.image_id, thumb.requested_height, job.format);
                let size_bytes = thumb.bytes.len() as u64;
                ctx.store.put(&key, thumb.bytes.into()).await?;
                outcomes.push(ThumbnailOutcome {
                    image_id: job.image_id,
                    format: job.format,
                    requested_height: thumb.requested_height,
                    result: ThumbnailResult::Ready { width: thumb.width, height: thumb.height, size_bytes },
                });
            }
            Ok(outcomes)
        }
        Err(e @ RenderError::Unavailable(_)) => Err(JobError::PoolUnavailable(e)),
        Err(e) => {
            tracing::warn!(error = %e, "thumbnails failed");
            Ok(all_failed(job, &e.to_string()))
        }
    }
}

fn all_failed(job: &ThumbnailJob, reason: &str) -> Vec<ThumbnailOutcome> {
    job.heights
        .iter()
        .map(|&requested_height| ThumbnailOutcome {
            image_id: job.image_id,
            format: job.format,
            requested_height,
            result: ThumbnailResult::Failed { reason: reason.to_owned() },
        })
        .collect()
}
