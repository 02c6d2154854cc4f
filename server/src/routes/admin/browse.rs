//! Admin: browse, inspect and delete any user's images; every live link.

use std::collections::BTreeMap;

use actix_web::{delete, get, web, HttpResponse};
use chrono::{DateTime, Utc};
use imageapi_core::domain::{ImageId, LinkId, UserId};
use utoipa::IntoParams;

use crate::error::{ApiError, FieldErrors};
use crate::repo::{ImageFilter, RepoError};
use crate::routes::any_image;
use crate::routes::extract::AdminUser;
use crate::routes::paging::{split_page, Page, PageQuery};
use crate::services::{self, images::load_page};
use crate::state::AppState;
use crate::views::{image_view, link_view};
use imageapi_core::api::{AdminImageView, ImagePage, LinkList};

/// The admin browse's filters (beside paging). Every one is optional; all given must hold.
#[derive(Debug, serde::Deserialize, IntoParams)]
pub struct ImageFilterQuery {
    /// Only this user's images (a user id).
    #[param(pattern = "^[0-9A-HJKMNP-TV-Za-hjkmnp-tv-z]{26}$")]
    user: Option<String>,
    /// Only images whose file name contains this, ignoring case.
    #[param(max_length = 255)]
    name: Option<String>,
    /// Only images uploaded after this time (RFC 3339, e.g. `2026-12-01T00:00:00Z`).
    #[param(value_type = Option<String>, format = DateTime)]
    uploaded_after: Option<String>,
    /// Only images uploaded before this time (RFC 3339).
    #[param(value_type = Option<String>, format = DateTime)]
    uploaded_before: Option<String>,
}

fn timestamp(field: &str, raw: &Option<String>, errors: &mut FieldErrors) -> Option<DateTime<Utc>> {
    let raw = raw.as_deref()?;
    match DateTime::parse_from_rfc3339(raw) {
        Ok(t) => Some(t.with_timezone(&Utc)),
        Err(_) => {
            errors.insert(field.to_owned(), vec!["must be an RFC 3339 time, e.g. 2026-12-01T00:00:00Z".to_owned()]);
            None
        }
    }
}

impl ImageFilterQuery {
    fn parse(&self) -> Result<ImageFilter, ApiError> {
        let mut errors = FieldErrors::new();
        let owner = self.user.as_deref().and_then(|raw| {
            UserId::parse(raw).or_else(|| {
                errors.insert("user".into(), vec!["is not a user id".into()]);
                None
            })
        });
        if self.name.as_ref().is_some_and(|n| n.chars().count() > 255) {
            errors.insert("name".into(), vec!["is longer than any file name (255 characters)".into()]);
        }
        let uploaded_after = timestamp("uploaded_after", &self.uploaded_after, &mut errors);
        let uploaded_before = timestamp("uploaded_before", &self.uploaded_before, &mut errors);
        if !errors.is_empty() {
            return Err(ApiError::Validation(errors));
        }
        let mut filter = ImageFilter::default().with_name(self.name.as_deref().unwrap_or(""));
        (filter.owner, filter.uploaded_after, filter.uploaded_before) = (owner, uploaded_after, uploaded_before);
        Ok(filter)
    }

    /// The filters as they were given, for the `next` link.
    fn as_query(&self) -> String {
        [
            ("user", &self.user),
            ("name", &self.name),
            ("uploaded_after", &self.uploaded_after),
            ("uploaded_before", &self.uploaded_before),
        ]
        .iter()
        .filter_map(|(key, value)| value.as_deref().map(|v| format!("&{key}={}", percent_encode(v))))
        .collect()
    }
}

/// Percent-encodes everything but RFC 3986's unreserved characters.
fn percent_encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// Images, newest first: everyone's, or filtered by owner, name and upload time.
///
/// Each call reads a bounded number of records, so with a rare filter a page may hold fewer
/// results than `limit` (even none) while `next` still leads on; follow `next` until it is null.
#[utoipa::path(
    operation_id = "admin_list_images",
    tag = "admin",
    params(PageQuery, ImageFilterQuery),
    responses((status = 200, body = ImagePage), (status = 400, body = crate::error::Problem), (status = 404, description = "no such user", body = crate::error::Problem)),
    security(("basic" = []), ("bearer" = []))
)]
#[get("/admin/images")]
pub async fn images(
    state: web::Data<AppState>,
    _admin: AdminUser,
    query: web::Query<PageQuery>,
    filters: web::Query<ImageFilterQuery>,
) -> Result<HttpResponse, ApiError> {
    let Page { limit, cursor } = query.parse(ImageId::parse)?;
    let filter = filters.parse()?;
    let repo = state.repo.as_ref();
    if let Some(owner) = filter.owner {
        repo.user(owner).await?;
    }
    let scan = repo.find_images(&filter, cursor, limit).await?;
    let rows = load_page(repo, scan.images, None).await?;
    let base = &state.public_url;
    let results = rows
        .iter()
        .map(|(image, tier, thumbs)| {
            let mut view = image_view(base, image, tier, thumbs);
            view.owner = Some(image.owner.to_string());
            view
        })
        .collect();
    let filters = filters.as_query();
    Ok(HttpResponse::Ok().json(ImagePage {
        results,
        next: scan.next.map(|c| format!("{base}/api/v1/admin/images?limit={limit}&cursor={c}{filters}")),
    }))
}

/// Any user's image, with its owner, its thumbnails' states (and why any failed) and its live
/// links.
#[utoipa::path(
    operation_id = "admin_get_image",
    tag = "admin",
    params(("id" = String, Path, description = "image id", pattern = "^[0-9A-HJKMNP-TV-Za-hjkmnp-tv-z]{26}$")),
    responses((status = 200, body = AdminImageView), (status = 404, body = crate::error::Problem)),
    security(("basic" = []), ("bearer" = []))
)]
#[get("/admin/images/{id}")]
pub async fn image_detail(
    state: web::Data<AppState>,
    _admin: AdminUser,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let image = any_image(&state, &path).await?;
    let repo = &state.repo;
    // The owner may be going away with their images: then so is this one.
    let owner = repo.user(image.owner).await?;
    let tier = repo.tier(&owner.tier).await?;
    let heights: Vec<u32> = tier.thumbnail_heights.iter().map(|h| h.get()).collect();
    let (thumbs, image_links) =
        futures_util::try_join!(repo.thumbnails_of_heights(image.id, &heights), repo.image_links(image.id))?;
    let now = state.clock.now();
    let mut live: Vec<_> = image_links.into_iter().filter(|l| !l.is_expired(now)).collect();
    live.sort_by_key(|l| (l.expires_at, l.id));
    let mut view = image_view(&state.public_url, &image, &tier, &thumbs);
    view.owner = Some(owner.id.to_string());
    Ok(HttpResponse::Ok().json(AdminImageView {
        image: view,
        owner_username: owner.username.to_string(),
        owner_tier: owner.tier.to_string(),
        links: live.iter().map(|l| link_view(l, None, now)).collect(),
    }))
}

/// Delete any user's image (moderation): its thumbnails, links and queued work go with it, as
/// when its owner deletes it. Logged with the admin's name.
#[utoipa::path(
    operation_id = "admin_delete_image",
    tag = "admin",
    params(("id" = String, Path, description = "image id", pattern = "^[0-9A-HJKMNP-TV-Za-hjkmnp-tv-z]{26}$")),
    responses((status = 204), (status = 404, body = crate::error::Problem)),
    security(("basic" = []), ("bearer" = []))
)]
#[delete("/admin/images/{id}")]
pub async fn delete_image(
    state: web::Data<AppState>,
    AdminUser(admin): AdminUser,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let image = any_image(&state, &path).await?;
    services::images::delete_image(&state, image.id).await?;
    tracing::info!(
        image = %image.id,
        owner = %image.owner,
        admin = %admin.username,
        name = %image.name,
        "image deleted by an admin"
    );
    Ok(HttpResponse::NoContent().finish())
}

/// Every live link with its owner and time left, newest first.
#[utoipa::path(
    operation_id = "admin_list_links",
    tag = "admin",
    params(PageQuery),
    responses((status = 200, body = LinkList), (status = 400, body = crate::error::Problem)),
    security(("basic" = []), ("bearer" = []))
)]
#[get("/admin/links")]
pub async fn links(
    state: web::Data<AppState>,
    _admin: AdminUser,
    query: web::Query<PageQuery>,
) -> Result<HttpResponse, ApiError> {
    let Page { limit, cursor } = query.parse(LinkId::parse)?;
    let now = state.clock.now();
    let links = state.repo.live_links(now, cursor, limit + 1).await?;
    let (links, next) = split_page(links, limit, |l| l.id);
    let mut names = BTreeMap::new();
    for link in &links {
        if let std::collections::btree_map::Entry::Vacant(slot) = names.entry(link.owner) {
            let name = match state.repo.user(link.owner).await {
                Ok(user) => user.username.to_string(),
                Err(RepoError::NotFound) => String::new(),
                Err(e) => return Err(e.into()),
            };
            slot.insert(name);
        }
    }
    let results = links
        .iter()
        .map(|l| {
            let mut view = link_view(l, None, now);
            view.owner = Some(l.owner.to_string());
            view.owner_username = names.get(&l.owner).cloned();
            view
        })
        .collect();
    let next = next.map(|c| format!("{}/api/v1/admin/links?limit={limit}&cursor={c}", state.public_url));
    Ok(HttpResponse::Ok().json(LinkList { results, next }))
}

/// Revoke any link.
#[utoipa::path(
    operation_id = "admin_revoke_link",
    tag = "admin",
    params(("id" = String, Path, description = "link id", pattern = "^[0-9A-HJKMNP-TV-Za-hjkmnp-tv-z]{26}$")),
    responses((status = 204), (status = 404, body = crate::error::Problem)),
    security(("basic" = []), ("bearer" = []))
)]
#[delete("/admin/links/{id}")]
pub async fn revoke_link(
    state: web::Data<AppState>,
    _admin: AdminUser,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = LinkId::parse(&path).ok_or(ApiError::NotFound)?;
    state.repo.delete_link(id).await?;
    Ok(HttpResponse::NoContent().finish())
}
