//! The thumbnail worker: makes the thumbnails of a [`ThumbnailJob`] on a pool of supervised
//! actix actors. It knows no transport: [`JobContext`] is the `imageapi_queue::JobHandler`
//! that the embedded queue (inside the server) and the Redis consumer (the `imageapi-worker`
//! process, [`service`]) both run jobs through.
//!
//! - [`pool`]: [`ThumbnailPool`], a `SyncArbiter` of render actors (one OS thread each, sized
//!   to the cores). A panic while rendering is caught inside the actor, so it never kills the
//!   pool; the job's thumbnails are marked failed with the reason.
//! - [`job`]: [`run_job`], the work of one job — read the original from the blob store, render
//!   every pending height from one decode, write the thumbnails back, report one
//!   [`JobReport`] through an [`OutcomeSink`].
//! - [`service`]: the `imageapi-worker` process — render pool, the Redis consumer of
//!   `imageapi_queue`, results sink, metrics endpoint.
//! - [`config`]: the `imageapi-worker` process's settings; [`metrics`]: its Prometheus metrics.
//! - [`oneshot`]: the `thumbnail` and `bench` commands (the pipeline without a queue).
//!
//! [`ThumbnailJob`]: imageapi_core::jobs::ThumbnailJob
//! [`JobReport`]: imageapi_core::jobs::JobReport
//! [`OutcomeSink`]: imageapi_queue::OutcomeSink

pub mod config;
pub mod job;
pub mod metrics;
pub mod oneshot;
pub mod pool;
pub mod service;

pub use job::{run_job, JobContext, JobError};
pub use metrics::WorkerMetrics;
pub use pool::{RenderError, ThumbnailPool};
