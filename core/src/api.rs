//! The JSON shapes of the API's answers (and of a user's creation), written once: the server
//! serialises them, the admin TUI deserialises the same types. With the `openapi` feature each
//! carries its OpenAPI schema. How a record becomes one of these is the server's business
//! (its `views` module); what the request bodies it parses look like is too.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ThumbnailView {
    /// The requested height (the variant's name in URLs).
    pub height: u32,
    /// Width of the thumbnail (expected width while pending).
    pub width: u32,
    #[cfg_attr(feature = "openapi", schema(value_type = String, example = "ready"))]
    pub status: ThumbnailStatus,
    pub url: String,
    /// Why it failed (only with status `failed`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Every format this thumbnail is served in: the source's own first, then each format the
    /// tier grants beyond it, each with its own URL (the extension form). The fields above
    /// describe the source's format; `url` above negotiates the format by `Accept`.
    #[serde(default)]
    pub formats: Vec<FormatView>,
}

/// One format of a thumbnail.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FormatView {
    /// `jpeg`, `png`, `webp` or `avif`.
    #[cfg_attr(feature = "openapi", schema(example = "webp"))]
    pub format: String,
    /// The media type it is served with.
    #[cfg_attr(feature = "openapi", schema(example = "image/webp"))]
    pub content_type: String,
    #[cfg_attr(feature = "openapi", schema(value_type = String, example = "ready"))]
    pub status: ThumbnailStatus,
    /// This format's own URL: `…/thumbnails/200.webp`.
    pub url: String,
    /// Bytes of the file (only with status `ready`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size_bytes: Option<u64>,
    /// Why it failed (only with status `failed`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Where a thumbnail stands: `pending`, `ready` or `failed`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ThumbnailStatus {
    Pending,
    Ready,
    Failed,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ImageView {
    pub id: String,
    pub name: String,
    #[cfg_attr(feature = "openapi", schema(example = "jpeg"))]
    pub format: String,
    /// Display width (after EXIF orientation).
    pub width: u32,
    pub height: u32,
    pub size_bytes: u64,
    pub created_at: DateTime<Utc>,
    /// Exactly the heights the owner's tier grants, ascending.
    pub thumbnails: Vec<ThumbnailView>,
    /// Present only when the tier grants the original.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub original_url: Option<String>,
    /// Whether expiring links can be made for this image.
    pub expiring_links: bool,
    /// A ThumbHash of the image (base64 of its bytes): a blurred placeholder a client can draw
    /// while the thumbnails load. Null until the image's first thumbnail job has run.
    #[serde(default)]
    pub thumbhash: Option<String>,
    /// SHA-256 of the original's bytes (hex). Uploading the same bytes again gives this image
    /// back. Null for images stored before it was recorded.
    #[serde(default)]
    pub sha256: Option<String>,
    /// The owner's user id (admin listings only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
}

impl ImageView {
    /// The thumbnail a preview is drawn from: 200 px if the tier has it, else the smallest.
    pub fn preview_thumbnail(&self) -> Option<&ThumbnailView> {
        self.thumbnails.iter().find(|t| t.height == 200).or_else(|| self.thumbnails.iter().min_by_key(|t| t.height))
    }
}

/// One image as an admin sees it: with its owner and its live links.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AdminImageView {
    #[serde(flatten)]
    pub image: ImageView,
    pub owner_username: String,
    /// The owner's tier, which decides the thumbnails listed.
    pub owner_tier: String,
    /// Links not yet expired, soonest expiry first (without their secret URLs).
    pub links: Vec<LinkView>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ImagePage {
    pub results: Vec<ImageView>,
    /// URL of the next page, or null on the last page.
    pub next: Option<String>,
}

impl ImagePage {
    /// The cursor of the next page (see [`next_cursor`]).
    pub fn next_cursor(&self) -> Option<String> {
        next_cursor(self.next.as_deref())
    }
}

/// The `cursor` parameter of a page's `next` URL. A client asks its own server for the next
/// page with it: the URL may name another host (the server's public one, behind a proxy).
pub fn next_cursor(next: Option<&str>) -> Option<String> {
    let query = next?.split_once('?')?.1;
    query.split('&').find_map(|pair| pair.strip_prefix("cursor=")).map(str::to_owned)
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TierView {
    #[cfg_attr(feature = "openapi", schema(example = "premium"))]
    pub id: String,
    pub name: String,
    #[cfg_attr(feature = "openapi", schema(example = json!([200, 400])))]
    pub thumbnail_heights: Vec<u32>,
    pub original_link: bool,
    pub expiring_links: bool,
    pub builtin: bool,
    /// Thumbnail formats granted beyond the source's own (which every tier gets).
    #[cfg_attr(feature = "openapi", schema(example = json!(["webp", "avif"])))]
    pub formats: Vec<crate::image::ExtraFormat>,
    /// Most images a holder may keep (null: unlimited).
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(minimum = 0, example = 100))]
    pub max_images: Option<u64>,
    /// Most bytes of originals and ready thumbnails a holder may keep (null: unlimited).
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(minimum = 0, example = 1_073_741_824_i64))]
    pub max_storage_bytes: Option<u64>,
    /// Largest upload in bytes (null: the server's own limit).
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(minimum = 1, example = 10_485_760))]
    pub max_upload_bytes: Option<u64>,
    /// Most uploads in any 60 minutes (null: unlimited).
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(minimum = 1, example = 60))]
    pub uploads_per_hour: Option<u64>,
    /// How many users hold the tier (admin views only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_count: Option<u64>,
}

impl TierView {
    /// The tier's limits as one value.
    pub fn limits(&self) -> crate::domain::TierLimits {
        crate::domain::TierLimits {
            max_images: self.max_images,
            max_storage_bytes: self.max_storage_bytes,
            max_upload_bytes: self.max_upload_bytes,
            uploads_per_hour: self.uploads_per_hour,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TierList {
    pub results: Vec<TierView>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MeView {
    pub id: String,
    pub username: String,
    pub is_admin: bool,
    pub tier: TierView,
    /// The limits that apply to you: your tier's, with `max_upload_bytes` never above the
    /// server's own (so it is always set). Null: unlimited.
    pub limits: crate::domain::TierLimits,
    /// Where you stand against them.
    pub usage: UsageView,
}

/// What a user's images take up, counted as the limits count it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct UsageView {
    /// Images held (against `max_images`).
    pub images: u64,
    /// Originals plus every ready thumbnail variant (against `max_storage_bytes`).
    pub storage_bytes: u64,
    pub original_bytes: u64,
    pub thumbnail_bytes: u64,
    /// Uploads accepted in the last 60 minutes, counted in whole minutes (against
    /// `uploads_per_hour`).
    pub uploads_last_hour: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TokenView {
    pub id: String,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct NewTokenView {
    pub id: String,
    /// The secret; shown only in this response.
    pub token: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
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
    /// Uploads accepted in the last 60 minutes (counted in whole minutes).
    #[serde(default)]
    pub uploads_last_hour: u64,
    /// The limits of the user's tier, to read the usage against (each null: unlimited).
    #[serde(default)]
    pub limits: crate::domain::TierLimits,
    /// The user's API tokens (single-user views only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokens: Option<Vec<TokenView>>,
}

impl UserView {
    /// Bytes of originals and thumbnails together.
    pub fn storage_bytes(&self) -> u64 {
        self.original_bytes.saturating_add(self.thumbnail_bytes)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct UserList {
    pub results: Vec<UserView>,
}

/// The body of a user's creation (admins).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct CreateUser {
    /// Letters, digits and `_ . @ -`.
    #[cfg_attr(
        feature = "openapi",
        schema(min_length = 3, max_length = 64, pattern = r"^[A-Za-z0-9_.@-]{3,64}$", example = "alice")
    )]
    pub username: String,
    #[cfg_attr(feature = "openapi", schema(min_length = 8, max_length = 1024, format = Password))]
    pub password: String,
    /// An existing tier's id (409 if there is none).
    #[cfg_attr(
        feature = "openapi",
        schema(min_length = 1, max_length = 32, pattern = r"^[a-z0-9-]{1,32}$", example = "basic")
    )]
    pub tier: String,
    #[serde(default)]
    pub is_admin: bool,
}

/// `"original"` or a thumbnail height.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(untagged)]
pub enum VariantView {
    #[cfg_attr(feature = "openapi", schema(example = "original"))]
    Named(String),
    Height(u32),
}

impl std::fmt::Display for VariantView {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Named(name) => f.write_str(name),
            Self::Height(height) => write!(f, "{height}"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LinkView {
    pub id: String,
    /// Public URL; anyone holding it can fetch until it expires. Shown only at creation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    pub image_id: String,
    pub variant: VariantView,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    /// Seconds left (at creation: the requested lifetime).
    pub expires_in: i64,
    /// The owner's user id and name (admin listings only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner_username: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LinkList {
    pub results: Vec<LinkView>,
    /// URL of the next page, or null on the last page.
    pub next: Option<String>,
}

impl LinkList {
    /// The cursor of the next page (see [`next_cursor`]).
    pub fn next_cursor(&self) -> Option<String> {
        next_cursor(self.next.as_deref())
    }
}

// ---- the job queue (admins) ---------------------------------------------------------------

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct QueueView {
    /// `embedded` (in-process) or `redis` (worker processes).
    #[cfg_attr(feature = "openapi", schema(example = "redis"))]
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

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct QueueWorkerView {
    pub name: String,
    pub last_heartbeat: DateTime<Utc>,
    /// Seconds since the last heartbeat.
    pub heartbeat_age_secs: i64,
    /// Jobs the worker holds now.
    pub jobs: Vec<QueueJobView>,
    /// `ok`, or `misconfigured` for a worker that takes no jobs (see `problem`).
    pub status: String,
    /// Why a misconfigured worker takes no jobs (it does not see the server's blob store).
    pub problem: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct QueueJobView {
    pub job: String,
    pub image_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FailedJobView {
    pub job: String,
    pub image_id: Option<String>,
    pub heights: Vec<u32>,
    pub reason: String,
    pub attempts: u32,
    pub failed_at: Option<DateTime<Utc>>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_next_cursor_is_read_from_any_host() {
        let next = Some("https://cdn.example/api/v1/links?limit=100&cursor=01ABC");
        assert_eq!(next_cursor(next).as_deref(), Some("01ABC"));
        assert_eq!(next_cursor(Some("/api/v1/links?limit=5")), None);
        assert_eq!(next_cursor(None), None);
    }

    #[test]
    fn variants_are_a_name_or_a_height_on_the_wire() {
        let original: VariantView = serde_json::from_str(r#""original""#).expect("a name");
        let height: VariantView = serde_json::from_str("200").expect("a height");
        assert_eq!((original.to_string(), height.to_string()), ("original".to_owned(), "200".to_owned()));
        assert_eq!(serde_json::to_string(&VariantView::Height(400)).ok().as_deref(), Some("400"));
    }

    #[test]
    fn thumbnail_statuses_are_lowercase_words() {
        assert_eq!(serde_json::to_string(&ThumbnailStatus::Pending).ok().as_deref(), Some(r#""pending""#));
        let ready: ThumbnailStatus = serde_json::from_str(r#""ready""#).expect("a status");
        assert_eq!(ready, ThumbnailStatus::Ready);
    }
}
