//! The thumbnail worker: consumes [`ThumbnailJob`]s from an apalis queue and makes the
//! thumbnails on a pool of supervised actix actors.
//!
//! - [`pool`]: [`ThumbnailPool`], a `SyncArbiter` of render actors (one OS thread each, sized
//!   to the cores). A panic while rendering is caught inside the actor, so it never kills the
//!   pool; the job's thumbnails are marked failed with the reason.
//! - [`job`]: [`run_job`], the work of one job — read the original from the blob store, render
//!   every pending height from one decode, write the thumbnails back, report one
//!   [`ThumbnailOutcome`] per height through an [`OutcomeSink`].
//! - [`embedded`]: the in-process apalis `MemoryStorage` queue and its worker, for the
//!   single-process (embedded) mode.
//!
//! [`ThumbnailJob`]: imageapi_shared::jobs::ThumbnailJob
//! [`ThumbnailOutcome`]: imageapi_shared::jobs::ThumbnailOutcome

pub mod embedded;
pub mod job;
pub mod pool;

pub use embedded::{EmbeddedQueue, EmbeddedWorker};
pub use job::{run_job, JobContext, JobError, OutcomeSink};
pub use pool::{RenderError, ThumbnailPool};
