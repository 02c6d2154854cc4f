//! The admin queue endpoint in the embedded mode (the Redis mode is covered in `scale_out`).

use crate::fixtures::png_seeded;
use crate::helpers::{id_of, spawn_app, spawn_app_with, ServerOptions};

#[test]
fn the_embedded_queue_reports_its_counts_and_its_worker() {
    let app = spawn_app();
    let user = app.create_user("premium");
    let id = id_of(&app.upload_ok(&user, "a.png", &png_seeded(500, 400, 3))["id"]);
    app.wait_until_ready(&user, &id);

    let queue = app.queue();
    assert_eq!(queue["mode"], "embedded", "{queue:#}");
    assert_eq!(
        (queue["done"].as_u64(), queue["failed"].as_u64(), queue["pending"].as_u64()),
        (Some(1), Some(0), Some(0)),
        "{queue:#}"
    );
    assert_eq!(queue["throughput_per_minute"], 1, "{queue:#}");
    assert_eq!(queue["workers"][0]["name"], "embedded", "{queue:#}");
    assert_eq!(queue["failed_jobs"], serde_json::json!([]), "{queue:#}");
    app.get_as(&user, "/api/v1/admin/queue").assert_problem(403);
    app.retry_job("01M8HHC8FFT3JJXPB68WDCM0Y7").assert_problem(404);
}

#[test]
fn jobs_accepted_without_workers_wait_as_pending() {
    let app = spawn_app_with(ServerOptions { workers: Some(0), ..ServerOptions::default() });
    let user = app.create_user("basic");
    for n in 0..2 {
        app.upload_ok(&user, "a.png", &png_seeded(50, 40, n));
    }
    let queue = app.queue();
    assert_eq!(
        (queue["pending"].as_u64(), queue["running"].as_u64(), queue["done"].as_u64()),
        (Some(2), Some(0), Some(0)),
        "{queue:#}"
    );
}

/// A heavy user's backlog, then one small upload by someone else: how many of the heavy
/// user's images are ready when the small one is (the rest are still waiting their turn).
fn heavy_images_ready_before_a_newcomers(app: &crate::helpers::TestApp, heavy_count: usize) -> Option<usize> {
    let heavy_file = crate::fixtures::corpus("photo-altai-5120x2880-rgb.png")?;
    app.lift_limits("basic");
    let heavy = app.create_user("basic");
    let light = app.create_user("basic");
    let heavy_ids: Vec<String> = std::thread::scope(|scope| {
        let uploads: Vec<_> = (0..4u64)
            .map(|t| {
                let (heavy, heavy_file) = (&heavy, &heavy_file);
                scope.spawn(move || {
                    (0..heavy_count as u64 / 4)
                        .map(|n| {
                            let bytes = crate::fixtures::distinct(heavy_file, t * 1000 + n);
                            id_of(&app.upload_ok(heavy, "altai.png", &bytes)["id"])
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        uploads.into_iter().flat_map(|u| u.join().expect("uploads")).collect()
    });
    let small = id_of(&app.upload_ok(&light, "small.png", &png_seeded(300, 200, 1))["id"]);

    app.wait_until_ready_within(&light, &small, std::time::Duration::from_secs(120));
    let ready_before = heavy_ids.iter().filter(|id| crate::helpers::all_ready(&app.image(&heavy, id))).count();
    for id in &heavy_ids {
        app.wait_until_ready_within(&heavy, id, std::time::Duration::from_secs(300));
    }
    Some(ready_before)
}

#[test]
fn a_users_backlog_delays_another_users_thumbnails_by_a_few_jobs_only_embedded() {
    // One render thread: two runners, a window of two.
    let app = spawn_app_with(ServerOptions { workers: Some(1), ..ServerOptions::default() });
    let Some(ready_before) = heavy_images_ready_before_a_newcomers(&app, 20) else { return };
    // First come, first served, the newcomer would wait for all 20.
    assert!(ready_before <= 10, "{ready_before} of 20 heavy images were made before the newcomer's");
}

#[test]
fn a_users_backlog_delays_another_users_thumbnails_by_a_few_jobs_only_with_redis() {
    let Some(redis) = crate::helpers::RedisServer::start() else { return };
    let app = spawn_app_with(ServerOptions {
        redis_url: Some(redis.url()),
        env: vec![("IMAGEAPI_QUEUE_WINDOW", "2".to_owned())],
        ..ServerOptions::default()
    });
    let _worker = crate::helpers::WorkerProcess::spawn(&app, &redis, "fair", crate::helpers::WorkerOptions::default());
    let Some(ready_before) = heavy_images_ready_before_a_newcomers(&app, 20) else { return };
    assert!(ready_before <= 10, "{ready_before} of 20 heavy images were made before the newcomer's");
}
