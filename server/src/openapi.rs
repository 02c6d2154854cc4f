//! The OpenAPI 3 document (`/api/openapi.json`) and the offline docs page (`/api/docs/`).

use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::routes;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "imageapi",
        description = "Tiered image hosting: upload PNG/JPEG, get thumbnails, originals and expiring links as your tier grants. Authenticate with HTTP Basic (username and password) or a Bearer API token.",
    ),
    paths(
        routes::health::healthz,
        routes::health::readyz,
        routes::health::metrics,
        routes::me::me,
        routes::images::upload,
        routes::images::list,
        routes::images::detail,
        routes::images::delete,
        routes::media::thumbnail,
        routes::media::original,
        routes::media::public_link,
        routes::links::create,
        routes::links::list,
        routes::links::revoke,
        routes::admin::users::list,
        routes::admin::users::create,
        routes::admin::users::detail,
        routes::admin::users::update,
        routes::admin::users::delete,
        routes::admin::users::issue_token,
        routes::admin::users::revoke_token,
        routes::admin::tiers::list,
        routes::admin::tiers::create,
        routes::admin::tiers::detail,
        routes::admin::tiers::update,
        routes::admin::tiers::delete,
        routes::admin::browse::images,
        routes::admin::browse::links,
        routes::admin::browse::revoke_link,
        routes::admin::queue::status,
        routes::admin::queue::retry,
    ),
    modifiers(&Security),
    tags(
        (name = "images", description = "Upload, list and fetch your images"),
        (name = "links", description = "Expiring links anyone can fetch"),
        (name = "account", description = "Who you are and what your tier grants"),
        (name = "admin", description = "Users, tokens, tiers, images, links, the job queue (admins only)"),
        (name = "operations", description = "Health, readiness and metrics"),
    )
)]
struct ApiDoc;

struct Security;

impl Modify for Security {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme("basic", SecurityScheme::Http(Http::new(HttpAuthScheme::Basic)));
        components.add_security_scheme("bearer", SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)));
    }
}

/// Routes under the `/api/v1` scope are declared relative to it; give them their full path.
fn is_scoped(path: &str) -> bool {
    !(path.starts_with("/healthz")
        || path.starts_with("/readyz")
        || path.starts_with("/metrics")
        || path.starts_with("/l/"))
}

pub fn document() -> utoipa::openapi::OpenApi {
    let mut doc = ApiDoc::openapi();
    let paths = std::mem::take(&mut doc.paths.paths);
    doc.paths.paths = paths
        .into_iter()
        .map(|(path, item)| if is_scoped(&path) { (format!("/api/v1{path}"), item) } else { (path, item) })
        .collect();
    doc
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_route_is_documented_under_its_full_path() {
        let doc = document();
        for path in [
            "/api/v1/images",
            "/api/v1/images/{id}",
            "/api/v1/images/{id}/thumbnails/{height}",
            "/api/v1/images/{id}/original",
            "/api/v1/images/{id}/links",
            "/api/v1/links",
            "/api/v1/links/{id}",
            "/api/v1/me",
            "/api/v1/admin/users",
            "/api/v1/admin/users/{id}",
            "/api/v1/admin/users/{id}/tokens",
            "/api/v1/admin/users/{id}/tokens/{token_id}",
            "/api/v1/admin/tiers",
            "/api/v1/admin/tiers/{id}",
            "/api/v1/admin/images",
            "/api/v1/admin/links",
            "/api/v1/admin/links/{id}",
            "/l/{token}",
            "/healthz",
            "/readyz",
        ] {
            assert!(doc.paths.paths.contains_key(path), "{path} missing from the OpenAPI document");
        }
    }
}
