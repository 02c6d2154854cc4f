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
