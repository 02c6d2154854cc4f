//! The one place where errors become HTTP responses: RFC 9457 `application/problem+json`
//! with a stable machine-readable `type` per kind of problem.

use std::collections::BTreeMap;

use actix_web::http::header::{self, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use imageapi_shared::store::StoreError;
use serde::Serialize;
use utoipa::ToSchema;

use crate::repo::{QuotaRefusal, RepoError};
use imageapi_core::domain::Quota;

/// The media type of every error body.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// Suggested wait after a 507: room comes back when an operator acts, not in seconds.
pub const OUT_OF_SPACE_RETRY_AFTER_SECS: u32 = 60;

/// Field name → messages, for validation problems.
pub type FieldErrors = BTreeMap<String, Vec<String>>;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("authentication required: send Basic credentials or a Bearer token")]
    Unauthorized,
    #[error("{0}")]
    Forbidden(String),
    #[error("not found")]
    NotFound,
    #[error("this path does not answer that method; it answers {allow}")]
    MethodNotAllowed { allow: String },
    #[error("{0}")]
    Gone(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    BadRequest(String),
    #[error("the request has invalid fields")]
    Validation(FieldErrors),
    #[error("{0}")]
    PayloadTooLarge(String),
    #[error("{0}")]
    RequestTimeout(String),
    #[error("{0}")]
    UnsupportedMediaType(String),
    #[error("{0}")]
    Unprocessable(String),
    #[error("requested range not satisfiable")]
    RangeNotSatisfiable { size: u64 },
    #[error("{detail}")]
    Unavailable { detail: String, retry_after_secs: u32 },
    #[error("{detail}")]
    TooManyRequests { detail: String, retry_after_secs: u64 },
    /// Out of disk space: nothing was stored; a retry can work once there is room.
    #[error("{0}")]
    InsufficientStorage(String),
    /// An upload over one of the tier's limits: 403 for a quota (the user must delete or be
    /// moved to another tier), 429 with `Retry-After` for the upload rate.
    #[error("{}", quota_detail(.0))]
    QuotaExceeded(QuotaRefusal),
    #[error("internal error")]
    Internal(#[source] anyhow::Error),
}

impl ApiError {
    /// A validation problem on one field.
    pub fn field(field: &str, message: impl Into<String>) -> Self {
        Self::Validation(BTreeMap::from([(field.to_owned(), vec![message.into()])]))
    }

    pub fn internal(e: impl Into<anyhow::Error>) -> Self {
        Self::Internal(e.into())
    }

    /// 507: the server has no room to store what was sent; nothing was kept.
    pub fn out_of_space() -> Self {
        Self::InsufficientStorage("the server is out of storage space; nothing was stored, try again later".to_owned())
    }

    fn code(&self) -> &'static str {
        match self {
            Self::Unauthorized => "unauthorized",
            Self::Forbidden(_) => "forbidden",
            Self::NotFound => "not-found",
            Self::MethodNotAllowed { .. } => "method-not-allowed",
            Self::Gone(_) => "gone",
            Self::Conflict(_) => "conflict",
            Self::BadRequest(_) => "bad-request",
            Self::Validation(_) => "validation",
            Self::PayloadTooLarge(_) => "too-large",
            Self::RequestTimeout(_) => "request-timeout",
            Self::UnsupportedMediaType(_) => "unsupported-media-type",
            Self::Unprocessable(_) => "thumbnail-failed",
            Self::RangeNotSatisfiable { .. } => "range-not-satisfiable",
            Self::Unavailable { .. } => "unavailable",
            Self::TooManyRequests { .. } => "too-many-requests",
            Self::InsufficientStorage(_) => "insufficient-storage",
            Self::QuotaExceeded(r) if r.quota == Quota::UploadsPerHour => "upload-rate-exceeded",
            Self::QuotaExceeded(_) => "quota-exceeded",
            Self::Internal(_) => "internal",
        }
    }

    fn title(&self) -> &'static str {
        match self {
            Self::Unauthorized => "Unauthorized",
            Self::Forbidden(_) => "Forbidden",
            Self::NotFound => "Not Found",
            Self::MethodNotAllowed { .. } => "Method Not Allowed",
            Self::Gone(_) => "Gone",
            Self::Conflict(_) => "Conflict",
            Self::BadRequest(_) | Self::Validation(_) => "Bad Request",
            Self::PayloadTooLarge(_) => "Payload Too Large",
            Self::RequestTimeout(_) => "Request Timeout",
            Self::UnsupportedMediaType(_) => "Unsupported Media Type",
            Self::Unprocessable(_) => "Unprocessable Content",
            Self::RangeNotSatisfiable { .. } => "Range Not Satisfiable",
            Self::Unavailable { .. } => "Service Unavailable",
            Self::TooManyRequests { .. } => "Too Many Requests",
            Self::InsufficientStorage(_) => "Insufficient Storage",
            Self::QuotaExceeded(r) if r.quota == Quota::UploadsPerHour => "Upload Rate Exceeded",
            Self::QuotaExceeded(_) => "Quota Exceeded",
            Self::Internal(_) => "Internal Server Error",
        }
    }
}

/// An RFC 9457 problem document.
#[derive(Debug, Serialize, ToSchema)]
pub struct Problem {
    /// A URI naming the kind of problem, stable across releases.
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    pub status: u16,
    pub detail: String,
    /// Present on validation problems: messages per request field.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<BTreeMap<String, Vec<String>>>)]
    pub errors: Option<FieldErrors>,
    /// Present on `quota-exceeded` and `upload-rate-exceeded`: the tier limit the upload
    /// would exceed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub quota: Option<Quota>,
    /// With `quota`: where the user stands (images held, bytes stored, uploads in the last hour).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usage: Option<u64>,
    /// With `quota`: the tier's limit.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit: Option<u64>,
}

fn quota_detail(refusal: &QuotaRefusal) -> String {
    let QuotaRefusal { quota, usage, limit, retry_after_secs } = *refusal;
    match quota {
        Quota::MaxImages => {
            format!("your tier allows {limit} images and you hold {usage}: delete some before uploading more")
        }
        Quota::MaxStorageBytes => format!(
            "your tier allows {limit} bytes of storage (originals and thumbnails) and you use {usage}: \
             this upload would go over"
        ),
        Quota::UploadsPerHour => format!(
            "your tier allows {limit} uploads per hour and you made {usage} in the last hour: try again in {} s",
            retry_after_secs.unwrap_or(1)
        ),
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            Self::Unauthorized => StatusCode::UNAUTHORIZED,
            Self::Forbidden(_) => StatusCode::FORBIDDEN,
            Self::NotFound => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            Self::Gone(_) => StatusCode::GONE,
            Self::Conflict(_) => StatusCode::CONFLICT,
            Self::BadRequest(_) | Self::Validation(_) => StatusCode::BAD_REQUEST,
            Self::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::RequestTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            Self::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::Unprocessable(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Self::RangeNotSatisfiable { .. } => StatusCode::RANGE_NOT_SATISFIABLE,
            Self::Unavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
            Self::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::InsufficientStorage(_) => StatusCode::INSUFFICIENT_STORAGE,
            Self::QuotaExceeded(r) if r.quota == Quota::UploadsPerHour => StatusCode::TOO_MANY_REQUESTS,
            Self::QuotaExceeded(_) => StatusCode::FORBIDDEN,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        if let Self::Internal(e) = self {
            tracing::error!(error = ?e, "request failed");
        }
        let status = self.status_code();
        let detail = match self {
            Self::Validation(errors) => {
                let fields: Vec<&str> = errors.keys().map(String::as_str).collect();
                format!("invalid field(s): {}", fields.join(", "))
            }
            Self::Internal(_) => "the server failed to handle the request; it has been logged".to_owned(),
            other => other.to_string(),
        };
        let problem = Problem {
            kind: format!("https://imageapi.dev/problems/{}", self.code()),
            title: self.title().to_owned(),
            status: status.as_u16(),
            detail,
            errors: match self {
                Self::Validation(errors) => Some(errors.clone()),
                _ => None,
            },
            quota: None,
            usage: None,
            limit: None,
        };
        let problem = match self {
            Self::QuotaExceeded(r) => {
                Problem { quota: Some(r.quota), usage: Some(r.usage), limit: Some(r.limit), ..problem }
            }
            _ => problem,
        };
        let mut response = HttpResponse::build(status);
        response.insert_header((header::CONTENT_TYPE, PROBLEM_JSON));
        match self {
            Self::Unauthorized => {
                response.insert_header((
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static(r#"Basic realm="imageapi", charset="UTF-8", Bearer realm="imageapi""#),
                ));
            }
            Self::Unavailable { retry_after_secs, .. } => {
                response.insert_header((header::RETRY_AFTER, retry_after_secs.to_string()));
            }
            Self::TooManyRequests { retry_after_secs, .. } => {
                response.insert_header((header::RETRY_AFTER, retry_after_secs.to_string()));
            }
            Self::InsufficientStorage(_) => {
                response.insert_header((header::RETRY_AFTER, OUT_OF_SPACE_RETRY_AFTER_SECS.to_string()));
            }
            Self::QuotaExceeded(QuotaRefusal { retry_after_secs: Some(secs), .. }) => {
                response.insert_header((header::RETRY_AFTER, secs.to_string()));
            }
            Self::MethodNotAllowed { allow } => {
                if let Ok(value) = HeaderValue::from_str(allow) {
                    response.insert_header((header::ALLOW, value));
                }
            }
            Self::RangeNotSatisfiable { size } => {
                response.insert_header((header::CONTENT_RANGE, format!("bytes */{size}")));
            }
            _ => {}
        }
        response.body(serde_json::to_string(&problem).unwrap_or_default())
    }
}

impl From<RepoError> for ApiError {
    fn from(e: RepoError) -> Self {
        match e {
            RepoError::NotFound => Self::NotFound,
            RepoError::Conflict(msg) => Self::Conflict(msg),
            // The database is away or every connection busy: the client may try again.
            RepoError::Unavailable(_) => {
                tracing::error!(error = %e, "metadata database unavailable");
                Self::Unavailable {
                    detail: "the metadata database is unavailable; try again shortly".to_owned(),
                    retry_after_secs: 2,
                }
            }
            // Logged once where it is detected (the repository), not per request.
            RepoError::OutOfSpace { .. } => Self::out_of_space(),
            RepoError::Quota(refusal) => Self::QuotaExceeded(refusal),
            other => Self::internal(other),
        }
    }
}

impl From<crate::passwords::PoolError> for ApiError {
    fn from(e: crate::passwords::PoolError) -> Self {
        use crate::passwords::PoolError;
        match e {
            PoolError::Busy => Self::Unavailable { detail: e.to_string(), retry_after_secs: 1 },
            other => Self::internal(other),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            // The store (S3) is away: the client may try again; nothing was recorded.
            StoreError::Unavailable { .. } => {
                tracing::error!(error = %e, "blob store unavailable");
                Self::Unavailable {
                    detail: "the blob store is unavailable; try again shortly".into(),
                    retry_after_secs: 5,
                }
            }
            StoreError::OutOfSpace { .. } => {
                tracing::warn!(error = %e, "refused: the blob store is out of space");
                Self::out_of_space()
            }
            other => Self::internal(other),
        }
    }
}

impl From<actix_web::error::BlockingError> for ApiError {
    fn from(e: actix_web::error::BlockingError) -> Self {
        Self::internal(anyhow::anyhow!("blocking task failed: {e}"))
    }
}

/// A 404 that is not a problem yet (the docs page's file server answers a missing file with
/// an empty 404) becomes the same problem as every other 404.
pub fn problem_for_bare_not_found<B>(
    res: actix_web::dev::ServiceResponse<B>,
) -> actix_web::Result<actix_web::middleware::ErrorHandlerResponse<B>> {
    use actix_web::middleware::ErrorHandlerResponse;
    let is_problem = res.headers().get(header::CONTENT_TYPE).is_some_and(|v| v.as_bytes() == PROBLEM_JSON.as_bytes());
    if is_problem {
        return Ok(ErrorHandlerResponse::Response(res.map_into_left_body()));
    }
    let (req, _) = res.into_parts();
    let problem = ApiError::NotFound.error_response();
    Ok(ErrorHandlerResponse::Response(actix_web::dev::ServiceResponse::new(req, problem).map_into_right_body()))
}

/// Maps actix's extractor errors (malformed JSON, bad query or path) into problems.
pub fn json_error(err: actix_web::error::JsonPayloadError, _req: &actix_web::HttpRequest) -> actix_web::Error {
    use actix_web::error::JsonPayloadError as E;
    match err {
        E::Overflow { limit } | E::OverflowKnownLength { limit, .. } => {
            ApiError::PayloadTooLarge(format!("JSON bodies are limited to {limit} bytes")).into()
        }
        E::ContentType => ApiError::UnsupportedMediaType("send the body as application/json".to_owned()).into(),
        E::Deserialize(e) => ApiError::BadRequest(format!("malformed JSON body: {e}")).into(),
        other => ApiError::BadRequest(format!("unreadable JSON body: {other}")).into(),
    }
}

pub fn query_error(err: actix_web::error::QueryPayloadError, _req: &actix_web::HttpRequest) -> actix_web::Error {
    ApiError::BadRequest(format!("invalid query string: {err}")).into()
}

pub fn path_error(_err: actix_web::error::PathError, _req: &actix_web::HttpRequest) -> actix_web::Error {
    ApiError::NotFound.into()
}
