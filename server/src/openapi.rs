//! The OpenAPI 3 document (`/api/openapi.json`) and the offline docs page (`/api/docs/`).

use utoipa::openapi::path::{Operation, ParameterIn, PathItem};
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::openapi::{Content, Ref, RefOr, Response};
use utoipa::{Modify, OpenApi};

use crate::error::{ApiError, PROBLEM_JSON};
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
        routes::admin::browse::image_detail,
        routes::admin::browse::delete_image,
        routes::media::admin_thumbnail,
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

/// What every operation gets, stated once rather than in each handler: every error body is
/// `application/problem+json`; the statuses every operation of a kind can answer are added
/// from what the operation is — authenticated, admin-only, with a JSON body, with query or
/// path parameters — so no handler can forget one (handlers list the ones particular to them);
/// every response has a description and every operation a unique id.
struct Conventions;

impl Modify for Conventions {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        for (path, item) in openapi.paths.paths.iter_mut() {
            // Operation ids name client functions, so they must be unique: a route that
            // also answers HEAD documents it as `<id>_head`.
            if let (Some(get), Some(head)) = (&item.get, &mut item.head) {
                if head.operation_id.is_some() && head.operation_id == get.operation_id {
                    head.operation_id = head.operation_id.take().map(|id| format!("{id}_head"));
                }
            }
            for operation in operations_mut(item) {
                add_common_problems(path, operation);
                for (status, response) in operation.responses.responses.iter_mut() {
                    if let RefOr::T(response) = response {
                        as_problem_json(response);
                        // OpenAPI requires a description; the reason phrase is a fair one.
                        if response.description.is_empty() {
                            response.description = reason_phrase(status);
                        }
                    }
                }
            }
        }
    }
}

fn operations_mut(item: &mut PathItem) -> impl Iterator<Item = &mut Operation> {
    [
        &mut item.get,
        &mut item.put,
        &mut item.post,
        &mut item.delete,
        &mut item.options,
        &mut item.head,
        &mut item.patch,
        &mut item.trace,
    ]
    .into_iter()
    .filter_map(Option::as_mut)
}

/// The methods a path answers, for `Allow`.
fn methods(item: &PathItem) -> Vec<&'static str> {
    [
        ("GET", &item.get),
        ("HEAD", &item.head),
        ("POST", &item.post),
        ("PUT", &item.put),
        ("PATCH", &item.patch),
        ("DELETE", &item.delete),
        ("OPTIONS", &item.options),
        ("TRACE", &item.trace),
    ]
    .into_iter()
    .filter_map(|(name, operation)| operation.as_ref().map(|_| name))
    .collect()
}

fn add_common_problems(path: &str, operation: &mut Operation) {
    let secured = operation.security.as_ref().is_some_and(|s| !s.is_empty());
    let json_body = matches!(&operation.request_body, Some(RefOr::T(b)) if b.content.contains_key("application/json"));
    let params = operation.parameters.as_deref().unwrap_or_default();
    let located = |place: ParameterIn| params.iter().any(|p| matches!(p, RefOr::T(p) if p.parameter_in == place));
    let (query, in_path) = (located(ParameterIn::Query), located(ParameterIn::Path));
    let mut common: Vec<(u16, &str)> = Vec::new();
    if json_body {
        common.push((400, "malformed JSON or invalid fields (`errors` names them)"));
        common.push((413, "the JSON body is too large"));
        common.push((415, "the body is not `application/json`"));
    }
    if query {
        common.push((400, "an invalid query parameter (`errors` names it)"));
    }
    if secured {
        common.push((401, "no credentials, or wrong ones"));
        common.push((429, "too many failed logins from this address or for this username; see `Retry-After`"));
    }
    if path.starts_with("/api/v1/admin/") || path == "/metrics" {
        common.push((403, "you are not an admin"));
    }
    if in_path {
        common.push((404, "no such resource (or not yours)"));
    }
    if path != "/healthz" {
        common.push((503, "the metadata database or blob store is unavailable; see `Retry-After`"));
    }
    let responses = &mut operation.responses.responses;
    for (status, description) in common {
        responses.entry(status.to_string()).or_insert_with(|| RefOr::T(problem_response(description)));
    }
}

fn reason_phrase(status: &str) -> String {
    let reason = status.parse::<u16>().ok().and_then(|s| actix_web::http::StatusCode::from_u16(s).ok());
    reason.and_then(|s| s.canonical_reason()).unwrap_or("the response").to_owned()
}

fn problem_response(description: &str) -> Response {
    let mut response = Response::new(description);
    response.content.insert(PROBLEM_JSON.to_owned(), Content::new(Some(Ref::from_schema_name("Problem"))).into());
    response
}

/// A response whose body is the `Problem` schema is served as `application/problem+json`.
fn as_problem_json(response: &mut Response) {
    let Some(RefOr::T(content)) = response.content.get("application/json") else { return };
    let is_problem = matches!(&content.schema, Some(RefOr::Ref(r)) if r.ref_location.ends_with("/Problem"));
    if is_problem {
        if let Some(content) = response.content.shift_remove("application/json") {
            response.content.insert(PROBLEM_JSON.to_owned(), content);
        }
    }
}

/// A request no route took: 405 with `Allow` when the path is one the API serves with other
/// methods, 404 otherwise.
pub async fn not_routed(
    req: actix_web::HttpRequest,
    known: actix_web::web::Data<KnownPaths>,
) -> Result<actix_web::HttpResponse, ApiError> {
    Err(match known.allowed(req.path()) {
        Some(allow) => ApiError::MethodNotAllowed { allow: allow.to_owned() },
        None => ApiError::NotFound,
    })
}

/// The documented paths with the methods each answers, to tell a wrong method (405) from a
/// wrong path (404) for requests no route took.
pub struct KnownPaths(Vec<(Vec<Segment>, String)>);

enum Segment {
    Literal(String),
    Parameter,
}

impl KnownPaths {
    pub fn new(doc: &utoipa::openapi::OpenApi) -> Self {
        let paths = doc
            .paths
            .paths
            .iter()
            .map(|(template, item)| {
                let segments = template
                    .split('/')
                    .map(|s| if s.starts_with('{') { Segment::Parameter } else { Segment::Literal(s.to_owned()) })
                    .collect();
                (segments, methods(item).join(", "))
            })
            .collect();
        Self(paths)
    }

    /// The `Allow` value for a path the API serves, `None` for any other path.
    pub fn allowed(&self, path: &str) -> Option<&str> {
        let parts: Vec<&str> = path.split('/').collect();
        self.0
            .iter()
            .find(|(segments, _)| {
                segments.len() == parts.len()
                    && segments.iter().zip(&parts).all(|(segment, part)| match segment {
                        Segment::Literal(literal) => literal == part,
                        Segment::Parameter => !part.is_empty(),
                    })
            })
            .map(|(_, allow)| allow.as_str())
    }
}

/// Routes under the `/api/v1` scope are declared relative to it; give them their full path.
fn is_scoped(path: &str) -> bool {
    !(path.starts_with("/healthz")
        || path.starts_with("/readyz")
        || path.starts_with("/metrics")
        || path.starts_with("/l/"))
}

/// States this server's upload limit as the largest `max_upload_bytes` a tier may set (the
/// one bound of the API that is configuration, not code).
pub fn state_upload_limit(doc: &mut utoipa::openapi::OpenApi, max_upload_bytes: u64) {
    use utoipa::openapi::{schema::Schema, RefOr};
    let Some(components) = doc.components.as_mut() else { return };
    for body in ["CreateTier", "UpdateTier"] {
        let Some(RefOr::T(Schema::Object(object))) = components.schemas.get_mut(body) else { continue };
        if let Some(RefOr::T(Schema::Object(field))) = object.properties.get_mut("max_upload_bytes") {
            field.maximum = usize::try_from(max_upload_bytes).ok().map(utoipa::Number::UInt);
        }
    }
}

pub fn document() -> utoipa::openapi::OpenApi {
    let mut doc = ApiDoc::openapi();
    let paths = std::mem::take(&mut doc.paths.paths);
    doc.paths.paths = paths
        .into_iter()
        .map(|(path, item)| if is_scoped(&path) { (format!("/api/v1{path}"), item) } else { (path, item) })
        .collect();
    // After the paths are whole: which statuses apply depends on the path.
    Conventions.modify(&mut doc);
    doc
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_known_path_names_its_methods_and_an_unknown_one_nothing() {
        let known = KnownPaths::new(&document());
        assert_eq!(known.allowed("/api/v1/images"), Some("GET, POST"));
        assert_eq!(known.allowed("/api/v1/images/01J0000000000000000000000A"), Some("GET, DELETE"));
        assert_eq!(known.allowed("/api/v1/images/x/thumbnails/200"), Some("GET, HEAD"));
        assert_eq!(known.allowed("/api/v1/admin/tiers/gold"), Some("GET, PATCH, DELETE"));
        assert_eq!(known.allowed("/api/v1/images/"), None);
        assert_eq!(known.allowed("/api/v1/nothing"), None);
        assert_eq!(known.allowed("/api/v1/images/a/b"), None);
    }

    #[test]
    fn the_servers_upload_limit_bounds_a_tiers() {
        let mut doc = document();
        state_upload_limit(&mut doc, 1234);
        let json = serde_json::to_value(&doc).expect("json");
        for body in ["CreateTier", "UpdateTier"] {
            let field = &json["components"]["schemas"][body]["properties"]["max_upload_bytes"];
            assert_eq!(field["maximum"], serde_json::json!(1234), "{body}: {field:#}");
        }
    }

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
