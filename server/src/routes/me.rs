//! `GET /api/v1/me`: who am I and what does my tier grant.

use actix_web::{get, web, HttpResponse};

use crate::error::ApiError;
use crate::routes::extract::AuthUser;
use crate::state::AppState;
use crate::views::tier_view;
use imageapi_core::api::MeView;

/// The authenticated user with their tier's grants.
#[utoipa::path(
    operation_id = "get_me",
    tag = "account",
    responses((status = 200, body = MeView), (status = 401, body = crate::error::Problem)),
    security(("basic" = []), ("bearer" = []))
)]
#[get("/me")]
pub async fn me(state: web::Data<AppState>, AuthUser(user): AuthUser) -> Result<HttpResponse, ApiError> {
    let tier_id = user.tier.clone();
    let tier = state.repo.tier(&tier_id).await?;
    Ok(HttpResponse::Ok().json(MeView {
        id: user.id.to_string(),
        username: user.username.to_string(),
        is_admin: user.is_admin,
        tier: tier_view(&tier, None),
    }))
}
