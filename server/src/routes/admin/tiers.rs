//! Admin: tiers.

use actix_web::{delete, get, patch, post, web, HttpResponse};
use imageapi_core::domain::{Formats, Heights, LimitField, TierId, TierLimits, TierName};

use crate::error::{ApiError, FieldErrors};
use crate::repo::{TierEdit, TierRecord};
use crate::routes::extract::AdminUser;
use crate::state::AppState;
use crate::views::{self, whole_number, CreateTier, UpdateTier};
use imageapi_core::api::{TierList, TierView};

fn parse_heights(value: &serde_json::Value) -> Result<Heights, String> {
    let items = value.as_array().ok_or("must be a list of heights in px")?;
    let numbers =
        items.iter().map(|v| whole_number(v).ok_or("heights must be whole numbers")).collect::<Result<Vec<_>, _>>()?;
    Heights::parse(&numbers).map_err(|e| e.to_string())
}

fn parse_formats(value: &serde_json::Value) -> Result<Formats, String> {
    let items = value.as_array().ok_or(r#"must be a list of formats ("webp", "avif")"#)?;
    let names = items
        .iter()
        .map(|v| v.as_str().ok_or(r#"formats must be names: "webp" or "avif""#))
        .collect::<Result<Vec<_>, _>>()?;
    Formats::parse(&names).map_err(|e| e.to_string())
}

/// One limit as sent: null is unlimited, else a whole number in the field's range.
fn parse_limit(field: LimitField, value: &serde_json::Value, server_max_upload: u64) -> Result<Option<u64>, String> {
    let (min, max) = TierLimits::range(field, server_max_upload);
    let number = match value {
        serde_json::Value::Null => return Ok(None),
        other => whole_number(other)
            .and_then(|n| u64::try_from(n).ok())
            .ok_or_else(|| format!("must be a whole number from {min} to {max}, or null for unlimited"))?,
    };
    TierLimits::check(field, Some(number), server_max_upload).map_err(|e| e.to_string())
}

/// Parses the limits sent (`None`: not sent), recording a message per bad field.
fn parse_limits<'a>(
    sent: impl IntoIterator<Item = (LimitField, Option<&'a serde_json::Value>)>,
    server_max_upload: u64,
    errors: &mut FieldErrors,
) -> Vec<(LimitField, Option<u64>)> {
    let mut out = Vec::new();
    for (field, value) in sent {
        let Some(value) = value else { continue };
        match parse_limit(field, value, server_max_upload) {
            Ok(limit) => out.push((field, limit)),
            Err(message) => {
                errors.insert(field.as_str().to_owned(), vec![message]);
            }
        }
    }
    out
}

fn tier_id(raw: &str) -> Result<TierId, ApiError> {
    TierId::parse(raw).map_err(|_| ApiError::NotFound)
}

async fn load_tier_view(state: &AppState, id: TierId) -> Result<TierView, ApiError> {
    let (tier, holders) = futures_util::try_join!(state.repo.tier(&id), state.repo.tier_user_count(&id))?;
    Ok(views::tier_view(&tier, Some(holders)))
}

/// All tiers with how many users hold each.
#[utoipa::path(operation_id = "admin_list_tiers", tag = "admin", responses((status = 200, body = TierList), (status = 403, body = crate::error::Problem)), security(("basic" = []), ("bearer" = [])))]
#[get("/admin/tiers")]
pub async fn list(state: web::Data<AppState>, _admin: AdminUser) -> Result<HttpResponse, ApiError> {
    let tiers = state.repo.tiers().await?;
    let mut results = Vec::with_capacity(tiers.len());
    for tier in &tiers {
        results.push(views::tier_view(tier, Some(state.repo.tier_user_count(&tier.id).await?)));
    }
    Ok(HttpResponse::Ok().json(TierList { results }))
}

/// Create a tier. Its id is a slug (`[a-z0-9-]{1,32}`), fixed at creation.
#[utoipa::path(
    operation_id = "admin_create_tier",
    tag = "admin",
    request_body = CreateTier,
    responses((status = 201, body = TierView), (status = 400, body = crate::error::Problem), (status = 409, description = "id taken", body = crate::error::Problem)),
    security(("basic" = []), ("bearer" = []))
)]
#[post("/admin/tiers")]
pub async fn create(
    state: web::Data<AppState>,
    _admin: AdminUser,
    body: web::Json<CreateTier>,
) -> Result<HttpResponse, ApiError> {
    let mut errors = FieldErrors::new();
    let id = TierId::parse(&body.id).map_err(|e| errors.insert("id".into(), vec![e.to_string()])).ok();
    let name = TierName::parse(&body.name).map_err(|e| errors.insert("name".into(), vec![e.to_string()])).ok();
    let heights =
        parse_heights(&body.thumbnail_heights).map_err(|e| errors.insert("thumbnail_heights".into(), vec![e])).ok();
    let formats = match &body.formats {
        None => Some(Formats::default()),
        Some(value) => parse_formats(value).map_err(|e| errors.insert("formats".into(), vec![e])).ok(),
    };
    let sent_limits = parse_limits(body.limits(), state.limits.max_bytes, &mut errors);
    let (Some(id), Some(name), Some(thumbnail_heights), Some(formats)) = (id, name, heights, formats) else {
        return Err(ApiError::Validation(errors));
    };
    if !errors.is_empty() {
        return Err(ApiError::Validation(errors));
    }
    let mut limits = TierLimits::UNLIMITED;
    for (field, value) in sent_limits {
        limits.set(field, value);
    }
    let tier = TierRecord {
        id,
        name,
        thumbnail_heights,
        original_link: body.original_link,
        expiring_links: body.expiring_links,
        builtin: false,
        formats,
        limits,
    };
    state.repo.create_tier(&tier).await?;
    Ok(HttpResponse::Created().json(views::tier_view(&tier, Some(0))))
}

/// One tier.
#[utoipa::path(
    operation_id = "admin_get_tier",
    tag = "admin",
    params(("id" = String, Path, description = "tier id", pattern = "^[a-z0-9-]{1,32}$")),
    responses((status = 200, body = TierView), (status = 404, body = crate::error::Problem)),
    security(("basic" = []), ("bearer" = []))
)]
#[get("/admin/tiers/{id}")]
pub async fn detail(
    state: web::Data<AppState>,
    _admin: AdminUser,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(load_tier_view(&state, tier_id(&path)?).await?))
}

/// Edit a tier (builtin ones too). Applies at once to the images of every user holding it.
#[utoipa::path(
    operation_id = "admin_update_tier",
    tag = "admin",
    params(("id" = String, Path, description = "tier id", pattern = "^[a-z0-9-]{1,32}$")),
    request_body = UpdateTier,
    responses((status = 200, body = TierView), (status = 400, body = crate::error::Problem), (status = 404, body = crate::error::Problem)),
    security(("basic" = []), ("bearer" = []))
)]
#[patch("/admin/tiers/{id}")]
pub async fn update(
    state: web::Data<AppState>,
    _admin: AdminUser,
    path: web::Path<String>,
    body: web::Json<UpdateTier>,
) -> Result<HttpResponse, ApiError> {
    let id = tier_id(&path)?;
    let mut errors = FieldErrors::new();
    let name = body
        .name
        .as_deref()
        .map(TierName::parse)
        .transpose()
        .map_err(|e| errors.insert("name".into(), vec![e.to_string()]))
        .ok()
        .flatten();
    let heights = body
        .thumbnail_heights
        .as_ref()
        .map(parse_heights)
        .transpose()
        .map_err(|e| errors.insert("thumbnail_heights".into(), vec![e]))
        .ok()
        .flatten();
    let formats = body
        .formats
        .as_ref()
        .map(parse_formats)
        .transpose()
        .map_err(|e| errors.insert("formats".into(), vec![e]))
        .ok()
        .flatten();
    let limits = parse_limits(body.limits(), state.limits.max_bytes, &mut errors);
    if !errors.is_empty() {
        return Err(ApiError::Validation(errors));
    }
    let edit = TierEdit {
        name,
        thumbnail_heights: heights,
        original_link: body.original_link,
        expiring_links: body.expiring_links,
        formats,
        limits,
    };
    // Like any tier edit, a change of formats queues the tier's users for reconciliation (in
    // the same write), so their images get the newly granted variants.
    state.repo.update_tier(&id, &edit).await?;
    state.thumbnails.wake_reconciler();
    Ok(HttpResponse::Ok().json(load_tier_view(&state, id).await?))
}

/// Delete a tier: not a builtin one, and not while users hold it (409).
#[utoipa::path(
    operation_id = "admin_delete_tier",
    tag = "admin",
    params(("id" = String, Path, description = "tier id", pattern = "^[a-z0-9-]{1,32}$")),
    responses((status = 204), (status = 404, body = crate::error::Problem), (status = 409, description = "builtin or in use", body = crate::error::Problem)),
    security(("basic" = []), ("bearer" = []))
)]
#[delete("/admin/tiers/{id}")]
pub async fn delete(
    state: web::Data<AppState>,
    _admin: AdminUser,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = tier_id(&path)?;
    state.repo.delete_tier(&id).await?;
    Ok(HttpResponse::NoContent().finish())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn heights_must_be_a_list_of_whole_numbers_in_range_without_repeats() {
        assert!(parse_heights(&json!([100, 300])).is_ok());
        assert!(parse_heights(&json!([])).is_ok());
        for bad in [json!(200), json!([200.5]), json!(["200"]), json!([0]), json!([4097]), json!([5, 5])] {
            assert!(parse_heights(&bad).is_err(), "{bad} should be rejected");
        }
    }

    #[test]
    fn limits_are_null_or_whole_numbers_in_their_range() {
        let max_upload = 25 << 20;
        assert_eq!(parse_limit(LimitField::MaxImages, &json!(null), max_upload), Ok(None));
        assert_eq!(parse_limit(LimitField::MaxImages, &json!(0), max_upload), Ok(Some(0)));
        assert_eq!(parse_limit(LimitField::MaxImages, &json!(100.0), max_upload), Ok(Some(100)));
        assert_eq!(parse_limit(LimitField::MaxUploadBytes, &json!(max_upload), max_upload), Ok(Some(max_upload)));
        for (field, bad) in [
            (LimitField::MaxImages, json!(-1)),
            (LimitField::MaxImages, json!(1.5)),
            (LimitField::MaxImages, json!("100")),
            (LimitField::MaxImages, json!(1_000_000_001)),
            (LimitField::MaxStorageBytes, json!(1u64 << 51)),
            (LimitField::MaxUploadBytes, json!(0)),
            (LimitField::MaxUploadBytes, json!(max_upload + 1)),
            (LimitField::UploadsPerHour, json!(0)),
            (LimitField::UploadsPerHour, json!([60])),
        ] {
            assert!(parse_limit(field, &bad, max_upload).is_err(), "{} = {bad} should be rejected", field.as_str());
        }
    }

    #[test]
    fn formats_must_be_a_list_of_known_names_without_repeats() {
        assert_eq!(parse_formats(&json!(["avif", "webp"])).map(|f| f.iter().count()), Ok(2));
        assert_eq!(parse_formats(&json!([])), Ok(Formats::default()));
        for bad in [json!("webp"), json!([1]), json!([null]), json!(["gif"]), json!(["webp", "webp"]), json!(["WebP"])]
        {
            assert!(parse_formats(&bad).is_err(), "{bad} should be rejected");
        }
    }
}
