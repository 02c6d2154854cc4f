//! Metadata in PostgreSQL (`IMAGEAPI_DATABASE_URL`), for several API servers on one database.
//!
//! A pool of connections (deadpool), prepared statements cached per connection, migrations
//! embedded in the binary and applied at start under an advisory lock (several servers may
//! start at once). Writes that touch several rows run in one transaction, with row locks
//! where sled's transactions relied on serialisability: an upload locks its owner's row, so it
//! lands before or after a tier change or deactivation, never across it. A commit is durable,
//! so every write is acknowledged-safe when its call returns. Applied job reports are
//! announced with `NOTIFY` ([`listen`]), so a request waiting for a thumbnail on any node
//! wakes when any node applies its result.

mod images;
mod import;
mod jobs;
mod links;
mod listen;
mod rows;
mod users;

use std::time::Duration;

use async_trait::async_trait;
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use tokio::sync::watch;
use tokio_postgres::error::SqlState;
use tokio_postgres::NoTls;

use crate::repo::{Repo, RepoError, RepoResult};

/// The schema, in order; each runs once, in a transaction, recorded in `schema_migrations`.
const MIGRATIONS: &[(i32, &str)] = &[
    (1, include_str!("migrations/0001_initial.sql")),
    (2, include_str!("migrations/0002_usage.sql")),
    (3, include_str!("migrations/0003_link_pruning.sql")),
    (4, include_str!("migrations/0004_thumbnail_formats.sql")),
    (5, include_str!("migrations/0005_tier_formats.sql")),
    (6, include_str!("migrations/0006_tier_limits.sql")),
];

/// Serialises migrations across servers starting together (any constant unique to us).
const MIGRATION_LOCK: i64 = 0x696d_6167_6561_7069; // "imageapi"

/// Connections per server when `IMAGEAPI_DATABASE_POOL` is unset.
pub const DEFAULT_POOL_SIZE: usize = 16;
/// How long a request waits for a free connection before it is told to come back (503).
const POOL_WAIT: Duration = Duration::from_secs(5);

pub struct PgRepo {
    pool: Pool,
    /// Bumped whenever any server applies job reports (from `NOTIFY`).
    applied: watch::Receiver<u64>,
}

impl PgRepo {
    /// Connects, applies pending migrations and starts listening for applied reports.
    pub async fn connect(url: &str, pool_size: usize) -> RepoResult<Self> {
        let config: tokio_postgres::Config = url
            .parse()
            .map_err(|e| RepoError::Storage(format!("IMAGEAPI_DATABASE_URL is not a PostgreSQL URL: {e}")))?;
        let manager =
            Manager::from_config(config.clone(), NoTls, ManagerConfig { recycling_method: RecyclingMethod::Fast });
        let pool = Pool::builder(manager)
            .max_size(pool_size.max(1))
            .wait_timeout(Some(POOL_WAIT))
            .create_timeout(Some(POOL_WAIT))
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .build()
            .map_err(|e| RepoError::Storage(format!("creating the database pool: {e}")))?;
        let repo = Self { applied: listen::spawn(config), pool };
        repo.migrate().await?;
        Ok(repo)
    }

    async fn client(&self) -> RepoResult<deadpool_postgres::Client> {
        self.pool.get().await.map_err(|e| RepoError::Unavailable(format!("no database connection: {e}")))
    }

    async fn migrate(&self) -> RepoResult<()> {
        let mut client = self.client().await?;
        client.execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK]).await.map_err(db_error)?;
        let result = async {
            client
                .batch_execute(
                    "CREATE TABLE IF NOT EXISTS schema_migrations (
                         version integer PRIMARY KEY,
                         applied_at timestamptz NOT NULL DEFAULT now())",
                )
                .await
                .map_err(db_error)?;
            let row = client
                .query_one("SELECT coalesce(max(version), 0) FROM schema_migrations", &[])
                .await
                .map_err(db_error)?;
            let current: i32 = row.get(0);
            for (version, sql) in MIGRATIONS.iter().filter(|(v, _)| *v > current) {
                let tx = client.transaction().await.map_err(db_error)?;
                tx.batch_execute(sql).await.map_err(db_error)?;
                tx.execute("INSERT INTO schema_migrations (version) VALUES ($1)", &[version])
                    .await
                    .map_err(db_error)?;
                tx.commit().await.map_err(db_error)?;
                tracing::info!(version, "applied a database migration");
            }
            Ok(())
        }
        .await;
        let unlocked = client.execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK]).await.map_err(db_error);
        result.and(unlocked.map(|_| ()))
    }
}

/// Maps a driver error: constraint violations to what the caller can act on, lost connections
/// to `Unavailable` (the client may retry), the rest to `Storage`.
pub(crate) fn db_error(e: tokio_postgres::Error) -> RepoError {
    if let Some(db) = e.as_db_error() {
        let code = db.code();
        return if *code == SqlState::UNIQUE_VIOLATION {
            RepoError::Conflict(db.message().to_owned())
        } else if *code == SqlState::FOREIGN_KEY_VIOLATION {
            // What a row refers to is gone (a deleted image, user or tier).
            RepoError::NotFound
        } else if *code == SqlState::DISK_FULL {
            // The statement or the commit failed: the transaction is rolled back.
            RepoError::OutOfSpace { outcome_unknown: false }
        } else if *code == SqlState::T_R_DEADLOCK_DETECTED
            || *code == SqlState::T_R_SERIALIZATION_FAILURE
            || *code == SqlState::ADMIN_SHUTDOWN
            || *code == SqlState::CANNOT_CONNECT_NOW
            || *code == SqlState::TOO_MANY_CONNECTIONS
        {
            RepoError::Unavailable(db.to_string())
        } else {
            RepoError::Storage(db.to_string())
        };
    }
    let io = std::error::Error::source(&e).is_some_and(|s| s.is::<std::io::Error>());
    if e.is_closed() || io {
        RepoError::Unavailable(e.to_string())
    } else {
        RepoError::Storage(e.to_string())
    }
}

#[async_trait]
impl Repo for PgRepo {
    fn backend(&self) -> &'static str {
        "postgres"
    }

    async fn check(&self) -> RepoResult<()> {
        self.client().await?.execute("SELECT 1", &[]).await.map_err(db_error)?;
        Ok(())
    }

    async fn store_marker(&self) -> RepoResult<Option<String>> {
        let client = self.client().await?;
        let row =
            client.query_opt("SELECT value FROM settings WHERE key = 'store_marker'", &[]).await.map_err(db_error)?;
        Ok(row.map(|r| r.get(0)))
    }

    async fn record_store_marker(&self, id: &str) -> RepoResult<()> {
        let client = self.client().await?;
        client
            .execute(
                "INSERT INTO settings (key, value) VALUES ('store_marker', $1)
                 ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value",
                &[&id],
            )
            .await
            .map_err(db_error)?;
        Ok(())
    }

    fn thumbnail_changes(&self) -> Option<watch::Receiver<u64>> {
        Some(self.applied.clone())
    }

    fn close(&self, _deadline: Duration) -> bool {
        // Every write was committed when its call returned: nothing is left to flush.
        self.pool.close();
        true
    }
}
