//! The OpenAPI document is the contract: what it says about methods, error bodies and request
//! constraints is what the server does (schemathesis checks the same at scale in CI, see
//! `scripts/fuzz-api`).

use reqwest::Method;
use serde_json::{json, Value};

use crate::fixtures;
use crate::helpers::spawn_app;

#[test]
fn an_unsupported_method_on_a_known_path_answers_405_with_allow_and_an_unknown_path_404() {
    // Arrange
    let app = spawn_app();
    let admin = &app.admin;

    // Act
    let trace = app.send(app.request(Method::TRACE, "/api/v1/images", Some(admin)));
    let put = app.send(app.request(Method::PUT, "/api/v1/admin/tiers/basic", Some(admin)));
    let post_media = app.send(app.request(Method::POST, "/l/l_whatever", None));
    let unknown = app.send(app.request(Method::TRACE, "/api/v1/nothing-here", Some(admin)));
    let unknown_get = app.get_as(admin, "/api/v1/images/x/y/z");

    // Assert
    trace.assert_problem(405);
    assert_eq!(trace.header("allow"), Some("GET, POST"));
    put.assert_problem(405);
    assert_eq!(put.header("allow"), Some("GET, PATCH, DELETE"));
    post_media.assert_problem(405);
    assert_eq!(post_media.header("allow"), Some("GET, HEAD"));
    unknown.assert_problem(404);
    assert_eq!(unknown.header("allow"), None);
    unknown_get.assert_problem(404);
}

fn operations(document: &Value) -> Vec<(String, String, Value)> {
    let mut found = Vec::new();
    for (path, item) in document["paths"].as_object().expect("paths") {
        for (method, operation) in item.as_object().expect("a path item") {
            found.push((method.to_uppercase(), path.clone(), operation.clone()));
        }
    }
    found
}

#[test]
fn every_error_response_is_documented_as_problem_json_with_the_statuses_every_operation_can_answer() {
    // Arrange
    let app = spawn_app();

    // Act
    let document = app.get_anonymous("/api/openapi.json").expect_json(200);

    // Assert
    let mut wrong = Vec::new();
    let mut ids = std::collections::BTreeSet::new();
    for (method, path, operation) in operations(&document) {
        match operation["operationId"].as_str() {
            Some(id) if ids.insert(id.to_owned()) => {}
            id => wrong.push(format!("{method} {path}: operationId {id:?} missing or not unique")),
        }
        if operation["responses"].as_object().is_some_and(|r| r.values().any(|r| !r["description"].is_string())) {
            wrong.push(format!("{method} {path}: a response without a description"));
        }
        let responses = operation["responses"].as_object().expect("responses");
        for (status, response) in responses {
            let error = status.starts_with('4') || status.starts_with('5');
            let types: Vec<&String> = response["content"].as_object().map(|c| c.keys().collect()).unwrap_or_default();
            // Readiness answers its checks, failed or not, in its own body.
            let own_body = path == "/readyz" && status == "503";
            if error && !own_body && types != ["application/problem+json"] {
                wrong.push(format!("{method} {path} {status}: {types:?}"));
            }
        }
        let secured = operation["security"].as_array().is_some_and(|s| !s.is_empty());
        for status in ["401", "429", "503"] {
            if secured && !responses.contains_key(status) {
                wrong.push(format!("{method} {path}: {status} undocumented"));
            }
        }
        if path.starts_with("/api/v1/admin/") && !responses.contains_key("403") {
            wrong.push(format!("{method} {path}: 403 undocumented"));
        }
        if operation["requestBody"]["content"].get("application/json").is_some() {
            for status in ["400", "413", "415"] {
                if !responses.contains_key(status) {
                    wrong.push(format!("{method} {path}: {status} undocumented"));
                }
            }
        }
    }
    assert!(wrong.is_empty(), "responses the document gets wrong: {wrong:#?}");
    let errors = &document["components"]["schemas"]["Problem"]["properties"]["errors"];
    assert_eq!(errors["additionalProperties"]["items"]["type"], json!("string"), "Problem.errors: {errors:#}");
}

#[test]
fn request_fields_carry_the_constraints_the_server_enforces() {
    // Arrange
    let app = spawn_app();
    let document = app.get_anonymous("/api/openapi.json").expect_json(200);
    let schemas = &document["components"]["schemas"];
    let user = &schemas["CreateUser"]["properties"];
    let tier = &schemas["CreateTier"]["properties"];
    let link = &schemas["CreateLink"]["properties"];

    // Assert: the document states the rules...
    assert_eq!((user["username"]["minLength"].clone(), user["username"]["maxLength"].clone()), (json!(3), json!(64)));
    assert_eq!(user["username"]["pattern"], json!("^[A-Za-z0-9_.@-]{3,64}$"));
    assert_eq!((user["password"]["minLength"].clone(), user["password"]["maxLength"].clone()), (json!(8), json!(1024)));
    assert_eq!(user["tier"]["pattern"], json!("^[a-z0-9-]{1,32}$"));
    assert_eq!(tier["name"]["maxLength"], json!(64));
    let heights = &tier["thumbnail_heights"];
    assert_eq!((heights["maxItems"].clone(), heights["uniqueItems"].clone()), (json!(32), json!(true)), "{heights:#}");
    assert_eq!((heights["items"]["minimum"].clone(), heights["items"]["maximum"].clone()), (json!(1), json!(4096)));
    for body in ["CreateTier", "UpdateTier"] {
        let formats = &schemas[body]["properties"]["formats"];
        assert_eq!(formats["items"]["enum"], json!(["webp", "avif"]), "{body}: {formats:#}");
        assert_eq!(
            (formats["maxItems"].clone(), formats["uniqueItems"].clone()),
            (json!(2), json!(true)),
            "{formats:#}"
        );
        let required = schemas[body]["required"].as_array().cloned().unwrap_or_default();
        assert!(!required.contains(&json!("formats")), "{body}: formats is optional");
    }
    let shown = &schemas["TierView"]["properties"]["formats"]["items"];
    let shown = match shown["$ref"].as_str().and_then(|r| r.strip_prefix("#/components/schemas/")) {
        Some(name) => &schemas[name],
        None => shown,
    };
    assert_eq!(shown["enum"], json!(["webp", "avif"]), "{shown:#}");
    assert!(schemas["TierView"]["required"].as_array().is_some_and(|r| r.contains(&json!("formats"))));
    assert_eq!(
        (link["expires_in"]["minimum"].clone(), link["expires_in"]["maximum"].clone()),
        (json!(300), json!(30000))
    );
    let list = operations(&document)
        .into_iter()
        .find(|(method, path, _)| method == "GET" && path == "/api/v1/images")
        .expect("GET /api/v1/images");
    let limit = list.2["parameters"].as_array().expect("parameters").iter().find(|p| p["name"] == "limit").cloned();
    let limit = limit.expect("a limit parameter");
    assert_eq!((limit["schema"]["minimum"].clone(), limit["schema"]["maximum"].clone()), (json!(1), json!(100)));

    // ...and the server keeps them, at both edges.
    let body =
        |username: &str, password: &str, tier: &str| json!({"username": username, "password": password, "tier": tier});
    app.post_user(&body(&"u".repeat(64), "12345678", "basic")).assert_status(201);
    app.post_user(&body(&"v".repeat(65), "12345678", "basic")).assert_problem(400);
    app.post_user(&body("abc", "1234567", "basic")).assert_problem(400);
    app.post_user(&body("abd", &"p".repeat(1024), "basic")).assert_status(201);
    // A well-formed tier that does not exist conflicts with what is there; it is not malformed.
    app.post_user(&body("abe", "12345678", "no-such-tier")).assert_problem(409);
    let heights_as_floats = json!({"id": "floaty", "name": "Floaty", "thumbnail_heights": [100.0, 300]});
    let created = app.post_tier(&heights_as_floats).expect_json(201);
    assert_eq!(created["thumbnail_heights"], json!([100, 300]), "JSON Schema's integers include 100.0");
    app.post_tier(&json!({"id": "blank", "name": "   ", "thumbnail_heights": []})).assert_problem(400);
    app.post_tier(&json!({"id": "long", "name": "n".repeat(65), "thumbnail_heights": []})).assert_problem(400);
    app.post_tier(&json!({"id": "spaced", "name": " Spaced ", "thumbnail_heights": []})).assert_status(201);
    let formats = json!({"id": "formats", "name": "Formats", "thumbnail_heights": [], "formats": ["avif", "webp"]});
    assert_eq!(app.post_tier(&formats).expect_json(201)["formats"], json!(["webp", "avif"]));
    app.post_tier(&json!({"id": "gif", "name": "Gif", "thumbnail_heights": [], "formats": ["gif"]}))
        .assert_problem(400);
    let enterprise = app.create_user("enterprise");
    let image = app.upload_ok(&enterprise, "a.png", &fixtures::png(64, 48));
    let image_id = image["id"].as_str().expect("an image id");
    app.create_link(&enterprise, image_id, &json!({"expires_in": 300.0})).assert_status(201);
    app.create_link(&enterprise, image_id, &json!({"expires_in": 299})).assert_problem(400);
    app.list_images(&enterprise, "limit=100").assert_status(200);
    app.list_images(&enterprise, "limit=0").assert_problem(400);
    app.list_images(&enterprise, "cursor=not-a-ulid").assert_problem(400);
}
