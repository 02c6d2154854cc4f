//! Admins from the command line (`createsuperuser`) and from the environment
//! (`IMAGEAPI_ADMIN_USERNAME` + `IMAGEAPI_ADMIN_PASSWORD` at start).

use std::io::BufRead;

use anyhow::{bail, Context};
use imageapi_shared::domain::{Password, TierId, UserId, Username};

use crate::config::Config;
use crate::passwords::{Argon, PasswordPool};
use crate::repo::{Repo, RepoError, UserEdit, UserRecord};

/// Admins get the Enterprise tier so that every feature is at hand.
const ADMIN_TIER: &str = TierId::ENTERPRISE;

fn parse_admin(username: &str, password: &str) -> anyhow::Result<(Username, Password)> {
    let username = Username::parse(username).map_err(|e| anyhow::anyhow!("username {e}"))?;
    let password = Password::parse(password).map_err(|e| anyhow::anyhow!("password {e}"))?;
    Ok((username, password))
}

/// Creates the admin, or makes an existing user an active admin with the password `hash`.
async fn upsert_admin(repo: &dyn Repo, username: Username, hash: String) -> anyhow::Result<bool> {
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

/// `imageapi-server createsuperuser --username NAME [--password-stdin]`.
pub fn run(config: &Config, username: &str, password_stdin: bool) -> anyhow::Result<()> {
    Username::parse(username).map_err(|e| anyhow::anyhow!("username {e}"))?;
    std::fs::create_dir_all(config.data_dir()).with_context(|| format!("creating {}", config.data_dir().display()))?;
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let opened = runtime.block_on(crate::repo::open(&config.repo_settings()));
    let repo = match opened {
        Err(RepoError::Locked { path }) => bail!(
            "the database at {path} is in use by a running imageapi-server. Stop it first, or create the admin \
             through the running server (IMAGEAPI_ADMIN_USERNAME/IMAGEAPI_ADMIN_PASSWORD at start, or \
             POST /api/v1/admin/users as an existing admin)"
        ),
        other => other?,
    };
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
    let created = runtime.block_on(upsert_admin(repo.as_ref(), name, Argon::new().hash(valid.expose())?))?;
    repo.close(std::time::Duration::from_secs(10));
    if created {
        println!("Superuser '{username}' created.");
    } else {
        println!("User '{username}' is now an admin with the new password.");
    }
    Ok(())
}
