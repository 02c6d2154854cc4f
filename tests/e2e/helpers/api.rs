//! Typed requests: one method per API call.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use image::{DynamicImage, ImageFormat};
use reqwest::blocking::{multipart, RequestBuilder};
use reqwest::Method;
use serde_json::{json, Value};

use crate::fixtures;

use super::*;

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

    /// Lifts a tier's limits on images, storage and uploads per hour (tests whose subject is
    /// load or queueing, not quotas, upload more than the builtin tiers allow).
    #[track_caller]
    pub fn lift_limits(&self, tier_id: &str) {
        let body = json!({"max_images": null, "max_storage_bytes": null, "uploads_per_hour": null});
        self.patch_tier(tier_id, &body).assert_status(200);
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

    /// The admin browse with a raw query (`name=x&limit=2`).
    #[track_caller]
    pub fn admin_browse(&self, query: &str) -> Reply {
        self.get_as(&self.admin, &format!("/api/v1/admin/images?{query}"))
    }

    #[track_caller]
    pub fn admin_image(&self, image_id: &str) -> Reply {
        self.get_as(&self.admin, &format!("/api/v1/admin/images/{image_id}"))
    }

    #[track_caller]
    pub fn admin_delete_image(&self, image_id: &str) -> Reply {
        self.delete_as(&self.admin, &format!("/api/v1/admin/images/{image_id}"))
    }

    #[track_caller]
    pub fn queue(&self) -> Value {
        self.get_as(&self.admin, "/api/v1/admin/queue").expect_json(200)
    }

    #[track_caller]
    pub fn retry_job(&self, job: &str) -> Reply {
        self.send(self.request(Method::POST, &format!("/api/v1/admin/queue/failed/{job}/retry"), Some(&self.admin)))
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
