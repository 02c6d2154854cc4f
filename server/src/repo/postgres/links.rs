//! Expiring links.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use imageapi_shared::domain::{ImageId, LinkId, UserId, Variant};
use tokio_postgres::GenericClient;

use super::rows::{self, variant_name, LINK_COLUMNS};
use super::{db_error, PgRepo};
use crate::repo::{LinkRecord, LinkRepo, RepoError, RepoResult, TierRecord, UserRecord};

/// Records a link; `on_conflict` is empty or an `ON CONFLICT` clause (`migrate-repo`).
pub(super) async fn write_link(
    client: &impl GenericClient,
    link: &LinkRecord,
    token_hash: &[u8; 32],
    on_conflict: &str,
) -> RepoResult<()> {
    client
        .execute(
            &format!("INSERT INTO links (token_hash, {LINK_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7){on_conflict}"),
            &[
                &token_hash.as_slice(),
                &link.id.to_bytes().as_slice(),
                &link.owner.to_bytes().as_slice(),
                &link.image_id.to_bytes().as_slice(),
                &variant_name(link.variant),
                &link.created_at,
                &link.expires_at,
            ],
        )
        .await
        .map_err(db_error)?;
    Ok(())
}

#[async_trait]
impl LinkRepo for PgRepo {
    async fn insert_link(&self, link: &LinkRecord, token_hash: &[u8; 32]) -> RepoResult<()> {
        let client = self.client().await?;
        // A deleted image (or owner) fails the foreign key: NotFound.
        let client: &tokio_postgres::Client = &client;
        write_link(client, link, token_hash, "").await
    }

    async fn link(&self, id: LinkId) -> RepoResult<LinkRecord> {
        let client = self.client().await?;
        let stmt = client
            .prepare_cached(&format!("SELECT {LINK_COLUMNS} FROM links WHERE id = $1"))
            .await
            .map_err(db_error)?;
        let row = client.query_opt(&stmt, &[&id.to_bytes().as_slice()]).await.map_err(db_error)?;
        rows::link(&row.ok_or(RepoError::NotFound)?)
    }

    async fn link_by_token_hash(&self, hash: &[u8; 32]) -> RepoResult<Option<LinkRecord>> {
        let client = self.client().await?;
        let stmt = client
            .prepare_cached(&format!("SELECT {LINK_COLUMNS} FROM links WHERE token_hash = $1"))
            .await
            .map_err(db_error)?;
        let row = client.query_opt(&stmt, &[&hash.as_slice()]).await.map_err(db_error)?;
        row.as_ref().map(rows::link).transpose()
    }

    async fn user_links(&self, user: UserId) -> RepoResult<Vec<LinkRecord>> {
        let client = self.client().await?;
        let rows = client
            .query(
                &format!("SELECT {LINK_COLUMNS} FROM links WHERE owner = $1 ORDER BY id"),
                &[&user.to_bytes().as_slice()],
            )
            .await
            .map_err(db_error)?;
        rows.iter().map(rows::link).collect()
    }

    async fn image_links(&self, image: ImageId) -> RepoResult<Vec<LinkRecord>> {
        let client = self.client().await?;
        let rows = client
            .query(
                &format!("SELECT {LINK_COLUMNS} FROM links WHERE image_id = $1 ORDER BY id"),
                &[&image.to_bytes().as_slice()],
            )
            .await
            .map_err(db_error)?;
        rows.iter().map(rows::link).collect()
    }

    async fn live_links(&self, now: DateTime<Utc>) -> RepoResult<Vec<LinkRecord>> {
        let client = self.client().await?;
        let rows = client
            .query(&format!("SELECT {LINK_COLUMNS} FROM links WHERE expires_at > $1 ORDER BY expires_at, id"), &[&now])
            .await
            .map_err(db_error)?;
        rows.iter().map(rows::link).collect()
    }

    async fn delete_link(&self, id: LinkId) -> RepoResult<()> {
        let client = self.client().await?;
        let deleted =
            client.execute("DELETE FROM links WHERE id = $1", &[&id.to_bytes().as_slice()]).await.map_err(db_error)?;
        if deleted == 0 {
            return Err(RepoError::NotFound);
        }
        Ok(())
    }

    async fn revoke_links_not_granted(&self, user: &UserRecord, tier: &TierRecord) -> RepoResult<usize> {
        let client = self.client().await?;
        let owner = user.id.to_bytes();
        let deleted = if user.is_active && tier.expiring_links {
            let mut granted: Vec<String> =
                tier.thumbnail_heights.iter().map(|h| variant_name(Variant::Thumbnail(h))).collect();
            if tier.original_link {
                granted.push(variant_name(Variant::Original));
            }
            client
                .execute(
                    "DELETE FROM links WHERE owner = $1 AND variant <> ALL($2::text[])",
                    &[&owner.as_slice(), &granted],
                )
                .await
        } else {
            client.execute("DELETE FROM links WHERE owner = $1", &[&owner.as_slice()]).await
        }
        .map_err(db_error)?;
        Ok(deleted as usize)
    }

    async fn purge_links_expired_before(&self, cutoff: DateTime<Utc>) -> RepoResult<usize> {
        let client = self.client().await?;
        let deleted = client.execute("DELETE FROM links WHERE expires_at < $1", &[&cutoff]).await.map_err(db_error)?;
        Ok(deleted as usize)
    }
}
