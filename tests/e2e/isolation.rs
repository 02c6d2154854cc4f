//! A user never learns whether another user's image exists: 404 on every route, never 403,
//! the same as for ids that do not exist at all.

use reqwest::Method;
use serde_json::{json, Value};

use crate::fixtures::jpeg;
use crate::helpers::{id_of, result_ids, spawn_app, TestApp, TestUser};

/// Every image route (and the link routes) for `image_id`, as `user`: all must be 404.
fn assert_every_route_is_404(app: &TestApp, user: &TestUser, image_id: &str, link_id: &str) {
    let cases: [(Method, String, Option<Value>); 8] = [
        (Method::GET, format!("/api/v1/images/{image_id}"), None),
        (Method::DELETE, format!("/api/v1/images/{image_id}"), None),
        (Method::GET, format!("/api/v1/images/{image_id}/thumbnails/200"), None),
        (Method::GET, format!("/api/v1/images/{image_id}/thumbnails/400"), None),
        (Method::GET, format!("/api/v1/images/{image_id}/thumbnails/123"), None),
        (Method::GET, format!("/api/v1/images/{image_id}/original"), None),
        (Method::POST, format!("/api/v1/images/{image_id}/links"), Some(json!({"expires_in": 300}))),
        (Method::DELETE, format!("/api/v1/links/{link_id}"), None),
    ];
    for (method, path, body) in cases {
        let mut request = app.request(method, &path, Some(user));
        if let Some(body) = body {
            request = request.json(&body);
        }
        app.send(request).assert_problem(404);
    }
}

#[test]
fn another_users_image_is_404_on_every_route_never_403() {
    // Arrange: the owner can do everything; one stranger's tier grants nothing extra, the
    // other's grants everything.
    let app = spawn_app();
    let owner = app.create_user("enterprise");
    let bytes = jpeg(400, 300);
    let image_id = id_of(&app.upload_ok(&owner, "private.jpg", &bytes)["id"]);
    app.wait_until_ready(&owner, &image_id);
    let link = app.create_link_ok(&owner, &image_id, &json!({"expires_in": 300}));
    let link_id = id_of(&link["id"]);
    let strangers = [app.create_user("basic"), app.create_user("enterprise")];

    for stranger in &strangers {
        // Act + Assert
        assert_every_route_is_404(&app, stranger, &image_id, &link_id);
        assert!(
            !result_ids(&app.list_images(stranger, "").expect_json(200)).contains(&image_id),
            "another user's image never shows in my list"
        );
        assert!(
            result_ids(&app.list_links(stranger).expect_json(200)).is_empty(),
            "another user's links never show in my list"
        );
    }

    // Nothing happened to the owner's image or link.
    app.get_image(&owner, &image_id).assert_status(200);
    let original = app.get_original(&owner, &image_id);
    original.assert_status(200);
    assert!(original.body == bytes);
    app.get_anonymous(link["url"].as_str().expect("a link url")).assert_status(200);
}

#[test]
fn unknown_image_ids_are_404_on_every_route() {
    let app = spawn_app();
    let user = app.create_user("enterprise");
    for unknown in ["01HZZZZZZZZZZZZZZZZZZZZZZZ", "does-not-exist", "12345"] {
        assert_every_route_is_404(&app, &user, unknown, unknown);
    }
}
