//! The docs page in a real browser: headless Chromium, driven over WebDriver (chromedriver),
//! renders `/api/docs/` from the server alone, shows every tag and operation of the document,
//! and its "Try it out" works with Basic credentials.
//!
//! Needs Debian's `chromium` and `chromium-driver` (`.ci/run` installs them). Without them the
//! test says so and passes, unless `IMAGEAPI_REQUIRE_BROWSER` is set (CI sets it). With
//! `IMAGEAPI_DOCS_SCREENSHOT=<path>` it also saves a PNG of the page there.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{json, Value};

use crate::helpers::{free_port, spawn_app};

fn find(env: &str, default: &str) -> Option<PathBuf> {
    let path = std::env::var_os(env).map(PathBuf::from).unwrap_or_else(|| PathBuf::from(default));
    path.exists().then_some(path)
}

/// A chromedriver process and one browser session on it.
struct Browser {
    driver: Child,
    base: String,
    session: String,
    http: reqwest::blocking::Client,
}

impl Browser {
    fn start(chromedriver: &PathBuf, chromium: &PathBuf) -> Self {
        let port = free_port();
        let driver = Command::new(chromedriver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        crate::helpers::install_tls_provider();
        let http = reqwest::blocking::Client::builder().timeout(Duration::from_secs(60)).build().expect("client");
        let base = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(20);
        while http.get(format!("{base}/status")).send().map(|r| !r.status().is_success()).unwrap_or(true) {
            assert!(Instant::now() < deadline, "chromedriver did not come up on port {port}");
            std::thread::sleep(Duration::from_millis(100));
        }
        let args = [
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--window-size=1280,1800",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            // Nothing but this machine resolves: a request to any other host fails.
            "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",
        ];
        let capabilities = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {"binary": chromium, "args": args},
        }}});
        let mut browser = Self { driver, base, session: String::new(), http };
        let created = browser.call("POST", "/session", Some(capabilities));
        browser.session = created["sessionId"].as_str().expect("a session id").to_owned();
        browser
    }

    fn call(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let url = if path == "/session" {
            format!("{}{path}", self.base)
        } else {
            format!("{}/session/{}{path}", self.base, self.session)
        };
        let request = match method {
            "GET" => self.http.get(&url),
            "DELETE" => self.http.delete(&url),
            _ => self.http.post(&url).json(&body.unwrap_or_else(|| json!({}))),
        };
        let reply: Value = request.send().and_then(|r| r.json()).unwrap_or_else(|e| panic!("{method} {url}: {e}"));
        let value = reply["value"].clone();
        assert!(value.get("error").is_none(), "{method} {path}: {value:#}");
        value
    }

    fn open(&self, url: &str) {
        self.call("POST", "/url", Some(json!({"url": url})));
    }

    fn script(&self, script: &str) -> Value {
        self.call("POST", "/execute/sync", Some(json!({"script": script, "args": []})))
    }

    /// Runs `script` until it returns something truthy, or fails after `timeout`.
    fn wait_for(&self, what: &str, script: &str, timeout: Duration) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            let value = self.script(script);
            if !(value.is_null() || value == json!(false) || value == json!([]) || value == json!("")) {
                return value;
            }
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn element(&self, css: &str) -> String {
        let found = self.call("POST", "/element", Some(json!({"using": "css selector", "value": css})));
        let id = found.as_object().and_then(|o| o.values().next()).and_then(Value::as_str);
        id.unwrap_or_else(|| panic!("no element {css}")).to_owned()
    }

    fn click(&self, css: &str) {
        let id = self.element(css);
        self.call("POST", &format!("/element/{id}/click"), None);
    }

    fn type_into(&self, css: &str, text: &str) {
        let id = self.element(css);
        self.call("POST", &format!("/element/{id}/value"), Some(json!({"text": text})));
    }

    fn screenshot(&self) -> Vec<u8> {
        let encoded = self.call("GET", "/screenshot", None);
        base64::engine::general_purpose::STANDARD.decode(encoded.as_str().expect("base64")).expect("a PNG")
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if !self.session.is_empty() {
            let _ = self.http.delete(format!("{}/session/{}", self.base, self.session)).send();
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

#[test]
fn the_docs_page_renders_every_operation_offline_and_try_it_out_works_with_basic_auth() {
    // Arrange
    let tools =
        (find("IMAGEAPI_CHROMEDRIVER", "/usr/bin/chromedriver"), find("IMAGEAPI_CHROMIUM", "/usr/bin/chromium"));
    let (Some(chromedriver), Some(chromium)) = tools else {
        let missing = "skipping: headless Chromium is not installed (Debian: apt-get install chromium chromium-driver)";
        assert!(std::env::var_os("IMAGEAPI_REQUIRE_BROWSER").is_none(), "{missing}");
        println!("{missing}");
        return;
    };
    let app = spawn_app();
    let user = app.create_user("basic");
    let document = app.get_anonymous("/api/openapi.json").expect_json(200);
    let mut operations = BTreeSet::new();
    let mut tags = BTreeSet::new();
    for (path, item) in document["paths"].as_object().expect("paths") {
        for (method, operation) in item.as_object().expect("a path item") {
            operations.insert(format!("{} {path}", method.to_uppercase()));
            tags.extend(
                operation["tags"].as_array().into_iter().flatten().filter_map(|t| t.as_str().map(str::to_owned)),
            );
        }
    }
    let browser = Browser::start(&chromedriver, &chromium);

    // Act: open the page and wait for Swagger UI to draw the operations
    browser.open(&app.url("/api/docs/"));
    let count = operations.len();
    browser.wait_for(
        "every operation to render",
        &format!("return document.querySelectorAll('.opblock').length >= {count}"),
        Duration::from_secs(30),
    );

    // Assert: every tag and every operation of the document is on the page
    let shown_tags: BTreeSet<String> = serde_json::from_value(
        browser.script("return [...document.querySelectorAll('.opblock-tag')].map(t => t.getAttribute('data-tag'))"),
    )
    .expect("tag names");
    assert_eq!(shown_tags, tags, "tags on the page vs in the document");
    let shown: BTreeSet<String> = serde_json::from_value(browser.script(
        "return [...document.querySelectorAll('.opblock')].map(o => \
           o.querySelector('.opblock-summary-method').textContent.trim() + ' ' + \
           o.querySelector('.opblock-summary-path').getAttribute('data-path'))",
    ))
    .expect("operations");
    assert_eq!(shown, operations, "operations on the page vs in the document");

    // Act: authorize with Basic credentials and run "Try it out" on GET /api/v1/me
    browser.click(".auth-wrapper .authorize");
    browser.wait_for(
        "the authorize dialog",
        "return !!document.querySelector('.auth-container input')",
        Duration::from_secs(10),
    );
    browser.type_into(".auth-container input[type=text]", &user.username);
    browser.type_into(".auth-container input[type=password]", &user.password);
    browser.click(".auth-container .modal-btn.authorize");
    browser.click(".auth-btn-wrapper .btn-done");
    browser.click("#operations-account-get_me .opblock-summary");
    browser.wait_for(
        "Try it out",
        "return !!document.querySelector('#operations-account-get_me .try-out__btn')",
        Duration::from_secs(10),
    );
    browser.click("#operations-account-get_me .try-out__btn");
    browser.click("#operations-account-get_me .execute");
    let body = browser.wait_for(
        "the live response",
        "const r = document.querySelector('#operations-account-get_me .live-responses-table .response-col_description pre'); \
         return r ? r.textContent : null",
        Duration::from_secs(20),
    );
    let status = browser.script(
        "return document.querySelector('#operations-account-get_me .live-responses-table tbody .response-col_status').textContent.trim()",
    );

    // Assert: the browser got the user back, and fetched nothing from anywhere else
    assert_eq!(status, json!("200"), "Try it out on /api/v1/me: {body}");
    let me: Value = serde_json::from_str(body.as_str().expect("the response body")).expect("JSON");
    assert_eq!(me["username"], json!(user.username), "{me:#}");
    let requested: Vec<String> =
        serde_json::from_value(browser.script("return performance.getEntriesByType('resource').map(e => e.name)"))
            .expect("resource URLs");
    assert!(!requested.is_empty(), "the page loaded its scripts");
    let own = app.url("/");
    let foreign: Vec<&String> =
        requested.iter().filter(|url| !url.starts_with(&own) && !url.starts_with("data:")).collect();
    assert!(foreign.is_empty(), "the page requested other hosts: {foreign:?}");
    if let Some(path) = std::env::var_os("IMAGEAPI_DOCS_SCREENSHOT") {
        browser.script("document.querySelector('#operations-account-get_me').scrollIntoView()");
        std::fs::write(&path, browser.screenshot()).expect("write the screenshot");
    }
}
