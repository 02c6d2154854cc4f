//! The thumbnail worker: consumes [`ThumbnailJob`]s from an apalis queue and makes the
//! thumbnails on a pool of supervised actix actors.
//!
//! - [`pool`]: [`ThumbnailPool`], a `SyncArbiter` of render actors (one OS thread each, sized
//!   to the cores). A panic while rendering is caught inside the actor, so it never kills the
//!   pool; the job's thumbnails are marked failed with the reason.
//! - [`job`]: [`run_job`], the work of one job — read the original from the blob store, render
//!   every pending height from one decode, write the thumbnails back, report one
//!   [`JobReport`] through an [`OutcomeSink`].
//! - [`queue`]: [`JobQueue`], what the server needs from either queue.
//! - [`embedded`]: the in-process apalis `MemoryStorage` queue and its worker (one process).
//! - [`redis`]: the apalis-redis queue, the results stream, and the worker process's consumer.
//! - [`config`]: the `imageapi-worker` process's settings; [`metrics`]: its Prometheus metrics.
//! - [`oneshot`]: the `thumbnail` and `bench` commands (the pipeline without a queue).
//!
//! [`ThumbnailJob`]: imageapi_shared::jobs::ThumbnailJob
//! [`JobReport`]: imageapi_shared::jobs::JobReport

pub mod config;
pub mod embedded;
pub mod job;
pub mod metrics;
pub mod oneshot;
pub mod pool;
pub mod queue;
pub mod redis;
pub mod service;

pub use embedded::{EmbeddedQueue, EmbeddedWorker};
pub use job::{run_job, JobContext, JobError, OutcomeSink};
pub use metrics::WorkerMetrics;
pub use pool::{RenderError, ThumbnailPool};
pub use queue::{JobQueue, QueueError, QueueMode, QueueSnapshot};
