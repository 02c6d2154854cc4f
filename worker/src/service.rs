//! The `imageapi-worker` process: render pool, Redis consumer, results sink, and a small HTTP
//! endpoint for `/metrics` and `/healthz`. SIGTERM or SIGINT: stop taking jobs, finish the
//! running ones, exit 0.

use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use actix_web::{web, App, HttpResponse, HttpServer};
use anyhow::Context;
use imageapi_shared::store::BlobStore;
use prometheus::Registry;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::config::WorkerConfig;
use crate::job::JobContext;
use crate::metrics::{self, WorkerMetrics};
use crate::pool::ThumbnailPool;
use imageapi_queue::redis::consumer::{self, ConsumerConfig};
use imageapi_queue::redis::results::RedisSink;
use imageapi_queue::redis::store_check::{self, StoreStatus};
use imageapi_queue::retry::RetryPolicy;

pub fn run(config: WorkerConfig) -> anyhow::Result<()> {
    let Some(redis_url) = config.redis_url.clone() else {
        anyhow::bail!("IMAGEAPI_REDIS_URL is not set: a worker process consumes jobs from Redis (the embedded mode makes thumbnails inside imageapi-server)");
    };
    // The render pool is a SyncArbiter: it needs an actix System.
    actix_rt::System::new().block_on(async move {
        let registry = Registry::new();
        let metrics = WorkerMetrics::register(&registry)?;
        let conn = imageapi_queue::redis::connect(&redis_url)?;
        let store: Arc<dyn BlobStore> = config.store.open()?;
        let name = config.name();
        let heartbeat = Duration::from_secs(config.heartbeat_secs.max(1));
        let shutdown = CancellationToken::new();
        let (store_status, store_seen) = watch::channel(StoreStatus::Unchecked);
        actix_rt::spawn(store_check::watch_store(
            store.clone(),
            conn.clone(),
            name.clone(),
            heartbeat,
            store_status,
            shutdown.clone(),
        ));
        let threads = config.threads();
        let ctx = Arc::new(JobContext {
            pool: ThumbnailPool::start(threads, &config.render_settings),
            store,
            sink: Arc::new(RedisSink::new(conn.clone())),
            limits: config.limits(),
            worker_name: name.clone(),
            metrics,
            shutdown: shutdown.clone(),
        });

        let listener = TcpListener::bind(&config.metrics_bind)
            .with_context(|| format!("binding the metrics endpoint {}", config.metrics_bind))?;
        let metrics_addr = listener.local_addr()?;
        let registry = web::Data::new(registry);
        let health = web::Data::new(store_seen.clone());
        let http = HttpServer::new(move || {
            App::new()
                .app_data(registry.clone())
                .app_data(health.clone())
                .route("/metrics", web::get().to(render_metrics))
                .route("/healthz", web::get().to(healthz))
        })
        .workers(1)
        // This process handles SIGTERM itself, to drain jobs before the endpoint goes away.
        .disable_signals()
        .listen(listener)?
        .run();
        let http_handle = http.handle();
        actix_rt::spawn(http);

        spawn_signal_listener(shutdown.clone());
        println!("imageapi-worker {name} ready ({threads} render threads); metrics on http://{metrics_addr}/metrics");
        use std::io::Write;
        let _ = std::io::stdout().flush();

        let consumer_config = ConsumerConfig {
            name,
            concurrency: config.concurrency(),
            poll_interval: config.poll_interval(),
            heartbeat,
            retry: RetryPolicy::new(u32::from(config.max_attempts)),
        };
        consumer::run(ctx, conn, consumer_config, store_seen, shutdown).await;
        tracing::info!("stopped taking jobs; running jobs finished; exiting");
        http_handle.stop(true).await;
        Ok(())
    })
}

/// 200 while the worker takes jobs; 503 with the reason while it does not (it does not see the
/// server's blob store, or has not checked yet).
async fn healthz(status: web::Data<watch::Receiver<StoreStatus>>) -> HttpResponse {
    let current = status.borrow().clone();
    match current {
        StoreStatus::Same => HttpResponse::Ok().json(serde_json::json!({"status": "ok"})),
        StoreStatus::Unchecked => HttpResponse::ServiceUnavailable()
            .json(serde_json::json!({"status": "starting", "problem": "the blob store has not been checked yet"})),
        StoreStatus::Problem(problem) => {
            HttpResponse::ServiceUnavailable().json(serde_json::json!({"status": "misconfigured", "problem": problem}))
        }
    }
}

async fn render_metrics(registry: web::Data<Registry>) -> HttpResponse {
    HttpResponse::Ok().content_type("text/plain; version=0.0.4").body(metrics::render(&registry))
}

fn spawn_signal_listener(shutdown: CancellationToken) {
    actix_rt::spawn(async move {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) else {
                tracing::error!("cannot listen for signals; stop this worker with SIGKILL");
                return;
            };
            tokio::select! {
                _ = term.recv() => tracing::info!("SIGTERM: finishing running jobs"),
                _ = int.recv() => tracing::info!("SIGINT: finishing running jobs"),
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
        }
        shutdown.cancel();
    });
}
