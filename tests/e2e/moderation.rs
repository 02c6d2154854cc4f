//! Admins moderating images: any image's detail, deleting it, browsing with filters and
//! pages, and what each user's images take up.

use std::collections::BTreeSet;

use serde_json::{json, Value};

use crate::fixtures::{jpeg_seeded, png_seeded};
use crate::helpers::*;

fn usage_of(app: &TestApp, user_id: &str) -> (u64, u64, u64) {
    let listed = app.list_users().expect_json(200);
    let user = results(&listed)
        .into_iter()
        .find(|u| id_of(&u["id"]) == user_id)
        .unwrap_or_else(|| panic!("expected user {user_id} in {listed:#}"));
    let detail = app.get_user(user_id).expect_json(200);
    let figures = |u: &Value| {
        let n = |k: &str| u[k].as_u64().unwrap_or_else(|| panic!("a number {k} in {u:#}"));
        (n("image_count"), n("original_bytes"), n("thumbnail_bytes"))
    };
    assert_eq!(figures(&user), figures(&detail), "the list and the detail agree");
    figures(&detail)
}

/// The bytes of a ready thumbnail, as served.
fn thumbnail_len(app: &TestApp, user: &TestUser, image_id: &str, height: u32) -> u64 {
    app.get_thumbnail(user, image_id, height).assert_status(200).body.len() as u64
}

#[test]
fn an_admin_sees_any_image_with_its_owner_thumbnails_and_live_links() {
    let app = spawn_app();
    let owner = app.create_user("enterprise");
    let uploaded = app.upload_ok(&owner, "harbour.jpg", &jpeg_seeded(600, 300, 3));
    let image_id = id_of(&uploaded["id"]);
    app.wait_until_ready(&owner, &image_id);
    let link = app.create_link_ok(&owner, &image_id, &json!({"expires_in": 900, "variant": 200}));

    let detail = app.admin_image(&image_id).expect_json(200);

    assert_eq!(detail["id"], json!(image_id));
    assert_eq!(detail["name"], json!("harbour.jpg"));
    assert_eq!((detail["width"].as_u64(), detail["height"].as_u64()), (Some(600), Some(300)));
    assert_eq!(detail["owner"], json!(owner.id));
    assert_eq!(detail["owner_username"], json!(owner.username));
    assert_eq!(detail["owner_tier"], json!("enterprise"));
    let states: Vec<(u64, String)> = detail["thumbnails"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|t| (t["height"].as_u64().unwrap_or(0), t["status"].as_str().unwrap_or("").to_owned()))
        .collect();
    assert_eq!(states, [(200, "ready".to_owned()), (400, "ready".to_owned())]);
    let links = detail["links"].as_array().cloned().unwrap_or_default();
    assert_eq!(links.len(), 1, "{detail:#}");
    assert_eq!(links[0]["id"], link["id"]);
    assert_eq!(links[0]["variant"], json!(200));
    let left = links[0]["expires_in"].as_i64().expect("seconds left");
    assert!((890..=900).contains(&left), "time left {left}");
    assert!(is_absent(&links[0], "url"), "a link's secret URL is shown only at creation: {detail:#}");

    // The admin's preview source: any recorded thumbnail, whatever the tier.
    let preview = app.get_as(&app.admin, &format!("/api/v1/admin/images/{image_id}/thumbnails/200"));
    preview.assert_status(200);
    assert_eq!(preview.body.len() as u64, thumbnail_len(&app, &owner, &image_id, 200));
    app.get_as(&app.admin, &format!("/api/v1/admin/images/{image_id}/thumbnails/300")).assert_problem(404);
}

#[test]
fn admin_image_routes_are_for_admins_and_unknown_ids_are_404() {
    let app = spawn_app();
    let owner = app.create_user("basic");
    let other = app.create_user("basic");
    let image_id = id_of(&app.upload_ok(&owner, "mine.png", &png_seeded(80, 60, 1))["id"]);

    for user in [&owner, &other] {
        app.get_as(user, &format!("/api/v1/admin/images/{image_id}")).assert_problem(403);
        app.delete_as(user, &format!("/api/v1/admin/images/{image_id}")).assert_problem(403);
        app.get_as(user, &format!("/api/v1/admin/images/{image_id}/thumbnails/200")).assert_problem(403);
        app.get_as(user, "/api/v1/admin/images?name=mine").assert_problem(403);
    }
    app.get_image(&owner, &image_id).assert_status(200);

    let unknown = "01ARZ3NDEKTSV4RRFFQ69G5FAV";
    app.admin_image(unknown).assert_problem(404);
    app.admin_delete_image(unknown).assert_problem(404);
    app.admin_image("not-an-id").assert_problem(404);
    app.get_as(&app.admin, &format!("/api/v1/admin/images/{unknown}/thumbnails/200")).assert_problem(404);
}

#[test]
fn an_admin_deletes_an_image_with_its_thumbnails_and_links_and_it_is_logged() {
    let app = spawn_app_with(ServerOptions {
        env: vec![("RUST_LOG", "warn,imageapi_server=info".to_owned())],
        ..ServerOptions::default()
    });
    let owner = app.create_user("enterprise");
    let image_id = id_of(&app.upload_ok(&owner, "abusive.jpg", &jpeg_seeded(500, 400, 9))["id"]);
    let kept_id = id_of(&app.upload_ok(&owner, "fine.jpg", &jpeg_seeded(500, 400, 10))["id"]);
    app.wait_until_ready(&owner, &image_id);
    let link = app.create_link_ok(&owner, &image_id, &json!({"expires_in": 600}));
    let link_url = link["url"].as_str().expect("a link url").to_owned();
    app.get_anonymous(&link_url).assert_status(200);

    app.admin_delete_image(&image_id).assert_status(204);

    app.admin_image(&image_id).assert_problem(404);
    app.get_image(&owner, &image_id).assert_problem(404);
    app.get_thumbnail(&owner, &image_id, 200).assert_problem(404);
    app.get_original(&owner, &image_id).assert_problem(404);
    app.get_anonymous(&link_url).assert_problem(404);
    let links = app.list_links(&owner).expect_json(200);
    assert!(!result_ids(&links).contains(&id_of(&link["id"])), "the link went with the image: {links:#}");
    assert_eq!(result_ids(&app.list_images(&owner, "").expect_json(200)), vec![kept_id.clone()]);
    app.get_image(&owner, &kept_id).assert_status(200);
    app.admin_delete_image(&image_id).assert_problem(404);
    if let Some(log) = app.server_log() {
        let line = log
            .lines()
            .find(|l| l.contains("image deleted by an admin") && l.contains(&image_id))
            .unwrap_or_else(|| panic!("the deletion is logged ({})", app.log_hint()));
        assert!(line.contains(&app.admin.username), "with the admin's name: {line}");
    }
}

#[test]
fn the_admin_browse_filters_by_user_name_and_time_and_pages_through_everything() {
    let app = spawn_app();
    let ann = app.create_user("basic");
    let bob = app.create_user("basic");
    let mut uploaded = Vec::new();
    for (n, (user, name)) in
        [(&ann, "Beach.JPG"), (&bob, "beach-bob.jpg"), (&ann, "cat.jpg"), (&ann, "sunny beach.jpg"), (&ann, "dog.jpg")]
            .into_iter()
            .enumerate()
    {
        let image = app.upload_ok(user, name, &jpeg_seeded(40, 30, n as u8));
        uploaded.push((id_of(&image["id"]), image["created_at"].as_str().expect("a time").to_owned()));
    }
    let all_pages = |query: &str| -> Vec<String> {
        let mut names = Vec::new();
        let mut reply = app.admin_browse(query).expect_json(200);
        loop {
            names.extend(results(&reply).iter().map(|i| i["name"].as_str().unwrap_or("").to_owned()));
            match reply["next"].as_str() {
                Some(next) => reply = app.get_as(&app.admin, next).expect_json(200),
                None => return names,
            }
        }
    };

    let anns = format!("user={}&limit=2", ann.id);
    assert_eq!(all_pages(&anns), ["dog.jpg", "sunny beach.jpg", "cat.jpg", "Beach.JPG"]);
    assert_eq!(all_pages("name=BEACH&limit=1"), ["sunny beach.jpg", "beach-bob.jpg", "Beach.JPG"]);
    assert_eq!(all_pages(&format!("name=beach&user={}", ann.id)), ["sunny beach.jpg", "Beach.JPG"]);
    assert_eq!(all_pages("name=sunny%20beach"), ["sunny beach.jpg"]);
    // Strictly after the second upload and strictly before the fifth.
    let window = format!(
        "uploaded_after={}&uploaded_before={}&limit=1",
        uploaded[1].1.replace('+', "%2B"),
        uploaded[4].1.replace('+', "%2B")
    );
    assert_eq!(all_pages(&window), ["sunny beach.jpg", "cat.jpg"]);
    assert!(all_pages("name=zebra").is_empty());
    let first = app.admin_browse("limit=2").expect_json(200);
    let next = first["next"].as_str().expect("a next page");
    assert!(next.contains("limit=2") && next.contains("cursor="), "{next}");
    let filtered = app.admin_browse(&format!("limit=1&name=beach&user={}", ann.id)).expect_json(200);
    let next = filtered["next"].as_str().expect("a next page");
    assert!(next.contains("name=beach") && next.contains(&format!("user={}", ann.id)), "filters carry on: {next}");

    app.admin_browse("uploaded_after=yesterday").assert_field_error("uploaded_after");
    app.admin_browse("uploaded_before=2026-13-01T00:00:00Z").assert_field_error("uploaded_before");
    app.admin_browse("user=nobody").assert_field_error("user");
    app.admin_browse(&format!("name={}", "x".repeat(256))).assert_field_error("name");
    app.admin_browse("limit=0").assert_field_error("limit");
    app.admin_browse("user=01ARZ3NDEKTSV4RRFFQ69G5FAV").assert_problem(404);
    let ids: BTreeSet<String> = uploaded.iter().map(|(id, _)| id.clone()).collect();
    let everything: BTreeSet<String> =
        result_ids(&app.admin_browse("limit=100").expect_json(200)).into_iter().collect();
    assert!(ids.is_subset(&everything));
}

#[test]
fn usage_counts_originals_and_ready_thumbnails_and_drops_with_deletes() {
    let mut app = spawn_app();
    let ann = app.create_user("premium");
    let bob = app.create_user("basic");
    assert_eq!(usage_of(&app, &ann.id), (0, 0, 0));
    let (first, second) = (jpeg_seeded(640, 480, 1), png_seeded(300, 500, 2));
    let first_id = id_of(&app.upload_ok(&ann, "a.jpg", &first)["id"]);
    let second_id = id_of(&app.upload_ok(&ann, "b.png", &second)["id"]);
    let bobs_id = id_of(&app.upload_ok(&bob, "c.jpg", &jpeg_seeded(50, 50, 3))["id"]);
    app.wait_until_ready(&ann, &first_id);
    // Bob's thumbnail too: made between the list and the detail, it would tell them apart.
    app.wait_until_ready(&bob, &bobs_id);
    app.wait_until_ready(&ann, &second_id);
    // Every ready variant counts: the source's format and each granted one (WebP and AVIF).
    let variants_of = |app: &TestApp, id: &str| -> u64 {
        let image = app.image(&ann, id);
        let listed: Vec<u64> = image["thumbnails"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|t| t["formats"].as_array().into_iter().flatten().filter_map(|f| f["size_bytes"].as_u64()))
            .collect();
        assert_eq!(listed.len(), 6, "two heights in three formats, each ready with its size: {image:#}");
        listed.iter().sum()
    };
    let thumbs: u64 = [&first_id, &second_id].iter().map(|id| variants_of(&app, id)).sum();
    let source_200 = thumbnail_len(&app, &ann, &first_id, 200);
    let listed_200 = app.image(&ann, &first_id)["thumbnails"][0]["formats"][0]["size_bytes"].as_u64();
    assert_eq!(listed_200, Some(source_200), "a listed size is the served file's");
    let originals = (first.len() + second.len()) as u64;

    assert_eq!(usage_of(&app, &ann.id), (2, originals, thumbs));
    assert_eq!(usage_of(&app, &bob.id).0, 1);
    app.restart(ServerOptions::default());
    assert_eq!(usage_of(&app, &ann.id), (2, originals, thumbs), "kept through a restart");

    let first_thumbs = variants_of(&app, &first_id);
    app.admin_delete_image(&first_id).assert_status(204);
    assert_eq!(usage_of(&app, &ann.id), (1, second.len() as u64, thumbs - first_thumbs));
    app.delete_image(&ann, &second_id).assert_status(204);
    assert_eq!(usage_of(&app, &ann.id), (0, 0, 0));
}
