//! The queue contract between the server and its workers, usable by both without either
//! depending on the other's internals: what the server needs from a job queue, whichever one
//! runs (deliver jobs idempotently by job id, describe itself for admins, re-run a job that
//! was given up), where a finished job's report goes ([`OutcomeSink`]), and the Redis side of
//! it all.
//!
//! - [`redis`]: the Redis queue (apalis-redis) as the server uses it, and the connection.
//! - [`results`]: the results stream (workers append, servers consume).
//! - [`store_check`]: the blob store marker the server publishes and workers check.
//! - [`retry`]: the one retry policy of both transports.

pub mod redis;
pub mod results;
pub mod retry;
pub mod store_check;

/// The Redis queue's name (apalis); every Redis key of the queue starts with it.
pub const QUEUE: &str = "imageapi:thumbnails";

use std::collections::BTreeSet;

use async_trait::async_trait;
use imageapi_core::domain::JobId;
use imageapi_core::jobs::ThumbnailJob;
use imageapi_core::queue::{QueueMode, QueueSnapshot};

#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error("the job queue is unreachable: {0}")]
    Unavailable(String),
    #[error("the job queue answered something unexpected: {0}")]
    Corrupt(String),
}

impl From<::redis::RedisError> for QueueError {
    fn from(e: ::redis::RedisError) -> Self {
        Self::Unavailable(e.to_string())
    }
}

#[async_trait]
pub trait JobQueue: Send + Sync + 'static {
    fn mode(&self) -> QueueMode;

    /// Delivers jobs; returns how many were new to the queue. Delivering a job id the queue
    /// already holds (queued, running, done or failed) changes nothing, so a sender may
    /// re-deliver whenever it is unsure, and does so from time to time: a Redis without
    /// persistence forgets its jobs when it restarts.
    async fn push(&self, jobs: &[ThumbnailJob]) -> Result<usize, QueueError>;

    /// Jobs the queue holds that are not finished or given up: waiting (also for a retry) or
    /// running. The sender keeps this below a window, so that jobs enter the queue in fair
    /// turns (see the server's dispatcher).
    async fn in_flight(&self) -> Result<u64, QueueError>;

    async fn snapshot(&self) -> Result<QueueSnapshot, QueueError>;

    /// Puts a failed job back in line with fresh attempts. `Ok(false)`: no such failed job.
    async fn retry_failed(&self, job: JobId) -> Result<bool, QueueError>;

    /// Whether the queue answers (readiness).
    async fn ping(&self) -> Result<(), QueueError>;

    /// Drops the queue's records of finished jobs the sender no longer needs (those not in
    /// `unfinished`), keeping counts exact. Returns how many were dropped.
    async fn vacuum(&self, _unfinished: &BTreeSet<JobId>) -> Result<u64, QueueError> {
        Ok(0)
    }
}

/// Where a finished job's report goes: in embedded mode straight into the server's metadata,
/// with Redis onto the results stream the servers consume.
#[async_trait]
pub trait OutcomeSink: Send + Sync + 'static {
    async fn report(&self, report: imageapi_core::jobs::JobReport) -> anyhow::Result<()>;

    /// Whether the job is still wanted (its image not deleted since). Asked only when the
    /// original is missing or a thumbnail waits for disk space; a sink that cannot tell says
    /// yes, and the job is retried (or goes on waiting).
    async fn is_wanted(&self, _job: &ThumbnailJob) -> anyhow::Result<bool> {
        Ok(true)
    }
}
