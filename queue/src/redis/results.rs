//! The results stream: workers append, the servers read through one consumer group (each
//! server a consumer of its own, so several share the stream) and acknowledge (then delete) an
//! entry only after it applied the report durably. Entries a server read but did not
//! acknowledge are read again at its next start; entries left by a server that is gone are
//! claimed by another after [`CLAIM_IDLE`] ([`ResultsReader::claim_abandoned`]).

use async_trait::async_trait;
use imageapi_core::jobs::JobReport;
use redis::aio::ConnectionManager;
use redis::streams::{StreamReadOptions, StreamReadReply};
use redis::AsyncCommands;

use crate::{OutcomeSink, QueueError};

pub const STREAM: &str = "imageapi:results";
const GROUP: &str = "imageapi-server";
const FIELD: &str = "report";
/// An entry read but unacknowledged this long belongs to a server that is gone (applying a
/// report takes milliseconds), so another server takes it over.
pub const CLAIM_IDLE: std::time::Duration = std::time::Duration::from_secs(30);
/// Consumers with nothing pending and idle this long (servers restarted under a new name) are
/// removed from the group.
const FORGET_CONSUMER_AFTER: std::time::Duration = std::time::Duration::from_secs(600);

/// The worker's sink: one stream entry per finished job.
pub struct RedisSink {
    conn: ConnectionManager,
}

impl RedisSink {
    pub fn new(conn: ConnectionManager) -> Self {
        Self { conn }
    }
}

#[async_trait]
impl OutcomeSink for RedisSink {
    async fn report(&self, report: JobReport) -> anyhow::Result<()> {
        let body = serde_json::to_string(&report)?;
        let mut conn = self.conn.clone();
        let _: String = conn.xadd(STREAM, "*", &[(FIELD, body)]).await?;
        Ok(())
    }
}

/// One entry read from the stream: its id (to acknowledge) and the report, or why it could
/// not be read (such an entry is acknowledged and logged, never retried forever).
pub struct Delivery {
    pub entry: String,
    pub report: Result<JobReport, String>,
}

/// The server's reader.
pub struct ResultsReader {
    conn: ConnectionManager,
    /// This server's name in the consumer group.
    consumer: String,
    /// Re-read what this consumer was given but did not acknowledge before going on.
    backlog_done: bool,
    /// The consumer group had vanished (Redis restarted empty) and was made again.
    group_recreated: bool,
}

impl ResultsReader {
    /// A reader for the server named `consumer` (unique among the servers sharing Redis).
    pub fn new(conn: ConnectionManager, consumer: String) -> Self {
        Self { conn, consumer, backlog_done: false, group_recreated: false }
    }

    /// Takes over entries other servers read but did not acknowledge for [`CLAIM_IDLE`] (they
    /// were killed, or lost Redis), and forgets idle consumers with nothing pending. The
    /// claimed entries are read next. Returns how many were claimed.
    pub async fn claim_abandoned(&mut self) -> Result<usize, QueueError> {
        let mut cursor = "0-0".to_owned();
        let mut claimed = 0;
        loop {
            let reply: redis::Value = redis::cmd("XAUTOCLAIM")
                .arg(STREAM)
                .arg(GROUP)
                .arg(&self.consumer)
                .arg(CLAIM_IDLE.as_millis() as u64)
                .arg(&cursor)
                .arg("COUNT")
                .arg(256)
                .arg("JUSTID")
                .query_async(&mut self.conn)
                .await?;
            let redis::Value::Array(parts) = reply else { break };
            let next = match parts.first() {
                Some(redis::Value::BulkString(b)) => String::from_utf8_lossy(b).into_owned(),
                Some(redis::Value::SimpleString(s)) => s.clone(),
                _ => break,
            };
            if let Some(redis::Value::Array(ids)) = parts.get(1) {
                claimed += ids.len();
            }
            if next == "0-0" {
                break;
            }
            cursor = next;
        }
        if claimed > 0 {
            self.backlog_done = false;
        }
        let consumers: redis::streams::StreamInfoConsumersReply = self.conn.xinfo_consumers(STREAM, GROUP).await?;
        for c in consumers.consumers {
            if c.name != self.consumer && c.pending == 0 && c.idle as u128 > FORGET_CONSUMER_AFTER.as_millis() {
                let _: redis::RedisResult<i64> = self.conn.xgroup_delconsumer(STREAM, GROUP, &c.name).await;
            }
        }
        Ok(claimed)
    }

    async fn ensure_group(&mut self) -> Result<(), QueueError> {
        // From the start of the stream: results written before the group existed count too.
        let created: redis::RedisResult<()> = self.conn.xgroup_create_mkstream(STREAM, GROUP, "0").await;
        match created {
            Ok(()) => Ok(()),
            Err(e) if e.code() == Some("BUSYGROUP") => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Waits up to `block_ms` for up to `count` entries.
    pub async fn read(&mut self, count: usize, block_ms: usize) -> Result<Vec<Delivery>, QueueError> {
        if !self.backlog_done {
            self.ensure_group().await?;
        }
        match self.read_once(count, block_ms).await {
            // Redis restarted and forgot the group (and the stream): make it again.
            Err(QueueError::Unavailable(e)) if e.contains("NOGROUP") => {
                self.group_recreated = true;
                self.ensure_group().await?;
                self.read_once(count, block_ms).await
            }
            other => other,
        }
    }

    async fn read_once(&mut self, count: usize, block_ms: usize) -> Result<Vec<Delivery>, QueueError> {
        let from = if self.backlog_done { ">" } else { "0" };
        let mut options = StreamReadOptions::default().group(GROUP, &self.consumer).count(count);
        if self.backlog_done {
            options = options.block(block_ms);
        }
        let reply: Option<StreamReadReply> = self.conn.xread_options(&[STREAM], &[from], &options).await?;
        let entries: Vec<Delivery> = reply
            .into_iter()
            .flat_map(|r| r.keys)
            .flat_map(|k| k.ids)
            .map(|entry| {
                let report = match entry.map.get(FIELD) {
                    Some(redis::Value::BulkString(bytes)) => {
                        serde_json::from_slice::<JobReport>(bytes).map_err(|e| format!("unreadable report: {e}"))
                    }
                    _ => Err("an entry without a report".to_owned()),
                };
                Delivery { entry: entry.id, report }
            })
            .collect();
        if !self.backlog_done && entries.is_empty() {
            self.backlog_done = true;
        }
        Ok(entries)
    }

    /// Whether the group had to be made again since the last call: Redis lost its data.
    pub fn take_group_recreated(&mut self) -> bool {
        std::mem::take(&mut self.group_recreated)
    }

    /// Reads the entries given to this consumer but not acknowledged again before new ones.
    pub fn reread_pending(&mut self) {
        self.backlog_done = false;
    }

    /// Acknowledges and deletes applied entries.
    pub async fn ack(&mut self, entries: &[String]) -> Result<(), QueueError> {
        if entries.is_empty() {
            return Ok(());
        }
        let () = redis::pipe()
            .atomic()
            .xack(STREAM, GROUP, entries)
            .ignore()
            .xdel(STREAM, entries)
            .ignore()
            .query_async(&mut self.conn)
            .await?;
        Ok(())
    }
}
