//! Tiers, users and API tokens in sled.

use imageapi_core::domain::{ImageId, LinkId, TierId, TokenId, UserId};
use sled::{IVec, Transactional};

use super::*;

impl SledDb {
    // ---- tiers ---------------------------------------------------------------------------

    /// Inserts the builtin tiers that are missing (first start); edited builtins are kept.
    pub fn seed_builtin_tiers(&self) -> Result<(), RepoError> {
        for tier in TierRecord::builtins() {
            self.tiers.compare_and_swap(tier.id.as_str(), None::<&[u8]>, Some(encode(&tier)?))?.ok();
        }
        Ok(())
    }

    /// Gives tiers written before formats and limits existed those fields: a builtin tier its
    /// builtin formats and limits, any other none and unlimited (it granted nothing beyond the
    /// source and restricted nothing; admins opt in). Only a record without the field is
    /// touched, so this runs once per record and a later edit (`[]` or unlimited included) is
    /// never overwritten.
    pub(super) fn ensure_tier_fields(&self) -> Result<(), RepoError> {
        let mut changed = false;
        for entry in self.tiers.iter() {
            let (key, value) = entry?;
            let stored: serde_json::Value = decode(&value)?;
            let (has_formats, has_limits) = (stored.get("formats").is_some(), stored.get("limits").is_some());
            if has_formats && has_limits {
                continue;
            }
            let mut tier: TierRecord = decode(&value)?;
            if let Some(builtin) = TierRecord::builtin(&tier.id).filter(|_| tier.builtin) {
                if !has_formats {
                    tier.formats = builtin.formats;
                }
                if !has_limits {
                    tier.limits = builtin.limits;
                }
            }
            self.tiers.insert(key, encode(&tier)?)?;
            changed = true;
        }
        if changed {
            self.db.flush()?;
        }
        Ok(())
    }

    pub fn tier(&self, id: &TierId) -> Result<TierRecord, RepoError> {
        self.tiers.get(id.as_str())?.map(|v| decode(&v)).ok_or(RepoError::NotFound)?
    }

    pub fn tiers(&self) -> Result<Vec<TierRecord>, RepoError> {
        self.tiers.iter().values().map(|v| decode(&v?)).collect()
    }

    pub fn tier_user_count(&self, id: &TierId) -> Result<u64, RepoError> {
        let mut n = 0;
        for entry in self.users_by_tier.scan_prefix(tier_prefix(id)).keys() {
            entry?;
            n += 1;
        }
        Ok(n)
    }

    pub fn create_tier(&self, tier: &TierRecord) -> Result<(), RepoError> {
        let _guard = self.lock_admin();
        let swapped = self.tiers.compare_and_swap(tier.id.as_str(), None::<&[u8]>, Some(encode(tier)?))?;
        swapped.map_err(|_| RepoError::Conflict(format!("a tier with id '{}' already exists", tier.id)))
    }

    /// Applies `edit` to a tier and queues a reconciliation of every user holding it, in one
    /// transaction, so that an acknowledged edit always reaches existing images.
    pub fn update_tier(&self, id: &TierId, edit: &TierEdit) -> Result<TierRecord, RepoError> {
        let _guard = self.lock_admin();
        let holders = self.users_holding(id)?;
        let generation = self.db.generate_id()?.to_be_bytes();
        let tier = (&self.tiers, &self.reconcile).transaction(|(tiers, reconcile)| {
            let Some(current) = tiers.get(id.as_str())? else {
                return abort(RepoError::NotFound);
            };
            let mut tier: TierRecord = tx_decode(&current)?;
            edit.apply(&mut tier);
            tiers.insert(id.as_str(), tx_encode(&tier)?)?;
            for user in &holders {
                reconcile.insert(&user.to_bytes(), &generation)?;
            }
            Ok(tier)
        })?;
        Ok(tier)
    }

    pub fn delete_tier(&self, id: &TierId) -> Result<(), RepoError> {
        let _guard = self.lock_admin();
        let tier = self.tier(id)?;
        if tier.builtin {
            return Err(RepoError::Conflict(format!(
                "'{id}' is a builtin tier; builtin tiers can be edited but not deleted"
            )));
        }
        let holders = self.tier_user_count(id)?;
        if holders > 0 {
            return Err(RepoError::Conflict(format!(
                "{holders} user(s) hold tier '{id}'; move them to another tier first"
            )));
        }
        self.tiers.remove(id.as_str())?;
        Ok(())
    }

    fn users_holding(&self, tier: &TierId) -> Result<Vec<UserId>, RepoError> {
        let prefix = tier_prefix(tier);
        let mut users = Vec::new();
        for key in self.users_by_tier.scan_prefix(&prefix).keys() {
            let key = key?;
            if let Some(bytes) = id16(&key[prefix.len()..]) {
                users.push(UserId::from_bytes(bytes));
            }
        }
        Ok(users)
    }

    // ---- users and tokens -----------------------------------------------------------------

    pub fn user(&self, id: UserId) -> Result<UserRecord, RepoError> {
        self.users.get(id.to_bytes())?.map(|v| decode(&v)).ok_or(RepoError::NotFound)?
    }

    pub fn user_by_name(&self, name: &str) -> Result<Option<UserRecord>, RepoError> {
        match self.usernames.get(name)? {
            Some(id) => match id16(&id) {
                Some(bytes) => Ok(Some(self.user(UserId::from_bytes(bytes))?)),
                None => Ok(None),
            },
            None => Ok(None),
        }
    }

    pub fn users(&self) -> Result<Vec<UserRecord>, RepoError> {
        let mut users: Vec<UserRecord> = self.users.iter().values().map(|v| decode(&v?)).collect::<Result<_, _>>()?;
        users.sort_by(|a, b| a.username.as_str().cmp(b.username.as_str()));
        Ok(users)
    }

    pub fn usage(&self, user: UserId) -> Result<Usage, RepoError> {
        Ok(read_usage(self.usage.get(user.to_bytes())?.as_deref()))
    }

    pub fn create_user(&self, user: &UserRecord) -> Result<(), RepoError> {
        let _guard = self.lock_admin();
        self.tier(&user.tier)?;
        (&self.users, &self.usernames, &self.users_by_tier).transaction(|(users, usernames, by_tier)| {
            if usernames.get(user.username.as_str())?.is_some() {
                return abort(RepoError::Conflict(format!("the username '{}' is taken", user.username)));
            }
            usernames.insert(user.username.as_str(), &user.id.to_bytes())?;
            users.insert(&user.id.to_bytes(), tx_encode(user)?)?;
            by_tier.insert(tier_user_key(&user.tier, user.id), &[])?;
            Ok(())
        })?;
        Ok(())
    }

    /// Applies `edit` to a user. A tier change also queues a reconciliation of the user's
    /// images (new heights to make), in the same transaction. The new tier must exist.
    pub fn update_user(&self, id: UserId, edit: &UserEdit) -> Result<UserRecord, RepoError> {
        let _guard = self.lock_admin();
        let current = self.user(id)?;
        let mut preview = current.clone();
        edit.apply(&mut preview);
        self.tier(&preview.tier)?;
        // Every admin write holds `admin_writes`, so no other demotion can interleave.
        if is_active_admin(&current) && !is_active_admin(&preview) && !self.another_active_admin(id)? {
            return Err(crate::repo::last_admin_conflict());
        }
        let generation = self.db.generate_id()?.to_be_bytes();
        let user = (&self.users, &self.users_by_tier, &self.reconcile).transaction(|(users, by_tier, reconcile)| {
            let Some(current) = users.get(id.to_bytes())? else {
                return abort(RepoError::NotFound);
            };
            let before: UserRecord = tx_decode(&current)?;
            let mut after = before.clone();
            edit.apply(&mut after);
            if before.tier != after.tier {
                by_tier.remove(tier_user_key(&before.tier, id))?;
                by_tier.insert(tier_user_key(&after.tier, id), &[])?;
                reconcile.insert(&id.to_bytes(), &generation)?;
            }
            users.insert(&id.to_bytes(), tx_encode(&after)?)?;
            Ok(after)
        })?;
        Ok(user)
    }

    /// Whether an active admin other than `except` exists (a scan of the users: admin writes
    /// are rare, and this runs only for those that take rights away).
    fn another_active_admin(&self, except: UserId) -> Result<bool, RepoError> {
        for value in self.users.iter().values() {
            let user: UserRecord = decode(&value?)?;
            if user.id != except && is_active_admin(&user) {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// A user's image ids (all of them; for deleting a user, who loses their images first).
    pub fn user_image_ids(&self, user: UserId) -> Result<Vec<ImageId>, RepoError> {
        let mut ids = Vec::new();
        for key in self.user_images.scan_prefix(user.to_bytes()).keys() {
            if let Some(bytes) = id16(&key?[16..]) {
                ids.push(ImageId::from_bytes(bytes));
            }
        }
        Ok(ids)
    }

    /// Deletes a user with their tokens and links. Their images must be deleted first
    /// (with blobs), through [`SledRepo::delete_image`].
    pub fn delete_user(&self, id: UserId) -> Result<(), RepoError> {
        let _guard = self.lock_admin();
        let user = self.user(id)?;
        if is_active_admin(&user) && !self.another_active_admin(id)? {
            return Err(crate::repo::last_admin_conflict());
        }
        let tokens: Vec<(IVec, IVec)> = self.user_tokens.scan_prefix(id.to_bytes()).collect::<Result<_, _>>()?;
        let links = self.user_links.scan_prefix(id.to_bytes()).keys().collect::<Result<Vec<_>, _>>()?;
        for key in links {
            if let Some(bytes) = id16(&key[16..]) {
                self.delete_link(LinkId::from_bytes(bytes))?;
            }
        }
        (
            &self.users,
            &self.usernames,
            &self.users_by_tier,
            &self.tokens,
            &self.user_tokens,
            &self.usage,
            &self.reconcile,
        )
            .transaction(|(users, usernames, by_tier, token_tree, user_tokens, usage, reconcile)| {
                users.remove(&id.to_bytes())?;
                usernames.remove(user.username.as_str())?;
                by_tier.remove(tier_user_key(&user.tier, id))?;
                for (key, hash) in &tokens {
                    token_tree.remove(hash)?;
                    user_tokens.remove(key)?;
                }
                usage.remove(&id.to_bytes())?;
                reconcile.remove(&id.to_bytes())?;
                Ok(())
            })?;
        Ok(())
    }

    pub fn insert_token(&self, record: &TokenRecord, hash: &[u8; 32]) -> Result<(), RepoError> {
        (&self.tokens, &self.user_tokens).transaction(|(tokens, user_tokens)| {
            tokens.insert(hash, tx_encode(record)?)?;
            user_tokens.insert(cat(&record.user_id.to_bytes(), &record.id.to_bytes()), hash)?;
            Ok(())
        })?;
        Ok(())
    }

    pub fn token_by_hash(&self, hash: &[u8; 32]) -> Result<Option<TokenRecord>, RepoError> {
        self.tokens.get(hash)?.map(|v| decode(&v)).transpose()
    }

    pub fn user_tokens(&self, user: UserId) -> Result<Vec<TokenRecord>, RepoError> {
        let mut out = Vec::new();
        for hash in self.user_tokens.scan_prefix(user.to_bytes()).values() {
            if let Some(record) = self.tokens.get(hash?)? {
                out.push(decode(&record)?);
            }
        }
        Ok(out)
    }

    pub fn delete_token(&self, user: UserId, token: TokenId) -> Result<(), RepoError> {
        let key = cat(&user.to_bytes(), &token.to_bytes());
        (&self.tokens, &self.user_tokens).transaction(|(tokens, user_tokens)| {
            let Some(hash) = user_tokens.remove(key.as_slice())? else {
                return abort(RepoError::NotFound);
            };
            tokens.remove(hash)?;
            Ok(())
        })?;
        Ok(())
    }
}

fn is_active_admin(user: &UserRecord) -> bool {
    user.is_admin && user.is_active
}
