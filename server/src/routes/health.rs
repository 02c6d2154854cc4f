//! Liveness and readiness.

use std::collections::BTreeMap;

use actix_web::{get, web, HttpResponse};

use crate::state::AppState;
use crate::views::Health;

/// Liveness: the process answers.
#[utoipa::path(tag = "operations", responses((status = 200, body = Health)))]
#[get("/healthz")]
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(Health { status: "ok", checks: None })
}

/// Readiness: metadata store and blob store usable, job queue accepting. Failure details go
/// to the log, not to unauthenticated callers.
#[utoipa::path(tag = "operations", responses((status = 200, body = Health), (status = 503, body = Health)))]
#[get("/readyz")]
pub async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    let repo = state.repo.clone();
    let metadata = match web::block(move || repo.check()).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(e) => Err(e.to_string()),
    };
    let blobs = state.store.check().await.map_err(|e| e.to_string());
    let queue = if state.thumbnails.queue_is_open() {
        Ok(())
    } else {
        Err("the embedded queue's worker has stopped".to_owned())
    };
    let mut checks = BTreeMap::new();
    for (name, result) in [("metadata", metadata), ("blobs", blobs), ("queue", queue)] {
        let verdict = match result {
            Ok(()) => "ok",
            Err(detail) => {
                tracing::error!(check = name, %detail, "readiness check failed");
                "error"
            }
        };
        checks.insert(name, verdict.to_owned());
    }
    let ready = checks.values().all(|v| v == "ok");
    let body = Health { status: if ready { "ready" } else { "unavailable" }, checks: Some(checks) };
    if ready {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable().json(body)
    }
}
