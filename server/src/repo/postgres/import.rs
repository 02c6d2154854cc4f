//! Bulk writes for `migrate-repo` (see [`crate::repo::migrate`]).

use std::collections::BTreeMap;

use super::images::insert_job_if_new;
use super::rows::{format_name, heights_of, variant_name, IMAGE_COLUMNS, LINK_COLUMNS, USER_COLUMNS};
use super::{db_error, PgRepo};
use crate::repo::migrate::Exported;
use crate::repo::{RepoResult, ThumbState};

/// The tables `migrate-repo` fills, for the count check.
const TABLES: &[&str] =
    &["tiers", "users", "tokens", "images", "thumbnails", "links", "outbox", "reconcile", "settings"];

impl PgRepo {
    /// Writes one batch in one transaction. Rows already present are kept (a run can be
    /// repeated), except tiers, which take the copied definition.
    pub async fn import(&self, batch: &[Exported]) -> RepoResult<()> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(db_error)?;
        for record in batch {
            match record {
                Exported::Tier(tier) => {
                    tx.execute(
                        "INSERT INTO tiers (id, name, thumbnail_heights, original_link, expiring_links, builtin)
                         VALUES ($1, $2, $3, $4, $5, $6)
                         ON CONFLICT (id) DO UPDATE SET name = EXCLUDED.name, thumbnail_heights = EXCLUDED.thumbnail_heights,
                             original_link = EXCLUDED.original_link, expiring_links = EXCLUDED.expiring_links,
                             builtin = EXCLUDED.builtin",
                        &[
                            &tier.id.as_str(),
                            &tier.name.as_str(),
                            &heights_of(&tier.thumbnail_heights),
                            &tier.original_link,
                            &tier.expiring_links,
                            &tier.builtin,
                        ],
                    )
                    .await
                }
                Exported::User(user) => {
                    tx.execute(
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
                }
                Exported::Token(token, hash) => {
                    tx.execute(
                        "INSERT INTO tokens (hash, id, user_id, created_at) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
                        &[&hash.as_slice(), &token.id.to_bytes().as_slice(), &token.user_id.to_bytes().as_slice(), &token.created_at],
                    )
                    .await
                }
                Exported::Image(image) => {
                    tx.execute(
                        &format!(
                            "INSERT INTO images ({IMAGE_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT DO NOTHING"
                        ),
                        &[
                            &image.id.to_bytes().as_slice(),
                            &image.owner.to_bytes().as_slice(),
                            &image.name,
                            &format_name(image.format),
                            &(image.width as i32),
                            &(image.height as i32),
                            &(image.size_bytes as i64),
                            &image.created_at,
                        ],
                    )
                    .await
                }
                Exported::Thumbnail(image, requested, state) => {
                    let (status, width, height, size, reason) = match state {
                        ThumbState::Pending => ("pending", None, None, None, None),
                        ThumbState::Ready { width, height, size_bytes } => {
                            ("ready", Some(*width as i32), Some(*height as i32), Some(*size_bytes as i64), None)
                        }
                        ThumbState::Failed { reason } => ("failed", None, None, None, Some(reason.as_str())),
                    };
                    tx.execute(
                        "INSERT INTO thumbnails (image_id, requested_height, status, width, height, size_bytes, reason)
                         VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING",
                        &[&image.to_bytes().as_slice(), &(*requested as i32), &status, &width, &height, &size, &reason],
                    )
                    .await
                }
                Exported::Link(link, hash) => {
                    tx.execute(
                        &format!(
                            "INSERT INTO links (token_hash, {LINK_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING"
                        ),
                        &[
                            &hash.as_slice(),
                            &link.id.to_bytes().as_slice(),
                            &link.owner.to_bytes().as_slice(),
                            &link.image_id.to_bytes().as_slice(),
                            &variant_name(link.variant),
                            &link.created_at,
                            &link.expires_at,
                        ],
                    )
                    .await
                }
                Exported::Job(job) => {
                    insert_job_if_new(&tx, job).await?;
                    Ok(0)
                }
                Exported::Reconcile(user, generation) => {
                    tx.execute(
                        "INSERT INTO reconcile (user_id, generation) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                        &[&user.to_bytes().as_slice(), &(*generation as i64)],
                    )
                    .await
                }
                Exported::StoreMarker(marker) => {
                    tx.execute(
                        "INSERT INTO settings (key, value) VALUES ('store_marker', $1)
                         ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value",
                        &[marker],
                    )
                    .await
                }
            }
            .map_err(db_error)?;
        }
        tx.commit().await.map_err(db_error)?;
        Ok(())
    }

    /// Derived state after the last batch: each user's image count, and the generation
    /// sequence past every copied generation.
    pub async fn finish_import(&self) -> RepoResult<()> {
        let client = self.client().await?;
        client
            .batch_execute(
                "UPDATE users SET image_count = (SELECT count(*) FROM images WHERE images.owner = users.id);
                 SELECT setval('reconcile_generation', greatest((SELECT max(generation) FROM reconcile), 1));",
            )
            .await
            .map_err(db_error)?;
        Ok(())
    }

    /// Rows per table `migrate-repo` fills.
    pub async fn table_counts(&self) -> RepoResult<BTreeMap<&'static str, u64>> {
        let client = self.client().await?;
        let mut counts = BTreeMap::new();
        for table in TABLES {
            let row = client.query_one(&format!("SELECT count(*) FROM {table}"), &[]).await.map_err(db_error)?;
            counts.insert(*table, row.get::<_, i64>(0).max(0) as u64);
        }
        Ok(counts)
    }

    /// Closes the pool (the command-line tools' end).
    pub fn close_pool(&self) {
        self.pool.close();
    }
}
