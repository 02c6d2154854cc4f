//! `imageapi-worker` settings: `IMAGEAPI_*` environment variables or the matching flags.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand};
use imageapi_core::image::Limits;
use imageapi_shared::settings::{LimitSettings, RenderSettings};
use imageapi_shared::store::StoreSettings;

#[derive(Debug, Parser)]
#[command(name = "imageapi-worker", version, about = "Makes thumbnails for imageapi-server from the Redis job queue")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub config: WorkerConfig,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Consume thumbnail jobs until SIGTERM/SIGINT (the default).
    Run,
    /// Run the production thumbnail pipeline once on one file: writes one file per height
    /// into DIR and prints their dimensions (for comparisons with other tools as processes).
    Thumbnail {
        /// A PNG or JPEG.
        input: PathBuf,
        /// A thumbnail height in pixels (repeat for several, made from one decode).
        #[arg(long = "height", required = true)]
        heights: Vec<u32>,
        /// Where the thumbnails go (NAME-HEIGHT.jpg / .png).
        #[arg(long)]
        out: PathBuf,
        /// Also print the time spent in the pipeline and the peak resident memory.
        #[arg(long)]
        stats: bool,
    },
    /// Benchmark the pipeline on every PNG/JPEG in DIR: each run is a whole `thumbnail`
    /// process; prints per image the median time and the peak memory.
    Bench {
        dir: PathBuf,
        #[arg(long = "height", default_values_t = [200, 400])]
        heights: Vec<u32>,
        /// Runs per image (the median is shown).
        #[arg(long, default_value_t = 5)]
        runs: usize,
    },
    /// Time the pipeline in this process, as a library would be timed: each file is read into
    /// memory once, made once untimed (written to --out if given), then RUNS times; prints
    /// "FILE<TAB>ms" per timed run. `--threads` is the render budget (1: one core, no
    /// decoding on idle cores). `scripts/bench-inprocess` runs it against libvips.
    Repeat {
        files: Vec<PathBuf>,
        #[arg(long = "height", default_values_t = [400, 200])]
        heights: Vec<u32>,
        #[arg(long, default_value_t = 3)]
        runs: usize,
        #[arg(long, default_value_t = 1)]
        threads: usize,
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

#[derive(Debug, Clone, clap::Args)]
pub struct WorkerConfig {
    /// The Redis the server enqueues to (required to consume jobs).
    #[arg(long, env = "IMAGEAPI_REDIS_URL", global = true)]
    pub redis_url: Option<String>,
    /// The blob store shared with the server (originals are read, thumbnails written): the
    /// same settings as the server's.
    #[command(flatten)]
    pub store: StoreSettings,
    /// Render threads (default: the number of cores).
    #[arg(long, env = "IMAGEAPI_WORKER_THREADS", global = true)]
    pub threads: Option<usize>,
    /// Jobs held at once (default: the render threads). Jobs held here wait for this worker.
    #[arg(long, env = "IMAGEAPI_WORKER_CONCURRENCY", global = true)]
    pub concurrency: Option<usize>,
    /// How often an idle worker asks Redis for jobs, in milliseconds (the pickup delay).
    #[arg(long, env = "IMAGEAPI_WORKER_POLL_MS", default_value_t = 25, global = true)]
    pub poll_ms: u64,
    /// Heartbeat period; a worker silent for three periods is dead and its jobs are re-queued.
    #[arg(long, env = "IMAGEAPI_WORKER_HEARTBEAT_SECS", default_value_t = 5, global = true)]
    pub heartbeat_secs: u64,
    /// Attempts of a failing job before it goes to the dead set (attempt n waits n seconds);
    /// 1..=25 (apalis-redis gives up after 25 whatever is set).
    #[arg(long, env = "IMAGEAPI_JOB_MAX_ATTEMPTS", default_value_t = imageapi_queue::retry::RetryPolicy::DEFAULT_ATTEMPTS as u16, global = true,
          value_parser = clap::value_parser!(u16).range(1..=25))]
    pub max_attempts: u16,
    /// Address of the /metrics and /healthz endpoint (port 0 picks a free port).
    #[arg(long, env = "IMAGEAPI_WORKER_METRICS_BIND", default_value = "127.0.0.1:0", global = true)]
    pub metrics_bind: String,
    /// Name in the queue's worker list (default: host-pid); must be unique among live workers.
    #[arg(long, env = "IMAGEAPI_WORKER_NAME", global = true)]
    pub name: Option<String>,
    #[command(flatten)]
    pub limit_settings: LimitSettings,
    #[command(flatten)]
    pub render_settings: RenderSettings,
}

impl WorkerConfig {
    pub fn threads(&self) -> usize {
        self.threads.unwrap_or_else(|| std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)).max(1)
    }

    pub fn concurrency(&self) -> usize {
        self.concurrency.unwrap_or_else(|| self.threads()).max(1)
    }

    pub fn poll_interval(&self) -> Duration {
        Duration::from_millis(self.poll_ms.max(1))
    }

    pub fn limits(&self) -> Limits {
        self.limit_settings.limits()
    }

    pub fn name(&self) -> String {
        self.name.clone().unwrap_or_else(|| imageapi_shared::settings::host_and_pid("worker"))
    }
}
