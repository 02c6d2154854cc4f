//! The test harness: builds the real `imageapi-server` once per test process, spawns it on
//! port 0 with its own data directory, and wraps the HTTP API in typed request methods
//! (after zero2prod's `tests/api/helpers.rs`).
//!
//! Main types: [`TestApp`] (one running server and its data dir), [`TestUser`] (credentials
//! to act as), [`Reply`] (a fully read response with assertion helpers) and
//! [`ServerOptions`] (the knobs a test may turn: worker count, pending-thumbnail wait).

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use image::{DynamicImage, ImageFormat};
use reqwest::blocking::{multipart, Client, RequestBuilder};
use reqwest::header::HeaderMap;
use reqwest::Method;
use serde_json::{json, Value};
use tempfile::TempDir;

use crate::fixtures;

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

/// The freshly built server binary; built once per test process.
pub fn server_binary() -> &'static Path {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY.get_or_init(build_server)
}

/// Runs `cargo build -p imageapi-server` for the profile the test binary was built with and
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
    command.current_dir(workspace_root).args(["build", "-p", "imageapi-server", "--bin", "imageapi-server"]);
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
    client: Client,
    server: Option<ServerProcess>,
    /// Root of everything on disk: `data/` is the data dir, `server-N.log` the logs.
    /// An `Option` so `Drop` can keep it when the test failed.
    root: Option<TempDir>,
    /// How many server processes this app has started (names the log files).
    generation: usize,
    /// Makes usernames and tier ids unique within the app.
    counter: AtomicUsize,
}

/// Start a server with its defaults.
pub fn spawn_app() -> TestApp {
    spawn_app_with(ServerOptions::default())
}

/// Start a server with the given options.
pub fn spawn_app_with(options: ServerOptions) -> TestApp {
    let root = tempfile::Builder::new()
        .prefix("imageapi-e2e-")
        .tempdir()
        .expect("create a temporary directory for the server");
    std::fs::create_dir(root.path().join("data")).expect("create the data directory");
    let admin = TestUser {
        id: String::new(),
        username: ADMIN_USERNAME.to_owned(),
        password: format!("admin-{}", random_hex()),
        token: None,
    };
    let client = Client::builder().no_proxy().timeout(Duration::from_secs(90)).build().expect("build the HTTP client");
    let mut app = TestApp {
        address: String::new(),
        admin,
        client,
        server: None,
        root: Some(root),
        generation: 0,
        counter: AtomicUsize::new(0),
    };
    app.start(&options);
    app
}

impl TestApp {
    /// The server's data directory (`IMAGEAPI_DATA_DIR`).
    pub fn data_dir(&self) -> PathBuf {
        self.root().join("data")
    }

    fn root(&self) -> &Path {
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
        // Nothing from the developer's shell (say IMAGEAPI_REDIS_URL) may leak in.
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("IMAGEAPI_") {
                command.env_remove(key);
            }
        }
        command
            .env("IMAGEAPI_BIND", "127.0.0.1:0")
            .env("IMAGEAPI_DATA_DIR", self.data_dir())
            .env("IMAGEAPI_ADMIN_USERNAME", &self.admin.username)
            .env("IMAGEAPI_ADMIN_PASSWORD", &self.admin.password)
            .stdin(Stdio::null())
            .stdout(Stdio::piped());
        if let Some(workers) = options.workers {
            command.env("IMAGEAPI_WORKERS", workers.to_string());
        }
        if let Some(secs) = options.thumbnail_wait_secs {
            command.env("IMAGEAPI_THUMBNAIL_WAIT_SECS", secs.to_string());
        }
        if test_log {
            if std::env::var_os("RUST_LOG").is_none() {
                command.env("RUST_LOG", "info");
            }
            command.stderr(Stdio::inherit());
        } else {
            let log = std::fs::File::create(&log_path).expect("create the server log file");
            command.env("RUST_LOG", "warn").stderr(Stdio::from(log));
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

fn read_log_tail(path: &Path, test_log: bool) -> String {
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

// ---------------------------------------------------------------------------------------------
// Users and replies
// ---------------------------------------------------------------------------------------------

/// Someone to send requests as: Basic auth with username/password, or Bearer with `token`.
#[derive(Clone, Debug)]
pub struct TestUser {
    pub id: String,
    pub username: String,
    pub password: String,
    /// When set, requests use `Authorization: Bearer <token>` instead of Basic.
    pub token: Option<String>,
}

impl TestUser {
    /// The same user, authenticating with this bearer token.
    pub fn bearer(&self, token: &str) -> TestUser {
        TestUser { token: Some(token.to_owned()), ..self.clone() }
    }

    /// The same user, authenticating with Basic auth and this password.
    pub fn with_password(&self, password: &str) -> TestUser {
        TestUser { password: password.to_owned(), token: None, ..self.clone() }
    }

    /// The value of the `Authorization` header this user sends.
    pub fn authorization(&self) -> String {
        match &self.token {
            Some(token) => format!("Bearer {token}"),
            None => {
                let raw = format!("{}:{}", self.username, self.password);
                format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(raw))
            }
        }
    }
}

/// A response read to the end, so assertions can print the body.
pub struct Reply {
    pub method: String,
    pub url: String,
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body for a failure message: text, cut short.
    fn snippet(&self) -> String {
        let text = self.text();
        if text.len() > 1500 {
            let mut end = 1500;
            while !text.is_char_boundary(end) {
                end -= 1;
            }
            format!("{}… ({} bytes)", &text[..end], self.body.len())
        } else {
            text
        }
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|value| value.to_str().ok())
    }

    #[track_caller]
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|error| {
            panic!(
                "{} {}: expected a JSON body ({error}), got {} with {:?}",
                self.method,
                self.url,
                self.status,
                self.snippet()
            )
        })
    }

    #[track_caller]
    pub fn assert_status(&self, expected: u16) -> &Self {
        assert!(
            self.status == expected,
            "{} {}: expected status {expected}, got {}; body: {}",
            self.method,
            self.url,
            self.status,
            self.snippet()
        );
        self
    }

    /// Asserts the status and returns the JSON body.
    #[track_caller]
    pub fn expect_json(&self, expected: u16) -> Value {
        self.assert_status(expected);
        self.json()
    }

    /// Asserts an RFC 9457 problem with this status; returns the problem document.
    #[track_caller]
    pub fn assert_problem(&self, expected: u16) -> Value {
        self.assert_status(expected);
        let content_type = self.header("content-type").unwrap_or("");
        assert!(
            content_type.starts_with("application/problem+json"),
            "{} {}: expected content-type application/problem+json on a {expected}, got {:?}; \
             body: {}",
            self.method,
            self.url,
            content_type,
            self.snippet()
        );
        let problem = self.json();
        assert_eq!(
            problem["status"],
            json!(expected),
            "{} {}: the problem's `status` member should be {expected}: {problem:#}",
            self.method,
            self.url
        );
        for member in ["type", "title", "detail"] {
            assert!(
                problem[member].is_string(),
                "{} {}: the problem should have a string `{member}`: {problem:#}",
                self.method,
                self.url
            );
        }
        problem
    }

    /// Asserts a 400 validation problem with messages for `field`; returns those messages.
    #[track_caller]
    pub fn assert_field_error(&self, field: &str) -> Vec<String> {
        let problem = self.assert_problem(400);
        let messages = problem["errors"][field].as_array().unwrap_or_else(|| {
            panic!("{} {}: expected `errors.{field}` to be a list of messages: {problem:#}", self.method, self.url)
        });
        assert!(
            !messages.is_empty(),
            "{} {}: expected at least one message in `errors.{field}`: {problem:#}",
            self.method,
            self.url
        );
        messages
            .iter()
            .map(|message| {
                message
                    .as_str()
                    .unwrap_or_else(|| panic!("`errors.{field}` holds a non-string: {problem:#}"))
                    .to_owned()
            })
            .collect()
    }

    /// Asserts a 401 with a `WWW-Authenticate` challenge.
    #[track_caller]
    pub fn assert_unauthorized(&self) {
        self.assert_problem(401);
        let challenge = self.header("www-authenticate").unwrap_or("");
        assert!(
            !challenge.trim().is_empty(),
            "{} {}: a 401 must carry a WWW-Authenticate header; headers: {:?}",
            self.method,
            self.url,
            self.headers
        );
    }
}

/// Asserts the `Content-Type` of a binary response for this format.
#[track_caller]
pub fn assert_content_type(reply: &Reply, format: ImageFormat) {
    let expected = match format {
        ImageFormat::Png => "image/png",
        ImageFormat::Jpeg => "image/jpeg",
        other => panic!("no content type for {other:?} in this API"),
    };
    let actual = reply.header("content-type").unwrap_or("");
    assert!(
        actual.starts_with(expected),
        "{} {}: expected content-type {expected}, got {actual:?}",
        reply.method,
        reply.url
    );
}

/// Asserts the headers every binary response carries: the content type, a Content-Length
/// equal to the body, an ETag, a Cache-Control and `X-Content-Type-Options: nosniff`.
#[track_caller]
pub fn assert_binary_headers(reply: &Reply, format: ImageFormat) {
    assert_content_type(reply, format);
    let what = format!("{} {}", reply.method, reply.url);
    assert_eq!(
        reply.header("content-length").and_then(|len| len.parse::<usize>().ok()),
        Some(reply.body.len()),
        "{what}: Content-Length should equal the body length; headers: {:?}",
        reply.headers
    );
    for header in ["etag", "cache-control"] {
        assert!(
            reply.header(header).is_some_and(|value| !value.trim().is_empty()),
            "{what}: expected a non-empty {header} header; headers: {:?}",
            reply.headers
        );
    }
    assert_eq!(
        reply.header("x-content-type-options"),
        Some("nosniff"),
        "{what}: expected X-Content-Type-Options: nosniff"
    );
}

// ---------------------------------------------------------------------------------------------
// JSON helpers
// ---------------------------------------------------------------------------------------------

/// An id as a string, whether the server sends it as a string or a number.
#[track_caller]
pub fn id_of(value: &Value) -> String {
    match value {
        Value::String(id) if !id.is_empty() => id.clone(),
        Value::Number(id) => id.to_string(),
        other => panic!("expected an id (a non-empty string or a number), got {other}"),
    }
}

/// The `results` array of a list response.
#[track_caller]
pub fn results(list: &Value) -> Vec<Value> {
    list["results"].as_array().unwrap_or_else(|| panic!("expected a `results` array: {list:#}")).clone()
}

/// The ids of the `results` of a list response, in order.
#[track_caller]
pub fn result_ids(list: &Value) -> Vec<String> {
    results(list).iter().map(|item| id_of(&item["id"])).collect()
}

/// The heights of an image object's `thumbnails`, in the order listed.
#[track_caller]
pub fn thumbnail_heights(image: &Value) -> Vec<u64> {
    image["thumbnails"]
        .as_array()
        .unwrap_or_else(|| panic!("expected a `thumbnails` array: {image:#}"))
        .iter()
        .map(|thumbnail| {
            thumbnail["height"].as_u64().unwrap_or_else(|| panic!("a thumbnail without an integer height: {image:#}"))
        })
        .collect()
}

/// The `thumbnails` entry of an image object for this height.
#[track_caller]
pub fn thumbnail_entry(image: &Value, height: u32) -> Value {
    image["thumbnails"]
        .as_array()
        .and_then(|thumbnails| thumbnails.iter().find(|thumbnail| thumbnail["height"] == json!(height)))
        .cloned()
        .unwrap_or_else(|| panic!("expected a {height}px entry in `thumbnails`: {image:#}"))
}

/// Whether an optional member is absent (missing or null).
pub fn is_absent(object: &Value, member: &str) -> bool {
    object.get(member).is_none_or(Value::is_null)
}

/// Whether every listed thumbnail is ready.
pub fn all_ready(image: &Value) -> bool {
    image["thumbnails"].as_array().is_some_and(|thumbnails| thumbnails.iter().all(|t| t["status"] == "ready"))
}

// ---------------------------------------------------------------------------------------------
// Requests
// ---------------------------------------------------------------------------------------------

impl TestApp {
    /// An absolute URL for a path on this server; absolute URLs pass through unchanged.
    pub fn url(&self, path_or_url: &str) -> String {
        if path_or_url.starts_with("http://") || path_or_url.starts_with("https://") {
            path_or_url.to_owned()
        } else {
            format!("{}{}", self.address, path_or_url)
        }
    }

    /// A request builder, authenticated as `user` if given.
    pub fn request(&self, method: Method, path_or_url: &str, user: Option<&TestUser>) -> RequestBuilder {
        let builder = self.client.request(method, self.url(path_or_url));
        match user {
            Some(user) => builder.header("authorization", user.authorization()),
            None => builder,
        }
    }

    /// Sends the request and reads the whole response.
    #[track_caller]
    pub fn send(&self, builder: RequestBuilder) -> Reply {
        let request = builder.build().expect("a well-formed request");
        let method = request.method().to_string();
        let url = request.url().to_string();
        let response = self
            .client
            .execute(request)
            .unwrap_or_else(|error| panic!("{method} {url}: the request failed: {error:?} ({})", self.log_hint()));
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let body = response
            .bytes()
            .unwrap_or_else(|error| panic!("{method} {url}: reading the body failed: {error:?}"))
            .to_vec();
        Reply { method, url, status, headers, body }
    }

    #[track_caller]
    pub fn get_as(&self, user: &TestUser, path_or_url: &str) -> Reply {
        self.send(self.request(Method::GET, path_or_url, Some(user)))
    }

    #[track_caller]
    pub fn delete_as(&self, user: &TestUser, path_or_url: &str) -> Reply {
        self.send(self.request(Method::DELETE, path_or_url, Some(user)))
    }

    #[track_caller]
    pub fn post_json_as(&self, user: &TestUser, path: &str, body: &Value) -> Reply {
        self.send(self.request(Method::POST, path, Some(user)).json(body))
    }

    #[track_caller]
    pub fn patch_json_as(&self, user: &TestUser, path: &str, body: &Value) -> Reply {
        self.send(self.request(Method::PATCH, path, Some(user)).json(body))
    }

    /// A GET with no `Authorization` header at all.
    #[track_caller]
    pub fn get_anonymous(&self, path_or_url: &str) -> Reply {
        self.send(self.request(Method::GET, path_or_url, None))
    }

    // --- admin: users ------------------------------------------------------------------------

    #[track_caller]
    pub fn post_user(&self, body: &Value) -> Reply {
        self.post_json_as(&self.admin, "/api/v1/admin/users", body)
    }

    /// Creates a non-admin user on `tier` with a unique username; asserts 201.
    #[track_caller]
    pub fn create_user(&self, tier: &str) -> TestUser {
        self.create_user_with(tier, false)
    }

    /// Creates a user with `is_admin: true`; asserts 201.
    #[track_caller]
    pub fn create_admin_user(&self) -> TestUser {
        self.create_user_with("basic", true)
    }

    #[track_caller]
    fn create_user_with(&self, tier: &str, is_admin: bool) -> TestUser {
        let n = self.counter.fetch_add(1, Ordering::SeqCst);
        let mut username = format!("user{n}-{tier}");
        username.truncate(64);
        let password = format!("pw-{}", random_hex());
        let created = self
            .post_user(&json!({
                "username": username,
                "password": password,
                "tier": tier,
                "is_admin": is_admin,
            }))
            .expect_json(201);
        TestUser { id: id_of(&created["id"]), username, password, token: None }
    }

    #[track_caller]
    pub fn list_users(&self) -> Reply {
        self.get_as(&self.admin, "/api/v1/admin/users")
    }

    #[track_caller]
    pub fn get_user(&self, user_id: &str) -> Reply {
        self.get_as(&self.admin, &format!("/api/v1/admin/users/{user_id}"))
    }

    #[track_caller]
    pub fn patch_user(&self, user_id: &str, body: &Value) -> Reply {
        self.patch_json_as(&self.admin, &format!("/api/v1/admin/users/{user_id}"), body)
    }

    #[track_caller]
    pub fn delete_user(&self, user_id: &str) -> Reply {
        self.delete_as(&self.admin, &format!("/api/v1/admin/users/{user_id}"))
    }

    #[track_caller]
    pub fn post_token(&self, user_id: &str) -> Reply {
        self.post_json_as(&self.admin, &format!("/api/v1/admin/users/{user_id}/tokens"), &json!({}))
    }

    /// Issues an API token for `user`; asserts 201; returns `(token id, token)`.
    #[track_caller]
    pub fn issue_token(&self, user: &TestUser) -> (String, String) {
        let issued = self.post_token(&user.id).expect_json(201);
        let token = issued["token"]
            .as_str()
            .filter(|token| !token.is_empty())
            .unwrap_or_else(|| panic!("expected a non-empty `token` string: {issued:#}"))
            .to_owned();
        (id_of(&issued["id"]), token)
    }

    #[track_caller]
    pub fn revoke_token(&self, user_id: &str, token_id: &str) -> Reply {
        self.delete_as(&self.admin, &format!("/api/v1/admin/users/{user_id}/tokens/{token_id}"))
    }

    // --- admin: tiers ------------------------------------------------------------------------

    #[track_caller]
    pub fn list_tiers(&self) -> Reply {
        self.get_as(&self.admin, "/api/v1/admin/tiers")
    }

    #[track_caller]
    pub fn get_tier(&self, tier_id: &str) -> Reply {
        self.get_as(&self.admin, &format!("/api/v1/admin/tiers/{tier_id}"))
    }

    #[track_caller]
    pub fn post_tier(&self, body: &Value) -> Reply {
        self.post_json_as(&self.admin, "/api/v1/admin/tiers", body)
    }

    /// Creates a custom tier; asserts 201; returns the tier object.
    #[track_caller]
    pub fn create_tier(
        &self,
        tier_id: &str,
        thumbnail_heights: &[u32],
        original_link: bool,
        expiring_links: bool,
    ) -> Value {
        self.post_tier(&json!({
            "id": tier_id,
            "name": format!("Tier {tier_id}"),
            "thumbnail_heights": thumbnail_heights,
            "original_link": original_link,
            "expiring_links": expiring_links,
        }))
        .expect_json(201)
    }

    #[track_caller]
    pub fn patch_tier(&self, tier_id: &str, body: &Value) -> Reply {
        self.patch_json_as(&self.admin, &format!("/api/v1/admin/tiers/{tier_id}"), body)
    }

    #[track_caller]
    pub fn delete_tier(&self, tier_id: &str) -> Reply {
        self.delete_as(&self.admin, &format!("/api/v1/admin/tiers/{tier_id}"))
    }

    // --- admin: images -----------------------------------------------------------------------

    #[track_caller]
    pub fn admin_images(&self, user_id: &str) -> Reply {
        self.get_as(&self.admin, &format!("/api/v1/admin/images?user={user_id}"))
    }

    // --- user: account -----------------------------------------------------------------------

    #[track_caller]
    pub fn me(&self, user: &TestUser) -> Reply {
        self.get_as(user, "/api/v1/me")
    }

    // --- user: images ------------------------------------------------------------------------

    /// Uploads `bytes` as the multipart file field `image` named `name` (the part's content
    /// type is guessed from the name, as a browser would).
    #[track_caller]
    pub fn upload(&self, user: &TestUser, name: &str, bytes: &[u8]) -> Reply {
        let content_type = if name.ends_with(".png") {
            "image/png"
        } else if name.ends_with(".jpg") || name.ends_with(".jpeg") {
            "image/jpeg"
        } else {
            "application/octet-stream"
        };
        self.upload_as(user, name, content_type, bytes)
    }

    /// Uploads with an explicit content type on the file part.
    #[track_caller]
    pub fn upload_as(&self, user: &TestUser, name: &str, content_type: &str, bytes: &[u8]) -> Reply {
        let part = multipart::Part::bytes(bytes.to_vec())
            .file_name(name.to_owned())
            .mime_str(content_type)
            .expect("a valid content type");
        self.upload_form(user, multipart::Form::new().part("image", part))
    }

    /// Sends any multipart form to the upload route.
    #[track_caller]
    pub fn upload_form(&self, user: &TestUser, form: multipart::Form) -> Reply {
        self.send(self.request(Method::POST, "/api/v1/images", Some(user)).multipart(form))
    }

    /// Uploads and asserts 201; returns the image object.
    #[track_caller]
    pub fn upload_ok(&self, user: &TestUser, name: &str, bytes: &[u8]) -> Value {
        self.upload(user, name, bytes).expect_json(201)
    }

    /// `GET /api/v1/images?<query>` (query without the `?`, may be empty).
    #[track_caller]
    pub fn list_images(&self, user: &TestUser, query: &str) -> Reply {
        if query.is_empty() {
            self.get_as(user, "/api/v1/images")
        } else {
            self.get_as(user, &format!("/api/v1/images?{query}"))
        }
    }

    #[track_caller]
    pub fn get_image(&self, user: &TestUser, image_id: &str) -> Reply {
        self.get_as(user, &format!("/api/v1/images/{image_id}"))
    }

    /// The image object; asserts 200.
    #[track_caller]
    pub fn image(&self, user: &TestUser, image_id: &str) -> Value {
        self.get_image(user, image_id).expect_json(200)
    }

    #[track_caller]
    pub fn delete_image(&self, user: &TestUser, image_id: &str) -> Reply {
        self.delete_as(user, &format!("/api/v1/images/{image_id}"))
    }

    pub fn thumbnail_path(image_id: &str, height: u32) -> String {
        format!("/api/v1/images/{image_id}/thumbnails/{height}")
    }

    #[track_caller]
    pub fn get_thumbnail(&self, user: &TestUser, image_id: &str, height: u32) -> Reply {
        self.get_as(user, &Self::thumbnail_path(image_id, height))
    }

    #[track_caller]
    pub fn get_original(&self, user: &TestUser, image_id: &str) -> Reply {
        self.get_as(user, &format!("/api/v1/images/{image_id}/original"))
    }

    /// Polls the image object until `done` holds or `timeout` passes; fails at once if a
    /// thumbnail turns `failed`. Returns the last image object.
    #[track_caller]
    pub fn wait_for_image(
        &self,
        user: &TestUser,
        image_id: &str,
        timeout: Duration,
        what: &str,
        done: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            let image = self.image(user, image_id);
            if done(&image) {
                return image;
            }
            let failed = image["thumbnails"]
                .as_array()
                .is_some_and(|thumbnails| thumbnails.iter().any(|t| t["status"] == "failed"));
            assert!(!failed, "a thumbnail failed while waiting for {what} on image {image_id}: {image:#}");
            assert!(
                Instant::now() < deadline,
                "waited {timeout:?} for {what} on image {image_id}; last seen: {image:#} ({})",
                self.log_hint()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Polls until every listed thumbnail is ready (deadline [`READY_DEADLINE`]).
    #[track_caller]
    pub fn wait_until_ready(&self, user: &TestUser, image_id: &str) -> Value {
        self.wait_until_ready_within(user, image_id, READY_DEADLINE)
    }

    #[track_caller]
    pub fn wait_until_ready_within(&self, user: &TestUser, image_id: &str, timeout: Duration) -> Value {
        self.wait_for_image(user, image_id, timeout, "every thumbnail ready", all_ready)
    }

    /// GETs a thumbnail, asserts 200 with the right content type, decodes it and checks the
    /// format and the size the contract promises for a `source` (display width, height).
    #[track_caller]
    pub fn assert_thumbnail(
        &self,
        user: &TestUser,
        image_id: &str,
        height: u32,
        format: ImageFormat,
        source: (u32, u32),
    ) -> DynamicImage {
        let reply = self.get_thumbnail(user, image_id, height);
        reply.assert_status(200);
        assert_content_type(&reply, format);
        let (width, expected_height) = fixtures::expected_thumbnail_size(source.0, source.1, height);
        fixtures::assert_image(&reply.body, format, width, expected_height)
    }

    /// Asserts that an image object lists exactly `heights` (ascending), each with the width
    /// the contract promises for `source` and its absolute URL.
    #[track_caller]
    pub fn assert_thumbnail_entries(&self, image: &Value, heights: &[u32], source: (u32, u32)) {
        let listed = thumbnail_heights(image);
        let expected: Vec<u64> = heights.iter().map(|&h| u64::from(h)).collect();
        assert_eq!(listed, expected, "expected exactly these thumbnails, ascending: {image:#}");
        let image_id = id_of(&image["id"]);
        for &height in heights {
            let entry = thumbnail_entry(image, height);
            let (width, _) = fixtures::expected_thumbnail_size(source.0, source.1, height);
            assert_eq!(entry["width"], json!(width), "width of the {height}px thumbnail: {image:#}");
            assert_eq!(
                entry["url"],
                json!(self.url(&Self::thumbnail_path(&image_id, height))),
                "url of the {height}px thumbnail: {image:#}"
            );
            let status = entry["status"].as_str().unwrap_or("");
            assert!(
                ["pending", "ready", "failed"].contains(&status),
                "status of the {height}px thumbnail should be pending, ready or failed: {image:#}"
            );
        }
    }

    // --- user: links -------------------------------------------------------------------------

    #[track_caller]
    pub fn create_link(&self, user: &TestUser, image_id: &str, body: &Value) -> Reply {
        self.post_json_as(user, &format!("/api/v1/images/{image_id}/links"), body)
    }

    /// Creates an expiring link; asserts 201; returns the link object.
    #[track_caller]
    pub fn create_link_ok(&self, user: &TestUser, image_id: &str, body: &Value) -> Value {
        self.create_link(user, image_id, body).expect_json(201)
    }

    #[track_caller]
    pub fn list_links(&self, user: &TestUser) -> Reply {
        self.get_as(user, "/api/v1/links")
    }

    #[track_caller]
    pub fn delete_link(&self, user: &TestUser, link_id: &str) -> Reply {
        self.delete_as(user, &format!("/api/v1/links/{link_id}"))
    }

    // --- raw HTTP ----------------------------------------------------------------------------

    /// Uploads a multipart body whose file part is `file_len` bytes (a real JPEG padded with
    /// zeros) over a raw socket, reading the response while still writing, so a server that
    /// answers 413 early and closes the connection is observed reliably. Returns the status.
    pub fn upload_oversized(&self, user: &TestUser, file_len: usize) -> u16 {
        let host = self.address.strip_prefix("http://").expect("an http:// address").to_owned();
        let boundary = "imageapi-e2e-boundary-5f0c2a";
        let part_head = format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; \
             filename=\"huge.jpg\"\r\nContent-Type: image/jpeg\r\n\r\n"
        );
        let part_tail = format!("\r\n--{boundary}--\r\n");
        let content_length = part_head.len() + file_len + part_tail.len();
        let request_head = format!(
            "POST /api/v1/images HTTP/1.1\r\nHost: {host}\r\nAuthorization: {}\r\n\
             Content-Type: multipart/form-data; boundary={boundary}\r\n\
             Content-Length: {content_length}\r\nConnection: close\r\n\r\n",
            user.authorization()
        );

        let stream = TcpStream::connect(&host).expect("connect to the server");
        stream.set_read_timeout(Some(Duration::from_secs(60))).expect("set a read timeout");
        stream.set_write_timeout(Some(Duration::from_secs(60))).expect("set a write timeout");
        let mut reader = stream.try_clone().expect("clone the socket");
        let response_head = std::thread::spawn(move || {
            let mut received = Vec::new();
            let mut buffer = [0u8; 4096];
            while !received.windows(4).any(|window| window == b"\r\n\r\n") {
                match reader.read(&mut buffer) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => received.extend_from_slice(&buffer[..n]),
                }
            }
            // Unblocks the writer if the server stopped reading.
            let _ = reader.shutdown(Shutdown::Both);
            received
        });

        let mut writer = stream;
        let start = fixtures::jpeg(64, 64);
        let zeros = vec![0u8; 64 * 1024];
        let _ = (|| -> std::io::Result<()> {
            writer.write_all(request_head.as_bytes())?;
            writer.write_all(part_head.as_bytes())?;
            writer.write_all(&start)?;
            let mut remaining = file_len.saturating_sub(start.len());
            while remaining > 0 {
                let n = remaining.min(zeros.len());
                writer.write_all(&zeros[..n])?;
                remaining -= n;
            }
            writer.write_all(part_tail.as_bytes())?;
            writer.flush()
        })();

        let head = response_head.join().expect("the response reader thread");
        let head = String::from_utf8_lossy(&head);
        let status_line = head.lines().next().unwrap_or("");
        status_line.split_whitespace().nth(1).and_then(|code| code.parse().ok()).unwrap_or_else(|| {
            panic!(
                "POST /api/v1/images with a {content_length}-byte body: no HTTP response \
                     (received {head:?}; {})",
                self.log_hint()
            )
        })
    }
}
