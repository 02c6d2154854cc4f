//! Tier changes reaching existing images: heights the tier grants but an image lacks become
//! pending with a job in the outbox, and expiring links the tier no longer covers are deleted
//! (a link that died stays dead). (Heights no longer granted are hidden at read time; their
//! thumbnails are kept in case the grant comes back.)

use std::sync::Arc;
use std::time::Duration;

use imageapi_core::domain::UserId;

use super::Thumbnails;
use crate::repo::RepoError;

/// How many images of a user are reconciled per repository call.
const RECONCILE_BATCH: usize = 256;

impl Thumbnails {
    /// Brings every user queued for reconciliation in line with their tier, on every wake and
    /// at least every 30 s.
    pub async fn run_reconciler(self: Arc<Self>) {
        loop {
            if let Err(e) = self.reconcile_all().await {
                tracing::error!(error = %e, "reconciling tiers failed; retrying shortly");
            }
            let _ = tokio::time::timeout(Duration::from_secs(30), self.reconcile_wake.notified()).await;
        }
    }

    async fn reconcile_all(&self) -> Result<(), RepoError> {
        for entry in self.repo.reconcile_queue().await? {
            self.reconcile_user(entry.user).await?;
            self.repo.reconcile_done(entry).await?;
        }
        Ok(())
    }

    async fn reconcile_user(&self, user_id: UserId) -> Result<(), RepoError> {
        let user = match self.repo.user(user_id).await {
            Ok(user) => user,
            Err(RepoError::NotFound) => return Ok(()),
            Err(e) => return Err(e),
        };
        let tier = match self.repo.tier(&user.tier).await {
            Ok(tier) => tier,
            Err(RepoError::NotFound) => return Ok(()),
            Err(e) => return Err(e),
        };
        let heights: Vec<u32> = tier.thumbnail_heights.iter().map(|h| h.get()).collect();
        let revoked = self.repo.revoke_links_not_granted(&user, &tier).await?;
        if revoked > 0 {
            tracing::info!(user = %user_id, links = revoked, "deleted links the new tier no longer grants");
        }
        let mut cursor = None;
        loop {
            let page = self.repo.user_images(user_id, cursor, RECONCILE_BATCH).await?;
            let Some(last) = page.last() else { break };
            cursor = Some(last.id);
            let ids: Vec<_> = page.iter().map(|image| image.id).collect();
            // Durable before delivery, as everywhere.
            let jobs = self.repo.ensure_thumbnails(&ids, &heights, &tier.thumbnail_formats()).await?;
            self.submitted(&jobs).await;
        }
        Ok(())
    }
}
