//! Tiers: what each tier grants on an uploaded image, tier administration (validation,
//! deletion rules), and tier changes applying at once to existing images.

use image::ImageFormat;
use serde_json::{json, Value};

use crate::fixtures::jpeg;
use crate::helpers::{
    id_of, is_absent, result_ids, results, spawn_app, thumbnail_entry, thumbnail_heights, TestApp, TestUser,
};

/// What a tier should grant on one image.
struct Grants<'a> {
    heights: &'a [u32],
    original: bool,
    links: bool,
}

/// Uploads a 600x450 JPEG as `user`, waits for its thumbnails and checks that exactly the
/// granted thumbnails, original and links work and everything else is 403.
fn assert_upload_gets(app: &TestApp, user: &TestUser, grants: Grants<'_>) {
    // Arrange
    let source = (600, 450);
    let bytes = jpeg(source.0, source.1);

    // Act
    let image = app.upload_ok(user, "photo.jpg", &bytes);

    // Assert: the image object
    let image_id = id_of(&image["id"]);
    app.assert_thumbnail_entries(&image, grants.heights, source);
    if grants.original {
        assert_eq!(image["original_url"], json!(app.url(&format!("/api/v1/images/{image_id}/original"))), "{image:#}");
    } else {
        assert!(is_absent(&image, "original_url"), "no original_url expected: {image:#}");
    }
    assert_eq!(image["expiring_links"], json!(grants.links), "{image:#}");

    // Assert: the granted thumbnails, by their listed URLs
    let ready = app.wait_until_ready(user, &image_id);
    app.assert_thumbnail_entries(&ready, grants.heights, source);
    for &height in grants.heights {
        let url = thumbnail_entry(&ready, height)["url"].as_str().expect("a thumbnail url").to_owned();
        app.get_as(user, &url).assert_status(200);
        app.assert_thumbnail(user, &image_id, height, ImageFormat::Jpeg, source);
    }

    // Assert: heights not granted
    for height in [100u32, 200, 300, 400, 800] {
        if !grants.heights.contains(&height) {
            app.get_thumbnail(user, &image_id, height).assert_problem(403);
        }
    }

    // Assert: the original
    let original = app.get_original(user, &image_id);
    if grants.original {
        original.assert_status(200);
        assert!(original.body == bytes, "the original must be the uploaded bytes");
    } else {
        original.assert_problem(403);
    }

    // Assert: expiring links
    let link = app.create_link(
        user,
        &image_id,
        &json!({"expires_in": 300, "variant": grants.heights.first().copied().unwrap_or(200)}),
    );
    if grants.links {
        link.assert_status(201);
    } else {
        link.assert_problem(403);
    }
}

#[test]
fn basic_tier_gets_only_the_200px_thumbnail() {
    let app = spawn_app();
    let user = app.create_user("basic");
    assert_upload_gets(&app, &user, Grants { heights: &[200], original: false, links: false });
}

#[test]
fn premium_tier_gets_200_and_400px_thumbnails_and_the_original() {
    let app = spawn_app();
    let user = app.create_user("premium");
    assert_upload_gets(&app, &user, Grants { heights: &[200, 400], original: true, links: false });
}

#[test]
fn enterprise_tier_gets_200_and_400px_thumbnails_the_original_and_expiring_links() {
    let app = spawn_app();
    let user = app.create_user("enterprise");
    assert_upload_gets(&app, &user, Grants { heights: &[200, 400], original: true, links: true });
}

#[test]
fn custom_tier_gets_exactly_its_100_and_300px_thumbnails_and_the_original() {
    let app = spawn_app();
    app.create_tier("hundreds", &[300, 100], true, false);
    let user = app.create_user("hundreds");
    assert_upload_gets(&app, &user, Grants { heights: &[100, 300], original: true, links: false });
}

#[test]
fn custom_tier_with_no_heights_grants_only_the_original() {
    let app = spawn_app();
    let tier = app.create_tier("originals-only", &[], true, false);
    assert_eq!(tier["thumbnail_heights"], json!([]), "{tier:#}");
    let user = app.create_user("originals-only");
    assert_upload_gets(&app, &user, Grants { heights: &[], original: true, links: false });
}

#[test]
fn builtin_tiers_exist_from_the_first_start_with_their_grants() {
    // Arrange
    let app = spawn_app();
    let expected = [
        ("basic", json!([200]), false, false, json!(["webp"])),
        ("premium", json!([200, 400]), true, false, json!(["webp", "avif"])),
        ("enterprise", json!([200, 400]), true, true, json!(["webp", "avif"])),
    ];

    // Act
    let listed = app.list_tiers().expect_json(200);

    // Assert
    for (id, heights, original, links, formats) in expected {
        let tier = results(&listed)
            .into_iter()
            .find(|tier| tier["id"] == id)
            .unwrap_or_else(|| panic!("expected builtin tier {id}: {listed:#}"));
        assert_eq!(tier["thumbnail_heights"], heights, "{tier:#}");
        assert_eq!(tier["original_link"], json!(original), "{tier:#}");
        assert_eq!(tier["expiring_links"], json!(links), "{tier:#}");
        assert_eq!(tier["formats"], formats, "{tier:#}");
        assert_eq!(tier["builtin"], json!(true), "{tier:#}");
        assert!(tier["name"].as_str().is_some_and(|name| !name.is_empty()), "{tier:#}");
        // The admin holds some tier too, so only the type is certain here.
        assert!(tier["user_count"].is_u64(), "{tier:#}");
        let one = app.get_tier(id).expect_json(200);
        assert_eq!(one["thumbnail_heights"], tier["thumbnail_heights"], "{one:#}");
        assert_eq!(one["builtin"], json!(true), "{one:#}");
        assert_eq!(one["formats"], tier["formats"], "{one:#}");
    }
    let user = app.create_user("premium");
    let me = app.me(&user).expect_json(200);
    assert_eq!(me["tier"]["formats"], json!(["webp", "avif"]), "a user sees the formats their tier grants: {me:#}");
}

#[test]
fn tier_formats_are_set_at_creation_listed_and_changed_only_when_named() {
    // Arrange
    let app = spawn_app();
    let body = |id: &str| json!({"id": id, "name": id, "thumbnail_heights": [100]});

    // Act
    let plain = app.post_tier(&body("plain")).expect_json(201);
    let mut both = body("both");
    both["formats"] = json!(["avif", "webp"]);
    let both = app.post_tier(&both).expect_json(201);

    // Assert: none unless named; kept in one order (WebP, then AVIF)
    assert_eq!(plain["formats"], json!([]), "{plain:#}");
    assert_eq!(both["formats"], json!(["webp", "avif"]), "{both:#}");
    let listed = app.list_tiers().expect_json(200);
    let listed_formats = |id: &str| {
        results(&listed).into_iter().find(|t| t["id"] == id).map(|t| t["formats"].clone()).unwrap_or_default()
    };
    assert_eq!(listed_formats("both"), json!(["webp", "avif"]), "{listed:#}");
    assert_eq!(listed_formats("plain"), json!([]), "{listed:#}");

    // Act + Assert: an edit changes formats only when it names them
    let renamed = app.patch_tier("both", &json!({"name": "Both"})).expect_json(200);
    assert_eq!(renamed["formats"], json!(["webp", "avif"]), "untouched: {renamed:#}");
    let webp = app.patch_tier("plain", &json!({"formats": ["webp"]})).expect_json(200);
    assert_eq!(webp["formats"], json!(["webp"]), "{webp:#}");
    assert_eq!(webp["thumbnail_heights"], json!([100]), "{webp:#}");
    let builtin = app.patch_tier("basic", &json!({"formats": []})).expect_json(200);
    assert_eq!(builtin["formats"], json!([]), "a builtin tier's formats can be taken away: {builtin:#}");
    assert_eq!(app.get_tier("plain").expect_json(200)["formats"], json!(["webp"]));
    assert_eq!(app.get_tier("basic").expect_json(200)["formats"], json!([]));
}

#[test]
fn tier_formats_must_be_a_list_of_webp_or_avif_without_repeats() {
    // Arrange
    let app = spawn_app();
    let bad = [
        json!("webp"),
        json!(["gif"]),
        json!(["jpeg"]),
        json!(["WEBP"]),
        json!(["webp", "webp"]),
        json!([1]),
        json!([["webp"]]),
        json!({"webp": true}),
    ];

    for (n, formats) in bad.iter().enumerate() {
        // Act
        let created = app.post_tier(&json!({"id": format!("bad-{n}"), "name": "Bad", "thumbnail_heights": [100],
                                            "formats": formats}));
        let patched = app.patch_tier("premium", &json!({"formats": formats, "name": "Renamed"}));

        // Assert: refused whole, naming the field
        let messages = created.assert_field_error("formats");
        assert!(!messages.join(" ").is_empty(), "{formats}");
        patched.assert_field_error("formats");
    }
    assert_eq!(result_ids(&app.list_tiers().expect_json(200)).len(), 3, "nothing was created");
    let premium = app.get_tier("premium").expect_json(200);
    assert_eq!((premium["name"].clone(), premium["formats"].clone()), (json!("Premium"), json!(["webp", "avif"])));
    let unknown = app.post_tier(&json!({"id": "gifs", "name": "Gifs", "thumbnail_heights": [], "formats": ["gif"]}));
    let messages = unknown.assert_field_error("formats");
    assert!(messages.iter().any(|m| m.contains("webp") && m.contains("avif")), "says what is allowed: {messages:?}");
}

#[test]
fn created_tier_is_returned_listed_and_not_builtin() {
    // Arrange
    let app = spawn_app();

    // Act
    let created = app
        .post_tier(&json!({"id": "gold", "name": "Gold", "thumbnail_heights": [150, 50],
                           "original_link": false, "expiring_links": true}))
        .expect_json(201);

    // Assert
    assert_eq!(created["id"], json!("gold"));
    assert_eq!(created["name"], json!("Gold"));
    let mut heights: Vec<u64> = created["thumbnail_heights"]
        .as_array()
        .unwrap_or_else(|| panic!("thumbnail_heights: {created:#}"))
        .iter()
        .filter_map(Value::as_u64)
        .collect();
    heights.sort_unstable();
    assert_eq!(heights, vec![50, 150]);
    assert_eq!(created["original_link"], json!(false));
    assert_eq!(created["expiring_links"], json!(true));
    assert_eq!(created["builtin"], json!(false));
    assert!(result_ids(&app.list_tiers().expect_json(200)).contains(&"gold".to_owned()));
    assert_eq!(app.get_tier("gold").expect_json(200)["name"], json!("Gold"));
}

#[test]
fn create_tier_rejects_invalid_fields_naming_the_field() {
    // Arrange
    let app = spawn_app();
    let cases: Vec<(&str, Value)> = vec![
        ("id", json!("Gold")),
        ("id", json!("gold_tier")),
        ("id", json!("gold tier")),
        ("id", json!("")),
        ("id", json!("a".repeat(33))),
        ("name", json!("")),
        ("name", json!("n".repeat(65))),
        ("thumbnail_heights", json!([0])),
        ("thumbnail_heights", json!([4097])),
        ("thumbnail_heights", json!([100, 100])),
    ];

    for (n, (field, bad_value)) in cases.into_iter().enumerate() {
        let mut body = json!({"id": format!("valid-{n}"), "name": "Valid", "thumbnail_heights": [100],
                              "original_link": true, "expiring_links": false});
        body[field] = bad_value.clone();

        // Act
        let reply = app.post_tier(&body);

        // Assert
        assert_eq!(reply.status, 400, "expected 400 for {field} = {bad_value}, got {}: {}", reply.status, reply.text());
        reply.assert_field_error(field);
    }
    let listed = result_ids(&app.list_tiers().expect_json(200));
    assert_eq!(listed.len(), 3, "only the builtin tiers exist: {listed:?}");
}

#[test]
fn create_tier_accepts_the_boundary_values() {
    // Arrange
    let app = spawn_app();
    let id = format!("{}-9", "a".repeat(30));
    assert_eq!(id.len(), 32);

    // Act
    let reply = app.post_tier(&json!({"id": id, "name": "n".repeat(64), "thumbnail_heights": [1, 4096],
                                      "original_link": false, "expiring_links": false}));

    // Assert
    let created = reply.expect_json(201);
    assert_eq!(created["id"], json!(id));
}

#[test]
fn duplicate_tier_id_is_409() {
    // Arrange
    let app = spawn_app();
    app.create_tier("silver", &[100], false, false);

    // Act + Assert
    for id in ["silver", "basic"] {
        app.post_tier(&json!({"id": id, "name": "Again", "thumbnail_heights": [50],
                              "original_link": true, "expiring_links": true}))
            .assert_problem(409);
    }
    assert_eq!(app.get_tier("silver").expect_json(200)["thumbnail_heights"], json!([100]));
    assert_eq!(app.get_tier("basic").expect_json(200)["thumbnail_heights"], json!([200]));
}

#[test]
fn builtin_tiers_cannot_be_deleted() {
    let app = spawn_app();
    for id in ["basic", "premium", "enterprise"] {
        app.delete_tier(id).assert_problem(409);
        app.get_tier(id).assert_status(200);
    }
}

#[test]
fn tier_held_by_a_user_cannot_be_deleted_until_the_user_moves_away() {
    // Arrange
    let app = spawn_app();
    app.create_tier("held", &[100], false, false);
    let user = app.create_user("held");

    // Act + Assert: in use
    app.delete_tier("held").assert_problem(409);
    app.get_tier("held").assert_status(200);
    app.me(&user).assert_status(200);

    // Act + Assert: free again
    app.patch_user(&user.id, &json!({"tier": "basic"})).assert_status(200);
    app.delete_tier("held").assert_status(204);
    app.get_tier("held").assert_problem(404);
}

#[test]
fn unused_custom_tier_can_be_deleted() {
    // Arrange
    let app = spawn_app();
    app.create_tier("short-lived", &[120], true, true);

    // Act
    let reply = app.delete_tier("short-lived");

    // Assert
    reply.assert_status(204);
    app.get_tier("short-lived").assert_problem(404);
    assert!(!result_ids(&app.list_tiers().expect_json(200)).contains(&"short-lived".to_owned()));
    app.post_user(&json!({"username": "late", "password": "late-password", "tier": "short-lived"})).assert_problem(409);
}

#[test]
fn unknown_tier_is_404_on_get_patch_and_delete() {
    let app = spawn_app();
    app.get_tier("no-such-tier").assert_problem(404);
    app.patch_tier("no-such-tier", &json!({"name": "Ghost"})).assert_problem(404);
    app.delete_tier("no-such-tier").assert_problem(404);
}

#[test]
fn tier_list_counts_the_users_holding_each_tier() {
    // Arrange
    let app = spawn_app();
    app.create_tier("team", &[100], false, false);
    app.create_tier("solo", &[100], false, false);
    app.create_tier("nobody", &[100], false, false);
    app.create_user("team");
    app.create_user("team");
    app.create_user("solo");

    // Act
    let listed = app.list_tiers().expect_json(200);

    // Assert
    let count = |id: &str| {
        results(&listed)
            .into_iter()
            .find(|tier| tier["id"] == id)
            .unwrap_or_else(|| panic!("expected tier {id}: {listed:#}"))["user_count"]
            .clone()
    };
    assert_eq!(count("team"), json!(2));
    assert_eq!(count("solo"), json!(1));
    assert_eq!(count("nobody"), json!(0));
}

#[test]
fn patch_tier_edits_a_builtin_tier_and_validates_the_fields() {
    // Arrange
    let app = spawn_app();

    // Act
    let patched = app.patch_tier("premium", &json!({"name": "Premium Plus"})).expect_json(200);
    let invalid = app.patch_tier("premium", &json!({"thumbnail_heights": [0, 5000]}));

    // Assert
    assert_eq!(patched["name"], json!("Premium Plus"));
    assert_eq!(patched["builtin"], json!(true));
    assert_eq!(patched["thumbnail_heights"], json!([200, 400]), "untouched fields stay");
    invalid.assert_field_error("thumbnail_heights");
    let now = app.get_tier("premium").expect_json(200);
    assert_eq!(now["name"], json!("Premium Plus"));
    assert_eq!(now["thumbnail_heights"], json!([200, 400]));
}

#[test]
fn moving_a_user_from_basic_to_premium_grants_400px_and_the_original_on_existing_images() {
    // Arrange
    let app = spawn_app();
    let user = app.create_user("basic");
    let source = (600, 450);
    let bytes = jpeg(source.0, source.1);
    let image_id = id_of(&app.upload_ok(&user, "before.jpg", &bytes)["id"]);
    app.wait_until_ready(&user, &image_id);
    app.get_thumbnail(&user, &image_id, 400).assert_problem(403);

    // Act
    let patched = app.patch_user(&user.id, &json!({"tier": "premium"})).expect_json(200);

    // Assert: at once, 400 is listed (pending or already ready) and the original is linked
    assert_eq!(patched["tier"], json!("premium"));
    let image = app.image(&user, &image_id);
    app.assert_thumbnail_entries(&image, &[200, 400], source);
    assert_ne!(thumbnail_entry(&image, 400)["status"], json!("failed"), "{image:#}");
    assert!(!is_absent(&image, "original_url"), "original_url should appear: {image:#}");
    // ... then it becomes ready, with the right size
    app.wait_until_ready(&user, &image_id);
    app.assert_thumbnail(&user, &image_id, 400, ImageFormat::Jpeg, source);
    app.assert_thumbnail(&user, &image_id, 200, ImageFormat::Jpeg, source);
    let original = app.get_original(&user, &image_id);
    original.assert_status(200);
    assert!(original.body == bytes, "the original must be the uploaded bytes");
}

#[test]
fn moving_a_user_from_premium_to_basic_revokes_400px_and_the_original_on_existing_images() {
    // Arrange
    let app = spawn_app();
    let user = app.create_user("premium");
    let source = (600, 450);
    let image_id = id_of(&app.upload_ok(&user, "before.jpg", &jpeg(source.0, source.1))["id"]);
    app.wait_until_ready(&user, &image_id);
    app.get_thumbnail(&user, &image_id, 400).assert_status(200);
    app.get_original(&user, &image_id).assert_status(200);

    // Act
    app.patch_user(&user.id, &json!({"tier": "basic"})).assert_status(200);

    // Assert
    let image = app.image(&user, &image_id);
    app.assert_thumbnail_entries(&image, &[200], source);
    assert!(is_absent(&image, "original_url"), "original_url should vanish: {image:#}");
    let listed = app.list_images(&user, "").expect_json(200);
    assert_eq!(thumbnail_heights(&results(&listed)[0]), vec![200], "{listed:#}");
    app.get_thumbnail(&user, &image_id, 400).assert_problem(403);
    app.get_original(&user, &image_id).assert_problem(403);
    app.assert_thumbnail(&user, &image_id, 200, ImageFormat::Jpeg, source);
}

#[test]
fn adding_a_height_to_a_tier_backfills_the_existing_images_of_its_users() {
    // Arrange
    let app = spawn_app();
    app.create_tier("growing", &[200], false, false);
    let user = app.create_user("growing");
    let source = (500, 400);
    let image_id = id_of(&app.upload_ok(&user, "grow.jpg", &jpeg(source.0, source.1))["id"]);
    app.wait_until_ready(&user, &image_id);
    app.get_thumbnail(&user, &image_id, 100).assert_problem(403);

    // Act
    let patched = app.patch_tier("growing", &json!({"thumbnail_heights": [200, 100]})).expect_json(200);

    // Assert
    let mut heights = patched["thumbnail_heights"].clone();
    if let Some(list) = heights.as_array_mut() {
        list.sort_by_key(|height| height.as_u64());
    }
    assert_eq!(heights, json!([100, 200]), "{patched:#}");
    let image = app.image(&user, &image_id);
    app.assert_thumbnail_entries(&image, &[100, 200], source);
    assert_ne!(thumbnail_entry(&image, 100)["status"], json!("failed"), "{image:#}");
    app.wait_until_ready(&user, &image_id);
    app.assert_thumbnail(&user, &image_id, 100, ImageFormat::Jpeg, source);
}

#[test]
fn removing_a_height_from_a_tier_hides_it_on_existing_images() {
    // Arrange
    let app = spawn_app();
    app.create_tier("shrinking", &[100, 300], false, false);
    let user = app.create_user("shrinking");
    let source = (400, 600);
    let image_id = id_of(&app.upload_ok(&user, "shrink.jpg", &jpeg(source.0, source.1))["id"]);
    app.wait_until_ready(&user, &image_id);
    app.get_thumbnail(&user, &image_id, 300).assert_status(200);

    // Act
    app.patch_tier("shrinking", &json!({"thumbnail_heights": [100]})).assert_status(200);

    // Assert
    let image = app.image(&user, &image_id);
    app.assert_thumbnail_entries(&image, &[100], source);
    app.get_thumbnail(&user, &image_id, 300).assert_problem(403);
    app.assert_thumbnail(&user, &image_id, 100, ImageFormat::Jpeg, source);
}
