//! The outbox of thumbnail jobs and the application of their reports.
//!
//! Every unfinished job is a record here, written in the same transaction as the thumbnails it
//! makes pending (an upload, a tier change). The dispatcher delivers records to the queue; a
//! job's record goes away only in the transaction that applies its report. So whatever the
//! queue loses, the outbox still has.

use std::collections::{BTreeMap, BTreeSet};

use imageapi_core::domain::{ImageId, JobId};
use imageapi_core::image::ThumbnailFormat;
use imageapi_core::jobs::{JobReport, ThumbnailJob, ThumbnailResult};
use sled::Transactional;

use super::{adjust_usage, decode, id16, thumb_key, tx_decode, tx_encode, ImageRecord, RepoError, SledDb, ThumbState};
use crate::repo::Applied;

impl SledDb {
    /// Outbox jobs in id (creation) order, starting after `after`.
    pub fn outbox_jobs(&self, after: Option<JobId>, limit: usize) -> Result<Vec<ThumbnailJob>, RepoError> {
        let iter = match after {
            Some(id) => {
                self.outbox.range((std::ops::Bound::Excluded(id.to_bytes().to_vec()), std::ops::Bound::Unbounded))
            }
            None => self.outbox.iter(),
        };
        iter.values()
            .take(limit)
            .map(|v| {
                let mut job: ThumbnailJob = decode(&v?)?;
                if job.owner.is_none() {
                    // Recorded before jobs named their owner.
                    job.owner = self.image(job.image_id).ok().map(|image| image.owner);
                }
                Ok(job)
            })
            .collect()
    }

    pub fn outbox_ids(&self) -> Result<BTreeSet<JobId>, RepoError> {
        let mut ids = BTreeSet::new();
        for key in self.outbox.iter().keys() {
            if let Some(bytes) = id16(&key?) {
                ids.insert(JobId::from_bytes(bytes));
            }
        }
        Ok(ids)
    }

    /// Whether the job is still in the outbox (not applied, and its image not deleted).
    pub fn in_outbox(&self, job: JobId) -> Result<bool, RepoError> {
        Ok(self.outbox.contains_key(job.to_bytes())?)
    }

    pub fn outbox_len(&self) -> u64 {
        self.outbox.len() as u64
    }

    /// Applies a job's report and retires the job, atomically. Idempotent: a thumbnail already
    /// ready stays as it is, and a repeated report changes nothing.
    pub fn apply_report(&self, report: &JobReport) -> Result<Applied, RepoError> {
        if report.outcomes.iter().any(|o| o.image_id != report.image_id) {
            return Err(RepoError::Conflict("a job report mixes outcomes of several images".into()));
        }
        let applied = (&self.images, &self.thumbs, &self.pending, &self.outbox, &self.usage).transaction(
            |(images, thumbs, pending, outbox, usage)| {
                let was_outstanding = outbox.remove(&report.job_id.to_bytes())?.is_some();
                let mut orphans = Vec::new();
                let mut made_bytes = 0i64;
                let owner = match images.get(report.image_id.to_bytes())? {
                    Some(image) => {
                        let mut image: ImageRecord = tx_decode(&image)?;
                        if report.thumbhash.is_some() && image.thumbhash != report.thumbhash {
                            image.thumbhash.clone_from(&report.thumbhash);
                            images.insert(&image.id.to_bytes(), tx_encode(&image)?)?;
                        }
                        Some(image.owner)
                    }
                    None => None,
                };
                for outcome in &report.outcomes {
                    if owner.is_none() {
                        if matches!(outcome.result, ThumbnailResult::Ready { .. }) {
                            orphans.push(outcome.clone());
                        }
                        continue;
                    }
                    let key = thumb_key(outcome.image_id, outcome.requested_height, outcome.variant);
                    let state = match &outcome.result {
                        ThumbnailResult::Ready { width, height, size_bytes } => {
                            ThumbState::Ready { width: *width, height: *height, size_bytes: *size_bytes }
                        }
                        ThumbnailResult::Failed { reason } => ThumbState::Failed { reason: reason.clone() },
                    };
                    let current: Option<ThumbState> = thumbs.get(key.as_slice())?.map(|v| tx_decode(&v)).transpose()?;
                    pending.remove(key.as_slice())?;
                    if current.as_ref() == Some(&state) || matches!(current, Some(ThumbState::Ready { .. })) {
                        continue;
                    }
                    if let ThumbState::Ready { size_bytes, .. } = state {
                        made_bytes += size_bytes as i64;
                    }
                    thumbs.insert(key.as_slice(), tx_encode(&state)?)?;
                }
                if let (Some(owner), true) = (owner, made_bytes > 0) {
                    usage.insert(&owner.to_bytes(), adjust_usage(usage.get(owner.to_bytes())?, (0, 0, made_bytes)))?;
                }
                Ok(Applied { was_outstanding, orphans })
            },
        )?;
        Ok(applied)
    }

    /// Removes outbox jobs whose image was deleted (nothing waits for them; a failed one would
    /// otherwise wait for an admin forever). Returns how many.
    pub fn retire_jobs_of_deleted_images(&self) -> Result<usize, RepoError> {
        let mut retired = 0;
        for entry in self.outbox.iter() {
            let (key, value) = entry?;
            let job: ThumbnailJob = decode(&value)?;
            if self.images.get(job.image_id.to_bytes())?.is_none() {
                // Only if unchanged since read (a report may have retired it meanwhile).
                if self.outbox.compare_and_swap(&key, Some(&value), None::<&[u8]>)?.is_ok() {
                    retired += 1;
                }
            }
        }
        Ok(retired)
    }

    /// Records jobs for pending thumbnails that no outbox job covers (data from before the
    /// outbox existed, or a job lost to a bug): the invariant "pending ⇒ a job exists" is
    /// restored at every start. Returns the jobs created.
    pub fn adopt_uncovered_pending(&self) -> Result<Vec<ThumbnailJob>, RepoError> {
        let mut covered: BTreeMap<ImageId, BTreeSet<(u32, ThumbnailFormat)>> = BTreeMap::new();
        for value in self.outbox.iter().values() {
            let job: ThumbnailJob = decode(&value?)?;
            covered.entry(job.image_id).or_default().extend(job.variants());
        }
        let mut created = Vec::new();
        for (image_id, variants) in self.pending_thumbnails()? {
            let uncovered: Vec<(u32, ThumbnailFormat)> =
                variants.into_iter().filter(|v| !covered.get(&image_id).is_some_and(|c| c.contains(v))).collect();
            if uncovered.is_empty() {
                continue;
            }
            let heights: BTreeSet<u32> = uncovered.iter().map(|&(h, _)| h).collect();
            let formats: BTreeSet<ThumbnailFormat> = uncovered.iter().map(|&(_, f)| f).collect();
            let image = match self.image(image_id) {
                Ok(image) => image,
                Err(RepoError::NotFound) => continue,
                Err(e) => return Err(e),
            };
            let job = image.job(crate::ids::new_job_id(), heights.into_iter().collect(), formats.into_iter().collect());
            self.outbox.insert(job.id.to_bytes(), super::encode(&job)?)?;
            created.push(job);
        }
        Ok(created)
    }
}
