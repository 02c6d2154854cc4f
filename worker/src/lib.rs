//! The thumbnail worker: consumes [`ThumbnailJob`]s from an apalis queue and makes the
//! thumbnails on a pool of supervised actix actors.
//!
//! - [`pool`]: [`ThumbnailPool`], a `SyncArbiter` of render actors (one OS thread each, sized
//!   to the cores). A panic while rendering is caught inside the actor, so it never kills the
//!   pool; the job's thumbnails are marked failed with the reason.
//! - [`job`]: [`run_job`], the work of one job — read the original from the blob store, render
//!   every pending height from one decode, write the thumbnails back, report one
//!   [`JobReport`] through an [`OutcomeSink`] (the queue contract is `imageapi_shared::queue`).
//! - [`embedded`]: the in-process queue (a channel from the outbox to runner tasks) and its
//!   worker, for the one-process mode.
//! - [`consumer`]: the worker process's apalis-redis consumer, supervised and restarted.
//! - [`config`]: the `imageapi-worker` process's settings; [`metrics`]: its Prometheus metrics.
//! - [`oneshot`]: the `thumbnail` and `bench` commands (the pipeline without a queue).
//!
//! [`ThumbnailJob`]: imageapi_core::jobs::ThumbnailJob
//! [`JobReport`]: imageapi_core::jobs::JobReport
//! [`OutcomeSink`]: imageapi_shared::queue::OutcomeSink

pub mod config;
pub mod consumer;
pub mod embedded;
pub mod job;
pub mod metrics;
pub mod oneshot;
pub mod pool;
pub mod service;

pub use embedded::{EmbeddedQueue, EmbeddedWorker};
pub use job::{run_job, JobContext, JobError};
pub use metrics::WorkerMetrics;
pub use pool::{RenderError, ThumbnailPool};
