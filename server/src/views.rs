//! The JSON shapes of the API (requests and responses), documented for OpenAPI. Conversions
//! from records live here too, so every route renders an object the same way.

use chrono::{DateTime, Utc};
use imageapi_shared::domain::{Height, Heights, Variant};
use imageapi_shared::pipeline::thumbnail_size;
use serde::{Deserialize, Serialize};
use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, OneOfBuilder, Schema, SchemaType, Type};
use utoipa::ToSchema;

use crate::repo::{ImageRecord, LinkRecord, ThumbState, TierRecord, TokenRecord, Usage, UserRecord};

#[derive(Debug, Serialize, ToSchema)]
pub struct ThumbnailView {
    /// The requested height (the variant's name in URLs).
    pub height: u32,
    /// Width of the thumbnail (expected width while pending).
    pub width: u32,
    #[schema(example = "ready")]
    pub status: &'static str,
    pub url: String,
    /// Why it failed (only with status `failed`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ImageView {
    pub id: String,
    pub name: String,
    #[schema(example = "jpeg")]
    pub format: &'static str,
    /// Display width (after EXIF orientation).
    pub width: u32,
    pub height: u32,
    pub size_bytes: u64,
    pub created_at: DateTime<Utc>,
    /// Exactly the heights the owner's tier grants, ascending.
    pub thumbnails: Vec<ThumbnailView>,
    /// Present only when the tier grants the original.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub original_url: Option<String>,
    /// Whether expiring links can be made for this image.
    pub expiring_links: bool,
    /// The owner's user id (admin listings only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
}

impl ImageView {
    pub fn new(
        base: &str,
        image: &ImageRecord,
        tier: &TierRecord,
        thumbs: &std::collections::BTreeMap<u32, ThumbState>,
    ) -> Self {
        let image_url = format!("{base}/api/v1/images/{}", image.id);
        let thumbnails = tier
            .thumbnail_heights
            .iter()
            .map(|h| {
                let h = h.get();
                let (expected_w, _) = thumbnail_size(image.width, image.height, h);
                let url = format!("{image_url}/thumbnails/{h}");
                // A granted height without a record is being scheduled right now: pending.
                match thumbs.get(&h).unwrap_or(&ThumbState::Pending) {
                    ThumbState::Pending => {
                        ThumbnailView { height: h, width: expected_w, status: "pending", url, error: None }
                    }
                    ThumbState::Ready { width, .. } => {
                        ThumbnailView { height: h, width: *width, status: "ready", url, error: None }
                    }
                    ThumbState::Failed { reason } => ThumbnailView {
                        height: h,
                        width: expected_w,
                        status: "failed",
                        url,
                        error: Some(reason.clone()),
                    },
                }
            })
            .collect();
        Self {
            id: image.id.to_string(),
            name: image.name.clone(),
            format: image.format.as_str(),
            width: image.width,
            height: image.height,
            size_bytes: image.size_bytes,
            created_at: image.created_at,
            thumbnails,
            original_url: tier.original_link.then(|| format!("{image_url}/original")),
            expiring_links: tier.expiring_links,
            owner: None,
        }
    }
}

/// One image as an admin sees it: with its owner and its live links.
#[derive(Debug, Serialize, ToSchema)]
pub struct AdminImageView {
    #[serde(flatten)]
    pub image: ImageView,
    pub owner_username: String,
    /// The owner's tier, which decides the thumbnails listed.
    pub owner_tier: String,
    /// Links not yet expired, soonest expiry first (without their secret URLs).
    pub links: Vec<LinkView>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ImagePage {
    pub results: Vec<ImageView>,
    /// URL of the next page, or null on the last page.
    pub next: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TierView {
    #[schema(example = "premium")]
    pub id: String,
    pub name: String,
    #[schema(example = json!([200, 400]))]
    pub thumbnail_heights: Vec<u32>,
    pub original_link: bool,
    pub expiring_links: bool,
    pub builtin: bool,
    /// How many users hold the tier (admin views only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_count: Option<u64>,
}

impl TierView {
    pub fn new(tier: &TierRecord, user_count: Option<u64>) -> Self {
        Self {
            id: tier.id.to_string(),
            name: tier.name.as_str().to_owned(),
            thumbnail_heights: tier.thumbnail_heights.iter().map(|h| h.get()).collect(),
            original_link: tier.original_link,
            expiring_links: tier.expiring_links,
            builtin: tier.builtin,
            user_count,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TierList {
    pub results: Vec<TierView>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct MeView {
    pub id: String,
    pub username: String,
    pub is_admin: bool,
    pub tier: TierView,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TokenView {
    pub id: String,
    pub created_at: DateTime<Utc>,
}

impl From<&TokenRecord> for TokenView {
    fn from(t: &TokenRecord) -> Self {
        Self { id: t.id.to_string(), created_at: t.created_at }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct NewTokenView {
    pub id: String,
    /// The secret; shown only in this response.
    pub token: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct UserView {
    pub id: String,
    pub username: String,
    pub tier: String,
    pub is_active: bool,
    pub is_admin: bool,
    pub created_at: DateTime<Utc>,
    pub image_count: u64,
    /// Bytes of the user's originals, as uploaded.
    pub original_bytes: u64,
    /// Bytes of the user's ready thumbnails.
    pub thumbnail_bytes: u64,
    /// The user's API tokens (single-user views only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tokens: Option<Vec<TokenView>>,
}

impl UserView {
    pub fn new(user: &UserRecord, usage: Usage, tokens: Option<Vec<TokenView>>) -> Self {
        Self {
            id: user.id.to_string(),
            username: user.username.to_string(),
            tier: user.tier.to_string(),
            is_active: user.is_active,
            is_admin: user.is_admin,
            created_at: user.created_at,
            image_count: usage.images,
            original_bytes: usage.original_bytes,
            thumbnail_bytes: usage.thumbnail_bytes,
            tokens,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct UserList {
    pub results: Vec<UserView>,
}

/// `"original"` or a thumbnail height.
#[derive(Debug, Serialize, ToSchema)]
#[serde(untagged)]
pub enum VariantView {
    #[schema(example = "original")]
    Named(&'static str),
    Height(u32),
}

impl From<Variant> for VariantView {
    fn from(v: Variant) -> Self {
        match v {
            Variant::Original => Self::Named("original"),
            Variant::Thumbnail(h) => Self::Height(h.get()),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct LinkView {
    pub id: String,
    /// Public URL; anyone holding it can fetch until it expires. Shown only at creation.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    pub image_id: String,
    pub variant: VariantView,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    /// Seconds left (at creation: the requested lifetime).
    pub expires_in: i64,
    /// The owner's user id and name (admin listings only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub owner_username: Option<String>,
}

impl LinkView {
    pub fn new(link: &LinkRecord, url: Option<String>, now: DateTime<Utc>) -> Self {
        Self {
            id: link.id.to_string(),
            url,
            image_id: link.image_id.to_string(),
            variant: link.variant.into(),
            created_at: link.created_at,
            expires_at: link.expires_at,
            expires_in: link.seconds_left(now),
            owner: None,
            owner_username: None,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct LinkList {
    pub results: Vec<LinkView>,
    /// URL of the next page, or null on the last page.
    pub next: Option<String>,
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
pub struct CreateUser {
    /// Letters, digits and `_ . @ -`.
    #[schema(min_length = 3, max_length = 64, pattern = r"^[A-Za-z0-9_.@-]{3,64}$", example = "alice")]
    pub username: String,
    #[schema(min_length = 8, max_length = 1024, format = Password)]
    pub password: String,
    /// An existing tier's id (409 if there is none).
    #[schema(min_length = 1, max_length = 32, pattern = r"^[a-z0-9-]{1,32}$", example = "basic")]
    pub tier: String,
    #[serde(default)]
    pub is_admin: bool,
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
    pub checks: Option<std::collections::BTreeMap<&'static str, String>>,
}

// ---- the job queue (admins) ---------------------------------------------------------------

#[derive(Debug, Serialize, ToSchema)]
pub struct QueueView {
    /// `embedded` (in-process) or `redis` (worker processes).
    #[schema(example = "redis")]
    pub mode: String,
    /// Waiting to run, including retries waiting for their backoff.
    pub pending: u64,
    /// Held by a worker.
    pub running: u64,
    /// Finished: thumbnails made, or reported failed for a bad image. (Embedded: since start.)
    pub done: u64,
    /// Given up after the last attempt; see `failed_jobs`, and retry them.
    pub failed: u64,
    /// Of `pending`, those accepted by this server but not yet handed to the queue: waiting for
    /// their owner's turn (at most `IMAGEAPI_QUEUE_WINDOW` jobs are in the queue at once, taken
    /// one user at a time), or for an unreachable queue to come back.
    pub undelivered: u64,
    /// Jobs whose results were recorded in the last 60 seconds.
    pub throughput_per_minute: u64,
    pub workers: Vec<QueueWorkerView>,
    /// Failed jobs (at most 100; `failed` is the exact count).
    pub failed_jobs: Vec<FailedJobView>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct QueueWorkerView {
    pub name: String,
    pub last_heartbeat: DateTime<Utc>,
    /// Seconds since the last heartbeat.
    pub heartbeat_age_secs: i64,
    /// Jobs the worker holds now.
    pub jobs: Vec<QueueJobView>,
    /// `ok`, or `misconfigured` for a worker that takes no jobs (see `problem`).
    pub status: &'static str,
    /// Why a misconfigured worker takes no jobs (it does not see the server's blob store).
    pub problem: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct QueueJobView {
    pub job: String,
    pub image_id: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct FailedJobView {
    pub job: String,
    pub image_id: Option<String>,
    pub heights: Vec<u32>,
    pub reason: String,
    pub attempts: u32,
    pub failed_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RetryView {
    pub job: String,
    /// Always `queued`: the job is back in line with fresh attempts.
    #[schema(example = "queued")]
    pub status: &'static str,
}
