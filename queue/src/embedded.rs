//! The embedded queue: jobs carried in-process from the server to a few runner tasks that feed
//! a [`JobHandler`] (the render pool). Same handler and retry policy as the Redis transport;
//! no services needed.
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

use imageapi_core::queue::{FailedJob, JobRef, QueueMode, QueueSnapshot, WorkerInfo, FAILED_JOBS_SHOWN};

use crate::retry::RetryPolicy;
use crate::{JobHandler, JobQueue, QueueError};

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
    pub async fn run<H: JobHandler>(self, handler: Arc<H>, concurrency: usize, shutdown: CancellationToken) {
        let rx = Arc::new(tokio::sync::Mutex::new(self.rx));
        let runners = (0..concurrency.max(1)).map(|_| runner(&rx, &self.book, &*handler, &shutdown));
        futures_util::future::join_all(runners).await;
    }
}

async fn runner<H: JobHandler>(
    rx: &tokio::sync::Mutex<UnboundedReceiver<ThumbnailJob>>,
    book: &SharedBook,
    handler: &H,
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
        work(job, book, handler, shutdown).await;
    }
}

/// One job with its attempts; ends done, given up, or dropped at shutdown.
async fn work<H: JobHandler>(job: ThumbnailJob, book: &SharedBook, handler: &H, shutdown: &CancellationToken) {
    if let Some(held) = lock(book).held.get_mut(&job.id) {
        held.running = true;
    }
    let policy = RetryPolicy::default();
    for attempt in 1..=policy.max_attempts() {
        let result = AssertUnwindSafe(handler.handle(job.clone())).catch_unwind().await;
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
            handler.given_up();
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
        handler.retrying();
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

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use imageapi_core::image::ImageFormat;
    use ulid::Ulid;

    use super::*;

    /// Fails the first `failures` attempts, then succeeds; counts what the queue tells it.
    #[derive(Default)]
    struct Flaky {
        failures: u32,
        attempts: AtomicU32,
        retries: AtomicU32,
        given_up: AtomicU32,
    }

    #[derive(Debug, thiserror::Error)]
    #[error("the store is away")]
    struct Away;

    #[async_trait]
    impl JobHandler for Flaky {
        type Error = Away;

        async fn handle(&self, _job: ThumbnailJob) -> Result<(), Away> {
            if self.attempts.fetch_add(1, Ordering::SeqCst) < self.failures {
                Err(Away)
            } else {
                Ok(())
            }
        }

        fn retrying(&self) {
            self.retries.fetch_add(1, Ordering::SeqCst);
        }

        fn given_up(&self) {
            self.given_up.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn job() -> ThumbnailJob {
        ThumbnailJob {
            formats: vec![imageapi_core::image::ThumbnailFormat::Source],
            id: JobId::from_ulid(Ulid::new()),
            image_id: ImageId::from_ulid(Ulid::new()),
            format: ImageFormat::Png,
            heights: vec![200],
            owner: None,
        }
    }

    #[tokio::test]
    async fn any_handler_plugs_in_and_a_failed_attempt_is_retried_once_by_the_policy() {
        let (queue, worker) = queue();
        let handler = Arc::new(Flaky { failures: 1, ..Flaky::default() });
        let shutdown = CancellationToken::new();
        let running = tokio::spawn(worker.run(handler.clone(), 2, shutdown.clone()));
        let job = job();
        assert_eq!(queue.push(&[job.clone(), job.clone()]).await.ok(), Some(1), "one delivery per job id");
        for _ in 0..100 {
            if queue.snapshot().await.is_ok_and(|s| s.done == 1) {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        let snapshot = queue.snapshot().await.expect("a snapshot");
        assert_eq!((snapshot.done, snapshot.failed, snapshot.pending, snapshot.running), (1, 0, 0, 0));
        assert_eq!(handler.attempts.load(Ordering::SeqCst), 2);
        assert_eq!(handler.retries.load(Ordering::SeqCst), 1);
        assert_eq!(handler.given_up.load(Ordering::SeqCst), 0);
        shutdown.cancel();
        running.await.expect("the runners stop");
    }
}
