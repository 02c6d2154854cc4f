//! The Redis transport: jobs in an apalis-redis queue, results back on a Redis stream.
//!
//! - [`producer`]: [`producer::RedisQueue`], the server's side of the queue.
//! - [`consumer`]: the worker process's apalis consumer, feeding a [`crate::JobHandler`].
//! - [`results`]: the results stream. Workers append one `JobReport` per finished job; the
//!   servers read it through a consumer group and acknowledge an entry only after applying it
//!   durably, so a server that was down catches up on everything it missed.
//! - [`store_check`]: the blob store marker the server publishes and workers check.

pub mod consumer;
pub mod producer;
pub mod results;
pub mod store_check;

use std::time::Duration;

use apalis_redis::Config;
use redis::aio::ConnectionManager;

use crate::QueueError;

/// The Redis queue's name (apalis); every Redis key of the queue starts with it.
pub const QUEUE: &str = "imageapi:thumbnails";

/// A connection that is made on first use and remade after Redis comes back, failing fast
/// while Redis is away (so callers can report "degraded" instead of hanging).
pub fn connect(url: &str) -> Result<ConnectionManager, QueueError> {
    let client = redis::Client::open(url).map_err(|e| QueueError::Unavailable(format!("invalid Redis URL: {e}")))?;
    let config = redis::aio::ConnectionManagerConfig::new()
        .set_connection_timeout(Some(Duration::from_secs(2)))
        // Above the longest blocking read of the results stream.
        .set_response_timeout(Some(Duration::from_secs(10)))
        .set_number_of_retries(1)
        .set_max_delay(Duration::from_secs(1));
    Ok(ConnectionManager::new_lazy_with_config(client, config)?)
}

/// The apalis-redis configuration shared by the server and the workers.
pub fn queue_config() -> Config {
    Config::default().queue(QUEUE)
}
