//! Admin: browse every user's images and every live link.

use std::collections::BTreeMap;

use actix_web::{delete, get, web, HttpResponse};
use imageapi_shared::domain::{LinkId, UserId};

use crate::auth::AdminUser;
use crate::error::ApiError;
use crate::repo::RepoError;
use crate::routes::images::{Page, PageQuery};
use crate::services::images::load_page;
use crate::state::AppState;
use crate::views::{ImagePage, ImageView, LinkList, LinkView};

#[derive(Debug, serde::Deserialize)]
pub struct UserFilter {
    user: Option<String>,
}

/// Images, newest first: one user's (`?user=`) or everyone's.
#[utoipa::path(
    operation_id = "admin_list_images",
    tag = "admin",
    params(PageQuery, ("user" = Option<String>, Query, description = "only this user's images (a user id)", pattern = "^[0-9A-HJKMNP-TV-Za-hjkmnp-tv-z]{26}$")),
    responses((status = 200, body = ImagePage), (status = 400, body = crate::error::Problem), (status = 404, description = "no such user", body = crate::error::Problem)),
    security(("basic" = []), ("bearer" = []))
)]
#[get("/admin/images")]
pub async fn images(
    state: web::Data<AppState>,
    _admin: AdminUser,
    query: web::Query<PageQuery>,
    filter: web::Query<UserFilter>,
) -> Result<HttpResponse, ApiError> {
    let Page { limit, cursor } = query.parse()?;
    let user = match &filter.user {
        None => None,
        Some(raw) => Some(UserId::parse(raw).ok_or_else(|| ApiError::field("user", "is not a user id"))?),
    };
    let repo = state.repo.as_ref();
    let records = match user {
        Some(user) => {
            repo.user(user).await?;
            repo.user_images(user, cursor, limit + 1).await?
        }
        None => repo.all_images(cursor, limit + 1).await?,
    };
    let (rows, next) = load_page(repo, records, limit, None).await?;
    let base = &state.public_url;
    let user_param = filter.user.as_deref().map(|u| format!("&user={u}")).unwrap_or_default();
    let results = rows
        .iter()
        .map(|(image, tier, thumbs)| {
            let mut view = ImageView::new(base, image, tier, thumbs);
            view.owner = Some(image.owner.to_string());
            view
        })
        .collect();
    Ok(HttpResponse::Ok().json(ImagePage {
        results,
        next: next.map(|c| format!("{base}/api/v1/admin/images?limit={limit}&cursor={c}{user_param}")),
    }))
}

/// Every live link with its owner and time left, soonest expiry first.
#[utoipa::path(operation_id = "admin_list_links", tag = "admin", responses((status = 200, body = LinkList)), security(("basic" = []), ("bearer" = [])))]
#[get("/admin/links")]
pub async fn links(state: web::Data<AppState>, _admin: AdminUser) -> Result<HttpResponse, ApiError> {
    let now = state.clock.now();
    let links = state.repo.live_links(now).await?;
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
            let mut view = LinkView::new(l, None, now);
            view.owner = Some(l.owner.to_string());
            view.owner_username = names.get(&l.owner).cloned();
            view
        })
        .collect();
    Ok(HttpResponse::Ok().json(LinkList { results }))
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
