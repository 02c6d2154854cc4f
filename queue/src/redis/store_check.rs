//! One store, checked: the server publishes the marker of its blob store in Redis, and each
//! worker compares it with the marker of the store it sees itself, at start and on every
//! heartbeat. A worker that does not see the server's store takes no jobs, says why in its log,
//! on its `/healthz` (503) and in the admin queue view (the problems hash below).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use imageapi_shared::store::{read_marker, BlobStore, StoreMarker};
use redis::aio::ConnectionManager;
use redis::AsyncCommands;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::QUEUE;
use crate::QueueError;

/// Where the server publishes its store marker.
fn marker_key() -> String {
    format!("{QUEUE}:store-marker")
}

/// Worker name → [`WorkerProblem`], for workers that take no jobs because of their setup.
fn problems_key() -> String {
    format!("{QUEUE}:worker-problems")
}

/// A problem report older than this is from a worker that is gone.
pub const PROBLEM_STALE_AFTER: Duration = Duration::from_secs(60);

/// How often the server publishes its marker again (Redis may have restarted empty).
pub const PUBLISH_EVERY: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkerProblem {
    pub problem: String,
    pub at: DateTime<Utc>,
}

/// The server's side: make its store's marker known to the workers.
pub async fn publish_marker(conn: &ConnectionManager, marker: &StoreMarker) -> Result<(), QueueError> {
    let json = serde_json::to_string(marker).map_err(|e| QueueError::Corrupt(e.to_string()))?;
    let mut conn = conn.clone();
    let () = conn.set(marker_key(), json).await?;
    Ok(())
}

/// Publishes the marker every [`PUBLISH_EVERY`] until `shutdown`.
pub async fn keep_publishing(conn: ConnectionManager, marker: StoreMarker, shutdown: CancellationToken) {
    let mut failing = false;
    loop {
        match publish_marker(&conn, &marker).await {
            Ok(()) if failing => {
                tracing::info!("published the store marker again");
                failing = false;
            }
            Ok(()) => {}
            Err(e) if !failing => {
                tracing::warn!(error = %e, "cannot publish the store marker; workers will wait for it");
                failing = true;
            }
            Err(_) => {}
        }
        tokio::select! {
            _ = tokio::time::sleep(PUBLISH_EVERY) => {}
            _ = shutdown.cancelled() => return,
        }
    }
}

async fn published_marker(conn: &ConnectionManager) -> Result<Option<StoreMarker>, QueueError> {
    let mut conn = conn.clone();
    let json: Option<String> = conn.get(marker_key()).await?;
    json.map(|j| serde_json::from_str(&j).map_err(|e| QueueError::Corrupt(e.to_string()))).transpose()
}

/// Problems reported by workers in the last [`PROBLEM_STALE_AFTER`]; older ones are removed.
pub async fn worker_problems(conn: &ConnectionManager) -> Result<HashMap<String, WorkerProblem>, QueueError> {
    let mut conn = conn.clone();
    let raw: HashMap<String, String> = conn.hgetall(problems_key()).await?;
    let now = Utc::now();
    let mut live = HashMap::new();
    let mut stale = Vec::new();
    for (name, json) in raw {
        match serde_json::from_str::<WorkerProblem>(&json) {
            Ok(p) if (now - p.at).to_std().unwrap_or_default() < PROBLEM_STALE_AFTER => {
                live.insert(name, p);
            }
            _ => stale.push(name),
        }
    }
    if !stale.is_empty() {
        let _: Result<(), _> = conn.hdel(problems_key(), stale).await;
    }
    Ok(live)
}

/// What a worker knows about its store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreStatus {
    /// Not checked yet.
    Unchecked,
    /// The worker sees the server's store.
    Same,
    /// Why the worker takes no jobs.
    Problem(String),
}

/// Compares the worker's store with the server's published marker.
async fn check(store: &dyn BlobStore, conn: &ConnectionManager) -> StoreStatus {
    let published = match published_marker(conn).await {
        Ok(Some(marker)) => marker,
        Ok(None) => {
            return StoreStatus::Problem(
                "the server has not published its store marker in Redis yet (is imageapi-server running with this IMAGEAPI_REDIS_URL?)".into(),
            )
        }
        Err(e) => return StoreStatus::Problem(format!("cannot read the server's store marker from Redis: {e}")),
    };
    let here = store.location();
    match read_marker(store).await {
        Ok(Some(id)) if id == published.id => StoreStatus::Same,
        Ok(Some(id)) => StoreStatus::Problem(format!(
            "this worker's blob store ({here}, marker {id}) is not the server's ({}, marker {}): set IMAGEAPI_BLOB_URL or IMAGEAPI_BLOB_DIR as the server has them",
            published.location, published.id
        )),
        Ok(None) => StoreStatus::Problem(format!(
            "this worker's blob store ({here}) has no store marker, so it is not the server's ({}, marker {}): set IMAGEAPI_BLOB_URL or IMAGEAPI_BLOB_DIR as the server has them",
            published.location, published.id
        )),
        Err(e) => StoreStatus::Problem(format!("this worker's blob store ({here}) cannot be read: {e}")),
    }
}

/// Checks now and then every `period` until `shutdown`, publishing the result on `status` and,
/// for admins, in Redis.
pub async fn watch_store(
    store: Arc<dyn BlobStore>,
    conn: ConnectionManager,
    name: String,
    period: Duration,
    status: watch::Sender<StoreStatus>,
    shutdown: CancellationToken,
) {
    loop {
        let now = check(store.as_ref(), &conn).await;
        let changed = *status.borrow() != now;
        if changed {
            match &now {
                StoreStatus::Same => {
                    tracing::info!(store = %store.location(), "the blob store is the server's; taking jobs")
                }
                StoreStatus::Problem(problem) => tracing::error!(%problem, "taking no jobs"),
                StoreStatus::Unchecked => {}
            }
        }
        let mut c = conn.clone();
        let reported: Result<(), redis::RedisError> = match &now {
            StoreStatus::Problem(problem) => {
                let report = WorkerProblem { problem: problem.clone(), at: Utc::now() };
                match serde_json::to_string(&report) {
                    Ok(json) => c.hset(problems_key(), &name, json).await,
                    Err(_) => Ok(()),
                }
            }
            _ if changed => c.hdel(problems_key(), &name).await,
            _ => Ok(()),
        };
        if let Err(e) = reported {
            tracing::debug!(error = %e, "could not report the store check to Redis");
        }
        status.send_replace(now);
        tokio::select! {
            _ = tokio::time::sleep(period) => {}
            _ = shutdown.cancelled() => break,
        }
    }
    let mut c = conn.clone();
    let _: Result<(), _> = c.hdel(problems_key(), &name).await;
}
