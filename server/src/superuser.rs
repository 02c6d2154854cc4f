//! Admins from the command line (`createsuperuser`) and from the environment
//! (`IMAGEAPI_ADMIN_USERNAME` + `IMAGEAPI_ADMIN_PASSWORD` at start).

use std::io::BufRead;

use anyhow::{bail, Context};
use imageapi_shared::domain::{Password, TierId, UserId, Username};

use crate::config::Config;
use crate::passwords::{Argon, PasswordPool};
use crate::repo::{RepoError, SledRepo, UserRecord};

/// Admins get the Enterprise tier so that every feature is at hand.
const ADMIN_TIER: &str = TierId::ENTERPRISE;

fn parse_admin(username: &str, password: &str) -> anyhow::Result<(Username, Password)> {
    let username = Username::parse(username).map_err(|e| anyhow::anyhow!("username {e}"))?;
    let password = Password::parse(password).map_err(|e| anyhow::anyhow!("password {e}"))?;
    Ok((username, password))
}

/// Creates the admin, or makes an existing user an active admin with the password `hash`.
fn upsert_admin(repo: &SledRepo, username: Username, hash: String) -> anyhow::Result<bool> {
    match repo.user_by_name(username.as_str())? {
        Some(existing) => {
            repo.update_user(existing.id, |u| {
                u.is_admin = true;
                u.is_active = true;
                u.password_hash = hash.clone();
                u.credentials_version += 1;
            })?;
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
                created_at: chrono::Utc::now(),
                credentials_version: 0,
            };
            repo.create_user(&user)?;
            Ok(true)
        }
    }
}

/// At start: make sure the admin named in the environment exists (idempotent; the password
/// is re-hashed only when it no longer matches).
pub async fn ensure_bootstrap_admin(repo: &SledRepo, passwords: &PasswordPool, config: &Config) -> anyhow::Result<()> {
    let (Some(username), Some(password)) = (&config.admin_username, &config.admin_password) else {
        if config.admin_username.is_some() != config.admin_password.is_some() {
            bail!("set both IMAGEAPI_ADMIN_USERNAME and IMAGEAPI_ADMIN_PASSWORD, or neither");
        }
        return Ok(());
    };
    let (name, valid) = parse_admin(username, password)?;
    if let Some(existing) = repo.user_by_name(username)? {
        let matches = passwords.verify(None, existing.password_hash.clone(), password.clone()).await?;
        if matches && existing.is_admin && existing.is_active {
            return Ok(());
        }
    }
    let hash = passwords.hash(valid.expose().to_owned()).await?;
    let created = upsert_admin(repo, name, hash)?;
    repo.flush().await?;
    tracing::info!(username = %username, created, "bootstrap admin ensured from IMAGEAPI_ADMIN_USERNAME");
    Ok(())
}

/// `imageapi-server createsuperuser --username NAME [--password-stdin]`.
pub fn run(config: &Config, username: &str, password_stdin: bool) -> anyhow::Result<()> {
    Username::parse(username).map_err(|e| anyhow::anyhow!("username {e}"))?;
    std::fs::create_dir_all(config.data_dir()).with_context(|| format!("creating {}", config.data_dir().display()))?;
    let repo = match SledRepo::open(&config.db_dir()) {
        Err(RepoError::Locked { path }) => bail!(
            "the database at {path} is in use by a running imageapi-server. Stop it first, or create the admin \
             through the running server (IMAGEAPI_ADMIN_USERNAME/IMAGEAPI_ADMIN_PASSWORD at start, or \
             POST /api/v1/admin/users as an existing admin)"
        ),
        other => other?,
    };
    repo.seed_builtin_tiers()?;
    let password = if password_stdin {
        let mut line = String::new();
        std::io::stdin().lock().read_line(&mut line).context("reading the password from stdin")?;
        line.trim_end_matches(['\r', '\n']).to_owned()
    } else {
        let first = rpassword::prompt_password("Password: ").context("reading the password")?;
        let second = rpassword::prompt_password("Password (again): ").context("reading the password")?;
        if first != second {
            bail!("the passwords did not match");
        }
        first
    };
    let (name, valid) = parse_admin(username, &password)?;
    let created = upsert_admin(&repo, name, Argon::new().hash(valid.expose())?)?;
    repo.flush_blocking()?;
    if created {
        println!("Superuser '{username}' created.");
    } else {
        println!("User '{username}' is now an admin with the new password.");
    }
    Ok(())
}
