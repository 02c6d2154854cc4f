//! Several API servers on one PostgreSQL database, one Redis and one blob store, as behind a
//! load balancer: any request on any node, changes seen on the other at once, and a node
//! killed mid-burst loses nothing it acknowledged.

use std::time::{Duration, Instant};

use reqwest::blocking::multipart;
use reqwest::Method;
use serde_json::json;

use crate::fixtures::jpeg_seeded;
use crate::helpers::{
    all_ready, eventually, id_of, spawn_app_with, RedisServer, ServerOptions, TestApp, TestDatabase, WorkerOptions,
    WorkerProcess,
};

const SLOW: Duration = Duration::from_secs(60);

fn node_options(redis: &RedisServer, database: Option<&TestDatabase>) -> ServerOptions {
    ServerOptions {
        redis_url: Some(redis.url()),
        database_url: database.map(TestDatabase::url),
        ..ServerOptions::default()
    }
}

/// Two nodes on `database` and `redis`, two workers on their blob store.
fn two_nodes(redis: &RedisServer, database: &TestDatabase) -> (TestApp, TestApp, [WorkerProcess; 2]) {
    let a = spawn_app_with(node_options(redis, Some(database)));
    let b = a.spawn_peer(node_options(redis, None));
    let workers = [
        WorkerProcess::spawn(&a, redis, "w1", WorkerOptions::default()),
        WorkerProcess::spawn(&a, redis, "w2", WorkerOptions::default()),
    ];
    (a, b, workers)
}

fn listed_ids(app: &TestApp, user: &crate::helpers::TestUser) -> Vec<String> {
    let page = app.list_images(user, "limit=100").expect_json(200);
    page["results"].as_array().expect("results").iter().map(|i| id_of(&i["id"])).collect()
}

#[test]
fn uploads_on_either_node_are_listed_fetched_and_made_ready_on_the_other() {
    let Some(redis) = RedisServer::start() else { return };
    let Some(database) = TestDatabase::create() else { return };
    let (a, b, _workers) = two_nodes(&redis, &database);
    let user = b.create_user("premium");
    let nodes = [&a, &b];

    let mut ids = Vec::new();
    for n in 0..8u8 {
        let (here, there) = (nodes[usize::from(n % 2)], nodes[usize::from(1 - n % 2)]);
        let image = here.upload_ok(&user, &format!("n{n}.jpg"), &jpeg_seeded(640, 480, n));
        let id = id_of(&image["id"]);
        // At once on the other node: no cache, no replication delay.
        assert!(listed_ids(there, &user).contains(&id), "an upload on one node is listed on the other");
        there.get_image(&user, &id).assert_status(200);
        there.get_original(&user, &id).assert_status(200);
        // A GET of a pending thumbnail on the other node waits for the worker's result,
        // applied by whichever node reads it, and answers with the thumbnail.
        let thumb = there.get_thumbnail(&user, &id, 200);
        thumb.assert_status(200);
        assert_eq!(thumb.header("content-type"), Some("image/jpeg"));
        ids.push(id);
    }
    for id in &ids {
        let image = a.wait_until_ready_within(&user, id, SLOW);
        a.assert_thumbnail_entries(&image, &[200, 400], (640, 480));
        b.get_thumbnail(&user, id, 400).assert_status(200);
    }
    let mut expected = ids.clone();
    expected.reverse();
    assert_eq!(listed_ids(&a, &user), expected, "newest first, the same on both nodes");
    assert_eq!(listed_ids(&b, &user), expected);
    assert_eq!(database.query("SELECT count(*) FROM outbox"), "0", "every job retired once applied");
}

#[test]
fn credentials_links_and_tier_changes_made_on_one_node_hold_on_the_other_at_once() {
    let Some(redis) = RedisServer::start() else { return };
    let Some(database) = TestDatabase::create() else { return };
    let (a, b, _workers) = two_nodes(&redis, &database);
    let user = a.create_user("enterprise");
    // The Basic cache of node B learns the password...
    b.me(&user).assert_status(200);
    let changed = user.with_password("a-new-password-42");
    a.patch_user(&user.id, &json!({ "password": changed.password })).assert_status(200);
    // ...and forgets it when node A changes it.
    b.me(&user).assert_unauthorized();
    b.me(&changed).assert_status(200);

    let (token_id, token) = a.issue_token(&changed);
    let bearer = changed.bearer(&token);
    b.me(&bearer).assert_status(200);
    a.revoke_token(&changed.id, &token_id).assert_status(204);
    b.me(&bearer).assert_unauthorized();

    let image = id_of(&b.upload_ok(&changed, "l.jpg", &jpeg_seeded(640, 480, 1))["id"]);
    let link = a.create_link_ok(&changed, &image, &json!({ "expires_in": 300 }));
    let url = link["url"].as_str().expect("url").to_owned();
    let path = url.split_once("/l/").map(|(_, token)| format!("/l/{token}")).expect("a /l/ link");
    b.get_anonymous(&path).assert_status(200);
    b.delete_link(&changed, &id_of(&link["id"])).assert_status(204);
    a.get_anonymous(&path).assert_problem(404);

    // A tier change on B reaches the image, wherever the reconciler runs.
    b.patch_user(&changed.id, &json!({ "tier": "basic" })).assert_status(200);
    a.get_thumbnail(&changed, &image, 400).assert_problem(403);
    a.get_original(&changed, &image).assert_problem(403);
}

#[test]
fn a_node_killed_during_a_burst_of_uploads_loses_nothing_it_acknowledged() {
    let Some(redis) = RedisServer::start() else { return };
    let Some(database) = TestDatabase::create() else { return };
    let (a, mut b, _workers) = two_nodes(&redis, &database);
    let user = a.create_user("premium");
    let images: Vec<Vec<u8>> = (0..6u8).map(|n| jpeg_seeded(800, 600, n)).collect();

    let pid = b.pid();
    let started = Instant::now();
    let acknowledged: Vec<String> = std::thread::scope(|scope| {
        let uploaders: Vec<_> = (0..4)
            .map(|t| {
                let (node, user, images) = (&b, &user, &images);
                scope.spawn(move || {
                    let mut ids = Vec::new();
                    for n in 0..40usize {
                        // Other bytes each time: the same bytes again would be the image already held.
                        let bytes = crate::fixtures::distinct(&images[(t + n) % images.len()], (t * 1000 + n) as u64);
                        let part = multipart::Part::bytes(bytes)
                            .file_name(format!("burst-{t}-{n}.jpg"))
                            .mime_str("image/jpeg")
                            .expect("mime");
                        let sent = node
                            .request(Method::POST, "/api/v1/images", Some(user))
                            .multipart(multipart::Form::new().part("image", part))
                            .send();
                        match sent {
                            Ok(response) if response.status().as_u16() == 201 => {
                                let body: serde_json::Value = match response.json() {
                                    Ok(body) => body,
                                    Err(_) => break, // killed while answering: not acknowledged
                                };
                                ids.push(id_of(&body["id"]));
                            }
                            Ok(response) => panic!("an upload answered {} before the kill", response.status()),
                            Err(_) => break, // the node is gone
                        }
                    }
                    ids
                })
            })
            .collect();
        // Mid-burst: once some uploads have landed.
        eventually(SLOW, "uploads to land on node B", || {
            (database.query("SELECT count(*) FROM images").parse::<u32>().ok()? >= 12).then_some(())
        });
        let killed = std::process::Command::new("kill").args(["-9", &pid.to_string()]).status().expect("kill");
        assert!(killed.success());
        uploaders.into_iter().flat_map(|u| u.join().expect("uploader")).collect()
    });
    b.kill(); // reap it
    assert!(acknowledged.len() >= 12, "the kill came mid-burst: {} acknowledged", acknowledged.len());
    assert!(started.elapsed() < SLOW * 2);

    // Node A (and the workers) carry on: every acknowledged upload ends ready with its thumbnails.
    for id in &acknowledged {
        let image = a.wait_until_ready_within(&user, id, SLOW);
        assert!(all_ready(&image), "{image}");
        a.get_thumbnail(&user, id, 400).assert_status(200);
    }
    let listed = a.list_images(&user, "limit=100").expect_json(200)["results"].as_array().expect("results").len();
    assert!(listed >= acknowledged.len(), "every acknowledged upload is listed ({listed} listed)");
    // Whatever B recorded but could not answer is made ready too: nothing stays pending.
    eventually(SLOW, "no thumbnail left pending", || {
        (database.query("SELECT count(*) FROM thumbnails WHERE status <> 'ready'") == "0").then_some(())
    });
}

#[test]
fn while_postgres_is_unreachable_requests_get_503_and_all_works_again_when_it_is_back() {
    let Some(database) = TestDatabase::create() else { return };
    let app = spawn_app_with(ServerOptions { database_url: Some(database.url()), ..ServerOptions::default() });
    let user = app.create_user("premium");
    let before = id_of(&app.upload_ok(&user, "before.jpg", &jpeg_seeded(640, 480, 1))["id"]);
    app.wait_until_ready(&user, &before);

    database.allow_connections(false);
    let me = app.me(&user);
    me.assert_problem(503);
    assert!(me.header("retry-after").is_some(), "says when to come back");
    app.upload(&user, "during.jpg", &jpeg_seeded(640, 480, 2)).assert_problem(503);
    app.get_anonymous("/readyz").assert_status(503);

    database.allow_connections(true);
    eventually(SLOW, "the server to use the database again", || (app.me(&user).status == 200).then_some(()));
    let after = id_of(&app.upload_ok(&user, "after.jpg", &jpeg_seeded(640, 480, 3))["id"]);
    app.wait_until_ready(&user, &after);
    let listed = listed_ids(&app, &user);
    assert_eq!(listed, vec![after, before], "the refused upload left nothing behind");
}
