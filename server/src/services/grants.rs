//! What a user's tier lets them have, checked in one place for every route that serves or
//! links a variant.

use imageapi_core::domain::Variant;
use imageapi_core::image::ThumbnailFormat;

use crate::error::ApiError;
use crate::repo::{Repo, TierRecord, UserRecord};

/// The user's tier, read now (a changed tier applies to the next request).
pub async fn tier_of(repo: &dyn Repo, user: &UserRecord) -> Result<TierRecord, ApiError> {
    Ok(repo.tier(&user.tier).await?)
}

/// 403 unless the tier serves `variant`.
pub fn require_variant(tier: &TierRecord, variant: Variant) -> Result<(), ApiError> {
    if tier.grants(variant) {
        return Ok(());
    }
    Err(ApiError::Forbidden(match variant {
        Variant::Original => "your tier does not include original downloads".to_owned(),
        Variant::Thumbnail(h) => format!("your tier does not include {h}px thumbnails"),
    }))
}

/// 403 unless the tier serves thumbnails encoded as `format`.
pub fn require_format(tier: &TierRecord, format: ThumbnailFormat) -> Result<(), ApiError> {
    match format.extra() {
        Some(extra) if !tier.grants_format(format) => {
            Err(ApiError::Forbidden(format!("your tier does not include {} thumbnails", extra.as_str().to_uppercase())))
        }
        _ => Ok(()),
    }
}

/// 403 unless the tier may make an expiring link to `variant`.
pub fn require_link(tier: &TierRecord, variant: Variant) -> Result<(), ApiError> {
    if !tier.expiring_links {
        return Err(ApiError::Forbidden("your tier does not include expiring links".to_owned()));
    }
    if !tier.grants(variant) {
        return Err(ApiError::Forbidden("your tier does not grant this variant".to_owned()));
    }
    Ok(())
}

/// Whether a link still stands: its owner active, their tier with links and the variant.
pub fn link_granted(owner: &UserRecord, tier: &TierRecord, variant: Variant) -> bool {
    owner.is_active && tier.expiring_links && tier.grants(variant)
}
