//! Concurrency, functionally: many clients at once, every answer accounted for, nothing lost,
//! and a clean SIGTERM afterwards. No timings are asserted (speed lives in `scripts/http-bench`);
//! a lockup shows as requests that never answer, which fails the test at the client's timeout.

use std::collections::BTreeSet;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::fixtures::jpeg_seeded;
use crate::helpers::{
    all_ready, id_of, results, spawn_app, spawn_app_with, RedisServer, Reply, ServerOptions, TestApp, TestUser,
    WorkerOptions, WorkerProcess,
};

const CLIENTS: usize = 16;
const UPLOADS_PER_CLIENT: usize = 25;
/// Generous: 400 small uploads and their thumbnails take seconds even in a debug build.
const ALL_READY_WITHIN: Duration = Duration::from_secs(180);

/// A small JPEG that differs per (client, n), so no two uploads are the same bytes.
fn small_jpeg(client: usize, n: usize) -> Vec<u8> {
    jpeg_seeded(48 + (n % 16) as u32, 32 + (client % 8) as u32, (client * 31 + n) as u8)
}

/// Every image of `user`, following `next` links (100 per page).
fn list_all(app: &TestApp, user: &TestUser) -> Vec<Value> {
    let mut out = Vec::new();
    let mut url = "/api/v1/images?limit=100".to_owned();
    loop {
        let page = app.get_as(user, &url).expect_json(200);
        out.extend(results(&page));
        match page["next"].as_str() {
            Some(next) => url = next.to_owned(),
            None => return out,
        }
    }
}

fn wait_all_ready(app: &TestApp, user: &TestUser, expected: usize) {
    let deadline = Instant::now() + ALL_READY_WITHIN;
    loop {
        let images = list_all(app, user);
        assert_eq!(images.len(), expected, "every accepted upload is listed");
        let failed: Vec<&Value> = images
            .iter()
            .filter(|i| i["thumbnails"].as_array().is_some_and(|t| t.iter().any(|t| t["status"] == "failed")))
            .collect();
        assert!(failed.is_empty(), "no thumbnail of a valid upload fails: {failed:#?}");
        let pending = images.iter().filter(|i| !all_ready(i)).count();
        if pending == 0 {
            return;
        }
        assert!(Instant::now() < deadline, "{pending} images still have pending thumbnails ({})", app.log_hint());
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// 16 clients × 25 uploads at once; returns the ids answered 201.
fn upload_flood(app: &TestApp, users: &[TestUser]) -> BTreeSet<String> {
    let ids: Vec<Vec<String>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..CLIENTS)
            .map(|client| {
                let user = &users[client % users.len()];
                scope.spawn(move || {
                    (0..UPLOADS_PER_CLIENT)
                        .map(|n| {
                            id_of(&app.upload_ok(user, &format!("c{client}-{n}.jpg"), &small_jpeg(client, n))["id"])
                        })
                        .collect()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().expect("an upload client panicked")).collect()
    });
    let all: BTreeSet<String> = ids.into_iter().flatten().collect();
    assert_eq!(all.len(), CLIENTS * UPLOADS_PER_CLIENT, "every upload got its own id");
    all
}

fn assert_listed_and_ready(app: &TestApp, users: &[TestUser], uploaded: &BTreeSet<String>) {
    let mut listed = BTreeSet::new();
    for (i, user) in users.iter().enumerate() {
        let expected = (0..CLIENTS).filter(|c| c % users.len() == i).count() * UPLOADS_PER_CLIENT;
        wait_all_ready(app, user, expected);
        listed.extend(list_all(app, user).iter().map(|image| id_of(&image["id"])));
    }
    assert_eq!(&listed, uploaded, "exactly the accepted uploads are listed");
}

#[test]
fn four_hundred_concurrent_uploads_are_accepted_listed_and_made_then_sigterm_exits_zero() {
    let mut app = spawn_app();
    // Four users with four clients each: a user may have four uploads in flight.
    // Load, not quotas, is the subject: the tiers' limits are lifted.
    app.lift_limits("basic");
    app.lift_limits("premium");
    let users =
        [app.create_user("basic"), app.create_user("premium"), app.create_user("basic"), app.create_user("premium")];
    let uploaded = upload_flood(&app, &users);
    assert_listed_and_ready(&app, &users, &uploaded);

    let status = app.terminate();
    assert!(status.success(), "SIGTERM after the flood exits 0, got {status} ({})", app.log_hint());
    // And everything is still there after the restart.
    app.start_again(ServerOptions::default());
    assert_listed_and_ready(&app, &users, &uploaded);
}

#[test]
fn four_hundred_concurrent_uploads_through_redis_and_a_worker_process_all_get_made() {
    let Some(redis) = RedisServer::start() else { return };
    let mut app = spawn_app_with(ServerOptions { redis_url: Some(redis.url()), ..ServerOptions::default() });
    let mut worker = WorkerProcess::spawn(&app, &redis, "load-w1", WorkerOptions::default());
    // Four users with four clients each: a user may have four uploads in flight.
    // Load, not quotas, is the subject: the tiers' limits are lifted.
    app.lift_limits("basic");
    app.lift_limits("premium");
    let users =
        [app.create_user("basic"), app.create_user("premium"), app.create_user("basic"), app.create_user("premium")];
    let uploaded = upload_flood(&app, &users);
    assert_listed_and_ready(&app, &users, &uploaded);

    let status = worker.terminate();
    assert!(status.success(), "the worker exits 0 after SIGTERM, got {status}; log:\n{}", worker.log_tail());
    let status = app.terminate();
    assert!(status.success(), "the server exits 0 after SIGTERM, got {status} ({})", app.log_hint());
}

/// A tiny deterministic generator, so a failing mix can be replayed.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, below: usize) -> usize {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        ((self.0 >> 33) % below as u64) as usize
    }
}

/// Fails unless `reply` has one of the `allowed` statuses (with Retry-After on a 503).
#[track_caller]
fn expect_one_of(reply: &Reply, allowed: &[u16]) {
    assert!(
        allowed.contains(&reply.status),
        "{} {} answered {} (allowed {allowed:?}): {}",
        reply.method,
        reply.url,
        reply.status,
        reply.text()
    );
    if reply.status == 503 {
        assert!(reply.header("retry-after").is_some(), "a 503 says when to retry: {} {}", reply.method, reply.url);
    }
}

#[test]
fn a_concurrent_mix_of_every_route_gives_only_expected_answers_and_a_consistent_state() {
    let app = spawn_app_with(ServerOptions { thumbnail_wait_secs: Some(2), ..ServerOptions::default() });
    app.lift_limits("basic");
    let users = [app.create_user("enterprise"), app.create_user("enterprise"), app.create_user("basic")];
    const THREADS: usize = 12;
    const STEPS: usize = 60;

    // Each thread acts for one user; the threads of a user share that user's images, so they
    // race: one deletes what another is fetching or linking.
    let pools: Vec<Mutex<Vec<String>>> = users.iter().map(|_| Mutex::new(Vec::new())).collect();
    let pick = |pool: &Mutex<Vec<String>>, rng: &mut Lcg| {
        let ids = pool.lock().expect("pool");
        (!ids.is_empty()).then(|| ids[rng.next(ids.len())].clone())
    };
    let outcomes: Vec<(BTreeSet<String>, BTreeSet<String>)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..THREADS)
            .map(|t| {
                let (app, user, pool, pick) = (&app, &users[t % users.len()], &pools[t % users.len()], &pick);
                scope.spawn(move || {
                    let mut rng = Lcg(t as u64 + 1);
                    let (mut uploaded, mut deleted) = (BTreeSet::new(), BTreeSet::new());
                    let mut links: Vec<String> = Vec::new();
                    for step in 0..STEPS {
                        let choice = rng.next(10);
                        let Some(id) = pick(pool, &mut rng).filter(|_| choice > 2) else {
                            let id = id_of(&app.upload_ok(user, "mix.jpg", &small_jpeg(t, step))["id"]);
                            uploaded.insert(id.clone());
                            pool.lock().expect("pool").push(id);
                            continue;
                        };
                        match choice {
                            3 => expect_one_of(&app.list_images(user, "limit=50"), &[200]),
                            // Deleted meanwhile by a sibling thread: 404; still pending: 503.
                            4 | 5 => expect_one_of(&app.get_thumbnail(user, &id, 200), &[200, 404, 503]),
                            6 => {
                                let reply = app.create_link(user, &id, &json!({"expires_in": 600, "variant": 200}));
                                if user.username.ends_with("basic") {
                                    expect_one_of(&reply, &[403, 404]);
                                } else {
                                    expect_one_of(&reply, &[201, 404]);
                                    if reply.status == 201 {
                                        links.push(reply.json()["url"].as_str().expect("url").to_owned());
                                    }
                                }
                            }
                            7 if !links.is_empty() => {
                                let url = &links[rng.next(links.len())];
                                expect_one_of(&app.get_anonymous(url), &[200, 404, 503]);
                            }
                            7 | 8 => expect_one_of(&app.get_image(user, &id), &[200, 404]),
                            _ => {
                                {
                                    let mut ids = pool.lock().expect("pool");
                                    if let Some(at) = ids.iter().position(|x| *x == id) {
                                        ids.swap_remove(at);
                                    }
                                }
                                // A sibling may have deleted it first: then 404.
                                expect_one_of(&app.delete_image(user, &id), &[204, 404]);
                                deleted.insert(id);
                            }
                        }
                    }
                    (uploaded, deleted)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().expect("a client panicked")).collect()
    });

    // Consistent: per user, the listing is exactly what was uploaded minus what was deleted;
    // every survivor's thumbnails get made; deleted images and their links are gone.
    for (u, user) in users.iter().enumerate() {
        let mine = outcomes.iter().enumerate().filter(|(t, _)| t % users.len() == u).map(|(_, o)| o);
        let (mut uploaded, mut deleted) = (BTreeSet::new(), BTreeSet::new());
        for (up, del) in mine {
            uploaded.extend(up.iter().cloned());
            deleted.extend(del.iter().cloned());
        }
        let expected: BTreeSet<String> = uploaded.difference(&deleted).cloned().collect();
        wait_all_ready(&app, user, expected.len());
        let listed: BTreeSet<String> = list_all(&app, user).iter().map(|i| id_of(&i["id"])).collect();
        assert_eq!(listed, expected, "user {} lists exactly the uploads not deleted", user.username);
        for id in &deleted {
            app.get_image(user, id).assert_status(404);
        }
        let live_links = app.list_links(user).expect_json(200);
        for link in results(&live_links) {
            let image = id_of(&link["image_id"]);
            assert!(expected.contains(&image), "a live link points at a deleted image: {link:#}");
        }
    }
    let queue = app.queue();
    assert_eq!(queue["failed"], json!(0), "no job failed: {queue:#}");
}
