//! Group commit: one flusher thread makes sled's writes durable for every waiting caller at
//! once.
//!
//! sled 0.34's `flush_async` deadlocks under concurrent callers (sled issues 1241, 1308,
//! 1412: the flush work and the IO it waits for share sled's own thread pool), so it is never
//! called. Instead a caller takes a ticket after its write and waits; the flusher notes the
//! highest ticket handed out, runs the blocking `Db::flush()` on its own thread, and then
//! acknowledges every ticket up to that mark. A write that finished before a flush started is
//! covered by that flush, so concurrent uploads share one flush instead of queueing one each.

use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::sync::watch;

/// What the flusher has done so far, published to waiters.
#[derive(Debug, Clone, Default)]
struct Progress {
    /// Every ticket up to this one is durable.
    durable_through: u64,
    /// The last flush that failed, with the highest ticket it was meant to cover.
    failed: Option<(u64, FlushFailure)>,
    /// Flushes run so far (for metrics and tests).
    flushes: u64,
    /// The flusher has exited: no later ticket will be served.
    stopped: bool,
}

#[derive(Debug, Default)]
struct Requests {
    /// The highest ticket handed out.
    issued: u64,
    /// The highest ticket a flush has started for.
    started_through: u64,
    stopping: bool,
}

struct Shared {
    requests: Mutex<Requests>,
    wake: Condvar,
    progress: watch::Sender<Progress>,
}

fn lock(m: &Mutex<Requests>) -> MutexGuard<'_, Requests> {
    // A poisoned lock only means a waiter panicked while holding it; the counters are intact.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Why a flush failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlushFailure {
    pub message: Arc<str>,
    /// The disk is full (which sled 0.34 does not recover from until it is reopened).
    pub out_of_space: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum FlushError {
    #[error("flushing the database failed: {}", .0.message)]
    Failed(FlushFailure),
    #[error("the database flusher has stopped")]
    Stopped,
}

/// Handle to the flusher thread; dropping the last handle stops it after a final flush.
pub struct GroupCommit {
    shared: Arc<Shared>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl GroupCommit {
    /// Starts the flusher thread for `flush`, the engine's blocking flush.
    pub fn start<F>(flush: F) -> std::io::Result<Self>
    where
        F: Fn() -> Result<(), FlushFailure> + Send + 'static,
    {
        let shared = Arc::new(Shared {
            requests: Mutex::new(Requests::default()),
            wake: Condvar::new(),
            progress: watch::Sender::new(Progress::default()),
        });
        let for_thread = shared.clone();
        let thread =
            std::thread::Builder::new().name("db-flusher".into()).spawn(move || run_flusher(&for_thread, flush))?;
        Ok(Self { shared, thread: Mutex::new(Some(thread)) })
    }

    /// Returns once every write that finished before this call is durable.
    pub async fn flush(&self) -> Result<(), FlushError> {
        let ticket = self.request();
        let mut progress = self.shared.progress.subscribe();
        let done = progress
            .wait_for(|p| {
                p.durable_through >= ticket || p.failed.as_ref().is_some_and(|(t, _)| *t >= ticket) || p.stopped
            })
            .await
            .map_err(|_| FlushError::Stopped)?;
        if done.durable_through >= ticket {
            return Ok(());
        }
        match &done.failed {
            Some((t, why)) if *t >= ticket => Err(FlushError::Failed(why.clone())),
            _ => Err(FlushError::Stopped),
        }
    }

    fn request(&self) -> u64 {
        let mut requests = lock(&self.shared.requests);
        requests.issued += 1;
        let ticket = requests.issued;
        drop(requests);
        self.shared.wake.notify_one();
        ticket
    }

    /// Flushes run so far.
    pub fn flushes(&self) -> u64 {
        self.shared.progress.borrow().flushes
    }

    /// Stops the flusher after one last flush of everything written so far, waiting at most
    /// `deadline`. Returns false if the flusher did not finish in time (it is then left behind).
    pub fn stop(&self, deadline: Duration) -> bool {
        lock(&self.shared.requests).stopping = true;
        self.shared.wake.notify_one();
        let Some(thread) = self.thread.lock().unwrap_or_else(|e| e.into_inner()).take() else {
            return true;
        };
        let until = Instant::now() + deadline;
        while !thread.is_finished() {
            if Instant::now() >= until {
                return false;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        let _ = thread.join();
        true
    }
}

impl Drop for GroupCommit {
    fn drop(&mut self) {
        // Command-line tools and tests drop the repository without calling `stop`; the thread
        // holds the database open, so wait for it (a reopen would find the lock taken).
        self.stop(Duration::from_secs(30));
    }
}

fn run_flusher<F: Fn() -> Result<(), FlushFailure>>(shared: &Shared, flush: F) {
    loop {
        let (target, stopping) = {
            let mut requests = lock(&shared.requests);
            while requests.issued == requests.started_through && !requests.stopping {
                requests = shared.wake.wait(requests).unwrap_or_else(|e| e.into_inner());
            }
            requests.started_through = requests.issued;
            (requests.issued, requests.stopping)
        };
        // Every ticket up to `target` was taken after its write finished, and the flush starts
        // now: it covers them all.
        let result = flush();
        shared.progress.send_modify(|p| {
            p.flushes += 1;
            match result {
                Ok(()) => p.durable_through = p.durable_through.max(target),
                Err(why) => {
                    // Once per kind of failure, not once per waiting request: a database on a
                    // full disk fails every flush the same way.
                    if p.failed.as_ref().is_none_or(|(_, last)| *last != why) {
                        tracing::error!(error = %why.message, out_of_space = why.out_of_space, "flushing the database failed");
                    }
                    p.failed = Some((target, why));
                }
            }
        });
        if stopping {
            let requests = lock(&shared.requests);
            if requests.issued == requests.started_through {
                shared.progress.send_modify(|p| p.stopped = true);
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_callers_share_flushes_and_each_write_before_a_flush_is_covered() {
        // "Writes" bump a counter; a flush records the value it saw when it started.
        let written = Arc::new(AtomicU64::new(0));
        let durable = Arc::new(AtomicU64::new(0));
        let calls = Arc::new(AtomicUsize::new(0));
        let (w, d, c) = (written.clone(), durable.clone(), calls.clone());
        let commit = Arc::new(
            GroupCommit::start(move || {
                let seen = w.load(Ordering::SeqCst);
                std::thread::sleep(Duration::from_millis(5));
                d.fetch_max(seen, Ordering::SeqCst);
                c.fetch_add(1, Ordering::SeqCst);
                Ok(())
            })
            .expect("flusher"),
        );
        let mut tasks = Vec::new();
        for _ in 0..64 {
            let (commit, written, durable) = (commit.clone(), written.clone(), durable.clone());
            tasks.push(tokio::spawn(async move {
                for _ in 0..10 {
                    let mine = written.fetch_add(1, Ordering::SeqCst) + 1;
                    commit.flush().await.expect("flush");
                    assert!(durable.load(Ordering::SeqCst) >= mine, "acknowledged before a covering flush");
                }
            }));
        }
        for t in tasks {
            t.await.expect("task");
        }
        let flushes = calls.load(Ordering::SeqCst);
        assert!(flushes < 640, "640 acknowledged writes should share flushes, ran {flushes}");
        assert_eq!(commit.flushes(), flushes as u64);
    }

    #[tokio::test]
    async fn a_failed_flush_fails_its_waiters_and_the_next_one_can_succeed() {
        let fail = Arc::new(std::sync::atomic::AtomicBool::new(true));
        let f = fail.clone();
        let commit = GroupCommit::start(move || {
            if f.load(Ordering::SeqCst) {
                Err(FlushFailure { message: "disk full".into(), out_of_space: true })
            } else {
                Ok(())
            }
        })
        .expect("flusher");
        let err = commit.flush().await.expect_err("the flush failed");
        assert!(err.to_string().contains("disk full"), "{err}");
        assert!(matches!(err, FlushError::Failed(FlushFailure { out_of_space: true, .. })), "{err:?}");
        fail.store(false, Ordering::SeqCst);
        commit.flush().await.expect("the next flush works");
    }

    #[tokio::test]
    async fn stop_runs_a_last_flush_and_then_waiters_learn_it_stopped() {
        let calls = Arc::new(AtomicUsize::new(0));
        let c = calls.clone();
        let commit = GroupCommit::start(move || {
            c.fetch_add(1, Ordering::SeqCst);
            Ok(())
        })
        .expect("flusher");
        commit.flush().await.expect("flush");
        assert!(commit.stop(Duration::from_secs(5)), "the flusher stops in time");
        assert_eq!(calls.load(Ordering::SeqCst), 2, "one flush for the caller, one at stop");
        assert!(matches!(commit.flush().await, Err(FlushError::Stopped)));
    }

    #[test]
    fn stop_gives_up_on_a_hung_flush_at_the_deadline() {
        let commit = GroupCommit::start(|| {
            std::thread::sleep(Duration::from_secs(3600));
            Ok(())
        })
        .expect("flusher");
        let started = Instant::now();
        assert!(!commit.stop(Duration::from_millis(100)), "a hung flush is reported");
        assert!(started.elapsed() < Duration::from_secs(5));
    }
}
