//! Admin: the thumbnail job queue, in either mode, and retrying failed jobs.

use actix_web::{get, post, web, HttpResponse};
use imageapi_core::domain::JobId;
use imageapi_queue::QueueError;

use crate::error::ApiError;
use crate::routes::extract::AdminUser;
use crate::state::AppState;
use crate::views::RetryView;
use imageapi_core::api::QueueView;

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
    Ok(HttpResponse::Ok().json(state.thumbnails.queue_view(chrono::Utc::now()).await.map_err(unavailable)?))
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
