//! What every handler can reach: configuration, repository, blob store, auth, thumbnails.

use std::sync::Arc;

use imageapi_core::image::Limits;
use imageapi_shared::store::BlobStore;

use crate::auth::Authenticator;
use crate::clock::Clock;
use crate::metrics::ServerMetrics;
use crate::repo::SharedRepo;
use crate::thumbnails::Thumbnails;

pub struct AppState {
    /// Base of every absolute link, without a trailing slash.
    pub public_url: String,
    pub limits: Limits,
    pub thumbnail_wait: std::time::Duration,
    /// Longest time an upload body may take to arrive.
    pub upload_timeout: std::time::Duration,
    pub repo: SharedRepo,
    pub store: Arc<dyn BlobStore>,
    pub auth: Arc<Authenticator>,
    /// Password hashing and verification (fixed memory; see [`crate::passwords`]).
    pub passwords: Arc<crate::passwords::PasswordPool>,
    pub thumbnails: Arc<Thumbnails>,
    pub clock: Clock,
    /// Peers whose `X-Forwarded-For` names the client (`IMAGEAPI_TRUSTED_PROXIES`).
    pub trusted_proxies: Vec<std::net::IpAddr>,
    pub metrics: ServerMetrics,
    /// Metrics are served on their own listener (`IMAGEAPI_METRICS_BIND`), not on the API's.
    pub metrics_elsewhere: bool,
    /// Bounds how many uploads are buffered at once (each up to the upload limit), in all and
    /// per user (see [`crate::upload_gate`]).
    pub uploads: crate::upload_gate::UploadGate,
    /// Free space on the local disks, and the floor that refuses uploads (see
    /// [`crate::disk_space`]).
    pub disk: Arc<crate::disk_space::DiskSpace>,
    /// Live expiring links one user may hold (`IMAGEAPI_MAX_LINKS_PER_USER`).
    pub max_links_per_user: usize,
}

/// Uploads buffered concurrently: 16 × 25 MiB is at most 400 MiB of upload buffers.
pub const UPLOAD_SLOTS: usize = 16;
