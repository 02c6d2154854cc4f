//! Expiring links in sled.

use imageapi_shared::domain::{LinkId, UserId};
use sled::Transactional;

use super::*;

impl SledDb {
    // ---- expiring links ---------------------------------------------------------------------

    pub fn insert_link(&self, link: &LinkRecord, token_hash: &[u8; 32]) -> Result<(), RepoError> {
        (&self.images, &self.links, &self.link_tokens, &self.user_links, &self.image_links).transaction(
            |(images, links, link_tokens, user_links, image_links)| {
                // The image may have been deleted since the handler looked it up.
                if images.get(link.image_id.to_bytes())?.is_none() {
                    return abort(RepoError::NotFound);
                }
                links.insert(&link.id.to_bytes(), tx_encode(link)?)?;
                link_tokens.insert(token_hash, &link.id.to_bytes())?;
                user_links.insert(cat(&link.owner.to_bytes(), &link.id.to_bytes()), token_hash)?;
                image_links.insert(cat(&link.image_id.to_bytes(), &link.id.to_bytes()), token_hash)?;
                Ok(())
            },
        )?;
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

    pub fn user_links(&self, user: UserId) -> Result<Vec<LinkRecord>, RepoError> {
        self.links_indexed(&self.user_links, &user.to_bytes())
    }

    pub fn image_links(&self, image: ImageId) -> Result<Vec<LinkRecord>, RepoError> {
        self.links_indexed(&self.image_links, &image.to_bytes())
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

    pub fn all_links(&self) -> Result<Vec<LinkRecord>, RepoError> {
        self.links.iter().values().map(|v| decode(&v?)).collect()
    }

    pub fn live_links(&self, now: chrono::DateTime<chrono::Utc>) -> Result<Vec<LinkRecord>, RepoError> {
        let mut links: Vec<LinkRecord> = self.all_links()?.into_iter().filter(|l| !l.is_expired(now)).collect();
        links.sort_by_key(|l| (l.expires_at, l.id));
        Ok(links)
    }

    pub fn delete_link(&self, id: LinkId) -> Result<(), RepoError> {
        (&self.links, &self.link_tokens, &self.user_links, &self.image_links).transaction(
            |(links, link_tokens, user_links, image_links)| {
                let Some(value) = links.remove(&id.to_bytes())? else {
                    return abort(RepoError::NotFound);
                };
                let link: LinkRecord = tx_decode(&value)?;
                if let Some(hash) = user_links.remove(cat(&link.owner.to_bytes(), &id.to_bytes()))? {
                    link_tokens.remove(hash)?;
                }
                image_links.remove(cat(&link.image_id.to_bytes(), &id.to_bytes()))?;
                Ok(())
            },
        )?;
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

    /// Removes links that expired before `cutoff` (kept until then to answer 410, not 404).
    pub fn purge_links_expired_before(&self, cutoff: chrono::DateTime<chrono::Utc>) -> Result<usize, RepoError> {
        let mut purged = 0;
        for link in self.all_links()? {
            if link.expires_at < cutoff {
                match self.delete_link(link.id) {
                    Ok(()) => purged += 1,
                    Err(RepoError::NotFound) => {}
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(purged)
    }
}
