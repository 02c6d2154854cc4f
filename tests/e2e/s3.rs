//! Blobs in S3: the real server and workers against a real S3 protocol server (`s3s-fs`, which
//! checks SigV4 signatures) on a free port. Outages are real: the S3 process is killed and
//! started again.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use image::ImageFormat;
use reqwest::Method;
use serde_json::{json, Value};

use crate::fixtures::{encode_png, jpeg_seeded, png_seeded, pseudo_random_bytes};
use crate::helpers::{
    eventually, id_of, result_ids, server_binary, spawn_app_with, RedisServer, S3Server, ServerOptions, TestApp,
    TestUser, WorkerOptions, WorkerProcess,
};

const SLOW: Duration = Duration::from_secs(60);

fn s3_options(s3: &S3Server, prefix: &str) -> ServerOptions {
    ServerOptions { env: s3.env(prefix), ..ServerOptions::default() }
}

/// Every file under `dir` (s3s-fs keeps one file per object), relative, sorted.
fn stored_objects(dir: &Path) -> Vec<String> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
        let Ok(entries) = std::fs::read_dir(dir) else { return };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                walk(root, &path, out);
            } else if let Ok(relative) = path.strip_prefix(root) {
                out.push(relative.display().to_string());
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

/// A PNG of noise, larger than the size up to which blobs are served whole (512 KiB), so
/// that reads of it stream.
fn large_png() -> Vec<u8> {
    let (w, h) = (700, 400);
    let noise = pseudo_random_bytes((w * h * 3) as usize, 7);
    let bytes = encode_png(&image::DynamicImage::ImageRgb8(image::RgbImage::from_raw(w, h, noise).expect("noise")));
    assert!(bytes.len() > 600 * 1024, "the fixture must be larger than 512 KiB, it is {}", bytes.len());
    bytes
}

fn assert_ready_thumbnails(
    app: &TestApp,
    user: &TestUser,
    id: &str,
    heights: &[u32],
    format: ImageFormat,
    source: (u32, u32),
) {
    let image = app.wait_until_ready_within(user, id, SLOW);
    app.assert_thumbnail_entries(&image, heights, source);
    for &height in heights {
        app.assert_thumbnail(user, id, height, format, source);
    }
}

#[test]
fn the_core_paths_work_with_blobs_in_s3_in_embedded_mode() {
    let Some(s3) = S3Server::start() else { return };
    let app = spawn_app_with(s3_options(&s3, "blobs"));
    exercise_core_paths(&app, &s3);
}

#[test]
fn the_core_paths_work_with_blobs_in_s3_and_two_workers_sharing_no_directory() {
    let Some(s3) = S3Server::start() else { return };
    let Some(redis) = RedisServer::start() else { return };
    let mut options = s3_options(&s3, "blobs");
    options.redis_url = Some(redis.url());
    let app = spawn_app_with(options);
    let worker_options = WorkerOptions { store_env: Some(s3.env("blobs")), ..WorkerOptions::default() };
    let _first = WorkerProcess::spawn(&app, &redis, "s3-w1", worker_options.clone());
    let _second = WorkerProcess::spawn(&app, &redis, "s3-w2", worker_options);
    exercise_core_paths(&app, &s3);
    assert!(!app.blob_dir().exists(), "the server keeps no blob directory with S3");
}

/// Uploads of each format, list, thumbnails, the original whole, by range and revalidated, an
/// expiring link, a tier change's backfill and a delete, all with blobs under `blobs/` in S3.
fn exercise_core_paths(app: &TestApp, s3: &S3Server) {
    let user = app.create_user("enterprise");
    let ready = app.get_anonymous("/readyz");
    assert_eq!(ready.json()["checks"]["blobs"], json!("ok"), "{}", ready.text());

    // Upload of each format, thumbnails made and served from S3.
    let jpeg = jpeg_seeded(640, 480, 1);
    let jpeg_id = id_of(&app.upload_ok(&user, "photo.jpg", &jpeg)["id"]);
    let png = large_png();
    let png_id = id_of(&app.upload_ok(&user, "noise.png", &png)["id"]);
    assert_ready_thumbnails(app, &user, &jpeg_id, &[200, 400], ImageFormat::Jpeg, (640, 480));
    assert_ready_thumbnails(app, &user, &png_id, &[200, 400], ImageFormat::Png, (700, 400));
    let listed = app.list_images(&user, "").expect_json(200);
    let ids = result_ids(&listed);
    assert_eq!(ids.len(), 2, "{listed:#}");
    assert!(ids.contains(&jpeg_id) && ids.contains(&png_id), "{listed:#}");
    let objects = stored_objects(&s3.objects("blobs"));
    assert!(objects.iter().any(|o| o.starts_with("originals/") && o.ends_with(&jpeg_id)), "{objects:?}");
    // The original, and 2 heights in 3 formats (PNG, WebP, AVIF).
    assert_eq!(objects.iter().filter(|o| o.contains(&png_id)).count(), 7, "original + 6 thumbnails: {objects:?}");
    for extension in ["200.png", "200.webp", "200.avif", "400.png", "400.webp", "400.avif"] {
        assert!(objects.iter().any(|o| o.contains(&png_id) && o.ends_with(extension)), "{extension}: {objects:?}");
    }

    // The original, whole (small: one read; large: streamed), by range, and revalidated.
    for (id, bytes) in [(&jpeg_id, &jpeg), (&png_id, &png)] {
        let full = app.get_original(&user, id);
        full.assert_status(200);
        assert!(full.body == **bytes, "the original comes back byte for byte");
        let path = format!("/api/v1/images/{id}/original");
        let (start, end) = (100usize, bytes.len() - 1000);
        let partial =
            app.send(app.request(Method::GET, &path, Some(&user)).header("range", format!("bytes={start}-{end}")));
        partial.assert_status(206);
        assert_eq!(partial.header("content-range"), Some(format!("bytes {start}-{end}/{}", bytes.len()).as_str()));
        assert!(partial.body == bytes[start..=end], "the range holds exactly the bytes asked for");
        let etag = full.header("etag").expect("an ETag").to_owned();
        let revalidated = app.send(app.request(Method::GET, &path, Some(&user)).header("if-none-match", etag));
        revalidated.assert_status(304);
    }

    // An expiring link serves the same bytes to anyone.
    let link = app.create_link_ok(&user, &png_id, &json!({"expires_in": 600, "variant": "original"}));
    let fetched = app.get_anonymous(link["url"].as_str().expect("a link url"));
    fetched.assert_status(200);
    assert!(fetched.body == png, "the link serves the original");

    // A tier change backfills the new height into S3.
    let basic = app.create_user("basic");
    let basic_id = id_of(&app.upload_ok(&basic, "b.jpg", &jpeg_seeded(500, 400, 2))["id"]);
    assert_ready_thumbnails(app, &basic, &basic_id, &[200], ImageFormat::Jpeg, (500, 400));
    app.patch_user(&basic.id, &json!({"tier": "premium"})).assert_status(200);
    assert_ready_thumbnails(app, &basic, &basic_id, &[200, 400], ImageFormat::Jpeg, (500, 400));

    // Delete removes every object of the image.
    app.delete_image(&user, &png_id).assert_status(204);
    app.get_original(&user, &png_id).assert_status(404);
    let objects = stored_objects(&s3.objects("blobs"));
    assert!(!objects.iter().any(|o| o.contains(&png_id)), "objects of a deleted image remain: {objects:?}");
    assert!(objects.iter().any(|o| o.contains(&jpeg_id)), "the other image's objects stay: {objects:?}");
}

#[test]
fn with_s3_away_uploads_answer_503_record_nothing_and_accepted_ones_get_their_thumbnails() {
    let Some(mut s3) = S3Server::start() else { return };
    let app = spawn_app_with(s3_options(&s3, "blobs"));
    let user = app.create_user("premium");

    // A burst of uploads from 4 clients, with S3 killed in the middle of it and back later.
    let accepted = std::sync::Mutex::new(Vec::new());
    let unavailable = std::sync::atomic::AtomicUsize::new(0);
    std::thread::scope(|scope| {
        for client in 0..4u8 {
            let (app, user, accepted, unavailable) = (&app, &user, &accepted, &unavailable);
            scope.spawn(move || {
                for n in 0..10u8 {
                    let size = (320 + u32::from(n) * 8, 240);
                    let reply = app.upload(user, "burst.jpg", &jpeg_seeded(size.0, size.1, client * 16 + n));
                    match reply.status {
                        201 => accepted.lock().expect("lock").push((id_of(&reply.json()["id"]), size)),
                        503 => {
                            assert!(reply.header("retry-after").is_some(), "a 503 says when to retry");
                            reply.assert_problem(503);
                            unavailable.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        }
                        other => panic!("an upload answered {other} while S3 was away: {}", reply.text()),
                    }
                    std::thread::sleep(Duration::from_millis(50));
                }
            });
        }
        std::thread::sleep(Duration::from_millis(400));
        s3.stop();
        // While it is away, readiness says which check fails.
        let ready = app.get_anonymous("/readyz");
        assert_eq!(ready.status, 503, "{}", ready.text());
        assert_eq!(ready.json()["checks"]["blobs"], json!("error"), "{}", ready.text());
        std::thread::sleep(Duration::from_secs(3));
        s3.start_again();
    });
    let accepted = accepted.into_inner().expect("lock");
    let unavailable = unavailable.into_inner();
    assert!(unavailable > 0, "no upload met the outage ({} accepted)", accepted.len());
    assert!(!accepted.is_empty(), "no upload was accepted");

    // Nothing was recorded for a 503, and every 201 ends with ready thumbnails.
    let listed = app.list_images(&user, "limit=100").expect_json(200);
    assert_eq!(result_ids(&listed).len(), accepted.len(), "only accepted uploads are listed");
    for (id, size) in &accepted {
        assert_ready_thumbnails(&app, &user, id, &[200, 400], ImageFormat::Jpeg, *size);
    }
}

/// A worker configured with `IMAGEAPI_DATA_DIR` alone, in a working directory of its own.
fn worker_with_data_dir(app: &TestApp, redis: &RedisServer, name: &str, data_dir: &Path) -> WorkerProcess {
    let store_env = Some(vec![("IMAGEAPI_DATA_DIR", data_dir.display().to_string())]);
    WorkerProcess::spawn(app, redis, name, WorkerOptions { store_env, ..WorkerOptions::default() })
}

/// The worker's `/healthz`: status and body.
fn worker_health(worker: &WorkerProcess) -> (u16, Value) {
    let url = worker.metrics_url().replace("/metrics", "/healthz");
    crate::helpers::install_tls_provider();
    let reply = reqwest::blocking::get(&url).unwrap_or_else(|e| panic!("GET {url}: {e}"));
    let status = reply.status().as_u16();
    (status, reply.json().unwrap_or(Value::Null))
}

#[test]
fn a_worker_that_does_not_see_the_servers_store_takes_no_jobs_and_says_so() {
    // The server keeps blobs in its data dir; the misconfigured worker has its own (the
    // situation the issue reports: IMAGEAPI_DATA_DIR honoured, but pointing elsewhere).
    let Some(redis) = RedisServer::start() else { return };
    let app = spawn_app_with(ServerOptions { redis_url: Some(redis.url()), ..ServerOptions::default() });
    let elsewhere = tempfile::tempdir().expect("another data dir");
    let wrong = worker_with_data_dir(&app, &redis, "wrong", elsewhere.path());
    let (status, body) = eventually(SLOW, "the wrong worker's /healthz to say misconfigured", || {
        let (status, body) = worker_health(&wrong);
        (body["status"] == "misconfigured").then_some((status, body))
    });
    assert_eq!(status, 503, "{body:#}");
    let problem = body["problem"].as_str().expect("a problem").to_owned();
    assert!(problem.contains(&elsewhere.path().display().to_string()), "names the worker's store: {problem}");
    assert!(problem.contains(&app.blob_dir().display().to_string()), "names the server's store: {problem}");

    let queue = eventually(SLOW, "the admin queue to show the misconfigured worker", || {
        let queue = app.queue();
        let shown = queue["workers"].as_array()?.iter().any(|w| w["name"] == "wrong" && w["status"] == "misconfigured");
        shown.then_some(queue)
    });
    let shown = queue["workers"].as_array().expect("workers").iter().find(|w| w["name"] == "wrong").cloned();
    assert!(shown.is_some_and(|w| w["problem"].as_str().is_some_and(|p| p.contains("store"))), "{queue:#}");

    // Uploads wait for a worker that sees the store; none fails.
    let user = app.create_user("premium");
    let uploads: Vec<(String, (u32, u32))> = (0..4u8)
        .map(|n| {
            let size = (360 + u32::from(n) * 8, 240);
            (id_of(&app.upload_ok(&user, "m.jpg", &jpeg_seeded(size.0, size.1, n))["id"]), size)
        })
        .collect();
    std::thread::sleep(Duration::from_secs(3));
    for (id, _) in &uploads {
        let image = app.image(&user, id);
        let statuses: Vec<&Value> =
            image["thumbnails"].as_array().expect("thumbnails").iter().map(|t| &t["status"]).collect();
        assert!(statuses.iter().all(|s| *s == "pending"), "the wrong worker must take no job: {image:#}");
    }
    assert_eq!(wrong.metric("imageapi_worker_jobs_total{result=\"ready\"}"), 0.0);

    // A worker configured by IMAGEAPI_DATA_DIR alone, like the server, makes them.
    let right = worker_with_data_dir(&app, &redis, "right", &app.data_dir());
    for (id, size) in &uploads {
        assert_ready_thumbnails(&app, &user, id, &[200, 400], ImageFormat::Jpeg, *size);
    }
    assert_eq!(worker_health(&right).0, 200);
    assert_eq!(worker_health(&wrong).0, 503, "the wrong worker stays out");
}

fn run_server_command(app: &TestApp, args: &[&str], env: &[(&'static str, String)]) -> std::process::Output {
    let mut command = Command::new(server_binary());
    command.env_clear();
    if let Some(url) = app.database_url() {
        command.env("IMAGEAPI_DATABASE_URL", url);
    }
    command
        .args(args)
        .env("IMAGEAPI_DATA_DIR", app.data_dir())
        .env("RUST_LOG", "warn")
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command.spawn().expect("start imageapi-server");
    let started = Instant::now();
    // A command that should have ended but serves instead must fail the test, not hang it.
    while child.try_wait().expect("wait for the command").is_none() {
        if started.elapsed() > SLOW {
            let _ = child.kill();
            panic!("`imageapi-server {}` did not finish within {SLOW:?}", args.join(" "));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().expect("the command's output")
}

#[test]
fn migrate_store_copies_a_populated_directory_store_to_s3_and_the_server_serves_it_unchanged() {
    let Some(s3) = S3Server::start() else { return };
    let mut app = spawn_app_with(ServerOptions::default());
    let user = app.create_user("premium");
    let mut images = Vec::new();
    for n in 0..4u8 {
        let size = (300 + u32::from(n) * 20, 200);
        let (name, bytes) =
            if n == 3 { ("p.png", png_seeded(size.0, size.1, n)) } else { ("j.jpg", jpeg_seeded(size.0, size.1, n)) };
        let id = id_of(&app.upload_ok(&user, name, &bytes)["id"]);
        app.wait_until_ready_within(&user, &id, SLOW);
        images.push(id);
    }
    // (id, original, 200 px, 400 px)
    type Stored = (String, Vec<u8>, Vec<u8>, Vec<u8>);
    let before: Vec<Stored> = images
        .iter()
        .map(|id| {
            let original = app.get_original(&user, id);
            original.assert_status(200);
            let small = app.get_thumbnail(&user, id, 200);
            small.assert_status(200);
            let large = app.get_thumbnail(&user, id, 400);
            large.assert_status(200);
            (id.clone(), original.body.to_vec(), small.body.to_vec(), large.body.to_vec())
        })
        .collect();
    assert!(app.terminate().success());

    let mut s3_env = s3.env("migrated");
    s3_env.retain(|(k, _)| *k != "IMAGEAPI_BLOB_URL");
    let out = run_server_command(&app, &["migrate-store", "--to", "s3://imageapi/migrated"], &s3_env);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "migrate-store failed: {stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    // 4 originals, 24 thumbnails (2 heights in 3 formats each) and the store marker.
    assert!(stdout.contains("copied 29 blobs"), "{stdout}");
    assert!(stdout.contains("IMAGEAPI_BLOB_URL=s3://imageapi/migrated"), "says what to change: {stdout}");

    // Run again (as after an interruption): nothing left to copy.
    let again = run_server_command(&app, &["migrate-store", "--to", "s3://imageapi/migrated"], &s3_env);
    let again_out = String::from_utf8_lossy(&again.stdout).into_owned();
    assert!(again.status.success(), "{again_out}");
    assert!(again_out.contains("copied 0 blobs") && again_out.contains("29 were already there"), "{again_out}");

    // A server on a store that is not this metadata's refuses to start, and says why.
    let refused = run_server_command(
        &app,
        &["serve"],
        &[s3.env("empty"), vec![("IMAGEAPI_BIND", "127.0.0.1:0".into())]].concat(),
    );
    let stderr = String::from_utf8_lossy(&refused.stderr).into_owned();
    assert!(!refused.status.success(), "started on an empty store");
    assert!(stderr.contains("store marker") && stderr.contains("s3://imageapi/empty"), "{stderr}");

    // The server on S3 serves every original and thumbnail byte for byte; the directory store
    // is moved away first, so nothing can come from it.
    std::fs::rename(app.blob_dir(), app.root_path().join("old-blobs")).expect("move the old blobs away");
    app.start_again(s3_options(&s3, "migrated"));
    for (id, original, small, large) in &before {
        let got = app.get_original(&user, id);
        got.assert_status(200);
        assert!(got.body == *original, "original of {id} changed");
        assert!(app.get_thumbnail(&user, id, 200).body == *small, "200 px thumbnail of {id} changed");
        assert!(app.get_thumbnail(&user, id, 400).body == *large, "400 px thumbnail of {id} changed");
    }
}

#[test]
fn an_s3_store_on_a_full_disk_refuses_uploads_whole_and_takes_them_once_there_is_room() {
    let Some(fs) = imageapi_shared::testing::small_fs::SmallFs::mount(48 << 20) else { return };
    let Some(s3) = S3Server::start_storing_in(Some(fs.path().join("objects"))) else { return };
    let app = spawn_app_with(s3_options(&s3, "full"));
    let user = app.create_user("premium");
    let kept = jpeg_seeded(640, 480, 1);
    let kept_id = id_of(&app.upload_ok(&user, "kept.jpg", &kept)["id"]);
    app.wait_until_ready_within(&user, &kept_id, SLOW);
    let before = stored_objects(fs.path());
    fs.fill_leaving(6 << 20);
    // Over 8 MiB: a multipart upload, which meets the full disk half-way.
    let (w, h) = (2000, 1600);
    let noise = pseudo_random_bytes((w * h * 3) as usize, 11);
    let big = encode_png(&image::DynamicImage::ImageRgb8(image::RgbImage::from_raw(w, h, noise).expect("noise")));
    assert!(big.len() > 9 << 20, "{}", big.len());

    let refused = app.upload(&user, "big.png", &big);

    // 507 from stores that say they are full; s3s-fs answers a plain 500, which is 503 here.
    assert!(matches!(refused.status, 503 | 507), "{} {}", refused.status, refused.text());
    refused.assert_problem(refused.status);
    assert!(refused.header("retry-after").is_some());
    let mut after: Vec<String> = stored_objects(fs.path());
    after.retain(|name| name != "filler");
    assert_eq!(after, before, "no object, part or upload left behind");
    assert_eq!(result_ids(&app.list_images(&user, "").expect_json(200)), vec![kept_id.clone()]);
    app.get_original(&user, &kept_id).assert_status(200);

    // (s3s-fs joins the parts into a new file: completing needs twice the blob's size.)
    fs.unfill();
    let stored = id_of(&app.upload_ok(&user, "big.png", &big)["id"]);
    assert_eq!(app.get_original(&user, &stored).body, big);
}
