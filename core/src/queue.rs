//! The queue's picture of itself, as either transport (embedded or Redis) draws it for admins.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::domain::{ImageId, JobId};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum QueueMode {
    Embedded,
    Redis,
}

/// A point-in-time view of the queue for admins.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct QueueSnapshot {
    pub mode: QueueMode,
    /// Waiting to run, including retries waiting for their backoff.
    pub pending: u64,
    /// Taken by a worker.
    pub running: u64,
    /// Finished (thumbnails made or reported failed).
    pub done: u64,
    /// Given up after the last attempt, waiting for an admin's retry.
    pub failed: u64,
    pub workers: Vec<WorkerInfo>,
    /// The given-up jobs, oldest first, at most [`FAILED_JOBS_SHOWN`].
    pub failed_jobs: Vec<FailedJob>,
}

/// How many failed jobs a snapshot lists (the count is exact).
pub const FAILED_JOBS_SHOWN: usize = 100;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WorkerInfo {
    pub name: String,
    pub last_heartbeat: DateTime<Utc>,
    /// Jobs the worker holds now.
    pub jobs: Vec<JobRef>,
    /// Why the worker takes no jobs (it does not see the server's blob store), if it does not.
    pub problem: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JobRef {
    pub job: JobId,
    pub image: Option<ImageId>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FailedJob {
    pub job: JobId,
    pub image: Option<ImageId>,
    pub heights: Vec<u32>,
    pub reason: String,
    pub attempts: u32,
    pub failed_at: Option<DateTime<Utc>>,
}
