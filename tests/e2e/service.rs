//! Service endpoints: health, readiness, the OpenAPI document and the offline docs UI.

use std::collections::BTreeMap;

use reqwest::Url;

use crate::helpers::spawn_app;

#[test]
fn healthz_and_readyz_answer_200_without_credentials() {
    let app = spawn_app();
    app.get_anonymous("/healthz").assert_status(200);
    app.get_anonymous("/readyz").assert_status(200);
}

/// `/api/v1/images/{image_id}` -> `/api/v1/images/{}`, so parameter names do not matter.
fn normalize(path: &str) -> String {
    let mut out = String::new();
    let mut in_parameter = false;
    for c in path.chars() {
        match c {
            '{' => {
                in_parameter = true;
                out.push_str("{}");
            }
            '}' => in_parameter = false,
            _ if in_parameter => {}
            c => out.push(c),
        }
    }
    out
}

#[test]
fn openapi_document_describes_every_route() {
    // Arrange
    let app = spawn_app();
    let expected: [(&str, &[&str]); 16] = [
        ("/api/v1/images", &["get", "post"]),
        ("/api/v1/images/{}", &["get", "delete"]),
        ("/api/v1/images/{}/thumbnails/{}", &["get"]),
        ("/api/v1/images/{}/original", &["get"]),
        ("/api/v1/images/{}/links", &["post"]),
        ("/api/v1/links", &["get"]),
        ("/api/v1/links/{}", &["delete"]),
        ("/l/{}", &["get"]),
        ("/api/v1/me", &["get"]),
        ("/api/v1/admin/users", &["get", "post"]),
        ("/api/v1/admin/users/{}", &["get", "patch", "delete"]),
        ("/api/v1/admin/users/{}/tokens", &["post"]),
        ("/api/v1/admin/users/{}/tokens/{}", &["delete"]),
        ("/api/v1/admin/tiers", &["get", "post"]),
        ("/api/v1/admin/tiers/{}", &["get", "patch", "delete"]),
        ("/api/v1/admin/images", &["get"]),
    ];

    // Act
    let document = app.get_anonymous("/api/openapi.json").expect_json(200);

    // Assert
    assert!(
        document["openapi"].as_str().is_some_and(|v| v.starts_with("3.")),
        "expected an OpenAPI 3 document, got openapi = {}",
        document["openapi"]
    );
    let paths =
        document["paths"].as_object().unwrap_or_else(|| panic!("expected a `paths` object in the OpenAPI document"));
    let documented: BTreeMap<String, Vec<String>> = paths
        .iter()
        .map(|(path, item)| {
            let methods = item
                .as_object()
                .map(|operations| operations.keys().map(|m| m.to_lowercase()).collect())
                .unwrap_or_default();
            (normalize(path), methods)
        })
        .collect();
    let mut missing = Vec::new();
    for (path, methods) in expected {
        for method in methods {
            let present = documented.get(path).is_some_and(|listed| listed.iter().any(|m| m == method));
            if !present {
                missing.push(format!("{} {path}", method.to_uppercase()));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "the OpenAPI document lacks {missing:?}; it has {:?}",
        documented.keys().collect::<Vec<_>>()
    );
}

/// The values of `src="..."` and `href="..."` attributes (either quote) in an HTML page.
fn referenced_urls(html: &str) -> Vec<String> {
    let mut found = Vec::new();
    for attribute in ["src=", "href="] {
        let mut rest = html;
        while let Some(at) = rest.find(attribute) {
            rest = &rest[at + attribute.len()..];
            let Some(quote) = rest.chars().next().filter(|c| *c == '"' || *c == '\'') else {
                continue;
            };
            let value = &rest[1..];
            if let Some(end) = value.find(quote) {
                found.push(value[..end].to_owned());
            }
        }
    }
    found
}

#[test]
fn docs_ui_is_served_by_the_server_itself_with_no_external_hosts() {
    // Arrange
    let app = spawn_app();
    let cdn_markers = ["unpkg.com", "jsdelivr.net", "cdnjs.cloudflare.com", "petstore.swagger.io"];

    // Act
    let page = app.get_anonymous("/api/docs/");
    let without_slash = app.get_anonymous("/api/docs");

    // Assert: an HTML page, also reachable without the trailing slash
    page.assert_status(200);
    assert!(
        page.header("content-type").is_some_and(|ct| ct.starts_with("text/html")),
        "expected an HTML page, got {:?}",
        page.header("content-type")
    );
    without_slash.assert_status(200);
    let html = page.text();
    let base = Url::parse(&page.url).expect("the page URL");
    let own_host = base.host_str().map(str::to_owned);

    // Assert: every script and stylesheet is local and loads
    let references = referenced_urls(&html);
    assert!(!references.is_empty(), "expected the docs page to load scripts: {html}");
    for reference in references {
        let url = base.join(&reference).unwrap_or_else(|error| panic!("bad reference {reference:?}: {error}"));
        if !matches!(url.scheme(), "http" | "https") {
            continue; // data: URIs and the like
        }
        assert_eq!(
            url.host_str().map(str::to_owned),
            own_host,
            "the docs page must not load {reference} from another host (it must work offline)"
        );
        let path = url.path();
        if path.ends_with(".js") || path.ends_with(".css") {
            let asset = app.get_anonymous(url.as_str());
            asset.assert_status(200);
            let text = asset.text();
            for marker in cdn_markers {
                assert!(!text.contains(marker), "{url} refers to {marker}");
            }
        }
    }
    for marker in cdn_markers {
        assert!(!html.contains(marker), "the docs page refers to {marker}");
    }
}
