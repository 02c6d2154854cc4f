//! Tiers, users and API tokens.

use async_trait::async_trait;
use imageapi_core::domain::{TierId, TokenId, UserId};
use tokio_postgres::GenericClient;

use super::rows::{self, formats_of, heights_of, USER_COLUMNS};
use super::{db_error, PgRepo};
use crate::repo::{RepoError, RepoResult, TierEdit, TierRecord, TierRepo, TokenRecord, UserEdit, UserRecord, UserRepo};

pub(super) const TIER_COLUMNS: &str = "id, name, thumbnail_heights, original_link, expiring_links, builtin, formats, \
     max_images, max_storage_bytes, max_upload_bytes, uploads_per_hour";

/// A limit as its column stores it (NULL: unlimited; every range fits a bigint).
pub(super) fn limit_param(limit: Option<u64>) -> Option<i64> {
    limit.map(|v| i64::try_from(v).unwrap_or(i64::MAX))
}

/// Queues every user holding `tier` (or the one user) for reconciliation, with a new
/// generation, inside the caller's transaction.
const QUEUE_TIER_HOLDERS: &str = "INSERT INTO reconcile (user_id, generation)
     SELECT id, nextval('reconcile_generation') FROM users WHERE tier = $1
     ON CONFLICT (user_id) DO UPDATE SET generation = EXCLUDED.generation";
const QUEUE_USER: &str = "INSERT INTO reconcile (user_id, generation) VALUES ($1, nextval('reconcile_generation'))
     ON CONFLICT (user_id) DO UPDATE SET generation = EXCLUDED.generation";

/// Inserts a tier unless its id is taken; whether it was inserted.
async fn insert_tier(client: &deadpool_postgres::Client, tier: &TierRecord) -> RepoResult<bool> {
    let stmt = client
        .prepare_cached(&format!(
            "INSERT INTO tiers ({TIER_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
             ON CONFLICT (id) DO NOTHING"
        ))
        .await
        .map_err(db_error)?;
    let inserted = client
        .execute(
            &stmt,
            &[
                &tier.id.as_str(),
                &tier.name.as_str(),
                &heights_of(&tier.thumbnail_heights),
                &tier.original_link,
                &tier.expiring_links,
                &tier.builtin,
                &formats_of(&tier.formats),
                &limit_param(tier.limits.max_images),
                &limit_param(tier.limits.max_storage_bytes),
                &limit_param(tier.limits.max_upload_bytes),
                &limit_param(tier.limits.uploads_per_hour),
            ],
        )
        .await
        .map_err(db_error)?;
    Ok(inserted == 1)
}

/// Inserts a user unless the id or username is taken; whether it was inserted. (Also
/// `migrate-repo`'s insert.)
pub(super) async fn insert_user_if_new(client: &impl GenericClient, user: &UserRecord) -> RepoResult<bool> {
    let inserted = client
        .execute(
            &format!(
                "INSERT INTO users ({USER_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT DO NOTHING"
            ),
            &[
                &user.id.to_bytes().as_slice(),
                &user.username.as_str(),
                &user.password_hash,
                &user.tier.as_str(),
                &user.is_active,
                &user.is_admin,
                &user.created_at,
                &(user.credentials_version as i64),
            ],
        )
        .await
        .map_err(db_error)?;
    Ok(inserted == 1)
}

#[async_trait]
impl TierRepo for PgRepo {
    async fn seed_builtin_tiers(&self) -> RepoResult<()> {
        let client = self.client().await?;
        for tier in TierRecord::builtins() {
            insert_tier(&client, &tier).await?;
        }
        Ok(())
    }

    async fn tier(&self, id: &TierId) -> RepoResult<TierRecord> {
        let client = self.client().await?;
        let stmt = client
            .prepare_cached(&format!("SELECT {TIER_COLUMNS} FROM tiers WHERE id = $1"))
            .await
            .map_err(db_error)?;
        let row = client.query_opt(&stmt, &[&id.as_str()]).await.map_err(db_error)?;
        rows::tier(&row.ok_or(RepoError::NotFound)?)
    }

    async fn tiers(&self) -> RepoResult<Vec<TierRecord>> {
        let client = self.client().await?;
        let rows =
            client.query(&format!("SELECT {TIER_COLUMNS} FROM tiers ORDER BY id"), &[]).await.map_err(db_error)?;
        rows.iter().map(rows::tier).collect()
    }

    async fn tier_user_count(&self, id: &TierId) -> RepoResult<u64> {
        let client = self.client().await?;
        let row =
            client.query_one("SELECT count(*) FROM users WHERE tier = $1", &[&id.as_str()]).await.map_err(db_error)?;
        Ok(row.get::<_, i64>(0).max(0) as u64)
    }

    async fn create_tier(&self, tier: &TierRecord) -> RepoResult<()> {
        let client = self.client().await?;
        if !insert_tier(&client, tier).await? {
            return Err(RepoError::Conflict(format!("a tier with id '{}' already exists", tier.id)));
        }
        Ok(())
    }

    async fn update_tier(&self, id: &TierId, edit: &TierEdit) -> RepoResult<TierRecord> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(db_error)?;
        let row = tx
            .query_opt(&format!("SELECT {TIER_COLUMNS} FROM tiers WHERE id = $1 FOR UPDATE"), &[&id.as_str()])
            .await
            .map_err(db_error)?;
        let mut tier = rows::tier(&row.ok_or(RepoError::NotFound)?)?;
        edit.apply(&mut tier);
        tx.execute(
            "UPDATE tiers SET name = $2, thumbnail_heights = $3, original_link = $4, expiring_links = $5, formats = $6,
                 max_images = $7, max_storage_bytes = $8, max_upload_bytes = $9, uploads_per_hour = $10
             WHERE id = $1",
            &[
                &id.as_str(),
                &tier.name.as_str(),
                &heights_of(&tier.thumbnail_heights),
                &tier.original_link,
                &tier.expiring_links,
                &formats_of(&tier.formats),
                &limit_param(tier.limits.max_images),
                &limit_param(tier.limits.max_storage_bytes),
                &limit_param(tier.limits.max_upload_bytes),
                &limit_param(tier.limits.uploads_per_hour),
            ],
        )
        .await
        .map_err(db_error)?;
        tx.execute(QUEUE_TIER_HOLDERS, &[&id.as_str()]).await.map_err(db_error)?;
        tx.commit().await.map_err(db_error)?;
        Ok(tier)
    }

    async fn delete_tier(&self, id: &TierId) -> RepoResult<()> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(db_error)?;
        let row = tx
            .query_opt("SELECT builtin FROM tiers WHERE id = $1 FOR UPDATE", &[&id.as_str()])
            .await
            .map_err(db_error)?;
        let builtin: bool = row.ok_or(RepoError::NotFound)?.get(0);
        if builtin {
            return Err(RepoError::Conflict(format!(
                "'{id}' is a builtin tier; builtin tiers can be edited but not deleted"
            )));
        }
        let holders: i64 =
            tx.query_one("SELECT count(*) FROM users WHERE tier = $1", &[&id.as_str()]).await.map_err(db_error)?.get(0);
        if holders > 0 {
            return Err(RepoError::Conflict(format!(
                "{holders} user(s) hold tier '{id}'; move them to another tier first"
            )));
        }
        tx.execute("DELETE FROM tiers WHERE id = $1", &[&id.as_str()]).await.map_err(db_error)?;
        tx.commit().await.map_err(db_error)?;
        Ok(())
    }
}

/// Locks every active admin's row, in id order, and returns their ids: held until the
/// transaction ends, so a write that takes admin rights away sees every concurrent one's
/// outcome (PostgreSQL re-checks the `WHERE` of a row it waited for).
async fn lock_active_admins(tx: &tokio_postgres::Transaction<'_>) -> RepoResult<Vec<Vec<u8>>> {
    let rows = tx
        .query("SELECT id FROM users WHERE is_admin AND is_active ORDER BY id FOR UPDATE", &[])
        .await
        .map_err(db_error)?;
    Ok(rows.iter().map(|r| r.get::<_, Vec<u8>>(0)).collect())
}

#[async_trait]
impl UserRepo for PgRepo {
    async fn user(&self, id: UserId) -> RepoResult<UserRecord> {
        let client = self.client().await?;
        let stmt = client
            .prepare_cached(&format!("SELECT {USER_COLUMNS} FROM users WHERE id = $1"))
            .await
            .map_err(db_error)?;
        let row = client.query_opt(&stmt, &[&id.to_bytes().as_slice()]).await.map_err(db_error)?;
        rows::user(&row.ok_or(RepoError::NotFound)?)
    }

    async fn user_by_name(&self, name: &str) -> RepoResult<Option<UserRecord>> {
        let client = self.client().await?;
        let stmt = client
            .prepare_cached(&format!("SELECT {USER_COLUMNS} FROM users WHERE username = $1"))
            .await
            .map_err(db_error)?;
        let row = client.query_opt(&stmt, &[&name]).await.map_err(db_error)?;
        row.as_ref().map(rows::user).transpose()
    }

    async fn users(&self) -> RepoResult<Vec<UserRecord>> {
        let client = self.client().await?;
        let rows = client
            .query(&format!("SELECT {USER_COLUMNS} FROM users ORDER BY username"), &[])
            .await
            .map_err(db_error)?;
        rows.iter().map(rows::user).collect()
    }

    async fn create_user(&self, user: &UserRecord) -> RepoResult<()> {
        let client = self.client().await?;
        let client: &tokio_postgres::Client = &client;
        if !insert_user_if_new(client, user).await? {
            return Err(RepoError::Conflict(format!("the username '{}' is taken", user.username)));
        }
        Ok(())
    }

    async fn update_user(&self, id: UserId, edit: &UserEdit) -> RepoResult<UserRecord> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(db_error)?;
        // Locked before the user's own row, always in this order, so that two demotions
        // serialise (the second sees the first's outcome) and cannot deadlock.
        let admins = if edit.may_remove_an_admin() { lock_active_admins(&tx).await? } else { Vec::new() };
        let row = tx
            .query_opt(
                &format!("SELECT {USER_COLUMNS} FROM users WHERE id = $1 FOR UPDATE"),
                &[&id.to_bytes().as_slice()],
            )
            .await
            .map_err(db_error)?;
        let before = rows::user(&row.ok_or(RepoError::NotFound)?)?;
        let mut after = before.clone();
        edit.apply(&mut after);
        let key = id.to_bytes().to_vec();
        if before.is_admin
            && before.is_active
            && !(after.is_admin && after.is_active)
            && admins.iter().all(|a| *a == key)
        {
            return Err(crate::repo::last_admin_conflict());
        }
        // A missing tier fails the foreign key: NotFound, as the contract says.
        tx.execute(
            "UPDATE users SET password_hash = $2, tier = $3, is_active = $4, is_admin = $5, credentials_version = $6
             WHERE id = $1",
            &[
                &id.to_bytes().as_slice(),
                &after.password_hash,
                &after.tier.as_str(),
                &after.is_active,
                &after.is_admin,
                &(after.credentials_version as i64),
            ],
        )
        .await
        .map_err(db_error)?;
        if before.tier != after.tier {
            tx.execute(QUEUE_USER, &[&id.to_bytes().as_slice()]).await.map_err(db_error)?;
        }
        tx.commit().await.map_err(db_error)?;
        Ok(after)
    }

    async fn delete_user(&self, id: UserId) -> RepoResult<()> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(db_error)?;
        let key = id.to_bytes();
        let admins = lock_active_admins(&tx).await?;
        if admins.iter().any(|a| a.as_slice() == key.as_slice()) && admins.len() == 1 {
            return Err(crate::repo::last_admin_conflict());
        }
        tx.execute("DELETE FROM reconcile WHERE user_id = $1", &[&key.as_slice()]).await.map_err(db_error)?;
        // Tokens and links go with the row (ON DELETE CASCADE).
        let deleted = match tx.execute("DELETE FROM users WHERE id = $1", &[&key.as_slice()]).await {
            Ok(n) => n,
            Err(e) if e.code() == Some(&tokio_postgres::error::SqlState::FOREIGN_KEY_VIOLATION) => {
                return Err(RepoError::Conflict("the user still has images; delete them first".to_owned()));
            }
            Err(e) => return Err(db_error(e)),
        };
        if deleted == 0 {
            return Err(RepoError::NotFound);
        }
        tx.commit().await.map_err(db_error)?;
        Ok(())
    }

    async fn insert_token(&self, record: &TokenRecord, hash: &[u8; 32]) -> RepoResult<()> {
        let client = self.client().await?;
        client
            .execute(
                "INSERT INTO tokens (hash, id, user_id, created_at) VALUES ($1, $2, $3, $4)",
                &[
                    &hash.as_slice(),
                    &record.id.to_bytes().as_slice(),
                    &record.user_id.to_bytes().as_slice(),
                    &record.created_at,
                ],
            )
            .await
            .map_err(db_error)?;
        Ok(())
    }

    async fn user_by_token(&self, hash: &[u8; 32]) -> RepoResult<Option<UserRecord>> {
        let client = self.client().await?;
        let columns = USER_COLUMNS.split(", ").map(|c| format!("u.{c}")).collect::<Vec<_>>().join(", ");
        let stmt = client
            .prepare_cached(&format!(
                "SELECT {columns} FROM tokens t JOIN users u ON u.id = t.user_id WHERE t.hash = $1"
            ))
            .await
            .map_err(db_error)?;
        let row = client.query_opt(&stmt, &[&hash.as_slice()]).await.map_err(db_error)?;
        row.as_ref().map(rows::user).transpose()
    }

    async fn user_tokens(&self, user: UserId) -> RepoResult<Vec<TokenRecord>> {
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT id, user_id, created_at FROM tokens WHERE user_id = $1 ORDER BY id",
                &[&user.to_bytes().as_slice()],
            )
            .await
            .map_err(db_error)?;
        rows.iter().map(rows::token).collect()
    }

    async fn delete_token(&self, user: UserId, token: TokenId) -> RepoResult<()> {
        let client = self.client().await?;
        let deleted = client
            .execute(
                "DELETE FROM tokens WHERE user_id = $1 AND id = $2",
                &[&user.to_bytes().as_slice(), &token.to_bytes().as_slice()],
            )
            .await
            .map_err(db_error)?;
        if deleted == 0 {
            return Err(RepoError::NotFound);
        }
        Ok(())
    }
}
