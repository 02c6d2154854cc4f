//! Tier limits (images, storage, upload size, uploads per hour) enforced atomically at upload,
//! visible through `/me` and the admin users list; and idempotent uploads by content.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::fixtures::{jpeg, jpeg_seeded, noisy_jpeg};
use crate::helpers::{
    eventually, id_of, spawn_app, spawn_app_with, RedisServer, ServerOptions, TestApp, TestDatabase, TestUser,
};

const QUOTA_EXCEEDED: &str = "https://imageapi.dev/problems/quota-exceeded";
const RATE_EXCEEDED: &str = "https://imageapi.dev/problems/upload-rate-exceeded";

/// A tier with one 100 px height and `limits`; a user holding it.
fn limited_user(app: &TestApp, limits: Value) -> (String, TestUser) {
    static TIERS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = TIERS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tier = format!("limited-{n}");
    let mut body = json!({"id": tier, "name": format!("Limited {n}"), "thumbnail_heights": [100]});
    for (key, value) in limits.as_object().expect("limits object") {
        body[key] = value.clone();
    }
    let created = app.post_tier(&body).expect_json(201);
    for (key, value) in limits.as_object().expect("limits object") {
        assert_eq!(&created[key], value, "the tier states {key}: {created:#}");
    }
    let user = app.create_user(&tier);
    (tier, user)
}

fn listed(app: &TestApp, user: &TestUser) -> Vec<String> {
    let page = app.list_images(user, "limit=100").expect_json(200);
    page["results"].as_array().expect("results").iter().map(|i| id_of(&i["id"])).collect()
}

fn assert_quota_problem(problem: &Value, kind: &str, quota: &str, usage: u64, limit: u64) {
    assert_eq!(problem["type"], json!(kind), "{problem:#}");
    assert_eq!(problem["quota"], json!(quota), "{problem:#}");
    assert_eq!(problem["usage"], json!(usage), "{problem:#}");
    assert_eq!(problem["limit"], json!(limit), "{problem:#}");
    let detail = problem["detail"].as_str().expect("detail");
    assert!(detail.contains(&limit.to_string()), "the detail names the limit: {detail}");
}

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn over_max_images_is_403_quota_exceeded_and_stores_nothing() {
    let app = spawn_app();
    let (_, user) = limited_user(&app, json!({"max_images": 2}));
    let kept: Vec<String> =
        (0..2u8).map(|n| id_of(&app.upload_ok(&user, &format!("{n}.jpg"), &jpeg_seeded(64, 48, n))["id"])).collect();

    let problem = app.upload(&user, "third.jpg", &jpeg_seeded(64, 48, 9)).assert_problem(403);

    assert_quota_problem(&problem, QUOTA_EXCEEDED, "max_images", 2, 2);
    assert_eq!(listed(&app, &user).len(), 2);
    let me = app.me(&user).expect_json(200);
    assert_eq!(me["usage"]["images"], json!(2), "{me:#}");
    assert_eq!(me["usage"]["uploads_last_hour"], json!(2), "a refused upload is not counted: {me:#}");
    // Deleting one makes room again.
    app.delete_as(&user, &format!("/api/v1/images/{}", kept[0])).assert_status(204);
    app.upload(&user, "third.jpg", &jpeg_seeded(64, 48, 9)).assert_status(201);
}

#[test]
fn over_max_storage_bytes_is_403_naming_the_bytes_used() {
    let app = spawn_app();
    let first = noisy_jpeg(320, 240);
    let second = noisy_jpeg(640, 480);
    // Room for the first original and its thumbnail, not for the second original.
    let limit = first.len() as u64 + second.len() as u64 / 2;
    let (_, user) = limited_user(&app, json!({"max_storage_bytes": limit}));
    let image = app.upload_ok(&user, "first.jpg", &first);
    app.wait_until_ready(&user, &id_of(&image["id"]));
    let stored = app.me(&user).expect_json(200)["usage"]["storage_bytes"].as_u64().expect("storage_bytes");
    assert!(stored > first.len() as u64, "originals and ready thumbnails count: {stored}");

    let problem = app.upload(&user, "second.jpg", &second).assert_problem(403);

    assert_quota_problem(&problem, QUOTA_EXCEEDED, "max_storage_bytes", stored, limit);
    assert_eq!(listed(&app, &user).len(), 1);
    assert_eq!(app.me(&user).expect_json(200)["usage"]["storage_bytes"], json!(stored), "nothing was reserved");
}

#[test]
fn over_max_upload_bytes_is_413_naming_the_tiers_limit_before_the_body_is_in() {
    let app = spawn_app();
    let (_, user) = limited_user(&app, json!({"max_upload_bytes": 20_000}));
    let me = app.me(&user).expect_json(200);
    assert_eq!(me["limits"]["max_upload_bytes"], json!(20_000), "{me:#}");

    // Read and refused while streaming: the file is over the limit.
    let big = noisy_jpeg(800, 600);
    assert!(big.len() > 20_000);
    let problem = app.upload(&user, "big.jpg", &big).assert_problem(413);
    assert!(problem["detail"].as_str().expect("detail").contains("20000"), "{problem:#}");
    app.upload(&user, "small.jpg", &jpeg(64, 48)).assert_status(201);

    // Declared too large: answered from the head, with only a first chunk of the body sent.
    let host = app.address.strip_prefix("http://").expect("http").to_owned();
    let mut stream = TcpStream::connect(&host).expect("connect");
    let boundary = "quota-boundary";
    let head = format!(
        "POST /api/v1/images HTTP/1.1\r\nHost: {host}\r\nAuthorization: {}\r\nConnection: close\r\n\
         Content-Type: multipart/form-data; boundary={boundary}\r\nContent-Length: 5000000\r\n\r\n\
         --{boundary}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"huge.jpg\"\r\n\r\n",
        user.authorization()
    );
    stream.write_all(head.as_bytes()).expect("write");
    stream.write_all(&big[..4096]).expect("write");
    stream.shutdown(std::net::Shutdown::Write).expect("half-close: the rest never comes");
    stream.set_read_timeout(Some(Duration::from_secs(30))).expect("timeout");
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(answer.contains("20000"), "the problem names the tier's limit: {answer}");
    assert_eq!(listed(&app, &user).len(), 1);
}

#[test]
fn over_uploads_per_hour_is_429_with_retry_after() {
    let app = spawn_app();
    let (_, user) = limited_user(&app, json!({"uploads_per_hour": 3}));
    let first = app.upload_ok(&user, "0.jpg", &jpeg_seeded(64, 48, 0));
    for n in 1..3u8 {
        app.upload(&user, &format!("{n}.jpg"), &jpeg_seeded(64, 48, n)).assert_status(201);
    }
    // Deleting does not give an upload back: the rate counts uploads, not images.
    app.delete_as(&user, &format!("/api/v1/images/{}", id_of(&first["id"]))).assert_status(204);

    let reply = app.upload(&user, "3.jpg", &jpeg_seeded(64, 48, 3));

    let problem = reply.assert_problem(429);
    assert_quota_problem(&problem, RATE_EXCEEDED, "uploads_per_hour", 3, 3);
    let wait: u64 = reply.header("retry-after").expect("Retry-After").parse().expect("seconds");
    assert!((3540..=3660).contains(&wait), "the first upload frees a place in about an hour: {wait}");
    assert_eq!(listed(&app, &user).len(), 2);
    let me = app.me(&user).expect_json(200);
    assert_eq!(me["usage"]["uploads_last_hour"], json!(3), "{me:#}");
    assert_eq!(me["limits"]["uploads_per_hour"], json!(3), "{me:#}");
}

/// 16 parallel uploads of distinct images by a user one image below `max_images`: exactly one
/// lands, the rest are refused, and the counts stay exact.
fn race_at_the_last_place(nodes: &[&TestApp], user: &TestUser) {
    let max = 5u64;
    for n in 0..max - 1 {
        nodes[0].upload_ok(user, &format!("{n}.jpg"), &jpeg_seeded(48, 32, n as u8));
    }
    let statuses: Vec<u16> = std::thread::scope(|s| {
        let racers: Vec<_> = (0..16u8)
            .map(|n| {
                let node = nodes[usize::from(n) % nodes.len()];
                s.spawn(move || node.upload(user, &format!("race-{n}.jpg"), &jpeg_seeded(48, 32, 100 + n)).status)
            })
            .collect();
        racers.into_iter().map(|r| r.join().expect("racer")).collect()
    });
    assert_eq!(statuses.iter().filter(|&&s| s == 201).count(), 1, "exactly one lands: {statuses:?}");
    // The others are over the quota, or (429) found the user's concurrent-upload slots taken.
    assert!(statuses.iter().all(|&s| s == 201 || s == 403 || s == 429), "{statuses:?}");
    assert!(statuses.iter().filter(|&&s| s == 403).count() >= 4, "several raced to the check: {statuses:?}");
    for node in nodes {
        assert_eq!(listed(node, user).len() as u64, max);
        assert_eq!(node.me(user).expect_json(200)["usage"]["images"], json!(max));
    }
}

#[test]
fn racing_uploads_at_the_last_place_create_exactly_one_image() {
    let app = spawn_app();
    let (_, user) = limited_user(&app, json!({"max_images": 5}));
    race_at_the_last_place(&[&app], &user);
}

#[test]
fn racing_uploads_on_two_servers_sharing_postgres_create_exactly_one_image() {
    let Some(redis) = RedisServer::start() else { return };
    let Some(database) = TestDatabase::create() else { return };
    let options = || ServerOptions { redis_url: Some(redis.url()), ..ServerOptions::default() };
    let a = spawn_app_with(ServerOptions { database_url: Some(database.url()), ..options() });
    let b = a.spawn_peer(options());
    let (_, user) = limited_user(&a, json!({"max_images": 5}));
    race_at_the_last_place(&[&a, &b], &user);

    // The upload rate is one count across both servers: it lives in the user's row.
    let (_, paced) = limited_user(&a, json!({"uploads_per_hour": 4}));
    for n in 0..4u8 {
        [&a, &b][usize::from(n % 2)]
            .upload(&paced, &format!("{n}.jpg"), &jpeg_seeded(48, 32, 200 + n))
            .assert_status(201);
    }
    b.upload(&paced, "5.jpg", &jpeg_seeded(48, 32, 250)).assert_problem(429);
    a.upload(&paced, "6.jpg", &jpeg_seeded(48, 32, 251)).assert_problem(429);
}

#[test]
fn a_downgrade_below_usage_blocks_new_uploads_and_deletes_nothing() {
    let app = spawn_app();
    let (tier, user) = limited_user(&app, json!({"max_images": null}));
    let ids: Vec<String> =
        (0..3u8).map(|n| id_of(&app.upload_ok(&user, &format!("{n}.jpg"), &jpeg_seeded(64, 48, n))["id"])).collect();

    let patched = app.patch_tier(&tier, &json!({"max_images": 1})).expect_json(200);
    assert_eq!(patched["max_images"], json!(1));

    let problem = app.upload(&user, "more.jpg", &jpeg_seeded(64, 48, 7)).assert_problem(403);
    assert_quota_problem(&problem, QUOTA_EXCEEDED, "max_images", 3, 1);
    assert_eq!(listed(&app, &user).len(), 3, "nothing is deleted");
    for id in &ids {
        app.wait_until_ready(&user, id);
        app.get_thumbnail(&user, id, 100).assert_status(200);
    }
    let me = app.me(&user).expect_json(200);
    assert_eq!((me["usage"]["images"].clone(), me["limits"]["max_images"].clone()), (json!(3), json!(1)), "{me:#}");

    // Lifting the limit (null: unlimited) lets uploads in again.
    let lifted = app.patch_tier(&tier, &json!({"max_images": null})).expect_json(200);
    assert_eq!(lifted["max_images"], Value::Null);
    app.upload(&user, "more.jpg", &jpeg_seeded(64, 48, 7)).assert_status(201);
}

#[test]
fn me_and_the_admin_users_list_show_limits_and_usage() {
    let app = spawn_app();
    let user = app.create_user("basic");
    let me = app.me(&user).expect_json(200);
    assert_eq!(
        me["limits"],
        json!({"max_images": 100, "max_storage_bytes": 1_073_741_824u64, "max_upload_bytes": 10_485_760, "uploads_per_hour": 60}),
        "the builtin Basic limits: {me:#}"
    );
    assert_eq!(me["tier"]["max_images"], json!(100), "{me:#}");
    assert_eq!(
        me["usage"],
        json!({"images": 0, "storage_bytes": 0, "original_bytes": 0, "thumbnail_bytes": 0, "uploads_last_hour": 0})
    );

    let bytes = jpeg(320, 240);
    let image = app.upload_ok(&user, "a.jpg", &bytes);
    let ready = app.wait_until_ready(&user, &id_of(&image["id"]));
    let thumbnail_bytes: u64 = ready["thumbnails"]
        .as_array()
        .expect("thumbnails")
        .iter()
        .flat_map(|t| t["formats"].as_array().expect("formats").iter())
        .map(|f| f["size_bytes"].as_u64().expect("a ready variant's size"))
        .sum();
    let usage = app.me(&user).expect_json(200)["usage"].clone();
    assert_eq!(
        usage,
        json!({
            "images": 1,
            "storage_bytes": bytes.len() as u64 + thumbnail_bytes,
            "original_bytes": bytes.len(),
            "thumbnail_bytes": thumbnail_bytes,
            "uploads_last_hour": 1,
        })
    );

    let users = app.list_users().expect_json(200);
    let listed =
        users["results"].as_array().expect("results").iter().find(|u| u["id"] == json!(user.id)).expect("listed");
    assert_eq!(listed["image_count"], json!(1));
    assert_eq!(listed["uploads_last_hour"], json!(1));
    assert_eq!(listed["limits"]["max_images"], json!(100), "{listed:#}");
    assert_eq!(listed["limits"]["uploads_per_hour"], json!(60), "{listed:#}");
    let enterprise = app.create_user("enterprise");
    let me = app.me(&enterprise).expect_json(200);
    assert_eq!(me["limits"]["max_images"], Value::Null, "Enterprise is unlimited: {me:#}");
    assert!(me["limits"]["max_upload_bytes"].as_u64().is_some(), "the server's own limit is stated: {me:#}");
}

#[test]
fn tier_limits_are_validated_naming_the_field() {
    let app = spawn_app();
    let base = json!({"id": "bad-limits", "name": "Bad", "thumbnail_heights": [100]});
    for (field, bad) in [
        ("max_images", json!(-1)),
        ("max_images", json!("10")),
        ("max_storage_bytes", json!(1.5)),
        ("max_upload_bytes", json!(0)),
        ("max_upload_bytes", json!(1u64 << 40)),
        ("uploads_per_hour", json!(0)),
    ] {
        let mut body = base.clone();
        body[field] = bad.clone();
        let problem = app.post_tier(&body).assert_problem(400);
        assert!(problem["errors"][field].is_array(), "{field} = {bad}: {problem:#}");
        let problem = app.patch_tier("basic", &json!({field: bad})).assert_problem(400);
        assert!(problem["errors"][field].is_array(), "{field} = {bad}: {problem:#}");
    }
    assert_eq!(app.get_tier("basic").expect_json(200)["max_images"], json!(100), "a refused edit changes nothing");
    // Absent keeps a limit; null lifts it.
    app.patch_tier("basic", &json!({"name": "Basic"})).assert_status(200);
    assert_eq!(app.get_tier("basic").expect_json(200)["uploads_per_hour"], json!(60));
    app.patch_tier("basic", &json!({"uploads_per_hour": null})).assert_status(200);
    assert_eq!(app.get_tier("basic").expect_json(200)["uploads_per_hour"], Value::Null);
}

#[test]
fn the_same_bytes_again_give_the_same_image_with_200_and_count_nothing() {
    let app = spawn_app();
    let user = app.create_user("premium");
    let bytes = jpeg_seeded(320, 240, 42);
    let first = app.upload(&user, "photo.jpg", &bytes);
    first.assert_status(201);
    let first = first.json();
    let id = id_of(&first["id"]);
    assert_eq!(first["sha256"], json!(sha256_hex(&bytes)), "{first:#}");

    // Again, and under another file name.
    for name in ["photo.jpg", "renamed.jpg"] {
        let again = app.upload(&user, name, &bytes);
        again.assert_status(200);
        assert_eq!(again.header("content-location"), Some(app.url(&format!("/api/v1/images/{id}")).as_str()));
        let body = again.json();
        assert_eq!(body["id"], json!(id));
        assert_eq!(body["name"], json!("photo.jpg"), "the image as first uploaded");
    }
    assert_eq!(listed(&app, &user), vec![id.clone()]);
    let usage = app.me(&user).expect_json(200)["usage"].clone();
    assert_eq!((usage["images"].clone(), usage["uploads_last_hour"].clone()), (json!(1), json!(1)), "{usage:#}");
    // One job in all (made, running or waiting), not one per upload.
    let queue = app.queue();
    let jobs: u64 = ["pending", "running", "done"].iter().map(|k| queue[*k].as_u64().expect("a count")).sum();
    assert_eq!(jobs, 1, "{queue:#}");

    // Another owner's identical bytes are theirs alone: a new image.
    let other = app.create_user("premium");
    let theirs = app.upload(&other, "photo.jpg", &bytes);
    theirs.assert_status(201);
    assert_ne!(theirs.json()["id"], json!(id));
    assert_eq!(listed(&app, &user), vec![id.clone()], "the first owner's list is unchanged");

    // Deleted, then uploaded again: a new image.
    app.delete_as(&user, &format!("/api/v1/images/{id}")).assert_status(204);
    let fresh = app.upload(&user, "photo.jpg", &bytes);
    fresh.assert_status(201);
    assert_ne!(fresh.json()["id"], json!(id));
}

#[test]
fn identical_uploads_racing_make_one_image() {
    let app = spawn_app();
    let user = app.create_user("premium");
    let bytes = jpeg_seeded(320, 240, 77);
    let statuses: Vec<(u16, Value)> = std::thread::scope(|s| {
        let racers: Vec<_> = (0..8)
            .map(|_| {
                s.spawn(|| {
                    let reply = app.upload(&user, "same.jpg", &bytes);
                    (reply.status, reply.json())
                })
            })
            .collect();
        racers.into_iter().map(|r| r.join().expect("racer")).collect()
    });
    let ids: std::collections::BTreeSet<String> = statuses.iter().map(|(_, body)| id_of(&body["id"])).collect();
    assert_eq!(ids.len(), 1, "one image for all: {statuses:?}");
    assert_eq!(statuses.iter().filter(|(s, _)| *s == 201).count(), 1);
    assert_eq!(statuses.iter().filter(|(s, _)| *s == 200).count(), 7);
    assert_eq!(listed(&app, &user).len(), 1);
    let usage = app.me(&user).expect_json(200)["usage"].clone();
    assert_eq!(usage["original_bytes"], json!(bytes.len()), "counted once: {usage:#}");
    // No orphaned originals: only the one image's blobs remain (originals are `original.*`).
    let blobs = walk(&app.blob_dir());
    assert_eq!(blobs.iter().filter(|p| p.contains("original")).count(), 1, "{blobs:?}");
}

fn walk(dir: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                out.extend(walk(&path));
            } else {
                out.push(path.display().to_string());
            }
        }
    }
    out
}

#[test]
fn a_retry_after_the_connection_dropped_before_the_answer_makes_no_second_image() {
    let app = spawn_app();
    let user = app.create_user("premium");
    let bytes = jpeg_seeded(320, 240, 5);

    // The whole request sent, then the connection closed before the answer is read.
    let host = app.address.strip_prefix("http://").expect("http").to_owned();
    let boundary = "retry-boundary";
    let mut body = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"r.jpg\"\r\n\
         Content-Type: image/jpeg\r\n\r\n"
    )
    .into_bytes();
    body.extend_from_slice(&bytes);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    let head = format!(
        "POST /api/v1/images HTTP/1.1\r\nHost: {host}\r\nAuthorization: {}\r\n\
         Content-Type: multipart/form-data; boundary={boundary}\r\nContent-Length: {}\r\n\r\n",
        user.authorization(),
        body.len()
    );
    let mut stream = TcpStream::connect(&host).expect("connect");
    stream.write_all(head.as_bytes()).expect("write");
    stream.write_all(&body).expect("write");
    drop(stream);
    // Whether the dropped request landed or not, give it its chance to.
    let started = Instant::now();
    while listed(&app, &user).is_empty() && started.elapsed() < Duration::from_secs(3) {
        std::thread::sleep(Duration::from_millis(50));
    }

    let retry = app.upload(&user, "r.jpg", &bytes);

    assert!(retry.status == 200 || retry.status == 201, "{}", retry.status);
    let id = id_of(&retry.json()["id"]);
    eventually(Duration::from_secs(5), "the retry's image, alone", || {
        (listed(&app, &user) == vec![id.clone()]).then_some(())
    });
    assert_eq!(app.me(&user).expect_json(200)["usage"]["images"], json!(1));
}
