//! The bytes: thumbnails, originals, and the public expiring-link fetch.
//!
//! Every binary response carries Content-Type, Content-Length, ETag, Cache-Control and
//! `X-Content-Type-Options: nosniff`, answers `If-None-Match` with 304 and a single
//! `Range: bytes=…` with 206. Bodies stream from the blob store in chunks (bounded memory).

use actix_web::body::SizedStream;
use actix_web::http::header::{self, HeaderMap};
use actix_web::{route, web, HttpRequest, HttpResponse};
use imageapi_core::domain::{Height, ImageId, Variant};
use imageapi_core::image::ThumbnailFormat;
use imageapi_shared::store::{BlobBody, BlobKey, ByteRange, StoreError};

use crate::error::ApiError;
use crate::repo::{ImageRecord, RepoError, ThumbState};
use crate::routes::extract::{AdminUser, AuthUser};
use crate::routes::{any_image, owned_image};
use crate::secrets::sha256;
use crate::services::{grants, negotiation};
use crate::state::AppState;

/// Who a response goes to, which decides how it may be cached and what its ETag shows.
#[derive(Clone, Copy)]
enum Audience {
    /// The owner (authenticated).
    Owner,
    /// An admin looking at someone's image (moderation): never kept by a shared cache.
    Admin,
    /// Anyone holding a link, identified by its token's hash.
    Link([u8; 32]),
}

impl Audience {
    fn cache_control(self) -> &'static str {
        match self {
            // Owners may cache their own media; access can change with the tier: privately.
            Audience::Owner => "private, max-age=3600",
            Audience::Admin => "private, no-cache",
            // Links can be revoked at any moment: no cache may keep a copy.
            Audience::Link(_) => "no-store",
        }
    }

    /// The ETag as sent. Link holders get one derived from the link and the blob's own tag,
    /// which changes when the bytes do but does not show the image's id.
    fn etag(self, blob_etag: &str) -> String {
        match self {
            Audience::Owner | Audience::Admin => blob_etag.to_owned(),
            Audience::Link(token_hash) => {
                let mut input = token_hash.to_vec();
                input.extend_from_slice(blob_etag.as_bytes());
                let digest = sha256(&input);
                let hex: String = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
                format!("\"l-{hex}\"")
            }
        }
    }
}
/// Suggested wait before asking again for a pending thumbnail.
const RETRY_AFTER_SECS: u32 = 2;

struct Blob {
    image: ImageId,
    key: BlobKey,
    content_type: &'static str,
    size: u64,
    etag: String,
    /// Chosen by the request's `Accept` (the answer says `Vary: Accept`).
    negotiated: bool,
}

/// Parses a single `bytes=` range against `size`. `Ok(None)` serves the whole blob (no header,
/// or a form we ignore as RFC 9110 allows: several ranges, bad syntax).
fn parse_range(value: Option<&str>, size: u64) -> Result<Option<ByteRange>, ApiError> {
    let Some(spec) = value.and_then(|v| v.trim().strip_prefix("bytes=")) else {
        return Ok(None);
    };
    if spec.contains(',') {
        return Ok(None);
    }
    let Some((start, end)) = spec.trim().split_once('-') else {
        return Ok(None);
    };
    let (start, end) = match (start.trim(), end.trim()) {
        ("", "") => return Ok(None),
        ("", suffix) => match decimal(suffix) {
            Some(0) => return Err(ApiError::RangeNotSatisfiable { size }),
            Some(n) => (size.saturating_sub(n), size.saturating_sub(1)),
            None => return Ok(None),
        },
        (start, "") => match decimal(start) {
            Some(s) => (s, size.saturating_sub(1)),
            None => return Ok(None),
        },
        (start, end) => match (decimal(start), decimal(end)) {
            (Some(s), Some(e)) if s <= e => (s, e.min(size.saturating_sub(1))),
            _ => return Ok(None),
        },
    };
    if size == 0 || start >= size {
        return Err(ApiError::RangeNotSatisfiable { size });
    }
    Ok(Some(ByteRange { start, end }))
}

fn etag_matches(headers: &HeaderMap, etag: &str) -> bool {
    headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').map(str::trim).any(|t| t == "*" || t.trim_start_matches("W/") == etag))
}

async fn serve(req: &HttpRequest, state: &AppState, blob: Blob, audience: Audience) -> Result<HttpResponse, ApiError> {
    let etag = audience.etag(&blob.etag);
    let common = |builder: &mut actix_web::HttpResponseBuilder| {
        builder
            .insert_header((header::ETAG, etag.clone()))
            .insert_header((header::CACHE_CONTROL, audience.cache_control()))
            .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"));
        if blob.negotiated {
            builder.insert_header((header::VARY, "Accept"));
        }
    };
    if etag_matches(req.headers(), &etag) {
        let mut builder = HttpResponse::NotModified();
        common(&mut builder);
        return Ok(builder.finish());
    }
    // If-Range: a range only applies while the client's copy is still current.
    let range_header = req.headers().get(header::RANGE).and_then(|v| v.to_str().ok()).filter(|_| {
        req.headers().get(header::IF_RANGE).and_then(|v| v.to_str().ok()).is_none_or(|tag| tag.trim() == etag)
    });
    let range = parse_range(range_header, blob.size)?;
    let body = match state.store.open(&blob.key, range).await {
        Ok(body) => body,
        // Deleted between reading its record and opening its blob (the owner or an admin
        // deleted the image meanwhile): gone, as a request a moment later would find.
        Err(StoreError::NotFound(_)) => {
            return Err(match state.repo.image(blob.image).await {
                Err(RepoError::NotFound) => ApiError::NotFound,
                Err(e) => e.into(),
                Ok(_) => ApiError::internal(anyhow::anyhow!("blob {} is missing", blob.key.as_str())),
            });
        }
        Err(other) => return Err(other.into()),
    };
    let mut builder = match range {
        Some(r) => {
            let mut b = HttpResponse::PartialContent();
            b.insert_header((header::CONTENT_RANGE, format!("bytes {}-{}/{}", r.start, r.end, blob.size)));
            b
        }
        None => HttpResponse::Ok(),
    };
    common(&mut builder);
    builder.insert_header((header::CONTENT_TYPE, blob.content_type)).insert_header((header::ACCEPT_RANGES, "bytes"));
    Ok(match body {
        BlobBody::Whole(bytes) => builder.body(bytes),
        BlobBody::Stream { len, stream } => builder.body(SizedStream::new(len, stream)),
    })
}

fn thumbnail_blob(image: &ImageRecord, height: u32, variant: ThumbnailFormat, size: u64, negotiated: bool) -> Blob {
    let format = image.format;
    // Each format its own tag (the source's keeps the tag it always had).
    let etag = match variant.extra() {
        None => format!("\"{}-{height}-{size}\"", image.id),
        Some(extra) => format!("\"{}-{height}-{extra}-{size}\"", image.id),
    };
    Blob {
        image: image.id,
        key: BlobKey::thumbnail(image.id, height, format, variant),
        content_type: variant.mime(format),
        size,
        etag,
        negotiated,
    }
}

fn original_blob(image: &ImageRecord) -> Blob {
    let format = image.format;
    Blob {
        image: image.id,
        key: BlobKey::original(image.id),
        content_type: format.mime(),
        size: image.size_bytes,
        etag: format!("\"{}\"", image.id),
        negotiated: false,
    }
}

/// A thumbnail named in a path: its height, and the format its extension names, if any.
struct ThumbnailPath {
    height: Height,
    extension: Option<String>,
}

/// `200`, or `200.webp` (`.avif`, `.jpg`, `.jpeg`, `.png`). Anything but a valid height,
/// written the one way (`200`: not `0200`, `+200` or `%32%30%30`), names no thumbnail (404).
/// One URL per thumbnail keeps caches from holding copies under several names.
fn thumbnail_path(req: &HttpRequest, raw: &str) -> Result<ThumbnailPath, ApiError> {
    let (digits, extension) = match raw.split_once('.') {
        Some((digits, extension)) => (digits, Some(extension.to_owned())),
        None => (raw, None),
    };
    let canonical = decimal(digits).filter(|h| h.to_string() == digits);
    // The router decodes percent-escapes; the path as sent must have had the digits themselves.
    let as_sent = req.path().ends_with(&format!("/{raw}"));
    let height = canonical
        .filter(|_| as_sent)
        .and_then(|h| Height::parse(i64::try_from(h).ok()?).ok())
        .ok_or(ApiError::NotFound)?;
    Ok(ThumbnailPath { height, extension })
}

/// The formats to try, best first: the one an extension names (404 if the image cannot have
/// it), else those `Accept` asks for among `available`. Says whether it negotiated.
fn candidates(
    req: &HttpRequest,
    image: &ImageRecord,
    extension: Option<&str>,
    available: &[ThumbnailFormat],
) -> Result<(Vec<ThumbnailFormat>, bool), ApiError> {
    match extension {
        Some(extension) => {
            let format = negotiation::by_extension(extension, image.format).ok_or(ApiError::NotFound)?;
            Ok((vec![format], false))
        }
        None => {
            let accept = req.headers().get(header::ACCEPT).and_then(|v| v.to_str().ok());
            Ok((negotiation::by_accept(accept, available, image.format), true))
        }
    }
}

/// ASCII digits only (`str::parse` also takes a sign).
fn decimal(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// Waits (briefly) for the best of `candidates` and serves it, or explains why not.
async fn serve_thumbnail(
    req: &HttpRequest,
    state: &AppState,
    image: &ImageRecord,
    height: u32,
    (candidates, negotiated): (Vec<ThumbnailFormat>, bool),
    audience: Audience,
) -> Result<HttpResponse, ApiError> {
    let (format, variant_state) =
        state.thumbnails.wait_for(image.id, height, &candidates, state.thumbnail_wait).await?;
    let name = match format.extra() {
        None => format!("{height}px thumbnail"),
        Some(extra) => format!("{height}px {} thumbnail", extra.as_str().to_uppercase()),
    };
    match variant_state {
        ThumbState::Ready { size_bytes, .. } => {
            serve(req, state, thumbnail_blob(image, height, format, size_bytes, negotiated), audience).await
        }
        ThumbState::Pending => Err(ApiError::Unavailable {
            detail: format!("the {name} is still being made; try again shortly"),
            retry_after_secs: RETRY_AFTER_SECS,
        }),
        ThumbState::Failed { reason } => {
            Err(ApiError::Unprocessable(format!("the {name} could not be made: {reason}")))
        }
    }
}

/// A thumbnail's bytes, in the format `Accept` prefers or the extension names.
///
/// `{height}` alone negotiates among the formats your tier grants: AVIF, then WebP, then the
/// source's own, as `Accept` allows (q-values honoured, `q=0` excludes; no header, only
/// wildcards, or a malformed one give the source's format); the answer carries `Vary: Accept`.
/// `{height}.webp`, `.avif`, `.jpg`/`.jpeg` (JPEG images) or `.png` (PNG images) names the
/// format. A pending thumbnail is waited for up to `IMAGEAPI_THUMBNAIL_WAIT_SECS`, then 503
/// with `Retry-After`. A failed one is 422 with the reason.
#[utoipa::path(
    operation_id = "get_thumbnail",
    method(get, head),
    path = "/images/{id}/thumbnails/{height}",
    tag = "images",
    params(("id" = String, Path, description = "image id", pattern = "^[0-9A-HJKMNP-TV-Za-hjkmnp-tv-z]{26}$"), ("height" = String, Path, pattern = r"^[1-9][0-9]{0,3}(\.(jpg|jpeg|png|webp|avif))?$", description = "a height your tier grants, optionally with a format's extension: `200`, `200.webp`"), ("Accept" = Option<String>, Header, description = "the formats you take, e.g. `image/avif,image/webp,*/*`")),
    responses(
        (status = 200, description = "the thumbnail (image/jpeg, image/png, image/webp or image/avif)", content_type = "image/*"),
        (status = 206, description = "the requested range"),
        (status = 304, description = "not modified (If-None-Match)"),
        (status = 403, description = "your tier does not grant this height or format", body = crate::error::Problem),
        (status = 416, description = "the range is outside the file", body = crate::error::Problem),
        (status = 404, body = crate::error::Problem),
        (status = 422, description = "the thumbnail could not be made", body = crate::error::Problem),
        (status = 503, description = "still pending; see Retry-After", body = crate::error::Problem),
    ),
    security(("basic" = []), ("bearer" = []))
)]
#[route("/images/{id}/thumbnails/{height}", method = "GET", method = "HEAD")]
pub async fn thumbnail(
    req: HttpRequest,
    state: web::Data<AppState>,
    AuthUser(user): AuthUser,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (id, raw) = path.into_inner();
    let image = owned_image(&state, &user, &id).await?;
    let path = thumbnail_path(&req, &raw)?;
    let tier = grants::tier_of(state.repo.as_ref(), &user).await?;
    grants::require_variant(&tier, Variant::Thumbnail(path.height))?;
    let chosen = candidates(&req, &image, path.extension.as_deref(), &tier.thumbnail_formats())?;
    // Negotiation only offers granted formats; an extension may name any.
    if let (false, [named]) = (chosen.1, chosen.0.as_slice()) {
        grants::require_format(&tier, *named)?;
    }
    serve_thumbnail(&req, &state, &image, path.height.get(), chosen, Audience::Owner).await
}

/// Any recorded thumbnail of any user's image, whatever the owner's tier grants now (the
/// terminal UI's previews).
#[utoipa::path(
    operation_id = "admin_get_thumbnail",
    method(get, head),
    path = "/admin/images/{id}/thumbnails/{height}",
    tag = "admin",
    params(("id" = String, Path, description = "image id", pattern = "^[0-9A-HJKMNP-TV-Za-hjkmnp-tv-z]{26}$"), ("height" = String, Path, pattern = r"^[1-9][0-9]{0,3}(\.(jpg|jpeg|png|webp|avif))?$", description = "a height the image has a thumbnail of, optionally with a format's extension"), ("Accept" = Option<String>, Header, description = "the formats you take")),
    responses(
        (status = 200, description = "the thumbnail (image/jpeg or image/png)", content_type = "image/*"),
        (status = 206, description = "the requested range"),
        (status = 304, description = "not modified (If-None-Match)"),
        (status = 416, description = "the range is outside the file", body = crate::error::Problem),
        (status = 404, description = "no such image, or no thumbnail of this height", body = crate::error::Problem),
        (status = 422, description = "the thumbnail could not be made", body = crate::error::Problem),
        (status = 503, description = "still pending; see Retry-After", body = crate::error::Problem),
    ),
    security(("basic" = []), ("bearer" = []))
)]
#[route("/admin/images/{id}/thumbnails/{height}", method = "GET", method = "HEAD")]
pub async fn admin_thumbnail(
    req: HttpRequest,
    state: web::Data<AppState>,
    _admin: AdminUser,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (id, raw) = path.into_inner();
    let image = any_image(&state, &id).await?;
    let path = thumbnail_path(&req, &raw)?;
    let height = path.height.get();
    let recorded: Vec<ThumbnailFormat> =
        state.repo.thumbnails_of_heights(image.id, &[height]).await?.into_keys().map(|(_, f)| f).collect();
    let chosen = candidates(&req, &image, path.extension.as_deref(), &recorded)?;
    if !chosen.0.iter().all(|f| recorded.contains(f)) {
        return Err(ApiError::NotFound);
    }
    serve_thumbnail(&req, &state, &image, height, chosen, Audience::Admin).await
}

/// The original bytes, exactly as uploaded (tiers with the original link).
#[utoipa::path(
    operation_id = "get_original",
    method(get, head),
    path = "/images/{id}/original",
    tag = "images",
    params(("id" = String, Path, description = "image id", pattern = "^[0-9A-HJKMNP-TV-Za-hjkmnp-tv-z]{26}$")),
    responses(
        (status = 200, description = "the original file", content_type = "image/*"),
        (status = 206, description = "the requested range"),
        (status = 304, description = "not modified"),
        (status = 403, description = "your tier does not include originals", body = crate::error::Problem),
        (status = 416, description = "the range is outside the file", body = crate::error::Problem),
        (status = 404, body = crate::error::Problem),
    ),
    security(("basic" = []), ("bearer" = []))
)]
#[route("/images/{id}/original", method = "GET", method = "HEAD")]
pub async fn original(
    req: HttpRequest,
    state: web::Data<AppState>,
    AuthUser(user): AuthUser,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let image = owned_image(&state, &user, &path).await?;
    grants::require_variant(&grants::tier_of(state.repo.as_ref(), &user).await?, Variant::Original)?;
    serve(&req, &state, original_blob(&image), Audience::Owner).await
}

/// Fetch through an expiring link; no authentication.
///
/// 404 if unknown or revoked (or the image or the owner's grant is gone), 410 once expired.
#[utoipa::path(
    operation_id = "get_public_link",
    method(get, head),
    path = "/l/{token}",
    tag = "links",
    params(("token" = String, Path, description = "the link's secret token", pattern = "^l_[A-Za-z0-9_-]{43}$")),
    responses(
        (status = 200, description = "the linked original or thumbnail (a thumbnail's format negotiated by Accept)", content_type = "image/*"),
        (status = 404, body = crate::error::Problem),
        (status = 410, description = "the link has expired", body = crate::error::Problem),
        (status = 416, description = "the range is outside the file", body = crate::error::Problem),
    )
)]
#[route("/l/{token}", method = "GET", method = "HEAD")]
pub async fn public_link(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    // Links are found by the SHA-256 of their token: the secret itself is never stored, and
    // lookup timing depends only on a hash the caller cannot steer.
    let hash = sha256(path.as_bytes());
    let expired = || ApiError::Gone("this link has expired".to_owned());
    let Some(link) = state.repo.link_by_token_hash(&hash).await? else {
        // Expired links leave the table within a minute; their tokens still say so.
        return Err(if state.repo.is_expired_link_token(&hash).await? { expired() } else { ApiError::NotFound });
    };
    if link.is_expired(state.clock.now()) {
        return Err(expired());
    }
    let repo = &state.repo;
    let user = repo.user(link.owner).await?;
    let (tier, image) = (repo.tier(&user.tier).await?, repo.image(link.image_id).await?);
    // The link dies with the owner's grant (inactive owner, tier without links or variant),
    // for good: it is deleted, so it does not come back with the grant.
    if !grants::link_granted(&user, &tier, link.variant) {
        match state.repo.delete_link(link.id).await {
            Ok(()) | Err(RepoError::NotFound) => {}
            Err(e) => return Err(e.into()),
        }
        return Err(ApiError::NotFound);
    }
    match link.variant {
        Variant::Original => serve(&req, &state, original_blob(&image), Audience::Link(hash)).await,
        Variant::Thumbnail(h) => {
            let chosen = candidates(&req, &image, None, &tier.thumbnail_formats())?;
            serve_thumbnail(&req, &state, &image, h.get(), chosen, Audience::Link(hash)).await
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range(v: &str, size: u64) -> Result<Option<(u64, u64)>, u16> {
        parse_range(Some(v), size).map(|r| r.map(|r| (r.start, r.end))).map_err(|e| {
            use actix_web::ResponseError;
            e.status_code().as_u16()
        })
    }

    #[test]
    fn ranges_follow_rfc_9110() {
        assert_eq!(range("bytes=0-99", 1000), Ok(Some((0, 99))));
        assert_eq!(range("bytes=900-", 1000), Ok(Some((900, 999))));
        assert_eq!(range("bytes=-100", 1000), Ok(Some((900, 999))));
        assert_eq!(range("bytes=990-2000", 1000), Ok(Some((990, 999))));
        assert_eq!(range("bytes=-5000", 1000), Ok(Some((0, 999))));
        assert_eq!(range("bytes=1000-", 1000), Err(416));
        assert_eq!(range("bytes=-0", 1000), Err(416));
        // Ignored forms serve the whole body.
        assert_eq!(range("bytes=0-1,5-6", 1000), Ok(None));
        assert_eq!(range("bytes=abc", 1000), Ok(None));
        assert_eq!(range("items=0-1", 1000), Ok(None));
        assert_eq!(range("bytes=5-1", 1000), Ok(None));
        // Numbers are digits: a sign or spaces inside make the header invalid, so ignored.
        assert_eq!(range("bytes=+1-2", 1000), Ok(None));
        assert_eq!(range("bytes=1-+2", 1000), Ok(None));
        assert_eq!(range("bytes=--2", 1000), Ok(None));
        assert_eq!(range("bytes=-+2", 1000), Ok(None));
    }

    #[test]
    fn if_none_match_accepts_lists_weak_tags_and_star() {
        let mut headers = HeaderMap::new();
        let set = |h: &mut HeaderMap, v: &'static str| {
            h.insert(header::IF_NONE_MATCH, header::HeaderValue::from_static(v));
        };
        set(&mut headers, "\"x\", W/\"abc\"");
        assert!(etag_matches(&headers, "\"abc\""));
        assert!(!etag_matches(&headers, "\"abd\""));
        set(&mut headers, "*");
        assert!(etag_matches(&headers, "\"anything\""));
        assert!(!etag_matches(&HeaderMap::new(), "\"abc\""));
    }
}
