//! Pages of images with their thumbnails' states, and deleting an image.

use std::collections::{BTreeMap, HashMap};

use imageapi_core::domain::{ImageId, UserId};

use crate::error::ApiError;
use crate::repo::{ImageRecord, Repo, RepoError, ThumbStates, TierRecord};
use crate::state::AppState;

/// One listed image with what rendering it needs: its owner's tier and the states of the
/// thumbnails that tier grants.
pub type PageRow = (ImageRecord, TierRecord, ThumbStates);

/// Loads the thumbnail states of a page of records (one repository call for all of them) and
/// each owner's tier. `known` is a tier already at hand (the caller's own). Where the page
/// ends is the caller's to say (`routes::paging::split_page`).
pub async fn load_page(
    repo: &dyn Repo,
    records: Vec<ImageRecord>,
    known: Option<(UserId, TierRecord)>,
) -> Result<Vec<PageRow>, RepoError> {
    let mut tiers: BTreeMap<UserId, TierRecord> = known.into_iter().collect();
    for record in &records {
        if tiers.contains_key(&record.owner) {
            continue;
        }
        match repo.user(record.owner).await {
            Ok(owner) => match repo.tier(&owner.tier).await {
                Ok(tier) => {
                    tiers.insert(record.owner, tier);
                }
                Err(RepoError::NotFound) => {}
                Err(e) => return Err(e),
            },
            // Being deleted together with its owner: not part of the page.
            Err(RepoError::NotFound) => {}
            Err(e) => return Err(e),
        }
    }
    let ids: Vec<ImageId> = records.iter().map(|r| r.id).collect();
    let mut states: HashMap<ImageId, ThumbStates> = repo.thumbnails_of_images(&ids).await?;
    let mut out = Vec::with_capacity(records.len());
    for record in records {
        let Some(tier) = tiers.get(&record.owner) else { continue };
        let all = states.remove(&record.id).unwrap_or_default();
        let granted: ThumbStates = all
            .into_iter()
            .filter(|((h, f), _)| tier.grants_format(*f) && tier.thumbnail_heights.iter().any(|g| g.get() == *h))
            .collect();
        out.push((record, tier.clone(), granted));
    }
    Ok(out)
}

/// Deletes metadata first (durably), then blobs: a crash in between leaves unreachable
/// blobs, never a record pointing at nothing.
pub async fn delete_image(state: &AppState, id: ImageId) -> Result<(), ApiError> {
    state.repo.delete_image(id).await?;
    if let Err(e) = state.store.delete_image(id).await {
        tracing::warn!(image = %id, error = %e, "image deleted but its blobs could not be removed");
    }
    Ok(())
}
