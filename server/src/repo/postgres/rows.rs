//! Rows to records and back: every column read is checked, so a damaged row is a clear
//! `Corrupt` error, never a panic.

use imageapi_core::domain::{
    Formats, Height, Heights, ImageId, LinkId, TierId, TierLimits, TierName, TokenId, UserId, Username, Variant,
};
use imageapi_core::image::{ImageFormat, ThumbnailFormat};
use imageapi_core::jobs::ThumbnailJob;
use tokio_postgres::Row;

use crate::repo::{
    ImageRecord, LinkRecord, RepoError, RepoResult, ThumbSlot, ThumbState, TierRecord, TokenRecord, UserRecord,
};

fn corrupt(what: &str, detail: impl std::fmt::Display) -> RepoError {
    RepoError::Corrupt(format!("{what}: {detail}"))
}

fn get<'a, T: tokio_postgres::types::FromSql<'a>>(row: &'a Row, column: &str) -> RepoResult<T> {
    row.try_get(column).map_err(|e| corrupt(column, e))
}

pub fn id16(row: &Row, column: &str) -> RepoResult<[u8; 16]> {
    let bytes: &[u8] = get(row, column)?;
    bytes.try_into().map_err(|_| corrupt(column, "not a 16-byte id"))
}

fn count(row: &Row, column: &str) -> RepoResult<u32> {
    let n: i32 = get(row, column)?;
    u32::try_from(n).map_err(|_| corrupt(column, "negative"))
}

fn bytes(row: &Row, column: &str) -> RepoResult<u64> {
    let n: i64 = get(row, column)?;
    u64::try_from(n).map_err(|_| corrupt(column, "negative"))
}

pub fn format_name(format: ImageFormat) -> &'static str {
    match format {
        ImageFormat::Jpeg => "jpeg",
        ImageFormat::Png => "png",
    }
}

pub fn parse_format(raw: &str) -> RepoResult<ImageFormat> {
    match raw {
        "jpeg" => Ok(ImageFormat::Jpeg),
        "png" => Ok(ImageFormat::Png),
        other => Err(corrupt("format", format!("unknown format {other:?}"))),
    }
}

fn format(row: &Row, column: &str) -> RepoResult<ImageFormat> {
    parse_format(get::<&str>(row, column)?)
}

pub fn variant_name(variant: Variant) -> String {
    match variant {
        Variant::Original => "original".to_owned(),
        Variant::Thumbnail(h) => format!("thumbnail:{h}"),
    }
}

fn variant(row: &Row, column: &str) -> RepoResult<Variant> {
    let raw: &str = get(row, column)?;
    if raw == "original" {
        return Ok(Variant::Original);
    }
    raw.strip_prefix("thumbnail:")
        .and_then(|h| h.parse::<i64>().ok())
        .and_then(|h| Height::parse(h).ok())
        .map(Variant::Thumbnail)
        .ok_or_else(|| corrupt(column, format!("unknown variant {raw:?}")))
}

pub fn heights_of(heights: &Heights) -> Vec<i32> {
    heights.iter().map(|h| h.get() as i32).collect()
}

/// A tier's formats as stored (`text[]` of `webp` / `avif`).
pub fn formats_of(formats: &Formats) -> Vec<&'static str> {
    formats.iter().map(|f| f.as_str()).collect()
}

pub fn tier(row: &Row) -> RepoResult<TierRecord> {
    let heights: Vec<i32> = get(row, "thumbnail_heights")?;
    let formats: Vec<&str> = get(row, "formats")?;
    let heights: Vec<i64> = heights.into_iter().map(i64::from).collect();
    Ok(TierRecord {
        id: TierId::parse(get(row, "id")?).map_err(|e| corrupt("tier id", e))?,
        name: TierName::parse(get(row, "name")?).map_err(|e| corrupt("tier name", e))?,
        thumbnail_heights: Heights::parse(&heights).map_err(|e| corrupt("thumbnail_heights", e))?,
        original_link: get(row, "original_link")?,
        expiring_links: get(row, "expiring_links")?,
        builtin: get(row, "builtin")?,
        formats: Formats::parse(&formats).map_err(|e| corrupt("formats", e))?,
        limits: TierLimits {
            max_images: limit(row, "max_images")?,
            max_storage_bytes: limit(row, "max_storage_bytes")?,
            max_upload_bytes: limit(row, "max_upload_bytes")?,
            uploads_per_hour: limit(row, "uploads_per_hour")?,
        },
    })
}

fn limit(row: &Row, column: &str) -> RepoResult<Option<u64>> {
    let value: Option<i64> = get(row, column)?;
    value.map(|v| u64::try_from(v).map_err(|_| corrupt(column, "a negative limit"))).transpose()
}

pub const USER_COLUMNS: &str =
    "id, username, password_hash, tier, is_active, is_admin, created_at, credentials_version";

pub fn user(row: &Row) -> RepoResult<UserRecord> {
    let version: i64 = get(row, "credentials_version")?;
    Ok(UserRecord {
        id: UserId::from_bytes(id16(row, "id")?),
        username: Username::parse(get(row, "username")?).map_err(|e| corrupt("username", e))?,
        password_hash: get(row, "password_hash")?,
        tier: TierId::parse(get(row, "tier")?).map_err(|e| corrupt("tier", e))?,
        is_active: get(row, "is_active")?,
        is_admin: get(row, "is_admin")?,
        created_at: get(row, "created_at")?,
        credentials_version: u64::try_from(version).map_err(|_| corrupt("credentials_version", "negative"))?,
    })
}

pub fn token(row: &Row) -> RepoResult<TokenRecord> {
    Ok(TokenRecord {
        id: TokenId::from_bytes(id16(row, "id")?),
        user_id: UserId::from_bytes(id16(row, "user_id")?),
        created_at: get(row, "created_at")?,
    })
}

pub const IMAGE_COLUMNS: &str = "id, owner, name, format, width, height, size_bytes, created_at, thumbhash, sha256";

pub fn image(row: &Row) -> RepoResult<ImageRecord> {
    Ok(ImageRecord {
        id: ImageId::from_bytes(id16(row, "id")?),
        owner: UserId::from_bytes(id16(row, "owner")?),
        name: get(row, "name")?,
        format: format(row, "format")?,
        width: count(row, "width")?,
        height: count(row, "height")?,
        size_bytes: bytes(row, "size_bytes")?,
        created_at: get(row, "created_at")?,
        thumbhash: get(row, "thumbhash")?,
        sha256: {
            let hash: Option<Vec<u8>> = get(row, "sha256")?;
            hash.map(|h| <[u8; 32]>::try_from(h.as_slice()).map_err(|_| corrupt("sha256", "not 32 bytes")))
                .transpose()?
        },
    })
}

pub const THUMB_COLUMNS: &str = "requested_height, format, status, width, height, size_bytes, reason";

/// The `format` column's value for a thumbnail encoding.
pub fn thumbnail_format_name(format: ThumbnailFormat) -> &'static str {
    match format {
        ThumbnailFormat::Source => "source",
        ThumbnailFormat::Webp => "webp",
        ThumbnailFormat::Avif => "avif",
    }
}

pub fn parse_thumbnail_format(name: &str) -> RepoResult<ThumbnailFormat> {
    match name {
        "source" => Ok(ThumbnailFormat::Source),
        "webp" => Ok(ThumbnailFormat::Webp),
        "avif" => Ok(ThumbnailFormat::Avif),
        other => Err(corrupt("format", format!("unknown thumbnail format {other:?}"))),
    }
}

/// A thumbnail row: its requested height, encoding and state.
pub fn thumbnail(row: &Row) -> RepoResult<(ThumbSlot, ThumbState)> {
    let requested = (count(row, "requested_height")?, parse_thumbnail_format(get(row, "format")?)?);
    let state = match get::<&str>(row, "status")? {
        "pending" => ThumbState::Pending,
        "ready" => {
            let width: Option<i32> = get(row, "width")?;
            let height: Option<i32> = get(row, "height")?;
            let size: Option<i64> = get(row, "size_bytes")?;
            let (Some(width), Some(height), Some(size)) = (width, height, size) else {
                return Err(corrupt("thumbnail", "a ready thumbnail without its size"));
            };
            ThumbState::Ready {
                width: u32::try_from(width).map_err(|_| corrupt("width", "negative"))?,
                height: u32::try_from(height).map_err(|_| corrupt("height", "negative"))?,
                size_bytes: u64::try_from(size).map_err(|_| corrupt("size_bytes", "negative"))?,
            }
        }
        "failed" => ThumbState::Failed { reason: get::<Option<String>>(row, "reason")?.unwrap_or_default() },
        other => return Err(corrupt("status", format!("unknown status {other:?}"))),
    };
    Ok((requested, state))
}

pub const LINK_COLUMNS: &str = "id, owner, image_id, variant, created_at, expires_at";

pub fn link(row: &Row) -> RepoResult<LinkRecord> {
    Ok(LinkRecord {
        id: LinkId::from_bytes(id16(row, "id")?),
        owner: UserId::from_bytes(id16(row, "owner")?),
        image_id: ImageId::from_bytes(id16(row, "image_id")?),
        variant: variant(row, "variant")?,
        created_at: get(row, "created_at")?,
        expires_at: get(row, "expires_at")?,
    })
}

/// An outbox row with its image's owner (`LEFT JOIN images i ON i.id = o.image_id`; the owner
/// is null once the image is gone).
pub const JOB_COLUMNS: &str = "o.id, o.image_id, o.format, o.heights, o.formats, i.owner";
pub const OUTBOX_WITH_OWNERS: &str = "FROM outbox o LEFT JOIN images i ON i.id = o.image_id";

pub fn job(row: &Row) -> RepoResult<ThumbnailJob> {
    let heights: Vec<i32> = get(row, "heights")?;
    Ok(ThumbnailJob {
        id: imageapi_core::domain::JobId::from_bytes(id16(row, "id")?),
        image_id: ImageId::from_bytes(id16(row, "image_id")?),
        format: format(row, "format")?,
        heights: heights
            .into_iter()
            .map(|h| u32::try_from(h).map_err(|_| corrupt("heights", "negative")))
            .collect::<RepoResult<_>>()?,
        formats: get::<Vec<&str>>(row, "formats")?
            .into_iter()
            .map(parse_thumbnail_format)
            .collect::<RepoResult<_>>()?,
        owner: get::<Option<Vec<u8>>>(row, "owner")?
            .map(|bytes| <[u8; 16]>::try_from(bytes.as_slice()).map_err(|_| corrupt("owner", "not 16 bytes")))
            .transpose()?
            .map(imageapi_core::domain::UserId::from_bytes),
    })
}
