//! The worker process's consumer: an apalis worker on the Redis queue, feeding a
//! [`JobHandler`] (the worker's render pool). It is supervised: if apalis stops with an error (Redis went away, or this worker was
//! declared dead by its peers after a long pause), it is started again under a fresh name;
//! the jobs the old name held are recovered by the live workers as orphans.

use std::sync::Arc;
use std::time::Duration;

use apalis::layers::WorkerBuilderExt;
use apalis_core::backend::ext::BackendExt;
use apalis_core::error::{AbortError, BoxDynError};
use apalis_core::task::attempt::Attempt;
use apalis_core::task::data::Data;
use apalis_core::worker::builder::WorkerBuilder;
use apalis_redis::RedisStorage;
use imageapi_core::jobs::ThumbnailJob;
use redis::aio::ConnectionManager;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::store_check::StoreStatus;
use super::{queue_config, QUEUE};
use crate::retry::RetryPolicy;
use crate::JobHandler;

#[derive(Debug, Clone)]
pub struct ConsumerConfig {
    /// Unique among live workers (apalis refuses a name that heartbeats elsewhere).
    pub name: String,
    /// Jobs run at once.
    pub concurrency: usize,
    /// How often an idle worker asks for jobs: the pickup delay.
    pub poll_interval: Duration,
    pub heartbeat: Duration,
    /// Attempts before a job goes to the dead set, and their delays (apalis-redis schedules
    /// a retry after the same delay the policy names).
    pub retry: RetryPolicy,
}

struct Attempts<H> {
    handler: Arc<H>,
    retry: RetryPolicy,
}

/// One attempt: apalis retries an `Err` after the policy's delay, an `AbortError` goes to the
/// dead set at once.
async fn attempt<H: JobHandler>(
    job: ThumbnailJob,
    attempts: Data<Arc<Attempts<H>>>,
    attempt: Attempt,
) -> Result<(), BoxDynError> {
    let id = job.id;
    match attempts.handler.handle(job).await {
        Ok(()) => Ok(()),
        Err(e) if attempts.retry.is_last(u32::try_from(attempt.current()).unwrap_or(u32::MAX)) => {
            tracing::error!(error = %e, job = %id, attempt = attempt.current(), "thumbnail job failed its last attempt; it goes to the dead set");
            attempts.handler.given_up();
            Err(Box::new(AbortError::new(e)))
        }
        Err(e) => {
            tracing::warn!(error = %e, job = %id, attempt = attempt.current(), "thumbnail job failed; it will be retried");
            attempts.handler.retrying();
            Err(Box::new(e))
        }
    }
}

/// Leaves the queue's worker list, handing back any job fetched but not run. (apalis 1.0's own
/// cleanup removes the wrong member, so a stopped worker would otherwise stay listed.)
async fn deregister(conn: &ConnectionManager, name: &str) -> Result<(), redis::RedisError> {
    const LEAVE: &str = r#"
-- KEYS[1] workers set, KEYS[2] this worker's inflight set, KEYS[3] active list, KEYS[4] signal list,
-- KEYS[5] this worker's metadata hash
local held = redis.call('smembers', KEYS[2])
if #held > 0 then
    redis.call('rpush', KEYS[3], unpack(held))
    redis.call('del', KEYS[4])
    redis.call('lpush', KEYS[4], 1)
end
redis.call('del', KEYS[2])
redis.call('del', KEYS[5])
redis.call('zrem', KEYS[1], ARGV[1])
return #held
"#;
    let config = queue_config();
    let mut conn = conn.clone();
    let handed_back: u32 = redis::Script::new(LEAVE)
        .key(config.workers_set())
        .key(format!("{}:{name}", config.inflight_jobs_set()))
        .key(config.active_jobs_list())
        .key(config.signal_list())
        .key(format!("{}:workers:metadata:{name}", QUEUE))
        .arg(name)
        .invoke_async(&mut conn)
        .await?;
    if handed_back > 0 {
        tracing::info!(jobs = handed_back, "handed back jobs fetched but not started");
    }
    Ok(())
}

/// Consumes jobs until `shutdown` is cancelled; running jobs finish first. Only while `store`
/// says the worker sees the server's blob store: when it stops seeing it, the worker stops
/// taking jobs (running ones finish, fetched ones are handed back) until it sees it again.
pub async fn run<H: JobHandler>(
    handler: Arc<H>,
    conn: ConnectionManager,
    config: ConsumerConfig,
    mut store: watch::Receiver<StoreStatus>,
    shutdown: CancellationToken,
) {
    let attempts = Arc::new(Attempts { handler, retry: config.retry });
    let apalis_config = queue_config()
        // One job per fetch: apalis fetches a new batch whenever a slot frees up, so larger
        // batches would park jobs behind this worker's running ones.
        .batch_size(1)
        .heartbeat_interval(config.heartbeat)
        // Declared dead (its jobs re-queued) after three missed heartbeats.
        .missed_heartbeats(3);
    let mut restarts = 0u32;
    loop {
        tokio::select! {
            seen = store.wait_for(|s| *s == StoreStatus::Same) => if seen.is_err() { return },
            _ = shutdown.cancelled() => return,
        }
        let name = if restarts == 0 { config.name.clone() } else { format!("{}.{restarts}", config.name) };
        let storage = RedisStorage::<ThumbnailJob>::new(conn.clone())
            .with_config(apalis_config.clone())
            .poll_with_interval(config.poll_interval);
        let worker = WorkerBuilder::new(name.as_str())
            .backend(storage)
            .concurrency(config.concurrency.max(1))
            .catch_panic()
            .data(attempts.clone())
            .build(attempt::<H>);
        let stop = shutdown.clone();
        let mut store_seen = store.clone();
        let lost_store = CancellationToken::new();
        let lost = lost_store.clone();
        tracing::info!(worker = %name, "consuming thumbnail jobs");
        let result = worker
            .run_until(async move {
                tokio::select! {
                    _ = stop.cancelled() => {}
                    _ = store_seen.wait_for(|s| *s != StoreStatus::Same) => lost.cancel(),
                }
                Ok::<(), apalis_core::error::WorkerError>(())
            })
            .await;
        if lost_store.is_cancelled() && !shutdown.is_cancelled() {
            if let Err(e) = deregister(&conn, &name).await {
                tracing::warn!(error = %e, "could not leave the worker list; the others will clear it after three missed heartbeats");
            }
            tracing::warn!(worker = %name, "stopped taking jobs until the blob store is the server's again");
            restarts += 1;
            continue;
        }
        if shutdown.is_cancelled() {
            if let Err(e) = result {
                tracing::warn!(error = %e, "the worker stopped with an error while shutting down");
            }
            if let Err(e) = deregister(&conn, &name).await {
                tracing::warn!(error = %e, "could not leave the worker list; the others will clear it after three missed heartbeats");
            }
            return;
        }
        match result {
            Ok(()) => tracing::warn!(worker = %name, "the worker stopped by itself; starting it again"),
            Err(e) => tracing::error!(error = %e, worker = %name, "the worker stopped; starting it again shortly"),
        }
        restarts += 1;
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = shutdown.cancelled() => return,
        }
    }
}
