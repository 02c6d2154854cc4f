//! Building and running the application: open storage, seed tiers, ensure the bootstrap admin,
//! start the job queue (embedded: in-process queue and render pool; Redis: dispatcher and
//! results reader for worker processes), and serve HTTP.

use std::net::TcpListener;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_web::dev::{Server, Service};
use actix_web::http::StatusCode;
use actix_web::middleware::ErrorHandlers;
use actix_web::{web, App, HttpServer};
use anyhow::Context;
use tokio_util::sync::CancellationToken;
use utoipa_swagger_ui::SwaggerUi;

use crate::auth::Authenticator;
use crate::clock::Clock;
use crate::config::Config;
use crate::disk_space::{DiskSpace, SpaceGauges};
use crate::error;
use crate::metrics::ServerMetrics;
use crate::passwords::PasswordPool;
use crate::repo::SharedRepo;
use crate::state::AppState;
use crate::thumbnails;
use crate::{openapi, routes, shutdown, superuser};

/// Largest JSON request body (every JSON body of this API is tiny).
const JSON_LIMIT: usize = 64 * 1024;
/// Password checks allowed to wait per password thread (each takes ~20 ms); beyond that,
/// logins answer 503 at once instead of queueing for seconds.
const PASSWORD_QUEUE_PER_THREAD: usize = 32;
/// Requests slower than this are logged at `info` (others at `debug`).
const SLOW_REQUEST: Duration = Duration::from_secs(1);
/// At shutdown, the final flush gets at least this long, however much of the grace is left.
const FINAL_FLUSH_MIN: Duration = Duration::from_secs(10);

/// Runs the server until SIGINT/SIGTERM.
pub fn serve(config: Config) -> anyhow::Result<()> {
    actix_web::rt::System::new().block_on(async move {
        let app = Application::build(config).await?;
        println!("imageapi-server listening on {}", app.local_url());
        use std::io::Write;
        let _ = std::io::stdout().flush();
        app.run_until_stopped().await
    })
}

pub struct Application {
    server: Server,
    /// `/metrics` on its own listener (`IMAGEAPI_METRICS_BIND`).
    metrics_server: Option<Server>,
    local_url: String,
    repo: SharedRepo,
    shutdown: CancellationToken,
    grace: Duration,
    worker: Option<tokio::task::JoinHandle<()>>,
    /// With no worker threads configured the queue must still accept jobs; it is kept here.
    _idle_queue: Option<imageapi_queue::embedded::EmbeddedWorker>,
    pub state: web::Data<AppState>,
}

impl Application {
    /// Opens everything and binds the listener; serving starts with [`Self::run_until_stopped`].
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        std::fs::create_dir_all(config.data_dir())
            .with_context(|| format!("creating the data dir {}", config.data_dir().display()))?;
        let repo = crate::repo::open(&config.repo_settings()).await?;
        let passwords = Arc::new(
            PasswordPool::start(config.password_threads(), PASSWORD_QUEUE_PER_THREAD * config.password_threads())
                .context("starting the password threads")?,
        );
        superuser::ensure_bootstrap_admin(repo.as_ref(), &passwords, &config).await?;
        let (store, marker) = crate::blobs::open_checked(&config.store, repo.as_ref()).await?;

        let metrics = ServerMetrics::new()?;
        let shutdown = CancellationToken::new();
        let limits = config.limits();
        let threads = config.worker_threads();
        let running = thumbnails::start(&config, &repo, &store, &marker, &metrics, &shutdown).await?;
        let (thumbnails, worker, idle_queue) = (running.thumbnails, running.worker, running.idle_queue);
        spawn_link_purger(repo.clone(), Duration::from_secs(config.expired_link_retention_hours * 3600));

        let listener = TcpListener::bind(&config.bind).with_context(|| format!("binding {}", config.bind))?;
        let local = listener.local_addr()?;
        let local_url = format!("http://{local}");
        let public_url =
            config.public_url.clone().unwrap_or_else(|| local_url.clone()).trim_end_matches('/').to_owned();

        let disk = DiskSpace::new(
            config.watched_disks(),
            config.min_free_bytes,
            limits.max_bytes,
            Some(SpaceGauges { free: metrics.disk_free.clone(), floor: metrics.disk_floor.clone() }),
        );
        disk.spawn_sampler(shutdown.clone());
        let state = web::Data::new(AppState {
            public_url,
            limits,
            thumbnail_wait: Duration::from_secs(config.thumbnail_wait_secs),
            upload_timeout: Duration::from_secs(config.upload_timeout_secs),
            repo: repo.clone(),
            store,
            auth: Arc::new(Authenticator::new(repo.clone(), passwords.clone(), config.login_limits()).await?),
            trusted_proxies: config.trusted_proxies.clone(),
            passwords,
            thumbnails,
            clock: Clock::default(),
            metrics,
            metrics_elsewhere: config.metrics_bind.is_some(),
            uploads: crate::upload_gate::UploadGate::new(crate::state::UPLOAD_SLOTS, config.uploads_per_user),
            disk,
            max_links_per_user: config.max_links_per_user as usize,
        });
        let grace = Duration::from_secs(config.shutdown_grace_secs);
        let server = http_server(state.clone(), listener, grace)?;
        let metrics_server = match &config.metrics_bind {
            Some(bind) => {
                let listener =
                    TcpListener::bind(bind).with_context(|| format!("binding the metrics address {bind}"))?;
                tracing::info!(address = %listener.local_addr()?, "metrics served without authentication");
                Some(metrics_server(state.clone(), listener)?)
            }
            None => None,
        };
        tracing::info!(%local, workers = threads, data_dir = %config.data_dir().display(), store = %marker.location, "imageapi-server started");
        Ok(Self { server, metrics_server, local_url, repo, shutdown, grace, worker, _idle_queue: idle_queue, state })
    }

    pub fn local_url(&self) -> &str {
        &self.local_url
    }

    /// Serves until SIGINT/SIGTERM; then stops accepting, lets in-flight requests and running
    /// thumbnail jobs finish within the grace period, and flushes metadata. Whatever still hangs
    /// after the grace period and the final flush ends the process with a non-zero exit code
    /// (see [`crate::shutdown`]).
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        let handle = self.server.handle();
        let mut server = actix_web::rt::spawn(self.server);
        let metrics = self.metrics_server.map(|m| (m.handle(), actix_web::rt::spawn(m)));
        tokio::select! {
            served = &mut server => {
                // The server ended by itself (it only does on an error).
                served??;
                return Ok(());
            }
            () = shutdown::signal() => {}
        }
        let deadline = tokio::time::Instant::now() + self.grace;
        let watchdog = shutdown::Watchdog::exit_on_hang(self.grace + FINAL_FLUSH_MIN * 2);
        watchdog.stage("finishing in-flight requests and running thumbnail jobs");
        // New jobs stop at once; uploads still in flight leave theirs in the outbox for the
        // next start.
        self.shutdown.cancel();
        let jobs = async {
            match self.worker {
                Some(worker) => tokio::time::timeout_at(deadline, worker).await.is_ok(),
                None => true,
            }
        };
        let metrics_stopped = async {
            if let Some((handle, server)) = metrics {
                handle.stop(false).await;
                let _ = server.await;
            }
        };
        let (_, jobs_finished, _, ()) = tokio::join!(handle.stop(true), jobs, &mut server, metrics_stopped);
        if !jobs_finished {
            tracing::warn!("thumbnail jobs still running at the deadline; they will be redone at the next start");
        }
        watchdog.stage("flushing the database");
        let left = deadline.saturating_duration_since(tokio::time::Instant::now()).max(FINAL_FLUSH_MIN);
        let repo = self.repo.clone();
        // A plain thread: the runtime's blocking pool would keep the process alive if it hung.
        let (tx, rx) = tokio::sync::oneshot::channel();
        std::thread::Builder::new()
            .name("final-flush".into())
            .spawn(move || {
                let _ = tx.send(repo.close(left));
            })
            .context("starting the final flush")?;
        match rx.await {
            Ok(true) => {
                tracing::info!("shut down cleanly");
                Ok(())
            }
            _ => anyhow::bail!("the final database flush did not finish within {} s", left.as_secs()),
        }
    }
}

/// The API's listener. Built like actix-web's `HttpServer` builds one (the same timeouts and
/// graceful shutdown), plus one thing `HttpServer` cannot do: answer `Expect: 100-continue`
/// with 413 for an upload whose `Content-Length` is over the limit, so that the client never
/// sends a body that would only be read to be thrown away.
fn http_server(state: web::Data<AppState>, listener: TcpListener, grace: Duration) -> anyhow::Result<Server> {
    use actix_http::{HttpMessage, HttpService, Request};
    use actix_service::{fn_service, map_config, IntoServiceFactory, ServiceFactoryExt};
    use actix_web::dev::AppConfig;
    use actix_web::ResponseError;

    let upload_limit = state.limits.max_bytes;
    let mut doc = openapi::document();
    openapi::state_upload_limit(&mut doc, upload_limit);
    let known_paths = web::Data::new(openapi::KnownPaths::new(&doc));
    let addr = listener.local_addr()?;
    let builder = actix_server::Server::build();
    let shutdown_signal = builder.graceful_shutdown_signal();
    let server = builder
        // Signals are ours (see `run_until_stopped`): one deadline covers requests, jobs and flush.
        .disable_signals()
        .shutdown_timeout(grace.as_secs())
        .listen(format!("imageapi-{addr}"), listener, move || {
            let shutdown = shutdown_signal.clone();
            let app = api_app(state.clone(), known_paths.clone(), doc.clone())
                .into_factory()
                .map_err(|err: actix_web::Error| err.error_response());
            HttpService::build()
                .graceful_shutdown_signal(move || {
                    let shutdown = shutdown.clone();
                    async move { shutdown.notified().await }
                })
                // actix-web's defaults.
                .client_request_timeout(Duration::from_secs(5))
                .client_disconnect_timeout(Duration::from_secs(1))
                .h1_allow_half_closed(true)
                .local_addr(addr)
                .expect(fn_service(move |req: Request| async move {
                    match routes::images::refused_before_body(req.method(), req.path(), req.headers(), upload_limit) {
                        Some(refusal) => Err(actix_http::Response::from(refusal.error_response())),
                        None => Ok(req),
                    }
                }))
                // (AppConfig's constructor is private to actix-web; this is the one its test
                // server and `HttpServer` use.)
                .finish(map_config(app, move |_| AppConfig::__priv_test_new(false, addr.to_string(), addr)))
                .tcp()
        })?
        .run();
    Ok(server)
}

/// The API: routes, docs page, metrics and security headers.
fn api_app(
    state: web::Data<AppState>,
    known_paths: web::Data<openapi::KnownPaths>,
    doc: utoipa::openapi::OpenApi,
) -> App<
    impl actix_service::ServiceFactory<
        actix_web::dev::ServiceRequest,
        Config = (),
        Response = actix_web::dev::ServiceResponse<impl actix_web::body::MessageBody>,
        Error = actix_web::Error,
        InitError = (),
    >,
> {
    {
        let metrics = state.metrics.clone();
        App::new()
            .app_data(state.clone())
            .app_data(known_paths.clone())
            .app_data(web::JsonConfig::default().limit(JSON_LIMIT).error_handler(error::json_error))
            .app_data(web::QueryConfig::default().error_handler(error::query_error))
            .app_data(web::PathConfig::default().error_handler(error::path_error))
            .wrap(ErrorHandlers::new().handler(StatusCode::NOT_FOUND, error::problem_for_bare_not_found))
            .wrap_fn(move |req, srv| {
                let started = Instant::now();
                let method = req.method().clone();
                let call = srv.call(req);
                let metrics = metrics.clone();
                async move {
                    let mut res = call.await?;
                    secure_headers(&mut res);
                    // The route pattern, not the path: paths carry ids and link tokens, and
                    // one label value per path would grow the metrics without bound.
                    let route = res.request().match_pattern().unwrap_or_else(|| "unmatched".to_owned());
                    let status = res.status().as_u16();
                    let elapsed = started.elapsed();
                    metrics
                        .http_requests
                        .with_label_values(&[method_label(&method), &route, &status.to_string()])
                        .inc();
                    metrics.http_duration.with_label_values(&[&route]).observe(elapsed.as_secs_f64());
                    // A line per request costs a synchronous write (a third of /healthz's
                    // throughput, measured): the metrics count every request, the log keeps
                    // the ones worth reading; RUST_LOG=imageapi_server=debug logs them all.
                    let ms = elapsed.as_millis() as u64;
                    // 507 (out of space) is logged once where it is detected.
                    if (status >= 500 && status != 507) || elapsed >= SLOW_REQUEST {
                        tracing::info!(%method, %route, status, ms, "request");
                    } else {
                        tracing::debug!(%method, %route, status, ms, "request");
                    }
                    Ok(res)
                }
            })
            .configure(routes::configure)
            .service(web::redirect("/api/docs", "/api/docs/"))
            .service(SwaggerUi::new("/api/docs/{_:.*}").url("/api/openapi.json", doc))
            .default_service(web::to(crate::openapi::not_routed))
    }
}

/// The method as a metrics label, from a closed set: HTTP allows any token as a method, and
/// one series per invented method would grow the metrics (and the memory) without bound.
fn method_label(method: &actix_web::http::Method) -> &'static str {
    use actix_web::http::Method;
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::OPTIONS => "OPTIONS",
        Method::TRACE => "TRACE",
        Method::CONNECT => "CONNECT",
        _ => "other",
    }
}

/// The docs page may load only its own files (and talk only to this API); API answers carry
/// private data, some of it secret (a new token, a link's URL), so no cache may keep them
/// unless a route says otherwise (media does).
const DOCS_CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
    img-src 'self' data:; font-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'none'; \
    frame-ancestors 'none'; form-action 'self'";

fn secure_headers<B>(res: &mut actix_web::dev::ServiceResponse<B>) {
    use actix_web::http::header::{HeaderValue, CACHE_CONTROL, CONTENT_SECURITY_POLICY};
    let path = res.request().path();
    let (docs, api) = (path.starts_with("/api/docs"), path.starts_with("/api/v1/"));
    let headers = res.headers_mut();
    if docs {
        headers.insert(CONTENT_SECURITY_POLICY, HeaderValue::from_static(DOCS_CSP));
    }
    if api && !headers.contains_key(CACHE_CONTROL) {
        headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
}

/// The separate metrics listener: `/metrics` only, no authentication.
fn metrics_server(state: web::Data<AppState>, listener: TcpListener) -> anyhow::Result<Server> {
    Ok(HttpServer::new(move || {
        App::new().app_data(state.clone()).route(
            "/metrics",
            web::get().to(|state: web::Data<AppState>| async move { routes::health::render_metrics(&state).await }),
        )
    })
    .workers(1)
    .disable_signals()
    .listen(listener)?
    .run())
}

/// Every minute, takes expired links out of lists and counts (their tokens answer 410 for
/// `retention`, then 404).
fn spawn_link_purger(repo: SharedRepo, retention: Duration) {
    actix_web::rt::spawn(async move {
        let mut every = tokio::time::interval(Duration::from_secs(60));
        let retention = chrono::Duration::from_std(retention).unwrap_or(chrono::Duration::days(7));
        loop {
            every.tick().await;
            let now = chrono::Utc::now();
            match repo.prune_expired_links(now, now - retention).await {
                Ok((pruned, forgotten)) if pruned + forgotten > 0 => {
                    tracing::debug!(pruned, forgotten, "pruned expired links")
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "pruning expired links failed"),
            }
        }
    });
}
