//! The extractors every authenticated route takes: [`AuthUser`] and [`AdminUser`], which ask
//! the app's [`crate::auth::Authenticator`] about the request's credentials.

use actix_web::dev::Payload;
use actix_web::http::header::AUTHORIZATION;
use actix_web::{web, FromRequest, HttpRequest};
use futures_util::future::LocalBoxFuture;

use crate::auth::client_address;
use crate::error::ApiError;
use crate::repo::UserRecord;
use crate::state::AppState;

/// An authenticated, active user.
pub struct AuthUser(pub UserRecord);

impl FromRequest for AuthUser {
    type Error = ApiError;
    type Future = LocalBoxFuture<'static, Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let state = req.app_data::<web::Data<AppState>>().cloned();
        let header = req.headers().get(AUTHORIZATION).cloned();
        let client = state.as_ref().map(|s| client_address(req, &s.trusted_proxies));
        Box::pin(async move {
            let (Some(state), Some(client)) = (state, client) else {
                return Err(ApiError::internal(anyhow::anyhow!("app state missing")));
            };
            state.auth.clone().authenticate(header, client).await.map(AuthUser)
        })
    }
}

/// An authenticated, active admin; 403 for other users.
pub struct AdminUser(pub UserRecord);

impl FromRequest for AdminUser {
    type Error = ApiError;
    type Future = LocalBoxFuture<'static, Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let user = AuthUser::from_request(req, payload);
        Box::pin(async move {
            let AuthUser(user) = user.await?;
            if user.is_admin {
                Ok(AdminUser(user))
            } else {
                Err(ApiError::Forbidden("this endpoint is for admins".to_owned()))
            }
        })
    }
}
