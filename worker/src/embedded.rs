//! The embedded queue: jobs carried in-process from the server to a few runner tasks that feed
//! the render pool. Same job handler and retry rule as the Redis mode; no services needed.
//!
//! A job is recorded once, durably, in the server's outbox, which delivers every unfinished
//! job again at start: nothing acknowledged is lost when this process stops. The queue
//! carries the job and keeps only what the outbox cannot tell — which job ids it holds (so a
//! second delivery is a no-op), which are running, and the given-up jobs waiting for an admin.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use chrono::Utc;
use futures_util::FutureExt;
use imageapi_core::domain::{ImageId, JobId};
use imageapi_core::jobs::ThumbnailJob;
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};
use tokio_util::sync::CancellationToken;

use crate::job::{run_job, JobContext};
use imageapi_core::queue::{FailedJob, JobRef, QueueMode, QueueSnapshot, WorkerInfo, FAILED_JOBS_SHOWN};
use imageapi_shared::queue::retry::RetryPolicy;
use imageapi_shared::queue::{JobQueue, QueueError};

const WORKER_NAME: &str = "embedded";

/// A job the queue holds; its payload travels in the channel.
struct Held {
    image: ImageId,
    running: bool,
}

#[derive(Default)]
struct Book {
    held: HashMap<JobId, Held>,
    done: u64,
    /// Given-up jobs: what admins see, and the job to run again on a retry.
    failed: BTreeMap<JobId, (FailedJob, ThumbnailJob)>,
}

type SharedBook = Arc<Mutex<Book>>;

fn lock(book: &SharedBook) -> MutexGuard<'_, Book> {
    book.lock().unwrap_or_else(|e| e.into_inner())
}

/// The push side of the embedded queue; cheap to clone, usable from any thread.
#[derive(Clone)]
pub struct EmbeddedQueue {
    tx: UnboundedSender<ThumbnailJob>,
    book: SharedBook,
}

#[async_trait]
impl JobQueue for EmbeddedQueue {
    fn mode(&self) -> QueueMode {
        QueueMode::Embedded
    }

    async fn push(&self, jobs: &[ThumbnailJob]) -> Result<usize, QueueError> {
        let mut new = 0;
        for job in jobs {
            {
                let mut book = lock(&self.book);
                if book.held.contains_key(&job.id) || book.failed.contains_key(&job.id) {
                    continue;
                }
                book.held.insert(job.id, Held { image: job.image_id, running: false });
            }
            if self.tx.send(job.clone()).is_err() {
                lock(&self.book).held.remove(&job.id);
                return Err(QueueError::Unavailable("the embedded worker has stopped".into()));
            }
            new += 1;
        }
        Ok(new)
    }

    async fn in_flight(&self) -> Result<u64, QueueError> {
        Ok(lock(&self.book).held.len() as u64)
    }

    async fn snapshot(&self) -> Result<QueueSnapshot, QueueError> {
        let book = lock(&self.book);
        let running: Vec<JobRef> = book
            .held
            .iter()
            .filter(|(_, held)| held.running)
            .map(|(id, held)| JobRef { job: *id, image: Some(held.image) })
            .collect();
        Ok(QueueSnapshot {
            mode: QueueMode::Embedded,
            pending: (book.held.len() - running.len()) as u64,
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
        let payload = lock(&self.book).failed.remove(&job).map(|(_, payload)| payload);
        match payload {
            Some(payload) => self.push(&[payload]).await.map(|_| true),
            None => Ok(false),
        }
    }

    async fn vacuum(&self, unfinished: &BTreeSet<JobId>) -> Result<u64, QueueError> {
        let mut book = lock(&self.book);
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

/// The receiving half, waiting to be handed to [`EmbeddedWorker::run`].
pub struct EmbeddedWorker {
    rx: UnboundedReceiver<ThumbnailJob>,
    book: SharedBook,
}

/// Creates the queue: a push handle and the receiving half a worker will drain.
pub fn queue() -> (EmbeddedQueue, EmbeddedWorker) {
    let (tx, rx) = unbounded_channel();
    let book = SharedBook::default();
    (EmbeddedQueue { tx, book: book.clone() }, EmbeddedWorker { rx, book })
}

impl EmbeddedWorker {
    /// Runs until `shutdown` is cancelled; a job already rendering finishes first (one waiting
    /// for its next attempt stops: the outbox delivers it again at start). `concurrency` bounds
    /// jobs in flight (the render pool bounds CPU use separately).
    pub async fn run(self, ctx: Arc<JobContext>, concurrency: usize, shutdown: CancellationToken) {
        let rx = Arc::new(tokio::sync::Mutex::new(self.rx));
        let runners = (0..concurrency.max(1)).map(|_| runner(&rx, &self.book, &ctx, &shutdown));
        futures_util::future::join_all(runners).await;
    }
}

async fn runner(
    rx: &tokio::sync::Mutex<UnboundedReceiver<ThumbnailJob>>,
    book: &SharedBook,
    ctx: &JobContext,
    shutdown: &CancellationToken,
) {
    loop {
        let job = {
            let mut rx = rx.lock().await;
            tokio::select! {
                biased;
                () = shutdown.cancelled() => return,
                job = rx.recv() => match job {
                    Some(job) => job,
                    None => return,
                },
            }
        };
        work(job, book, ctx, shutdown).await;
    }
}

/// One job with its attempts; ends done, given up, or dropped at shutdown.
async fn work(job: ThumbnailJob, book: &SharedBook, ctx: &JobContext, shutdown: &CancellationToken) {
    if let Some(held) = lock(book).held.get_mut(&job.id) {
        held.running = true;
    }
    let policy = RetryPolicy::default();
    for attempt in 1..=policy.max_attempts() {
        ctx.metrics.running.inc();
        let result = AssertUnwindSafe(run_job(job.clone(), ctx)).catch_unwind().await;
        ctx.metrics.running.dec();
        let error = match result {
            Ok(Ok(())) => {
                let mut book = lock(book);
                book.held.remove(&job.id);
                book.done += 1;
                return;
            }
            Ok(Err(e)) => e.to_string(),
            Err(_) => "the job panicked".to_owned(),
        };
        if policy.is_last(attempt) {
            tracing::error!(error = %error, job = %job.id, "thumbnail job failed its last attempt; an admin can retry it");
            ctx.metrics.dead.inc();
            let failed = FailedJob {
                job: job.id,
                image: Some(job.image_id),
                heights: job.heights.clone(),
                reason: error,
                attempts: attempt,
                failed_at: Some(Utc::now()),
            };
            let mut book = lock(book);
            book.held.remove(&job.id);
            book.failed.insert(job.id, (failed, job));
            return;
        }
        tracing::warn!(error = %error, job = %job.id, attempt, "thumbnail job failed; retrying");
        ctx.metrics.retries.inc();
        // A store that is away for a moment (S3 restarting) should not exhaust the attempts at once.
        tokio::select! {
            () = tokio::time::sleep(policy.delay_after(attempt)) => {}
            () = shutdown.cancelled() => {
                lock(book).held.remove(&job.id);
                return;
            }
        }
    }
}
