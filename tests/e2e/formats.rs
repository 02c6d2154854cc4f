//! Modern delivery: WebP and AVIF variants chosen by `Accept` or by extension, formats per
//! tier, alpha kept, ThumbHash placeholders, tier changes that grant and withdraw formats.

use base64::Engine as _;
use reqwest::Method;
use serde_json::{json, Value};

use crate::fixtures::{expected_thumbnail_size, jpeg, png, rgba_png_left_half_transparent};
use crate::helpers::{id_of, thumbnail_entry, Reply, TestApp, TestUser, READY_DEADLINE};

const CHROME: &str = "image/avif,image/webp,image/apng,image/svg+xml,image/*,*/*;q=0.8";

/// GET as `user` (or anyone), with an `Accept` header if given.
fn get(app: &TestApp, user: Option<&TestUser>, path: &str, accept: Option<&str>) -> Reply {
    let mut request = app.request(Method::GET, path, user);
    if let Some(accept) = accept {
        request = request.header("accept", accept);
    }
    app.send(request)
}

fn thumbnail(app: &TestApp, user: &TestUser, path: &str, accept: Option<&str>) -> Reply {
    get(app, Some(user), path, accept)
}

fn content_type(reply: &Reply) -> &str {
    reply.header("content-type").unwrap_or("")
}

/// The formats an image object lists for one height: (format, status).
fn formats_of(image: &Value, height: u32) -> Vec<(String, String)> {
    thumbnail_entry(image, height)["formats"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|f| (f["format"].as_str().unwrap_or("").to_owned(), f["status"].as_str().unwrap_or("").to_owned()))
        .collect()
}

/// Waits until every format of every listed thumbnail is ready.
#[track_caller]
fn wait_all_formats_ready(app: &TestApp, user: &TestUser, id: &str) -> Value {
    app.wait_for_image(user, id, READY_DEADLINE, "every format ready", |image| {
        image["thumbnails"].as_array().is_some_and(|thumbnails| {
            thumbnails.iter().all(|t| t["formats"].as_array().is_some_and(|f| f.iter().all(|f| f["status"] == "ready")))
        })
    })
}

/// Decodes a WebP file with libwebp: (width, height, RGBA pixels).
#[track_caller]
fn decode_webp(bytes: &[u8]) -> (u32, u32, Vec<u8>) {
    assert!(bytes.len() > 12 && &bytes[..4] == b"RIFF" && &bytes[8..12] == b"WEBP", "a WebP file");
    let image = webp::Decoder::new(bytes).decode().expect("libwebp decodes it");
    let (w, h) = (image.width(), image.height());
    let pixels = if image.is_alpha() {
        image.to_vec()
    } else {
        image.to_vec().chunks_exact(3).flat_map(|p| [p[0], p[1], p[2], 255]).collect()
    };
    (w, h, pixels)
}

/// What an AVIF file says of itself without decoding AV1 (no light AVIF decoder exists):
/// its major brand, its image size (`ispe`) and whether it has an alpha plane (`auxC`).
fn avif_facts(bytes: &[u8]) -> (bool, Option<(u32, u32)>, bool) {
    let brand = bytes.len() > 12 && &bytes[4..8] == b"ftyp" && &bytes[8..12] == b"avif";
    let ispe = bytes.windows(4).position(|w| w == b"ispe").and_then(|at| {
        let size = bytes.get(at + 8..at + 16)?;
        let u32_at = |i: usize| u32::from_be_bytes([size[i], size[i + 1], size[i + 2], size[i + 3]]);
        Some((u32_at(0), u32_at(4)))
    });
    const ALPHA: &[u8] = b"urn:mpeg:mpegB:cicp:systems:auxiliary:alpha";
    let alpha = bytes.windows(ALPHA.len()).any(|w| w == ALPHA);
    (brand, ispe, alpha)
}

#[test]
fn accept_chooses_among_the_granted_formats_and_says_vary() {
    let app = crate::helpers::spawn_app();
    let user = app.create_user("premium");
    let id = id_of(&app.upload_ok(&user, "a.jpg", &jpeg(640, 480))["id"]);
    let image = wait_all_formats_ready(&app, &user, &id);
    let path = TestApp::thumbnail_path(&id, 200);
    let (width, height) = expected_thumbnail_size(640, 480, 200);

    for (accept, expected) in [
        (None, "image/jpeg"),
        (Some(CHROME), "image/avif"),
        (Some("image/webp"), "image/webp"),
        (Some("image/avif;q=0, image/webp;q=0.5, image/jpeg;q=0.4"), "image/webp"),
        (Some("image/webp;q=0.4, image/jpeg"), "image/jpeg"),
        (Some("image/avif;q=0.9, image/webp;q=0.9"), "image/avif"),
        (Some("*/*"), "image/jpeg"),
        (Some("image/*"), "image/jpeg"),
        (Some("image/webp;q=2"), "image/jpeg"),
        (Some("image/webp;;"), "image/jpeg"),
        (Some("nonsense"), "image/jpeg"),
        (Some("image/png"), "image/jpeg"),
    ] {
        let reply = thumbnail(&app, &user, &path, accept);
        reply.assert_status(200);
        assert_eq!(content_type(&reply), expected, "Accept: {accept:?}");
        assert_eq!(reply.header("vary"), Some("Accept"), "a negotiated answer says so: {accept:?}");
    }
    let webp = thumbnail(&app, &user, &path, Some("image/webp"));
    let (w, h, _) = decode_webp(&webp.body);
    assert_eq!((w, h), (width, height));
    let avif = thumbnail(&app, &user, &path, Some("image/avif"));
    assert_eq!(avif_facts(&avif.body), (true, Some((width, height)), false), "an opaque AVIF of the right size");

    // The image object lists each format with its own URL and size, source first.
    let listed = thumbnail_entry(&image, 200)["formats"].clone();
    let names: Vec<&str> = listed.as_array().into_iter().flatten().filter_map(|f| f["format"].as_str()).collect();
    assert_eq!(names, ["jpeg", "webp", "avif"], "{image:#}");
    assert_eq!(listed[1]["url"], json!(app.url(&format!("{path}.webp"))));
    assert_eq!(listed[1]["content_type"], json!("image/webp"));
    assert_eq!(listed[1]["size_bytes"], json!(webp.body.len()));
    assert_eq!(listed[2]["size_bytes"], json!(avif.body.len()));
    assert_eq!(thumbnail_entry(&image, 200)["url"], json!(app.url(&path)), "the negotiating URL stays");

    // ETag, 304 and Range per format.
    let jpeg_tag = thumbnail(&app, &user, &path, None).header("etag").map(str::to_owned);
    let webp_tag = webp.header("etag").map(str::to_owned);
    assert!(jpeg_tag.is_some() && webp_tag.is_some() && jpeg_tag != webp_tag, "{jpeg_tag:?} {webp_tag:?}");
    let request = |accept: &str| app.request(Method::GET, &path, Some(&user)).header("accept", accept);
    let tag = webp_tag.unwrap_or_default();
    let not_modified = app.send(request("image/webp").header("if-none-match", &tag));
    not_modified.assert_status(304);
    assert_eq!(not_modified.header("vary"), Some("Accept"));
    app.send(request("image/avif").header("if-none-match", &tag)).assert_status(200);
    let partial = app.send(request("image/avif").header("range", "bytes=0-11"));
    partial.assert_status(206);
    assert_eq!(content_type(&partial), "image/avif");
    assert_eq!(partial.body, avif.body[..12]);
    assert_eq!(partial.header("content-range"), Some(format!("bytes 0-11/{}", avif.body.len()).as_str()));
}

#[test]
fn extensions_name_a_format_and_a_format_not_granted_is_403() {
    let app = crate::helpers::spawn_app();
    let user = app.create_user("basic"); // WebP, no AVIF
    let id = id_of(&app.upload_ok(&user, "a.jpg", &jpeg(640, 480))["id"]);
    let image = wait_all_formats_ready(&app, &user, &id);
    assert_eq!(formats_of(&image, 200), [("jpeg".into(), "ready".into()), ("webp".into(), "ready".into())]);
    let path = TestApp::thumbnail_path(&id, 200);

    for (suffix, expected) in [(".webp", "image/webp"), (".jpg", "image/jpeg"), (".jpeg", "image/jpeg")] {
        let reply = thumbnail(&app, &user, &format!("{path}{suffix}"), Some(CHROME));
        reply.assert_status(200);
        assert_eq!(content_type(&reply), expected, "{suffix}: the extension wins over Accept");
        assert_eq!(reply.header("vary"), None, "{suffix}: one URL, one format");
    }
    let refused = thumbnail(&app, &user, &format!("{path}.avif"), None).assert_problem(403);
    assert!(refused["detail"].as_str().is_some_and(|d| d.contains("AVIF")), "{refused:#}");
    for missing in [".png", ".gif", ".WEBP", ".webp.jpg", "."] {
        thumbnail(&app, &user, &format!("{path}{missing}"), None).assert_problem(404);
    }
    thumbnail(&app, &user, &format!("/api/v1/images/{id}/thumbnails/0200.webp"), None).assert_problem(404);
    // A height the tier does not grant is 403 in any format.
    thumbnail(&app, &user, &format!("/api/v1/images/{id}/thumbnails/400.webp"), None).assert_problem(403);
    // Negotiation never offers what the tier does not grant.
    let negotiated = thumbnail(&app, &user, &path, Some(CHROME));
    assert_eq!(content_type(&negotiated), "image/webp");

    // Someone else's image stays someone else's in every format.
    let other = app.create_user("premium");
    thumbnail(&app, &other, &format!("{path}.webp"), None).assert_problem(404);
}

#[test]
fn alpha_of_an_rgba_png_survives_in_webp_and_avif() {
    let app = crate::helpers::spawn_app();
    let user = app.create_user("premium");
    let id = id_of(&app.upload_ok(&user, "alpha.png", &rgba_png_left_half_transparent(400, 200))["id"]);
    let image = wait_all_formats_ready(&app, &user, &id);
    assert_eq!(
        formats_of(&image, 200).into_iter().map(|(f, _)| f).collect::<Vec<_>>(),
        ["png", "webp", "avif"],
        "{image:#}"
    );
    let path = TestApp::thumbnail_path(&id, 200);
    let png_reply = thumbnail(&app, &user, &format!("{path}.png"), None);
    assert_eq!(content_type(&png_reply), "image/png");
    thumbnail(&app, &user, &format!("{path}.jpg"), None).assert_problem(404);

    let (w, h, pixels) = decode_webp(&thumbnail(&app, &user, &format!("{path}.webp"), None).body);
    assert_eq!((w, h), (400, 200));
    let alpha = |x: u32, y: u32| pixels[((y * w + x) * 4 + 3) as usize];
    assert_eq!(alpha(10, 100), 0, "the transparent half stays transparent");
    assert_eq!(alpha(390, 100), 255, "the opaque half stays opaque");
    let avif = thumbnail(&app, &user, &format!("{path}.avif"), None);
    assert_eq!(avif_facts(&avif.body), (true, Some((400, 200)), true), "an AVIF with an alpha plane");
}

#[test]
fn every_image_gets_a_thumbhash_of_its_aspect_ratio() {
    let app = crate::helpers::spawn_app();
    let user = app.create_user("basic");
    let id = id_of(&app.upload_ok(&user, "wide.png", &png(800, 400))["id"]);
    let image = app.wait_until_ready(&user, &id);
    let encoded = image["thumbhash"].as_str().unwrap_or_else(|| panic!("a thumbhash: {image:#}"));
    let hash = base64::engine::general_purpose::STANDARD.decode(encoded).expect("base64");
    let ratio = thumbhash::thumb_hash_to_approximate_aspect_ratio(&hash).expect("a ThumbHash");
    // ThumbHash keeps the ratio only roughly (its grid of coefficients is a few cells wide).
    assert!((ratio / 2.0 - 1.0).abs() < 0.15, "aspect ratio {ratio} of an 800x400 image");
    let (w, h, rgba) = thumbhash::thumb_hash_to_rgba(&hash).expect("decodes to pixels");
    assert_eq!(rgba.len(), w * h * 4);
    assert_eq!(app.admin_image(&id).expect_json(200)["thumbhash"], json!(encoded), "the admin detail shows it");
    let listed = app.list_images(&user, "").expect_json(200);
    assert_eq!(listed["results"][0]["thumbhash"], json!(encoded));
}

#[test]
fn expiring_links_to_a_thumbnail_negotiate_too() {
    let app = crate::helpers::spawn_app();
    let user = app.create_user("enterprise");
    let id = id_of(&app.upload_ok(&user, "a.jpg", &jpeg(640, 480))["id"]);
    wait_all_formats_ready(&app, &user, &id);
    let link = app.create_link_ok(&user, &id, &json!({ "expires_in": 600, "variant": 400 }));
    let url = link["url"].as_str().expect("url").to_owned();
    let fetch = |accept: Option<&str>| {
        let mut request = app.request(Method::GET, &url, None);
        if let Some(accept) = accept {
            request = request.header("accept", accept);
        }
        app.send(request)
    };
    for (accept, expected) in
        [(None, "image/jpeg"), (Some(CHROME), "image/avif"), (Some("image/webp,*/*"), "image/webp")]
    {
        let reply = fetch(accept);
        reply.assert_status(200);
        assert_eq!(content_type(&reply), expected, "{accept:?}");
        assert_eq!(reply.header("vary"), Some("Accept"));
        assert_eq!(reply.header("cache-control"), Some("no-store"));
    }
}

#[test]
fn granting_a_format_makes_it_for_old_images_and_withdrawing_it_is_immediate() {
    let app = crate::helpers::spawn_app();
    app.post_tier(&json!({
        "id": "plain", "name": "Plain", "thumbnail_heights": [200],
        "original_link": false, "expiring_links": false
    }))
    .assert_status(201);
    let user = app.create_user("plain");
    let id = id_of(&app.upload_ok(&user, "a.jpg", &jpeg(640, 480))["id"]);
    let image = app.wait_until_ready(&user, &id);
    assert_eq!(formats_of(&image, 200), [("jpeg".into(), "ready".into())], "a custom tier grants no extra format");
    let path = TestApp::thumbnail_path(&id, 200);
    thumbnail(&app, &user, &format!("{path}.webp"), None).assert_problem(403);
    assert_eq!(content_type(&thumbnail(&app, &user, &path, Some(CHROME))), "image/jpeg");

    app.patch_tier("plain", &json!({ "formats": ["webp", "avif"] })).assert_status(200);
    let image = wait_all_formats_ready(&app, &user, &id);
    assert_eq!(
        formats_of(&image, 200).into_iter().map(|(f, _)| f).collect::<Vec<_>>(),
        ["jpeg", "webp", "avif"],
        "{image:#}"
    );
    assert_eq!(content_type(&thumbnail(&app, &user, &path, Some(CHROME))), "image/avif");
    let webp = thumbnail(&app, &user, &format!("{path}.webp"), None);
    webp.assert_status(200);
    assert_eq!(decode_webp(&webp.body).0, expected_thumbnail_size(640, 480, 200).0);

    app.patch_tier("plain", &json!({ "formats": ["webp"] })).assert_status(200);
    // At once: the next request already sees the tier without AVIF.
    thumbnail(&app, &user, &format!("{path}.avif"), None).assert_problem(403);
    assert_eq!(content_type(&thumbnail(&app, &user, &path, Some(CHROME))), "image/webp");
    let image = app.image(&user, &id);
    assert_eq!(formats_of(&image, 200).into_iter().map(|(f, _)| f).collect::<Vec<_>>(), ["jpeg", "webp"]);
}
