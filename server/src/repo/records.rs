//! What the repository stores: one record type per sled tree, serialised as JSON so that a
//! database can be inspected and migrated by hand.

use chrono::{DateTime, Utc};
use imageapi_core::domain::{
    Formats, Heights, ImageId, JobId, LinkId, TierId, TierLimits, TierName, TokenId, UserId, Username, Variant,
};
use imageapi_core::image::{ExtraFormat, ImageFormat, ThumbnailFormat};
use imageapi_core::jobs::ThumbnailJob;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UserRecord {
    pub id: UserId,
    pub username: Username,
    /// PHC string (argon2id).
    pub password_hash: String,
    pub tier: TierId,
    pub is_active: bool,
    pub is_admin: bool,
    pub created_at: DateTime<Utc>,
    /// Bumped whenever the password changes, so cached Basic-auth verifications die with it.
    pub credentials_version: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TokenRecord {
    pub id: TokenId,
    pub user_id: UserId,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TierRecord {
    pub id: TierId,
    pub name: TierName,
    pub thumbnail_heights: Heights,
    pub original_link: bool,
    pub expiring_links: bool,
    pub builtin: bool,
    /// Formats granted beyond the source's own. Records written before formats existed have
    /// none: read as `[]`, and builtin ones filled with their builtin formats once, at open
    /// (sled: `SledDb::ensure_tier_fields`; PostgreSQL: migration 0005).
    #[serde(default)]
    pub formats: Formats,
    /// Quotas, upload size and rate. Records written before limits existed have none (read as
    /// unlimited), and builtin ones get their builtin limits once, at open (sled:
    /// `SledDb::ensure_tier_fields`; PostgreSQL: migration 0006).
    #[serde(default)]
    pub limits: TierLimits,
}

impl TierRecord {
    /// The builtin tier `id` as seeded; `None` for any other id.
    pub fn builtin(id: &TierId) -> Option<TierRecord> {
        Self::builtins().into_iter().find(|t| &t.id == id)
    }

    /// May this tier serve `variant`?
    pub fn grants(&self, variant: Variant) -> bool {
        match variant {
            Variant::Original => self.original_link,
            Variant::Thumbnail(h) => self.thumbnail_heights.contains(h),
        }
    }

    /// May this tier serve thumbnails encoded as `format`? (The source's own always.)
    pub fn grants_format(&self, format: ThumbnailFormat) -> bool {
        format.extra().is_none_or(|f| self.formats.contains(f))
    }

    /// Every thumbnail encoding this tier gets: the source's, then the granted formats.
    pub fn thumbnail_formats(&self) -> Vec<ThumbnailFormat> {
        self.formats.variants()
    }

    /// The builtin tiers seeded on first start.
    pub fn builtins() -> Vec<TierRecord> {
        let tier = |id: &str,
                    name: &str,
                    heights: &[i64],
                    original: bool,
                    links: bool,
                    formats: &[ExtraFormat],
                    limits: TierLimits|
         -> Option<TierRecord> {
            Some(TierRecord {
                id: TierId::parse(id).ok()?,
                name: TierName::parse(name).ok()?,
                thumbnail_heights: Heights::parse(heights).ok()?,
                original_link: original,
                expiring_links: links,
                builtin: true,
                formats: Formats::of(formats),
                limits,
            })
        };
        use ExtraFormat::{Avif, Webp};
        const MIB: u64 = 1 << 20;
        const GIB: u64 = 1 << 30;
        // Sized for people, not scripts: Basic a personal album, Premium a busy site's worth,
        // Enterprise bound only by the server's own limits (README, "Tiers and limits").
        let basic = TierLimits {
            max_images: Some(100),
            max_storage_bytes: Some(GIB),
            max_upload_bytes: Some(10 * MIB),
            uploads_per_hour: Some(60),
        };
        let premium = TierLimits {
            max_images: Some(10_000),
            max_storage_bytes: Some(50 * GIB),
            max_upload_bytes: None,
            uploads_per_hour: Some(600),
        };
        [
            tier(TierId::BASIC, "Basic", &[200], false, false, &[Webp], basic),
            tier(TierId::PREMIUM, "Premium", &[200, 400], true, false, &[Webp, Avif], premium),
            tier(TierId::ENTERPRISE, "Enterprise", &[200, 400], true, true, &[Webp, Avif], TierLimits::UNLIMITED),
        ]
        .into_iter()
        .flatten()
        .collect()
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ImageRecord {
    pub id: ImageId,
    pub owner: UserId,
    /// The uploaded file name, as given (display only; never used as a path).
    pub name: String,
    pub format: ImageFormat,
    /// Display dimensions, after EXIF orientation.
    pub width: u32,
    pub height: u32,
    pub size_bytes: u64,
    pub created_at: DateTime<Utc>,
    /// ThumbHash placeholder (base64), once the image's first job has run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thumbhash: Option<String>,
    /// SHA-256 of the original's bytes; `None` for images recorded before it was.
    #[serde(default, skip_serializing_if = "Option::is_none", with = "sha256_hex")]
    pub sha256: Option<[u8; 32]>,
}

/// A content hash as lowercase hex in records (readable when a database is inspected).
mod sha256_hex {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(value: &Option<[u8; 32]>, s: S) -> Result<S::Ok, S::Error> {
        match value {
            Some(bytes) => s.serialize_str(&super::hex(bytes)),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<[u8; 32]>, D::Error> {
        let Some(text) = Option::<String>::deserialize(d)? else { return Ok(None) };
        super::parse_hex(&text).map(Some).ok_or_else(|| serde::de::Error::custom("sha256: 64 hex digits expected"))
    }
}

/// Lowercase hex of a content hash.
pub fn hex(bytes: &[u8; 32]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn parse_hex(text: &str) -> Option<[u8; 32]> {
    let digits = text.as_bytes();
    if digits.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, pair) in digits.chunks_exact(2).enumerate() {
        let s = std::str::from_utf8(pair).ok()?;
        out[i] = u8::from_str_radix(s, 16).ok()?;
    }
    Some(out)
}

impl ImageRecord {
    /// The job that makes `heights` of this image in each of `formats`.
    pub fn job(&self, id: JobId, heights: Vec<u32>, formats: Vec<ThumbnailFormat>) -> ThumbnailJob {
        ThumbnailJob { id, image_id: self.id, format: self.format, heights, formats, owner: Some(self.owner) }
    }
}

/// The state of one thumbnail variant (an image, a requested height, an encoding).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "lowercase", try_from = "StoredThumbState")]
pub enum ThumbState {
    Pending,
    Ready { width: u32, height: u32, size_bytes: u64 },
    Failed { reason: String },
}

/// [`ThumbState`] as stored, read as one flat struct: serde's internally tagged enums buffer
/// every field before choosing a variant, which made decoding these the largest single cost
/// of listing images.
#[derive(Deserialize)]
struct StoredThumbState {
    status: StoredStatus,
    width: Option<u32>,
    height: Option<u32>,
    size_bytes: Option<u64>,
    reason: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "lowercase")]
enum StoredStatus {
    Pending,
    Ready,
    Failed,
}

impl TryFrom<StoredThumbState> for ThumbState {
    type Error = &'static str;

    fn try_from(s: StoredThumbState) -> Result<Self, Self::Error> {
        Ok(match s.status {
            StoredStatus::Pending => ThumbState::Pending,
            StoredStatus::Ready => ThumbState::Ready {
                width: s.width.ok_or("a ready thumbnail without its width")?,
                height: s.height.ok_or("a ready thumbnail without its height")?,
                size_bytes: s.size_bytes.ok_or("a ready thumbnail without its size")?,
            },
            StoredStatus::Failed => ThumbState::Failed { reason: s.reason.unwrap_or_default() },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thumbnail_states_read_back_what_was_written() {
        for state in [
            ThumbState::Pending,
            ThumbState::Ready { width: 356, height: 200, size_bytes: 12_345 },
            ThumbState::Failed { reason: "not a JPEG".into() },
        ] {
            let json = serde_json::to_string(&state).expect("encode");
            assert_eq!(serde_json::from_str::<ThumbState>(&json).expect("decode"), state, "{json}");
        }
        assert_eq!(
            serde_json::to_string(&ThumbState::Ready { width: 1, height: 2, size_bytes: 3 }).expect("encode"),
            r#"{"status":"ready","width":1,"height":2,"size_bytes":3}"#,
            "the stored form is unchanged"
        );
        assert!(serde_json::from_str::<ThumbState>(r#"{"status":"ready","width":1}"#).is_err());
        assert!(serde_json::from_str::<ThumbState>(r#"{"status":"lost"}"#).is_err());
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LinkRecord {
    pub id: LinkId,
    pub owner: UserId,
    pub image_id: ImageId,
    pub variant: Variant,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

impl LinkRecord {
    pub fn is_expired(&self, now: DateTime<Utc>) -> bool {
        now >= self.expires_at
    }

    /// Whole seconds left, 0 once expired.
    pub fn seconds_left(&self, now: DateTime<Utc>) -> i64 {
        (self.expires_at - now).num_seconds().max(0)
    }
}
