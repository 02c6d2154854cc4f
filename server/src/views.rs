//! How records become the API's JSON shapes (`imageapi_core::api`, written once for server
//! and TUI), so every route renders an object the same way; and the shapes only the server
//! knows: the request bodies it parses (documented for OpenAPI) and the health answer.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use imageapi_core::api::{
    FormatView, ImageView, LinkView, ThumbnailStatus, ThumbnailView, TierView, TokenView, UsageView, UserView,
    VariantView,
};
use imageapi_core::domain::{Height, Heights, LimitField, TierLimits, Variant};
use imageapi_core::image::{thumbnail_size, ExtraFormat, ThumbnailFormat};
use serde::{Deserialize, Serialize};
use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, OneOfBuilder, Schema, SchemaType, Type};
use utoipa::ToSchema;

use crate::repo::{hex, ImageRecord, LinkRecord, ThumbState, ThumbStates, TierRecord, TokenRecord, Usage, UserRecord};

/// An image as its owner's tier shows it: exactly the granted heights, each with its state
/// and its granted formats.
pub fn image_view(base: &str, image: &ImageRecord, tier: &TierRecord, thumbs: &ThumbStates) -> ImageView {
    let image_url = format!("{base}/api/v1/images/{}", image.id);
    let formats = tier.thumbnail_formats();
    let thumbnails = tier
        .thumbnail_heights
        .iter()
        .map(|h| {
            let height = h.get();
            let (expected_width, _) = thumbnail_size(image.width, image.height, height);
            // A granted variant without a record is being scheduled right now: pending.
            let state_of = |format: ThumbnailFormat| thumbs.get(&(height, format)).unwrap_or(&ThumbState::Pending);
            let (status, width, error) = match state_of(ThumbnailFormat::Source) {
                ThumbState::Pending => (ThumbnailStatus::Pending, expected_width, None),
                ThumbState::Ready { width, .. } => (ThumbnailStatus::Ready, *width, None),
                ThumbState::Failed { reason } => (ThumbnailStatus::Failed, expected_width, Some(reason.clone())),
            };
            let formats = formats
                .iter()
                .map(|&format| {
                    let (status, size_bytes, error) = match state_of(format) {
                        ThumbState::Pending => (ThumbnailStatus::Pending, None, None),
                        ThumbState::Ready { size_bytes, .. } => (ThumbnailStatus::Ready, Some(*size_bytes), None),
                        ThumbState::Failed { reason } => (ThumbnailStatus::Failed, None, Some(reason.clone())),
                    };
                    FormatView {
                        format: format.name(image.format).to_owned(),
                        content_type: format.mime(image.format).to_owned(),
                        status,
                        url: format!("{image_url}/thumbnails/{height}.{}", format.extension(image.format)),
                        size_bytes,
                        error,
                    }
                })
                .collect();
            ThumbnailView { height, width, status, url: format!("{image_url}/thumbnails/{height}"), error, formats }
        })
        .collect();
    ImageView {
        id: image.id.to_string(),
        name: image.name.clone(),
        format: image.format.as_str().to_owned(),
        width: image.width,
        height: image.height,
        size_bytes: image.size_bytes,
        created_at: image.created_at,
        thumbnails,
        original_url: tier.original_link.then(|| format!("{image_url}/original")),
        expiring_links: tier.expiring_links,
        thumbhash: image.thumbhash.clone(),
        sha256: image.sha256.as_ref().map(hex),
        owner: None,
    }
}

/// A tier; `user_count` in admin views only.
pub fn tier_view(tier: &TierRecord, user_count: Option<u64>) -> TierView {
    TierView {
        id: tier.id.to_string(),
        name: tier.name.as_str().to_owned(),
        thumbnail_heights: tier.thumbnail_heights.iter().map(|h| h.get()).collect(),
        original_link: tier.original_link,
        expiring_links: tier.expiring_links,
        builtin: tier.builtin,
        formats: tier.formats.iter().collect(),
        max_images: tier.limits.max_images,
        max_storage_bytes: tier.limits.max_storage_bytes,
        max_upload_bytes: tier.limits.max_upload_bytes,
        uploads_per_hour: tier.limits.uploads_per_hour,
        user_count,
    }
}

pub fn token_view(token: &TokenRecord) -> TokenView {
    TokenView { id: token.id.to_string(), created_at: token.created_at }
}

/// A user's usage as the limits count it, at `now`.
pub fn usage_view(usage: &Usage, now: DateTime<Utc>) -> UsageView {
    UsageView {
        images: usage.images,
        storage_bytes: usage.storage_bytes(),
        original_bytes: usage.original_bytes,
        thumbnail_bytes: usage.thumbnail_bytes,
        uploads_last_hour: usage.uploads.count(now),
    }
}

/// A user with their usage against their tier's `limits` (at `now`); `tokens` in single-user
/// views only.
pub fn user_view(
    user: &UserRecord,
    usage: &Usage,
    limits: TierLimits,
    now: DateTime<Utc>,
    tokens: Option<Vec<TokenView>>,
) -> UserView {
    UserView {
        id: user.id.to_string(),
        username: user.username.to_string(),
        tier: user.tier.to_string(),
        is_active: user.is_active,
        is_admin: user.is_admin,
        created_at: user.created_at,
        image_count: usage.images,
        original_bytes: usage.original_bytes,
        thumbnail_bytes: usage.thumbnail_bytes,
        uploads_last_hour: usage.uploads.count(now),
        limits,
        tokens,
    }
}

pub fn variant_view(variant: Variant) -> VariantView {
    match variant {
        Variant::Original => VariantView::Named("original".to_owned()),
        Variant::Thumbnail(h) => VariantView::Height(h.get()),
    }
}

/// A link; its secret `url` only at creation, the owner in admin listings only.
pub fn link_view(link: &LinkRecord, url: Option<String>, now: DateTime<Utc>) -> LinkView {
    LinkView {
        id: link.id.to_string(),
        url,
        image_id: link.image_id.to_string(),
        variant: variant_view(link.variant),
        created_at: link.created_at,
        expires_at: link.expires_at,
        expires_in: link.seconds_left(now),
        owner: None,
        owner_username: None,
    }
}

// ---- request bodies ---------------------------------------------------------------------
// Fields that need precise per-field errors arrive as raw JSON values and are parsed into
// domain types by the handlers (a wrong type is a validation error on that field, not a
// generic "malformed JSON").

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateLink {
    /// Lifetime in seconds.
    #[schema(value_type = u32, minimum = 300, maximum = 30000)]
    pub expires_in: Option<serde_json::Value>,
    /// `"original"` (the default, also when null) or a thumbnail height your tier grants.
    #[schema(schema_with = variant_schema, required = false)]
    pub variant: Option<serde_json::Value>,
}

fn variant_schema() -> Schema {
    OneOfBuilder::new()
        .item(ObjectBuilder::new().schema_type(Type::String).enum_values(Some(["original"])))
        .item(height_schema())
        .item(ObjectBuilder::new().schema_type(Type::Null))
        .examples([serde_json::json!("original")])
        .into()
}

fn height_schema() -> ObjectBuilder {
    ObjectBuilder::new().schema_type(Type::Integer).minimum(Some(1)).maximum(Some(Height::MAX))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateUser {
    /// An existing tier's id (409 if there is none).
    #[schema(min_length = 1, max_length = 32, pattern = r"^[a-z0-9-]{1,32}$", example = "premium")]
    pub tier: Option<String>,
    pub is_active: Option<bool>,
    pub is_admin: Option<bool>,
    #[schema(min_length = 8, max_length = 1024, format = Password)]
    pub password: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateTier {
    /// The tier's slug, fixed at creation.
    #[schema(min_length = 1, max_length = 32, pattern = r"^[a-z0-9-]{1,32}$", example = "gold")]
    pub id: String,
    #[schema(
        min_length = 1,
        max_length = 64,
        pattern = r"^[^\x00-\x1f\x7f\u061c\u180e\u200b-\u200f\u202a-\u202e\u2060-\u2069\ufeff]*[^\x00-\x20\x7f\u061c\u180e\u200b-\u200f\u202a-\u202e\u2060-\u2069\ufeff][^\x00-\x1f\x7f\u061c\u180e\u200b-\u200f\u202a-\u202e\u2060-\u2069\ufeff]*$",
        example = "Gold"
    )]
    pub name: String,
    /// Heights in px, each 1..=4096, no repeats, at most 32.
    #[schema(schema_with = heights_schema)]
    pub thumbnail_heights: serde_json::Value,
    #[serde(default)]
    pub original_link: bool,
    #[serde(default)]
    pub expiring_links: bool,
    /// Thumbnail formats granted beyond the source's own: `webp`, `avif`, no repeats
    /// (absent: none).
    #[schema(schema_with = optional_formats_schema, required = false)]
    pub formats: Option<serde_json::Value>,
    /// Most images a holder may keep (absent or null: unlimited).
    #[schema(value_type = Option<i64>, minimum = 0, maximum = 1_000_000_000_i64, required = false)]
    #[serde(default)]
    pub max_images: Option<serde_json::Value>,
    /// Most bytes of originals and ready thumbnails a holder may keep (absent or null: unlimited).
    #[schema(value_type = Option<i64>, minimum = 0, maximum = 1_125_899_906_842_624_i64, required = false)]
    #[serde(default)]
    pub max_storage_bytes: Option<serde_json::Value>,
    /// Largest upload in bytes, at most the server's own limit (absent or null: the server's).
    #[schema(value_type = Option<i64>, minimum = 1, required = false)]
    #[serde(default)]
    pub max_upload_bytes: Option<serde_json::Value>,
    /// Most uploads in any 60 minutes (absent or null: unlimited).
    #[schema(value_type = Option<i64>, minimum = 1, maximum = 1_000_000, required = false)]
    #[serde(default)]
    pub uploads_per_hour: Option<serde_json::Value>,
}

impl CreateTier {
    /// The limits as sent, by field (absent and null alike: unlimited).
    pub fn limits(&self) -> [(LimitField, Option<&serde_json::Value>); 4] {
        [
            (LimitField::MaxImages, self.max_images.as_ref()),
            (LimitField::MaxStorageBytes, self.max_storage_bytes.as_ref()),
            (LimitField::MaxUploadBytes, self.max_upload_bytes.as_ref()),
            (LimitField::UploadsPerHour, self.uploads_per_hour.as_ref()),
        ]
    }
}

/// A field that may be sent as `null` (to clear it) or left out (to keep it): `Some(Null)` for
/// null, `None` when absent.
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<serde_json::Value>, D::Error> {
    serde_json::Value::deserialize(d).map(Some)
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateTier {
    #[schema(
        min_length = 1,
        max_length = 64,
        pattern = r"^[^\x00-\x1f\x7f\u061c\u180e\u200b-\u200f\u202a-\u202e\u2060-\u2069\ufeff]*[^\x00-\x20\x7f\u061c\u180e\u200b-\u200f\u202a-\u202e\u2060-\u2069\ufeff][^\x00-\x1f\x7f\u061c\u180e\u200b-\u200f\u202a-\u202e\u2060-\u2069\ufeff]*$",
        example = "Gold"
    )]
    pub name: Option<String>,
    /// Heights in px, each 1..=4096, no repeats, at most 32 (null: unchanged).
    #[schema(schema_with = optional_heights_schema, required = false)]
    pub thumbnail_heights: Option<serde_json::Value>,
    pub original_link: Option<bool>,
    pub expiring_links: Option<bool>,
    /// Thumbnail formats granted beyond the source's own: `webp`, `avif`, no repeats
    /// (null: unchanged).
    #[schema(schema_with = optional_formats_schema, required = false)]
    pub formats: Option<serde_json::Value>,
    /// Most images a holder may keep (null: unlimited; absent: unchanged).
    #[schema(value_type = Option<i64>, minimum = 0, maximum = 1_000_000_000_i64, required = false)]
    #[serde(default, deserialize_with = "present")]
    pub max_images: Option<serde_json::Value>,
    /// Most bytes of originals and ready thumbnails a holder may keep (null: unlimited; absent:
    /// unchanged).
    #[schema(value_type = Option<i64>, minimum = 0, maximum = 1_125_899_906_842_624_i64, required = false)]
    #[serde(default, deserialize_with = "present")]
    pub max_storage_bytes: Option<serde_json::Value>,
    /// Largest upload in bytes, at most the server's own limit (null: the server's; absent:
    /// unchanged).
    #[schema(value_type = Option<i64>, minimum = 1, required = false)]
    #[serde(default, deserialize_with = "present")]
    pub max_upload_bytes: Option<serde_json::Value>,
    /// Most uploads in any 60 minutes (null: unlimited; absent: unchanged).
    #[schema(value_type = Option<i64>, minimum = 1, maximum = 1_000_000, required = false)]
    #[serde(default, deserialize_with = "present")]
    pub uploads_per_hour: Option<serde_json::Value>,
}

impl UpdateTier {
    /// The limits sent, by field (`None`: not sent, keep it).
    pub fn limits(&self) -> [(LimitField, Option<&serde_json::Value>); 4] {
        [
            (LimitField::MaxImages, self.max_images.as_ref()),
            (LimitField::MaxStorageBytes, self.max_storage_bytes.as_ref()),
            (LimitField::MaxUploadBytes, self.max_upload_bytes.as_ref()),
            (LimitField::UploadsPerHour, self.uploads_per_hour.as_ref()),
        ]
    }
}

fn formats_builder() -> ArrayBuilder {
    let names = ExtraFormat::ALL.map(ExtraFormat::as_str);
    ArrayBuilder::new()
        .items(ObjectBuilder::new().schema_type(Type::String).enum_values(Some(names)))
        .max_items(Some(names.len()))
        .unique_items(true)
        .examples([serde_json::json!(["webp", "avif"])])
}

fn optional_formats_schema() -> Schema {
    formats_builder().schema_type(SchemaType::from_iter([Type::Array, Type::Null])).into()
}

fn heights_builder() -> ArrayBuilder {
    ArrayBuilder::new()
        .items(height_schema())
        .max_items(Some(Heights::MAX_LEN))
        .unique_items(true)
        .examples([serde_json::json!([200, 400])])
}

fn heights_schema() -> Schema {
    heights_builder().into()
}

fn optional_heights_schema() -> Schema {
    heights_builder().schema_type(SchemaType::from_iter([Type::Array, Type::Null])).into()
}

/// A JSON number as a whole number: JSON Schema's `integer` includes `300.0`, so the API does.
pub fn whole_number(value: &serde_json::Value) -> Option<i64> {
    let n = value.as_number()?;
    n.as_i64().or_else(|| {
        let f = n.as_f64()?;
        // Beyond 2^53 a float names no exact integer; every range here is far below it.
        (f.fract() == 0.0 && f.abs() < 9.0e15).then_some(f as i64)
    })
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    #[schema(example = "ok")]
    pub status: &'static str,
    /// Readiness only, per check: `metadata` (`ok`, `read-only`, `error`), `blobs` (`ok`,
    /// `error`), `queue` (`ok`, `degraded`, `error`), `disk` (`ok`, `low`; present when metadata or
    /// blobs are on a local disk).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub checks: Option<BTreeMap<&'static str, String>>,
}

// ---- the job queue (admins) ---------------------------------------------------------------

#[derive(Debug, Serialize, ToSchema)]
pub struct RetryView {
    pub job: String,
    /// Always `queued`: the job is back in line with fresh attempts.
    #[schema(example = "queued")]
    pub status: &'static str,
}
