//! User administration: create (with validation), list, detail, patch, delete.

use serde_json::{json, Value};

use crate::fixtures::jpeg_seeded;
use crate::helpers::{id_of, result_ids, results, spawn_app};

#[test]
fn admin_creates_a_user_and_finds_it_in_the_list_and_by_id() {
    // Arrange
    let app = spawn_app();

    // Act
    let created =
        app.post_user(&json!({"username": "alice", "password": "alice-password", "tier": "premium"})).expect_json(201);

    // Assert
    let id = id_of(&created["id"]);
    assert_eq!(created["username"], json!("alice"));
    assert_eq!(created["tier"], json!("premium"));
    assert_eq!(created["is_active"], json!(true));
    assert_eq!(created["is_admin"], json!(false), "is_admin defaults to false");
    assert!(created["created_at"].is_string(), "{created:#}");
    assert!(!created.to_string().contains("alice-password"), "the password must never be echoed: {created:#}");

    let listed = app.list_users().expect_json(200);
    let alice = results(&listed)
        .into_iter()
        .find(|user| user["username"] == "alice")
        .unwrap_or_else(|| panic!("expected alice in the user list: {listed:#}"));
    assert_eq!(id_of(&alice["id"]), id);
    assert_eq!(alice["image_count"], json!(0));

    let detail = app.get_user(&id).expect_json(200);
    assert_eq!(detail["username"], json!("alice"));
    assert_eq!(detail["tier"], json!("premium"));
    assert_eq!(detail["tokens"], json!([]), "a new user has no tokens: {detail:#}");
}

#[test]
fn create_user_rejects_invalid_fields_naming_the_field() {
    // Arrange
    let app = spawn_app();
    let valid = json!({"username": "valid-name", "password": "valid-password", "tier": "basic"});
    let cases: Vec<(&str, Value)> = vec![
        ("username", json!("ab")),
        ("username", json!("u".repeat(65))),
        ("username", json!("has space")),
        ("username", json!("slash/name")),
        ("username", json!("")),
        ("password", json!("seven77")),
        ("password", json!("p".repeat(1025))),
        ("tier", json!("Not A Slug!")),
    ];

    for (field, bad_value) in cases {
        let mut body = valid.clone();
        body[field] = bad_value.clone();

        // Act
        let reply = app.post_user(&body);

        // Assert
        assert_eq!(reply.status, 400, "expected 400 for {field} = {bad_value}, got {}: {}", reply.status, reply.text());
        reply.assert_field_error(field);
    }
    let listed = app.list_users().expect_json(200);
    assert!(!listed.to_string().contains("valid-name"), "no invalid user may have been created: {listed:#}");
}

#[test]
fn create_user_accepts_the_boundary_lengths_and_every_allowed_character() {
    // Arrange
    let app = spawn_app();
    let cases = [
        ("abc".to_owned(), "8chars!!".to_owned()),
        ("u".repeat(64), "p".repeat(1024)),
        ("Az09_.@-x".to_owned(), "valid-password".to_owned()),
    ];

    for (username, password) in cases {
        // Act
        let reply = app.post_user(&json!({"username": username, "password": password, "tier": "basic"}));

        // Assert
        assert_eq!(reply.expect_json(201)["username"], json!(username));
        let user = crate::helpers::TestUser { id: String::new(), username, password, token: None };
        app.me(&user).assert_status(200);
    }
}

#[test]
fn duplicate_username_is_409() {
    // Arrange
    let app = spawn_app();
    let body = json!({"username": "bob", "password": "bob-password", "tier": "basic"});
    app.post_user(&body).assert_status(201);

    // Act
    let again = app.post_user(&json!({"username": "bob", "password": "other-password", "tier": "premium"}));

    // Assert
    again.assert_problem(409);
    let listed = app.list_users().expect_json(200);
    let bobs = results(&listed).iter().filter(|user| user["username"] == "bob").count();
    assert_eq!(bobs, 1, "exactly one bob: {listed:#}");
}

#[test]
fn unknown_user_id_is_404_on_every_user_route() {
    // Arrange
    let app = spawn_app();
    let unknown = "01HZZZZZZZZZZZZZZZZZZZZZZZ";

    // Act + Assert
    app.get_user(unknown).assert_problem(404);
    app.patch_user(unknown, &json!({"tier": "premium"})).assert_problem(404);
    app.delete_user(unknown).assert_problem(404);
    app.post_token(unknown).assert_problem(404);
    app.revoke_token(unknown, "1").assert_problem(404);
}

#[test]
fn patch_user_changes_the_tier_and_rejects_an_unknown_tier() {
    // Arrange
    let app = spawn_app();
    let user = app.create_user("basic");

    // Act
    let malformed = app.patch_user(&user.id, &json!({"tier": "Not A Slug!"}));
    let missing = app.patch_user(&user.id, &json!({"tier": "no-such-tier"}));
    let unchanged = app.me(&user).expect_json(200);
    let good = app.patch_user(&user.id, &json!({"tier": "enterprise"}));

    // Assert: a malformed id is a field error; a well-formed one naming no tier conflicts
    // with what exists (409), as a foreign-key violation does
    malformed.assert_field_error("tier");
    missing.assert_problem(409);
    assert_eq!(unchanged["tier"]["id"], json!("basic"), "a refused edit changes nothing");
    assert_eq!(good.expect_json(200)["tier"], json!("enterprise"));
    assert_eq!(app.me(&user).expect_json(200)["tier"]["id"], json!("enterprise"));
}

#[test]
fn user_list_counts_each_users_images() {
    // Arrange
    let app = spawn_app();
    let alice = app.create_user("basic");
    let bob = app.create_user("basic");
    for seed in 0..2 {
        app.upload_ok(&alice, "a.jpg", &jpeg_seeded(40, 30, seed));
    }
    app.upload_ok(&bob, "b.jpg", &jpeg_seeded(40, 30, 9));

    // Act
    let listed = app.list_users().expect_json(200);

    // Assert
    let count_of = |id: &str| {
        results(&listed)
            .into_iter()
            .find(|user| id_of(&user["id"]) == id)
            .unwrap_or_else(|| panic!("expected user {id} in {listed:#}"))["image_count"]
            .clone()
    };
    assert_eq!(count_of(&alice.id), json!(2));
    assert_eq!(count_of(&bob.id), json!(1));
}

#[test]
fn deleting_a_user_deletes_their_images_and_links_and_their_access() {
    // Arrange
    let app = spawn_app();
    let user = app.create_user("enterprise");
    let bystander = app.create_user("enterprise");
    let image = app.upload_ok(&user, "doomed.jpg", &jpeg_seeded(60, 40, 1));
    let image_id = id_of(&image["id"]);
    let kept = app.upload_ok(&bystander, "kept.jpg", &jpeg_seeded(60, 40, 2));
    let link = app.create_link_ok(&user, &image_id, &json!({"expires_in": 600}));
    let link_url = link["url"].as_str().expect("a link url").to_owned();
    app.get_anonymous(&link_url).assert_status(200);

    // Act
    app.delete_user(&user.id).assert_status(204);

    // Assert
    app.get_user(&user.id).assert_problem(404);
    app.me(&user).assert_unauthorized();
    app.get_anonymous(&link_url).assert_status(404);
    let images = app.admin_images(&user.id);
    if images.status == 200 {
        assert_eq!(result_ids(&images.json()), Vec::<String>::new(), "a deleted user's images are gone");
    } else {
        images.assert_problem(404);
    }
    let listed = app.list_users().expect_json(200);
    assert!(!result_ids(&listed).contains(&user.id), "the deleted user is gone from the list: {listed:#}");
    // Nobody else's data went with it.
    app.get_image(&bystander, &id_of(&kept["id"])).assert_status(200);
}

#[test]
fn two_admins_removing_each_others_rights_at_once_leave_one_admin() {
    // The in-write race itself (both requests past authorisation) is pinned, on both
    // backends, by the repository contract's `two_admins_demoting_each_other_at_once_leave_one`.
    // Arrange
    let app = spawn_app();
    let listed = app.list_users().expect_json(200);
    let root_id = results(&listed)
        .iter()
        .find(|u| u["username"] == json!(app.admin.username))
        .map(|u| id_of(&u["id"]))
        .expect("the configured admin is listed");
    let mut survivor = crate::helpers::TestUser { id: root_id, ..app.admin.clone() };
    for round in 0..6 {
        // Made by the admin left from the last round (the configured one may have lost).
        let name = format!("second-admin-{round}");
        let password = "second-admin-password".to_owned();
        let body = json!({"username": name, "password": password, "tier": "basic", "is_admin": true});
        let created = app.post_json_as(&survivor, "/api/v1/admin/users", &body).expect_json(201);
        let other = crate::helpers::TestUser { id: id_of(&created["id"]), username: name, password, token: None };
        let (first, second) = if round % 2 == 0 {
            (json!({"is_admin": false}), json!({"is_admin": false}))
        } else {
            (json!({"is_active": false}), json!({"is_admin": false}))
        };

        // Act: each demotes (or deactivates) the other, at the same moment
        let (a, b) = std::thread::scope(|scope| {
            let a = scope.spawn(|| app.patch_json_as(&survivor, &format!("/api/v1/admin/users/{}", other.id), &first));
            let b = scope.spawn(|| app.patch_json_as(&other, &format!("/api/v1/admin/users/{}", survivor.id), &second));
            (a.join().expect("a"), b.join().expect("b"))
        });

        // Assert: exactly one lands. The other is refused: 409 if it reached the write (the
        // check and the write are one step), or, if the first had already landed when it was
        // authorised, 403 (no longer an admin) or 401 (deactivated). Never both 200.
        let statuses = [a.status, b.status];
        assert_eq!(statuses.iter().filter(|&&s| s == 200).count(), 1, "round {round}: {statuses:?}");
        let refused = if a.status == 200 { &b } else { &a };
        assert!([409, 403, 401].contains(&refused.status), "round {round}: {statuses:?}");
        if refused.status == 409 {
            let detail = refused.assert_problem(409)["detail"].as_str().unwrap_or_default().to_owned();
            assert!(detail.contains("admin"), "says why: {detail}");
        }
        survivor = if a.status == 200 { survivor } else { other };
        app.get_as(&survivor, "/api/v1/admin/users").assert_status(200);
        let admins = results(&app.get_as(&survivor, "/api/v1/admin/users").expect_json(200))
            .into_iter()
            .filter(|u| u["is_admin"] == json!(true) && u["is_active"] == json!(true))
            .count();
        assert_eq!(admins, 1, "round {round}");
    }
}

#[test]
fn the_last_admin_cannot_be_demoted_deactivated_or_deleted_by_anyone() {
    // Arrange: a second admin, and the configured one made inactive by it
    let app = spawn_app();
    let second = app.create_admin_user();
    let root_id = results(&app.list_users().expect_json(200))
        .iter()
        .find(|u| u["username"] == json!(app.admin.username))
        .map(|u| id_of(&u["id"]))
        .expect("listed");
    app.patch_json_as(&second, &format!("/api/v1/admin/users/{root_id}"), &json!({"is_admin": false}))
        .assert_status(200);
    // The remaining admin is protected from itself (as before) and the rule holds in the
    // repository too: a deletion goes through deactivation first.
    let path = format!("/api/v1/admin/users/{}", second.id);
    app.patch_json_as(&second, &path, &json!({"is_admin": false})).assert_problem(409);
    app.delete_as(&second, &path).assert_problem(409);
    assert_eq!(app.get_as(&second, &path).expect_json(200)["is_admin"], json!(true));
}
