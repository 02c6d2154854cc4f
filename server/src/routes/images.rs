//! Upload, list, show and delete images.

use actix_multipart::Multipart;
use actix_web::http::header::{Charset, ContentDisposition, CONTENT_LENGTH};
use actix_web::{delete, get, post, web, HttpRequest, HttpResponse};
use bytes::BytesMut;
use futures_util::StreamExt;
use imageapi_core::domain::{is_invisible_format, ImageId};
use imageapi_shared::pipeline::{probe, ProbeError};
use imageapi_shared::store::{BlobKey, StoreError};
use sha2::{Digest, Sha256};
use utoipa::ToSchema;

use crate::error::ApiError;
use crate::repo::{ImageRecord, Inserted, NewImage, RepoError, ThumbState, ThumbStates, TierRecord};
use crate::routes::extract::AuthUser;
use crate::routes::owned_image;
use crate::routes::paging::{split_page, Page, PageQuery};
use crate::services::images::{delete_image, load_page};
use crate::state::AppState;
use crate::views::image_view;
use imageapi_core::api::{ImagePage, ImageView};

/// Room for multipart boundaries and part headers on top of the file itself.
const MULTIPART_OVERHEAD: u64 = 64 * 1024;
/// What each part costs against the body limit besides its bytes (boundary and headers), so
/// that millions of empty parts cannot be sent for free.
const PART_OVERHEAD: u64 = 256;
/// An upload is one file field and perhaps a few others; more parts are refused.
const MAX_PARTS: usize = 8;
/// After rejecting an upload early, read (and discard) at most this much more of the body,
/// for at most [`DRAIN_DEADLINE`], so that the client receives the answer instead of a reset
/// connection — and a slow client cannot keep the connection busy for long.
const DRAIN_CAP: u64 = 64 * 1024 * 1024;
const DRAIN_DEADLINE: std::time::Duration = std::time::Duration::from_secs(10);
/// Suggested wait when every upload slot is busy.
const BUSY_RETRY_AFTER_SECS: u32 = 5;

/// The part of a client-supplied file name worth showing: the last path component, no
/// control characters and no invisible formatting ones (bidi overrides that would show
/// `evil\u{202E}gpj.exe` as `evilexe.jpg`, zero-width characters), at most 255 characters.
/// Display only; never a path.
fn display_name(raw: Option<&str>) -> String {
    let raw = raw.unwrap_or("");
    let last = raw.rsplit(['/', '\\']).next().unwrap_or("");
    let clean: String = last.chars().filter(|&c| !c.is_control() && !is_invisible_format(c)).take(255).collect();
    if clean.trim().is_empty() {
        "image".to_owned()
    } else {
        clean
    }
}

/// The file name a client sent: RFC 5987's `filename*` (UTF-8 or ISO-8859-1, how browsers and
/// curl send names that are not ASCII) before the plain `filename`, which is only a fallback
/// for old clients.
fn sent_file_name(disposition: &ContentDisposition) -> Option<String> {
    let extended = disposition.get_filename_ext().and_then(|ext| match &ext.charset {
        Charset::Ext(name) if name.eq_ignore_ascii_case("utf-8") => String::from_utf8(ext.value.clone()).ok(),
        Charset::Iso_8859_1 | Charset::Us_Ascii => Some(ext.value.iter().map(|&b| char::from(b)).collect()),
        _ => None,
    });
    extended.or_else(|| disposition.get_filename().map(str::to_owned))
}

/// The multipart form of an upload.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct UploadForm {
    /// The PNG or JPEG file (judged by content, not by name or declared type).
    #[schema(value_type = String, format = Binary)]
    image: Vec<u8>,
}

/// Reads and discards what is left of a rejected body, within [`DRAIN_CAP`] bytes and
/// [`DRAIN_DEADLINE`] (or the upload deadline, if that comes first).
async fn drain(mut multipart: Multipart, deadline: tokio::time::Instant) {
    let deadline = deadline.min(tokio::time::Instant::now() + DRAIN_DEADLINE);
    let read = async {
        let mut seen = 0u64;
        while let Some(Ok(mut field)) = multipart.next().await {
            seen += PART_OVERHEAD;
            while let Some(Ok(chunk)) = field.next().await {
                seen += chunk.len() as u64;
                if seen > DRAIN_CAP {
                    return;
                }
            }
            if seen > DRAIN_CAP {
                return;
            }
        }
    };
    let _ = tokio::time::timeout_at(deadline, read).await;
}

fn too_large(limit: u64) -> ApiError {
    ApiError::PayloadTooLarge(format!("uploads are limited to {limit} bytes"))
}

/// The refusal of an upload over the tier's own size limit (below the server's).
fn too_large_for_tier(tier: &TierRecord, limit: u64) -> ApiError {
    ApiError::PayloadTooLarge(format!(
        "your tier ({}) limits uploads to {limit} bytes (max_upload_bytes)",
        tier.name.as_str()
    ))
}

/// The file field of an upload: its name, bytes and their SHA-256 (computed while reading).
struct ReadUpload {
    name: String,
    bytes: bytes::Bytes,
    sha256: [u8; 32],
}

/// What is refused from the request head alone, before any of the body is read: an upload
/// whose declared length is over the limit. (Also asked before `100 Continue` is sent.)
pub fn refused_before_body(
    method: &actix_web::http::Method,
    path: &str,
    headers: &actix_web::http::header::HeaderMap,
    limit: u64,
) -> Option<ApiError> {
    if method != actix_web::http::Method::POST || path != "/api/v1/images" {
        return None;
    }
    let declared = headers.get(CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    declared.filter(|&len| len > limit + MULTIPART_OVERHEAD).map(|_| too_large(limit))
}

/// Reads the `image` field into memory, refusing more than `limit` bytes of file, more than
/// [`MAX_PARTS`] parts, and more than `limit` plus multipart overhead of body in all, each
/// part counting its bytes and [`PART_OVERHEAD`] (other fields are read and dropped); the
/// refusal is `too_large`'s. On a refusal the multipart stream is handed back, so the caller
/// can drain it within the deadline.
async fn read_image_field(
    mut multipart: Multipart,
    limit: u64,
    too_large: impl Fn() -> ApiError,
) -> Result<ReadUpload, (ApiError, Option<Multipart>)> {
    let malformed =
        |e: actix_multipart::MultipartError| (ApiError::BadRequest(format!("malformed multipart body: {e}")), None);
    let body_limit = limit + MULTIPART_OVERHEAD;
    let mut body_bytes = 0u64;
    let mut parts = 0usize;
    let mut found: Option<(String, BytesMut, [u8; 32])> = None;
    while let Some(field) = multipart.next().await {
        let mut field = field.map_err(malformed)?;
        parts += 1;
        body_bytes += PART_OVERHEAD;
        if parts > MAX_PARTS {
            drop(field);
            return Err((
                ApiError::BadRequest(format!("an upload has at most {MAX_PARTS} multipart parts")),
                Some(multipart),
            ));
        }
        let wanted = field.name() == Some("image") && found.is_none();
        let name = display_name(field.content_disposition().and_then(sent_file_name).as_deref());
        let mut buffer = BytesMut::new();
        let mut hasher = Sha256::new();
        while let Some(chunk) = field.next().await {
            let chunk = chunk.map_err(malformed)?;
            body_bytes += chunk.len() as u64;
            if body_bytes > body_limit || (wanted && (buffer.len() + chunk.len()) as u64 > limit) {
                drop(field);
                return Err((too_large(), Some(multipart)));
            }
            if wanted {
                hasher.update(&chunk);
                buffer.extend_from_slice(&chunk);
            }
        }
        if wanted {
            found = Some((name, buffer, hasher.finalize().into()));
        }
    }
    let (name, buffer, sha256) =
        found.ok_or_else(|| (ApiError::field("image", "send the file in a multipart field named 'image'"), None))?;
    Ok(ReadUpload { name, bytes: buffer.freeze(), sha256 })
}

/// Upload a PNG or JPEG image.
///
/// The type is judged by content. Size, pixel and side limits, and the memory decoding it
/// would take, are checked from the header before anything is decoded. Thumbnails of the tier's heights start `pending` and become
/// `ready` shortly.
///
/// Idempotent per content: uploading bytes identical to one of your images (a retry after a
/// lost answer, or the same file under another name) answers 200 with that image and a
/// `Content-Location` naming it; nothing is stored and no limit is counted. Your tier's limits
/// (see `GET /api/v1/me`) apply to new images: over `max_upload_bytes` 413, over `max_images`
/// or `max_storage_bytes` 403 `quota-exceeded`, over `uploads_per_hour` 429
/// `upload-rate-exceeded` with `Retry-After`.
#[utoipa::path(
    operation_id = "upload_image",
    tag = "images",
    request_body(content = UploadForm, content_type = "multipart/form-data", encoding(("image" = (content_type = "image/png, image/jpeg")))),
    responses(
        (status = 201, body = ImageView, headers(("Location" = String, description = "the new image"))),
        (status = 200, description = "you already hold an image of these exact bytes: that image; nothing new was stored", body = ImageView, headers(("Content-Location" = String, description = "the image you already hold"))),
        (status = 400, description = "missing field, corrupt or truncated image", body = crate::error::Problem),
        (status = 401, body = crate::error::Problem),
        (status = 403, description = "quota-exceeded: the upload would go over your tier's max_images or max_storage_bytes (the problem names the quota, your usage and the limit)", body = crate::error::Problem),
        (status = 413, description = "over your tier's or the server's size limit, or the pixel, side, scan, EXIF or decode-memory limit", body = crate::error::Problem),
        (status = 415, description = "not a PNG or JPEG, or a JPEG variant no decoder here reads (lossless, arithmetic-coded, hierarchical, 12-bit)", body = crate::error::Problem),
        (status = 429, description = "upload-rate-exceeded: over your tier's uploads_per_hour (see Retry-After), or too many of your uploads in progress", body = crate::error::Problem),
        (status = 507, description = "out of storage space: nothing was stored; try again later (see Retry-After)", body = crate::error::Problem),
    ),
    security(("basic" = []), ("bearer" = []))
)]
#[post("/images")]
pub async fn upload(
    state: web::Data<AppState>,
    AuthUser(user): AuthUser,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    // One deadline for all of it: waiting for a slot, then the body. Slow or stalled clients
    // cannot hold a slot (or a drain) for ever.
    let deadline = tokio::time::Instant::now() + state.upload_timeout;
    let multipart = Multipart::new(req.headers(), payload);
    if let Some(refusal) = refused_before_body(req.method(), req.path(), req.headers(), state.limits.max_bytes) {
        drain(multipart, deadline).await;
        return Err(refusal);
    }
    let tier = match state.repo.tier(&user.tier).await {
        Ok(tier) => tier,
        Err(e) => {
            drain(multipart, deadline).await;
            return Err(e.into());
        }
    };
    // The tier's size limit is known before the body: a declared length over it is refused
    // unread, and reading stops as soon as the file passes it.
    let limit = tier.limits.upload_limit(state.limits.max_bytes);
    let over_limit = || {
        if limit < state.limits.max_bytes {
            too_large_for_tier(&tier, limit)
        } else {
            too_large(limit)
        }
    };
    let declared = req.headers().get(CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > limit + MULTIPART_OVERHEAD) {
        drain(multipart, deadline).await;
        return Err(over_limit());
    }
    // Storing it must leave the free-space floor: checked before the body is read, and the
    // room stays set aside until the original is written.
    let mut room = match state.disk.reserve(declared.unwrap_or(limit + MULTIPART_OVERHEAD)).await {
        Ok(room) => room,
        Err(low) => {
            tracing::warn!(free = low.free, floor = low.floor, user = %user.id, "upload refused: the disk is down to its free-space floor (IMAGEAPI_MIN_FREE_BYTES)");
            drain(multipart, deadline).await;
            return Err(ApiError::out_of_space());
        }
    };
    let Some(_turn) = state.uploads.user_turn(user.id) else {
        drain(multipart, deadline).await;
        return Err(ApiError::TooManyRequests {
            detail: format!("you have {} uploads in progress; wait for one to finish", state.uploads.per_user()),
            retry_after_secs: 1,
        });
    };
    let Ok(Some(_slot)) = tokio::time::timeout_at(deadline, state.uploads.slot()).await else {
        return Err(ApiError::Unavailable {
            detail: "the server is busy with other uploads; try again shortly".to_owned(),
            retry_after_secs: BUSY_RETRY_AFTER_SECS,
        });
    };
    let timed_out =
        || ApiError::RequestTimeout(format!("the upload took longer than {} s", state.upload_timeout.as_secs()));
    let ReadUpload { name, bytes, sha256 } =
        match tokio::time::timeout_at(deadline, read_image_field(multipart, limit, over_limit)).await {
            Err(_) => return Err(timed_out()),
            Ok(Ok(read)) => read,
            Ok(Err((error, rest))) => {
                if let Some(rest) = rest {
                    drain(rest, deadline).await;
                }
                return Err(error);
            }
        };

    // A retry of an upload that landed: the image it made, before any decoding or writing.
    // (The index is per owner: whether others hold these bytes never shows.)
    if let Some(existing) = state.repo.image_by_content(user.id, &sha256).await? {
        return already_held(&state, &tier, &existing).await;
    }

    let limits = state.limits;
    let probe_input = bytes.clone();
    let probed = web::block(move || probe(&probe_input, &limits)).await?.map_err(|e| match e {
        ProbeError::Unsupported(msg) => ApiError::UnsupportedMediaType(msg),
        ProbeError::Corrupt(msg) => ApiError::BadRequest(msg),
        ProbeError::TooLarge(msg) => ApiError::PayloadTooLarge(msg),
    })?;

    let record = ImageRecord {
        id: crate::ids::new_image_id(),
        owner: user.id,
        name,
        format: probed.format,
        width: probed.width,
        height: probed.height,
        size_bytes: bytes.len() as u64,
        created_at: state.clock.now(),
        thumbhash: None,
        sha256: Some(sha256),
    };
    let original = BlobKey::original(record.id);
    match state.store.put(&original, bytes).await {
        Ok(()) => room.stored(record.size_bytes),
        Err(e) => {
            if matches!(e, StoreError::OutOfSpace { .. }) {
                state.disk.saw_full_disk();
            }
            return Err(e.into());
        }
    }

    let NewImage { tier, job } = match state.repo.insert_image(&record, crate::ids::new_job_id()).await {
        Ok(Inserted::New(inserted)) => inserted,
        Ok(Inserted::Existing(existing)) => {
            // The same bytes landed meanwhile (a parallel retry): that image is the answer,
            // and this copy of the original belongs to nothing.
            let _ = state.store.delete(&original).await;
            return already_held(&state, &tier, &existing).await;
        }
        Err(e) => {
            // Only a definite refusal frees the original: after a lost connection, or a sled
            // flush that met a full disk, the commit may have happened (or may show up at the
            // next start), and a record must never point at a deleted blob (an unused blob is
            // the lesser harm).
            let outcome_unknown =
                matches!(e, RepoError::Unavailable(_) | RepoError::OutOfSpace { outcome_unknown: true });
            if !outcome_unknown {
                let _ = state.store.delete(&original).await;
            }
            if let RepoError::Quota(refusal) = &e {
                tracing::info!(user = %user.id, quota = refusal.quota.as_str(), usage = refusal.usage, limit = refusal.limit, "upload refused: over a tier limit");
            }
            // The owner was deleted or deactivated while the body was streaming.
            return Err(if matches!(e, RepoError::NotFound) { ApiError::Unauthorized } else { e.into() });
        }
    };
    state.thumbnails.submitted(job.as_slice()).await;
    tracing::info!(image = %record.id, user = %user.id, bytes = record.size_bytes, "image uploaded");

    let formats = tier.thumbnail_formats();
    let thumbs: ThumbStates = tier
        .thumbnail_heights
        .iter()
        .flat_map(|h| formats.iter().map(move |&f| ((h.get(), f), ThumbState::Pending)))
        .collect();
    let view = image_view(&state.public_url, &record, &tier, &thumbs);
    Ok(HttpResponse::Created()
        .insert_header(("Location", format!("{}/api/v1/images/{}", state.public_url, record.id)))
        .json(view))
}

/// 200 with the owner's image of the uploaded content, as `GET /api/v1/images/{id}` shows it.
async fn already_held(state: &AppState, tier: &TierRecord, image: &ImageRecord) -> Result<HttpResponse, ApiError> {
    let heights: Vec<u32> = tier.thumbnail_heights.iter().map(|h| h.get()).collect();
    let thumbs = state.repo.thumbnails_of_heights(image.id, &heights).await?;
    tracing::info!(image = %image.id, user = %image.owner, "upload of content already held: answered with the existing image");
    Ok(HttpResponse::Ok()
        .insert_header(("Content-Location", format!("{}/api/v1/images/{}", state.public_url, image.id)))
        .json(image_view(&state.public_url, image, tier, &thumbs)))
}

/// Your images, newest first.
#[utoipa::path(
    operation_id = "list_images",
    tag = "images",
    params(PageQuery),
    responses((status = 200, body = ImagePage), (status = 400, body = crate::error::Problem), (status = 401, body = crate::error::Problem)),
    security(("basic" = []), ("bearer" = []))
)]
#[get("/images")]
pub async fn list(
    state: web::Data<AppState>,
    AuthUser(user): AuthUser,
    query: web::Query<PageQuery>,
) -> Result<HttpResponse, ApiError> {
    let Page { limit, cursor } = query.parse(ImageId::parse)?;
    let (records, tier) =
        futures_util::try_join!(state.repo.user_images(user.id, cursor, limit + 1), state.repo.tier(&user.tier))?;
    let (records, next) = split_page(records, limit, |r| r.id);
    let rows = load_page(state.repo.as_ref(), records, Some((user.id, tier))).await?;
    let base = &state.public_url;
    Ok(HttpResponse::Ok().json(ImagePage {
        results: rows.iter().map(|(image, tier, thumbs)| image_view(base, image, tier, thumbs)).collect(),
        next: next.map(|c| format!("{base}/api/v1/images?limit={limit}&cursor={c}")),
    }))
}

/// One of your images.
#[utoipa::path(
    operation_id = "get_image",
    tag = "images",
    params(("id" = String, Path, description = "image id", pattern = "^[0-9A-HJKMNP-TV-Za-hjkmnp-tv-z]{26}$")),
    responses((status = 200, body = ImageView), (status = 404, body = crate::error::Problem)),
    security(("basic" = []), ("bearer" = []))
)]
#[get("/images/{id}")]
pub async fn detail(
    state: web::Data<AppState>,
    AuthUser(user): AuthUser,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let image = owned_image(&state, &user, &path).await?;
    let tier = state.repo.tier(&user.tier).await?;
    let heights: Vec<u32> = tier.thumbnail_heights.iter().map(|h| h.get()).collect();
    let thumbs = state.repo.thumbnails_of_heights(image.id, &heights).await?;
    Ok(HttpResponse::Ok().json(image_view(&state.public_url, &image, &tier, &thumbs)))
}

/// Delete one of your images; its thumbnails and links go with it.
#[utoipa::path(
    operation_id = "delete_image",
    tag = "images",
    params(("id" = String, Path, description = "image id", pattern = "^[0-9A-HJKMNP-TV-Za-hjkmnp-tv-z]{26}$")),
    responses((status = 204), (status = 404, body = crate::error::Problem)),
    security(("basic" = []), ("bearer" = []))
)]
#[delete("/images/{id}")]
pub async fn delete(
    state: web::Data<AppState>,
    AuthUser(user): AuthUser,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let image = owned_image(&state, &user, &path).await?;
    delete_image(&state, image.id).await?;
    Ok(HttpResponse::NoContent().finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc_5987_file_names_come_before_plain_ones() {
        let parse = |value: &str| {
            let header = actix_web::http::header::HeaderValue::from_str(value).expect("header");
            ContentDisposition::from_raw(&header).expect("content-disposition")
        };
        let utf8 =
            parse("form-data; name=\"image\"; filename=\"fallback.jpg\"; filename*=UTF-8''caf%C3%A9%20%E2%9C%93.jpg");
        assert_eq!(sent_file_name(&utf8).as_deref(), Some("café ✓.jpg"));
        let latin1 = parse("form-data; name=\"image\"; filename*=ISO-8859-1''na%EFve.png");
        assert_eq!(sent_file_name(&latin1).as_deref(), Some("naïve.png"));
        let plain = parse("form-data; name=\"image\"; filename=\"plain.png\"");
        assert_eq!(sent_file_name(&plain).as_deref(), Some("plain.png"));
        let broken = parse("form-data; name=\"image\"; filename=\"ok.png\"; filename*=UTF-8''%FF%FE.png");
        assert_eq!(sent_file_name(&broken).as_deref(), Some("ok.png"), "undecodable: the plain name serves");
        let bidi = parse("form-data; name=\"image\"; filename*=UTF-8''evil%E2%80%AEgpj.exe");
        assert_eq!(display_name(sent_file_name(&bidi).as_deref()), "evilgpj.exe", "filename* is cleaned like filename");
    }

    #[test]
    fn display_names_keep_only_the_last_component_without_control_characters() {
        assert_eq!(display_name(Some("../../etc/passwd")), "passwd");
        assert_eq!(display_name(Some("C:\\pics\\bird.jpg")), "bird.jpg");
        assert_eq!(display_name(Some("a\u{0}b\nc.png")), "abc.png");
        assert_eq!(display_name(Some("evil\u{202E}gpj.exe")), "evilgpj.exe");
        assert_eq!(display_name(Some("\u{2066}x\u{2069}\u{200B}.jpg\u{FEFF}")), "x.jpg");
        assert_eq!(display_name(Some("café ünïcødé.jpg")), "café ünïcødé.jpg");
        assert_eq!(display_name(None), "image");
        assert_eq!(display_name(Some("   ")), "image");
        assert_eq!(display_name(Some(&"x".repeat(1000))).len(), 255);
    }
}
