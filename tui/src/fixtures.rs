//! Fixture data for the state and rendering tests.

use chrono::{TimeZone, Utc};
use serde_json::json;

use crate::action::{Action, Loaded};
use crate::api::{
    FailedJob, Image, ImageDetail, ImageLink, ImagePage, ImageQuery, Link, Queue, QueueJob, QueueWorker, Thumbnail,
    Tier, Token, User,
};

fn at(day: u32) -> chrono::DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, day, 9, 30, 0).single().expect("valid time")
}

pub fn users() -> Vec<User> {
    let user = |id: &str, name: &str, tier: &str, admin: bool, active: bool, images: u64| User {
        id: id.to_owned(),
        username: name.to_owned(),
        tier: tier.to_owned(),
        is_active: active,
        is_admin: admin,
        created_at: at(20),
        image_count: images,
        original_bytes: images * 1_500_000,
        thumbnail_bytes: images * 40_000,
        tokens: None,
    };
    vec![
        user("01USERADMIN", "admin", "enterprise", true, true, 0),
        user("01USERBOB", "bob", "premium", false, true, 12),
        user("01USERCAROL", "carol", "basic", false, false, 3),
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
    let tier = |id: &str, name: &str, heights: Vec<u32>, original, expiring, builtin, users| Tier {
        id: id.to_owned(),
        name: name.to_owned(),
        thumbnail_heights: heights,
        original_link: original,
        expiring_links: expiring,
        builtin,
        user_count: Some(users),
    };
    vec![
        tier("basic", "Basic", vec![200], false, false, true, 1),
        tier("premium", "Premium", vec![200, 400], true, false, true, 1),
        tier("enterprise", "Enterprise", vec![200, 400], true, true, true, 1),
        tier("tiny", "Tiny thumbs", vec![64, 128], false, false, false, 0),
    ]
}

pub fn images() -> Vec<Image> {
    let thumb = |height, width, status: &str, error: Option<&str>| Thumbnail {
        height,
        width,
        status: status.to_owned(),
        error: error.map(str::to_owned),
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
            thumbnails: vec![thumb(200, 356, "ready", None), thumb(400, 711, "pending", None)],
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
                thumb(200, 267, "failed", Some("corrupt image data")),
                thumb(400, 533, "failed", Some("corrupt image data")),
            ],
        },
    ]
}

pub fn links(now: chrono::DateTime<Utc>) -> Vec<Link> {
    vec![
        Link {
            id: "01LINKA".into(),
            image_id: "01IMAGEBIRD".into(),
            variant: json!(400),
            expires_at: now + chrono::Duration::seconds(245),
            owner_username: Some("bob".into()),
        },
        Link {
            id: "01LINKB".into(),
            image_id: "01IMAGEBIRD".into(),
            variant: json!("original"),
            expires_at: now + chrono::Duration::seconds(7300),
            owner_username: Some("bob".into()),
        },
    ]
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
            QueueWorker {
                name: "host-a-101".into(),
                heartbeat_age_secs: 1,
                jobs: vec![QueueJob { job: "01JOBRUN".into(), image_id: Some("01IMAGEBIRD".into()) }],
                problem: None,
            },
            QueueWorker { name: "host-b-202".into(), heartbeat_age_secs: 40, jobs: vec![], problem: None },
            QueueWorker {
                name: "host-c-303".into(),
                heartbeat_age_secs: 2,
                jobs: vec![],
                problem: Some("this worker's blob store (directory /srv/blobs) has no store marker".into()),
            },
        ],
        failed_jobs: vec![FailedJob {
            job: "01JOBFAILED".into(),
            image_id: Some("01IMAGEBROKEN".into()),
            reason: "AbortError: blob store: disk full".into(),
            attempts: 5,
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
        links: vec![ImageLink {
            id: "01LINKA".into(),
            variant: json!(400),
            expires_at: now + chrono::Duration::seconds(245),
        }],
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
