//! Upload validation (415 for non-images, 400 for corrupt images and missing fields, 413 over
//! the limits) and concurrent uploads.

use std::collections::HashSet;

use image::ImageFormat;
use reqwest::blocking::multipart;

use crate::fixtures::{garbage, gif, jpeg_seeded, noisy_jpeg, png, png_declaring};
use crate::helpers::{id_of, result_ids, spawn_app, thumbnail_entry};

#[test]
fn gif_named_png_is_rejected_with_415_and_nothing_is_stored() {
    // Arrange
    let app = spawn_app();
    let user = app.create_user("basic");

    // Act
    let reply = app.upload_as(&user, "sneaky.png", "image/png", &gif());

    // Assert
    reply.assert_problem(415);
    assert!(
        result_ids(&app.list_images(&user, "").expect_json(200)).is_empty(),
        "a rejected upload leaves no image behind"
    );
}

#[test]
fn random_bytes_are_rejected_with_415() {
    let app = spawn_app();
    let user = app.create_user("basic");

    let reply = app.upload(&user, "noise.jpg", &garbage(4096));

    reply.assert_problem(415);
}

#[test]
fn jpeg_truncated_at_60_percent_is_rejected_with_400() {
    // Arrange
    let app = spawn_app();
    let user = app.create_user("basic");
    let whole = noisy_jpeg(256, 256);
    let truncated = &whole[..whole.len() * 6 / 10];

    // Act
    let reply = app.upload(&user, "cut.jpg", truncated);

    // Assert
    reply.assert_problem(400);
    assert!(result_ids(&app.list_images(&user, "").expect_json(200)).is_empty());
}

#[test]
fn png_truncated_at_60_percent_is_rejected_with_400() {
    let app = spawn_app();
    let user = app.create_user("basic");
    let whole = png(256, 256);
    let truncated = &whole[..whole.len() * 6 / 10];

    let reply = app.upload(&user, "cut.png", truncated);

    reply.assert_problem(400);
}

#[test]
fn png_declaring_60000x60000_pixels_is_rejected_with_413() {
    let app = spawn_app();
    let user = app.create_user("basic");

    let reply = app.upload(&user, "huge.png", &png_declaring(60_000, 60_000));

    reply.assert_problem(413);
}

#[test]
fn png_declaring_more_than_30000_pixels_on_one_side_is_rejected_with_413() {
    let app = spawn_app();
    let user = app.create_user("basic");

    // 30001x10 is only 0.3 MP: the per-side limit decides.
    let reply = app.upload(&user, "wide.png", &png_declaring(30_001, 10));

    reply.assert_problem(413);
}

#[test]
fn png_declaring_more_than_100_megapixels_is_rejected_with_413() {
    let app = spawn_app();
    let user = app.create_user("basic");

    // 20000x6000 = 120 MP, each side within 30000 px: the pixel-count limit decides.
    let reply = app.upload(&user, "big.png", &png_declaring(20_000, 6_000));

    reply.assert_problem(413);
}

#[test]
fn upload_without_an_image_field_is_rejected_with_400() {
    // Arrange
    let app = spawn_app();
    let user = app.create_user("basic");
    let part = multipart::Part::bytes(png(20, 20)).file_name("x.png").mime_str("image/png").expect("a valid mime type");
    let form = multipart::Form::new().part("file", part);

    // Act
    let reply = app.upload_form(&user, form);

    // Assert
    reply.assert_problem(400);
}

#[test]
fn upload_without_a_multipart_body_is_rejected_with_400_or_415() {
    // Arrange
    let app = spawn_app();
    let user = app.create_user("basic");

    // Act: raw PNG bytes, not multipart
    let reply = app.send(
        app.request(reqwest::Method::POST, "/api/v1/images", Some(&user))
            .header("content-type", "image/png")
            .body(png(20, 20)),
    );

    // Assert
    assert!(
        reply.status == 400 || reply.status == 415,
        "a non-multipart upload should be refused with 400 or 415, got {}: {}",
        reply.status,
        reply.text()
    );
}

#[test]
fn upload_over_25_mib_is_rejected_with_413() {
    // Arrange
    let app = spawn_app();
    let user = app.create_user("basic");

    // Act
    let status = app.upload_oversized(&user, 25 * 1024 * 1024 + 512 * 1024);

    // Assert
    assert_eq!(status, 413, "an upload over 25 MiB must be refused with 413");
    assert!(result_ids(&app.list_images(&user, "").expect_json(200)).is_empty());
}

#[test]
fn concurrent_uploads_all_succeed_and_all_thumbnails_get_ready() {
    // Arrange
    let app = spawn_app();
    let user = app.create_user("basic");

    // Act: 8 threads upload at once
    let uploaded: Vec<(String, u32)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..8u8)
            .map(|n| {
                let (app, user) = (&app, &user);
                scope.spawn(move || {
                    let width = 300 + u32::from(n) * 10;
                    let image = app.upload_ok(user, &format!("c{n}.jpg"), &jpeg_seeded(width, 240, n));
                    (id_of(&image["id"]), width)
                })
            })
            .collect();
        handles.into_iter().map(|handle| handle.join().expect("an upload thread")).collect()
    });

    // Assert
    let ids: HashSet<String> = uploaded.iter().map(|(id, _)| id.clone()).collect();
    assert_eq!(ids.len(), 8, "8 distinct images");
    let listed: HashSet<String> =
        result_ids(&app.list_images(&user, "limit=100").expect_json(200)).into_iter().collect();
    assert_eq!(listed, ids, "the list holds exactly the 8 uploads");
    for (id, width) in &uploaded {
        let ready = app.wait_until_ready(&user, id);
        let expected = crate::fixtures::expected_thumbnail_size(*width, 240, 200);
        assert_eq!(thumbnail_entry(&ready, 200)["width"], serde_json::json!(expected.0));
        app.assert_thumbnail(&user, id, 200, ImageFormat::Jpeg, (*width, 240));
    }
}
