//! The worker's Prometheus metrics. In embedded mode they are registered in the server's
//! registry, so one `/metrics` shows both sides.

use prometheus::{Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, Opts, Registry};

/// Buckets for job durations: a small PNG takes milliseconds, a 100-megapixel JPEG seconds.
const DURATION_BUCKETS: &[f64] = &[0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];

#[derive(Clone)]
pub struct WorkerMetrics {
    /// Jobs finished, by result: `ready` (all thumbnails made) or `failed` (the image cannot
    /// be thumbnailed; reported as failed thumbnails).
    pub jobs: IntCounterVec,
    /// Attempts that ended in a transient error and will be retried.
    pub retries: IntCounter,
    /// Jobs given up after their last attempt (the dead set).
    pub dead: IntCounter,
    pub running: IntGauge,
    /// Jobs holding rendered thumbnails until the full blob store has room again.
    pub waiting_for_space: IntGauge,
    pub job_duration: Histogram,
}

impl WorkerMetrics {
    pub fn register(registry: &Registry) -> prometheus::Result<Self> {
        let metrics = Self {
            jobs: IntCounterVec::new(
                Opts::new("imageapi_worker_jobs_total", "Thumbnail jobs finished, by result"),
                &["result"],
            )?,
            retries: IntCounter::new(
                "imageapi_worker_job_retries_total",
                "Job attempts that failed and will be retried",
            )?,
            dead: IntCounter::new("imageapi_worker_jobs_dead_total", "Jobs given up after their last attempt")?,
            running: IntGauge::new("imageapi_worker_jobs_running", "Jobs being worked on now")?,
            waiting_for_space: IntGauge::new(
                "imageapi_worker_jobs_waiting_for_space",
                "Jobs whose thumbnails wait for room in the full blob store",
            )?,
            job_duration: Histogram::with_opts(
                HistogramOpts::new("imageapi_worker_job_duration_seconds", "Time to read, render and store one job")
                    .buckets(DURATION_BUCKETS.to_vec()),
            )?,
        };
        registry.register(Box::new(metrics.jobs.clone()))?;
        registry.register(Box::new(metrics.retries.clone()))?;
        registry.register(Box::new(metrics.dead.clone()))?;
        registry.register(Box::new(metrics.running.clone()))?;
        registry.register(Box::new(metrics.waiting_for_space.clone()))?;
        registry.register(Box::new(metrics.job_duration.clone()))?;
        Ok(metrics)
    }

    /// Metrics that go nowhere (tests and tools that do not export them).
    #[allow(clippy::expect_used, reason = "a fresh registry holds no names to clash with")]
    pub fn unregistered() -> Self {
        Self::register(&Registry::new()).expect("a fresh registry has no name clashes")
    }
}

/// The text exposition of a registry.
pub fn render(registry: &Registry) -> String {
    use prometheus::Encoder;
    let mut out = Vec::new();
    // Encoding into a Vec only fails on a metric with inconsistent labels, a programming error.
    if let Err(e) = prometheus::TextEncoder::new().encode(&registry.gather(), &mut out) {
        tracing::error!(error = %e, "encoding metrics failed");
    }
    String::from_utf8(out).unwrap_or_default()
}
