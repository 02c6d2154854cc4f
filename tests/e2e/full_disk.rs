//! A full disk, for real: the data (or blob) directory on a small tmpfs, filled with uploads.
//! Nothing acknowledged is lost or truncated, uploads that cannot be stored answer 507 with
//! `Retry-After` and leave nothing behind, reads go on, thumbnails wait for room instead of
//! failing, and everything recovers once there is room (also after a SIGKILL and a restart).
//!
//! Mounting needs root (CI runs as root): elsewhere these tests say so and pass, unless
//! `IMAGEAPI_REQUIRE_ROOT_TESTS` is set.

use std::path::{Path, PathBuf};
use std::time::Duration;

use imageapi_shared::testing::small_fs::SmallFs;
use serde_json::Value;

use crate::fixtures::{corpus, distinct};
use crate::helpers::{
    eventually, id_of, metric_value, spawn_app_with, RedisServer, Reply, ServerOptions, TestApp, TestUser,
    WorkerOptions, WorkerProcess,
};

const MIB: u64 = 1024 * 1024;

/// The corpus, smallest first, so that a nearly full disk still takes the small ones.
const CORPUS: &[&str] = &[
    "art-grey-2560x1600-gray.jpg",
    "photo-summer-2560x1600-progressive.jpg",
    "art-painting-6000x4000.jpg",
    "art-kay-1080x1920-portrait.png",
    "art-safelanding-1622x2880-portrait.jpg",
    "art-safelanding-5120x2880.jpg",
    "photo-altai-5120x2880-rgb.png",
    "photo-bird-6028x3391.jpg",
    "photo-volna-5120x2880-progressive.jpg",
    "art-kay-5120x2880-rgba.png",
];

fn corpus_files() -> Option<Vec<(&'static str, Vec<u8>)>> {
    CORPUS.iter().map(|name| corpus(name).map(|bytes| (*name, bytes))).collect()
}

/// What uploading until the disk refuses gave.
struct Filled {
    /// (image id, the bytes sent) of every 201.
    acknowledged: Vec<(String, Vec<u8>)>,
    refused: usize,
}

/// Uploads corpus files round after round until every file of a round is refused (or 60
/// uploads); every answer must be 201 or a 507 problem with `Retry-After`.
fn upload_until_refused(app: &TestApp, user: &TestUser, files: &[(&str, Vec<u8>)]) -> Filled {
    let mut filled = Filled { acknowledged: Vec::new(), refused: 0 };
    let mut refused_in_a_row = 0;
    for (n, (name, file)) in files.iter().cycle().take(60).enumerate() {
        // Each round's copy is other bytes: the same bytes again would be the image already held.
        let bytes = distinct(file, n as u64);
        let reply = app.upload(user, name, &bytes);
        if reply.status == 201 {
            filled.acknowledged.push((id_of(&reply.json()["id"]), bytes));
            refused_in_a_row = 0;
            continue;
        }
        assert_out_of_space(&reply);
        filled.refused += 1;
        refused_in_a_row += 1;
        if refused_in_a_row == files.len() {
            break;
        }
    }
    filled
}

#[track_caller]
fn assert_out_of_space(reply: &Reply) {
    let problem = reply.assert_problem(507);
    assert_eq!(problem["type"], "https://imageapi.dev/problems/insufficient-storage", "{problem:#}");
    let retry_after = reply.header("retry-after").and_then(|v| v.parse::<u64>().ok());
    assert!(retry_after.is_some_and(|secs| secs > 0), "a 507 says when to retry: {:?}", reply.headers);
}

/// Every file under `dir` whose name says it is a temporary blob.
fn temporary_files(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else { return found };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            found.extend(temporary_files(&path));
        } else if entry.file_name().to_string_lossy().starts_with(".tmp") {
            found.push(path);
        }
    }
    found
}

fn listed_ids(app: &TestApp, user: &TestUser) -> Vec<String> {
    let list = app.list_images(user, "limit=100").expect_json(200);
    assert!(list["next"].is_null(), "fewer than 100 images: {list:#}");
    list["results"].as_array().expect("results").iter().map(|image| id_of(&image["id"])).collect()
}

#[track_caller]
fn assert_originals_byte_for_byte(app: &TestApp, user: &TestUser, acknowledged: &[(String, Vec<u8>)]) {
    for (id, bytes) in acknowledged {
        let original = app.get_original(user, id);
        original.assert_status(200);
        assert!(
            original.body == *bytes,
            "image {id}: the original is {} bytes, {} were uploaded",
            original.body.len(),
            bytes.len()
        );
    }
}

fn readiness(app: &TestApp) -> Value {
    app.get_anonymous("/readyz").expect_json(200)
}

#[test]
fn a_full_disk_answers_507_loses_nothing_acknowledged_and_recovers_after_a_restart() {
    let Some(files) = corpus_files() else { return };
    let Some(fs) = SmallFs::mount(40 * MIB) else { return };
    // The whole data dir (sled and blobs; only blobs with PostgreSQL) on the small disk.
    let options = ServerOptions {
        env: vec![
            ("IMAGEAPI_DATA_DIR", fs.path().join("data").display().to_string()),
            ("IMAGEAPI_MIN_FREE_BYTES", (8 * MIB).to_string()),
        ],
        ..ServerOptions::default()
    };
    let mut app = spawn_app_with(options.clone());
    let user = app.create_user("premium");

    let Filled { acknowledged, refused } = upload_until_refused(&app, &user, &files);

    assert!(acknowledged.len() >= 3 && refused > 0, "{} stored, {refused} refused", acknowledged.len());
    // Reads go on while uploads are refused.
    assert_eq!(listed_ids(&app, &user).len(), acknowledged.len(), "a refused upload leaves no record");
    assert_originals_byte_for_byte(&app, &user, &acknowledged);
    let first = &acknowledged[0].0;
    app.wait_until_ready_within(&user, first, Duration::from_secs(60));
    app.get_thumbnail(&user, first, 200).assert_status(200);
    let ready = readiness(&app);
    assert_eq!(
        (ready["status"].as_str(), ready["checks"]["disk"].as_str()),
        (Some("degraded"), Some("low")),
        "{ready:#}"
    );
    let metrics = app.get_as(&app.admin, "/metrics").text();
    assert!(metric_value(&metrics, "imageapi_disk_free_bytes{store=\"blobs\"}") > 0.0, "free space is exported");
    assert_eq!(metric_value(&metrics, "imageapi_disk_min_free_bytes"), (8 * MIB) as f64);
    assert_eq!(temporary_files(fs.path()), Vec::<PathBuf>::new(), "no temporary file left behind");
    let log = app.server_log().unwrap_or_default();
    assert!(!log.contains("request failed"), "no 500 and no error chain in the log:\n{log}");
    let refusal_lines = log.lines().filter(|line| line.contains("upload refused")).count();
    assert!(refusal_lines <= refused, "one line per refused upload, {refusal_lines} for {refused}:\n{log}");

    // A hard stop on a full disk, then room.
    app.kill();
    fs.resize(400 * MIB);
    app.start_again(options);

    assert_eq!(listed_ids(&app, &user).len(), acknowledged.len(), "every acknowledged upload, and only those");
    assert_originals_byte_for_byte(&app, &user, &acknowledged);
    for (id, _) in &acknowledged {
        app.wait_until_ready_within(&user, id, Duration::from_secs(120));
    }
    app.upload_ok(&user, files[0].0, &distinct(&files[0].1, 10_000));
    assert_eq!(readiness(&app)["checks"]["disk"], "ok");
}

#[test]
fn a_blob_write_that_meets_a_full_disk_is_507_and_leaves_nothing_behind() {
    // No floor: the uploads themselves meet ENOSPC while the original is written (the write
    // path that once acknowledged truncated originals).
    let Some(files) = corpus_files() else { return };
    let Some(fs) = SmallFs::mount(24 * MIB) else { return };
    let blobs = fs.path().join("blobs");
    let options = ServerOptions {
        env: vec![("IMAGEAPI_BLOB_DIR", blobs.display().to_string()), ("IMAGEAPI_MIN_FREE_BYTES", "0".to_owned())],
        ..ServerOptions::default()
    };
    let app = spawn_app_with(options);
    let user = app.create_user("premium");

    let Filled { acknowledged, refused } = upload_until_refused(&app, &user, &files);

    assert!(acknowledged.len() >= 2 && refused > 0, "{} stored, {refused} refused", acknowledged.len());
    assert_eq!(temporary_files(&blobs), Vec::<PathBuf>::new(), "no temporary file left behind");
    assert_eq!(listed_ids(&app, &user).len(), acknowledged.len(), "a refused upload leaves no record");
    assert_originals_byte_for_byte(&app, &user, &acknowledged);
    assert!(!app.server_log().unwrap_or_default().contains("request failed"), "no 500 in the log");

    fs.resize(200 * MIB);
    for (id, _) in &acknowledged {
        app.wait_until_ready_within(&user, id, Duration::from_secs(60));
    }
    // Free space is measured every second (and before refusing, unless the last measurement
    // is under 100 ms old): an upload may be refused once more right after the room came.
    let after = eventually(Duration::from_secs(5), "an upload accepted once there is room", || {
        let reply = app.upload(&user, files[0].0, &distinct(&files[0].1, 10_000));
        (reply.status == 201).then(|| reply.json())
    });
    app.wait_until_ready(&user, &id_of(&after["id"]));
}

/// Uploads three corpus images to `app`, whose thumbnails are not being made yet.
fn three_pending_uploads(app: &TestApp, user: &TestUser, files: &[(&str, Vec<u8>)]) -> Vec<String> {
    files[..3].iter().map(|(name, bytes)| id_of(&app.upload_ok(user, name, bytes)["id"])).collect()
}

/// Waits a few seconds on a full disk: the thumbnails stay pending (never failed), some job
/// shows as waiting for space, then room comes back and every thumbnail is made.
fn pending_while_full_then_ready(
    app: &TestApp,
    user: &TestUser,
    ids: &[String],
    fs: &SmallFs,
    waiting_for_space: impl Fn() -> f64,
) {
    eventually(Duration::from_secs(30), "a job waiting for space", || (waiting_for_space() >= 1.0).then_some(()));
    std::thread::sleep(Duration::from_secs(2));
    for id in ids {
        let image = app.image(user, id);
        let statuses: Vec<&str> =
            image["thumbnails"].as_array().expect("thumbnails").iter().filter_map(|t| t["status"].as_str()).collect();
        assert!(statuses.iter().all(|s| *s == "pending"), "pending while the disk is full: {image:#}");
    }
    let queue = app.queue();
    assert_eq!(queue["failed"], 0, "no job given up: {queue:#}");

    fs.unfill();
    for id in ids {
        app.wait_until_ready_within(user, id, Duration::from_secs(60));
    }
    eventually(Duration::from_secs(10), "no job waiting for space", || (waiting_for_space() == 0.0).then_some(()));
}

#[test]
fn embedded_thumbnails_wait_for_room_on_a_full_disk_and_are_made_once_there_is_some() {
    let Some(files) = corpus_files() else { return };
    let Some(fs) = SmallFs::mount(64 * MIB) else { return };
    let env = vec![
        ("IMAGEAPI_BLOB_DIR", fs.path().join("blobs").display().to_string()),
        ("IMAGEAPI_MIN_FREE_BYTES", MIB.to_string()),
    ];
    let mut app = spawn_app_with(ServerOptions { workers: Some(0), env: env.clone(), ..ServerOptions::default() });
    let user = app.create_user("premium");
    let ids = three_pending_uploads(&app, &user, &files);
    assert!(app.terminate().success());

    fs.fill_leaving(0);
    app.start_again(ServerOptions { env, ..ServerOptions::default() });
    assert_eq!(readiness(&app)["checks"]["disk"], "low");

    let metrics = || metric_value(&app.get_as(&app.admin, "/metrics").text(), "imageapi_worker_jobs_waiting_for_space");
    pending_while_full_then_ready(&app, &user, &ids, &fs, metrics);
}

#[test]
fn worker_thumbnails_wait_for_room_on_a_full_disk_and_are_made_once_there_is_some() {
    let Some(files) = corpus_files() else { return };
    let Some(fs) = SmallFs::mount(64 * MIB) else { return };
    let Some(redis) = RedisServer::start() else { return };
    let blobs = fs.path().join("blobs").display().to_string();
    let app = spawn_app_with(ServerOptions {
        redis_url: Some(redis.url()),
        env: vec![("IMAGEAPI_BLOB_DIR", blobs.clone()), ("IMAGEAPI_MIN_FREE_BYTES", MIB.to_string())],
        ..ServerOptions::default()
    });
    let user = app.create_user("premium");
    let ids = three_pending_uploads(&app, &user, &files);

    fs.fill_leaving(0);
    let worker = WorkerProcess::spawn(
        &app,
        &redis,
        "full-disk",
        WorkerOptions { store_env: Some(vec![("IMAGEAPI_BLOB_DIR", blobs)]), ..WorkerOptions::default() },
    );

    pending_while_full_then_ready(&app, &user, &ids, &fs, || worker.metric("imageapi_worker_jobs_waiting_for_space"));
    assert_eq!(worker.metric("imageapi_worker_jobs_dead_total"), 0.0);
}

#[test]
fn sled_on_a_full_disk_refuses_writes_serves_reads_and_is_whole_after_a_restart() {
    // Without a floor, and with the disk filled behind the server's back, sled itself meets
    // the wall: what sled 0.34 does then is what this pins down end to end.
    let Some(files) = corpus_files() else { return };
    let Some(fs) = SmallFs::mount(64 * MIB) else { return };
    let options = ServerOptions {
        sled: true,
        env: vec![
            ("IMAGEAPI_DATA_DIR", fs.path().join("data").display().to_string()),
            ("IMAGEAPI_MIN_FREE_BYTES", "0".to_owned()),
        ],
        ..ServerOptions::default()
    };
    let mut app = spawn_app_with(options.clone());
    let user = app.create_user("premium");
    let (name, bytes) = &files[0];
    let id = id_of(&app.upload_ok(&user, name, bytes)["id"]);
    app.wait_until_ready(&user, &id);
    fs.fill_leaving(0);

    // Small metadata writes until one meets the full disk.
    let mut tiers = Vec::new();
    let refusal = (0..5000)
        .find_map(|n| {
            let tier = format!("full-{n}");
            let reply = app.post_tier(&serde_json::json!({
                "id": tier, "name": tier, "thumbnail_heights": [100], "original_link": false, "expiring_links": false,
            }));
            if reply.status == 201 {
                tiers.push(tier);
                return None;
            }
            Some(reply)
        })
        .expect("a write meets the full disk");
    assert_out_of_space(&refusal);

    assert_out_of_space(&app.upload(&user, name, &distinct(bytes, 1)));
    let ready = readiness(&app);
    assert_eq!(
        (ready["status"].as_str(), ready["checks"]["metadata"].as_str()),
        (Some("degraded"), Some("read-only")),
        "{ready:#}"
    );
    assert_eq!(listed_ids(&app, &user), vec![id.clone()], "reads go on");
    assert_originals_byte_for_byte(&app, &user, &[(id.clone(), bytes.clone())]);
    app.get_thumbnail(&user, &id, 400).assert_status(200);
    fs.unfill();
    assert_out_of_space(&app.post_tier(&serde_json::json!({
        "id": "after-room", "name": "x", "thumbnail_heights": [100], "original_link": false, "expiring_links": false,
    })));
    assert_eq!(readiness(&app)["checks"]["metadata"], "read-only", "sled takes writes again only once restarted");

    app.kill();
    app.start_again(options);

    assert_eq!(listed_ids(&app, &user), vec![id.clone()]);
    assert_originals_byte_for_byte(&app, &user, &[(id.clone(), bytes.clone())]);
    for tier in &tiers {
        app.get_tier(tier).assert_status(200);
    }
    let again = id_of(&app.upload_ok(&user, name, &distinct(bytes, 2))["id"]);
    app.wait_until_ready(&user, &again);
    assert_eq!(readiness(&app)["status"], "ready");
}
