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

/// Readiness: metadata store and blob store usable, job queue accepting.
#[utoipa::path(tag = "operations", responses((status = 200, body = Health), (status = 503, body = Health)))]
#[get("/readyz")]
pub async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    let mut checks = BTreeMap::new();
    let repo = state.repo.clone();
    let metadata = match web::block(move || repo.check()).await {
        Ok(Ok(())) => "ok".to_owned(),
        Ok(Err(e)) => e.to_string(),
        Err(e) => e.to_string(),
    };
    checks.insert("metadata", metadata);
    checks.insert(
        "blobs",
        match state.store.check().await {
            Ok(()) => "ok".to_owned(),
            Err(e) => e.to_string(),
        },
    );
    checks.insert("queue", "ok (embedded)".to_owned());
    let ready = checks.values().all(|v| v.starts_with("ok"));
    let body = Health { status: if ready { "ready" } else { "unavailable" }, checks: Some(checks) };
    if ready {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable().json(body)
    }
}
