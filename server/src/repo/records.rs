//! What the repository stores: one record type per sled tree, serialised as JSON so that a
//! database can be inspected and migrated by hand.

use chrono::{DateTime, Utc};
use imageapi_shared::domain::{Heights, ImageId, LinkId, TierId, TierName, TokenId, UserId, Username, Variant};
use imageapi_shared::pipeline::ImageFormat;
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
}

impl TierRecord {
    /// May this tier serve `variant`?
    pub fn grants(&self, variant: Variant) -> bool {
        match variant {
            Variant::Original => self.original_link,
            Variant::Thumbnail(h) => self.thumbnail_heights.contains(h),
        }
    }

    /// The builtin tiers seeded on first start.
    pub fn builtins() -> Vec<TierRecord> {
        let tier = |id: &str, name: &str, heights: &[i64], original: bool, links: bool| -> Option<TierRecord> {
            Some(TierRecord {
                id: TierId::parse(id).ok()?,
                name: TierName::parse(name).ok()?,
                thumbnail_heights: Heights::parse(heights).ok()?,
                original_link: original,
                expiring_links: links,
                builtin: true,
            })
        };
        [
            tier(TierId::BASIC, "Basic", &[200], false, false),
            tier(TierId::PREMIUM, "Premium", &[200, 400], true, false),
            tier(TierId::ENTERPRISE, "Enterprise", &[200, 400], true, true),
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
}

/// The state of one thumbnail (an image and a requested height).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "lowercase")]
pub enum ThumbState {
    Pending,
    Ready { width: u32, height: u32, size_bytes: u64 },
    Failed { reason: String },
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
