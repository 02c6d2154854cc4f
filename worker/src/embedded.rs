//! The embedded queue: apalis' in-process `MemoryStorage` and a worker draining it into the
//! render pool. Same job type and handler as the Redis mode; no services needed.
//!
//! The queue itself is not durable: the server keeps every unfinished job in its outbox (sled)
//! and delivers them again at start, so nothing acknowledged is lost.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};

use apalis::layers::retry::RetryPolicy;
use apalis::layers::WorkerBuilderExt;
use apalis_core::backend::memory::{MemorySink, MemoryStorage, MemoryStorageError};
use apalis_core::error::BoxDynError;
use apalis_core::task::attempt::Attempt;
use apalis_core::task::builder::TaskBuilder;
use apalis_core::task::data::Data;
use apalis_core::task::task_id::TaskId;
use apalis_core::task::Task;
use apalis_core::worker::builder::WorkerBuilder;
use apalis_core::worker::context::WorkerContext;
use async_trait::async_trait;
use chrono::Utc;
use futures_channel::mpsc::{unbounded, UnboundedSender};
use futures_util::{SinkExt, StreamExt};
use imageapi_shared::domain::JobId;
use imageapi_shared::jobs::ThumbnailJob;
use tokio_util::sync::CancellationToken;

use crate::job::{run_job, JobContext};
use imageapi_shared::queue::{
    FailedJob, JobQueue, JobRef, QueueError, QueueMode, QueueSnapshot, WorkerInfo, FAILED_JOBS_SHOWN,
};

/// In-process retries of a job whose failure was transient (blob store or report I/O): five
/// attempts in all, attempt n waiting n seconds before the next, as with Redis.
const RETRIES: usize = 4;
const WORKER_NAME: &str = "embedded";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    Queued,
    Running,
}

/// The queue's own record of its jobs, for admins and for idempotent delivery.
#[derive(Default)]
struct Book {
    live: HashMap<JobId, (Stage, ThumbnailJob)>,
    done: u64,
    /// Given-up jobs: what admins see, and the job to run again on a retry.
    failed: BTreeMap<JobId, (FailedJob, ThumbnailJob)>,
}

/// The push side of the embedded queue; cheap to clone, usable from any thread.
#[derive(Clone)]
pub struct EmbeddedQueue {
    tx: UnboundedSender<Task<ThumbnailJob>>,
    book: Arc<Mutex<Book>>,
}

impl EmbeddedQueue {
    fn book(&self) -> MutexGuard<'_, Book> {
        self.book.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn send(&self, job: ThumbnailJob) -> Result<(), QueueError> {
        // apalis' tracing layer requires every task to carry an id; ours is the job's.
        let task = TaskBuilder::new(job.clone()).task_id(TaskId::from_string(job.id.to_string())).build();
        self.tx.unbounded_send(task).map_err(|_| QueueError::Unavailable("the embedded worker has stopped".into()))
    }
}

#[async_trait]
impl JobQueue for EmbeddedQueue {
    fn mode(&self) -> QueueMode {
        QueueMode::Embedded
    }

    async fn push(&self, jobs: &[ThumbnailJob]) -> Result<(), QueueError> {
        for job in jobs {
            {
                let mut book = self.book();
                if book.live.contains_key(&job.id) || book.failed.contains_key(&job.id) {
                    continue;
                }
                book.live.insert(job.id, (Stage::Queued, job.clone()));
            }
            if let Err(e) = self.send(job.clone()) {
                self.book().live.remove(&job.id);
                return Err(e);
            }
        }
        Ok(())
    }

    fn may_lose_jobs(&self) -> bool {
        false
    }

    async fn snapshot(&self) -> Result<QueueSnapshot, QueueError> {
        let book = self.book();
        let running: Vec<JobRef> = book
            .live
            .iter()
            .filter(|(_, (stage, _))| *stage == Stage::Running)
            .map(|(id, (_, job))| JobRef { job: *id, image: Some(job.image_id) })
            .collect();
        Ok(QueueSnapshot {
            mode: QueueMode::Embedded,
            pending: (book.live.len() - running.len()) as u64,
            running: running.len() as u64,
            done: book.done,
            failed: book.failed.len() as u64,
            workers: vec![WorkerInfo {
                name: WORKER_NAME.into(),
                last_heartbeat: Utc::now(),
                jobs: running,
                problem: None,
            }],
            failed_jobs: book.failed.values().take(FAILED_JOBS_SHOWN).map(|(failed, _)| failed.clone()).collect(),
        })
    }

    async fn retry_failed(&self, job: JobId) -> Result<bool, QueueError> {
        let payload = {
            let mut book = self.book();
            book.failed.remove(&job).map(|(_, payload)| payload)
        };
        match payload {
            Some(payload) => self.push(&[payload]).await.map(|()| true),
            None => Ok(false),
        }
    }

    async fn vacuum(&self, unfinished: &std::collections::BTreeSet<JobId>) -> Result<u64, QueueError> {
        let mut book = self.book();
        let before = book.failed.len();
        book.failed.retain(|id, _| unfinished.contains(id));
        Ok((before - book.failed.len()) as u64)
    }

    async fn ping(&self) -> Result<(), QueueError> {
        if self.tx.is_closed() {
            Err(QueueError::Unavailable("the embedded worker has stopped".into()))
        } else {
            Ok(())
        }
    }
}

/// The storage half, waiting to be handed to a worker.
pub struct EmbeddedWorker {
    storage: MemoryStorage<ThumbnailJob>,
    book: Arc<Mutex<Book>>,
}

/// Creates the queue: a push handle and the storage a worker will drain.
pub fn queue() -> (EmbeddedQueue, EmbeddedWorker) {
    let (tx, rx) = unbounded::<Task<ThumbnailJob>>();
    let sink = tx.clone().sink_map_err(MemoryStorageError::from);
    let sink = MemorySink::new(Arc::new(futures_util::lock::Mutex::new(Box::new(sink))));
    let book = Arc::new(Mutex::new(Book::default()));
    (
        EmbeddedQueue { tx, book: book.clone() },
        EmbeddedWorker { storage: MemoryStorage::new_with(sink, rx.boxed()), book },
    )
}

struct Handler {
    ctx: Arc<JobContext>,
    book: Arc<Mutex<Book>>,
}

impl Handler {
    fn book(&self) -> MutexGuard<'_, Book> {
        self.book.lock().unwrap_or_else(|e| e.into_inner())
    }
}

async fn handle(job: ThumbnailJob, handler: Data<Arc<Handler>>, attempt: Attempt) -> Result<(), BoxDynError> {
    if let Some(entry) = handler.book().live.get_mut(&job.id) {
        entry.0 = Stage::Running;
    }
    handler.ctx.metrics.running.inc();
    let result = run_job(job.clone(), &handler.ctx).await;
    handler.ctx.metrics.running.dec();
    match result {
        Ok(()) => {
            let mut book = handler.book();
            book.live.remove(&job.id);
            book.done += 1;
            Ok(())
        }
        Err(e) => {
            // Attempts count from 1; the retry layer allows RETRIES more after the first.
            if attempt.current() > RETRIES {
                tracing::error!(error = %e, job = %job.id, "thumbnail job failed its last attempt; an admin can retry it");
                handler.ctx.metrics.dead.inc();
                let mut book = handler.book();
                book.live.remove(&job.id);
                let failed = FailedJob {
                    job: job.id,
                    image: Some(job.image_id),
                    heights: job.heights.clone(),
                    reason: e.to_string(),
                    attempts: attempt.current() as u32,
                    failed_at: Some(Utc::now()),
                };
                book.failed.insert(job.id, (failed, job));
            } else {
                tracing::warn!(error = %e, job = %job.id, "thumbnail job failed; retrying");
                handler.ctx.metrics.retries.inc();
                // A store that is away for a moment (S3 restarting) should not exhaust the
                // attempts at once.
                tokio::time::sleep(std::time::Duration::from_secs(attempt.current() as u64)).await;
            }
            Err(e.into())
        }
    }
}

impl EmbeddedWorker {
    /// Runs the worker until `shutdown` is cancelled; jobs already running finish first.
    /// `concurrency` bounds jobs in flight (the render pool bounds CPU use separately).
    pub async fn run(self, ctx: Arc<JobContext>, concurrency: usize, shutdown: CancellationToken) {
        let worker_ctx = WorkerContext::new(WORKER_NAME);
        let handler = Arc::new(Handler { ctx, book: self.book });
        let worker = WorkerBuilder::new(&worker_ctx)
            .backend(self.storage)
            .concurrency(concurrency.max(1))
            .retry(RetryPolicy::retries(RETRIES))
            .catch_panic()
            .data(handler)
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
