//! Expiring links: create, list and revoke your own.

use actix_web::{delete, get, post, web, HttpResponse};
use chrono::Duration;
use imageapi_core::domain::{ExpirySeconds, Height, LinkId, Variant};

use crate::error::{ApiError, FieldErrors};
use crate::repo::{LinkRecord, RepoError};
use crate::routes::extract::AuthUser;
use crate::routes::owned_image;
use crate::routes::paging::{split_page, Page, PageQuery};
use crate::secrets::new_secret;
use crate::services::grants;
use crate::state::AppState;
use crate::views::{link_view, whole_number, CreateLink};
use imageapi_core::api::{LinkList, LinkView};

/// Link tokens carry this prefix so they are recognisable in logs and secret scanners.
const LINK_TOKEN_PREFIX: &str = "l_";

fn parse_variant(value: Option<&serde_json::Value>) -> Result<Variant, String> {
    const HINT: &str = "must be \"original\" or a thumbnail height your tier grants";
    match value {
        None | Some(serde_json::Value::Null) => Ok(Variant::Original),
        Some(serde_json::Value::String(s)) if s == "original" => Ok(Variant::Original),
        Some(n @ serde_json::Value::Number(_)) => {
            whole_number(n).and_then(|h| Height::parse(h).ok()).map(Variant::Thumbnail).ok_or_else(|| HINT.to_owned())
        }
        Some(_) => Err(HINT.to_owned()),
    }
}

fn parse_expiry(value: Option<&serde_json::Value>) -> Result<ExpirySeconds, String> {
    let value = value.ok_or_else(|| ExpirySeconds::range_error().to_string())?;
    whole_number(value)
        .ok_or(())
        .and_then(|n| ExpirySeconds::parse(n).map_err(|_| ()))
        .map_err(|()| ExpirySeconds::range_error().to_string())
}

/// Create an expiring link to one of your images (tiers with expiring links).
#[utoipa::path(
    operation_id = "create_link",
    tag = "links",
    params(("id" = String, Path, description = "image id", pattern = "^[0-9A-HJKMNP-TV-Za-hjkmnp-tv-z]{26}$")),
    request_body = CreateLink,
    responses(
        (status = 201, body = LinkView),
        (status = 400, description = "expires_in outside 300..=30000 or a malformed variant", body = crate::error::Problem),
        (status = 403, description = "your tier has no expiring links or does not grant the variant", body = crate::error::Problem),
        (status = 404, body = crate::error::Problem),
        (status = 429, description = "you hold the most live links allowed (`IMAGEAPI_MAX_LINKS_PER_USER`); `Retry-After` says when your soonest link expires", body = crate::error::Problem),
    ),
    security(("basic" = []), ("bearer" = []))
)]
#[post("/images/{id}/links")]
pub async fn create(
    state: web::Data<AppState>,
    AuthUser(user): AuthUser,
    path: web::Path<String>,
    body: web::Json<CreateLink>,
) -> Result<HttpResponse, ApiError> {
    let image = owned_image(&state, &user, &path).await?;
    let mut errors = FieldErrors::new();
    let expiry = parse_expiry(body.expires_in.as_ref()).map_err(|e| errors.insert("expires_in".into(), vec![e])).ok();
    let variant = parse_variant(body.variant.as_ref()).map_err(|e| errors.insert("variant".into(), vec![e])).ok();
    let (Some(expiry), Some(variant)) = (expiry, variant) else {
        return Err(ApiError::Validation(errors));
    };
    let tier = grants::tier_of(state.repo.as_ref(), &user).await?;
    grants::require_link(&tier, variant)?;
    let now = state.clock.now();
    let link = LinkRecord {
        id: crate::ids::new_link_id(),
        owner: user.id,
        image_id: image.id,
        variant,
        created_at: now,
        expires_at: now + Duration::seconds(i64::from(expiry.get())),
    };
    let (token, hash) = new_secret(LINK_TOKEN_PREFIX);
    match state.repo.insert_link(&link, &hash, state.max_links_per_user).await {
        Ok(()) => {}
        Err(RepoError::LinkLimit(limit)) => {
            let wait = (limit.next_free_at - now).num_seconds().max(1) as u64;
            return Err(ApiError::TooManyRequests {
                detail: format!(
                    "you hold {} live links, the most allowed; revoke one, or wait {wait} s for the soonest to expire",
                    limit.max_live
                ),
                retry_after_secs: wait,
            });
        }
        Err(e) => return Err(e.into()),
    }
    let mut view = link_view(&link, Some(format!("{}/l/{token}", state.public_url)), now);
    view.expires_in = i64::from(expiry.get());
    Ok(HttpResponse::Created().json(view))
}

/// Your live (unexpired, unrevoked) links, newest first.
#[utoipa::path(
    operation_id = "list_links",
    tag = "links",
    params(PageQuery),
    responses((status = 200, body = LinkList), (status = 400, body = crate::error::Problem), (status = 401, body = crate::error::Problem)),
    security(("basic" = []), ("bearer" = []))
)]
#[get("/links")]
pub async fn list(
    state: web::Data<AppState>,
    AuthUser(user): AuthUser,
    query: web::Query<PageQuery>,
) -> Result<HttpResponse, ApiError> {
    let Page { limit, cursor } = query.parse(LinkId::parse)?;
    let now = state.clock.now();
    let links = state.repo.user_live_links(user.id, now, cursor, limit + 1).await?;
    let (links, next) = split_page(links, limit, |l| l.id);
    Ok(HttpResponse::Ok().json(LinkList {
        results: links.iter().map(|l| link_view(l, None, now)).collect(),
        next: next.map(|c| format!("{}/api/v1/links?limit={limit}&cursor={c}", state.public_url)),
    }))
}

/// Revoke one of your links; it stops working at once.
#[utoipa::path(
    operation_id = "revoke_link",
    tag = "links",
    params(("id" = String, Path, description = "link id", pattern = "^[0-9A-HJKMNP-TV-Za-hjkmnp-tv-z]{26}$")),
    responses((status = 204), (status = 404, body = crate::error::Problem)),
    security(("basic" = []), ("bearer" = []))
)]
#[delete("/links/{id}")]
pub async fn revoke(
    state: web::Data<AppState>,
    AuthUser(user): AuthUser,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = LinkId::parse(&path).ok_or(ApiError::NotFound)?;
    let link = state.repo.link(id).await?;
    if link.owner != user.id {
        return Err(ApiError::NotFound);
    }
    state.repo.delete_link(id).await?;
    Ok(HttpResponse::NoContent().finish())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn expiry_must_be_a_whole_number_in_range() {
        assert!(parse_expiry(Some(&json!(300))).is_ok());
        assert!(parse_expiry(Some(&json!(30000))).is_ok());
        for bad in [json!(299), json!(30001), json!(300.5), json!("300"), json!(null)] {
            let err = parse_expiry(Some(&bad)).expect_err("rejected");
            assert!(err.contains("300") && err.contains("30000"), "names the range: {err}");
        }
        assert!(parse_expiry(None).is_err());
    }

    #[test]
    fn variant_defaults_to_the_original() {
        assert_eq!(parse_variant(None), Ok(Variant::Original));
        assert_eq!(parse_variant(Some(&json!("original"))), Ok(Variant::Original));
        assert!(matches!(parse_variant(Some(&json!(200))), Ok(Variant::Thumbnail(h)) if h.get() == 200));
        assert!(parse_variant(Some(&json!("thumb"))).is_err());
        assert!(parse_variant(Some(&json!(0))).is_err());
        assert!(parse_variant(Some(&json!(200.5))).is_err());
    }
}
