//! HTTP routes, thin: parse → domain → repository / store / queue → respond.

pub mod admin;
pub mod extract;
pub mod health;
pub mod images;
pub mod links;
pub mod me;
pub mod media;
pub mod paging;

use actix_web::web;

use crate::error::ApiError;
use crate::repo::{ImageRecord, UserRecord};
use crate::state::AppState;
use imageapi_core::domain::ImageId;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(health::healthz).service(health::readyz).service(health::metrics).service(media::public_link).service(
        web::scope("/api/v1")
            .service(me::me)
            .service(images::upload)
            .service(images::list)
            .service(images::detail)
            .service(images::delete)
            .service(media::thumbnail)
            .service(media::original)
            .service(links::create)
            .service(links::list)
            .service(links::revoke)
            .configure(admin::configure),
    );
}

/// Loads any user's image (admins); a malformed id is as unknown as a missing one.
pub async fn any_image(state: &AppState, raw: &str) -> Result<ImageRecord, ApiError> {
    let id = ImageId::parse(raw).ok_or(ApiError::NotFound)?;
    Ok(state.repo.image(id).await?)
}

/// Loads an image the user owns. Someone else's image is indistinguishable from a missing
/// one (404), so users never learn which ids exist.
pub async fn owned_image(state: &AppState, user: &UserRecord, id: &str) -> Result<ImageRecord, ApiError> {
    let image = any_image(state, id).await?;
    if image.owner != user.id {
        return Err(ApiError::NotFound);
    }
    Ok(image)
}
