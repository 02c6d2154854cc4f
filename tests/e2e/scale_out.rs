//! The scaled-out mode, end to end: the real server with `IMAGEAPI_REDIS_URL` set, a private
//! `redis-server`, and real `imageapi-worker` processes sharing the server's blob store. Kills,
//! restarts and outages are real signals to real processes.

use std::time::Duration;

use image::ImageFormat;
use serde_json::Value;

use crate::fixtures::{corpus, encode_png, jpeg_seeded, png_seeded, pseudo_random_bytes};
use crate::helpers::{
    all_ready, eventually, id_of, metric_value, spawn_app_with, RedisServer, ServerOptions, TestApp, TestUser,
    WorkerOptions, WorkerProcess,
};

const SLOW: Duration = Duration::from_secs(60);

fn redis_app(redis: &RedisServer) -> TestApp {
    spawn_app_with(options_with(redis))
}

/// Uploads a generated JPEG; returns its id and source size.
fn upload(app: &TestApp, user: &TestUser, n: u8) -> (String, (u32, u32)) {
    let size = (640 + u32::from(n) * 16, 480);
    let image = app.upload_ok(user, &format!("u{n}.jpg"), &jpeg_seeded(size.0, size.1, n));
    (id_of(&image["id"]), size)
}

/// Uploads a noisy PNG (slow enough to decode that a worker can be caught holding it).
fn upload_heavy(app: &TestApp, user: &TestUser, n: u8) -> (String, (u32, u32)) {
    let size = (1800, 1200);
    let noise = pseudo_random_bytes((size.0 * size.1 * 3) as usize, u64::from(n) + 1);
    let image = image::RgbImage::from_raw(size.0, size.1, noise).expect("noise of the right size");
    // Callers upload the same noise more than once: each copy must be other bytes (the same
    // bytes again are the image already held).
    static COPIES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let copy = COPIES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let bytes = crate::fixtures::distinct(&encode_png(&image::DynamicImage::ImageRgb8(image)), copy);
    (id_of(&app.upload_ok(user, &format!("noise{n}.png"), &bytes)["id"]), size)
}

/// Lets a stopped worker run in short bursts until it is stopped while holding a job; returns
/// the jobs it holds (as listed by the queue). Stopped, it can neither finish a job nor let go
/// of it, so what the queue shows is what it holds.
fn catch_holding(app: &TestApp, worker: &WorkerProcess) -> Value {
    let mut burst = 2;
    eventually(SLOW, "the worker to be caught holding a job", || {
        worker.signal("CONT");
        std::thread::sleep(Duration::from_millis(burst));
        worker.signal("STOP");
        burst = (burst + 3).min(60);
        let queue = app.queue();
        let jobs = queue["workers"].as_array()?.iter().find(|w| w["name"] == worker.name.as_str())?["jobs"].clone();
        jobs.as_array().is_some_and(|j| !j.is_empty()).then_some(jobs)
    })
}

fn assert_all_thumbnails(app: &TestApp, user: &TestUser, id: &str, heights: &[u32], source: (u32, u32)) {
    let image = app.wait_until_ready_within(user, id, SLOW);
    app.assert_thumbnail_entries(&image, heights, source);
    for &height in heights {
        app.assert_thumbnail(user, id, height, ImageFormat::Jpeg, source);
    }
}

#[test]
fn two_worker_processes_share_the_uploads_of_several_users() {
    let Some(redis) = RedisServer::start() else { return };
    let app = redis_app(&redis);
    // A frozen worker must not be declared dead by its peer (three missed heartbeats) while
    // the other half of the uploads runs, however slow the machine: it would come back under a
    // new name, and this test is about sharing, not about recovery (that has its own tests).
    let patient = || WorkerOptions { heartbeat_secs: 20, ..WorkerOptions::default() };
    let first = WorkerProcess::spawn(&app, &redis, "w1", patient());
    let second = WorkerProcess::spawn(&app, &redis, "w2", patient());
    let users: Vec<TestUser> = ["basic", "premium", "enterprise"].iter().map(|tier| app.create_user(tier)).collect();

    // Each half of the uploads goes in while the other worker is frozen, so both must take
    // part: left to themselves, one worker can take every job before the other next polls.
    let mut uploads = Vec::new();
    for (half, frozen) in [&second, &first].into_iter().enumerate() {
        frozen.signal("STOP");
        let start = uploads.len();
        for round in 0..2u8 {
            for (i, user) in users.iter().enumerate() {
                uploads.push((i, upload(&app, user, (half as u8 * 2 + round) * 3 + i as u8)));
            }
        }
        for (i, (id, source)) in &uploads[start..] {
            let heights: &[u32] = if *i == 0 { &[200] } else { &[200, 400] };
            assert_all_thumbnails(&app, &users[*i], id, heights, *source);
        }
        frozen.signal("CONT");
    }
    if let Some(bird) = corpus("photo-bird-6028x3391.jpg") {
        let image = app.upload_ok(&users[1], "bird.jpg", &bird);
        let id = id_of(&image["id"]);
        let ready = app.wait_until_ready_within(&users[1], &id, SLOW);
        app.assert_thumbnail_entries(&ready, &[200, 400], (6028, 3391));
    }
    for (i, (id, source)) in &uploads {
        let heights: &[u32] = if *i == 0 { &[200] } else { &[200, 400] };
        assert_all_thumbnails(&app, &users[*i], id, heights, *source);
    }

    let done = |w: &WorkerProcess| w.metric("imageapi_worker_jobs_total{result=\"ready\"}");
    assert!(
        done(&first) > 0.0 && done(&second) > 0.0,
        "both workers made thumbnails: w1 {} w2 {}",
        done(&first),
        done(&second)
    );
    assert!(done(&first) + done(&second) >= uploads.len() as f64);

    let queue = app.queue();
    assert_eq!(queue["mode"], "redis", "{queue:#}");
    assert!(queue["done"].as_u64() >= Some(uploads.len() as u64), "{queue:#}");
    assert_eq!((queue["pending"].as_u64(), queue["failed"].as_u64()), (Some(0), Some(0)), "{queue:#}");
    let names: Vec<&str> =
        queue["workers"].as_array().into_iter().flatten().filter_map(|w| w["name"].as_str()).collect();
    assert!(names.contains(&"w1") && names.contains(&"w2"), "both workers listed: {queue:#}");
    assert!(queue["throughput_per_minute"].as_u64() >= Some(uploads.len() as u64), "{queue:#}");

    app.get_anonymous("/metrics").assert_status(401);
    let metrics = app.get_as(&app.admin, "/metrics");
    metrics.assert_status(200);
    let text = metrics.text();
    assert!(
        metric_value(&text, "imageapi_http_requests_total{method=\"POST\",route=\"/api/v1/images\",status=\"201\"}")
            >= uploads.len() as f64,
        "uploads counted by route and status:\n{text}"
    );
    assert!(metric_value(&text, "imageapi_jobs_completed_total{result=\"ready\"}") >= uploads.len() as f64, "{text}");
    assert!(text.contains("imageapi_job_latency_seconds_bucket"), "{text}");
    assert!(text.contains("imageapi_queue_pending 0"), "{text}");
}

#[test]
fn jobs_held_by_a_killed_worker_are_recovered_and_finished_by_another() {
    let Some(redis) = RedisServer::start() else { return };
    let app = redis_app(&redis);
    let user = app.create_user("premium");
    let mut doomed = WorkerProcess::spawn(&app, &redis, "doomed", WorkerOptions::default());
    doomed.signal("STOP");
    let uploads: Vec<_> = (0..6u8).map(|n| upload_heavy(&app, &user, n)).collect();
    let held = catch_holding(&app, &doomed);
    doomed.kill();
    let held_image = held[0]["image_id"].as_str().expect("the held job names its image").to_owned();
    assert!(!all_ready(&app.image(&user, &held_image)), "the killed worker did not finish the held job");

    let survivor = WorkerProcess::spawn(&app, &redis, "survivor", WorkerOptions::default());
    for (id, source) in &uploads {
        let image = app.wait_until_ready_within(&user, id, SLOW);
        app.assert_thumbnail_entries(&image, &[200, 400], *source);
        app.assert_thumbnail(&user, id, 400, ImageFormat::Png, *source);
    }
    assert!(survivor.metric("imageapi_worker_jobs_total{result=\"ready\"}") >= 1.0);
    let queue = app.queue();
    assert_eq!(
        (queue["pending"].as_u64(), queue["running"].as_u64(), queue["failed"].as_u64()),
        (Some(0), Some(0), Some(0)),
        "{queue:#}"
    );
}

#[test]
fn results_made_while_the_server_was_down_are_applied_after_its_restart() {
    let Some(redis) = RedisServer::start() else { return };
    let mut app = redis_app(&redis);
    let user = app.create_user("premium");
    let uploads: Vec<_> = (0..5u8).map(|n| upload(&app, &user, n)).collect();
    eventually(SLOW, "every job delivered to Redis", || {
        let queue = app.queue();
        (queue["pending"] == 5 && queue["undelivered"] == 0).then_some(())
    });
    app.kill();

    let mut worker = WorkerProcess::spawn(&app, &redis, "w1", WorkerOptions::default());
    eventually(SLOW, "the worker to finish every job with the server down", || {
        (worker.metric("imageapi_worker_jobs_total{result=\"ready\"}") >= uploads.len() as f64).then_some(())
    });
    let status = worker.terminate();
    assert!(status.success(), "SIGTERM: the worker exits 0, got {status}; log:\n{}", worker.log_tail());

    // No worker runs now: whatever becomes ready comes from the results kept in Redis.
    app.start_again(options_with(&redis));
    for (id, source) in &uploads {
        let image = app.wait_until_ready_within(&user, id, SLOW);
        app.assert_thumbnail_entries(&image, &[200, 400], *source);
        app.assert_thumbnail(&user, id, 400, ImageFormat::Jpeg, *source);
    }
}

fn options_with(redis: &RedisServer) -> ServerOptions {
    ServerOptions { redis_url: Some(redis.url()), ..ServerOptions::default() }
}

#[test]
fn uploads_accepted_while_redis_is_down_all_end_with_ready_thumbnails() {
    let Some(mut redis) = RedisServer::start() else { return };
    let app = redis_app(&redis);
    let _worker = WorkerProcess::spawn(&app, &redis, "w1", WorkerOptions::default());
    let user = app.create_user("premium");

    let mut uploads: Vec<_> = (0..3u8).map(|n| upload(&app, &user, n)).collect();
    redis.stop();
    uploads.extend((3..7u8).map(|n| upload(&app, &user, n)));
    let ready = app.get_anonymous("/readyz");
    let health = ready.expect_json(200);
    assert_eq!(
        (health["status"].as_str(), health["checks"]["queue"].as_str()),
        (Some("degraded"), Some("degraded")),
        "{health:#}"
    );
    app.get_as(&app.admin, "/api/v1/admin/queue").assert_problem(503);
    redis.start_again();
    uploads.extend((7..9u8).map(|n| upload(&app, &user, n)));

    for (id, source) in &uploads {
        assert_all_thumbnails(&app, &user, id, &[200, 400], *source);
    }
    let health = app.get_anonymous("/readyz").expect_json(200);
    assert_eq!(health["status"], "ready", "{health:#}");
}

#[test]
fn a_job_that_always_fails_ends_in_the_dead_set_and_the_retry_endpoint_reruns_it() {
    let Some(redis) = RedisServer::start() else { return };
    let app = redis_app(&redis);
    let user = app.create_user("basic");
    let image = app.upload_ok(&user, "a.png", &png_seeded(300, 200, 1));
    let id = id_of(&image["id"]);
    // A file where the image's thumbnail folder belongs: every attempt fails to write.
    let shard = id[id.len() - 2..].to_ascii_lowercase();
    let blocker = app.blob_dir().join("thumbnails").join(&shard).join(&id);
    std::fs::create_dir_all(blocker.parent().expect("shard")).expect("shard folder");
    std::fs::write(&blocker, b"in the way").expect("blocker");

    let options = WorkerOptions { max_attempts: 2, ..WorkerOptions::default() };
    let _worker = WorkerProcess::spawn(&app, &redis, "w1", options);
    let queue = eventually(SLOW, "the job in the dead set", || {
        let queue = app.queue();
        (queue["failed"] == 1).then_some(queue)
    });
    let failed: &Value = &queue["failed_jobs"][0];
    assert_eq!(failed["image_id"], id.as_str(), "{queue:#}");
    assert_eq!(failed["heights"], serde_json::json!([200]), "{queue:#}");
    assert_eq!(failed["attempts"], 2, "bounded attempts: {queue:#}");
    let reason = failed["reason"].as_str().unwrap_or("");
    assert!(reason.contains("blob store"), "the reason is kept: {queue:#}");
    assert_eq!(queue["pending"], 0, "{queue:#}");
    let image = app.image(&user, &id);
    assert_eq!(image["thumbnails"][0]["status"], "pending", "a dead job's thumbnail stays pending: {image:#}");

    std::fs::remove_file(&blocker).expect("unblock");
    let job = failed["job"].as_str().expect("job id").to_owned();
    let retried = app.retry_job(&job).expect_json(202);
    assert_eq!(retried["job"], job.as_str());
    let image = app.wait_for_image(&user, &id, SLOW, "the retried job", all_ready);
    app.assert_thumbnail_entries(&image, &[200], (300, 200));
    app.assert_thumbnail(&user, &id, 200, ImageFormat::Png, (300, 200));
    assert_eq!(app.queue()["failed"], 0);

    app.retry_job(&job).assert_problem(404);
    app.retry_job("not-a-job").assert_problem(404);
    app.send(app.request(reqwest::Method::POST, &format!("/api/v1/admin/queue/failed/{job}/retry"), Some(&user)))
        .assert_problem(403);
}

#[test]
fn sigterm_lets_a_worker_finish_the_job_it_holds_then_exit_zero() {
    let Some(redis) = RedisServer::start() else { return };
    let app = redis_app(&redis);
    let user = app.create_user("premium");
    // Stopped for as long as catching it takes, it must not count as dead meanwhile.
    let options = WorkerOptions { heartbeat_secs: 20, ..WorkerOptions::default() };
    let mut worker = WorkerProcess::spawn(&app, &redis, "w1", options);
    worker.signal("STOP");
    let uploads: Vec<_> = (0..4u8).map(|n| upload_heavy(&app, &user, n)).collect();
    let held = catch_holding(&app, &worker);
    let held = held[0]["image_id"].as_str().expect("the held job names its image").to_owned();
    // SIGTERM while it holds the job, then let it run.
    worker.signal("TERM");
    worker.signal("CONT");
    let status = worker.wait();
    assert!(status.success(), "exit 0 after SIGTERM, got {status}; log:\n{}", worker.log_tail());
    // The job it held was finished before the exit: no worker runs now.
    let (_, source) = uploads.iter().find(|(id, _)| *id == held).expect("one of ours");
    let image = app.wait_until_ready_within(&user, &held, SLOW);
    app.assert_thumbnail_entries(&image, &[200, 400], *source);
    let queue = app.queue();
    assert_eq!(queue["running"], 0, "nothing is left held by the stopped worker: {queue:#}");
    assert!(
        queue["workers"].as_array().is_some_and(|w| w.iter().all(|w| w["name"] != "w1")),
        "it left the worker list: {queue:#}"
    );
    assert!(queue["pending"].as_u64() >= Some(1), "jobs it did not hold wait for other workers: {queue:#}");
}
