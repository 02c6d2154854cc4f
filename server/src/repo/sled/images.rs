//! Images, thumbnails and the reconciliation queue in sled.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use imageapi_core::domain::{ImageId, JobId, LinkId, UserId};
use imageapi_core::jobs::ThumbnailJob;
use sled::Transactional;

use super::*;
use crate::repo::{check_upload, ImageFilter, ImageScan, Inserted, SCAN_BUDGET};

impl SledDb {
    // ---- images and thumbnails --------------------------------------------------------------

    /// Records a new image with a pending thumbnail for every height its owner's tier grants,
    /// atomically. The owner and tier are read inside the transaction, so an upload racing with
    /// a tier change or a user deletion either lands before it (and is reconciled or deleted
    /// with the rest) or sees its outcome: no image ever gets a stale tier's heights or an
    /// owner that no longer exists. The content index and the tier's limits are checked in the
    /// same transaction (sled runs transactions one at a time), so 16 racing uploads at one
    /// image below `max_images` record exactly one. `NotFound` if the owner is gone or inactive.
    pub fn insert_image(&self, image: &ImageRecord, job_id: JobId) -> Result<Inserted, RepoError> {
        let trees = (
            &self.users,
            &self.tiers,
            &self.images,
            &self.user_images,
            &self.usage,
            &self.thumbs,
            &self.pending,
            &self.outbox,
            &self.image_by_content,
        );
        let inserted = trees.transaction(
            |(users, tiers, images, user_images, usage, thumbs, pending, outbox, image_by_content)| {
                let Some(owner) = users.get(image.owner.to_bytes())? else {
                    return abort(RepoError::NotFound);
                };
                let owner: UserRecord = tx_decode(&owner)?;
                if !owner.is_active {
                    return abort(RepoError::NotFound);
                }
                let Some(tier) = tiers.get(owner.tier.as_str())? else {
                    return abort(RepoError::NotFound);
                };
                let tier: TierRecord = tx_decode(&tier)?;
                if let Some(sha256) = &image.sha256 {
                    let key = content_key(image.owner, sha256);
                    if let Some(held) = image_by_content.get(&key)? {
                        if let Some(existing) = images.get(held)? {
                            return Ok(Inserted::Existing(tx_decode(&existing)?));
                        }
                    }
                    image_by_content.insert(key, &image.id.to_bytes())?;
                }
                let mut owner_usage = read_usage(usage.get(image.owner.to_bytes())?.as_deref());
                if let Err(refusal) = check_upload(&tier.limits, &owner_usage, image.size_bytes, image.created_at) {
                    return abort(RepoError::Quota(refusal));
                }
                owner_usage.images += 1;
                owner_usage.original_bytes += image.size_bytes;
                owner_usage.uploads.record(image.created_at);
                usage.insert(&image.owner.to_bytes(), write_usage(&owner_usage))?;
                images.insert(&image.id.to_bytes(), tx_encode(image)?)?;
                user_images.insert(cat(&image.owner.to_bytes(), &image.id.to_bytes()), &[])?;
                let state = tx_encode(&ThumbState::Pending)?;
                let formats = tier.thumbnail_formats();
                for h in tier.thumbnail_heights.iter() {
                    for &f in &formats {
                        let key = thumb_key(image.id, h.get(), f);
                        thumbs.insert(key.as_slice(), state.as_slice())?;
                        pending.insert(key, &[])?;
                    }
                }
                let heights: Vec<u32> = tier.thumbnail_heights.iter().map(|h| h.get()).collect();
                let job = if heights.is_empty() {
                    None
                } else {
                    let job = image.job(job_id, heights, formats);
                    outbox.insert(&job_id.to_bytes(), tx_encode(&job)?)?;
                    Some(job)
                };
                Ok(Inserted::New(crate::repo::NewImage { tier, job }))
            },
        )?;
        Ok(inserted)
    }

    /// The owner's image of this content, if any.
    pub fn image_by_content(&self, owner: UserId, sha256: &[u8; 32]) -> Result<Option<ImageRecord>, RepoError> {
        let Some(id) = self.image_by_content.get(content_key(owner, sha256))? else { return Ok(None) };
        match id16(&id).map(|id| self.image(ImageId::from_bytes(id))) {
            Some(Ok(image)) => Ok(Some(image)),
            Some(Err(RepoError::NotFound)) | None => Ok(None),
            Some(Err(e)) => Err(e),
        }
    }

    pub fn image(&self, id: ImageId) -> Result<ImageRecord, RepoError> {
        self.images.get(id.to_bytes())?.map(|v| decode(&v)).ok_or(RepoError::NotFound)?
    }

    /// A user's images, newest first, starting after `cursor` (exclusive).
    pub fn user_images(
        &self,
        user: UserId,
        cursor: Option<ImageId>,
        limit: usize,
    ) -> Result<Vec<ImageRecord>, RepoError> {
        let start = user.to_bytes().to_vec();
        let end = match cursor {
            Some(c) => cat(&user.to_bytes(), &c.to_bytes()),
            None => cat(&user.to_bytes(), &[0xff; 17]),
        };
        let mut out = Vec::with_capacity(limit);
        for key in self.user_images.range(start..end).keys().rev() {
            if out.len() == limit {
                break;
            }
            if let Some(bytes) = id16(&key?[16..]) {
                // Deleted between the key scan and the lookup: not part of the page.
                match self.image(ImageId::from_bytes(bytes)) {
                    Ok(image) => out.push(image),
                    Err(RepoError::NotFound) => {}
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(out)
    }

    /// The recorded thumbnails of an image, every height and encoding (whatever the tier now
    /// grants).
    pub fn thumbnails(&self, image: ImageId) -> Result<ThumbStates, RepoError> {
        self.thumbnails_under(&image.to_bytes())
    }

    fn thumbnails_under(&self, prefix: &[u8]) -> Result<ThumbStates, RepoError> {
        let mut out = BTreeMap::new();
        for entry in self.thumbs.scan_prefix(prefix) {
            let (key, value) = entry?;
            if let Some((_, height, format)) = parse_thumb_key(&key) {
                out.insert((height, format), decode(&value)?);
            }
        }
        Ok(out)
    }

    /// The recorded thumbnails of an image among `heights`, in every encoding (a short prefix
    /// scan per height: cheaper than all of the image's when the tier's heights are known).
    pub fn thumbnails_of_heights(&self, image: ImageId, heights: &[u32]) -> Result<ThumbStates, RepoError> {
        let mut out = BTreeMap::new();
        for &h in heights {
            out.extend(self.thumbnails_under(&thumb_key(image, h, ThumbnailFormat::Source))?);
        }
        Ok(out)
    }

    pub fn thumbnails_of_images(&self, images: &[ImageId]) -> Result<HashMap<ImageId, ThumbStates>, RepoError> {
        images.iter().map(|&id| Ok((id, self.thumbnails(id)?))).collect()
    }

    pub fn thumbnail(
        &self,
        image: ImageId,
        height: u32,
        format: ThumbnailFormat,
    ) -> Result<Option<ThumbState>, RepoError> {
        self.thumbs.get(thumb_key(image, height, format))?.map(|v| decode(&v)).transpose()
    }

    /// Marks every (height, format) pending unless already recorded, and records a job for
    /// those newly pending in the outbox (returned), in one transaction.
    pub fn ensure_thumbnails(
        &self,
        image: ImageId,
        heights: &[u32],
        formats: &[ThumbnailFormat],
        job_id: JobId,
    ) -> Result<Option<ThumbnailJob>, RepoError> {
        let job = (&self.images, &self.thumbs, &self.pending, &self.outbox).transaction(
            |(images, thumbs, pending, outbox)| {
                let Some(record) = images.get(image.to_bytes())? else {
                    return Ok(None);
                };
                let record: ImageRecord = tx_decode(&record)?;
                let state = tx_encode(&ThumbState::Pending)?;
                let (mut new_heights, mut new_formats) = (BTreeSet::new(), BTreeSet::new());
                for &h in heights {
                    for &f in formats {
                        let key = thumb_key(image, h, f);
                        if thumbs.get(key.as_slice())?.is_none() {
                            thumbs.insert(key.as_slice(), state.as_slice())?;
                            pending.insert(key, &[])?;
                            new_heights.insert(h);
                            new_formats.insert(f);
                        }
                    }
                }
                if new_heights.is_empty() {
                    return Ok(None);
                }
                // One job makes every new height in every new format: where only some pairs
                // were missing it remakes a few ready ones, which applying leaves as they are.
                let job = record.job(job_id, new_heights.into_iter().collect(), new_formats.into_iter().collect());
                outbox.insert(&job_id.to_bytes(), tx_encode(&job)?)?;
                Ok(Some(job))
            },
        )?;
        Ok(job)
    }

    /// [`Self::ensure_thumbnails`] for each image, with fresh job ids.
    pub fn ensure_thumbnails_of(
        &self,
        images: &[ImageId],
        heights: &[u32],
        formats: &[ThumbnailFormat],
    ) -> Result<Vec<ThumbnailJob>, RepoError> {
        let mut jobs = Vec::new();
        for &image in images {
            jobs.extend(self.ensure_thumbnails(image, heights, formats, crate::ids::new_job_id())?);
        }
        Ok(jobs)
    }

    /// Every pending thumbnail variant, grouped by image: what must be (re-)enqueued at start.
    pub fn pending_thumbnails(&self) -> Result<BTreeMap<ImageId, Vec<(u32, ThumbnailFormat)>>, RepoError> {
        let mut out: BTreeMap<ImageId, Vec<(u32, ThumbnailFormat)>> = BTreeMap::new();
        for key in self.pending.iter().keys() {
            if let Some((id, h, f)) = parse_thumb_key(&key?) {
                out.entry(id).or_default().push((h, f));
            }
        }
        Ok(out)
    }

    /// Deletes an image's metadata, its thumbnails' records and its links, atomically.
    pub fn delete_image(&self, id: ImageId) -> Result<ImageRecord, RepoError> {
        let record = self.image(id)?;
        let thumb_keys = self.thumbs.scan_prefix(id.to_bytes()).keys().collect::<Result<Vec<_>, _>>()?;
        let link_ids: Vec<LinkId> = self
            .image_links
            .scan_prefix(id.to_bytes())
            .keys()
            .filter_map(|k| k.ok().and_then(|k| id16(&k[16..])).map(LinkId::from_bytes))
            .collect();
        for link in link_ids {
            match self.delete_link(link) {
                Ok(()) | Err(RepoError::NotFound) => {}
                Err(e) => return Err(e),
            }
        }
        (&self.images, &self.user_images, &self.usage, &self.thumbs, &self.pending, &self.image_by_content)
            .transaction(|(images, user_images, usage, thumbs, pending, image_by_content)| {
                if images.remove(&id.to_bytes())?.is_none() {
                    return abort(RepoError::NotFound);
                }
                user_images.remove(cat(&record.owner.to_bytes(), &id.to_bytes()))?;
                if let Some(sha256) = &record.sha256 {
                    image_by_content.remove(content_key(record.owner, sha256))?;
                }
                let mut thumbnail_bytes = 0i64;
                for key in &thumb_keys {
                    if let Some(state) = thumbs.remove(key)? {
                        if let ThumbState::Ready { size_bytes, .. } = tx_decode(&state)? {
                            thumbnail_bytes += size_bytes as i64;
                        }
                    }
                    pending.remove(key)?;
                }
                let delta = (-1, -(record.size_bytes as i64), -thumbnail_bytes);
                let owner_usage = adjust_usage(usage.get(record.owner.to_bytes())?, delta);
                usage.insert(&record.owner.to_bytes(), owner_usage)?;
                Ok(())
            })?;
        Ok(record)
    }

    /// Images matching `filter`, newest first after `cursor`: a reverse range scan of the
    /// owner's index (with an owner) or of all images, reading at most [`SCAN_BUDGET`] records.
    pub fn find_images(
        &self,
        filter: &ImageFilter,
        cursor: Option<ImageId>,
        limit: usize,
    ) -> Result<ImageScan, RepoError> {
        let ids: Box<dyn Iterator<Item = Result<ImageId, RepoError>>> = match filter.owner {
            Some(owner) => {
                let end = match cursor {
                    Some(c) => cat(&owner.to_bytes(), &c.to_bytes()),
                    None => cat(&owner.to_bytes(), &[0xff; 17]),
                };
                Box::new(self.user_images.range(owner.to_bytes().to_vec()..end).keys().rev().filter_map(
                    |key| match key {
                        Ok(key) => id16(&key[16..]).map(|b| Ok(ImageId::from_bytes(b))),
                        Err(e) => Some(Err(e.into())),
                    },
                ))
            }
            None => {
                let keys = match cursor {
                    Some(c) => self.images.range(..c.to_bytes().to_vec()),
                    None => self.images.range::<Vec<u8>, _>(..),
                };
                Box::new(keys.keys().rev().filter_map(|key| match key {
                    Ok(key) => id16(&key).map(|b| Ok(ImageId::from_bytes(b))),
                    Err(e) => Some(Err(e.into())),
                }))
            }
        };
        let mut scan = ImageScan::default();
        let (mut read, mut last_read) = (0, None);
        for id in ids {
            let id = id?;
            if read == SCAN_BUDGET {
                // More to read: the next call goes on after the last one read.
                scan.next = last_read;
                return Ok(scan);
            }
            read += 1;
            last_read = Some(id);
            let image = match self.image(id) {
                Ok(image) => image,
                // Deleted between the key scan and the lookup.
                Err(RepoError::NotFound) => continue,
                Err(e) => return Err(e),
            };
            if filter.matches(&image) {
                if scan.images.len() == limit {
                    scan.next = scan.images.last().map(|i| i.id);
                    return Ok(scan);
                }
                scan.images.push(image);
            }
        }
        Ok(scan)
    }

    // ---- reconciliation (tier changes reaching existing images) --------------------------

    /// Users whose images must be brought in line with their tier, each with the generation
    /// of the change that queued them.
    pub fn reconcile_queue(&self) -> Result<Vec<ReconcileEntry>, RepoError> {
        let mut users = Vec::new();
        for entry in self.reconcile.iter() {
            let (key, generation) = entry?;
            if let (Some(bytes), Ok(generation)) = (id16(&key), <[u8; 8]>::try_from(generation.as_ref())) {
                users.push(ReconcileEntry {
                    user: UserId::from_bytes(bytes),
                    generation: u64::from_be_bytes(generation),
                });
            }
        }
        Ok(users)
    }

    /// Clears a user's entry unless a newer change re-queued them meanwhile (then the
    /// generation differs and the entry stays for the next pass).
    pub fn reconcile_done(&self, entry: ReconcileEntry) -> Result<(), RepoError> {
        let generation = entry.generation.to_be_bytes();
        let _ = self.reconcile.compare_and_swap(entry.user.to_bytes(), Some(&generation[..]), None::<&[u8]>)?;
        Ok(())
    }
}
