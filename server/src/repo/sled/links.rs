//! Expiring links in sled.
//!
//! Besides the link records (`links`, by time-ordered id) and their indexes by token, owner
//! (`owner ++ link` → token hash ++ expiry, so the cap counts live links from the index alone)
//! and image, `link_expiry` orders live links by expiry (`expires_ms ++ id`), so that pruning
//! reads only what expired. A pruned link leaves its token hash in `expired_link_tokens` (with
//! `forget_link_tokens` ordering those by expiry), so the token answers 410 until the
//! retention ends, while lists and counts never see it again.

use chrono::{DateTime, Utc};
use imageapi_core::domain::{LinkId, UserId};
use sled::Transactional;

use super::*;
use crate::repo::LinkLimit;

/// Milliseconds since the epoch as a big-endian key (times before 1970 sort first).
fn millis_key(at: DateTime<Utc>) -> [u8; 8] {
    u64::try_from(at.timestamp_millis()).unwrap_or(0).to_be_bytes()
}

fn expiry_key(link: &LinkRecord) -> Vec<u8> {
    cat(&millis_key(link.expires_at), &link.id.to_bytes())
}

/// What became of a link that goes.
#[derive(Clone, Copy, PartialEq)]
enum Removal {
    /// Revoked or its image deleted: the token is unknown from now on (404).
    Forget,
    /// Expired: the token answers 410 until the retention ends.
    KeepTokenAsExpired,
}

impl SledDb {
    // ---- expiring links ---------------------------------------------------------------------

    /// Records a link unless its owner already holds `max_live` links unexpired at its
    /// creation. The count and the write run under `link_writes`: sled has one process, so the
    /// lock makes them one step.
    pub fn insert_link(&self, link: &LinkRecord, token_hash: &[u8; 32], max_live: usize) -> Result<(), RepoError> {
        let _guard = self.link_writes.lock().unwrap_or_else(|e| e.into_inner());
        let mut live = 0usize;
        let mut soonest: Option<DateTime<Utc>> = None;
        let now = millis_key(link.created_at);
        for entry in self.user_links.scan_prefix(link.owner.to_bytes()) {
            let (key, value) = entry?;
            // The owner's index holds each link's expiry (older entries only the token hash:
            // then the record says).
            let expires = match value.get(32..40).and_then(|b| <[u8; 8]>::try_from(b).ok()) {
                Some(expires) => expires,
                None => match id16(&key[16..]).map(|id| self.link(LinkId::from_bytes(id))) {
                    Some(Ok(held)) => millis_key(held.expires_at),
                    Some(Err(RepoError::NotFound)) | None => continue,
                    Some(Err(e)) => return Err(e),
                },
            };
            if expires > now {
                live += 1;
                let at =
                    DateTime::from_timestamp_millis(i64::try_from(u64::from_be_bytes(expires)).unwrap_or(i64::MAX));
                soonest = match (soonest, at) {
                    (Some(s), Some(at)) => Some(s.min(at)),
                    (s, at) => s.or(at),
                };
            }
        }
        if live >= max_live {
            return Err(RepoError::LinkLimit(LinkLimit { max_live, next_free_at: soonest.unwrap_or(link.created_at) }));
        }
        (&self.images, &self.links, &self.link_tokens, &self.user_links, &self.image_links, &self.link_expiry)
            .transaction(|(images, links, link_tokens, user_links, image_links, link_expiry)| {
                // The image may have been deleted since the handler looked it up.
                if images.get(link.image_id.to_bytes())?.is_none() {
                    return abort(RepoError::NotFound);
                }
                links.insert(&link.id.to_bytes(), tx_encode(link)?)?;
                link_tokens.insert(token_hash, &link.id.to_bytes())?;
                user_links.insert(
                    cat(&link.owner.to_bytes(), &link.id.to_bytes()),
                    cat(token_hash, &millis_key(link.expires_at)),
                )?;
                image_links.insert(cat(&link.image_id.to_bytes(), &link.id.to_bytes()), token_hash)?;
                link_expiry.insert(expiry_key(link), token_hash)?;
                Ok(())
            })?;
        Ok(())
    }

    pub fn link(&self, id: LinkId) -> Result<LinkRecord, RepoError> {
        self.links.get(id.to_bytes())?.map(|v| decode(&v)).ok_or(RepoError::NotFound)?
    }

    pub fn link_by_token_hash(&self, hash: &[u8; 32]) -> Result<Option<LinkRecord>, RepoError> {
        match self.link_tokens.get(hash)?.and_then(|v| id16(&v)) {
            Some(id) => match self.link(LinkId::from_bytes(id)) {
                Ok(link) => Ok(Some(link)),
                Err(RepoError::NotFound) => Ok(None),
                Err(e) => Err(e),
            },
            None => Ok(None),
        }
    }

    pub fn is_expired_link_token(&self, hash: &[u8; 32]) -> Result<bool, RepoError> {
        Ok(self.expired_link_tokens.contains_key(hash)?)
    }

    pub fn user_links(&self, user: UserId) -> Result<Vec<LinkRecord>, RepoError> {
        self.links_indexed(&self.user_links, &user.to_bytes())
    }

    pub fn image_links(&self, image: ImageId) -> Result<Vec<LinkRecord>, RepoError> {
        self.links_indexed(&self.image_links, &image.to_bytes())
    }

    /// A user's links unexpired at `now`, newest first, after `cursor`: a reverse range scan
    /// of the owner's index (which holds at most the cap plus what expired since the last
    /// prune).
    pub fn user_live_links(
        &self,
        user: UserId,
        now: DateTime<Utc>,
        cursor: Option<LinkId>,
        limit: usize,
    ) -> Result<Vec<LinkRecord>, RepoError> {
        let start = cat(&user.to_bytes(), &[0; 16]);
        let end = match cursor {
            Some(c) => cat(&user.to_bytes(), &c.to_bytes()),
            None => cat(&user.to_bytes(), &[0xff; 17]),
        };
        let ids = self.user_links.range(start..end).rev().map(|kv| kv.map(|(k, _)| id16(&k[16..])));
        self.live_page(ids, now, limit)
    }

    /// Every link unexpired at `now`, newest first, after `cursor`: a reverse scan of the
    /// records by id (expired ones are pruned within a minute, so few are skipped).
    pub fn live_links(
        &self,
        now: DateTime<Utc>,
        cursor: Option<LinkId>,
        limit: usize,
    ) -> Result<Vec<LinkRecord>, RepoError> {
        let keys = match cursor {
            Some(c) => self.links.range(..c.to_bytes().to_vec()),
            None => self.links.iter(),
        };
        self.live_page(keys.rev().map(|kv| kv.map(|(k, _)| id16(&k))), now, limit)
    }

    fn live_page(
        &self,
        ids: impl Iterator<Item = Result<Option<[u8; 16]>, sled::Error>>,
        now: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<LinkRecord>, RepoError> {
        let mut page = Vec::with_capacity(limit.min(128));
        for id in ids {
            let Some(id) = id? else { continue };
            match self.link(LinkId::from_bytes(id)) {
                Ok(link) if !link.is_expired(now) => page.push(link),
                Ok(_) | Err(RepoError::NotFound) => {}
                Err(e) => return Err(e),
            }
            if page.len() == limit {
                break;
            }
        }
        Ok(page)
    }

    /// The links an index (`owner ++ link` or `image ++ link` keys) holds under `prefix`.
    fn links_indexed(&self, index: &sled::Tree, prefix: &[u8; 16]) -> Result<Vec<LinkRecord>, RepoError> {
        let mut out = Vec::new();
        for key in index.scan_prefix(prefix).keys() {
            if let Some(id) = id16(&key?[16..]) {
                match self.link(LinkId::from_bytes(id)) {
                    Ok(link) => out.push(link),
                    Err(RepoError::NotFound) => {}
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(out)
    }

    pub fn delete_link(&self, id: LinkId) -> Result<(), RepoError> {
        self.remove_link(id, Removal::Forget)
    }

    fn remove_link(&self, id: LinkId, removal: Removal) -> Result<(), RepoError> {
        (
            &self.links,
            &self.link_tokens,
            &self.user_links,
            &self.image_links,
            &self.link_expiry,
            &self.expired_link_tokens,
            &self.forget_link_tokens,
        )
            .transaction(|(links, link_tokens, user_links, image_links, link_expiry, expired, forget)| {
                let Some(value) = links.remove(&id.to_bytes())? else {
                    return abort(RepoError::NotFound);
                };
                let link: LinkRecord = tx_decode(&value)?;
                if let Some(value) = user_links.remove(cat(&link.owner.to_bytes(), &id.to_bytes()))? {
                    let hash = &value[..32.min(value.len())];
                    link_tokens.remove(hash)?;
                    if removal == Removal::KeepTokenAsExpired {
                        expired.insert(hash, &millis_key(link.expires_at))?;
                        forget.insert(cat(&millis_key(link.expires_at), hash), &[])?;
                    }
                }
                image_links.remove(cat(&link.image_id.to_bytes(), &id.to_bytes()))?;
                link_expiry.remove(expiry_key(&link))?;
                Ok(())
            })?;
        Ok(())
    }

    /// Deletes the links of `user` that their grant no longer covers: all of them when the user
    /// is inactive or the tier has no expiring links, else those to variants the tier does not
    /// grant. A link that died stays dead when the grant comes back. Returns how many went.
    pub fn revoke_links_not_granted(&self, user: &UserRecord, tier: &TierRecord) -> Result<usize, RepoError> {
        let mut revoked = 0;
        for link in self.user_links(user.id)? {
            if user.is_active && tier.expiring_links && tier.grants(link.variant) {
                continue;
            }
            match self.delete_link(link.id) {
                Ok(()) => revoked += 1,
                Err(RepoError::NotFound) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(revoked)
    }

    /// Moves the links expired at `now` out of every list and count (their tokens answer 410),
    /// and forgets the tokens of links that expired before `forget_before` (404 from then on).
    /// Both read only what is due, in expiry order. Returns (pruned, forgotten).
    pub fn prune_expired_links(
        &self,
        now: DateTime<Utc>,
        forget_before: DateTime<Utc>,
    ) -> Result<(usize, usize), RepoError> {
        let due_links = cat(&millis_key(now), &[0xff; 17]);
        let mut pruned = 0;
        for key in self.link_expiry.range(..due_links).keys() {
            let Some(id) = id16(&key?[8..]) else { continue };
            match self.remove_link(LinkId::from_bytes(id), Removal::KeepTokenAsExpired) {
                Ok(()) => pruned += 1,
                Err(RepoError::NotFound) => {}
                Err(e) => return Err(e),
            }
        }
        let mut forgotten = 0;
        for key in self.forget_link_tokens.range(..millis_key(forget_before).to_vec()).keys() {
            let key = key?;
            (&self.expired_link_tokens, &self.forget_link_tokens).transaction(|(expired, forget)| {
                expired.remove(&key[8..])?;
                forget.remove(&key)?;
                Ok::<_, ConflictableTransactionError<RepoError>>(())
            })?;
            forgotten += 1;
        }
        Ok((pruned, forgotten))
    }

    /// Fills `link_expiry` the first time a database that predates it is opened.
    pub(super) fn ensure_link_expiry(&self) -> Result<(), RepoError> {
        if self.db.contains_key(LINK_EXPIRY_MARKER_KEY)? {
            return Ok(());
        }
        for entry in self.user_links.iter() {
            let (key, value) = entry?;
            if let Some(id) = id16(&key[16..]) {
                match self.link(LinkId::from_bytes(id)) {
                    Ok(link) => {
                        self.link_expiry.insert(expiry_key(&link), &value[..32.min(value.len())])?;
                    }
                    Err(RepoError::NotFound) => {}
                    Err(e) => return Err(e),
                }
            }
        }
        self.db.insert(LINK_EXPIRY_MARKER_KEY, &[])?;
        self.db.flush()?;
        Ok(())
    }
}
