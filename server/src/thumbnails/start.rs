//! Starting the thumbnail machinery in the mode the configuration asks for: the one place
//! that chooses between the Redis queue (jobs for `imageapi-worker` processes, their results
//! read back from Redis) and the embedded queue (the same render pool in this process, or none
//! with `IMAGEAPI_WORKERS=0`), then starts the dispatcher, vacuum and reconciler.

use std::sync::Arc;

use imageapi_queue::embedded::EmbeddedWorker;
use imageapi_queue::redis::results::ResultsReader;
use imageapi_shared::store::{BlobStore, StoreMarker};
use imageapi_worker::{JobContext, ThumbnailPool, WorkerMetrics};
use tokio_util::sync::CancellationToken;

use super::{spawn_redis_tasks, DirectSink, Thumbnails};
use crate::config::Config;
use crate::metrics::ServerMetrics;
use crate::repo::SharedRepo;

/// Unfinished jobs in the Redis queue at once when `IMAGEAPI_QUEUE_WINDOW` is unset: enough to
/// keep a few workers busy between two results, few enough that a newcomer's job waits for
/// little (see `super::lanes`).
const REDIS_QUEUE_WINDOW: usize = 8;

/// The thumbnail machinery, running.
pub struct Running {
    pub thumbnails: Arc<Thumbnails>,
    /// The embedded queue's runners (embedded mode with render threads): awaited at shutdown.
    pub worker: Option<tokio::task::JoinHandle<()>>,
    /// With no render threads the embedded queue must still accept jobs; kept alive here.
    pub idle_queue: Option<EmbeddedWorker>,
}

pub async fn start(
    config: &Config,
    repo: &SharedRepo,
    store: &Arc<dyn BlobStore>,
    marker: &StoreMarker,
    metrics: &ServerMetrics,
    shutdown: &CancellationToken,
) -> anyhow::Result<Running> {
    let mut worker = None;
    let mut idle_queue = None;
    let threads = config.worker_threads();
    let thumbnails = match &config.redis_url {
        Some(url) => {
            let conn = imageapi_queue::redis::connect(url)?;
            let queue = Arc::new(imageapi_queue::redis::producer::RedisQueue::new(conn.clone()));
            let window = config.queue_window.unwrap_or(REDIS_QUEUE_WINDOW);
            let thumbnails = Arc::new(Thumbnails::new(repo.clone(), store.clone(), queue, metrics.clone(), window));
            // Its own connection: a blocking read would hold up every other command on a
            // shared (multiplexed) one.
            let reader = ResultsReader::new(imageapi_queue::redis::connect(url)?, config.node_name());
            spawn_redis_tasks(thumbnails.clone(), reader);
            actix_web::rt::spawn(imageapi_queue::redis::store_check::keep_publishing(
                conn.clone(),
                marker.clone(),
                shutdown.clone(),
            ));
            tracing::info!("thumbnail jobs go to Redis for imageapi-worker processes");
            thumbnails
        }
        None => {
            let (queue, embedded) = imageapi_queue::embedded::queue();
            // As many as the runners: a job enters the queue when a runner is free for it.
            let runners = threads * 2;
            let window = config.queue_window.unwrap_or(runners);
            let thumbnails =
                Arc::new(Thumbnails::new(repo.clone(), store.clone(), Arc::new(queue), metrics.clone(), window));
            if threads > 0 {
                let ctx = Arc::new(JobContext {
                    pool: ThumbnailPool::start(threads, &config.render_settings),
                    store: store.clone(),
                    sink: Arc::new(DirectSink(thumbnails.clone())),
                    limits: config.limits(),
                    worker_name: "embedded".into(),
                    metrics: WorkerMetrics::register(&metrics.registry)?,
                    shutdown: shutdown.clone(),
                });
                // Twice the threads in flight keeps the pool busy while jobs do I/O.
                worker = Some(actix_web::rt::spawn(embedded.run(ctx, runners, shutdown.clone())));
            } else {
                tracing::warn!("IMAGEAPI_WORKERS=0: this server makes no thumbnails; they stay pending");
                idle_queue = Some(embedded);
            }
            thumbnails
        }
    };
    let adopted = thumbnails.adopt_uncovered_pending().await?;
    if adopted > 0 {
        tracing::info!(jobs = adopted, "recorded jobs for pending thumbnails that had none");
    }
    actix_web::rt::spawn(thumbnails.clone().run_dispatcher());
    actix_web::rt::spawn(thumbnails.clone().run_vacuum());
    actix_web::rt::spawn(thumbnails.clone().run_reconciler());
    thumbnails.wake_reconciler();
    Ok(Running { thumbnails, worker, idle_queue })
}
