//! Users to act as, fully read replies, and JSON helpers.

use base64::Engine as _;
use image::ImageFormat;
use reqwest::header::HeaderMap;
use serde_json::{json, Value};

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
