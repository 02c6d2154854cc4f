//! The admin API client: typed requests and the answers the views show. The TUI never opens
//! the database; everything goes through the server's HTTP API.

use std::collections::BTreeMap;
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::Value;

/// Images per page of the Images view.
pub const IMAGE_PAGE: usize = 50;

/// How the TUI proves it is an admin.
#[derive(Debug, Clone)]
pub enum Credentials {
    Basic { username: String, password: String },
    Bearer(String),
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ApiError {
    /// No answer: the server is down, restarting or unreachable.
    #[error("cannot reach the server: {0}")]
    Unreachable(String),
    /// An answer with an error status, with the server's problem details.
    #[error("{status}: {detail}")]
    Status { status: u16, detail: String, fields: BTreeMap<String, Vec<String>> },
}

impl ApiError {
    pub fn is_unreachable(&self) -> bool {
        matches!(self, ApiError::Unreachable(_))
    }
}

// The answers are the server's own types (`imageapi_core::api`), under the names the views use.
pub use imageapi_core::api::{
    AdminImageView as ImageDetail, CreateUser as NewUser, FailedJobView as FailedJob, ImagePage, ImageView as Image,
    LinkList as LinkPage, LinkView as Link, NewTokenView as NewToken, QueueView as Queue, ThumbnailStatus,
    TierView as Tier, UserView as User, VariantView,
};

/// Links per page of the Links view.
pub const LINK_PAGE: usize = 100;

/// What the Images view asks the server for: one user's images, filtered by the server.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ImageQuery {
    pub user: String,
    /// A file-name substring.
    pub name: String,
    pub uploaded_after: Option<String>,
    pub uploaded_before: Option<String>,
}

impl ImageQuery {
    /// Reads the filter line: `after:DATE` and `before:DATE` (a day `2026-12-01` or an RFC 3339
    /// time) bound the upload time; the rest is a file-name substring.
    pub fn from_filter(user: &str, filter: &str) -> Self {
        let mut query = ImageQuery { user: user.to_owned(), ..ImageQuery::default() };
        let mut words = Vec::new();
        for word in filter.split_whitespace() {
            if let Some(day) = word.strip_prefix("after:") {
                query.uploaded_after = Some(time_of(day));
            } else if let Some(day) = word.strip_prefix("before:") {
                query.uploaded_before = Some(time_of(day));
            } else {
                words.push(word);
            }
        }
        query.name = words.join(" ");
        query
    }

    /// The query string, percent-encoded.
    pub fn to_query(&self, cursor: Option<&str>, limit: usize) -> String {
        let mut pairs = vec![("user", self.user.clone()), ("limit", limit.to_string())];
        if !self.name.is_empty() {
            pairs.push(("name", self.name.clone()));
        }
        if let Some(t) = &self.uploaded_after {
            pairs.push(("uploaded_after", t.clone()));
        }
        if let Some(t) = &self.uploaded_before {
            pairs.push(("uploaded_before", t.clone()));
        }
        if let Some(c) = cursor {
            pairs.push(("cursor", c.to_owned()));
        }
        pairs.iter().map(|(k, v)| format!("{k}={}", percent_encode(v))).collect::<Vec<_>>().join("&")
    }
}

/// A day means its start in UTC; anything else goes to the server as written (it says what is
/// wrong with it).
fn time_of(text: &str) -> String {
    if chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d").is_ok() {
        format!("{text}T00:00:00Z")
    } else {
        text.to_owned()
    }
}

fn percent_encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
struct Results<T> {
    results: Vec<T>,
}

/// The problem+json shape the server answers errors with.
#[derive(Debug, Deserialize)]
struct Problem {
    #[serde(default)]
    title: Option<String>,
    #[serde(default)]
    detail: Option<String>,
    #[serde(default)]
    errors: BTreeMap<String, Vec<String>>,
}

#[derive(Debug, Clone)]
pub struct ApiClient {
    base: String,
    credentials: Credentials,
    http: reqwest::Client,
}

impl ApiClient {
    pub fn new(base: &str, credentials: Credentials) -> anyhow::Result<Self> {
        // reqwest's rustls has no built-in provider here (the workspace avoids aws-lc-rs'
        // C build); ring is it. Idempotent. It also lets the TUI reach an https:// server.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .connect_timeout(Duration::from_secs(2))
            .no_proxy()
            .build()?;
        Ok(Self { base: base.trim_end_matches('/').to_owned(), credentials, http })
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    fn authorized(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        let request = self.http.request(method, format!("{}{path}", self.base));
        match &self.credentials {
            Credentials::Basic { username, password } => request.basic_auth(username, Some(password)),
            Credentials::Bearer(token) => request.bearer_auth(token),
        }
    }

    async fn call<T: DeserializeOwned>(&self, method: Method, path: &str, body: Option<&Value>) -> Result<T, ApiError> {
        let mut request = self.authorized(method, path);
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request.send().await.map_err(|e| ApiError::Unreachable(root_cause(&e)))?;
        let status = response.status();
        let bytes = response.bytes().await.map_err(|e| ApiError::Unreachable(root_cause(&e)))?;
        if !status.is_success() {
            return Err(problem(status, &bytes));
        }
        // 204: nothing to parse; callers then ask for `()`-like `Value::Null`.
        let bytes = if bytes.is_empty() { &b"null"[..] } else { &bytes[..] };
        serde_json::from_slice(bytes).map_err(|e| ApiError::Status {
            status: status.as_u16(),
            detail: format!("unexpected answer: {e}"),
            fields: BTreeMap::new(),
        })
    }

    pub async fn users(&self) -> Result<Vec<User>, ApiError> {
        Ok(self.call::<Results<User>>(Method::GET, "/api/v1/admin/users", None).await?.results)
    }

    pub async fn user(&self, id: &str) -> Result<User, ApiError> {
        self.call(Method::GET, &format!("/api/v1/admin/users/{id}"), None).await
    }

    pub async fn create_user(&self, user: &NewUser) -> Result<User, ApiError> {
        let body = serde_json::to_value(user).unwrap_or(Value::Null);
        self.call(Method::POST, "/api/v1/admin/users", Some(&body)).await
    }

    pub async fn update_user(&self, id: &str, changes: &Value) -> Result<User, ApiError> {
        self.call(Method::PATCH, &format!("/api/v1/admin/users/{id}"), Some(changes)).await
    }

    pub async fn delete_user(&self, id: &str) -> Result<(), ApiError> {
        self.call::<Value>(Method::DELETE, &format!("/api/v1/admin/users/{id}"), None).await.map(|_| ())
    }

    pub async fn issue_token(&self, user: &str) -> Result<NewToken, ApiError> {
        self.call(Method::POST, &format!("/api/v1/admin/users/{user}/tokens"), None).await
    }

    pub async fn revoke_token(&self, user: &str, token: &str) -> Result<(), ApiError> {
        self.call::<Value>(Method::DELETE, &format!("/api/v1/admin/users/{user}/tokens/{token}"), None)
            .await
            .map(|_| ())
    }

    pub async fn tiers(&self) -> Result<Vec<Tier>, ApiError> {
        Ok(self.call::<Results<Tier>>(Method::GET, "/api/v1/admin/tiers", None).await?.results)
    }

    pub async fn create_tier(&self, tier: &Value) -> Result<Tier, ApiError> {
        self.call(Method::POST, "/api/v1/admin/tiers", Some(tier)).await
    }

    pub async fn update_tier(&self, id: &str, changes: &Value) -> Result<Tier, ApiError> {
        self.call(Method::PATCH, &format!("/api/v1/admin/tiers/{id}"), Some(changes)).await
    }

    pub async fn delete_tier(&self, id: &str) -> Result<(), ApiError> {
        self.call::<Value>(Method::DELETE, &format!("/api/v1/admin/tiers/{id}"), None).await.map(|_| ())
    }

    /// A page of a user's images, newest first, filtered by the server.
    pub async fn images(&self, query: &ImageQuery, cursor: Option<&str>) -> Result<ImagePage, ApiError> {
        self.call(Method::GET, &format!("/api/v1/admin/images?{}", query.to_query(cursor, IMAGE_PAGE)), None).await
    }

    pub async fn image(&self, id: &str) -> Result<ImageDetail, ApiError> {
        self.call(Method::GET, &format!("/api/v1/admin/images/{id}"), None).await
    }

    pub async fn delete_image(&self, id: &str) -> Result<(), ApiError> {
        self.call::<Value>(Method::DELETE, &format!("/api/v1/admin/images/{id}"), None).await.map(|_| ())
    }

    /// A thumbnail's bytes (any recorded height of any image).
    pub async fn thumbnail(&self, id: &str, height: u32) -> Result<Vec<u8>, ApiError> {
        let request = self.authorized(Method::GET, &format!("/api/v1/admin/images/{id}/thumbnails/{height}"));
        let response = request.send().await.map_err(|e| ApiError::Unreachable(root_cause(&e)))?;
        let status = response.status();
        let bytes = response.bytes().await.map_err(|e| ApiError::Unreachable(root_cause(&e)))?;
        if !status.is_success() {
            return Err(problem(status, &bytes));
        }
        Ok(bytes.to_vec())
    }

    /// One page of live links, newest first (100, the most the server gives at once).
    pub async fn links(&self, cursor: Option<&str>) -> Result<LinkPage, ApiError> {
        let path = match cursor {
            Some(c) => format!("/api/v1/admin/links?limit={LINK_PAGE}&cursor={c}"),
            None => format!("/api/v1/admin/links?limit={LINK_PAGE}"),
        };
        self.call::<LinkPage>(Method::GET, &path, None).await
    }

    pub async fn revoke_link(&self, id: &str) -> Result<(), ApiError> {
        self.call::<Value>(Method::DELETE, &format!("/api/v1/admin/links/{id}"), None).await.map(|_| ())
    }

    pub async fn queue(&self) -> Result<Queue, ApiError> {
        self.call(Method::GET, "/api/v1/admin/queue", None).await
    }

    pub async fn retry_job(&self, job: &str) -> Result<(), ApiError> {
        self.call::<Value>(Method::POST, &format!("/api/v1/admin/queue/failed/{job}/retry"), None).await.map(|_| ())
    }
}

fn problem(status: StatusCode, body: &[u8]) -> ApiError {
    let parsed: Option<Problem> = serde_json::from_slice(body).ok();
    let (detail, fields) = match parsed {
        Some(p) => {
            (p.detail.or(p.title).unwrap_or_else(|| status.canonical_reason().unwrap_or("error").to_owned()), p.errors)
        }
        None => (status.canonical_reason().unwrap_or("error").to_owned(), BTreeMap::new()),
    };
    ApiError::Status { status: status.as_u16(), detail, fields }
}

fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cause: &dyn std::error::Error = e;
    while let Some(next) = cause.source() {
        cause = next;
    }
    cause.to_string()
}
