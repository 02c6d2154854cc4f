//! Liveness, readiness and metrics.

use std::collections::BTreeMap;

use actix_web::{get, web, HttpResponse};

use crate::disk_space::SpaceStatus;
use crate::error::ApiError;
use crate::routes::extract::AdminUser;
use crate::state::AppState;
use crate::thumbnails::QueueHealth;
use crate::views::Health;

/// Liveness: the process answers.
#[utoipa::path(operation_id = "healthz", tag = "operations", responses((status = 200, body = Health)))]
#[get("/healthz")]
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(Health { status: "ok", checks: None })
}

/// Readiness: metadata store and blob store usable, job queue reachable, disk space above the
/// floor. `ready` (200) when all are; `degraded` (200) when the server still serves but not
/// everything — the Redis queue is away (uploads are accepted, their jobs delivered when it is
/// back), the disk cannot take an upload of the largest size above `IMAGEAPI_MIN_FREE_BYTES`
/// (`"disk": "low"`: such uploads answer 507, reads go on) or the metadata database takes no writes (`"metadata": "read-only"`);
/// `unavailable` (503) otherwise. Failure details go to the log, not to unauthenticated callers.
#[utoipa::path(operation_id = "readyz", tag = "operations", responses((status = 200, body = Health), (status = 503, body = Health)))]
#[get("/readyz")]
pub async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    let metadata = state.repo.check().await.map_err(|e| e.to_string());
    let blobs = state.store.check().await.map_err(|e| e.to_string());
    let mut checks = BTreeMap::new();
    let mut ready = true;
    for (name, result) in [("metadata", metadata), ("blobs", blobs)] {
        let verdict = match result {
            Ok(()) => "ok",
            Err(detail) => {
                tracing::error!(check = name, %detail, "readiness check failed");
                ready = false;
                "error"
            }
        };
        checks.insert(name, verdict.to_owned());
    }
    let mut degraded = false;
    if let Some(why) = state.repo.writes_refused() {
        tracing::warn!(detail = why, "readiness: the metadata database takes no writes");
        checks.insert("metadata", "read-only".to_owned());
        degraded = true;
    }
    match state.disk.status() {
        SpaceStatus::NotWatched => {}
        SpaceStatus::Ok => {
            checks.insert("disk", "ok".to_owned());
        }
        SpaceStatus::Low(low) => {
            tracing::warn!(free = low.free, floor = low.floor, "readiness: low disk space; uploads are refused (507)");
            checks.insert("disk", "low".to_owned());
            degraded = true;
        }
    }
    let queue = match state.thumbnails.queue_health().await {
        QueueHealth::Ok => "ok",
        QueueHealth::Degraded(detail) => {
            tracing::warn!(%detail, "readiness: the job queue is unreachable; running degraded");
            degraded = true;
            "degraded"
        }
        QueueHealth::Down(detail) => {
            tracing::error!(%detail, "readiness check failed: queue");
            ready = false;
            "error"
        }
    };
    checks.insert("queue", queue.to_owned());
    let status = match (ready, degraded) {
        (false, _) => "unavailable",
        (true, true) => "degraded",
        (true, false) => "ready",
    };
    let body = Health { status, checks: Some(checks) };
    if ready {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable().json(body)
    }
}

/// Prometheus metrics in the text exposition format: HTTP requests and latency by route and
/// status, jobs enqueued and completed, upload-to-ready latency, queue depth.
///
/// For admins (Basic or Bearer, as Prometheus' `basic_auth` / `authorization` send them).
/// With `IMAGEAPI_METRICS_BIND` set, metrics are served there instead, without
/// authentication, and this route answers 404.
#[utoipa::path(
    operation_id = "metrics",
    tag = "operations",
    responses(
        (status = 200, description = "Prometheus text format", content_type = "text/plain"),
        (status = 401, body = crate::error::Problem),
        (status = 403, body = crate::error::Problem),
    ),
    security(("basic" = []), ("bearer" = []))
)]
#[get("/metrics")]
pub async fn metrics(state: web::Data<AppState>, _admin: AdminUser) -> Result<HttpResponse, ApiError> {
    if state.metrics_elsewhere {
        return Err(ApiError::NotFound);
    }
    Ok(render_metrics(&state).await)
}

/// The metrics, for the admin route and the separate metrics listener.
pub async fn render_metrics(state: &AppState) -> HttpResponse {
    // Refreshes the queue gauges; a scrape while the queue is away still shows the rest.
    if let Err(e) = state.thumbnails.queue_view(chrono::Utc::now()).await {
        tracing::debug!(error = %e, "queue gauges not refreshed");
    }
    HttpResponse::Ok().content_type("text/plain; version=0.0.4").body(state.metrics.render())
}
