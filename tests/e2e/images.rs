//! Images: the image object, thumbnail bytes (format, size, orientation, alpha), the original,
//! HTTP semantics of binary responses, deletion, listing with pagination.

use std::collections::HashSet;
use std::time::Duration;

use image::{GenericImageView, ImageFormat};
use reqwest::Method;
use serde_json::json;

use crate::fixtures::{
    corpus, jpeg, jpeg_seeded, png, png_seeded, red_left_blue_right_jpeg, rgba_png_left_half_transparent,
    with_exif_orientation,
};
use crate::helpers::{
    assert_binary_headers, assert_content_type, id_of, is_absent, result_ids, results, spawn_app, thumbnail_entry,
};

#[test]
fn upload_answers_201_with_the_image_object() {
    // Arrange
    let app = spawn_app();
    let user = app.create_user("premium");
    let bytes = jpeg(640, 480);

    // Act
    let image = app.upload_ok(&user, "holiday.jpg", &bytes);

    // Assert
    let id = id_of(&image["id"]);
    assert_eq!(image["name"], json!("holiday.jpg"));
    assert_eq!(image["format"], json!("jpeg"));
    assert_eq!(image["width"], json!(640));
    assert_eq!(image["height"], json!(480));
    assert_eq!(image["size_bytes"], json!(bytes.len()));
    assert!(image["created_at"].as_str().is_some_and(|at| !at.is_empty()), "{image:#}");
    assert_eq!(image["expiring_links"], json!(false));
    app.assert_thumbnail_entries(&image, &[200, 400], (640, 480));
    assert_eq!(thumbnail_entry(&image, 200)["width"], json!(267), "640*200/480 rounded");

    let fetched = app.image(&user, &id);
    assert_eq!(fetched["name"], json!("holiday.jpg"));
    assert_eq!(fetched["size_bytes"], json!(bytes.len()));
}

#[test]
fn png_upload_is_reported_as_png() {
    let app = spawn_app();
    let user = app.create_user("basic");

    let image = app.upload_ok(&user, "diagram.png", &png(300, 150));

    assert_eq!(image["format"], json!("png"));
    assert_eq!((image["width"].clone(), image["height"].clone()), (json!(300), json!(150)));
}

#[test]
fn format_is_judged_by_content_not_by_file_name_or_declared_type() {
    // Arrange
    let app = spawn_app();
    let user = app.create_user("basic");

    // Act
    let jpeg_named_png = app.upload_as(&user, "really-a-jpeg.png", "image/png", &jpeg(300, 250)).expect_json(201);
    let png_named_jpeg = app.upload_as(&user, "really-a-png.jpg", "image/jpeg", &png(300, 250)).expect_json(201);

    // Assert
    assert_eq!(jpeg_named_png["format"], json!("jpeg"));
    assert_eq!(png_named_jpeg["format"], json!("png"));
    let jpeg_id = id_of(&jpeg_named_png["id"]);
    let png_id = id_of(&png_named_jpeg["id"]);
    app.wait_until_ready(&user, &jpeg_id);
    app.wait_until_ready(&user, &png_id);
    app.assert_thumbnail(&user, &jpeg_id, 200, ImageFormat::Jpeg, (300, 250));
    app.assert_thumbnail(&user, &png_id, 200, ImageFormat::Png, (300, 250));
}

#[test]
fn jpeg_thumbnails_have_the_exact_height_and_the_rounded_source_aspect_ratio() {
    // Arrange: 1000x666 -> 200px is 300.3 wide (300), 400px is 600.6 wide (601, not 600)
    let app = spawn_app();
    let user = app.create_user("premium");
    let image_id = id_of(&app.upload_ok(&user, "odd.jpg", &jpeg(1000, 666))["id"]);

    // Act
    let ready = app.wait_until_ready(&user, &image_id);

    // Assert
    assert_eq!(thumbnail_entry(&ready, 200)["width"], json!(300));
    assert_eq!(thumbnail_entry(&ready, 400)["width"], json!(601));
    app.assert_thumbnail(&user, &image_id, 200, ImageFormat::Jpeg, (300, 200));
    app.assert_thumbnail(&user, &image_id, 400, ImageFormat::Jpeg, (601, 400));
}

#[test]
fn very_narrow_source_gets_thumbnails_at_least_one_pixel_wide() {
    // Arrange: 2x1000 -> 200px would be 0.4 px wide
    let app = spawn_app();
    let user = app.create_user("basic");
    let image_id = id_of(&app.upload_ok(&user, "needle.png", &png(2, 1000))["id"]);

    // Act
    let ready = app.wait_until_ready(&user, &image_id);

    // Assert
    assert_eq!(thumbnail_entry(&ready, 200)["width"], json!(1));
    app.assert_thumbnail(&user, &image_id, 200, ImageFormat::Png, (2, 1000));
}

#[test]
fn source_shorter_than_a_height_is_not_enlarged() {
    // Arrange
    let app = spawn_app();
    let user = app.create_user("premium");
    let image_id = id_of(&app.upload_ok(&user, "tiny.png", &png(90, 60))["id"]);

    // Act
    let ready = app.wait_until_ready(&user, &image_id);

    // Assert: both thumbnails are the source's size
    for height in [200, 400] {
        assert_eq!(thumbnail_entry(&ready, height)["width"], json!(90), "{ready:#}");
        app.assert_thumbnail(&user, &image_id, height, ImageFormat::Png, (90, 60));
    }
}

#[test]
fn rgba_png_gives_a_png_thumbnail_that_keeps_transparency() {
    // Arrange: left half transparent, right half opaque green
    let app = spawn_app();
    let user = app.create_user("basic");
    let image_id = id_of(&app.upload_ok(&user, "alpha.png", &rgba_png_left_half_transparent(300, 240))["id"]);
    app.wait_until_ready(&user, &image_id);

    // Act
    let thumbnail = app.assert_thumbnail(&user, &image_id, 200, ImageFormat::Png, (300, 240));

    // Assert: 250x200
    assert!(thumbnail.color().has_alpha(), "the PNG thumbnail must keep an alpha channel");
    let transparent = thumbnail.get_pixel(250 / 4, 100);
    let opaque = thumbnail.get_pixel(250 * 3 / 4, 100);
    assert!(transparent[3] <= 10, "expected a transparent pixel on the left, got {transparent:?}");
    assert!(opaque[3] >= 245, "expected an opaque pixel on the right, got {opaque:?}");
    assert!(opaque[1] >= 150 && opaque[0] <= 60, "expected green on the right, got {opaque:?}");
}

#[test]
fn exif_rotated_jpeg_is_reported_and_thumbnailed_upright() {
    // Arrange: stored 300x200, left red / right blue, EXIF orientation 6 (rotate 90° clockwise)
    // -> displayed 200x300 with red on top and blue at the bottom.
    let app = spawn_app();
    let user = app.create_user("basic");
    let bytes = with_exif_orientation(&red_left_blue_right_jpeg(300, 200), 6);

    // Act
    let image = app.upload_ok(&user, "rotated.jpg", &bytes);

    // Assert: display dimensions
    assert_eq!(image["width"], json!(200), "{image:#}");
    assert_eq!(image["height"], json!(300), "{image:#}");
    assert_eq!(thumbnail_entry(&image, 200)["width"], json!(133), "{image:#}");
    let image_id = id_of(&image["id"]);
    app.wait_until_ready(&user, &image_id);

    // Assert: an upright 133x200 thumbnail, red on top, blue at the bottom
    let thumbnail = app.assert_thumbnail(&user, &image_id, 200, ImageFormat::Jpeg, (200, 300));
    let top = thumbnail.get_pixel(66, 30);
    let bottom = thumbnail.get_pixel(66, 170);
    assert!(top[0] > 180 && top[1] < 80 && top[2] < 80, "expected red at the top, got {top:?}");
    assert!(bottom[2] > 180 && bottom[0] < 80 && bottom[1] < 80, "expected blue at the bottom, got {bottom:?}");
    // Thumbnails carry no metadata: an orientation tag left in would rotate it twice.
    let raw = app.get_thumbnail(&user, &image_id, 200).body;
    assert!(!raw.windows(6).any(|window| window == b"Exif\0\0"), "the thumbnail must carry no EXIF metadata");
}

#[test]
fn real_bird_photo_gets_356x200_and_711x400_jpeg_thumbnails() {
    // Arrange
    let Some(bytes) = corpus("photo-bird-6028x3391.jpg") else {
        return;
    };
    let app = spawn_app();
    let user = app.create_user("premium");

    // Act
    let image = app.upload_ok(&user, "bird.jpg", &bytes);
    let image_id = id_of(&image["id"]);
    let ready = app.wait_until_ready_within(&user, &image_id, Duration::from_secs(60));

    // Assert
    assert_eq!(image["format"], json!("jpeg"));
    assert_eq!((image["width"].clone(), image["height"].clone()), (json!(6028), json!(3391)));
    assert_eq!(image["size_bytes"], json!(bytes.len()));
    assert_eq!(thumbnail_entry(&ready, 200)["width"], json!(356));
    assert_eq!(thumbnail_entry(&ready, 400)["width"], json!(711));
    app.assert_thumbnail(&user, &image_id, 200, ImageFormat::Jpeg, (6028, 3391));
    app.assert_thumbnail(&user, &image_id, 400, ImageFormat::Jpeg, (6028, 3391));
    let original = app.get_original(&user, &image_id);
    original.assert_status(200);
    assert!(original.body == bytes, "the original must be the uploaded bytes");
}

#[test]
fn original_is_served_byte_for_byte_as_uploaded() {
    // Arrange
    let app = spawn_app();
    let user = app.create_user("premium");
    let jpeg_bytes = with_exif_orientation(&jpeg_seeded(320, 240, 3), 6);
    let png_bytes = png_seeded(120, 80, 4);
    let jpeg_id = id_of(&app.upload_ok(&user, "a.jpg", &jpeg_bytes)["id"]);
    let png_id = id_of(&app.upload_ok(&user, "b.png", &png_bytes)["id"]);

    // Act
    let jpeg_original = app.get_original(&user, &jpeg_id);
    let png_original = app.get_original(&user, &png_id);

    // Assert
    jpeg_original.assert_status(200);
    png_original.assert_status(200);
    assert!(jpeg_original.body == jpeg_bytes, "the JPEG original must be the uploaded bytes (EXIF and all)");
    assert!(png_original.body == png_bytes, "the PNG original must be the uploaded bytes");
    assert_binary_headers(&jpeg_original, ImageFormat::Jpeg);
    assert_binary_headers(&png_original, ImageFormat::Png);
}

#[test]
fn head_on_media_answers_the_headers_without_a_body() {
    // Arrange
    let app = spawn_app();
    let user = app.create_user("premium");
    let png_bytes = png_seeded(120, 80, 9);
    let id = id_of(&app.upload_ok(&user, "h.png", &png_bytes)["id"]);
    app.wait_until_ready(&user, &id);

    // Act
    let original = app.send(app.request(Method::HEAD, &format!("/api/v1/images/{id}/original"), Some(&user)));
    let thumbnail = app.send(app.request(Method::HEAD, &format!("/api/v1/images/{id}/thumbnails/200"), Some(&user)));

    // Assert
    original.assert_status(200);
    thumbnail.assert_status(200);
    assert_eq!(original.header("content-length"), Some(png_bytes.len().to_string().as_str()), "{:?}", original.headers);
    assert!(original.body.is_empty() && thumbnail.body.is_empty(), "HEAD answers carry no body");
    assert_eq!(thumbnail.header("content-type"), Some("image/png"));
}

#[test]
fn thumbnail_response_carries_type_length_etag_cache_control_and_nosniff() {
    // Arrange
    let app = spawn_app();
    let user = app.create_user("basic");
    let image_id = id_of(&app.upload_ok(&user, "h.jpg", &jpeg(400, 300))["id"]);
    app.wait_until_ready(&user, &image_id);

    // Act
    let reply = app.get_thumbnail(&user, &image_id, 200);

    // Assert
    reply.assert_status(200);
    assert_binary_headers(&reply, ImageFormat::Jpeg);
}

#[test]
fn if_none_match_with_the_current_etag_gives_304() {
    // Arrange
    let app = spawn_app();
    let user = app.create_user("premium");
    let image_id = id_of(&app.upload_ok(&user, "e.jpg", &jpeg(400, 300))["id"]);
    app.wait_until_ready(&user, &image_id);
    let paths = [format!("/api/v1/images/{image_id}/thumbnails/200"), format!("/api/v1/images/{image_id}/original")];

    for path in paths {
        let first = app.get_as(&user, &path);
        first.assert_status(200);
        let etag = first.header("etag").expect("an ETag").to_owned();

        // Act
        let cached = app.send(app.request(Method::GET, &path, Some(&user)).header("if-none-match", &etag));
        let stale = app.send(app.request(Method::GET, &path, Some(&user)).header("if-none-match", "\"not-the-etag\""));

        // Assert
        cached.assert_status(304);
        assert!(cached.body.is_empty(), "a 304 has no body");
        stale.assert_status(200);
        assert!(stale.body == first.body, "a non-matching ETag gets the full body");
        assert_eq!(stale.header("etag"), Some(etag.as_str()), "the ETag is stable");
    }
}

#[test]
fn range_request_gives_206_with_content_range_and_just_those_bytes() {
    // Arrange
    let app = spawn_app();
    let user = app.create_user("premium");
    let bytes = jpeg(400, 300);
    let image_id = id_of(&app.upload_ok(&user, "r.jpg", &bytes)["id"]);
    app.wait_until_ready(&user, &image_id);
    let paths = [format!("/api/v1/images/{image_id}/thumbnails/200"), format!("/api/v1/images/{image_id}/original")];

    for path in paths {
        let full = app.get_as(&user, &path);
        full.assert_status(200);
        assert!(full.body.len() > 100, "need more than 100 bytes to test a range");

        // Act
        let partial = app.send(app.request(Method::GET, &path, Some(&user)).header("range", "bytes=0-99"));

        // Assert
        partial.assert_status(206);
        assert_eq!(
            partial.header("content-range"),
            Some(format!("bytes 0-99/{}", full.body.len()).as_str()),
            "GET {path} with Range"
        );
        assert_eq!(partial.body.len(), 100);
        assert!(partial.body == full.body[..100], "the range holds the first 100 bytes");

        // If-Range: the range applies only while the client's ETag is current.
        let etag = full.header("etag").expect("an ETag").to_owned();
        let current = app
            .send(app.request(Method::GET, &path, Some(&user)).header("range", "bytes=0-99").header("if-range", &etag));
        let stale = app.send(
            app.request(Method::GET, &path, Some(&user)).header("range", "bytes=0-99").header("if-range", "\"stale\""),
        );
        current.assert_status(206);
        stale.assert_status(200);
        assert_eq!(stale.body.len(), full.body.len(), "a stale If-Range gets the whole body");
    }
}

#[test]
fn deleted_image_is_404_on_every_route_and_gone_from_the_list() {
    // Arrange
    let app = spawn_app();
    let user = app.create_user("enterprise");
    let image_id = id_of(&app.upload_ok(&user, "gone.jpg", &jpeg_seeded(300, 300, 1))["id"]);
    let other_id = id_of(&app.upload_ok(&user, "stays.jpg", &jpeg_seeded(300, 300, 2))["id"]);
    app.wait_until_ready(&user, &image_id);
    let link = app.create_link_ok(&user, &image_id, &json!({"expires_in": 300}));
    let link_url = link["url"].as_str().expect("a link url").to_owned();

    // Act
    app.delete_image(&user, &image_id).assert_status(204);

    // Assert
    app.get_image(&user, &image_id).assert_problem(404);
    app.delete_image(&user, &image_id).assert_problem(404);
    app.get_thumbnail(&user, &image_id, 200).assert_problem(404);
    app.get_thumbnail(&user, &image_id, 400).assert_problem(404);
    app.get_original(&user, &image_id).assert_problem(404);
    app.create_link(&user, &image_id, &json!({"expires_in": 300})).assert_problem(404);
    app.get_anonymous(&link_url).assert_status(404);
    let listed = result_ids(&app.list_images(&user, "").expect_json(200));
    assert_eq!(listed, vec![other_id.clone()], "only the other image is left");
    app.get_image(&user, &other_id).assert_status(200);
}

#[test]
fn image_list_is_newest_first_and_pages_with_next_until_null() {
    // Arrange
    let app = spawn_app();
    let user = app.create_user("basic");
    let uploaded: Vec<String> = (0..5u8)
        .map(|n| {
            let image = app.upload_ok(&user, &format!("p{n}.png"), &png_seeded(40 + u32::from(n), 30, n));
            id_of(&image["id"])
        })
        .collect();

    // Act
    let mut url = app.url("/api/v1/images?limit=2");
    let mut page_sizes = Vec::new();
    let mut seen = Vec::new();
    loop {
        assert!(page_sizes.len() < 5, "too many pages: {page_sizes:?}");
        let page = app.get_as(&user, &url).expect_json(200);
        let ids = result_ids(&page);
        page_sizes.push(ids.len());
        seen.extend(ids);
        match &page["next"] {
            serde_json::Value::Null => break,
            serde_json::Value::String(next) => {
                assert!(next.starts_with(&app.address), "`next` must be an absolute URL on {}: {next}", app.address);
                url = next.clone();
            }
            other => panic!("`next` must be a URL or null, got {other}"),
        }
    }

    // Assert
    assert_eq!(page_sizes, vec![2, 2, 1]);
    let newest_first: Vec<String> = uploaded.iter().rev().cloned().collect();
    assert_eq!(seen, newest_first, "all five, newest first, no duplicates");
    let unique: HashSet<&String> = seen.iter().collect();
    assert_eq!(unique.len(), 5);

    // Without a limit (default 20) everything fits on one page.
    let all = app.list_images(&user, "").expect_json(200);
    assert_eq!(result_ids(&all), newest_first);
    assert!(all["next"].is_null(), "no next page: {all:#}");
    assert_eq!(results(&all)[0]["name"], json!("p4.png"));
}

#[test]
fn image_list_rejects_limits_outside_1_to_100() {
    // Arrange
    let app = spawn_app();
    let user = app.create_user("basic");
    app.upload_ok(&user, "x.jpg", &jpeg(30, 30));

    // Act + Assert
    for query in ["limit=0", "limit=101", "limit=abc", "limit=-1", "limit=2.5"] {
        app.list_images(&user, query).assert_problem(400);
    }
    for query in ["limit=1", "limit=100"] {
        assert_eq!(results(&app.list_images(&user, query).expect_json(200)).len(), 1);
    }
}

#[test]
fn image_list_rejects_a_bad_cursor() {
    let app = spawn_app();
    let user = app.create_user("basic");
    app.upload_ok(&user, "x.jpg", &jpeg(30, 30));

    for cursor in ["bogus", "%00%01", "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA!!"] {
        app.list_images(&user, &format!("cursor={cursor}")).assert_problem(400);
    }
}

#[test]
fn admin_browses_one_users_images_with_their_owner() {
    // Arrange
    let app = spawn_app();
    let alice = app.create_user("basic");
    let bob = app.create_user("basic");
    let alices: HashSet<String> =
        (0..2u8).map(|n| id_of(&app.upload_ok(&alice, "a.jpg", &jpeg_seeded(50, 40, n))["id"])).collect();
    app.upload_ok(&bob, "b.jpg", &jpeg_seeded(50, 40, 7));

    // Act
    let page = app.admin_images(&alice.id).expect_json(200);

    // Assert
    let listed: HashSet<String> = result_ids(&page).into_iter().collect();
    assert_eq!(listed, alices, "only alice's images: {page:#}");
    assert!(page["next"].is_null(), "{page:#}");
    for image in results(&page) {
        let owner = &image["owner"];
        let is_alice = owner == &json!(alice.id)
            || owner == &json!(alice.username)
            || (owner.is_object() && id_of(&owner["id"]) == alice.id);
        assert!(is_alice, "expected alice as the owner: {image:#}");
        assert!(!is_absent(&image, "thumbnails"), "admin images are image objects: {image:#}");
    }
}

#[test]
fn thumbnail_urls_in_the_image_object_serve_the_thumbnails() {
    // Arrange
    let app = spawn_app();
    let user = app.create_user("premium");
    let image_id = id_of(&app.upload_ok(&user, "u.jpg", &jpeg(600, 300))["id"]);
    let ready = app.wait_until_ready(&user, &image_id);

    for height in [200, 400] {
        // Act
        let url = thumbnail_entry(&ready, height)["url"].as_str().expect("a url").to_owned();
        let reply = app.get_as(&user, &url);

        // Assert
        reply.assert_status(200);
        assert_content_type(&reply, ImageFormat::Jpeg);
        let (_, decoded) = crate::fixtures::decode(&reply.body);
        assert_eq!(decoded.height(), height.min(300));
    }
    let original_url = ready["original_url"].as_str().expect("an original_url").to_owned();
    app.get_as(&user, &original_url).assert_status(200);
}
