//! Admins from the environment (`IMAGEAPI_ADMIN_USERNAME` + `IMAGEAPI_ADMIN_PASSWORD` at start),
//! and what `createsuperuser` ([`crate::cli`]) shares with it.

use anyhow::bail;
use imageapi_core::domain::{Password, TierId, UserId, Username};

use crate::config::Config;
use crate::passwords::PasswordPool;
use crate::repo::{Repo, UserEdit, UserRecord};

/// Admins get the Enterprise tier so that every feature is at hand.
const ADMIN_TIER: &str = TierId::ENTERPRISE;

pub(crate) fn parse_admin(username: &str, password: &str) -> anyhow::Result<(Username, Password)> {
    let username = Username::parse(username).map_err(|e| anyhow::anyhow!("username {e}"))?;
    let password = Password::parse(password).map_err(|e| anyhow::anyhow!("password {e}"))?;
    Ok((username, password))
}

/// Creates the admin, or makes an existing user an active admin with the password `hash`.
pub(crate) async fn upsert_admin(repo: &dyn Repo, username: Username, hash: String) -> anyhow::Result<bool> {
    match repo.user_by_name(username.as_str()).await? {
        Some(existing) => {
            let edit = UserEdit {
                is_admin: Some(true),
                is_active: Some(true),
                password_hash: Some(hash),
                ..UserEdit::default()
            };
            repo.update_user(existing.id, &edit).await?;
            Ok(false)
        }
        None => {
            let user = UserRecord {
                id: UserId::from_ulid(ulid::Ulid::new()),
                username,
                password_hash: hash,
                tier: TierId::parse(ADMIN_TIER).map_err(|e| anyhow::anyhow!("{e}"))?,
                is_active: true,
                is_admin: true,
                created_at: crate::clock::now_micros(),
                credentials_version: 0,
            };
            repo.create_user(&user).await?;
            Ok(true)
        }
    }
}

/// At start: make sure the admin named in the environment exists (idempotent; the password
/// is re-hashed only when it no longer matches).
pub async fn ensure_bootstrap_admin(repo: &dyn Repo, passwords: &PasswordPool, config: &Config) -> anyhow::Result<()> {
    let (Some(username), Some(password)) = (&config.admin_username, &config.admin_password) else {
        if config.admin_username.is_some() != config.admin_password.is_some() {
            bail!("set both IMAGEAPI_ADMIN_USERNAME and IMAGEAPI_ADMIN_PASSWORD, or neither");
        }
        return Ok(());
    };
    let (name, valid) = parse_admin(username, password)?;
    if let Some(existing) = repo.user_by_name(username).await? {
        let matches = passwords.verify(None, existing.password_hash.clone(), password.clone()).await?;
        if matches && existing.is_admin && existing.is_active {
            return Ok(());
        }
    }
    let hash = passwords.hash(valid.expose().to_owned()).await?;
    let created = upsert_admin(repo, name, hash).await?;
    tracing::info!(username = %username, created, "bootstrap admin ensured from IMAGEAPI_ADMIN_USERNAME");
    Ok(())
}
