//! Fixture data for the state and rendering tests.

use chrono::{TimeZone, Utc};

use crate::action::{Action, Loaded};
use imageapi_core::api::{
    QueueJobView as QueueJob, QueueWorkerView as QueueWorker, ThumbnailView as Thumbnail, TokenView as Token,
};
use imageapi_core::domain::TierLimits;

use crate::api::{
    FailedJob, Image, ImageDetail, ImagePage, ImageQuery, Link, Queue, ThumbnailStatus, Tier, User, VariantView,
};

fn at(day: u32) -> chrono::DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, day, 9, 30, 0).single().expect("valid time")
}

/// The limits of the fixture tiers: basic and premium are limited, enterprise is not, tiny
/// only counts images and storage.
pub fn limits(tier: &str) -> TierLimits {
    let limits = |images, storage, upload, hourly| TierLimits {
        max_images: Some(images),
        max_storage_bytes: Some(storage),
        max_upload_bytes: upload,
        uploads_per_hour: hourly,
    };
    match tier {
        "basic" => limits(100, 1 << 30, Some(10 << 20), Some(60)),
        "premium" => limits(1000, 10 << 30, Some(50 << 20), Some(600)),
        "tiny" => limits(10, 500 << 20, None, None),
        _ => TierLimits::UNLIMITED,
    }
}

/// Bob is well inside premium's limits; carol, moved down to basic, holds more images than
/// it allows and has used up the hour's uploads.
pub fn users() -> Vec<User> {
    let user = |id: &str, name: &str, tier: &str, admin: bool, active: bool, images: u64, hourly: u64| User {
        id: id.to_owned(),
        username: name.to_owned(),
        tier: tier.to_owned(),
        is_active: active,
        is_admin: admin,
        created_at: at(20),
        image_count: images,
        original_bytes: images * 1_500_000,
        thumbnail_bytes: images * 40_000,
        uploads_last_hour: hourly,
        limits: limits(tier),
        tokens: None,
    };
    vec![
        user("01USERADMIN", "admin", "enterprise", true, true, 0, 0),
        user("01USERBOB", "bob", "premium", false, true, 12, 3),
        user("01USERCAROL", "carol", "basic", false, false, 120, 60),
    ]
}

pub fn user_with_tokens() -> User {
    let mut user = users().remove(0);
    user.tokens = Some(vec![
        Token { id: "01TOKEN1".into(), created_at: at(21) },
        Token { id: "01TOKEN2".into(), created_at: at(22) },
    ]);
    user
}

pub fn tiers() -> Vec<Tier> {
    use imageapi_core::image::ExtraFormat::{Avif, Webp};
    let tier = |id: &str, name: &str, heights: Vec<u32>, original, expiring, builtin, users, formats: &[_]| Tier {
        id: id.to_owned(),
        name: name.to_owned(),
        thumbnail_heights: heights,
        original_link: original,
        expiring_links: expiring,
        builtin,
        formats: formats.to_vec(),
        max_images: limits(id).max_images,
        max_storage_bytes: limits(id).max_storage_bytes,
        max_upload_bytes: limits(id).max_upload_bytes,
        uploads_per_hour: limits(id).uploads_per_hour,
        user_count: Some(users),
    };
    vec![
        tier("basic", "Basic", vec![200], false, false, true, 1, &[Webp]),
        tier("premium", "Premium", vec![200, 400], true, false, true, 1, &[Webp, Avif]),
        tier("enterprise", "Enterprise", vec![200, 400], true, true, true, 1, &[Webp, Avif]),
        tier("tiny", "Tiny thumbs", vec![64, 128], false, false, false, 0, &[]),
    ]
}

pub fn images() -> Vec<Image> {
    let thumb = |id: &str, height, width, status, error: Option<&str>| Thumbnail {
        height,
        width,
        status,
        url: format!("http://imageapi.test/api/v1/images/{id}/thumbnails/{height}"),
        error: error.map(str::to_owned),
        formats: Vec::new(),
    };
    vec![
        Image {
            id: "01IMAGEBIRD".into(),
            name: "bird.jpg".into(),
            format: "jpeg".into(),
            width: 6028,
            height: 3391,
            size_bytes: 4_400_000,
            created_at: at(27),
            thumbnails: vec![
                thumb("01IMAGEBIRD", 200, 356, ThumbnailStatus::Ready, None),
                thumb("01IMAGEBIRD", 400, 711, ThumbnailStatus::Pending, None),
            ],
            original_url: Some("http://imageapi.test/api/v1/images/01IMAGEBIRD/original".into()),
            expiring_links: false,
            thumbhash: None,
            sha256: None,
            owner: None,
        },
        Image {
            id: "01IMAGEBROKEN".into(),
            name: "broken.png".into(),
            format: "png".into(),
            width: 800,
            height: 600,
            size_bytes: 20_000,
            created_at: at(26),
            thumbnails: vec![
                thumb("01IMAGEBROKEN", 200, 267, ThumbnailStatus::Failed, Some("corrupt image data")),
                thumb("01IMAGEBROKEN", 400, 533, ThumbnailStatus::Failed, Some("corrupt image data")),
            ],
            original_url: Some("http://imageapi.test/api/v1/images/01IMAGEBROKEN/original".into()),
            expiring_links: false,
            thumbhash: None,
            sha256: None,
            owner: None,
        },
    ]
}

/// A live link of the bird, `expires_in` seconds from `now`.
fn link(id: &str, variant: VariantView, now: chrono::DateTime<Utc>, expires_in: i64) -> Link {
    Link {
        id: id.into(),
        url: None,
        image_id: "01IMAGEBIRD".into(),
        variant,
        created_at: now - chrono::Duration::seconds(60),
        expires_at: now + chrono::Duration::seconds(expires_in),
        expires_in,
        owner: Some("01USERBOB".into()),
        owner_username: Some("bob".into()),
    }
}

pub fn links(now: chrono::DateTime<Utc>) -> Vec<Link> {
    vec![
        link("01LINKA", VariantView::Height(400), now, 245),
        link("01LINKB", VariantView::Named("original".into()), now, 7300),
    ]
}

fn worker(name: &str, heartbeat_age_secs: i64, jobs: Vec<QueueJob>, problem: Option<&str>) -> QueueWorker {
    QueueWorker {
        name: name.into(),
        last_heartbeat: at(27) - chrono::Duration::seconds(heartbeat_age_secs),
        heartbeat_age_secs,
        jobs,
        status: if problem.is_some() { "misconfigured" } else { "ok" }.into(),
        problem: problem.map(str::to_owned),
    }
}

pub fn queue() -> Queue {
    Queue {
        mode: "redis".into(),
        pending: 7,
        running: 2,
        done: 1234,
        failed: 1,
        undelivered: 0,
        throughput_per_minute: 42,
        workers: vec![
            worker(
                "host-a-101",
                1,
                vec![QueueJob { job: "01JOBRUN".into(), image_id: Some("01IMAGEBIRD".into()) }],
                None,
            ),
            worker("host-b-202", 40, vec![], None),
            worker(
                "host-c-303",
                2,
                vec![],
                Some("this worker's blob store (directory /srv/blobs) has no store marker"),
            ),
        ],
        failed_jobs: vec![FailedJob {
            job: "01JOBFAILED".into(),
            image_id: Some("01IMAGEBROKEN".into()),
            heights: vec![200, 400],
            reason: "AbortError: blob store: disk full".into(),
            attempts: 5,
            failed_at: Some(at(27)),
        }],
    }
}

/// Bob's images, as the first (and only) page.
pub fn bobs_images() -> Action {
    Action::Loaded(Loaded::Images {
        query: ImageQuery::from_filter("01USERBOB", ""),
        cursor: None,
        result: Ok(ImagePage { results: images(), next: None }),
    })
}

/// The admin detail of the bird.
pub fn bird_detail(now: chrono::DateTime<Utc>) -> ImageDetail {
    ImageDetail {
        image: images().remove(0),
        owner_username: "bob".into(),
        owner_tier: "premium".into(),
        links: vec![Link { owner: None, owner_username: None, ..link("01LINKA", VariantView::Height(400), now, 245) }],
    }
}

/// A 200×100 thumbnail: the left half red, the right half blue.
pub fn two_colour() -> image::DynamicImage {
    let picture =
        image::RgbImage::from_fn(
            200,
            100,
            |x, _| {
                if x < 100 {
                    image::Rgb([255, 0, 0])
                } else {
                    image::Rgb([0, 0, 255])
                }
            },
        );
    image::DynamicImage::ImageRgb8(picture)
}
