//! Authentication and authorization: Basic and Bearer, 401 with a challenge, inactive users,
//! the admin-only routes, and that changes to a user take effect at once (no stale cache).

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use reqwest::Method;
use serde_json::json;

use crate::helpers::{id_of, spawn_app, TestUser};

#[test]
fn requests_without_credentials_get_401_with_a_www_authenticate_challenge() {
    // Arrange
    let app = spawn_app();

    // Act + Assert
    for path in ["/api/v1/me", "/api/v1/images", "/api/v1/links", "/api/v1/admin/users"] {
        app.get_anonymous(path).assert_unauthorized();
    }
}

#[test]
fn wrong_password_gets_401_with_a_www_authenticate_challenge() {
    // Arrange
    let app = spawn_app();
    let user = app.create_user("basic");

    // Act
    let wrong = app.me(&user.with_password("not-the-password"));
    let right = app.me(&user);

    // Assert
    wrong.assert_unauthorized();
    assert_eq!(right.expect_json(200)["username"], json!(user.username));
}

#[test]
fn unknown_username_and_malformed_authorization_headers_get_401() {
    // Arrange
    let app = spawn_app();
    let ghost = TestUser {
        id: String::new(),
        username: "nobody-here".to_owned(),
        password: "whatever-password".to_owned(),
        token: None,
    };

    // Act + Assert
    app.me(&ghost).assert_unauthorized();
    let no_colon = format!("Basic {}", STANDARD.encode("no-colon-here"));
    for header in ["Basic !!!not-base64!!!", no_colon.as_str(), "Bearer ", "Bearer not-a-real-token", "Token abc"] {
        let reply = app.send(app.request(Method::GET, "/api/v1/me", None).header("authorization", header));
        reply.assert_unauthorized();
    }
}

#[test]
fn bearer_token_issued_by_an_admin_works_until_it_is_revoked() {
    // Arrange
    let app = spawn_app();
    let user = app.create_user("basic");
    let (first_id, first) = app.issue_token(&user);
    let (second_id, second) = app.issue_token(&user);
    assert_ne!(first, second, "every token is a fresh secret");

    // Act + Assert: both work
    assert_eq!(app.me(&user.bearer(&first)).expect_json(200)["username"], json!(user.username));
    assert_eq!(app.me(&user.bearer(&second)).expect_json(200)["username"], json!(user.username));

    // The admin sees the tokens' ids but never the secrets again.
    let detail = app.get_user(&user.id);
    let listed: Vec<String> = detail.expect_json(200)["tokens"]
        .as_array()
        .unwrap_or_else(|| panic!("expected a `tokens` list: {}", detail.text()))
        .iter()
        .map(|token| {
            assert!(token["created_at"].is_string(), "a token entry has created_at: {token}");
            id_of(&token["id"])
        })
        .collect();
    assert!(
        listed.contains(&first_id) && listed.contains(&second_id),
        "expected both token ids {first_id} and {second_id} in {listed:?}"
    );
    let text = detail.text();
    assert!(!text.contains(&first) && !text.contains(&second), "the user detail must not show token secrets: {text}");

    // Revoke the first: it stops at once, the second keeps working.
    app.revoke_token(&user.id, &first_id).assert_status(204);
    app.me(&user.bearer(&first)).assert_unauthorized();
    app.me(&user.bearer(&second)).assert_status(200);
}

#[test]
fn inactive_user_gets_401_and_works_again_once_reactivated() {
    // Arrange
    let app = spawn_app();
    let user = app.create_user("basic");
    let (_, token) = app.issue_token(&user);
    app.me(&user).assert_status(200); // warm any credential cache
    app.me(&user.bearer(&token)).assert_status(200);

    // Act: deactivate
    let patched = app.patch_user(&user.id, &json!({"is_active": false})).expect_json(200);

    // Assert
    assert_eq!(patched["is_active"], json!(false));
    app.me(&user).assert_unauthorized();
    app.me(&user.bearer(&token)).assert_unauthorized();

    // Act: reactivate
    let patched = app.patch_user(&user.id, &json!({"is_active": true})).expect_json(200);

    // Assert
    assert_eq!(patched["is_active"], json!(true));
    app.me(&user).assert_status(200);
    app.me(&user.bearer(&token)).assert_status(200);
}

#[test]
fn changing_the_password_rejects_the_old_one_at_once_and_accepts_the_new_one() {
    // Arrange: the old password has been used (and may sit in a credential cache)
    let app = spawn_app();
    let user = app.create_user("basic");
    app.me(&user).assert_status(200);
    app.me(&user).assert_status(200);
    let new_password = "a-brand-new-password";

    // Act
    app.patch_user(&user.id, &json!({"password": new_password})).assert_status(200);

    // Assert
    app.me(&user).assert_unauthorized();
    app.me(&user.with_password(new_password)).assert_status(200);
}

#[test]
fn a_password_set_by_patch_must_follow_the_length_rule() {
    // Arrange
    let app = spawn_app();
    let user = app.create_user("basic");

    // Act
    let reply = app.patch_user(&user.id, &json!({"password": "short"}));

    // Assert
    reply.assert_field_error("password");
    app.me(&user).assert_status(200);
}

#[test]
fn non_admin_gets_403_on_every_admin_route() {
    // Arrange
    let app = spawn_app();
    let user = app.create_user("basic");
    let other = app.create_user("basic");
    let (other_token_id, _) = app.issue_token(&other);
    let new_user = json!({"username": "sneaky", "password": "sneaky-password", "tier": "basic"});
    let new_tier = json!({"id": "sneaky", "name": "Sneaky", "thumbnail_heights": [10],
                          "original_link": true, "expiring_links": true});
    let cases = [
        (Method::GET, "/api/v1/admin/users".to_owned(), None),
        (Method::POST, "/api/v1/admin/users".to_owned(), Some(new_user)),
        (Method::GET, format!("/api/v1/admin/users/{}", other.id), None),
        (
            Method::PATCH,
            format!("/api/v1/admin/users/{}", user.id),
            Some(json!({"tier": "enterprise", "is_admin": true})),
        ),
        (Method::DELETE, format!("/api/v1/admin/users/{}", other.id), None),
        (Method::POST, format!("/api/v1/admin/users/{}/tokens", user.id), Some(json!({}))),
        (Method::DELETE, format!("/api/v1/admin/users/{}/tokens/{other_token_id}", other.id), None),
        (Method::GET, "/api/v1/admin/tiers".to_owned(), None),
        (Method::POST, "/api/v1/admin/tiers".to_owned(), Some(new_tier)),
        (Method::GET, "/api/v1/admin/tiers/basic".to_owned(), None),
        (Method::PATCH, "/api/v1/admin/tiers/basic".to_owned(), Some(json!({"original_link": true}))),
        (Method::DELETE, "/api/v1/admin/tiers/premium".to_owned(), None),
        (Method::GET, format!("/api/v1/admin/images?user={}", other.id), None),
    ];

    // Act + Assert
    for (method, path, body) in cases {
        let mut request = app.request(method, &path, Some(&user));
        if let Some(body) = body {
            request = request.json(&body);
        }
        app.send(request).assert_problem(403);
    }

    // Nothing was changed by the refused requests.
    let me = app.me(&user).expect_json(200);
    assert_eq!(me["is_admin"], json!(false));
    assert_eq!(me["tier"]["id"], json!("basic"));
    assert_eq!(app.get_tier("basic").expect_json(200)["original_link"], json!(false));
    app.get_user(&other.id).assert_status(200);
    app.get_tier("premium").assert_status(200);
}

#[test]
fn admins_made_by_create_or_by_patch_can_use_admin_routes() {
    // Arrange
    let app = spawn_app();
    let created_admin = app.create_admin_user();
    let promoted = app.create_user("basic");
    app.get_as(&promoted, "/api/v1/admin/users").assert_problem(403);

    // Act
    let patched = app.patch_user(&promoted.id, &json!({"is_admin": true})).expect_json(200);

    // Assert
    assert_eq!(patched["is_admin"], json!(true));
    app.get_as(&created_admin, "/api/v1/admin/users").assert_status(200);
    app.get_as(&promoted, "/api/v1/admin/users").assert_status(200);
    assert_eq!(app.me(&promoted).expect_json(200)["is_admin"], json!(true));
}

#[test]
fn an_admin_cannot_lock_themselves_out_but_can_demote_another_admin() {
    // Arrange
    let app = spawn_app();
    let other_admin = app.create_admin_user();
    let own_id = id_of(&app.me(&app.admin).expect_json(200)["id"]);

    // Act
    let demote_self = app.patch_user(&own_id, &json!({"is_admin": false}));
    let deactivate_self = app.patch_user(&own_id, &json!({"is_active": false}));
    let demote_other = app.patch_user(&other_admin.id, &json!({"is_admin": false}));

    // Assert
    demote_self.assert_problem(409);
    deactivate_self.assert_problem(409);
    assert_eq!(demote_other.expect_json(200)["is_admin"], json!(false));
    app.get_as(&app.admin, "/api/v1/admin/users").assert_status(200);
    app.get_as(&other_admin, "/api/v1/admin/users").assert_problem(403);
}

#[test]
fn me_reports_the_username_and_the_tier_with_its_grants() {
    // Arrange
    let app = spawn_app();
    let user = app.create_user("enterprise");

    // Act
    let me = app.me(&user).expect_json(200);

    // Assert
    assert_eq!(id_of(&me["id"]), user.id);
    assert_eq!(me["username"], json!(user.username));
    assert_eq!(me["is_admin"], json!(false));
    let tier = &me["tier"];
    assert_eq!(tier["id"], json!("enterprise"), "{me:#}");
    assert_eq!(tier["thumbnail_heights"], json!([200, 400]), "{me:#}");
    assert_eq!(tier["original_link"], json!(true), "{me:#}");
    assert_eq!(tier["expiring_links"], json!(true), "{me:#}");
    assert_eq!(tier["builtin"], json!(true), "{me:#}");
}
