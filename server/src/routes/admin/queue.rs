//! Admin: the thumbnail job queue, in either mode, and retrying failed jobs.

use actix_web::{get, post, web, HttpResponse};
use imageapi_shared::domain::JobId;
use imageapi_shared::queue::{QueueError, QueueMode};

use crate::error::ApiError;
use crate::routes::extract::AdminUser;
use crate::state::AppState;
use crate::views::{FailedJobView, QueueJobView, QueueView, QueueWorkerView, RetryView};

fn unavailable(e: QueueError) -> ApiError {
    tracing::warn!(error = %e, "the job queue could not be read");
    ApiError::Unavailable { detail: "The job queue is unreachable; try again shortly.".into(), retry_after_secs: 5 }
}

/// Counts (pending, running, done, failed), throughput over the last minute, workers with
/// their last heartbeat and jobs, and failed jobs with their reasons.
#[utoipa::path(
    operation_id = "admin_queue_status",
    tag = "admin",
    responses((status = 200, body = QueueView), (status = 503, body = crate::error::Problem)),
    security(("basic" = []), ("bearer" = []))
)]
#[get("/admin/queue")]
pub async fn status(state: web::Data<AppState>, _admin: AdminUser) -> Result<HttpResponse, ApiError> {
    let status = state.thumbnails.queue_status().await.map_err(unavailable)?;
    let now = chrono::Utc::now();
    let s = status.snapshot;
    Ok(HttpResponse::Ok().json(QueueView {
        mode: match s.mode {
            QueueMode::Embedded => "embedded",
            QueueMode::Redis => "redis",
        }
        .to_owned(),
        pending: s.pending,
        running: s.running,
        done: s.done,
        failed: s.failed,
        undelivered: status.undelivered,
        throughput_per_minute: status.finished_last_minute,
        workers: s
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
                status: if w.problem.is_some() { "misconfigured" } else { "ok" },
                problem: w.problem,
            })
            .collect(),
        failed_jobs: s
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
    }))
}

/// Puts a failed job back in line with fresh attempts.
#[utoipa::path(
    operation_id = "admin_retry_job",
    tag = "admin",
    params(("job" = String, Path, description = "job id, from `failed_jobs`", pattern = "^[0-9A-HJKMNP-TV-Za-hjkmnp-tv-z]{26}$")),
    responses(
        (status = 202, body = RetryView),
        (status = 404, description = "no failed job with this id", body = crate::error::Problem),
        (status = 503, body = crate::error::Problem)
    ),
    security(("basic" = []), ("bearer" = []))
)]
#[post("/admin/queue/failed/{job}/retry")]
pub async fn retry(
    state: web::Data<AppState>,
    _admin: AdminUser,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let job = JobId::parse(&path).ok_or(ApiError::NotFound)?;
    if !state.thumbnails.retry_failed(job).await.map_err(unavailable)? {
        return Err(ApiError::NotFound);
    }
    tracing::info!(%job, "an admin put a failed job back in line");
    Ok(HttpResponse::Accepted().json(RetryView { job: job.to_string(), status: "queued" }))
}
