//! Bulk writes for `migrate-repo` (see [`crate::repo::migrate`]).

use std::collections::BTreeMap;

use super::images::{insert_job_if_new, write_image};
use super::links::write_link;
use super::rows::{formats_of, heights_of};
use super::users::{insert_user_if_new, limit_param, TIER_COLUMNS};
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
        let inner: &tokio_postgres::Transaction<'_> = &tx;
        for record in batch {
            match record {
                Exported::Tier(tier) => {
                    tx.execute(
                        &format!(
                            "INSERT INTO tiers ({TIER_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
                             ON CONFLICT (id) DO UPDATE SET name = EXCLUDED.name, thumbnail_heights = EXCLUDED.thumbnail_heights,
                                 original_link = EXCLUDED.original_link, expiring_links = EXCLUDED.expiring_links,
                                 builtin = EXCLUDED.builtin, formats = EXCLUDED.formats, max_images = EXCLUDED.max_images,
                                 max_storage_bytes = EXCLUDED.max_storage_bytes, max_upload_bytes = EXCLUDED.max_upload_bytes,
                                 uploads_per_hour = EXCLUDED.uploads_per_hour"
                        ),
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
                }
                Exported::User(user, uploads) => {
                    insert_user_if_new(inner, user).await?;
                    tx.execute(
                        "UPDATE users SET upload_window = $2 WHERE id = $1",
                        &[&user.id.to_bytes().as_slice(), &uploads.encode()],
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
                    write_image(inner, image, " ON CONFLICT DO NOTHING").await?;
                    Ok(0)
                }
                Exported::Thumbnail(image, (requested, variant), state) => {
                    let (status, width, height, size, reason) = match state {
                        ThumbState::Pending => ("pending", None, None, None, None),
                        ThumbState::Ready { width, height, size_bytes } => {
                            ("ready", Some(*width as i32), Some(*height as i32), Some(*size_bytes as i64), None)
                        }
                        ThumbState::Failed { reason } => ("failed", None, None, None, Some(reason.as_str())),
                    };
                    tx.execute(
                        "INSERT INTO thumbnails (image_id, requested_height, status, width, height, size_bytes, reason, format)
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT DO NOTHING",
                        &[
                            &image.to_bytes().as_slice(),
                            &(*requested as i32),
                            &status,
                            &width,
                            &height,
                            &size,
                            &reason,
                            &super::rows::thumbnail_format_name(*variant),
                        ],
                    )
                    .await
                }
                Exported::Link(link, hash) => {
                    write_link(inner, link, hash, " ON CONFLICT DO NOTHING").await?;
                    Ok(0)
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

    /// Derived state after the last batch: each user's usage, and the generation
    /// sequence past every copied generation.
    pub async fn finish_import(&self) -> RepoResult<()> {
        let client = self.client().await?;
        client
            .batch_execute(
                "UPDATE users SET
                     image_count = (SELECT count(*) FROM images WHERE images.owner = users.id),
                     original_bytes = coalesce((SELECT sum(size_bytes) FROM images WHERE images.owner = users.id), 0),
                     thumbnail_bytes = coalesce((
                         SELECT sum(t.size_bytes) FROM thumbnails t JOIN images i ON i.id = t.image_id
                         WHERE i.owner = users.id AND t.status = 'ready'), 0);
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
