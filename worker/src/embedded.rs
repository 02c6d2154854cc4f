//! The embedded queue: apalis' in-process `MemoryStorage` and a worker draining it into the
//! render pool. Same job type and handler as the Redis mode; no services needed.
//!
//! The queue itself is not durable: the server records every pending thumbnail in sled before
//! it acknowledges an upload and re-enqueues them at start, so nothing acknowledged is lost.

use std::sync::Arc;

use apalis::layers::retry::RetryPolicy;
use apalis::layers::WorkerBuilderExt;
use apalis_core::backend::memory::{MemorySink, MemoryStorage, MemoryStorageError};
use apalis_core::error::BoxDynError;
use apalis_core::task::attempt::Attempt;
use apalis_core::task::builder::TaskBuilder;
use apalis_core::task::data::Data;
use apalis_core::task::task_id::{RandomId, TaskId};
use apalis_core::task::Task;
use apalis_core::worker::builder::WorkerBuilder;
use apalis_core::worker::context::WorkerContext;
use futures_channel::mpsc::{unbounded, UnboundedSender};
use futures_util::{SinkExt, StreamExt};
use imageapi_shared::jobs::ThumbnailJob;
use tokio_util::sync::CancellationToken;

use crate::job::{run_job, JobContext};

/// Immediate in-process retries of a job whose failure was transient (store or report I/O).
const RETRIES: usize = 3;

#[derive(Debug, thiserror::Error)]
#[error("the embedded job queue is closed")]
pub struct QueueClosed;

/// The push side of the embedded queue; cheap to clone, usable from any thread.
#[derive(Clone)]
pub struct EmbeddedQueue {
    tx: UnboundedSender<Task<ThumbnailJob>>,
}

impl EmbeddedQueue {
    pub fn push(&self, job: ThumbnailJob) -> Result<(), QueueClosed> {
        // apalis' tracing layer requires every task to carry an id.
        let task = TaskBuilder::new(job).task_id(TaskId::from_string(RandomId::default().to_string())).build();
        self.tx.unbounded_send(task).map_err(|_| QueueClosed)
    }

    /// False once the worker side is gone (it stopped or died): pushes would fail.
    pub fn is_open(&self) -> bool {
        !self.tx.is_closed()
    }
}

/// The storage half, waiting to be handed to a worker.
pub struct EmbeddedWorker {
    storage: MemoryStorage<ThumbnailJob>,
}

/// Creates the queue: a push handle and the storage a worker will drain.
pub fn queue() -> (EmbeddedQueue, EmbeddedWorker) {
    let (tx, rx) = unbounded::<Task<ThumbnailJob>>();
    let sink = tx.clone().sink_map_err(MemoryStorageError::from);
    let sink = MemorySink::new(Arc::new(futures_util::lock::Mutex::new(Box::new(sink))));
    (EmbeddedQueue { tx }, EmbeddedWorker { storage: MemoryStorage::new_with(sink, rx.boxed()) })
}

async fn handle(job: ThumbnailJob, ctx: Data<Arc<JobContext>>, attempt: Attempt) -> Result<(), BoxDynError> {
    match run_job(job.clone(), &ctx).await {
        Ok(()) => {
            ctx.sink.job_settled(&job);
            Ok(())
        }
        Err(e) => {
            // Attempts count from 1; the retry layer allows RETRIES more after the first.
            if attempt.current() > RETRIES {
                tracing::error!(error = %e, image = %job.image_id, "thumbnail job failed its last retry; its thumbnails stay pending");
                ctx.sink.job_settled(&job);
            } else {
                tracing::warn!(error = %e, image = %job.image_id, "thumbnail job failed; retrying");
            }
            Err(e.into())
        }
    }
}

impl EmbeddedWorker {
    /// Runs the worker until `shutdown` is cancelled; jobs already running finish first.
    /// `concurrency` bounds jobs in flight (the render pool bounds CPU use separately).
    pub async fn run(self, ctx: Arc<JobContext>, concurrency: usize, shutdown: CancellationToken) {
        let worker_ctx = WorkerContext::new("thumbnails");
        let worker = WorkerBuilder::new(&worker_ctx)
            .backend(self.storage)
            .concurrency(concurrency.max(1))
            .retry(RetryPolicy::retries(RETRIES))
            .catch_panic()
            .data(ctx)
            .build(handle);
        let result = worker
            .run_until(async move {
                shutdown.cancelled().await;
                Ok::<(), apalis_core::error::WorkerError>(())
            })
            .await;
        if let Err(e) = result {
            tracing::error!(error = %e, "the embedded thumbnail worker stopped with an error");
        }
    }
}
