//! Configuration: `IMAGEAPI_*` environment variables or the matching flags. Every setting has a
//! default, so the server runs with no configuration at all.

use std::path::{Path, PathBuf};

use clap::{Args, Parser, Subcommand};
use imageapi_core::image::Limits;
use imageapi_shared::settings::{LimitSettings, RenderSettings};
use imageapi_shared::store::StoreSettings;

#[derive(Debug, Parser)]
#[command(
    name = "imageapi-server",
    version,
    about = "The imageapi HTTP API (embedded mode runs everything in this one process)"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub config: Config,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the HTTP API (the default).
    Serve,
    /// Copy every blob of the configured store into another (`s3://bucket/prefix` or a
    /// directory), verifying sizes; blobs already there with the right size are skipped, so an
    /// interrupted run resumes. Run it with the server stopped (or no uploads), then point
    /// IMAGEAPI_BLOB_URL / IMAGEAPI_BLOB_DIR at the new store.
    MigrateStore {
        /// The destination store.
        #[arg(long)]
        to: String,
    },
    /// Copy the sled metadata of the data directory into PostgreSQL (users with their password
    /// hashes, tokens, tiers, images, thumbnails, links, pending jobs) and check the counts.
    /// Run it with the server stopped; then set IMAGEAPI_DATABASE_URL for every server.
    MigrateRepo {
        /// The destination database, postgres://user:password@host/database.
        #[arg(long)]
        to: String,
    },
    /// Create an admin user (or make an existing user an admin and set their password).
    /// The server must not be running on the same data dir.
    Createsuperuser {
        #[arg(long)]
        username: String,
        /// Read the password from standard input instead of prompting.
        #[arg(long)]
        password_stdin: bool,
    },
}

#[derive(Debug, Clone, Args)]
pub struct Config {
    /// Address to listen on (port 0 picks a free port).
    #[arg(long, env = "IMAGEAPI_BIND", default_value = "127.0.0.1:8000", global = true)]
    pub bind: String,
    /// Data dir, blob directory or S3 bucket.
    #[command(flatten)]
    pub store: StoreSettings,
    /// Base of every link the API returns (default: http:// + the bound address).
    #[arg(long, env = "IMAGEAPI_PUBLIC_URL", global = true)]
    pub public_url: Option<String>,
    /// Redis for the scaled-out job queue: jobs go to `imageapi-worker` processes (unset: the
    /// embedded queue makes thumbnails in this process).
    #[arg(long, env = "IMAGEAPI_REDIS_URL", global = true)]
    pub redis_url: Option<String>,
    /// Make sure this admin exists at start (with IMAGEAPI_ADMIN_PASSWORD).
    #[arg(long, env = "IMAGEAPI_ADMIN_USERNAME", global = true)]
    pub admin_username: Option<String>,
    /// Read from the environment only (a flag would show in `ps`).
    #[arg(skip = std::env::var("IMAGEAPI_ADMIN_PASSWORD").ok())]
    pub admin_password: Option<String>,
    /// Thumbnail worker threads in this process, embedded mode only (default: the number of
    /// cores; 0: make none).
    #[arg(long, env = "IMAGEAPI_WORKERS", global = true)]
    pub workers: Option<usize>,
    #[command(flatten)]
    pub limit_settings: LimitSettings,
    #[command(flatten)]
    pub render_settings: RenderSettings,
    /// Longest time an upload body may take to arrive (then 408).
    #[arg(long, env = "IMAGEAPI_UPLOAD_TIMEOUT_SECS", default_value_t = 300, global = true)]
    pub upload_timeout_secs: u64,
    /// Uploads one user may have in progress at once; more answer 429 (16 can run in all, so
    /// one user cannot hold more than half of them).
    #[arg(long, env = "IMAGEAPI_UPLOADS_PER_USER", default_value_t = 8, global = true)]
    pub uploads_per_user: usize,
    /// Free space (bytes) kept on the filesystems of the sled database and the blob directory:
    /// an upload that would leave less answers 507 before its body is read. It is room for
    /// thumbnails and metadata, and keeps sled from ever meeting a full disk (which sled 0.34
    /// survives only by a restart).
    #[arg(long, env = "IMAGEAPI_MIN_FREE_BYTES", default_value_t = DEFAULT_MIN_FREE_BYTES, global = true)]
    pub min_free_bytes: u64,
    /// Most unfinished thumbnail jobs handed to the queue at once; the others wait in the
    /// server, one lane per user, and enter the queue in turn, so one user's backlog delays
    /// another's job by at most this many jobs plus one per busy user. Default: the render
    /// runners in embedded mode (twice the threads), 8 with Redis — set it near the total
    /// concurrency of your workers.
    #[arg(long, env = "IMAGEAPI_QUEUE_WINDOW", global = true)]
    pub queue_window: Option<usize>,
    /// How long a GET on a pending thumbnail waits before answering 503.
    #[arg(long, env = "IMAGEAPI_THUMBNAIL_WAIT_SECS", default_value_t = 5, global = true)]
    pub thumbnail_wait_secs: u64,
    /// How long the tokens of expired links answer 410 before they are forgotten (then 404).
    /// Expired links themselves leave every list within a minute.
    #[arg(long, env = "IMAGEAPI_EXPIRED_LINK_RETENTION_HOURS", default_value_t = 168, global = true)]
    pub expired_link_retention_hours: u64,
    /// Live (unexpired) expiring links one user may hold; creating another answers 429 with
    /// `Retry-After` until their soonest link expires, or they revoke one.
    #[arg(long, env = "IMAGEAPI_MAX_LINKS_PER_USER", default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..=1_000_000), global = true)]
    pub max_links_per_user: u32,
    /// Threads for password hashing and verification; each holds argon2's 19 MiB for good
    /// (default: the number of cores).
    #[arg(long, env = "IMAGEAPI_PASSWORD_THREADS", global = true)]
    pub password_threads: Option<usize>,
    /// Failed logins per minute from one client address; then its uncached logins answer 429.
    #[arg(long, env = "IMAGEAPI_LOGIN_FAILURES_PER_ADDRESS", default_value_t = 30, global = true)]
    pub login_failures_per_address: u32,
    /// Failed logins per minute for one username, from anywhere; then uncached logins with that
    /// username answer 429 (cached logins and tokens keep working).
    #[arg(long, env = "IMAGEAPI_LOGIN_FAILURES_PER_USERNAME", default_value_t = 10, global = true)]
    pub login_failures_per_username: u32,
    /// Reverse proxies (comma-separated addresses) whose `X-Forwarded-For` names the client;
    /// without them every client behind a proxy would share the proxy's login limits.
    #[arg(long, env = "IMAGEAPI_TRUSTED_PROXIES", value_delimiter = ',', global = true)]
    pub trusted_proxies: Vec<std::net::IpAddr>,
    /// Serve `/metrics` on this address, without authentication (for a Prometheus on an
    /// internal network); unset: `/metrics` on the API's listener, for admins only.
    #[arg(long, env = "IMAGEAPI_METRICS_BIND", global = true)]
    pub metrics_bind: Option<String>,
    /// sled's page cache in MiB (sled's own default of 1 GiB would dominate the server's memory).
    /// PostgreSQL for metadata (`postgres://user:pass@host/db`), so that several servers can
    /// share it; unset: sled in the data directory (one server).
    #[arg(long, env = "IMAGEAPI_DATABASE_URL", global = true)]
    pub database_url: Option<String>,
    /// This server's name among the servers sharing Redis (the results stream's consumer).
    /// Default: host-pid.
    #[arg(long, env = "IMAGEAPI_NODE_NAME", global = true)]
    pub node_name: Option<String>,
    /// PostgreSQL connections per server.
    #[arg(long, env = "IMAGEAPI_DATABASE_POOL", default_value_t = crate::repo::postgres::DEFAULT_POOL_SIZE, global = true)]
    pub database_pool: usize,
    #[arg(long, env = "IMAGEAPI_DB_CACHE_MB", default_value_t = 64, global = true)]
    pub db_cache_mb: u64,
    /// At SIGTERM/SIGINT: how long in-flight requests and running thumbnail jobs get to finish
    /// before the final flush; whatever still hangs after that (plus the flush) ends the
    /// process with a non-zero exit code.
    #[arg(long, env = "IMAGEAPI_SHUTDOWN_GRACE_SECS", default_value_t = 30, global = true)]
    pub shutdown_grace_secs: u64,
}

/// 256 MiB: ten full-size uploads' worth of thumbnails and years of metadata writes.
pub const DEFAULT_MIN_FREE_BYTES: u64 = 256 * 1024 * 1024;

impl Config {
    /// The local filesystems this server writes to: sled's folder, the blob directory.
    pub fn watched_disks(&self) -> Vec<crate::disk_space::Watched> {
        use crate::disk_space::Watched;
        let mut watched = Vec::new();
        if self.database_url.is_none() {
            watched.push(Watched { role: "metadata", path: self.db_dir() });
        }
        if let Some(dir) = self.store.local_dir() {
            watched.push(Watched { role: "blobs", path: dir });
        }
        watched
    }

    pub fn limits(&self) -> Limits {
        self.limit_settings.limits()
    }

    pub fn data_dir(&self) -> &Path {
        &self.store.data_dir
    }

    pub fn node_name(&self) -> String {
        self.node_name.clone().unwrap_or_else(|| imageapi_shared::settings::host_and_pid("server"))
    }

    pub fn repo_settings(&self) -> crate::repo::RepoSettings {
        crate::repo::RepoSettings {
            database_url: self.database_url.clone(),
            pool_size: self.database_pool,
            sled_dir: self.db_dir(),
            sled_cache_bytes: self.db_cache_mb * 1024 * 1024,
        }
    }

    pub fn db_dir(&self) -> PathBuf {
        self.store.data_dir.join("db")
    }

    pub fn login_limits(&self) -> crate::login_limits::LoginLimits {
        crate::login_limits::LoginLimits {
            failures_per_address: self.login_failures_per_address.max(1),
            failures_per_username: self.login_failures_per_username.max(1),
            ..crate::login_limits::LoginLimits::default()
        }
    }

    pub fn password_threads(&self) -> usize {
        self.password_threads.unwrap_or_else(cores).max(1)
    }

    pub fn worker_threads(&self) -> usize {
        self.workers.unwrap_or_else(cores)
    }
}

fn cores() -> usize {
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
}
