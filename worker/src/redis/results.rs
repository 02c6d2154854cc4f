//! The results stream: workers append, the server reads through a consumer group and
//! acknowledges (then deletes) an entry only after it applied the report durably. Entries the
//! server read but did not acknowledge (it crashed) are read again at its next start.

use async_trait::async_trait;
use imageapi_shared::jobs::JobReport;
use redis::aio::ConnectionManager;
use redis::streams::{StreamReadOptions, StreamReadReply};
use redis::AsyncCommands;

use crate::job::OutcomeSink;
use crate::queue::QueueError;

pub const STREAM: &str = "imageapi:results";
const GROUP: &str = "imageapi-server";
/// One server owns the metadata, so one consumer.
const CONSUMER: &str = "server";
const FIELD: &str = "report";

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
    /// Re-read what this consumer was given but did not acknowledge before going on.
    backlog_done: bool,
    /// The consumer group had vanished (Redis restarted empty) and was made again.
    group_recreated: bool,
}

impl ResultsReader {
    pub fn new(conn: ConnectionManager) -> Self {
        Self { conn, backlog_done: false, group_recreated: false }
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
        let mut options = StreamReadOptions::default().group(GROUP, CONSUMER).count(count);
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
