//! The thumbnail job queue, as one subsystem: what the server pushes jobs through
//! ([`JobQueue`]), where a finished job's report goes ([`OutcomeSink`]), what runs a job
//! ([`JobHandler`], the worker's `run_job` plugs in here), the one [`retry::RetryPolicy`], and
//! the two transports side by side:
//!
//! - [`embedded`]: [`embedded::EmbeddedQueue`] and [`embedded::EmbeddedWorker`] — a channel
//!   from the server's outbox to runner tasks in the same process; no services needed.
//! - [`redis`]: jobs in an apalis-redis queue — the server's producer
//!   ([`redis::producer::RedisQueue`]), the worker process's consumer ([`redis::consumer`]), the
//!   results stream back ([`redis::results`]) and the blob-store check that keeps a worker
//!   which does not see the server's store from taking jobs ([`redis::store_check`]).
//!
//! A job's path: the server's dispatcher `push`es it; a transport hands it to the
//! [`JobHandler`], retrying by the policy; the handler reports through the [`OutcomeSink`]
//! (embedded: straight into the server's metadata; Redis: onto the results stream the servers
//! read).

pub mod embedded;
pub mod redis;
pub mod retry;

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

/// What runs one attempt of a job, whichever transport delivered it. `Err`: a failure a later
/// attempt may not meet (the store was away); the transport retries by [`retry::RetryPolicy`]
/// and gives the job up after the last attempt. A bad image is not an error: the handler
/// reports its thumbnails failed and returns `Ok`.
#[async_trait]
pub trait JobHandler: Send + Sync + 'static {
    type Error: std::error::Error + Send + Sync + 'static;

    async fn handle(&self, job: ThumbnailJob) -> Result<(), Self::Error>;

    /// An attempt failed and another follows (for the handler's metrics).
    fn retrying(&self) {}

    /// The last attempt failed: the job waits for an admin's retry.
    fn given_up(&self) {}
}
