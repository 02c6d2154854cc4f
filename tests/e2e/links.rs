//! Expiring links: bounds of `expires_in`, anonymous fetches of the original and of a
//! thumbnail, variants the tier does not grant, listing, revocation, and links dying with
//! their image or their tier's flag.

use image::ImageFormat;
use serde_json::{json, Value};

use crate::fixtures::{decode, jpeg, jpeg_seeded};
use crate::helpers::{
    assert_binary_headers, id_of, result_ids, spawn_app, spawn_app_with, ServerOptions, TestApp, TestUser,
};

/// Uploads a 600x450 JPEG as `user` and waits for its thumbnails; returns (id, bytes).
fn ready_image(app: &TestApp, user: &TestUser) -> (String, Vec<u8>) {
    let bytes = jpeg(600, 450);
    let image_id = id_of(&app.upload_ok(user, "linked.jpg", &bytes)["id"]);
    app.wait_until_ready(user, &image_id);
    (image_id, bytes)
}

#[track_caller]
fn link_url(link: &Value) -> String {
    link["url"].as_str().unwrap_or_else(|| panic!("a link has a `url`: {link:#}")).to_owned()
}

#[test]
fn expires_in_must_be_an_integer_from_300_to_30000_seconds() {
    // Arrange
    let app = spawn_app();
    let user = app.create_user("enterprise");
    let (image_id, _) = ready_image(&app, &user);
    let invalid = [
        json!({"expires_in": 299}),
        json!({"expires_in": 30001}),
        json!({"expires_in": 300.5}),
        json!({"expires_in": "300"}),
        json!({"expires_in": -300}),
        json!({"expires_in": null}),
        json!({}),
        json!({"variant": "original"}),
    ];

    for body in invalid {
        // Act
        let reply = app.create_link(&user, &image_id, &body);

        // Assert
        assert_eq!(reply.status, 400, "expected 400 for {body}, got {}: {}", reply.status, reply.text());
        let messages = reply.assert_field_error("expires_in").join(" ");
        assert!(
            messages.contains("300") && messages.contains("30000"),
            "the message for {body} should name the range 300..=30000: {messages:?}"
        );
    }
    assert!(
        result_ids(&app.list_links(&user).expect_json(200)).is_empty(),
        "no link was created by an invalid request"
    );

    for seconds in [300, 30000] {
        // Act
        let link = app.create_link_ok(&user, &image_id, &json!({"expires_in": seconds}));

        // Assert
        assert_eq!(link["expires_in"], json!(seconds), "{link:#}");
        assert_eq!(link["variant"], json!("original"), "the default variant: {link:#}");
        assert!(link["expires_at"].as_str().is_some_and(|at| !at.is_empty()), "{link:#}");
        id_of(&link["id"]);
        assert!(
            link_url(&link).starts_with(&format!("{}/l/", app.address)),
            "a link is an absolute /l/ URL on {}: {link:#}",
            app.address
        );
    }
}

#[test]
fn link_to_the_original_serves_the_uploaded_bytes_to_anyone() {
    // Arrange
    let app = spawn_app();
    let user = app.create_user("enterprise");
    let (image_id, bytes) = ready_image(&app, &user);
    let link = app.create_link_ok(&user, &image_id, &json!({"expires_in": 600, "variant": "original"}));

    // Act: no Authorization header at all
    let reply = app.get_anonymous(&link_url(&link));

    // Assert
    reply.assert_status(200);
    assert!(reply.body == bytes, "the link serves the original bytes exactly");
    assert_binary_headers(&reply, ImageFormat::Jpeg);
}

#[test]
fn link_to_a_thumbnail_serves_that_thumbnail_to_anyone() {
    // Arrange
    let app = spawn_app();
    let user = app.create_user("enterprise");
    let (image_id, _) = ready_image(&app, &user);
    let link = app.create_link_ok(&user, &image_id, &json!({"expires_in": 600, "variant": 200}));
    let thumbnail = app.get_thumbnail(&user, &image_id, 200);
    thumbnail.assert_status(200);

    // Act
    let reply = app.get_anonymous(&link_url(&link));

    // Assert
    assert_eq!(link["variant"], json!(200), "{link:#}");
    reply.assert_status(200);
    let (format, decoded) = decode(&reply.body);
    assert_eq!(format, ImageFormat::Jpeg);
    assert_eq!((decoded.width(), decoded.height()), (267, 200));
    assert!(reply.body == thumbnail.body, "the link serves the same thumbnail bytes");
    assert_binary_headers(&reply, ImageFormat::Jpeg);
}

#[test]
fn link_to_a_height_the_tier_does_not_grant_is_403() {
    // Arrange
    let app = spawn_app();
    let user = app.create_user("enterprise");
    let (image_id, _) = ready_image(&app, &user);

    // Act + Assert
    for variant in [100, 300, 800] {
        app.create_link(&user, &image_id, &json!({"expires_in": 300, "variant": variant})).assert_problem(403);
    }
    app.create_link(&user, &image_id, &json!({"expires_in": 300, "variant": 400})).assert_status(201);
}

#[test]
fn link_to_the_original_needs_the_original_link_flag() {
    // Arrange: links allowed, but no original
    let app = spawn_app();
    app.create_tier("links-no-original", &[200], false, true);
    let user = app.create_user("links-no-original");
    let (image_id, _) = ready_image(&app, &user);

    // Act + Assert
    app.create_link(&user, &image_id, &json!({"expires_in": 300})).assert_problem(403);
    app.create_link(&user, &image_id, &json!({"expires_in": 300, "variant": "original"})).assert_problem(403);
    app.create_link(&user, &image_id, &json!({"expires_in": 300, "variant": 200})).assert_status(201);
}

#[test]
fn tiers_without_the_expiring_links_flag_cannot_create_links() {
    let app = spawn_app();
    for tier in ["basic", "premium"] {
        let user = app.create_user(tier);
        let (image_id, _) = ready_image(&app, &user);
        app.create_link(&user, &image_id, &json!({"expires_in": 300, "variant": 200})).assert_problem(403);
    }
}

#[test]
fn revoked_link_is_404_at_once_and_leaves_the_list() {
    // Arrange
    let app = spawn_app();
    let user = app.create_user("enterprise");
    let (image_id, _) = ready_image(&app, &user);
    let revoked = app.create_link_ok(&user, &image_id, &json!({"expires_in": 300}));
    let kept = app.create_link_ok(&user, &image_id, &json!({"expires_in": 300, "variant": 400}));
    app.get_anonymous(&link_url(&revoked)).assert_status(200);

    // Act
    app.delete_link(&user, &id_of(&revoked["id"])).assert_status(204);

    // Assert
    app.get_anonymous(&link_url(&revoked)).assert_status(404);
    app.get_anonymous(&link_url(&kept)).assert_status(200);
    let listed = result_ids(&app.list_links(&user).expect_json(200));
    assert_eq!(listed, vec![id_of(&kept["id"])]);
    app.delete_link(&user, &id_of(&revoked["id"])).assert_problem(404);
}

#[test]
fn link_of_a_deleted_image_is_404() {
    // Arrange
    let app = spawn_app();
    let user = app.create_user("enterprise");
    let (image_id, _) = ready_image(&app, &user);
    let original = app.create_link_ok(&user, &image_id, &json!({"expires_in": 300}));
    let thumbnail = app.create_link_ok(&user, &image_id, &json!({"expires_in": 300, "variant": 200}));
    app.get_anonymous(&link_url(&original)).assert_status(200);

    // Act
    app.delete_image(&user, &image_id).assert_status(204);

    // Assert
    app.get_anonymous(&link_url(&original)).assert_status(404);
    app.get_anonymous(&link_url(&thumbnail)).assert_status(404);
    assert!(result_ids(&app.list_links(&user).expect_json(200)).is_empty(), "the image's links went with it");
}

#[test]
fn unknown_link_token_is_404() {
    let app = spawn_app();
    for token in ["nope", "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", "0123456789abcdef0123456789abcdef"] {
        app.get_anonymous(&format!("/l/{token}")).assert_status(404);
    }
}

#[test]
fn links_list_shows_only_the_users_own_live_links() {
    // Arrange
    let app = spawn_app();
    let alice = app.create_user("enterprise");
    let bob = app.create_user("enterprise");
    let (alice_image, _) = ready_image(&app, &alice);
    let bob_image = id_of(&app.upload_ok(&bob, "bob.jpg", &jpeg_seeded(200, 200, 5))["id"]);
    let first = app.create_link_ok(&alice, &alice_image, &json!({"expires_in": 300}));
    let second = app.create_link_ok(&alice, &alice_image, &json!({"expires_in": 900, "variant": 200}));
    let bobs = app.create_link_ok(&bob, &bob_image, &json!({"expires_in": 300}));

    // Act
    let listed = app.list_links(&alice).expect_json(200);

    // Assert
    let mut ids = result_ids(&listed);
    ids.sort();
    let mut expected = vec![id_of(&first["id"]), id_of(&second["id"])];
    expected.sort();
    assert_eq!(ids, expected, "{listed:#}");
    assert!(!listed.to_string().contains(&link_url(&bobs)), "no other user's link: {listed:#}");
    assert_eq!(result_ids(&app.list_links(&bob).expect_json(200)), vec![id_of(&bobs["id"])]);
}

#[test]
fn another_users_link_cannot_be_revoked() {
    // Arrange
    let app = spawn_app();
    let owner = app.create_user("enterprise");
    let stranger = app.create_user("enterprise");
    let (image_id, _) = ready_image(&app, &owner);
    let link = app.create_link_ok(&owner, &image_id, &json!({"expires_in": 300}));

    // Act
    let reply = app.delete_link(&stranger, &id_of(&link["id"]));

    // Assert
    reply.assert_problem(404);
    app.get_anonymous(&link_url(&link)).assert_status(200);
}

#[test]
fn links_stop_working_when_the_tier_loses_expiring_links() {
    // Arrange
    let app = spawn_app();
    app.create_tier("sharing", &[200], true, true);
    let tier_user = app.create_user("sharing");
    let moved_user = app.create_user("enterprise");
    let (tier_image, _) = ready_image(&app, &tier_user);
    let (moved_image, _) = ready_image(&app, &moved_user);
    let tier_link = app.create_link_ok(&tier_user, &tier_image, &json!({"expires_in": 300}));
    let moved_link = app.create_link_ok(&moved_user, &moved_image, &json!({"expires_in": 300}));
    app.get_anonymous(&link_url(&tier_link)).assert_status(200);
    app.get_anonymous(&link_url(&moved_link)).assert_status(200);

    // Act: the tier loses the flag; the other user moves to a tier without it
    app.patch_tier("sharing", &json!({"expiring_links": false})).assert_status(200);
    app.patch_user(&moved_user.id, &json!({"tier": "premium"})).assert_status(200);

    // Assert
    for link in [&tier_link, &moved_link] {
        let reply = app.get_anonymous(&link_url(link));
        assert!(
            [403, 404, 410].contains(&reply.status),
            "a link whose tier lost expiring links must stop working (403/404/410), got {}",
            reply.status
        );
    }
    app.create_link(&tier_user, &tier_image, &json!({"expires_in": 300})).assert_problem(403);
}

#[test]
fn a_user_holds_at_most_the_configured_live_links_even_when_creating_them_at_once() {
    // Arrange: a cap of 4, one place left
    let app = spawn_app_with(ServerOptions {
        env: vec![("IMAGEAPI_MAX_LINKS_PER_USER", "4".to_owned())],
        ..ServerOptions::default()
    });
    let user = app.create_user("enterprise");
    let other = app.create_user("enterprise");
    let (image_id, _) = ready_image(&app, &user);
    for _ in 0..3 {
        app.create_link_ok(&user, &image_id, &json!({"expires_in": 600}));
    }

    // Act: 16 creations at once
    let replies: Vec<_> = std::thread::scope(|scope| {
        let racers: Vec<_> =
            (0..16).map(|_| scope.spawn(|| app.create_link(&user, &image_id, &json!({"expires_in": 900})))).collect();
        racers.into_iter().map(|r| r.join().expect("racer")).collect()
    });

    // Assert: exactly one took the place; the others are told why and when to come back
    let created = replies.iter().filter(|r| r.status == 201).count();
    assert_eq!(created, 1, "{:?}", replies.iter().map(|r| r.status).collect::<Vec<_>>());
    for refused in replies.iter().filter(|r| r.status != 201) {
        let problem = refused.assert_problem(429);
        let detail = problem["detail"].as_str().unwrap_or_default();
        assert!(detail.contains("4 live links"), "names the cap: {detail}");
        let wait: u64 = refused.header("retry-after").and_then(|v| v.parse().ok()).expect("Retry-After");
        // The soonest link was made with 600 s a moment ago (generous for a loaded machine).
        assert!((480..=600).contains(&wait), "until the soonest link expires (600 s): {wait}");
    }
    let listed = app.list_links(&user).expect_json(200);
    assert_eq!(result_ids(&listed).len(), 4, "{listed:#}");
    // Another user's places are their own; a revoked link frees one.
    let (other_image, _) = ready_image(&app, &other);
    app.create_link_ok(&other, &other_image, &json!({"expires_in": 300}));
    app.delete_link(&user, &result_ids(&listed)[0]).assert_status(204);
    app.create_link_ok(&user, &image_id, &json!({"expires_in": 300}));
    app.create_link(&user, &image_id, &json!({"expires_in": 300})).assert_problem(429);
}

#[test]
fn link_lists_come_in_pages_newest_first_for_users_and_admins() {
    // Arrange
    let app = spawn_app();
    let user = app.create_user("enterprise");
    let other = app.create_user("enterprise");
    let (image_id, _) = ready_image(&app, &user);
    let (other_image, _) = ready_image(&app, &other);
    let mut made = Vec::new();
    for n in 0..5 {
        made.push(id_of(&app.create_link_ok(&user, &image_id, &json!({"expires_in": 300 + n}))["id"]));
    }
    let others = id_of(&app.create_link_ok(&other, &other_image, &json!({"expires_in": 300}))["id"]);
    let walk = |first: &str, as_user: &TestUser| {
        let mut seen = Vec::new();
        let mut next = Some(first.to_owned());
        while let Some(url) = next {
            let page = app.get_as(as_user, &url).expect_json(200);
            let ids = result_ids(&page);
            assert!(ids.len() <= 2, "a page holds at most the limit: {page:#}");
            seen.extend(ids);
            next = page["next"].as_str().map(str::to_owned);
            assert!(seen.len() <= 10, "the pages end");
        }
        seen
    };

    // Act
    let users_pages = walk("/api/v1/links?limit=2", &user);
    let admins_pages = walk("/api/v1/admin/links?limit=2", &app.admin);

    // Assert
    let newest_first: Vec<String> = made.iter().rev().cloned().collect();
    assert_eq!(users_pages, newest_first, "each of the user's links once, newest first");
    let mut all = vec![others];
    all.extend(newest_first);
    assert_eq!(admins_pages, all, "every live link once, newest first");
    for bad in ["limit=0", "limit=101", "limit=x", "cursor=nope"] {
        app.get_as(&user, &format!("/api/v1/links?{bad}")).assert_field_error(bad.split('=').next().unwrap_or(""));
        app.get_as(&app.admin, &format!("/api/v1/admin/links?{bad}")).assert_status(400);
    }
}
