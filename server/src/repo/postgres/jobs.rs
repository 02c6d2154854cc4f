//! The outbox and the application of job reports.

use std::collections::{BTreeMap, BTreeSet};

use async_trait::async_trait;
use imageapi_core::domain::{ImageId, JobId, UserId};
use imageapi_core::image::ThumbnailFormat;
use imageapi_core::jobs::{JobReport, ThumbnailJob, ThumbnailResult};

use super::images::insert_job;
use super::listen::CHANNEL;
use super::rows::{self, JOB_COLUMNS, OUTBOX_WITH_OWNERS};
use super::{db_error, PgRepo};
use crate::repo::{Applied, JobRepo, RepoError, RepoResult};

/// Serialises adoption across servers starting together, so a job is adopted once.
const ADOPT_LOCK: i64 = 0x696d_6761_646f_7074;

#[async_trait]
impl JobRepo for PgRepo {
    async fn outbox_jobs(&self, after: Option<JobId>, limit: usize) -> RepoResult<Vec<ThumbnailJob>> {
        let client = self.client().await?;
        let limit = limit as i64;
        let rows = match after {
            Some(after) => {
                client
                    .query(
                        &format!("SELECT {JOB_COLUMNS} {OUTBOX_WITH_OWNERS} WHERE o.id > $1 ORDER BY o.id LIMIT $2"),
                        &[&after.to_bytes().as_slice(), &limit],
                    )
                    .await
            }
            None => {
                client
                    .query(&format!("SELECT {JOB_COLUMNS} {OUTBOX_WITH_OWNERS} ORDER BY o.id LIMIT $1"), &[&limit])
                    .await
            }
        }
        .map_err(db_error)?;
        rows.iter().map(rows::job).collect()
    }

    async fn outbox_ids(&self) -> RepoResult<BTreeSet<JobId>> {
        let client = self.client().await?;
        let rows = client.query("SELECT id FROM outbox", &[]).await.map_err(db_error)?;
        rows.iter().map(|r| Ok(JobId::from_bytes(rows::id16(r, "id")?))).collect()
    }

    async fn in_outbox(&self, job: JobId) -> RepoResult<bool> {
        let client = self.client().await?;
        let stmt = client.prepare_cached("SELECT 1 FROM outbox WHERE id = $1").await.map_err(db_error)?;
        Ok(client.query_opt(&stmt, &[&job.to_bytes().as_slice()]).await.map_err(db_error)?.is_some())
    }

    async fn outbox_len(&self) -> RepoResult<u64> {
        let client = self.client().await?;
        let row = client.query_one("SELECT count(*) FROM outbox", &[]).await.map_err(db_error)?;
        Ok(row.get::<_, i64>(0).max(0) as u64)
    }

    async fn apply_reports(&self, reports: &[JobReport]) -> RepoResult<Vec<Applied>> {
        if reports.iter().any(|r| r.outcomes.iter().any(|o| o.image_id != r.image_id)) {
            return Err(RepoError::Conflict("a job report mixes outcomes of several images".into()));
        }
        if reports.is_empty() {
            return Ok(Vec::new());
        }
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(db_error)?;
        let mut applied = Vec::with_capacity(reports.len());
        let mut made_bytes: BTreeMap<[u8; 16], i64> = BTreeMap::new();
        for report in reports {
            let was_outstanding = tx
                .execute("DELETE FROM outbox WHERE id = $1", &[&report.job_id.to_bytes().as_slice()])
                .await
                .map_err(db_error)?
                > 0;
            let image = report.image_id.to_bytes();
            // Locked so that a delete racing with this report either waits or is seen.
            let owner = match tx
                .query_opt("SELECT owner FROM images WHERE id = $1 FOR SHARE", &[&image.as_slice()])
                .await
                .map_err(db_error)?
            {
                Some(row) => Some(rows::id16(&row, "owner")?),
                None => None,
            };
            if let (Some(_), Some(thumbhash)) = (owner, &report.thumbhash) {
                tx.execute(
                    "UPDATE images SET thumbhash = $2 WHERE id = $1 AND thumbhash IS DISTINCT FROM $2",
                    &[&image.as_slice(), thumbhash],
                )
                .await
                .map_err(db_error)?;
            }
            let exists = owner.is_some();
            let mut orphans = Vec::new();
            for outcome in &report.outcomes {
                if !exists {
                    if matches!(outcome.result, ThumbnailResult::Ready { .. }) {
                        orphans.push(outcome.clone());
                    }
                    continue;
                }
                let requested = outcome.requested_height as i32;
                let format = rows::thumbnail_format_name(outcome.variant);
                // A ready thumbnail stays as it is; anything else takes the outcome.
                let upsert =
                    "INSERT INTO thumbnails (image_id, requested_height, status, width, height, size_bytes, reason, format)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
                     ON CONFLICT (image_id, requested_height, format) DO UPDATE
                     SET status = EXCLUDED.status, width = EXCLUDED.width, height = EXCLUDED.height,
                         size_bytes = EXCLUDED.size_bytes, reason = EXCLUDED.reason
                     WHERE thumbnails.status <> 'ready'
                     RETURNING size_bytes";
                let made = match &outcome.result {
                    ThumbnailResult::Ready { width, height, size_bytes } => {
                        tx.query_opt(
                            upsert,
                            &[
                                &image.as_slice(),
                                &requested,
                                &"ready",
                                &Some(*width as i32),
                                &Some(*height as i32),
                                &Some(*size_bytes as i64),
                                &None::<String>,
                                &format,
                            ],
                        )
                        .await
                    }
                    ThumbnailResult::Failed { reason } => {
                        tx.query_opt(
                            upsert,
                            &[
                                &image.as_slice(),
                                &requested,
                                &"failed",
                                &None::<i32>,
                                &None::<i32>,
                                &None::<i64>,
                                &Some(reason.as_str()),
                                &format,
                            ],
                        )
                        .await
                    }
                }
                .map_err(db_error)?;
                // A row comes back only when this outcome was written: count a thumbnail once.
                if let (Some(owner), Some(row)) = (owner, made) {
                    let bytes: Option<i64> = row.get(0);
                    *made_bytes.entry(owner).or_insert(0) += bytes.unwrap_or(0);
                }
            }
            applied.push(Applied { was_outstanding, orphans });
        }
        // In one order (by user) in every transaction, so concurrent reports cannot deadlock.
        for (owner, bytes) in made_bytes.into_iter().filter(|(_, b)| *b > 0) {
            tx.execute(
                "UPDATE users SET thumbnail_bytes = thumbnail_bytes + $2 WHERE id = $1",
                &[&owner.as_slice(), &bytes],
            )
            .await
            .map_err(db_error)?;
        }
        // Delivered at commit to every server listening: their waiting requests look again.
        tx.execute("SELECT pg_notify($1, '')", &[&CHANNEL]).await.map_err(db_error)?;
        tx.commit().await.map_err(db_error)?;
        Ok(applied)
    }

    async fn retire_jobs_of_deleted_images(&self) -> RepoResult<usize> {
        let client = self.client().await?;
        let retired = client
            .execute("DELETE FROM outbox o WHERE NOT EXISTS (SELECT 1 FROM images i WHERE i.id = o.image_id)", &[])
            .await
            .map_err(db_error)?;
        Ok(retired as usize)
    }

    async fn adopt_uncovered_pending(&self) -> RepoResult<Vec<ThumbnailJob>> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(db_error)?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&ADOPT_LOCK]).await.map_err(db_error)?;
        let rows = tx
            .query(
                "SELECT t.image_id, t.requested_height, t.format AS variant, i.format, i.owner
                 FROM thumbnails t JOIN images i ON i.id = t.image_id
                 WHERE t.status = 'pending' AND NOT EXISTS (
                     SELECT 1 FROM outbox o WHERE o.image_id = t.image_id
                         AND t.requested_height = ANY(o.heights) AND t.format = ANY(o.formats))
                 ORDER BY t.image_id, t.requested_height",
                &[],
            )
            .await
            .map_err(db_error)?;
        type Uncovered = (String, UserId, BTreeSet<u32>, BTreeSet<ThumbnailFormat>);
        let mut uncovered: BTreeMap<ImageId, Uncovered> = BTreeMap::new();
        for row in &rows {
            let image = ImageId::from_bytes(rows::id16(row, "image_id")?);
            let owner = UserId::from_bytes(rows::id16(row, "owner")?);
            let entry = uncovered
                .entry(image)
                .or_insert_with(|| (row.get::<_, String>("format"), owner, BTreeSet::new(), BTreeSet::new()));
            entry.2.insert(row.get::<_, i32>("requested_height") as u32);
            entry.3.insert(rows::parse_thumbnail_format(row.get::<_, &str>("variant"))?);
        }
        let mut created = Vec::with_capacity(uncovered.len());
        for (image_id, (format, owner, heights, formats)) in uncovered {
            let format = rows::parse_format(&format)?;
            let job = ThumbnailJob {
                id: crate::ids::new_job_id(),
                image_id,
                format,
                heights: heights.into_iter().collect(),
                formats: formats.into_iter().collect(),
                owner: Some(owner),
            };
            insert_job(&tx, &job).await?;
            created.push(job);
        }
        tx.commit().await.map_err(db_error)?;
        Ok(created)
    }
}
