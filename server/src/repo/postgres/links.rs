//! Expiring links.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use imageapi_core::domain::{ImageId, LinkId, UserId, Variant};
use tokio_postgres::GenericClient;

use super::rows::{self, variant_name, LINK_COLUMNS};
use super::{db_error, PgRepo};
use crate::repo::{LinkLimit, LinkRecord, LinkRepo, RepoError, RepoResult, TierRecord, UserRecord};

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

/// The advisory-lock class of link creations (the key is the owner): counting a user's live
/// links and adding one are one step across servers, without locking rows others wait on.
const LINK_CAP_LOCK: i32 = 0x6c_6e_6b;

fn owner_lock_key(owner: UserId) -> i32 {
    let bytes = owner.to_bytes();
    // The ULID's random tail; a collision only makes two users' creations take turns.
    i32::from_be_bytes([bytes[12], bytes[13], bytes[14], bytes[15]])
}

#[async_trait]
impl LinkRepo for PgRepo {
    async fn insert_link(&self, link: &LinkRecord, token_hash: &[u8; 32], max_live: usize) -> RepoResult<()> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(db_error)?;
        tx.execute("SELECT pg_advisory_xact_lock($1, $2)", &[&LINK_CAP_LOCK, &owner_lock_key(link.owner)])
            .await
            .map_err(db_error)?;
        let held = tx
            .query_one(
                "SELECT count(*), min(expires_at) FROM links WHERE owner = $1 AND expires_at > $2",
                &[&link.owner.to_bytes().as_slice(), &link.created_at],
            )
            .await
            .map_err(db_error)?;
        let (live, soonest): (i64, Option<DateTime<Utc>>) = (held.get(0), held.get(1));
        if live >= max_live as i64 {
            return Err(RepoError::LinkLimit(LinkLimit { max_live, next_free_at: soonest.unwrap_or(link.created_at) }));
        }
        // A deleted image (or owner) fails the foreign key: NotFound.
        let tx_client: &tokio_postgres::Transaction<'_> = &tx;
        write_link(tx_client, link, token_hash, "").await?;
        tx.commit().await.map_err(db_error)?;
        Ok(())
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

    async fn is_expired_link_token(&self, hash: &[u8; 32]) -> RepoResult<bool> {
        let client = self.client().await?;
        let stmt =
            client.prepare_cached("SELECT 1 FROM expired_link_tokens WHERE token_hash = $1").await.map_err(db_error)?;
        Ok(client.query_opt(&stmt, &[&hash.as_slice()]).await.map_err(db_error)?.is_some())
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

    async fn user_live_links(
        &self,
        user: UserId,
        now: DateTime<Utc>,
        cursor: Option<LinkId>,
        limit: usize,
    ) -> RepoResult<Vec<LinkRecord>> {
        let client = self.client().await?;
        let stmt = client
            .prepare_cached(&format!(
                "SELECT {LINK_COLUMNS} FROM links WHERE owner = $1 AND expires_at > $2 AND id < $3
                 ORDER BY id DESC LIMIT $4"
            ))
            .await
            .map_err(db_error)?;
        let rows = client
            .query(&stmt, &[&user.to_bytes().as_slice(), &now, &cursor_bytes(cursor), &(limit as i64)])
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

    async fn live_links(
        &self,
        now: DateTime<Utc>,
        cursor: Option<LinkId>,
        limit: usize,
    ) -> RepoResult<Vec<LinkRecord>> {
        let client = self.client().await?;
        let stmt = client
            .prepare_cached(&format!(
                "SELECT {LINK_COLUMNS} FROM links WHERE expires_at > $1 AND id < $2 ORDER BY id DESC LIMIT $3"
            ))
            .await
            .map_err(db_error)?;
        let rows = client.query(&stmt, &[&now, &cursor_bytes(cursor), &(limit as i64)]).await.map_err(db_error)?;
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

    async fn prune_expired_links(
        &self,
        now: DateTime<Utc>,
        forget_before: DateTime<Utc>,
    ) -> RepoResult<(usize, usize)> {
        let client = self.client().await?;
        let pruned = client
            .execute(
                "WITH gone AS (DELETE FROM links WHERE expires_at <= $1 RETURNING token_hash, expires_at)
                 INSERT INTO expired_link_tokens (token_hash, expires_at) SELECT token_hash, expires_at FROM gone
                 ON CONFLICT (token_hash) DO NOTHING",
                &[&now],
            )
            .await
            .map_err(db_error)?;
        let forgotten = client
            .execute("DELETE FROM expired_link_tokens WHERE expires_at < $1", &[&forget_before])
            .await
            .map_err(db_error)?;
        Ok((pruned as usize, forgotten as usize))
    }
}

/// An exclusive upper bound for a newest-first page: the cursor, or above every id.
fn cursor_bytes(cursor: Option<LinkId>) -> Vec<u8> {
    cursor.map_or_else(|| vec![0xff; 17], |c| c.to_bytes().to_vec())
}
