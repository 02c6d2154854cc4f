//! Clients that misbehave: floods of bad credentials, uploads that stall, files that would cost
//! a decoder unbounded time or memory, and the smaller leaks of information or state. Each
//! test is a finding of the adversarial probe; the bounds asserted are functional (generous
//! deadlines and memory ceilings), the figures are in docs/BENCHMARKS.md.

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::json;

use crate::fixtures::{
    cmyk_progressive_jpeg, distinct, jpeg, jpeg_seeded, png_with_chunks, rgb_gradient, streamed_png, zlib_zeros,
    SharedBuffer,
};
use crate::helpers::{id_of, spawn_app, spawn_app_with, ServerOptions, TestApp, TestUser};

/// A client whose connections come from `address` (any of 127/8 reaches the server).
fn client_from(address: Ipv4Addr) -> reqwest::blocking::Client {
    crate::helpers::install_tls_provider();
    reqwest::blocking::Client::builder()
        .no_proxy()
        .local_address(IpAddr::V4(address))
        .timeout(Duration::from_secs(60))
        .build()
        .expect("a client")
}

const FLOODER: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);

/// Bad Basic credentials from FLOODER, from `clients` threads, until `stop`; returns the
/// statuses seen.
fn flood_bad_logins(app: &TestApp, usernames: &[String], clients: usize, stop: &AtomicBool) -> Vec<u16> {
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..clients)
            .map(|n| {
                let client = client_from(FLOODER);
                let username = usernames[n % usernames.len()].clone();
                scope.spawn(move || {
                    let bad = TestUser { id: String::new(), username, password: format!("wrong-{n}"), token: None };
                    let mut seen = Vec::new();
                    while !stop.load(Ordering::Relaxed) {
                        let reply = client
                            .get(app.url("/api/v1/me"))
                            .header("authorization", bad.authorization())
                            .send()
                            .expect("the server answers the flood");
                        seen.push(reply.status().as_u16());
                    }
                    seen
                })
            })
            .collect();
        handles.into_iter().flat_map(|h| h.join().expect("flood client")).collect()
    })
}

#[test]
fn a_bad_credential_flood_neither_starves_a_good_login_nor_grows_memory() {
    let app = spawn_app();
    let victim = app.create_user("basic");
    let good = app.create_user("basic");
    let (rss_before, _) = app.memory_mib();
    let stop = AtomicBool::new(false);
    let usernames = vec![victim.username.clone(), "nobody-at-all".to_owned()];
    let (statuses, good_login) = std::thread::scope(|scope| {
        let flood = scope.spawn(|| flood_bad_logins(&app, &usernames, 50, &stop));
        std::thread::sleep(Duration::from_secs(2));
        // A correct login nobody has made yet (not in the cache), from another address.
        let started = Instant::now();
        let reply = app.me(&good);
        let took = started.elapsed();
        std::thread::sleep(Duration::from_secs(3));
        stop.store(true, Ordering::Relaxed);
        (flood.join().expect("flood"), (reply.status, took))
    });
    assert_eq!(good_login.0, 200, "the good login succeeds during the flood");
    assert!(good_login.1 < Duration::from_secs(5), "the good login waited {:?} behind the flood", good_login.1);
    assert!(statuses.iter().all(|s| [401, 429].contains(s)), "only 401 and 429 for the flood: {:?}", {
        let mut odd: Vec<_> = statuses.iter().filter(|s| ![401, 429].contains(*s)).collect();
        odd.dedup();
        odd
    });
    let limited = statuses.iter().filter(|&&s| s == 429).count();
    assert!(
        limited * 2 > statuses.len(),
        "most of the flood is refused before argon2: {limited} of {}",
        statuses.len()
    );
    let (rss_after, peak) = app.memory_mib();
    assert!(peak < rss_before + 200, "memory stays bounded: {rss_before} MiB before, peak {peak} MiB");
    assert!(rss_after < rss_before + 120, "{rss_before} MiB before, {rss_after} MiB after");

    // The victim's uncached logins are refused for the window; a 429 says when to retry.
    let refused = app.me(&victim);
    refused.assert_status(429);
    assert!(refused.header("retry-after").and_then(|s| s.parse::<u64>().ok()).is_some_and(|s| s >= 1));
}

#[test]
fn failed_logins_are_limited_per_username_and_per_address_with_retry_after() {
    let app = spawn_app();
    let user = app.create_user("basic");
    let wrong = user.with_password("not-the-password");
    for _ in 0..10 {
        app.me(&wrong).assert_unauthorized();
    }
    let limited = app.me(&wrong);
    limited.assert_problem(429);
    assert!(limited.header("retry-after").is_some());
    // The right password is refused too while uncached...
    app.me(&user).assert_problem(429);
    // ...but an API token keeps working.
    let (_, token) = app.issue_token(&user);
    app.me(&user.bearer(&token)).assert_status(200);

    // Per address: unknown usernames count too, and other addresses are not affected.
    let other = client_from(Ipv4Addr::new(127, 0, 0, 3));
    let mut statuses = Vec::new();
    for n in 0..32 {
        let ghost = TestUser { id: String::new(), username: format!("ghost{n}"), password: "x".repeat(8), token: None };
        let reply =
            other.get(app.url("/api/v1/me")).header("authorization", ghost.authorization()).send().expect("sent");
        statuses.push(reply.status().as_u16());
    }
    assert_eq!(&statuses[..30], &[401; 30][..], "30 failures per address are answered");
    assert_eq!(&statuses[30..], &[429, 429], "then the address waits");
    let fresh = app.create_user("basic");
    app.me(&fresh).assert_status(200);
}

/// Opens an upload whose body stops half-way: headers and part of the file, then silence.
fn stalled_upload(app: &TestApp, user: &TestUser) -> TcpStream {
    let host = app.address.strip_prefix("http://").expect("http").to_owned();
    let mut stream = TcpStream::connect(&host).expect("connect");
    let boundary = "stall-boundary";
    let head = format!(
        "POST /api/v1/images HTTP/1.1\r\nHost: {host}\r\nAuthorization: {}\r\n\
         Content-Type: multipart/form-data; boundary={boundary}\r\nContent-Length: 1000000\r\n\r\n\
         --{boundary}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"s.jpg\"\r\n\r\n",
        user.authorization()
    );
    stream.write_all(head.as_bytes()).expect("write");
    stream.write_all(&jpeg(32, 32)[..100]).expect("write");
    stream
}

#[test]
fn one_user_stalling_sixteen_uploads_does_not_block_anyone_elses() {
    let app = spawn_app();
    let attacker = app.create_user("basic");
    let other = app.create_user("basic");
    let stalled: Vec<TcpStream> = (0..16).map(|_| stalled_upload(&app, &attacker)).collect();
    std::thread::sleep(Duration::from_millis(500));
    let started = Instant::now();
    let image = app.upload_ok(&other, "fine.jpg", &jpeg_seeded(64, 48, 3));
    assert!(started.elapsed() < Duration::from_secs(10), "the other user's upload waited {:?}", started.elapsed());
    app.wait_until_ready(&other, &id_of(&image["id"]));
    // The attacker's own fifth upload is refused at once rather than queued.
    let reply = app.upload(&attacker, "more.jpg", &jpeg_seeded(64, 48, 4));
    reply.assert_problem(429);
    drop(stalled);
}

/// Reads a response's status line from a raw socket, within `timeout`.
fn status_within(stream: &mut TcpStream, timeout: Duration) -> Option<u16> {
    stream.set_read_timeout(Some(timeout)).expect("timeout");
    let mut received = Vec::new();
    let mut buffer = [0u8; 1024];
    while !received.windows(2).any(|w| w == b"\r\n") {
        match stream.read(&mut buffer) {
            Ok(0) | Err(_) => break,
            Ok(n) => received.extend_from_slice(&buffer[..n]),
        }
    }
    String::from_utf8_lossy(&received).split_whitespace().nth(1).and_then(|s| s.parse().ok())
}

#[test]
fn an_oversized_upload_trickling_in_is_answered_and_closed_within_the_drain_deadline() {
    let app = spawn_app();
    let user = app.create_user("basic");
    let host = app.address.strip_prefix("http://").expect("http").to_owned();
    let mut stream = TcpStream::connect(&host).expect("connect");
    let head = format!(
        "POST /api/v1/images HTTP/1.1\r\nHost: {host}\r\nAuthorization: {}\r\n\
         Content-Type: multipart/form-data; boundary=b\r\nContent-Length: {}\r\n\r\n--b\r\n",
        user.authorization(),
        100 * 1024 * 1024
    );
    stream.write_all(head.as_bytes()).expect("write");
    let started = Instant::now();
    let writer = stream.try_clone().expect("clone");
    let trickle = std::thread::spawn(move || {
        let mut writer = writer;
        for _ in 0..60 {
            if writer.write_all(b"x").is_err() {
                return;
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    });
    assert_eq!(status_within(&mut stream, Duration::from_secs(30)), Some(413));
    // The server stops reading after the drain deadline (10 s) and closes the connection.
    let mut rest = Vec::new();
    stream.set_read_timeout(Some(Duration::from_secs(30))).expect("timeout");
    let _ = stream.read_to_end(&mut rest);
    assert!(started.elapsed() < Duration::from_secs(25), "the connection stayed open {:?}", started.elapsed());
    let _ = trickle.join();
}

#[test]
fn an_upload_of_many_empty_parts_is_refused_after_a_few() {
    let app = spawn_app();
    let user = app.create_user("basic");
    let mut form = reqwest::blocking::multipart::Form::new();
    for n in 0..5000 {
        form = form.text(format!("f{n}"), "");
    }
    let reply = app.upload_form(&user, form);
    let problem = reply.assert_problem(400);
    assert!(problem["detail"].as_str().is_some_and(|d| d.contains("at most 8 multipart parts")), "{problem:#}");
}

/// A progressive JPEG with `scans_per_component` scans for each colour component.
fn progressive_jpeg(width: u16, height: u16, scans_per_component: u8) -> Vec<u8> {
    let pixels = rgb_gradient(u32::from(width), u32::from(height), 7).into_raw();
    let mut out = Vec::new();
    let mut encoder = jpeg_encoder::Encoder::new(&mut out, 85);
    encoder.set_progressive_scans(scans_per_component);
    encoder.encode(&pixels, width, height, jpeg_encoder::ColorType::Rgb).expect("encode");
    out
}

#[test]
fn a_jpeg_with_hundreds_of_scans_is_refused_at_upload_while_ordinary_progressive_ones_pass() {
    let app = spawn_app();
    let user = app.create_user("premium");
    let pathological = progressive_jpeg(256, 192, 64);
    let problem = app.upload(&user, "scans.jpg", &pathological).assert_problem(413);
    assert!(problem["detail"].as_str().is_some_and(|d| d.contains("scans")), "{problem:#}");
    let ordinary = app.upload_ok(&user, "progressive.jpg", &progressive_jpeg(256, 192, 4));
    app.wait_until_ready(&user, &id_of(&ordinary["id"]));
}

/// A `side`×`side` RGBA PNG with 16 bits per channel, streamed row by row (it compresses to
/// almost nothing; decoded it is `side² × 8` bytes).
fn big_16_bit_png(side: u32) -> Vec<u8> {
    let setup = |encoder: &mut png::Encoder<'static, SharedBuffer>| {
        encoder.set_color(png::ColorType::Rgba);
        encoder.set_depth(png::BitDepth::Sixteen);
        encoder.set_compression(png::Compression::Fast);
    };
    streamed_png(side, side, setup, &vec![0x40u8; side as usize * 8])
}

#[test]
fn large_decodes_wait_for_the_render_memory_budget_instead_of_running_side_by_side() {
    // Each of these needs about 512 MB decoded plus 256 MB converted to 8 bits: with a budget
    // of 900 MB and two render threads, the two run one after the other.
    let app = spawn_app_with(ServerOptions {
        workers: Some(2),
        env: vec![("IMAGEAPI_RENDER_MEMORY_MB", "900".into())],
        ..ServerOptions::default()
    });
    let user = app.create_user("basic");
    let png = big_16_bit_png(8000);
    let ids: Vec<String> =
        (0..2).map(|n| id_of(&app.upload_ok(&user, &format!("big{n}.png"), &distinct(&png, n))["id"])).collect();
    for id in &ids {
        app.wait_until_ready_within(&user, id, Duration::from_secs(240));
    }
    let (_, peak) = app.memory_mib();
    assert!(peak < 1250, "two renders side by side would peak near 1.6 GB; the budget kept it at {peak} MiB");
}

/// Uploads each of `files` at once, as `user`; returns the replies in order.
fn upload_all_at_once(app: &TestApp, user: &TestUser, files: &[(String, Vec<u8>)]) -> Vec<crate::helpers::Reply> {
    std::thread::scope(|scope| {
        let handles: Vec<_> =
            files.iter().map(|(name, bytes)| scope.spawn(move || app.upload(user, name, bytes))).collect();
        handles.into_iter().map(|h| h.join().expect("upload thread")).collect()
    })
}

#[test]
fn colour_profile_bombs_and_text_chunk_floods_cost_the_server_almost_nothing() {
    // The probe's attack: a 64×64 PNG whose iCCP chunk inflates to 1000 MiB of zeros (6.5 MB),
    // 8 at once from one Basic user. The png crate inflated such a profile up to its
    // allocation limit, 512 MiB per upload check and 800 MiB per render: the server went from
    // 95 MB to 4 GB. Now no decoder is shown the chunk. (Premium: the 22 MB text flood is over
    // Basic's own 10 MiB upload limit, and the server's 25 MiB is what this test is about.)
    let app = spawn_app();
    let user = app.create_user("premium");
    let bomb = zlib_zeros(1000);
    let files: Vec<(String, Vec<u8>)> = (0..8)
        .map(|n| {
            // Each profile named differently: eight different files.
            let mut iccp = format!("bomb{n}\0\0").into_bytes();
            iccp.extend_from_slice(&bomb);
            (format!("bomb{n}.png"), png_with_chunks(&[(b"iCCP", &iccp)]))
        })
        .collect();
    // And 1.5 million tiny text chunks (22 MB), which the png crate kept one by one.
    let texts: Vec<(&[u8; 4], &[u8])> = std::iter::repeat_n((b"tEXt", &b"a\0"[..]), 1_500_000).collect();
    let chatty = png_with_chunks(&texts);
    assert!(chatty.len() < 25 * 1024 * 1024);
    let (rss_before, _) = app.memory_mib();

    let replies = upload_all_at_once(&app, &user, &files);
    let chatty_id = id_of(&app.upload_ok(&user, "chatty.png", &chatty)["id"]);
    for reply in &replies {
        // The images themselves are fine: accepted, and their thumbnails made.
        let image = reply.expect_json(201);
        app.wait_until_ready(&user, &id_of(&image["id"]));
    }
    app.wait_until_ready(&user, &chatty_id);

    // The bodies (eight of 6.5 MB and one of 22 MB, each buffered while it is checked and
    // stored) and the renders of 64×64 images: tens of MB. One inflated profile was 512 MiB.
    let (_, peak) = app.memory_mib();
    assert!(peak < rss_before + 200, "{rss_before} MiB before, peak {peak} MiB");
}

#[test]
fn huge_progressive_cmyk_jpegs_are_refused_at_upload_naming_the_memory_they_would_take() {
    // The probe's second attack: 10000×10000 progressive CMYK JPEGs, four at once with four
    // render threads. imageapi's decoder declines CMYK; jpeg-decoder keeps every coefficient
    // (800 MB, and as much again in the rows it queues to its threads): 1.6 GB each, over the
    // default ceiling of 1536 MiB. They used to be accepted, and four renders took 3.1 GB.
    let app = spawn_app_with(ServerOptions { workers: Some(4), ..ServerOptions::default() });
    let user = app.create_user("basic");
    let jpeg = cmyk_progressive_jpeg(10_000);
    let files: Vec<(String, Vec<u8>)> = (0..4).map(|n| (format!("cmyk{n}.jpg"), jpeg.clone())).collect();
    let (rss_before, _) = app.memory_mib();
    for reply in upload_all_at_once(&app, &user, &files) {
        let problem = reply.assert_problem(413);
        let detail = problem["detail"].as_str().unwrap_or_default();
        assert!(
            detail.contains("10000x10000 progressive CMYK JPEG") && detail.contains("the limit is 1536 MiB"),
            "{problem:#}"
        );
    }
    assert!(app.list_images(&user, "").json()["results"].as_array().is_some_and(Vec::is_empty), "nothing stored");
    // Four bodies and four header reads; nothing is decoded.
    let (_, peak) = app.memory_mib();
    assert!(peak < rss_before + 150, "{rss_before} MiB before, peak {peak} MiB");
}

#[test]
fn huge_progressive_cmyk_jpegs_under_a_raised_ceiling_render_one_at_a_time_within_the_budget() {
    // The same files with the ceiling raised over their 1.6 GB estimate: accepted, and each
    // render, larger than the 1536 MiB budget, runs alone. One holds about 850 MB (its
    // coefficients, the file, the small decode); two side by side would pass 1.6 GB, four
    // took 3.1 GB before.
    let app = spawn_app_with(ServerOptions {
        workers: Some(4),
        env: vec![("IMAGEAPI_MAX_DECODE_MEMORY_MB", "2048".into())],
        ..ServerOptions::default()
    });
    let user = app.create_user("basic");
    let jpeg = cmyk_progressive_jpeg(10_000);
    let files: Vec<(String, Vec<u8>)> = (0..4).map(|n| (format!("cmyk{n}.jpg"), jpeg.clone())).collect();
    let ids: Vec<String> = upload_all_at_once(&app, &user, &files)
        .iter()
        .map(|reply| {
            assert!(matches!(reply.status, 200 | 201), "accepted: {} {}", reply.status, reply.text());
            id_of(&reply.json()["id"])
        })
        .collect();
    for id in &ids {
        let image = app.wait_until_ready_within(&user, id, Duration::from_secs(300));
        assert_eq!(image["thumbnails"][0]["width"], 200);
    }
    let (_, peak) = app.memory_mib();
    assert!(peak < 1400, "renders ran side by side: peak {peak} MiB");
}

#[test]
fn a_render_past_its_deadline_ends_failed_with_the_reason_and_the_next_jobs_run() {
    let app = spawn_app_with(ServerOptions {
        workers: Some(1),
        env: vec![("IMAGEAPI_RENDER_TIMEOUT_SECS", "1".into())],
        ..ServerOptions::default()
    });
    let user = app.create_user("basic");
    // Seconds of decoding in a debug build; far longer than the one second allowed.
    let slow = id_of(&app.upload_ok(&user, "slow.png", &big_16_bit_png(8000))["id"]);
    let failed = app.wait_for_image(&user, &slow, Duration::from_secs(60), "the render to time out", |image| {
        image["thumbnails"][0]["status"] == "failed"
    });
    let reason = failed["thumbnails"][0]["error"].as_str().unwrap_or_default().to_owned();
    assert!(reason.contains("longer than 1 s"), "{failed:#}");
    let fine = id_of(&app.upload_ok(&user, "fine.jpg", &jpeg_seeded(64, 48, 5))["id"]);
    app.wait_until_ready_within(&user, &fine, Duration::from_secs(60));
}

#[test]
fn a_link_that_died_with_its_grant_stays_dead_when_the_grant_returns() {
    let app = spawn_app();
    let user = app.create_user("enterprise");
    let image = app.upload_ok(&user, "a.jpg", &jpeg_seeded(64, 48, 1));
    let id = id_of(&image["id"]);
    app.wait_until_ready(&user, &id);
    let link = |app: &TestApp| {
        app.create_link_ok(&user, &id, &json!({"expires_in": 600}))["url"].as_str().expect("url").to_owned()
    };

    // Downgrade and upgrade again.
    let moved = link(&app);
    app.get_anonymous(&moved).assert_status(200);
    app.patch_user(&user.id, &json!({"tier": "premium"})).assert_status(200);
    app.get_anonymous(&moved).assert_status(404);
    app.patch_user(&user.id, &json!({"tier": "enterprise"})).assert_status(200);
    app.get_anonymous(&moved).assert_status(404);

    // Deactivation and reactivation; nobody fetches in between.
    let deactivated = link(&app);
    app.patch_user(&user.id, &json!({"is_active": false})).assert_status(200);
    app.patch_user(&user.id, &json!({"is_active": true})).assert_status(200);
    app.get_anonymous(&deactivated).assert_status(404);

    // A tier edit that takes the flag away and gives it back, nobody fetching in between.
    let edited = link(&app);
    app.patch_tier("enterprise", &json!({"expiring_links": false})).assert_status(200);
    crate::helpers::eventually(Duration::from_secs(30), "the link list to lose the link", || {
        let links = app.list_links(&user).expect_json(200);
        links["results"].as_array().is_some_and(|l| l.is_empty()).then_some(())
    });
    app.patch_tier("enterprise", &json!({"expiring_links": true})).assert_status(200);
    app.get_anonymous(&edited).assert_status(404);
}

#[test]
fn link_etags_do_not_show_the_image_id() {
    let app = spawn_app();
    let user = app.create_user("enterprise");
    let image = app.upload_ok(&user, "a.jpg", &jpeg_seeded(64, 48, 1));
    let id = id_of(&image["id"]);
    app.wait_until_ready(&user, &id);
    for variant in [json!("original"), json!(200)] {
        let url = app.create_link_ok(&user, &id, &json!({"expires_in": 600, "variant": variant}))["url"]
            .as_str()
            .expect("url")
            .to_owned();
        let first = app.get_anonymous(&url);
        first.assert_status(200);
        let etag = first.header("etag").expect("an ETag").to_owned();
        assert!(!etag.contains(&id), "the ETag {etag} shows the image id {id}");
        let again = app.send(app.request(Method::GET, &url, None).header("if-none-match", &etag));
        again.assert_status(304);
    }
}

#[test]
fn metrics_are_for_admins_or_on_their_own_listener() {
    let app = spawn_app();
    let user = app.create_user("basic");
    app.get_anonymous("/metrics").assert_status(401);
    app.get_as(&user, "/metrics").assert_status(403);
    let metrics = app.get_as(&app.admin, "/metrics");
    metrics.assert_status(200);
    assert!(metrics.text().contains("imageapi_http_requests_total"));

    let port = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port").local_addr().expect("addr").port();
    let separate = spawn_app_with(ServerOptions {
        env: vec![("IMAGEAPI_METRICS_BIND", format!("127.0.0.1:{port}"))],
        ..ServerOptions::default()
    });
    separate.get_anonymous("/healthz").assert_status(200);
    let open = separate.get_anonymous(&format!("http://127.0.0.1:{port}/metrics"));
    open.assert_status(200);
    assert!(open.text().contains("imageapi_http_requests_total"));
    separate.get_as(&separate.admin, "/metrics").assert_status(404);
}

#[test]
fn invented_methods_and_paths_create_no_metrics_series() {
    let app = spawn_app();
    let series = |app: &TestApp| {
        let text = app.get_as(&app.admin, "/metrics").text();
        let lines: Vec<String> =
            text.lines().filter(|l| l.starts_with("imageapi_http_requests_total{")).map(str::to_owned).collect();
        (lines, text.len())
    };
    let invent = |prefix: char, n: usize| {
        // A long unique method per request (any token is a legal method), and unique paths.
        let method = Method::from_bytes(format!("{prefix}{n:04}{}", "M".repeat(2000)).as_bytes()).expect("a token");
        app.send(app.request(method, &format!("/{prefix}/{n}"), None)).assert_status(404);
        app.get_anonymous(&format!("/api/v1/images/{n}/nowhere/{prefix}")).assert_status(404);
        app.get_anonymous(&format!("/l/{prefix}{n}")).assert_status(404);
    };
    (0..150).for_each(|n| invent('x', n));
    series(&app);
    let (before, size_before) = series(&app);
    (150..300).for_each(|n| invent('y', n));
    let (after, size_after) = series(&app);

    assert!(before.iter().any(|l| l.contains(r#"method="other""#)), "invented methods count as `other`: {before:#?}");
    assert!(after.iter().all(|l| l.len() < 200), "no label carries what a client sent: {after:#?}");
    let names = |lines: &[String]| {
        lines.iter().map(|l| l.rsplit_once(' ').map_or("", |(name, _)| name).to_owned()).collect::<Vec<_>>()
    };
    assert_eq!(names(&before).len(), names(&after).len(), "150 more invented requests made new series: {after:#?}");
    assert!(size_after < size_before + 200, "the metrics grew from {size_before} to {size_after} bytes");
}

#[test]
fn secrets_are_never_cached_and_the_docs_page_sends_a_content_security_policy() {
    let app = spawn_app();
    let user = app.create_user("enterprise");
    let token = app.post_token(&user.id);
    assert_eq!(token.header("cache-control"), Some("no-store"), "a new API token");
    let image = app.upload_ok(&user, "a.jpg", &jpeg_seeded(64, 48, 1));
    let link = app.create_link(&user, &id_of(&image["id"]), &json!({"expires_in": 600}));
    assert_eq!(link.header("cache-control"), Some("no-store"), "a new link's secret URL");
    assert_eq!(app.list_images(&user, "").header("cache-control"), Some("no-store"));
    let docs = app.get_anonymous("/api/docs/");
    docs.assert_status(200);
    let csp = docs.header("content-security-policy").expect("a CSP on the docs page");
    assert!(csp.contains("default-src 'self'") && csp.contains("script-src 'self'"), "{csp}");
}

#[test]
fn file_names_lose_bidi_overrides_and_invisible_characters() {
    let app = spawn_app();
    let user = app.create_user("basic");
    let image = app.upload_ok(&user, "evil\u{202E}gpj.exe", &jpeg_seeded(64, 48, 1));
    assert_eq!(image["name"], "evilgpj.exe");
}

#[test]
fn concurrent_uploads_per_user_are_capped_while_others_proceed() {
    let app =
        spawn_app_with(ServerOptions { env: vec![("IMAGEAPI_UPLOADS_PER_USER", "1".into())], ..Default::default() });
    let user = app.create_user("basic");
    let stalled = stalled_upload(&app, &user);
    std::thread::sleep(Duration::from_millis(300));
    let reply = app.upload(&user, "second.jpg", &jpeg_seeded(64, 48, 2));
    let problem = reply.assert_problem(429);
    assert!(problem["detail"].as_str().is_some_and(|d| d.contains("uploads in progress")), "{problem:#}");
    drop(stalled);
    crate::helpers::eventually(Duration::from_secs(30), "the user's turn to come back", || {
        (app.upload(&user, "third.jpg", &jpeg_seeded(64, 48, 3)).status == 201).then_some(())
    });
}

#[test]
fn a_thumbnail_has_one_url_non_canonical_heights_name_nothing() {
    let app = spawn_app();
    let user = app.create_user("premium");
    let id = id_of(&app.upload_ok(&user, "a.jpg", &jpeg(600, 400))["id"]);
    app.wait_until_ready(&user, &id);
    app.get_as(&user, &format!("/api/v1/images/{id}/thumbnails/200")).assert_status(200);
    for spelled in ["+200", "0200", "%32%30%30", "200%20", "2%300"] {
        let owner = app.get_as(&user, &format!("/api/v1/images/{id}/thumbnails/{spelled}"));
        owner.assert_problem(404);
        app.get_as(&app.admin, &format!("/api/v1/admin/images/{id}/thumbnails/{spelled}")).assert_problem(404);
    }
}

#[test]
fn a_range_with_a_signed_number_is_ignored_and_the_whole_body_served() {
    let app = spawn_app();
    let user = app.create_user("premium");
    let id = id_of(&app.upload_ok(&user, "a.jpg", &jpeg(600, 400))["id"]);
    let url = format!("/api/v1/images/{id}/original");
    let whole = app.get_as(&user, &url);
    whole.assert_status(200);
    let ranged = app.send(app.request(Method::GET, &url, Some(&user)).header("range", "bytes=1-2"));
    ranged.assert_status(206);

    for invalid in ["bytes=+1-2", "bytes=1-+2", "bytes=-+2"] {
        let reply = app.send(app.request(Method::GET, &url, Some(&user)).header("range", invalid));
        reply.assert_status(200);
        assert_eq!(reply.body, whole.body, "{invalid}: the whole body");
        assert!(reply.header("content-range").is_none(), "{invalid}");
    }
}

#[test]
fn tier_names_with_invisible_formatting_characters_are_refused() {
    let app = spawn_app();
    for name in ["Gold\u{202E}dlog", "zero\u{200B}width", "\u{FEFF}bom"] {
        let created = app.post_tier(&json!({"id": "sneaky", "name": name, "thumbnail_heights": [100]}));
        created.assert_field_error("name");
    }
    app.create_tier("plain", &[100], false, false);
    app.patch_tier("plain", &json!({"name": "Pla\u{202E}in"})).assert_field_error("name");
    assert_eq!(app.get_tier("plain").expect_json(200)["name"], "Tier plain", "nothing changed");
}

#[test]
fn a_missing_file_of_the_docs_page_is_a_problem_like_any_404() {
    let app = spawn_app();
    app.get_anonymous("/api/docs/").assert_status(200);
    for missing in ["/api/docs/nothing.js", "/api/docs/../../etc/passwd", "/api/docs/a/b/c"] {
        app.get_anonymous(missing).assert_problem(404);
    }
}

#[test]
fn rfc_5987_file_names_are_read_and_cleaned() {
    let app = spawn_app();
    let user = app.create_user("basic");
    let image = jpeg(120, 80);
    let boundary = "xyzBOUNDARYzyx";
    let mut body = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"fallback.jpg\"; \
         filename*=UTF-8''caf%C3%A9%20%E2%80%AEgpj.jpg\r\nContent-Type: image/jpeg\r\n\r\n"
    )
    .into_bytes();
    body.extend_from_slice(&image);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    let reply = app.send(
        app.request(Method::POST, "/api/v1/images", Some(&user))
            .header("content-type", format!("multipart/form-data; boundary={boundary}"))
            .body(body),
    );
    assert_eq!(reply.expect_json(201)["name"], "café gpj.jpg", "filename* decoded, the bidi override dropped");
}

#[test]
fn an_oversized_upload_that_expects_100_continue_is_refused_before_its_body() {
    let app = spawn_app();
    let user = app.create_user("basic");
    let host = app.address.trim_start_matches("http://").to_owned();
    let mut stream = TcpStream::connect(&host).expect("connect");
    stream.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
    let head = format!(
        "POST /api/v1/images HTTP/1.1\r\nHost: {host}\r\nAuthorization: {}\r\n\
         Content-Type: multipart/form-data; boundary=x\r\nContent-Length: {}\r\nExpect: 100-continue\r\n\r\n",
        user.authorization(),
        200u64 << 20
    );
    stream.write_all(head.as_bytes()).expect("send the head");

    // No body is sent: the answer must come without it, and must not invite it.
    let mut answer = Vec::new();
    let mut chunk = [0u8; 4096];
    while !answer.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut chunk).expect("an answer without sending the body");
        assert!(n > 0, "closed without an answer");
        answer.extend_from_slice(&chunk[..n]);
    }
    let text = String::from_utf8_lossy(&answer);
    assert!(text.starts_with("HTTP/1.1 413"), "413 instead of 100 Continue: {text}");
    assert!(text.to_ascii_lowercase().contains("application/problem+json"), "{text}");
    assert!(!text.contains("100 Continue"), "{text}");

    // An upload that fits is invited as usual.
    let mut stream = TcpStream::connect(&host).expect("connect");
    stream.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
    let head = head.replace(&(200u64 << 20).to_string(), "1000");
    stream.write_all(head.as_bytes()).expect("send the head");
    let n = stream.read(&mut chunk).expect("an answer");
    assert!(
        String::from_utf8_lossy(&chunk[..n]).starts_with("HTTP/1.1 100 Continue"),
        "{}",
        String::from_utf8_lossy(&chunk[..n])
    );
}
