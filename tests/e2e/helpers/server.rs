//! Building the server binary once and running it for a test.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::AtomicUsize;
use std::sync::{mpsc, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use reqwest::blocking::Client;
use tempfile::TempDir;

use super::*;

/// How long a test waits for thumbnails to become ready before it fails.
pub const READY_DEADLINE: Duration = Duration::from_secs(30);
/// How long the server may take to print its "listening" line.
const STARTUP_DEADLINE: Duration = Duration::from_secs(60);
/// The one line the server prints on stdout once it accepts connections.
const LISTENING_PREFIX: &str = "imageapi-server listening on ";
/// The admin the harness asks the server to ensure at start.
pub const ADMIN_USERNAME: &str = "admin";

// ---------------------------------------------------------------------------------------------
// Building the server binary
// ---------------------------------------------------------------------------------------------

/// The worker binary, built with the server (same `cargo build`).
pub fn worker_binary() -> PathBuf {
    server_binary().with_file_name(format!("imageapi-worker{}", std::env::consts::EXE_SUFFIX))
}

/// The freshly built server binary; built once per test process.
pub fn server_binary() -> &'static Path {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY.get_or_init(build_server)
}

/// Runs `cargo build --workspace --bins --tests` for the profile the test binary was built
/// with — the same selection (and so the same feature unification) as
/// `cargo nextest run --workspace`, which makes it a no-op after that build instead of a
/// second compile of every dependency with other features — and
/// returns the path of the binary next to the test binary's `deps` directory.
fn build_server() -> PathBuf {
    let exe = std::env::current_exe().expect("the path of the running test binary");
    let deps_dir = exe.parent().expect("the test binary lives in a directory");
    assert_eq!(
        deps_dir.file_name().and_then(|name| name.to_str()),
        Some("deps"),
        "expected the test binary to live in a cargo `deps` directory, it is {}",
        exe.display()
    );
    let profile_dir = deps_dir.parent().expect("the `deps` directory has a parent (the profile directory)");
    let profile = profile_dir.file_name().and_then(|name| name.to_str()).unwrap_or("debug");
    let workspace_root =
        Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("the test crate lives inside the workspace");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());

    let mut command = Command::new(&cargo);
    command.current_dir(workspace_root).args(["build", "--workspace", "--bins", "--tests"]);
    match profile {
        "debug" => {}
        "release" => {
            command.arg("--release");
        }
        other => {
            command.args(["--profile", other]);
        }
    }
    let output = command.output().unwrap_or_else(|error| panic!("could not run {cargo:?} build: {error}"));
    assert!(
        output.status.success(),
        "building imageapi-server failed ({}):\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );

    let binary = profile_dir.join(format!("imageapi-server{}", std::env::consts::EXE_SUFFIX));
    assert!(
        binary.is_file(),
        "cargo built imageapi-server but it is not at {} (is CARGO_TARGET_DIR different for \
         the test binary and for cargo?)",
        binary.display()
    );
    binary
}

// ---------------------------------------------------------------------------------------------
// Spawning
// ---------------------------------------------------------------------------------------------

/// Knobs a test can turn when starting a server. `Default` = the server's own defaults.
#[derive(Clone, Debug, Default)]
pub struct ServerOptions {
    /// `IMAGEAPI_WORKERS`: size of the in-process thumbnail pool; `Some(0)` = no thumbnail
    /// jobs are processed at all (they stay pending).
    pub workers: Option<usize>,
    /// `IMAGEAPI_THUMBNAIL_WAIT_SECS`: how long a GET on a pending thumbnail waits.
    pub thumbnail_wait_secs: Option<u64>,
    /// `IMAGEAPI_REDIS_URL`: jobs go to Redis for worker processes (see `scale`).
    pub redis_url: Option<String>,
    /// Any other `IMAGEAPI_*` settings, as (variable, value).
    pub env: Vec<(&'static str, String)>,
    /// `IMAGEAPI_DATABASE_URL`: metadata in this PostgreSQL database (shared by several apps
    /// in multi-node tests). Unset: the app's own database when `IMAGEAPI_E2E_POSTGRES` is
    /// set, else sled in its data dir.
    pub database_url: Option<String>,
    /// Keep metadata in sled even when `IMAGEAPI_E2E_POSTGRES` is set (tests of sled itself).
    pub sled: bool,
}

/// One running server process.
struct ServerProcess {
    child: Child,
    address: String,
}

/// A running server with its own data directory, plus typed request methods.
pub struct TestApp {
    /// Base URL, e.g. `http://127.0.0.1:41234` (no trailing slash).
    pub address: String,
    /// The admin ensured through `IMAGEAPI_ADMIN_USERNAME`/`IMAGEAPI_ADMIN_PASSWORD`.
    pub admin: TestUser,
    pub(super) client: Client,
    server: Option<ServerProcess>,
    /// Root of everything on disk: `data/` is the data dir, `server-N.log` the logs.
    /// An `Option` so `Drop` can keep it when the test failed.
    root: Option<TempDir>,
    /// How many server processes this app has started (names the log files).
    generation: usize,
    /// Makes usernames and tier ids unique within the app.
    pub(super) counter: AtomicUsize,
    /// The app's own PostgreSQL database (`IMAGEAPI_E2E_POSTGRES`), dropped with the app.
    database: Option<TestDatabase>,
    /// What the server gets as `IMAGEAPI_DATABASE_URL`.
    database_url: Option<String>,
}

/// Start a server with its defaults.
pub fn spawn_app() -> TestApp {
    spawn_app_with(ServerOptions::default())
}

/// Start a server with the given options.
pub fn spawn_app_with(options: ServerOptions) -> TestApp {
    let admin = TestUser {
        id: String::new(),
        username: ADMIN_USERNAME.to_owned(),
        password: format!("admin-{}", random_hex()),
        token: None,
    };
    spawn_with_admin(options, admin, 0)
}

fn spawn_with_admin(options: ServerOptions, admin: TestUser, first_name: usize) -> TestApp {
    let root = tempfile::Builder::new()
        .prefix("imageapi-e2e-")
        .tempdir()
        .expect("create a temporary directory for the server");
    std::fs::create_dir(root.path().join("data")).expect("create the data directory");
    install_tls_provider();
    let client = Client::builder().no_proxy().timeout(Duration::from_secs(90)).build().expect("build the HTTP client");
    let mut app = TestApp {
        address: String::new(),
        admin,
        client,
        server: None,
        root: Some(root),
        generation: 0,
        counter: AtomicUsize::new(first_name),
        database: None,
        database_url: options.database_url.clone(),
    };
    if app.database_url.is_none() && !options.sled && postgres_for_every_app() {
        let database =
            TestDatabase::create().expect("IMAGEAPI_E2E_POSTGRES asks for PostgreSQL, but none can be had here");
        app.database_url = Some(database.url());
        app.database = Some(database);
    }
    app.start(&options);
    app
}

impl TestApp {
    /// Another server on this app's PostgreSQL database and blob store (a second node behind
    /// a load balancer): same admin, its own data dir, log and port. `options` should name
    /// the same Redis as this app's.
    pub fn spawn_peer(&self, mut options: ServerOptions) -> TestApp {
        let url = self.database_url.clone().expect("several servers need PostgreSQL: give the first a database_url");
        options.database_url = Some(url);
        options.env.push(("IMAGEAPI_BLOB_DIR", self.blob_dir().display().to_string()));
        // Names made on either node must not collide in the shared database.
        let first_name = 100_000 * (1 + self.counter.load(std::sync::atomic::Ordering::Relaxed) / 100_000);
        spawn_with_admin(options, self.admin.clone(), first_name)
    }

    /// The server's data directory (`IMAGEAPI_DATA_DIR`).
    pub fn data_dir(&self) -> PathBuf {
        self.root().join("data")
    }

    /// The blob store (`IMAGEAPI_BLOB_DIR`, by default inside the data dir); workers share it.
    pub fn blob_dir(&self) -> PathBuf {
        self.data_dir().join("blobs")
    }

    /// From the next start on, keep metadata in this PostgreSQL database (after `migrate-repo`).
    pub fn use_database(&mut self, url: String) {
        self.database_url = Some(url);
    }

    /// The PostgreSQL database the server keeps its metadata in, if not sled.
    pub fn database_url(&self) -> Option<&str> {
        self.database_url.as_deref()
    }

    /// The app's temporary root (the data dir and logs are inside).
    pub fn root_path(&self) -> &Path {
        self.root()
    }

    pub(super) fn root(&self) -> &Path {
        self.root.as_ref().expect("the app's temp dir").path()
    }

    fn log_path(&self) -> PathBuf {
        self.root().join(format!("server-{}.log", self.generation))
    }

    /// Start a server process on this app's data dir (on a new port).
    fn start(&mut self, options: &ServerOptions) {
        assert!(self.server.is_none(), "a server is already running");
        self.generation += 1;
        let test_log = std::env::var_os("TEST_LOG").is_some();
        let log_path = self.log_path();

        let mut command = Command::new(server_binary());
        without_imageapi_env(&mut command);
        command
            .env("IMAGEAPI_BIND", "127.0.0.1:0")
            .env("IMAGEAPI_DATA_DIR", self.data_dir())
            .env("IMAGEAPI_ADMIN_USERNAME", &self.admin.username)
            .env("IMAGEAPI_ADMIN_PASSWORD", &self.admin.password)
            // The production floor (256 MiB) would refuse uploads on a nearly full build
            // machine; tests of the floor set their own (`options.env` comes later and wins).
            .env("IMAGEAPI_MIN_FREE_BYTES", (16u64 << 20).to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::piped());
        if let Some(workers) = options.workers {
            command.env("IMAGEAPI_WORKERS", workers.to_string());
        }
        if let Some(secs) = options.thumbnail_wait_secs {
            command.env("IMAGEAPI_THUMBNAIL_WAIT_SECS", secs.to_string());
        }
        if let Some(url) = &options.redis_url {
            command.env("IMAGEAPI_REDIS_URL", url);
        }
        if let Some(url) = &self.database_url {
            command.env("IMAGEAPI_DATABASE_URL", url);
        }
        for (key, value) in &options.env {
            command.env(key, value);
        }
        if test_log {
            if std::env::var_os("RUST_LOG").is_none() {
                command.env("RUST_LOG", "info");
            }
            command.stderr(Stdio::inherit());
        } else {
            let log = std::fs::File::create(&log_path).expect("create the server log file");
            if !options.env.iter().any(|(key, _)| *key == "RUST_LOG") {
                command.env("RUST_LOG", "warn");
            }
            command.stderr(Stdio::from(log));
        }

        let mut child =
            command.spawn().unwrap_or_else(|error| panic!("could not start {}: {error}", server_binary().display()));
        let stdout = child.stdout.take().expect("the server's stdout is piped");
        let (sender, receiver) = mpsc::channel::<String>();
        std::thread::spawn(move || {
            // Read until the listening line, then keep draining so the server never blocks on
            // a full pipe.
            let mut reader = BufReader::new(stdout);
            let mut line = String::new();
            let mut announced = false;
            loop {
                line.clear();
                match reader.read_line(&mut line) {
                    Ok(0) | Err(_) => break,
                    Ok(_) if !announced => {
                        if let Some(url) = line.trim().strip_prefix(LISTENING_PREFIX) {
                            announced = true;
                            let _ = sender.send(url.trim().trim_end_matches('/').to_owned());
                        }
                    }
                    Ok(_) => {}
                }
            }
        });

        let deadline = Instant::now() + STARTUP_DEADLINE;
        let address = loop {
            match receiver.recv_timeout(Duration::from_millis(50)) {
                Ok(address) => break address,
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    if let Ok(Some(status)) = child.try_wait() {
                        panic!(
                            "imageapi-server exited ({status}) before printing `{LISTENING_PREFIX}\
                             http://...`; its stderr:\n{}",
                            read_log_tail(&log_path, test_log)
                        );
                    }
                    if Instant::now() >= deadline {
                        let _ = child.kill();
                        let _ = child.wait();
                        panic!(
                            "imageapi-server did not print `{LISTENING_PREFIX}http://...` within \
                             {STARTUP_DEADLINE:?}; its stderr:\n{}",
                            read_log_tail(&log_path, test_log)
                        );
                    }
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    let status = wait_briefly(&mut child);
                    panic!(
                        "imageapi-server closed its stdout without printing `{LISTENING_PREFIX}\
                         http://...` (exit: {status}); its stderr:\n{}",
                        read_log_tail(&log_path, test_log)
                    );
                }
            }
        };
        assert!(
            address.starts_with("http://127.0.0.1:"),
            "expected the server to listen on http://127.0.0.1:<port>, it announced {address:?}"
        );
        self.address = address.clone();
        self.server = Some(ServerProcess { child, address });
    }

    /// The running server's process id.
    pub fn pid(&self) -> u32 {
        self.server.as_ref().expect("a running server").child.id()
    }

    /// The server's resident memory now and at its peak (VmRSS, VmHWM), in MiB.
    pub fn memory_mib(&self) -> (u64, u64) {
        process_memory_mib(self.pid())
    }

    /// SIGKILL the server (no graceful shutdown) and wait for it to be gone.
    pub fn kill(&mut self) {
        if let Some(mut server) = self.server.take() {
            let _ = server.child.kill();
            let _ = server.child.wait();
        }
    }

    /// SIGTERM the server (graceful shutdown) and wait for it to exit; returns its exit status.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let mut server = self.server.take().expect("a running server");
        let status = std::process::Command::new("kill")
            .args(["-TERM", &server.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -TERM failed");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(40);
        loop {
            if let Some(status) = server.child.try_wait().expect("wait for the server") {
                return status;
            }
            if std::time::Instant::now() > deadline {
                let _ = server.child.kill();
                panic!("the server did not exit within 40 s of SIGTERM");
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }

    /// Start a new server on the same data dir after [`Self::terminate`] or [`Self::kill`].
    pub fn start_again(&mut self, options: ServerOptions) {
        self.start(&options);
    }

    /// SIGKILL the server and start a new one on the same data dir (it gets a new port, and
    /// `self.address` follows it).
    pub fn restart(&mut self, options: ServerOptions) {
        self.kill();
        self.start(&options);
    }

    /// What the current server has logged so far; `None` when the log goes to the terminal
    /// (`TEST_LOG`).
    pub fn server_log(&self) -> Option<String> {
        if std::env::var_os("TEST_LOG").is_some() {
            return None;
        }
        Some(std::fs::read_to_string(self.log_path()).unwrap_or_default())
    }

    /// Where the current server's log went, for failure messages.
    pub fn log_hint(&self) -> String {
        if std::env::var_os("TEST_LOG").is_some() {
            "server log: on stderr (TEST_LOG)".to_owned()
        } else {
            format!("server log: {}", self.log_path().display())
        }
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        let still_running = self.server.as_ref().map(|server| server.address.clone());
        self.kill();
        if std::thread::panicking() && std::env::var_os("TEST_LOG").is_none() {
            if let Some(root) = self.root.take() {
                let generation = self.generation;
                let kept = root.keep();
                let log = kept.join(format!("server-{generation}.log"));
                eprintln!(
                    "--- imageapi-server ({}) stderr, last lines of {} (dir kept) ---\n{}",
                    still_running.unwrap_or_else(|| "not running".to_owned()),
                    log.display(),
                    read_log_tail(&log, false)
                );
            }
        }
    }
}

fn wait_briefly(child: &mut Child) -> String {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return status.to_string(),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return "still running, killed".to_owned();
            }
        }
    }
}

pub(super) fn read_log_tail(path: &Path, test_log: bool) -> String {
    if test_log {
        return "(on the terminal: TEST_LOG is set)".to_owned();
    }
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let lines: Vec<&str> = text.lines().collect();
            let start = lines.len().saturating_sub(80);
            lines[start..].join("\n")
        }
        Err(error) => format!("(could not read {}: {error})", path.display()),
    }
}

/// Nothing from the developer's shell (say IMAGEAPI_REDIS_URL) may leak into a process
/// under test.
pub(super) fn without_imageapi_env(command: &mut Command) {
    for (key, _) in std::env::vars_os() {
        let key_text = key.to_string_lossy();
        if key_text.starts_with("IMAGEAPI_") || key_text.starts_with("AWS_") {
            command.env_remove(&key);
        }
    }
}

/// (VmRSS, VmHWM) of a process in MiB, from /proc.
pub fn process_memory_mib(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read /proc/PID/status");
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|kb| kb.parse::<u64>().ok())
            .map(|kb| kb / 1024)
            .unwrap_or_else(|| panic!("no {name} in /proc/{pid}/status"))
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// 32 hex characters from the std library's per-process random hash keys.
pub fn random_hex() -> String {
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|elapsed| elapsed.as_nanos()).unwrap_or_default();
    (0..2u8)
        .map(|round| {
            let mut hasher = RandomState::new().build_hasher();
            hasher.write_u8(round);
            hasher.write_u128(nanos);
            format!("{:016x}", hasher.finish())
        })
        .collect()
}
