//! `imageapi-server migrate-repo`: a populated sled instance moves to PostgreSQL, and the
//! server then serves every user, image, link and credential from there.

use std::process::{Command, Stdio};

use serde_json::json;

use crate::fixtures::{jpeg_seeded, png_seeded};
use crate::helpers::{id_of, server_binary, spawn_app_with, ServerOptions, TestApp, TestDatabase};

fn migrate_repo(app: &TestApp, to: &str) -> (bool, String) {
    let out = Command::new(server_binary())
        .args(["migrate-repo", "--to", to])
        .env_clear()
        .env("IMAGEAPI_DATA_DIR", app.data_dir())
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .output()
        .expect("run migrate-repo");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

/// A JSON value with every URL-valued string blanked.
fn without_urls(mut value: serde_json::Value) -> serde_json::Value {
    match &mut value {
        serde_json::Value::String(s) if s.starts_with("http://") => *s = String::new(),
        serde_json::Value::Array(items) => items.iter_mut().for_each(|v| *v = without_urls(v.take())),
        serde_json::Value::Object(map) => map.values_mut().for_each(|v| *v = without_urls(v.take())),
        _ => {}
    }
    value
}

#[test]
fn migrate_repo_moves_a_populated_sled_instance_to_postgres_with_everything_working() {
    let mut app = spawn_app_with(ServerOptions { sled: true, ..ServerOptions::default() });
    app.create_tier("gold", &[100, 300], true, true);
    app.patch_tier("basic", &json!({ "name": "Starter", "formats": [] })).assert_status(200);
    app.patch_tier("gold", &json!({ "formats": ["avif"] })).assert_status(200);
    let premium = app.create_user("premium");
    let gold = app.create_user("gold");
    let idle = app.create_user("basic");
    app.patch_user(&idle.id, &json!({ "is_active": false })).assert_status(200);
    let (_, token) = app.issue_token(&premium);
    let bearer = premium.bearer(&token);

    let mut images = Vec::new();
    for (n, user) in [&premium, &premium, &gold].into_iter().enumerate() {
        let bytes = if n == 1 { png_seeded(500, 300, 1) } else { jpeg_seeded(640, 480, n as u8) };
        let name = if n == 1 { "p.png" } else { "j.jpg" };
        let id = id_of(&app.upload_ok(user, name, &bytes)["id"]);
        app.wait_until_ready(user, &id);
        images.push((user.clone(), id));
    }
    let link = app.create_link_ok(&gold, &images[2].1, &json!({ "expires_in": 3000, "variant": 300 }));
    let link_path = format!("/l/{}", link["url"].as_str().expect("url").rsplit_once("/l/").expect("a /l/ url").1);
    let thumbs_before: Vec<Vec<u8>> = images
        .iter()
        .map(|(user, id)| {
            let height = if user.id == gold.id { 300 } else { 400 };
            app.get_thumbnail(user, id, height).body.to_vec()
        })
        .collect();
    let users_before = app.list_users().expect_json(200);
    let premium_list = app.list_images(&premium, "").expect_json(200);
    assert!(app.terminate().success());

    let Some(database) = TestDatabase::create() else { return };
    let (ok, out) = migrate_repo(&app, &database.url());
    assert!(ok, "migrate-repo failed: {out}");
    assert!(out.contains("every table matches"), "{out}");
    // Thumbnails: two Premium images × 2 heights × 3 formats (source, WebP, AVIF), and the
    // Gold image's 2 heights in its source format and AVIF.
    for (table, n) in [("users", 4), ("tokens", 1), ("images", 3), ("thumbnails", 16), ("links", 1), ("tiers", 4)] {
        assert!(
            out.lines().any(|l| l.split_whitespace().collect::<Vec<_>>() == [table, &n.to_string()]),
            "{table} {n}: {out}"
        );
    }
    let (again, out_again) = migrate_repo(&app, &database.url());
    assert!(again, "a second run (as after an interruption) succeeds: {out_again}");
    let (refused, why) = migrate_repo(&app, "redis://127.0.0.1/");
    assert!(!refused && why.contains("PostgreSQL URL"), "{why}");

    // The sled directory moves away: whatever answers now comes from PostgreSQL.
    std::fs::rename(app.data_dir().join("db"), app.root_path().join("old-db")).expect("move sled away");
    app.use_database(database.url());
    app.start_again(ServerOptions::default());

    assert_eq!(app.list_users().expect_json(200), users_before, "users, tiers and image counts unchanged");
    // (Links in the page name the server's new port: compare what is not an address.)
    assert_eq!(
        without_urls(app.list_images(&premium, "").expect_json(200)),
        without_urls(premium_list),
        "the same page"
    );
    app.me(&premium).assert_status(200);
    app.me(&bearer).assert_status(200);
    app.me(&idle).assert_unauthorized();
    app.me(&premium.with_password("not-the-password")).assert_unauthorized();
    for ((user, id), before) in images.iter().zip(&thumbs_before) {
        let height = if user.id == gold.id { 300 } else { 400 };
        let thumb = app.get_thumbnail(user, id, height);
        thumb.assert_status(200);
        assert!(thumb.body == *before, "the thumbnail of {id} is served unchanged");
        app.get_original(user, id).assert_status(200);
    }
    let served = app.get_anonymous(&link_path);
    served.assert_status(200);
    assert!(served.body == thumbs_before[2], "the link serves its variant");
    let starter = app.get_tier("basic").expect_json(200);
    assert_eq!(starter["name"], "Starter");
    assert_eq!(starter["formats"], json!([]), "an edited builtin keeps its edit, not the builtin formats");
    let gold_tier = app.get_tier("gold").expect_json(200);
    assert_eq!(gold_tier["thumbnail_heights"], json!([100, 300]));
    assert_eq!(gold_tier["formats"], json!(["avif"]));
    assert_eq!(app.get_tier("premium").expect_json(200)["formats"], json!(["webp", "avif"]));
    // And it keeps working: a new upload on PostgreSQL is made ready.
    let fresh = id_of(&app.upload_ok(&gold, "new.jpg", &jpeg_seeded(320, 240, 9))["id"]);
    app.wait_until_ready(&gold, &fresh);
}
