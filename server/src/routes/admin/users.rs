//! Admin: users and their API tokens.

use actix_web::{delete, get, patch, post, web, HttpResponse};
use imageapi_core::domain::{Password, TierId, TierLimits, TokenId, UserId, Username};

use crate::error::{ApiError, FieldErrors};
use crate::repo::{RepoError, TokenRecord, Usage, UserEdit, UserRecord};
use crate::routes::extract::AdminUser;
use crate::secrets::new_secret;
use crate::services::images::delete_image;
use crate::state::AppState;
use crate::views::{self, token_view, UpdateUser};
use imageapi_core::api::{CreateUser, NewTokenView, UserList, UserView};

/// API tokens carry this prefix so they are recognisable in logs and secret scanners.
const API_TOKEN_PREFIX: &str = "iat_";

fn user_id(raw: &str) -> Result<UserId, ApiError> {
    UserId::parse(raw).ok_or(ApiError::NotFound)
}

fn tier_field(raw: &str, errors: &mut FieldErrors) -> Option<TierId> {
    TierId::parse(raw).map_err(|e| errors.insert("tier".into(), vec![e.to_string()])).ok()
}

/// A well-formed tier id that names no tier is a conflict with what exists (409), as a
/// foreign-key violation is, not a malformed request: no schema can say which tiers exist.
async fn require_tier(state: &AppState, id: &TierId) -> Result<(), ApiError> {
    match state.repo.tier(id).await {
        Ok(_) => Ok(()),
        Err(RepoError::NotFound) => Err(ApiError::Conflict(format!("no tier '{id}' exists; create it first"))),
        Err(e) => Err(e.into()),
    }
}

async fn hash(state: &AppState, password: Password) -> Result<String, ApiError> {
    Ok(state.passwords.hash(password.expose().to_owned()).await?)
}

async fn load_user_view(state: &AppState, id: UserId, with_tokens: bool) -> Result<UserView, ApiError> {
    let repo = &state.repo;
    let user = repo.user(id).await?;
    let tokens = if with_tokens { Some(repo.user_tokens(id).await?.iter().map(token_view).collect()) } else { None };
    let limits = tier_limits(state, &user.tier).await?;
    Ok(views::user_view(&user, &repo.usage(id).await?, limits, state.clock.now(), tokens))
}

/// A tier's limits; unlimited if the tier is gone (a user is never left on a missing tier,
/// but a view should not fail for it).
async fn tier_limits(state: &AppState, tier: &TierId) -> Result<TierLimits, ApiError> {
    match state.repo.tier(tier).await {
        Ok(tier) => Ok(tier.limits),
        Err(RepoError::NotFound) => Ok(TierLimits::UNLIMITED),
        Err(e) => Err(e.into()),
    }
}

/// All users, with what their images take up.
#[utoipa::path(operation_id = "admin_list_users", tag = "admin", responses((status = 200, body = UserList), (status = 403, body = crate::error::Problem)), security(("basic" = []), ("bearer" = [])))]
#[get("/admin/users")]
pub async fn list(state: web::Data<AppState>, _admin: AdminUser) -> Result<HttpResponse, ApiError> {
    let (users, tiers) = futures_util::try_join!(state.repo.users(), state.repo.tiers())?;
    let limits: std::collections::HashMap<TierId, TierLimits> = tiers.into_iter().map(|t| (t.id, t.limits)).collect();
    let now = state.clock.now();
    let mut results = Vec::with_capacity(users.len());
    for user in &users {
        let tier_limits = limits.get(&user.tier).copied().unwrap_or(TierLimits::UNLIMITED);
        results.push(views::user_view(user, &state.repo.usage(user.id).await?, tier_limits, now, None));
    }
    Ok(HttpResponse::Ok().json(UserList { results }))
}

/// Create a user.
#[utoipa::path(
    operation_id = "admin_create_user",
    tag = "admin",
    request_body = CreateUser,
    responses((status = 201, body = UserView), (status = 400, body = crate::error::Problem), (status = 409, description = "username taken", body = crate::error::Problem)),
    security(("basic" = []), ("bearer" = []))
)]
#[post("/admin/users")]
pub async fn create(
    state: web::Data<AppState>,
    _admin: AdminUser,
    body: web::Json<CreateUser>,
) -> Result<HttpResponse, ApiError> {
    let mut errors = FieldErrors::new();
    let username =
        Username::parse(&body.username).map_err(|e| errors.insert("username".into(), vec![e.to_string()])).ok();
    let password =
        Password::parse(&body.password).map_err(|e| errors.insert("password".into(), vec![e.to_string()])).ok();
    let tier = tier_field(&body.tier, &mut errors);
    let (Some(username), Some(password), Some(tier)) = (username, password, tier) else {
        return Err(ApiError::Validation(errors));
    };
    require_tier(&state, &tier).await?;
    let user = UserRecord {
        id: UserId::from_ulid(ulid::Ulid::new()),
        username,
        password_hash: hash(&state, password).await?,
        tier,
        is_active: true,
        is_admin: body.is_admin,
        created_at: state.clock.now(),
        credentials_version: 0,
    };
    state.repo.create_user(&user).await.map_err(|e| match e {
        // The tier was deleted since it was checked.
        RepoError::NotFound => ApiError::Conflict(format!("no tier '{}' exists; create it first", user.tier)),
        e => e.into(),
    })?;
    tracing::info!(user = %user.id, username = %user.username, "user created");
    let limits = tier_limits(&state, &user.tier).await?;
    Ok(HttpResponse::Created().json(views::user_view(&user, &Usage::default(), limits, state.clock.now(), None)))
}

/// One user, with their API tokens (ids only).
#[utoipa::path(
    operation_id = "admin_get_user",
    tag = "admin",
    params(("id" = String, Path, description = "user id", pattern = "^[0-9A-HJKMNP-TV-Za-hjkmnp-tv-z]{26}$")),
    responses((status = 200, body = UserView), (status = 404, body = crate::error::Problem)),
    security(("basic" = []), ("bearer" = []))
)]
#[get("/admin/users/{id}")]
pub async fn detail(
    state: web::Data<AppState>,
    _admin: AdminUser,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(load_user_view(&state, user_id(&path)?, true).await?))
}

/// Change a user's tier, active flag, admin flag or password.
///
/// A tier change applies at once to every existing image: heights no longer granted answer
/// 403, new heights are made in the background (pending, then ready).
#[utoipa::path(
    operation_id = "admin_update_user",
    tag = "admin",
    params(("id" = String, Path, description = "user id", pattern = "^[0-9A-HJKMNP-TV-Za-hjkmnp-tv-z]{26}$")),
    request_body = UpdateUser,
    responses(
        (status = 200, body = UserView),
        (status = 400, body = crate::error::Problem),
        (status = 404, body = crate::error::Problem),
        (status = 409, description = "locking yourself out", body = crate::error::Problem),
    ),
    security(("basic" = []), ("bearer" = []))
)]
#[patch("/admin/users/{id}")]
pub async fn update(
    state: web::Data<AppState>,
    AdminUser(admin): AdminUser,
    path: web::Path<String>,
    body: web::Json<UpdateUser>,
) -> Result<HttpResponse, ApiError> {
    let id = user_id(&path)?;
    if id == admin.id && (body.is_admin == Some(false) || body.is_active == Some(false)) {
        return Err(ApiError::Conflict("you cannot deactivate yourself or remove your own admin rights".to_owned()));
    }
    state.repo.user(id).await?;
    let mut errors = FieldErrors::new();
    let tier = body.tier.as_deref().and_then(|raw| tier_field(raw, &mut errors));
    let password = match &body.password {
        Some(raw) => Password::parse(raw).map_err(|e| errors.insert("password".into(), vec![e.to_string()])).ok(),
        None => None,
    };
    if !errors.is_empty() {
        return Err(ApiError::Validation(errors));
    }
    if let Some(tier) = &tier {
        require_tier(&state, tier).await?;
    }
    let password_hash = match password {
        Some(p) => Some(hash(&state, p).await?),
        None => None,
    };
    let tier_changed = tier.is_some();
    let edit = UserEdit { tier, is_active: body.is_active, is_admin: body.is_admin, password_hash };
    let user = state.repo.update_user(id, &edit).await?;
    // Deactivation kills the user's links for good (a tier change is reconciled in the
    // background, links included).
    if body.is_active == Some(false) {
        state.repo.revoke_links_not_granted(&user, &state.repo.tier(&user.tier).await?).await?;
    }
    if tier_changed {
        state.thumbnails.wake_reconciler();
    }
    Ok(HttpResponse::Ok().json(load_user_view(&state, id, true).await?))
}

/// Delete a user with their images, links and tokens. You cannot delete yourself.
#[utoipa::path(
    operation_id = "admin_delete_user",
    tag = "admin",
    params(("id" = String, Path, description = "user id", pattern = "^[0-9A-HJKMNP-TV-Za-hjkmnp-tv-z]{26}$")),
    responses((status = 204), (status = 404, body = crate::error::Problem), (status = 409, description = "deleting yourself", body = crate::error::Problem)),
    security(("basic" = []), ("bearer" = []))
)]
#[delete("/admin/users/{id}")]
pub async fn delete(
    state: web::Data<AppState>,
    AdminUser(admin): AdminUser,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = user_id(&path)?;
    if id == admin.id {
        return Err(ApiError::Conflict("you cannot delete your own account".to_owned()));
    }
    // Deactivate first so the user cannot upload while their images are being removed.
    state.repo.update_user(id, &UserEdit { is_active: Some(false), ..UserEdit::default() }).await?;
    for image in state.repo.user_image_ids(id).await? {
        match delete_image(&state, image).await {
            Ok(()) | Err(ApiError::NotFound) => {}
            Err(e) => return Err(e),
        }
    }
    state.repo.delete_user(id).await?;
    tracing::info!(user = %id, "user deleted");
    Ok(HttpResponse::NoContent().finish())
}

/// Issue an API token for a user. The token is shown only in this response.
#[utoipa::path(
    operation_id = "admin_issue_token",
    tag = "admin",
    params(("id" = String, Path, description = "user id", pattern = "^[0-9A-HJKMNP-TV-Za-hjkmnp-tv-z]{26}$")),
    responses((status = 201, body = NewTokenView), (status = 404, body = crate::error::Problem)),
    security(("basic" = []), ("bearer" = []))
)]
#[post("/admin/users/{id}/tokens")]
pub async fn issue_token(
    state: web::Data<AppState>,
    _admin: AdminUser,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let user = user_id(&path)?;
    state.repo.user(user).await?;
    let (token, hash) = new_secret(API_TOKEN_PREFIX);
    let record =
        TokenRecord { id: TokenId::from_ulid(ulid::Ulid::new()), user_id: user, created_at: state.clock.now() };
    let id = record.id;
    state.repo.insert_token(&record, &hash).await?;
    Ok(HttpResponse::Created().json(NewTokenView { id: id.to_string(), token }))
}

/// Revoke one of a user's API tokens.
#[utoipa::path(
    operation_id = "admin_revoke_token",
    tag = "admin",
    params(("id" = String, Path, description = "user id", pattern = "^[0-9A-HJKMNP-TV-Za-hjkmnp-tv-z]{26}$"), ("token_id" = String, Path, description = "token id", pattern = "^[0-9A-HJKMNP-TV-Za-hjkmnp-tv-z]{26}$")),
    responses((status = 204), (status = 404, body = crate::error::Problem)),
    security(("basic" = []), ("bearer" = []))
)]
#[delete("/admin/users/{id}/tokens/{token_id}")]
pub async fn revoke_token(
    state: web::Data<AppState>,
    _admin: AdminUser,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (user, token) = path.into_inner();
    let user = user_id(&user)?;
    let token = TokenId::parse(&token).ok_or(ApiError::NotFound)?;
    state.repo.delete_token(user, token).await?;
    Ok(HttpResponse::NoContent().finish())
}
