//! The scaled-out mode's moving parts for tests: a private `redis-server` on a free port (never
//! the machine's shared one) and `imageapi-worker` processes sharing a [`TestApp`]'s blobs.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use super::*;

/// A `redis-server` of this test alone, without persistence (a restart forgets everything,
/// the hardest case for "nothing acknowledged is lost").
pub struct RedisServer {
    pub port: u16,
    child: Option<Child>,
    dir: tempfile::TempDir,
}

pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    listener.local_addr().expect("local addr").port()
}

/// Whether `program` is on PATH.
pub fn installed(program: &str) -> bool {
    std::env::var_os("PATH").is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(program).is_file()))
}

impl RedisServer {
    /// A fresh server, or `None` (said on stderr; a failure with `IMAGEAPI_REQUIRE_REDIS`)
    /// where `redis-server` is not installed.
    pub fn start() -> Option<Self> {
        if !installed("redis-server") {
            imageapi_shared::testing::unavailable(
                "IMAGEAPI_REQUIRE_REDIS",
                "this test needs redis-server, which is not installed (Debian: redis-server)",
            );
            return None;
        }
        let dir = tempfile::Builder::new().prefix("imageapi-redis-").tempdir().expect("temp dir for redis");
        let mut redis = Self { port: free_port(), child: None, dir };
        redis.start_again();
        Some(redis)
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// Starts it again on the same port after [`Self::stop`] (empty: nothing was persisted).
    pub fn start_again(&mut self) {
        assert!(self.child.is_none(), "redis is already running");
        let log = std::fs::File::create(self.dir.path().join("redis.log")).expect("redis log");
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(self.dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::from(log.try_clone().expect("log handle")))
            .stderr(Stdio::from(log))
            .spawn()
            .expect("start redis-server (is it installed? the README says how)");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while !self.answers_ping() {
            assert!(Instant::now() < deadline, "redis-server did not answer PING on port {} within 10 s", self.port);
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn answers_ping(&self) -> bool {
        let Ok(mut stream) = TcpStream::connect(("127.0.0.1", self.port)) else { return false };
        let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
        if stream.write_all(b"PING\r\n").is_err() {
            return false;
        }
        let mut reply = [0u8; 7];
        stream.read_exact(&mut reply).is_ok() && &reply == b"+PONG\r\n"
    }

    /// Stops it at once (SIGKILL), losing everything in it.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Knobs for a worker process; `Default` suits tests (fast heartbeats, few attempts).
#[derive(Clone, Debug)]
pub struct WorkerOptions {
    pub threads: usize,
    pub heartbeat_secs: u64,
    pub max_attempts: usize,
    /// The worker's blob store settings; `None`: the app's blob directory. With `Some`, the
    /// worker also runs in a working directory of its own, sharing no folder with the server.
    pub store_env: Option<Vec<(&'static str, String)>>,
}

impl Default for WorkerOptions {
    fn default() -> Self {
        Self { threads: 1, heartbeat_secs: 1, max_attempts: 3, store_env: None }
    }
}

/// One running `imageapi-worker`.
pub struct WorkerProcess {
    pub name: String,
    child: Option<Child>,
    metrics_url: String,
    log: PathBuf,
}

const WORKER_READY_PREFIX: &str = "imageapi-worker ";

impl WorkerProcess {
    /// Starts a worker on `app`'s blob store and `redis`, and waits until it says it is ready.
    pub fn spawn(app: &TestApp, redis: &RedisServer, name: &str, options: WorkerOptions) -> Self {
        let log = app.root().join(format!("worker-{name}.log"));
        let mut command = Command::new(worker_binary());
        without_imageapi_env(&mut command);
        match &options.store_env {
            None => {
                command.env("IMAGEAPI_BLOB_DIR", app.blob_dir());
            }
            Some(env) => {
                let cwd = app.root().join(format!("worker-{name}-cwd"));
                std::fs::create_dir_all(&cwd).expect("the worker's own working directory");
                command.current_dir(cwd).envs(env.iter().map(|(k, v)| (k, v)));
            }
        }
        command
            .env("IMAGEAPI_REDIS_URL", redis.url())
            .env("IMAGEAPI_WORKER_NAME", name)
            .env("IMAGEAPI_WORKER_THREADS", options.threads.to_string())
            .env("IMAGEAPI_WORKER_HEARTBEAT_SECS", options.heartbeat_secs.to_string())
            .env("IMAGEAPI_JOB_MAX_ATTEMPTS", options.max_attempts.to_string())
            .env("IMAGEAPI_WORKER_METRICS_BIND", "127.0.0.1:0")
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(std::fs::File::create(&log).expect("worker log")));
        let mut child = command.spawn().expect("start imageapi-worker");
        let stdout = child.stdout.take().expect("piped stdout");
        let (sender, receiver) = mpsc::channel::<String>();
        std::thread::spawn(move || {
            let mut reader = BufReader::new(stdout);
            let mut line = String::new();
            while reader.read_line(&mut line).is_ok_and(|n| n > 0) {
                if line.starts_with(WORKER_READY_PREFIX) {
                    let _ = sender.send(line.clone());
                }
                line.clear();
            }
        });
        let line = receiver.recv_timeout(Duration::from_secs(30)).unwrap_or_else(|_| {
            let _ = child.kill();
            panic!("imageapi-worker did not say it was ready; its log:\n{}", read_log_tail(&log, false))
        });
        let metrics_url = line
            .split_whitespace()
            .find(|word| word.starts_with("http://"))
            .unwrap_or_else(|| panic!("no metrics URL in {line:?}"))
            .to_owned();
        Self { name: name.to_owned(), child: Some(child), metrics_url, log }
    }

    /// `http://…/metrics` of this worker (its `/healthz` is beside it).
    pub fn metrics_url(&self) -> &str {
        &self.metrics_url
    }

    /// The worker's Prometheus text.
    pub fn metrics(&self) -> String {
        install_tls_provider();
        reqwest::blocking::get(&self.metrics_url)
            .and_then(|r| r.text())
            .unwrap_or_else(|e| panic!("GET {}: {e}", self.metrics_url))
    }

    /// A counter or gauge from [`Self::metrics`], by its full name with labels.
    pub fn metric(&self, series: &str) -> f64 {
        metric_value(&self.metrics(), series)
    }

    /// Sends a signal by name (`STOP`, `CONT`, ...).
    pub fn signal(&self, name: &str) {
        let child = self.child.as_ref().expect("a running worker");
        let status =
            Command::new("kill").args([&format!("-{name}"), &child.id().to_string()]).status().expect("run kill");
        assert!(status.success(), "kill -{name} failed");
    }

    /// SIGKILL: the worker vanishes with whatever it holds.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM; waits for the exit and returns its status.
    pub fn terminate(&mut self) -> ExitStatus {
        self.signal("TERM");
        self.wait()
    }

    /// Waits (up to 60 s) for the worker to exit; returns its status.
    pub fn wait(&mut self) -> ExitStatus {
        let mut child = self.child.take().expect("a running worker");
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = child.try_wait().expect("wait for the worker") {
                return status;
            }
            assert!(Instant::now() < deadline, "the worker did not exit within 60 s");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn log_tail(&self) -> String {
        read_log_tail(&self.log, false)
    }
}

impl Drop for WorkerProcess {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            eprintln!("--- imageapi-worker {} log ---\n{}", self.name, self.log_tail());
        }
    }
}

/// The value of one series in Prometheus text (0 if absent, as Prometheus treats it).
pub fn metric_value(text: &str, series: &str) -> f64 {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .find_map(|line| {
            let (name, value) = line.rsplit_once(' ')?;
            (name == series).then(|| value.parse().ok()).flatten()
        })
        .unwrap_or(0.0)
}

/// Polls `check` until it returns `Some`, or fails with `what` after `timeout`.
pub fn eventually<T>(timeout: Duration, what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out after {timeout:?} waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}
