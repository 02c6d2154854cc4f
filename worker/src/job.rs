//! One thumbnail job, independent of the queue that delivered it.
//!
//! Errors are split by what a retry could change: a bad image or a crashed renderer is final
//! and is reported as `failed` thumbnails (the job then succeeds, so the queue does not retry
//! it); a blob-store or reporting failure is transient and returned as [`JobError`], so the
//! queue retries the job. Reports are idempotent, so a job run twice (a retry, or an orphaned
//! job recovered from a dead worker) does no harm.
//!
//! A full disk is neither: a thumbnail that cannot be written for lack of space is written
//! again, with a growing pause, until there is room — holding the rendered bytes, so nothing
//! is rendered twice and no attempt of the queue is spent. It never ends `failed` for that
//! reason. At shutdown the wait ends and the job goes back to the queue.

use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use bytes::Bytes;
use tokio_util::sync::CancellationToken;

use imageapi_core::image::Limits;
use imageapi_core::jobs::{JobReport, ThumbnailJob, ThumbnailOutcome, ThumbnailResult};
use imageapi_queue::{JobHandler, OutcomeSink};
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
    /// Cancelled at shutdown: a job waiting for disk space stops waiting.
    pub shutdown: CancellationToken,
}

/// Pauses between writes of a thumbnail that met a full disk: 1, 2, 4, 8, 15, 15 … s.
const SPACE_RETRY_FIRST: Duration = Duration::from_secs(1);
const SPACE_RETRY_MAX: Duration = Duration::from_secs(15);

#[derive(Debug, thiserror::Error)]
pub enum JobError {
    #[error("blob store: {0}")]
    Store(#[from] StoreError),
    #[error("reporting the outcome failed: {0:#}")]
    Report(anyhow::Error),
    #[error(transparent)]
    PoolUnavailable(RenderError),
    /// The image was deleted while the job waited; there is nothing to make.
    #[error("the image was deleted")]
    NoLongerWanted,
}

#[tracing::instrument(skip_all, fields(job = %job.id, image = %job.image_id, heights = ?job.heights))]
pub async fn run_job(job: ThumbnailJob, ctx: &JobContext) -> Result<(), JobError> {
    let started = Instant::now();
    let (outcomes, thumbhash) = match make_thumbnails(&job, ctx).await {
        Err(JobError::NoLongerWanted) => return Ok(()),
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
        thumbhash,
        worker: ctx.worker_name.clone(),
        duration_ms: duration.as_millis() as u64,
    };
    ctx.sink.report(report).await.map_err(JobError::Report)?;
    ctx.metrics.jobs.with_label_values(&[if failed { "failed" } else { "ready" }]).inc();
    Ok(())
}

/// Renders and stores every height in every format; a bad image becomes `failed` outcomes,
/// not an error, and so does a variant whose encoder failed (the others still land). Also
/// returns the image's ThumbHash (base64) when the render made one.
async fn make_thumbnails(
    job: &ThumbnailJob,
    ctx: &JobContext,
) -> Result<(Vec<ThumbnailOutcome>, Option<String>), JobError> {
    // A missing original is the store's fault, not the image's: this worker may not see the
    // server's store. The job is retried (then kept in the dead set for an admin), and the
    // thumbnails stay pending — unless the image was deleted meanwhile (see `run_job`).
    let original = ctx.store.get(&BlobKey::original(job.image_id)).await?;
    match ctx.pool.render(original, job.heights.clone(), job.formats.clone(), ctx.limits).await {
        Ok(rendered) => {
            let mut outcomes = Vec::with_capacity(rendered.thumbnails.len() * job.formats.len());
            for thumb in rendered.thumbnails {
                for variant in thumb.variants {
                    let result = match variant.result {
                        Ok(bytes) => {
                            let key =
                                BlobKey::thumbnail(job.image_id, thumb.requested_height, job.format, variant.format);
                            let size_bytes = bytes.len() as u64;
                            put_when_there_is_room(job, ctx, &key, bytes.into()).await?;
                            ThumbnailResult::Ready { width: thumb.width, height: thumb.height, size_bytes }
                        }
                        Err(reason) => {
                            tracing::warn!(height = thumb.requested_height, format = ?variant.format, %reason, "a thumbnail variant failed");
                            ThumbnailResult::Failed { reason }
                        }
                    };
                    outcomes.push(ThumbnailOutcome {
                        image_id: job.image_id,
                        format: job.format,
                        requested_height: thumb.requested_height,
                        variant: variant.format,
                        result,
                    });
                }
            }
            let thumbhash = rendered.thumbhash.map(|hash| BASE64.encode(hash));
            Ok((outcomes, thumbhash))
        }
        Err(e @ RenderError::Unavailable(_)) => Err(JobError::PoolUnavailable(e)),
        Err(e) => {
            tracing::warn!(error = %e, "thumbnails failed");
            Ok((all_failed(job, &e.to_string()), None))
        }
    }
}

/// Writes a thumbnail; on a full disk, writes it again after a growing pause until it fits,
/// the image is deleted, or the worker shuts down.
async fn put_when_there_is_room(
    job: &ThumbnailJob,
    ctx: &JobContext,
    key: &BlobKey,
    bytes: Bytes,
) -> Result<(), JobError> {
    let mut pause = SPACE_RETRY_FIRST;
    let mut waiting: Option<Counted> = None;
    loop {
        match ctx.store.put(key, bytes.clone()).await {
            Err(StoreError::OutOfSpace { .. }) => {}
            written => {
                if waiting.is_some() {
                    tracing::info!("there is room again; the thumbnail is written");
                }
                return Ok(written?);
            }
        }
        if waiting.is_none() {
            tracing::warn!(
                key = key.as_str(),
                "the blob store is full; the thumbnail is kept and written once there is room"
            );
            waiting = Some(Counted::new(&ctx.metrics.waiting_for_space));
        }
        tokio::select! {
            () = tokio::time::sleep(pause) => {}
            () = ctx.shutdown.cancelled() => return Err(JobError::Store(StoreError::OutOfSpace { key: key.as_str().to_owned() })),
        }
        pause = (pause * 2).min(SPACE_RETRY_MAX);
        if !ctx.sink.is_wanted(job).await.map_err(JobError::Report)? {
            return Err(JobError::NoLongerWanted);
        }
    }
}

/// Counts a job in a gauge while it lives (also when the job panics or is dropped).
struct Counted(prometheus::IntGauge);

impl Counted {
    fn new(gauge: &prometheus::IntGauge) -> Self {
        gauge.inc();
        Self(gauge.clone())
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// How either queue transport runs a job here: [`run_job`], counted in the worker's metrics.
#[async_trait::async_trait]
impl JobHandler for JobContext {
    type Error = JobError;

    async fn handle(&self, job: ThumbnailJob) -> Result<(), JobError> {
        let _running = Counted::new(&self.metrics.running);
        run_job(job, self).await
    }

    fn retrying(&self) {
        self.metrics.retries.inc();
    }

    fn given_up(&self) {
        self.metrics.dead.inc();
    }
}

fn all_failed(job: &ThumbnailJob, reason: &str) -> Vec<ThumbnailOutcome> {
    job.variants()
        .map(|(requested_height, variant)| ThumbnailOutcome {
            image_id: job.image_id,
            format: job.format,
            requested_height,
            variant,
            result: ThumbnailResult::Failed { reason: reason.to_owned() },
        })
        .collect()
}
