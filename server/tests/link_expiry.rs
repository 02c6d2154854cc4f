//! Expiry needs a clock we can move: the black-box suite cannot wait 300 s. This test runs the
//! real application (real HTTP, sled and blob store on disk) and advances its injected clock.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed expectation is the test failing

use bytes::Bytes;
use clap::Parser;
use imageapi_core::domain::{ImageId, LinkId, TierId, UserId, Username, Variant};
use imageapi_core::image::ImageFormat;
use imageapi_server::config::Cli;
use imageapi_server::repo::{ImageRecord, LinkRecord, UserRecord};
use imageapi_server::startup::Application;
use imageapi_shared::store::BlobKey;

#[actix_web::test]
async fn a_link_works_until_its_expiry_second_then_answers_410() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data_dir = dir.path().to_str().expect("utf-8 path");
    let cli = Cli::parse_from(["imageapi-server", "--bind", "127.0.0.1:0", "--data-dir", data_dir, "--workers", "0"]);
    let app = Application::build(cli.config).await.expect("app");
    let state = app.state.clone();
    let base = app.local_url().to_owned();
    actix_web::rt::spawn(app.run_until_stopped());

    let now = state.clock.now();
    let owner = UserRecord {
        id: UserId::from_ulid(ulid::Ulid::new()),
        username: Username::parse("ent").expect("name"),
        password_hash: "unused".into(),
        tier: TierId::parse("enterprise").expect("tier"),
        is_active: true,
        is_admin: false,
        created_at: now,
        credentials_version: 0,
    };
    state.repo.create_user(&owner).await.expect("user");
    let image = ImageRecord {
        id: ImageId::from_ulid(ulid::Ulid::new()),
        owner: owner.id,
        name: "x.png".into(),
        format: ImageFormat::Png,
        width: 1,
        height: 1,
        size_bytes: 4,
        created_at: now,
        thumbhash: None,
        sha256: None,
    };
    state.repo.insert_image(&image, imageapi_server::ids::new_job_id()).await.expect("image");
    state.store.put(&BlobKey::original(image.id), Bytes::from_static(b"blob")).await.expect("blob");
    let (token, hash) = imageapi_server::secrets::new_secret("l_");
    let link = LinkRecord {
        id: LinkId::from_ulid(ulid::Ulid::new()),
        owner: owner.id,
        image_id: image.id,
        variant: Variant::Original,
        created_at: now,
        expires_at: now + chrono::Duration::seconds(300),
    };
    state.repo.insert_link(&link, &hash, 10).await.expect("link");
    let url = format!("{base}/l/{token}");
    imageapi_shared::store::install_tls_provider();
    let client = reqwest::Client::new();

    let fresh = client.get(&url).send().await.expect("request");
    assert_eq!(fresh.status(), 200);
    assert_eq!(fresh.bytes().await.expect("body").as_ref(), b"blob");

    state.clock.advance(298);
    assert_eq!(client.get(&url).send().await.expect("request").status(), 200, "still live before expiry");

    state.clock.advance(2);
    let expired = client.get(&url).send().await.expect("request");
    assert_eq!(expired.status(), 410, "expired at its second");
    assert_eq!(expired.headers()["content-type"], "application/problem+json");

    let now = state.clock.now();
    assert!(state.repo.user_live_links(owner.id, now, None, 10).await.expect("links").is_empty(), "not live");
    // The purger's minute: the link leaves the table, its token still says expired.
    assert_eq!(state.repo.prune_expired_links(now, now - chrono::Duration::days(7)).await.expect("prune"), (1, 0));
    assert!(state.repo.user_links(owner.id).await.expect("links").is_empty(), "pruned");
    let pruned = client.get(&url).send().await.expect("request");
    assert_eq!(pruned.status(), 410, "a pruned link still answers 410");
    // The retention over: forgotten, 404.
    let after = now + chrono::Duration::seconds(1);
    assert_eq!(state.repo.prune_expired_links(after, after).await.expect("prune"), (0, 1));
    assert_eq!(client.get(&url).send().await.expect("request").status(), 404, "forgotten after the retention");
}
