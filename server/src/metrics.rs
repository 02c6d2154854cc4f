//! The server's Prometheus metrics (`GET /metrics`). In embedded mode the in-process worker's
//! metrics are registered in the same registry.

use prometheus::{
    Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
};

const LATENCY_BUCKETS: &[f64] = &[0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];
const READY_BUCKETS: &[f64] = &[0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0];

#[derive(Clone)]
pub struct ServerMetrics {
    pub registry: Registry,
    pub http_requests: IntCounterVec,
    pub http_duration: HistogramVec,
    /// Jobs handed to the queue for the first time by this process.
    pub jobs_enqueued: IntCounter,
    /// Job reports applied, by result (`ready`, `failed`).
    pub jobs_completed: IntCounterVec,
    /// From a job's creation (the upload) to its report being applied.
    pub job_latency: Histogram,
    pub queue_pending: IntGauge,
    pub queue_running: IntGauge,
    pub queue_failed: IntGauge,
    /// Jobs accepted and not yet finished (the sled outbox).
    pub outbox: IntGauge,
    /// Free bytes on the filesystem of the database (`metadata`) and of the blob directory
    /// (`blobs`); absent for what is not on a local disk.
    pub disk_free: IntGaugeVec,
    /// `IMAGEAPI_MIN_FREE_BYTES`: below it, uploads are refused.
    pub disk_floor: IntGauge,
}

impl ServerMetrics {
    /// The text exposition of every metric in the registry (the embedded worker's included),
    /// in the format the worker binary's own endpoint uses.
    pub fn render(&self) -> String {
        imageapi_worker::metrics::render(&self.registry)
    }

    pub fn new() -> prometheus::Result<Self> {
        let registry = Registry::new();
        let metrics = Self {
            http_requests: IntCounterVec::new(
                Opts::new("imageapi_http_requests_total", "HTTP requests, by method, route pattern and status"),
                &["method", "route", "status"],
            )?,
            http_duration: HistogramVec::new(
                HistogramOpts::new("imageapi_http_request_duration_seconds", "HTTP request latency, by route pattern")
                    .buckets(LATENCY_BUCKETS.to_vec()),
                &["route"],
            )?,
            jobs_enqueued: IntCounter::new("imageapi_jobs_enqueued_total", "Thumbnail jobs handed to the queue")?,
            jobs_completed: IntCounterVec::new(
                Opts::new("imageapi_jobs_completed_total", "Thumbnail job reports applied, by result"),
                &["result"],
            )?,
            job_latency: Histogram::with_opts(
                HistogramOpts::new("imageapi_job_latency_seconds", "From upload (job creation) to thumbnails recorded")
                    .buckets(READY_BUCKETS.to_vec()),
            )?,
            queue_pending: IntGauge::new("imageapi_queue_pending", "Jobs waiting in the queue")?,
            queue_running: IntGauge::new("imageapi_queue_running", "Jobs held by workers")?,
            queue_failed: IntGauge::new("imageapi_queue_failed", "Jobs given up, waiting for an admin's retry")?,
            outbox: IntGauge::new("imageapi_jobs_unfinished", "Jobs accepted and not yet finished (the outbox)")?,
            disk_free: IntGaugeVec::new(
                Opts::new("imageapi_disk_free_bytes", "Free bytes on the filesystem of the metadata or the blobs"),
                &["store"],
            )?,
            disk_floor: IntGauge::new(
                "imageapi_disk_min_free_bytes",
                "Free space below which uploads are refused (IMAGEAPI_MIN_FREE_BYTES)",
            )?,
            registry,
        };
        let r = &metrics.registry;
        r.register(Box::new(metrics.http_requests.clone()))?;
        r.register(Box::new(metrics.http_duration.clone()))?;
        r.register(Box::new(metrics.jobs_enqueued.clone()))?;
        r.register(Box::new(metrics.jobs_completed.clone()))?;
        r.register(Box::new(metrics.job_latency.clone()))?;
        r.register(Box::new(metrics.queue_pending.clone()))?;
        r.register(Box::new(metrics.queue_running.clone()))?;
        r.register(Box::new(metrics.queue_failed.clone()))?;
        r.register(Box::new(metrics.outbox.clone()))?;
        r.register(Box::new(metrics.disk_free.clone()))?;
        r.register(Box::new(metrics.disk_floor.clone()))?;
        Ok(metrics)
    }
}
