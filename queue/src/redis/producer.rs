//! The server's side of the Redis queue: [`RedisQueue`] delivers jobs (by job id, so
//! delivering twice is a no-op), counts what is where for admins (apalis 1.0's own stats
//! functions are broken, so the keys are read directly), and puts a failed job back in line.

use std::collections::{BTreeSet, HashMap};

use apalis_core::task::builder::TaskBuilder;
use apalis_core::task::task_id::TaskId;
use apalis_redis::{Config, RedisTask};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use imageapi_core::domain::JobId;
use imageapi_core::jobs::ThumbnailJob;
use redis::aio::ConnectionManager;

use super::{queue_config, QUEUE};
use crate::{JobQueue, QueueError};

use imageapi_core::queue::{FailedJob, JobRef, QueueMode, QueueSnapshot, WorkerInfo, FAILED_JOBS_SHOWN};

pub struct RedisQueue {
    conn: ConnectionManager,
    config: Config,
}

impl RedisQueue {
    pub fn new(conn: ConnectionManager) -> Self {
        Self { conn, config: queue_config() }
    }

    fn meta_key(&self, id: &str) -> String {
        format!("{}:{id}", self.config.job_meta_hash())
    }
}

/// Puts a dead job back on the active list with its attempts reset, atomically.
const RETRY_DEAD: &str = r#"
-- KEYS[1] dead set, KEYS[2] active list, KEYS[3] signal list, KEYS[4] the job's meta hash,
-- KEYS[5] the payload hash
if redis.call('sismember', KEYS[1], ARGV[1]) == 0 then return 0 end
-- Without its payload and meta a worker could not even decode it: not retryable.
if redis.call('hexists', KEYS[5], ARGV[1]) == 0 or redis.call('exists', KEYS[4]) == 0 then return 0 end
redis.call('srem', KEYS[1], ARGV[1])
redis.call('hset', KEYS[4], 'status', 'Pending', 'attempts', 0)
redis.call('rpush', KEYS[2], ARGV[1])
redis.call('del', KEYS[3])
redis.call('lpush', KEYS[3], 1)
return 1
"#;

/// Jobs waiting (active list, scheduled set: new ones and retries) and held by live workers,
/// in one round trip.
const IN_FLIGHT: &str = r#"
-- KEYS[1] active list, KEYS[2] scheduled set, KEYS[3] workers set; ARGV[1] prefix of the
-- workers' inflight sets
local n = redis.call('llen', KEYS[1]) + redis.call('zcard', KEYS[2])
for _, worker in ipairs(redis.call('zrange', KEYS[3], 0, -1)) do
    n = n + redis.call('scard', ARGV[1] .. ':' .. worker)
end
return n
"#;

#[async_trait]
impl JobQueue for RedisQueue {
    fn mode(&self) -> QueueMode {
        QueueMode::Redis
    }

    async fn push(&self, jobs: &[ThumbnailJob]) -> Result<usize, QueueError> {
        if jobs.is_empty() {
            return Ok(0);
        }
        let mut tasks: Vec<RedisTask> = Vec::with_capacity(jobs.len());
        for job in jobs {
            let payload = serde_json::to_vec(job).map_err(|e| QueueError::Corrupt(e.to_string()))?;
            tasks.push(TaskBuilder::new(payload).task_id(TaskId::from_string(job.id.to_string())).build());
        }
        let mut conn = self.conn.clone();
        // The push script stores a task only if its id is new (HSETNX), so re-delivery is a no-op.
        let (enqueued, scheduled) = apalis_redis::queries::push_tasks(&mut conn, &self.config, &tasks)
            .await
            .map_err(|e| QueueError::Unavailable(e.to_string()))?;
        Ok((enqueued + scheduled) as usize)
    }

    async fn in_flight(&self) -> Result<u64, QueueError> {
        let c = &self.config;
        let mut conn = self.conn.clone();
        let count: u64 = redis::Script::new(IN_FLIGHT)
            .key(c.active_jobs_list())
            .key(c.scheduled_jobs_set())
            .key(c.workers_set())
            .arg(c.inflight_jobs_set())
            .invoke_async(&mut conn)
            .await?;
        Ok(count)
    }

    async fn snapshot(&self) -> Result<QueueSnapshot, QueueError> {
        let mut conn = self.conn.clone();
        let c = &self.config;
        let (active, scheduled, done, failed, vacuumed, workers): (
            u64,
            u64,
            u64,
            u64,
            Option<u64>,
            Vec<(String, f64)>,
        ) = redis::pipe()
            .llen(c.active_jobs_list())
            .zcard(c.scheduled_jobs_set())
            .scard(c.done_jobs_set())
            .scard(c.dead_jobs_set())
            .get(vacuumed_key())
            .zrange_withscores(c.workers_set(), 0, -1)
            .query_async(&mut conn)
            .await?;

        let mut pipe = redis::pipe();
        for (name, _) in &workers {
            pipe.smembers(format!("{}:{name}", c.inflight_jobs_set()));
        }
        let inflight: Vec<Vec<String>> =
            if workers.is_empty() { Vec::new() } else { pipe.query_async(&mut conn).await? };

        let (_, dead_ids): (u64, Vec<String>) = redis::cmd("SSCAN")
            .arg(c.dead_jobs_set())
            .arg(0)
            .arg("COUNT")
            .arg(FAILED_JOBS_SHOWN)
            .query_async(&mut conn)
            .await?;
        let dead_ids: Vec<String> = dead_ids.into_iter().take(FAILED_JOBS_SHOWN).collect();

        // One round trip for the payloads of every job mentioned (to name their images).
        let mut mentioned: Vec<String> = inflight.iter().flatten().cloned().collect();
        mentioned.extend(dead_ids.iter().cloned());
        let payloads: HashMap<String, ThumbnailJob> = if mentioned.is_empty() {
            HashMap::new()
        } else {
            let raw: Vec<Option<Vec<u8>>> =
                redis::cmd("HMGET").arg(c.job_data_hash()).arg(&mentioned).query_async(&mut conn).await?;
            mentioned
                .iter()
                .zip(raw)
                .filter_map(|(id, bytes)| Some((id.clone(), serde_json::from_slice(&bytes?).ok()?)))
                .collect()
        };

        let mut pipe = redis::pipe();
        for id in &dead_ids {
            pipe.hgetall(self.meta_key(id));
        }
        let metas: Vec<HashMap<String, String>> =
            if dead_ids.is_empty() { Vec::new() } else { pipe.query_async(&mut conn).await? };

        let running: u64 = inflight.iter().map(|jobs| jobs.len() as u64).sum();
        let mut problems = super::store_check::worker_problems(&self.conn).await?;
        let mut workers: Vec<WorkerInfo> = workers
            .into_iter()
            .zip(inflight)
            .map(|((name, seen), jobs)| WorkerInfo {
                problem: problems.remove(&name).map(|p| p.problem),
                name,
                last_heartbeat: timestamp(seen as i64).unwrap_or_else(Utc::now),
                jobs: jobs
                    .into_iter()
                    .filter_map(|id| {
                        let image = payloads.get(&id).map(|job| job.image_id);
                        Some(JobRef { job: JobId::parse(&id)?, image })
                    })
                    .collect(),
            })
            .collect();
        // Workers that take no jobs are not in apalis' list: they are shown from their reports.
        workers.extend(problems.into_iter().map(|(name, p)| WorkerInfo {
            name,
            last_heartbeat: p.at,
            jobs: Vec::new(),
            problem: Some(p.problem),
        }));
        workers.sort_by(|a, b| a.name.cmp(&b.name));
        let mut failed_jobs: Vec<FailedJob> = dead_ids
            .iter()
            .zip(metas)
            .filter_map(|(id, meta)| {
                let payload = payloads.get(id);
                Some(FailedJob {
                    job: JobId::parse(id)?,
                    image: payload.map(|job| job.image_id),
                    heights: payload.map(|job| job.heights.clone()).unwrap_or_default(),
                    reason: meta.get("result").map(|r| failure_reason(r)).unwrap_or_default(),
                    attempts: meta.get("attempts").and_then(|a| a.parse().ok()).unwrap_or(0),
                    failed_at: meta.get("done_at").and_then(|t| t.parse().ok()).and_then(timestamp),
                })
            })
            .collect();
        failed_jobs.sort_by_key(|f| f.job);
        Ok(QueueSnapshot {
            mode: QueueMode::Redis,
            pending: active + scheduled,
            running,
            done: done + vacuumed.unwrap_or(0),
            failed,
            workers,
            failed_jobs,
        })
    }

    async fn retry_failed(&self, job: JobId) -> Result<bool, QueueError> {
        let mut conn = self.conn.clone();
        let id = job.to_string();
        let c = &self.config;
        let moved: u32 = redis::Script::new(RETRY_DEAD)
            .key(c.dead_jobs_set())
            .key(c.active_jobs_list())
            .key(c.signal_list())
            .key(self.meta_key(&id))
            .key(c.job_data_hash())
            .arg(&id)
            .invoke_async(&mut conn)
            .await?;
        Ok(moved == 1)
    }

    async fn ping(&self) -> Result<(), QueueError> {
        let mut conn = self.conn.clone();
        let _: String = redis::cmd("PING").query_async(&mut conn).await?;
        Ok(())
    }

    async fn vacuum(&self, unfinished: &BTreeSet<JobId>) -> Result<u64, QueueError> {
        self.vacuum_done(|id| unfinished.contains(id)).await
    }
}

/// Counts finished jobs whose bookkeeping was removed from Redis (see [`RedisQueue::vacuum_done`]).
fn vacuumed_key() -> String {
    format!("{QUEUE}:done_vacuumed")
}

fn timestamp(secs: i64) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp(secs, 0)
}

/// apalis stores a task's result as JSON (`{"Err": "..."}` for a failure); show the message.
fn failure_reason(stored: &str) -> String {
    match serde_json::from_str::<serde_json::Value>(stored) {
        Ok(serde_json::Value::Object(map)) => match map.get("Err") {
            Some(serde_json::Value::String(message)) => message.clone(),
            Some(other) => other.to_string(),
            None => stored.to_owned(),
        },
        Ok(serde_json::Value::String(message)) => message,
        _ => stored.to_owned(),
    }
}

impl RedisQueue {
    /// Removes the records of finished and failed jobs the server no longer needs (`keep`
    /// says which it still needs), counting the finished ones so `done` stays exact. Without it
    /// the done set and the payloads of every job ever run would grow without bound.
    pub async fn vacuum_done(&self, keep: impl Fn(&JobId) -> bool) -> Result<u64, QueueError> {
        let mut removed = 0;
        let c = &self.config;
        for (set, counted) in [(c.done_jobs_set(), true), (c.dead_jobs_set(), false)] {
            let mut conn = self.conn.clone();
            let mut cursor: u64 = 0;
            loop {
                let (next, ids): (u64, Vec<String>) =
                    redis::cmd("SSCAN").arg(&set).arg(cursor).arg("COUNT").arg(1000).query_async(&mut conn).await?;
                let gone: Vec<String> =
                    ids.into_iter().filter(|id| JobId::parse(id).is_some_and(|j| !keep(&j))).collect();
                if !gone.is_empty() {
                    let mut pipe = redis::pipe();
                    pipe.atomic();
                    for id in &gone {
                        pipe.srem(&set, id).ignore();
                        pipe.hdel(c.job_data_hash(), id).ignore();
                        pipe.del(self.meta_key(id)).ignore();
                    }
                    if counted {
                        pipe.incr(vacuumed_key(), gone.len() as u64).ignore();
                    }
                    let () = pipe.query_async(&mut conn).await?;
                    removed += gone.len() as u64;
                }
                if next == 0 {
                    break;
                }
                cursor = next;
            }
        }
        Ok(removed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failure_reasons_are_read_from_apalis_results() {
        assert_eq!(
            failure_reason(r#"{"Err":"AbortError: blob store: disk full"}"#),
            "AbortError: blob store: disk full"
        );
        assert_eq!(failure_reason(r#""plain""#), "plain");
        assert_eq!(failure_reason("not json"), "not json");
    }
}
