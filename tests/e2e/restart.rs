//! Crash safety: SIGKILL the server and start a new one on the same data dir. Accepted
//! uploads keep their pending thumbnails and get them made; users, tokens, tiers, images and
//! links survive.

use std::time::{Duration, Instant};

use image::ImageFormat;
use serde_json::json;

use crate::fixtures::{jpeg_seeded, png_seeded};
use crate::helpers::{id_of, result_ids, spawn_app, spawn_app_with, ServerOptions};

#[test]
fn pending_thumbnails_are_made_after_a_crash_and_restart() {
    // Arrange: a server that processes no thumbnail jobs, and waits 1 s on pending ones
    let mut app =
        spawn_app_with(ServerOptions { workers: Some(0), thumbnail_wait_secs: Some(1), ..ServerOptions::default() });
    let user = app.create_user("premium");
    let source = (600, 450);
    let ids: Vec<String> = (0..3u8)
        .map(|n| id_of(&app.upload_ok(&user, &format!("p{n}.jpg"), &jpeg_seeded(source.0, source.1, n))["id"]))
        .collect();
    for id in &ids {
        let image = app.image(&user, id);
        let statuses: Vec<_> = image["thumbnails"]
            .as_array()
            .unwrap_or_else(|| panic!("thumbnails: {image:#}"))
            .iter()
            .map(|thumbnail| thumbnail["status"].clone())
            .collect();
        assert_eq!(statuses, vec![json!("pending"); 2], "no workers, so pending: {image:#}");
    }

    // Act + Assert: a GET on a pending thumbnail waits about 1 s, then 503 with Retry-After
    let started = Instant::now();
    let pending = app.get_thumbnail(&user, &ids[0], 200);
    let waited = started.elapsed();
    pending.assert_status(503);
    assert!(
        pending.header("retry-after").is_some_and(|value| !value.trim().is_empty()),
        "a 503 for a pending thumbnail carries Retry-After; headers: {:?}",
        pending.headers
    );
    assert!(
        waited >= Duration::from_millis(500) && waited < Duration::from_millis(4500),
        "with IMAGEAPI_THUMBNAIL_WAIT_SECS=1 the GET should wait about 1 s, it took {waited:?}"
    );

    // Act: crash, then start again with default workers
    app.restart(ServerOptions::default());

    // Assert: every thumbnail of every image ends ready, with the right size
    assert_eq!(
        result_ids(&app.list_images(&user, "").expect_json(200)),
        ids.iter().rev().cloned().collect::<Vec<_>>(),
        "the three uploads survived the crash"
    );
    for id in &ids {
        app.wait_until_ready_within(&user, id, Duration::from_secs(60));
        app.assert_thumbnail(&user, id, 200, ImageFormat::Jpeg, source);
        app.assert_thumbnail(&user, id, 400, ImageFormat::Jpeg, source);
    }
}

#[test]
fn users_tokens_tiers_images_and_links_survive_a_crash_and_restart() {
    // Arrange
    let mut app = spawn_app();
    app.create_tier("durable", &[100, 300], true, true);
    let user = app.create_user("durable");
    let (_, token) = app.issue_token(&user);
    let bytes = png_seeded(400, 320, 9);
    let image_id = id_of(&app.upload_ok(&user, "keep.png", &bytes)["id"]);
    app.wait_until_ready(&user, &image_id);
    let link = app.create_link_ok(&user, &image_id, &json!({"expires_in": 3600}));
    let link_path = link["url"]
        .as_str()
        .and_then(|url| url.strip_prefix(&app.address))
        .unwrap_or_else(|| panic!("an absolute link URL on {}: {link:#}", app.address))
        .to_owned();
    let old_address = app.address.clone();

    // Act
    app.restart(ServerOptions::default());

    // Assert
    assert_ne!(app.address, old_address, "the new server has a new port");
    let me = app.me(&user).expect_json(200);
    assert_eq!(me["tier"]["id"], json!("durable"));
    assert_eq!(me["tier"]["thumbnail_heights"], json!([100, 300]));
    app.me(&user.bearer(&token)).assert_status(200);
    assert_eq!(result_ids(&app.list_images(&user, "").expect_json(200)), vec![image_id.clone()]);
    let image = app.image(&user, &image_id);
    assert_eq!(image["name"], json!("keep.png"));
    assert!(
        image["thumbnails"][0]["url"].as_str().is_some_and(|url| url.starts_with(&app.address)),
        "links are built from the new server's address: {image:#}"
    );
    app.wait_until_ready(&user, &image_id);
    app.assert_thumbnail(&user, &image_id, 300, ImageFormat::Png, (400, 320));
    let original = app.get_original(&user, &image_id);
    original.assert_status(200);
    assert!(original.body == bytes, "the original survived byte for byte");
    let shared = app.get_anonymous(&link_path);
    shared.assert_status(200);
    assert!(shared.body == bytes, "the expiring link survived");
}

#[test]
fn sigterm_shuts_down_gracefully_and_everything_acknowledged_is_kept() {
    // Arrange
    let mut app = spawn_app();
    let user = app.create_user("premium");
    let id = id_of(&app.upload_ok(&user, "kept.jpg", &jpeg_seeded(640, 480, 7))["id"]);

    // Act
    let status = app.terminate();
    app.start_again(ServerOptions::default());

    // Assert
    assert!(status.success(), "SIGTERM ends the server with exit code 0, got {status}");
    let ready = app.wait_until_ready(&user, &id);
    assert_eq!(ready["id"], json!(id));
    app.assert_thumbnail(&user, &id, 400, ImageFormat::Jpeg, (533, 400));
}
