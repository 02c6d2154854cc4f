//! Images, their thumbnails' states, and the reconciliation queue.

use std::collections::{BTreeSet, HashMap};

use async_trait::async_trait;
use imageapi_core::domain::{ImageId, JobId, UserId};
use imageapi_core::image::ThumbnailFormat;
use imageapi_core::jobs::ThumbnailJob;

use super::rows::{self, format_name, IMAGE_COLUMNS, THUMB_COLUMNS};
use super::users::TIER_COLUMNS;
use super::{db_error, PgRepo};
use crate::repo::{
    check_upload, ImageFilter, ImageRecord, ImageRepo, ImageScan, Inserted, NewImage, ReconcileEntry, RepoError,
    RepoResult, ThumbState, ThumbStates, UploadWindow, Usage, UserRecord, SCAN_BUDGET,
};

/// A user's usage from `image_count, original_bytes, thumbnail_bytes, upload_window`.
fn usage_of(row: &tokio_postgres::Row) -> Usage {
    let field = |i: usize| row.get::<_, i64>(i).max(0) as u64;
    Usage {
        images: field(0),
        original_bytes: field(1),
        thumbnail_bytes: field(2),
        uploads: UploadWindow::decode(row.get::<_, &[u8]>(3)),
    }
}

fn heights_param(heights: &[u32]) -> Vec<i32> {
    heights.iter().map(|&h| h as i32).collect()
}

fn formats_param(formats: &[ThumbnailFormat]) -> Vec<&'static str> {
    formats.iter().map(|&f| rows::thumbnail_format_name(f)).collect()
}

/// Records an image inside the caller's transaction; `on_conflict` is empty or an
/// `ON CONFLICT` clause (`migrate-repo` keeps rows already copied).
pub(super) async fn write_image(
    tx: &tokio_postgres::Transaction<'_>,
    image: &ImageRecord,
    on_conflict: &str,
) -> RepoResult<()> {
    tx.execute(
        &format!("INSERT INTO images ({IMAGE_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10){on_conflict}"),
        &[
            &image.id.to_bytes().as_slice(),
            &image.owner.to_bytes().as_slice(),
            &image.name,
            &format_name(image.format),
            &(image.width as i32),
            &(image.height as i32),
            &(image.size_bytes as i64),
            &image.created_at,
            &image.thumbhash,
            &image.sha256.as_ref().map(|h| h.as_slice()),
        ],
    )
    .await
    .map_err(db_error)?;
    Ok(())
}

/// Records a job in the outbox inside the caller's transaction.
pub(super) async fn insert_job(tx: &tokio_postgres::Transaction<'_>, job: &ThumbnailJob) -> RepoResult<()> {
    write_job(tx, job, "").await
}

/// [`insert_job`], keeping a job already recorded (`migrate-repo` runs again).
pub(super) async fn insert_job_if_new(tx: &tokio_postgres::Transaction<'_>, job: &ThumbnailJob) -> RepoResult<()> {
    write_job(tx, job, " ON CONFLICT DO NOTHING").await
}

async fn write_job(tx: &tokio_postgres::Transaction<'_>, job: &ThumbnailJob, on_conflict: &str) -> RepoResult<()> {
    tx.execute(
        &format!(
            "INSERT INTO outbox (id, image_id, format, heights, formats) VALUES ($1, $2, $3, $4, $5){on_conflict}"
        ),
        &[
            &job.id.to_bytes().as_slice(),
            &job.image_id.to_bytes().as_slice(),
            &format_name(job.format),
            &heights_param(&job.heights),
            &formats_param(&job.formats),
        ],
    )
    .await
    .map_err(db_error)?;
    Ok(())
}

#[async_trait]
impl ImageRepo for PgRepo {
    async fn insert_image(&self, image: &ImageRecord, job_id: JobId) -> RepoResult<Inserted> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(db_error)?;
        let owner = image.owner.to_bytes();
        // The owner's row stays locked until commit: a tier change or deactivation waits for
        // this upload, or this upload sees it.
        let row = tx
            .query_opt(
                &format!("SELECT {} FROM users WHERE id = $1 FOR NO KEY UPDATE", rows::USER_COLUMNS),
                &[&owner.as_slice()],
            )
            .await
            .map_err(db_error)?;
        let owner_record: UserRecord = rows::user(&row.ok_or(RepoError::NotFound)?)?;
        if !owner_record.is_active {
            return Err(RepoError::NotFound);
        }
        let tier_row = tx
            .query_opt(&format!("SELECT {TIER_COLUMNS} FROM tiers WHERE id = $1"), &[&owner_record.tier.as_str()])
            .await
            .map_err(db_error)?;
        let tier = rows::tier(&tier_row.ok_or(RepoError::NotFound)?)?;
        // The owner's row lock orders this with every other upload of theirs, on any server:
        // the content lookup, the limits and the counts below are one step.
        if let Some(sha256) = &image.sha256 {
            let held = tx
                .query_opt(
                    &format!("SELECT {IMAGE_COLUMNS} FROM images WHERE owner = $1 AND sha256 = $2"),
                    &[&owner.as_slice(), &sha256.as_slice()],
                )
                .await
                .map_err(db_error)?;
            if let Some(held) = held {
                return Ok(Inserted::Existing(rows::image(&held)?));
            }
        }
        let usage_row = tx
            .query_one(
                "SELECT image_count, original_bytes, thumbnail_bytes, upload_window FROM users WHERE id = $1",
                &[&owner.as_slice()],
            )
            .await
            .map_err(db_error)?;
        let mut usage = usage_of(&usage_row);
        if let Err(refusal) = check_upload(&tier.limits, &usage, image.size_bytes, image.created_at) {
            return Err(RepoError::Quota(refusal));
        }
        usage.uploads.record(image.created_at);
        write_image(&tx, image, "").await?;
        tx.execute(
            "UPDATE users SET image_count = image_count + 1, original_bytes = original_bytes + $2, upload_window = $3
             WHERE id = $1",
            &[&owner.as_slice(), &(image.size_bytes as i64), &usage.uploads.encode()],
        )
        .await
        .map_err(db_error)?;
        let heights: Vec<u32> = tier.thumbnail_heights.iter().map(|h| h.get()).collect();
        let job = if heights.is_empty() {
            None
        } else {
            let formats = tier.thumbnail_formats();
            tx.execute(
                "INSERT INTO thumbnails (image_id, requested_height, format, status)
                 SELECT $1, h, f, 'pending' FROM unnest($2::integer[]) AS h CROSS JOIN unnest($3::text[]) AS f",
                &[&image.id.to_bytes().as_slice(), &heights_param(&heights), &formats_param(&formats)],
            )
            .await
            .map_err(db_error)?;
            let job = image.job(job_id, heights, formats);
            insert_job(&tx, &job).await?;
            Some(job)
        };
        tx.commit().await.map_err(db_error)?;
        Ok(Inserted::New(NewImage { tier, job }))
    }

    async fn image_by_content(&self, owner: UserId, sha256: &[u8; 32]) -> RepoResult<Option<ImageRecord>> {
        let client = self.client().await?;
        let stmt = client
            .prepare_cached(&format!("SELECT {IMAGE_COLUMNS} FROM images WHERE owner = $1 AND sha256 = $2"))
            .await
            .map_err(db_error)?;
        let row =
            client.query_opt(&stmt, &[&owner.to_bytes().as_slice(), &sha256.as_slice()]).await.map_err(db_error)?;
        row.as_ref().map(rows::image).transpose()
    }

    async fn image(&self, id: ImageId) -> RepoResult<ImageRecord> {
        let client = self.client().await?;
        let stmt = client
            .prepare_cached(&format!("SELECT {IMAGE_COLUMNS} FROM images WHERE id = $1"))
            .await
            .map_err(db_error)?;
        let row = client.query_opt(&stmt, &[&id.to_bytes().as_slice()]).await.map_err(db_error)?;
        rows::image(&row.ok_or(RepoError::NotFound)?)
    }

    async fn usage(&self, user: UserId) -> RepoResult<Usage> {
        let client = self.client().await?;
        let stmt = client
            .prepare_cached(
                "SELECT image_count, original_bytes, thumbnail_bytes, upload_window FROM users WHERE id = $1",
            )
            .await
            .map_err(db_error)?;
        let row = client.query_opt(&stmt, &[&user.to_bytes().as_slice()]).await.map_err(db_error)?;
        Ok(row.as_ref().map(usage_of).unwrap_or_default())
    }

    async fn user_images(&self, user: UserId, cursor: Option<ImageId>, limit: usize) -> RepoResult<Vec<ImageRecord>> {
        let client = self.client().await?;
        let owner = user.to_bytes();
        let limit = limit as i64;
        let rows = match cursor {
            Some(cursor) => {
                let stmt = client
                    .prepare_cached(&format!(
                        "SELECT {IMAGE_COLUMNS} FROM images WHERE owner = $1 AND id < $2 ORDER BY id DESC LIMIT $3"
                    ))
                    .await
                    .map_err(db_error)?;
                client.query(&stmt, &[&owner.as_slice(), &cursor.to_bytes().as_slice(), &limit]).await
            }
            None => {
                let stmt = client
                    .prepare_cached(&format!(
                        "SELECT {IMAGE_COLUMNS} FROM images WHERE owner = $1 ORDER BY id DESC LIMIT $2"
                    ))
                    .await
                    .map_err(db_error)?;
                client.query(&stmt, &[&owner.as_slice(), &limit]).await
            }
        }
        .map_err(db_error)?;
        rows.iter().map(rows::image).collect()
    }

    async fn user_image_ids(&self, user: UserId) -> RepoResult<Vec<ImageId>> {
        let client = self.client().await?;
        let rows = client
            .query("SELECT id FROM images WHERE owner = $1 ORDER BY id", &[&user.to_bytes().as_slice()])
            .await
            .map_err(db_error)?;
        rows.iter().map(|r| Ok(ImageId::from_bytes(rows::id16(r, "id")?))).collect()
    }

    async fn find_images(&self, filter: &ImageFilter, cursor: Option<ImageId>, limit: usize) -> RepoResult<ImageScan> {
        let client = self.client().await?;
        // The newest SCAN_BUDGET candidates (an index range scan, by owner or over all), then
        // the filter, so that no call reads more records than the budget allows.
        let owner = filter.owner.map(|o| o.to_bytes().to_vec());
        let cursor = cursor.map(|c| c.to_bytes().to_vec());
        let rows = client
            .query(
                &format!(
                    "WITH candidates AS (
                         SELECT {IMAGE_COLUMNS} FROM images
                         WHERE ($1::bytea IS NULL OR owner = $1) AND ($2::bytea IS NULL OR id < $2)
                         ORDER BY id DESC LIMIT $3),
                     matched AS (
                         SELECT * FROM candidates
                         WHERE ($4::text IS NULL OR strpos(lower(name), $4) > 0)
                           AND ($5::timestamptz IS NULL OR created_at > $5)
                           AND ($6::timestamptz IS NULL OR created_at < $6)
                         ORDER BY id DESC LIMIT $7),
                     scanned AS (
                         SELECT count(*) AS read, (SELECT id FROM candidates ORDER BY id LIMIT 1) AS last_read
                         FROM candidates)
                     SELECT matched.*, scanned.read, scanned.last_read
                     FROM scanned LEFT JOIN matched ON true ORDER BY matched.id DESC"
                ),
                &[
                    &owner.as_deref(),
                    &cursor.as_deref(),
                    &(SCAN_BUDGET as i64),
                    &filter.name_contains(),
                    &filter.uploaded_after,
                    &filter.uploaded_before,
                    &(limit as i64 + 1),
                ],
            )
            .await
            .map_err(db_error)?;
        // One row even without a match (its image columns null), for the scan's figures.
        let mut images = rows
            .iter()
            .filter(|row| row.get::<_, Option<&[u8]>>("id").is_some())
            .map(rows::image)
            .collect::<RepoResult<Vec<_>>>()?;
        let next = if images.len() > limit {
            images.truncate(limit);
            images.last().map(|i| i.id)
        } else {
            // No more matches among the candidates: more to read only if the budget ran out.
            match rows.first() {
                Some(row) if row.get::<_, i64>("read") as usize == SCAN_BUDGET => {
                    Some(ImageId::from_bytes(rows::id16(row, "last_read")?))
                }
                _ => None,
            }
        };
        Ok(ImageScan { images, next })
    }

    async fn thumbnail(&self, image: ImageId, height: u32, format: ThumbnailFormat) -> RepoResult<Option<ThumbState>> {
        let client = self.client().await?;
        let stmt = client
            .prepare_cached(&format!(
                "SELECT {THUMB_COLUMNS} FROM thumbnails WHERE image_id = $1 AND requested_height = $2 AND format = $3"
            ))
            .await
            .map_err(db_error)?;
        let key = image.to_bytes();
        let params: [&(dyn tokio_postgres::types::ToSql + Sync); 3] =
            [&key.as_slice(), &(height as i32), &rows::thumbnail_format_name(format)];
        let row = client.query_opt(&stmt, &params).await.map_err(db_error)?;
        Ok(row.as_ref().map(rows::thumbnail).transpose()?.map(|(_, state)| state))
    }

    async fn thumbnails_of_heights(&self, image: ImageId, heights: &[u32]) -> RepoResult<ThumbStates> {
        let client = self.client().await?;
        let stmt = client
            .prepare_cached(&format!(
                "SELECT {THUMB_COLUMNS} FROM thumbnails WHERE image_id = $1 AND requested_height = ANY($2)"
            ))
            .await
            .map_err(db_error)?;
        let rows =
            client.query(&stmt, &[&image.to_bytes().as_slice(), &heights_param(heights)]).await.map_err(db_error)?;
        rows.iter().map(rows::thumbnail).collect()
    }

    async fn thumbnails_of_images(&self, images: &[ImageId]) -> RepoResult<HashMap<ImageId, ThumbStates>> {
        if images.is_empty() {
            return Ok(HashMap::new());
        }
        let client = self.client().await?;
        let stmt = client
            .prepare_cached(&format!("SELECT image_id, {THUMB_COLUMNS} FROM thumbnails WHERE image_id = ANY($1)"))
            .await
            .map_err(db_error)?;
        let ids: Vec<Vec<u8>> = images.iter().map(|id| id.to_bytes().to_vec()).collect();
        let rows = client.query(&stmt, &[&ids]).await.map_err(db_error)?;
        let mut out: HashMap<ImageId, ThumbStates> = images.iter().map(|&id| (id, ThumbStates::new())).collect();
        for row in &rows {
            let image = ImageId::from_bytes(rows::id16(row, "image_id")?);
            let (slot, state) = rows::thumbnail(row)?;
            out.entry(image).or_default().insert(slot, state);
        }
        Ok(out)
    }

    async fn ensure_thumbnails(
        &self,
        images: &[ImageId],
        heights: &[u32],
        formats: &[ThumbnailFormat],
    ) -> RepoResult<Vec<ThumbnailJob>> {
        if images.is_empty() || heights.is_empty() || formats.is_empty() {
            return Ok(Vec::new());
        }
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(db_error)?;
        let mut jobs = Vec::new();
        for &image in images {
            let key = image.to_bytes();
            // Locked so that a concurrent delete waits (or is seen as gone).
            let Some(row) = tx
                .query_opt("SELECT format, owner FROM images WHERE id = $1 FOR SHARE", &[&key.as_slice()])
                .await
                .map_err(db_error)?
            else {
                continue;
            };
            let format = rows::parse_format(row.get::<_, &str>(0))?;
            let owner = UserId::from_bytes(rows::id16(&row, "owner")?);
            // Only the variants this call recorded get a job: two servers reconciling the same
            // user at once make one job between them. The job makes every new height in every
            // new format (remaking a few ready ones where only some pairs were missing, which
            // applying leaves as they are).
            let added = tx
                .query(
                    "INSERT INTO thumbnails (image_id, requested_height, format, status)
                     SELECT $1, h, f, 'pending' FROM unnest($2::integer[]) AS h CROSS JOIN unnest($3::text[]) AS f
                     ON CONFLICT (image_id, requested_height, format) DO NOTHING
                     RETURNING requested_height, format",
                    &[&key.as_slice(), &heights_param(heights), &formats_param(formats)],
                )
                .await
                .map_err(db_error)?;
            if added.is_empty() {
                continue;
            }
            let new_heights: BTreeSet<u32> = added.iter().map(|r| r.get::<_, i32>(0) as u32).collect();
            let new_formats: BTreeSet<ThumbnailFormat> = formats
                .iter()
                .copied()
                .filter(|&f| added.iter().any(|r| r.get::<_, &str>(1) == rows::thumbnail_format_name(f)))
                .collect();
            let job = ThumbnailJob {
                id: crate::ids::new_job_id(),
                image_id: image,
                format,
                heights: new_heights.into_iter().collect(),
                formats: new_formats.into_iter().collect(),
                owner: Some(owner),
            };
            insert_job(&tx, &job).await?;
            jobs.push(job);
        }
        tx.commit().await.map_err(db_error)?;
        Ok(jobs)
    }

    async fn delete_image(&self, id: ImageId) -> RepoResult<ImageRecord> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(db_error)?;
        // Locked first, so that no report makes a thumbnail ready between the sum and the
        // delete (reports lock the image FOR SHARE). In a statement of its own: the sum's
        // statement must start after the lock is held, or its snapshot would predate a report
        // that committed while it waited, and miss that thumbnail.
        tx.query_opt("SELECT 1 FROM images WHERE id = $1 FOR UPDATE", &[&id.to_bytes().as_slice()])
            .await
            .map_err(db_error)?;
        let thumbnail_bytes: i64 = tx
            .query_one(
                "SELECT coalesce(sum(size_bytes), 0)::bigint FROM thumbnails WHERE image_id = $1 AND status = 'ready'",
                &[&id.to_bytes().as_slice()],
            )
            .await
            .map_err(db_error)?
            .get(0);
        // Thumbnails and links go with the row (ON DELETE CASCADE).
        let row = tx
            .query_opt(
                &format!("DELETE FROM images WHERE id = $1 RETURNING {IMAGE_COLUMNS}"),
                &[&id.to_bytes().as_slice()],
            )
            .await
            .map_err(db_error)?;
        let record = rows::image(&row.ok_or(RepoError::NotFound)?)?;
        tx.execute(
            "UPDATE users SET image_count = greatest(image_count - 1, 0),
                 original_bytes = greatest(original_bytes - $2, 0), thumbnail_bytes = greatest(thumbnail_bytes - $3, 0)
             WHERE id = $1",
            &[&record.owner.to_bytes().as_slice(), &(record.size_bytes as i64), &thumbnail_bytes],
        )
        .await
        .map_err(db_error)?;
        tx.commit().await.map_err(db_error)?;
        Ok(record)
    }

    async fn reconcile_queue(&self) -> RepoResult<Vec<ReconcileEntry>> {
        let client = self.client().await?;
        let rows =
            client.query("SELECT user_id, generation FROM reconcile ORDER BY user_id", &[]).await.map_err(db_error)?;
        rows.iter()
            .map(|r| {
                Ok(ReconcileEntry {
                    user: UserId::from_bytes(rows::id16(r, "user_id")?),
                    generation: r.get::<_, i64>("generation") as u64,
                })
            })
            .collect()
    }

    async fn reconcile_done(&self, entry: ReconcileEntry) -> RepoResult<()> {
        let client = self.client().await?;
        client
            .execute(
                "DELETE FROM reconcile WHERE user_id = $1 AND generation = $2",
                &[&entry.user.to_bytes().as_slice(), &(entry.generation as i64)],
            )
            .await
            .map_err(db_error)?;
        Ok(())
    }
}
