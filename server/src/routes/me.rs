//! `GET /api/v1/me`: who am I, what does my tier grant, and where do I stand against its
//! limits.

use actix_web::{get, web, HttpResponse};

use crate::error::ApiError;
use crate::routes::extract::AuthUser;
use crate::state::AppState;
use crate::views::{tier_view, usage_view};
use imageapi_core::api::MeView;
use imageapi_core::domain::TierLimits;

/// The authenticated user with their tier's grants, the limits that apply (`max_upload_bytes`
/// never above the server's own) and their usage against them.
#[utoipa::path(
    operation_id = "get_me",
    tag = "account",
    responses((status = 200, body = MeView), (status = 401, body = crate::error::Problem)),
    security(("basic" = []), ("bearer" = []))
)]
#[get("/me")]
pub async fn me(state: web::Data<AppState>, AuthUser(user): AuthUser) -> Result<HttpResponse, ApiError> {
    let (tier, usage) = futures_util::try_join!(state.repo.tier(&user.tier), state.repo.usage(user.id))?;
    let limits = TierLimits { max_upload_bytes: Some(tier.limits.upload_limit(state.limits.max_bytes)), ..tier.limits };
    Ok(HttpResponse::Ok().json(MeView {
        id: user.id.to_string(),
        username: user.username.to_string(),
        is_admin: user.is_admin,
        tier: tier_view(&tier, None),
        limits,
        usage: usage_view(&usage, state.clock.now()),
    }))
}
