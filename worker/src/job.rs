//! One thumbnail job, independent of the queue that delivered it.
//!
//! Errors are split by what a retry could change: a bad image or a crashed renderer is final
//! and is reported as `failed` thumbnails (the job then succeeds, so the queue does not retry
//! it); a blob-store or reporting failure is transient and returned as [`JobError`], so the
//! queue retries the job. Outcomes are idempotent, so a retried job that had partly reported
//! does no harm.

use std::sync::Arc;

use async_trait::async_trait;
use imageapi_shared::jobs::{ThumbnailJob, ThumbnailOutcome, ThumbnailResult};
use imageapi_shared::pipeline::Limits;
use imageapi_shared::store::{BlobKey, BlobStore, StoreError};

use crate::pool::{RenderError, ThumbnailPool};

/// Where outcomes go: in embedded mode straight into the server's metadata store.
#[async_trait]
pub trait OutcomeSink: Send + Sync + 'static {
    async fn report(&self, outcome: ThumbnailOutcome) -> anyhow::Result<()>;

    /// The queue is done with this job: it succeeded, or it failed its last retry (its
    /// thumbnails then stay pending for the server's sweep to enqueue again).
    fn job_settled(&self, _job: &ThumbnailJob) {}
}

/// What a job needs; shared by all jobs of a worker.
pub struct JobContext {
    pub pool: ThumbnailPool,
    pub store: Arc<dyn BlobStore>,
    pub sink: Arc<dyn OutcomeSink>,
    pub limits: Limits,
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

#[tracing::instrument(skip_all, fields(image = %job.image_id, heights = ?job.heights))]
pub async fn run_job(job: ThumbnailJob, ctx: &JobContext) -> Result<(), JobError> {
    let original = match ctx.store.get(&BlobKey::original(job.image_id)).await {
        Ok(bytes) => bytes,
        // The image was deleted after the job was queued: nothing to make.
        Err(StoreError::NotFound(_)) => return report_all_failed(&job, "the original is missing", ctx).await,
        Err(e) => return Err(e.into()),
    };
    let started = std::time::Instant::now();
    match ctx.pool.render(original, job.heights.clone(), ctx.limits).await {
        Ok(thumbnails) => {
            tracing::debug!(elapsed_ms = started.elapsed().as_millis() as u64, "rendered");
            for thumb in thumbnails {
                let key = BlobKey::thumbnail(job.image_id, thumb.requested_height, job.format);
                let size_bytes = thumb.bytes.len() as u64;
                ctx.store.put(&key, thumb.bytes.into()).await?;
                let outcome = ThumbnailOutcome {
                    image_id: job.image_id,
                    format: job.format,
                    requested_height: thumb.requested_height,
                    result: ThumbnailResult::Ready { width: thumb.width, height: thumb.height, size_bytes },
                };
                ctx.sink.report(outcome).await.map_err(JobError::Report)?;
            }
            Ok(())
        }
        Err(e @ RenderError::Unavailable(_)) => Err(JobError::PoolUnavailable(e)),
        Err(e) => {
            tracing::warn!(error = %e, "thumbnails failed");
            report_all_failed(&job, &e.to_string(), ctx).await
        }
    }
}

async fn report_all_failed(job: &ThumbnailJob, reason: &str, ctx: &JobContext) -> Result<(), JobError> {
    for &requested_height in &job.heights {
        let outcome = ThumbnailOutcome {
            image_id: job.image_id,
            format: job.format,
            requested_height,
            result: ThumbnailResult::Failed { reason: reason.to_owned() },
        };
        ctx.sink.report(outcome).await.map_err(JobError::Report)?;
    }
    Ok(())
}
