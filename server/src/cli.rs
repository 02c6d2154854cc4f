//! The server binary's admin commands, besides serving: `createsuperuser`, `migrate-repo`
//! (sled → PostgreSQL) and `migrate-store` (blobs to another store). Each reads the same
//! configuration as the server, runs to completion on its own runtime, and prints what to do
//! next.

use std::io::BufRead;

use anyhow::{bail, Context};
use imageapi_core::domain::Username;
use imageapi_shared::store::ensure_marker;

use crate::config::Config;
use crate::passwords::Argon;
use crate::repo::sled::SledDb;
use crate::repo::RepoError;
use crate::superuser;

/// `imageapi-server createsuperuser --username NAME [--password-stdin]`.
pub fn createsuperuser(config: &Config, username: &str, password_stdin: bool) -> anyhow::Result<()> {
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
    let (name, valid) = superuser::parse_admin(username, &password)?;
    let created = runtime.block_on(superuser::upsert_admin(repo.as_ref(), name, Argon::new().hash(valid.expose())?))?;
    repo.close(std::time::Duration::from_secs(10));
    if created {
        println!("Superuser '{username}' created.");
    } else {
        println!("User '{username}' is now an admin with the new password.");
    }
    Ok(())
}

/// `imageapi-server migrate-repo --to postgres://…`: the sled database of the data directory
/// copied into PostgreSQL (see [`crate::repo::migrate`]).
pub fn migrate_repo(config: &Config, to_url: &str) -> anyhow::Result<()> {
    if !to_url.starts_with("postgres://") && !to_url.starts_with("postgresql://") {
        bail!("--to must be a PostgreSQL URL (postgres://user:password@host/database)");
    }
    if config.database_url.is_some() {
        bail!("IMAGEAPI_DATABASE_URL is set: this server already keeps its metadata in PostgreSQL; migrate-repo copies the sled database of IMAGEAPI_DATA_DIR");
    }
    let dir = config.db_dir();
    if !dir.exists() {
        bail!("no sled database at {} (IMAGEAPI_DATA_DIR names the data directory to copy)", dir.display());
    }
    let sled = match SledDb::open(&dir) {
        Err(RepoError::Locked { path }) => {
            bail!("the database at {path} is in use by a running imageapi-server; stop it first")
        }
        other => other?,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let counts = runtime.block_on(crate::repo::migrate::copy(sled, to_url))?;
    println!("copied the metadata of {} into PostgreSQL; every table matches:", dir.display());
    for (table, n) in &counts {
        println!("  {table:<11} {n}");
    }
    println!(
        "Next: set IMAGEAPI_DATABASE_URL={to_url} for every server (keep the blob store settings), then start them."
    );
    Ok(())
}

/// `imageapi-server migrate-store --to URL`.
pub fn migrate_store(config: &Config, to_url: &str) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async {
        let from = config.store.open()?;
        let to = config.store.open_url(to_url)?;
        if from.location() == to.location() {
            bail!("the destination is the configured store itself ({})", from.location());
        }
        // A store that never had a marker (made before markers existed) gets one now, so the
        // copy carries it and workers can check the new store.
        ensure_marker(from.as_ref()).await.with_context(|| format!("reading the store marker of {}", from.location()))?;
        eprintln!("copying every blob from {} to {}", from.location(), to.location());
        let done = crate::blobs::migrate(from.as_ref(), to.as_ref()).await?;
        println!(
            "copied {} blobs ({} bytes); {} were already there with the right size",
            done.copied, done.bytes, done.skipped
        );
        println!("every blob of {} is now in {}.", from.location(), to.location());
        if to_url.starts_with("s3://") {
            println!("Next: set IMAGEAPI_BLOB_URL={to_url} (with the same IMAGEAPI_S3_* and AWS_* settings) for the server and every worker, then restart them.");
        } else {
            let dir = to_url.strip_prefix("file://").unwrap_or(to_url);
            println!("Next: set IMAGEAPI_BLOB_DIR={dir} and unset IMAGEAPI_BLOB_URL for the server and every worker, then restart them.");
        }
        Ok(())
    })
}
