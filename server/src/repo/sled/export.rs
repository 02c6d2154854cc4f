//! Reading a whole sled database out, for `migrate-repo`: every record with what the
//! repository traits never hand out (token and link hashes, the outbox, reconciliation
//! entries), in an order a relational target can insert (tiers before users before images).

use imageapi_core::domain::UserId;

use super::{decode, id16, RepoError, SledDb, STORE_MARKER_KEY};
use crate::repo::migrate::Exported;

impl SledDb {
    /// Calls `emit` with every record, parents before children; stops at its first error.
    pub fn export(&self, mut emit: impl FnMut(Exported) -> Result<(), RepoError>) -> Result<(), RepoError> {
        for value in self.tiers.iter().values() {
            emit(Exported::Tier(decode(&value?)?))?;
        }
        for value in self.users.iter().values() {
            let user: crate::repo::UserRecord = decode(&value?)?;
            let usage = super::read_usage(self.usage.get(user.id.to_bytes())?.as_deref());
            emit(Exported::User(user, usage.uploads))?;
        }
        for entry in self.tokens.iter() {
            let (hash, value) = entry?;
            let hash: [u8; 32] = hash.as_ref().try_into().map_err(|_| RepoError::Corrupt("a token hash".into()))?;
            emit(Exported::Token(decode(&value)?, hash))?;
        }
        for value in self.images.iter().values() {
            emit(Exported::Image(decode(&value?)?))?;
        }
        for entry in self.thumbs.iter() {
            let (key, value) = entry?;
            let Some((image, height, format)) = super::parse_thumb_key(&key) else {
                return Err(RepoError::Corrupt("a thumbnail key".into()));
            };
            emit(Exported::Thumbnail(image, (height, format), decode(&value)?))?;
        }
        for entry in self.link_tokens.iter() {
            let (hash, id) = entry?;
            let hash: [u8; 32] = hash.as_ref().try_into().map_err(|_| RepoError::Corrupt("a link hash".into()))?;
            let id = id16(&id).ok_or_else(|| RepoError::Corrupt("a link id".into()))?;
            match self.link(imageapi_core::domain::LinkId::from_bytes(id)) {
                Ok(link) => emit(Exported::Link(link, hash))?,
                Err(RepoError::NotFound) => {}
                Err(e) => return Err(e),
            }
        }
        for value in self.outbox.iter().values() {
            emit(Exported::Job(decode(&value?)?))?;
        }
        for entry in self.reconcile.iter() {
            let (key, generation) = entry?;
            if let (Some(user), Ok(generation)) = (id16(&key), <[u8; 8]>::try_from(generation.as_ref())) {
                emit(Exported::Reconcile(UserId::from_bytes(user), u64::from_be_bytes(generation)))?;
            }
        }
        if let Some(marker) = self.db.get(STORE_MARKER_KEY)? {
            emit(Exported::StoreMarker(String::from_utf8_lossy(&marker).into_owned()))?;
        }
        Ok(())
    }
}
