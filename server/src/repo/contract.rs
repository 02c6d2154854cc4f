//! The repository contract: one suite, run on sled (a temporary directory) and on PostgreSQL
//! (a private server of each test's own, or a fresh database on `IMAGEAPI_TEST_POSTGRES_URL`'s
//! server, dropped afterwards; see [`ScratchDb`]).
//! Ordering, cursors, idempotent outcomes, cascades, tier deletion, reconciliation
//! bookkeeping, the outbox, and concurrent writers.

use std::collections::BTreeSet;
use std::sync::Arc;

use chrono::Utc;
use imageapi_core::domain::{
    Formats, Heights, ImageId, JobId, LinkId, TierId, TierLimits, TierName, TokenId, UserId, Username, Variant,
};
use imageapi_core::image::{ExtraFormat, ImageFormat, ThumbnailFormat};
use imageapi_core::jobs::{JobReport, ThumbnailOutcome, ThumbnailResult};
use imageapi_shared::testing::postgres::TestPostgres;

use super::*;

/// A database of its own for one test, on `IMAGEAPI_TEST_POSTGRES_URL`'s server (dropped,
/// with any open connections, when this goes) or on a private server (stopped with it).
struct ScratchDb {
    name: String,
    server: TestPostgres,
}

impl ScratchDb {
    /// `None` where no PostgreSQL can be had (said on stderr; a failure with
    /// `IMAGEAPI_REQUIRE_POSTGRES`).
    async fn create() -> Option<Self> {
        let server = TestPostgres::get()?;
        let name = format!("imageapi_test_{}", ulid::Ulid::new().to_string().to_lowercase());
        let admin = server.admin_url();
        let (client, connection) = tokio_postgres::connect(&admin, tokio_postgres::NoTls)
            .await
            .unwrap_or_else(|e| panic!("PostgreSQL at {admin} (set IMAGEAPI_TEST_POSTGRES_URL): {e}"));
        tokio::spawn(connection);
        client.batch_execute(&format!("CREATE DATABASE {name}")).await.expect("create the test database");
        Some(Self { name, server })
    }

    fn url(&self) -> String {
        let admin = self.server.admin_url();
        let base = admin.rsplit_once('/').map(|(base, _)| base).unwrap_or(&admin);
        format!("{base}/{}", self.name)
    }

    async fn open(&self) -> SharedRepo {
        let settings = RepoSettings {
            database_url: Some(self.url()),
            pool_size: 8,
            sled_dir: std::path::PathBuf::new(),
            sled_cache_bytes: 0,
        };
        open(&settings).await.expect("open PostgreSQL")
    }
}

impl Drop for ScratchDb {
    fn drop(&mut self) {
        let TestPostgres::Existing(admin) = &self.server else {
            return; // A private server goes with everything on it.
        };
        let (name, admin) = (self.name.clone(), admin.clone());
        // Its own thread and runtime: this may run while the test's runtime is going away.
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().ok()?;
            runtime.block_on(async {
                let (client, connection) = tokio_postgres::connect(&admin, tokio_postgres::NoTls).await.ok()?;
                tokio::spawn(connection);
                client.batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).await.ok()
            })
        })
        .join();
        if !matches!(dropped, Ok(Some(()))) {
            eprintln!("could not drop the test database {}", self.name);
        }
    }
}

async fn sled_repo() -> (tempfile::TempDir, SharedRepo) {
    let dir = tempfile::tempdir().expect("tempdir");
    let settings = RepoSettings {
        database_url: None,
        pool_size: 1,
        sled_dir: dir.path().join("db"),
        sled_cache_bytes: sled::DEFAULT_CACHE_BYTES,
    };
    let repo = open(&settings).await.expect("open sled");
    (dir, repo)
}

/// Each test, once per backend.
macro_rules! contract {
    ($($test:ident),+ $(,)?) => {
        mod on_sled {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    let (_dir, repo) = super::sled_repo().await;
                    super::$test(repo).await;
                }
            )+
        }
        mod on_postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    let Some(db) = super::ScratchDb::create().await else { return };
                    let repo = db.open().await;
                    super::$test(repo.clone()).await;
                    repo.close(std::time::Duration::from_secs(5));
                }
            )+
        }
    };
}

contract!(
    builtin_tiers_are_seeded_once_and_edits_survive_reseeding,
    tier_formats_round_trip_through_create_and_edit_and_edits_queue_the_holders,
    a_users_images_page_newest_first_with_an_exclusive_cursor,
    outcomes_are_idempotent_and_a_ready_thumbnail_stays_ready,
    an_outcome_for_a_deleted_image_is_reported_as_an_orphan,
    deleting_an_image_deletes_its_links,
    an_expired_link_leaves_lists_at_its_second_and_its_token_says_expired_until_forgotten,
    live_links_page_newest_first_with_an_exclusive_cursor,
    the_link_cap_counts_live_links_and_holds_under_racing_creations,
    the_last_active_admin_cannot_lose_their_rights,
    two_admins_demoting_each_other_at_once_leave_one,
    links_the_grant_no_longer_covers_are_revoked,
    tiers_cannot_be_deleted_while_builtin_or_held,
    tier_changes_queue_the_affected_users_for_reconciliation,
    a_change_that_arrives_during_reconciliation_is_not_lost,
    an_image_gets_its_owners_current_tier_and_needs_a_live_owner,
    ensure_thumbnails_adds_only_missing_heights,
    each_format_of_a_thumbnail_is_a_variant_of_its_own,
    usernames_are_unique_and_users_delete_with_their_tokens,
    user_edits_bump_the_credentials_version_only_for_a_new_password,
    the_outbox_holds_each_job_until_its_report_and_pages_in_order,
    jobs_of_deleted_images_are_retired_and_uncovered_pending_adopted_once,
    thumbnail_states_of_a_page_come_in_one_call,
    the_store_marker_is_kept,
    concurrent_uploads_of_one_user_all_land_and_are_counted,
    usage_follows_uploads_thumbnails_and_deletes,
    usage_stays_exact_when_reports_race_with_deletes,
    browsing_filters_by_owner_name_and_time_and_pages_through_all,
    a_browse_reads_a_bounded_number_of_records_per_call,
);

async fn user(repo: &dyn Repo, name: &str, tier: &str) -> UserRecord {
    let user = UserRecord {
        id: UserId::from_ulid(ulid::Ulid::new()),
        username: Username::parse(name).expect("name"),
        password_hash: "x".into(),
        tier: TierId::parse(tier).expect("tier"),
        is_active: true,
        is_admin: false,
        created_at: Utc::now(),
        credentials_version: 0,
    };
    repo.create_user(&user).await.expect("create user");
    user
}

/// A usage's counts: images, original bytes, thumbnail bytes.
fn counts(usage: Usage) -> (u64, u64, u64) {
    (usage.images, usage.original_bytes, usage.thumbnail_bytes)
}

fn image_record(owner: UserId) -> ImageRecord {
    ImageRecord {
        thumbhash: None,
        sha256: None,
        id: crate::ids::new_image_id(),
        owner,
        name: "x.png".into(),
        format: ImageFormat::Png,
        width: 400,
        height: 200,
        size_bytes: 10,
        created_at: Utc::now(),
    }
}

async fn image(repo: &dyn Repo, owner: UserId) -> ImageRecord {
    let record = image_record(owner);
    repo.insert_image(&record, crate::ids::new_job_id()).await.expect("insert");
    record
}

fn id(raw: &str) -> TierId {
    TierId::parse(raw).expect("tier id")
}

fn move_to(tier: &str) -> UserEdit {
    UserEdit { tier: Some(id(tier)), ..UserEdit::default() }
}

/// Applies one outcome as a report of its own job.
async fn apply(repo: &dyn Repo, outcome: ThumbnailOutcome) -> RepoResult<Applied> {
    let report = JobReport {
        thumbhash: None,
        job_id: JobId::from_ulid(ulid::Ulid::new()),
        image_id: outcome.image_id,
        outcomes: vec![outcome],
        worker: "test".into(),
        duration_ms: 1,
    };
    Ok(repo.apply_reports(&[report]).await?.remove(0))
}

fn ready(image: ImageId, h: u32) -> ThumbnailOutcome {
    ThumbnailOutcome {
        variant: ThumbnailFormat::Source,
        image_id: image,
        format: ImageFormat::Png,
        requested_height: h,
        result: ThumbnailResult::Ready { width: 2 * h, height: h, size_bytes: 5 },
    }
}

/// The heights of an image whose source-format thumbnail is still pending.
async fn pending(repo: &dyn Repo, image: ImageId) -> Vec<u32> {
    let mut states = repo.thumbnails_of_images(&[image]).await.expect("thumbnails");
    let states = states.remove(&image).unwrap_or_default();
    states.into_iter().filter(|((_, f), s)| f.is_source() && *s == ThumbState::Pending).map(|((h, _), _)| h).collect()
}

fn link_to(owner: UserId, image: ImageId, variant: Variant, seconds: i64) -> LinkRecord {
    let now = Utc::now();
    LinkRecord {
        id: LinkId::from_ulid(ulid::Ulid::new()),
        owner,
        image_id: image,
        variant,
        created_at: now,
        expires_at: now + chrono::Duration::seconds(seconds),
    }
}

async fn builtin_tiers_are_seeded_once_and_edits_survive_reseeding(repo: SharedRepo) {
    let ids: Vec<_> = repo.tiers().await.expect("tiers").into_iter().map(|t| t.id.to_string()).collect();
    assert_eq!(ids, ["basic", "enterprise", "premium"]);
    let edit = TierEdit { name: Some(TierName::parse("Starter").expect("name")), ..TierEdit::default() };
    repo.update_tier(&id("basic"), &edit).await.expect("edit");
    repo.seed_builtin_tiers().await.expect("reseed");
    let basic = repo.tier(&id("basic")).await.expect("tier");
    assert_eq!(basic.name.as_str(), "Starter");
    assert_eq!(basic.thumbnail_heights.iter().map(|h| h.get()).collect::<Vec<_>>(), vec![200]);
    assert!(basic.builtin && !basic.original_link && !basic.expiring_links);
}

fn formats(names: &[&str]) -> Formats {
    Formats::parse(names).expect("formats")
}

async fn tier_formats_round_trip_through_create_and_edit_and_edits_queue_the_holders(repo: SharedRepo) {
    let repo = repo.as_ref();
    let seeded: Vec<_> =
        repo.tiers().await.expect("tiers").into_iter().map(|t| (t.id.to_string(), t.formats)).collect();
    assert_eq!(
        seeded,
        [
            ("basic".to_owned(), formats(&["webp"])),
            ("enterprise".to_owned(), formats(&["webp", "avif"])),
            ("premium".to_owned(), formats(&["webp", "avif"]))
        ]
    );
    let gold = TierRecord {
        id: id("gold"),
        name: TierName::parse("Gold").expect("name"),
        thumbnail_heights: Heights::parse(&[100]).expect("heights"),
        original_link: false,
        expiring_links: false,
        builtin: false,
        formats: formats(&["avif"]),
        limits: TierLimits::UNLIMITED,
    };
    repo.create_tier(&gold).await.expect("create");
    let read = repo.tier(&gold.id).await.expect("read back");
    assert_eq!(read, gold);
    assert!(read.grants_format(ExtraFormat::Avif.into()) && !read.grants_format(ExtraFormat::Webp.into()));
    let ann = user(repo, "ann", "gold").await;
    let edit = TierEdit { formats: Some(formats(&["avif", "webp"])), ..TierEdit::default() };
    let edited = repo.update_tier(&gold.id, &edit).await.expect("edit");
    assert_eq!(edited.formats, formats(&["webp", "avif"]));
    assert_eq!(repo.tier(&gold.id).await.expect("tier").formats, formats(&["webp", "avif"]));
    let queued: Vec<_> = repo.reconcile_queue().await.expect("queue").into_iter().map(|e| e.user).collect();
    assert_eq!(queued, vec![ann.id], "a change of formats reaches the holders' images like one of heights");
    let rename = TierEdit { name: Some(TierName::parse("Golden").expect("name")), ..TierEdit::default() };
    assert_eq!(repo.update_tier(&gold.id, &rename).await.expect("rename").formats, formats(&["webp", "avif"]));
    let none = TierEdit { formats: Some(Formats::default()), ..TierEdit::default() };
    repo.update_tier(&id("basic"), &none).await.expect("edit a builtin");
    repo.seed_builtin_tiers().await.expect("reseed");
    assert_eq!(repo.tier(&id("basic")).await.expect("tier").formats, Formats::default(), "the edit survives");
}

/// Tiers as a version from before formats left them: `basic` edited (renamed), `gold` custom,
/// the other builtins seeded. Opened now, builtins get their formats and `gold` none; an
/// edit made afterwards survives reopening.
async fn tiers_from_before_formats_migrate(
    open_again: impl Fn() -> futures_util::future::BoxFuture<'static, SharedRepo>,
) {
    let repo = open_again().await;
    let by_id = |tiers: Vec<TierRecord>| tiers.into_iter().map(|t| (t.id.to_string(), t)).collect::<BTreeMap<_, _>>();
    let tiers = by_id(repo.tiers().await.expect("tiers"));
    assert_eq!(tiers.keys().collect::<Vec<_>>(), ["basic", "enterprise", "gold", "premium"]);
    assert_eq!(tiers["basic"].formats, formats(&["webp"]));
    assert_eq!(tiers["basic"].name.as_str(), "Starter", "the old edit is kept");
    assert_eq!(tiers["premium"].formats, formats(&["webp", "avif"]));
    assert_eq!(tiers["enterprise"].formats, formats(&["webp", "avif"]));
    assert_eq!(tiers["gold"].formats, Formats::default(), "a custom tier granted nothing beyond the source");
    assert_eq!(tiers["gold"].thumbnail_heights, Heights::parse(&[100, 300]).expect("h"));
    let none = TierEdit { formats: Some(Formats::default()), ..TierEdit::default() };
    repo.update_tier(&id("basic"), &none).await.expect("edit");
    assert!(repo.close(std::time::Duration::from_secs(5)));
    drop(repo);
    let repo = open_again().await;
    assert_eq!(repo.tier(&id("basic")).await.expect("tier").formats, Formats::default(), "migrated only once");
    assert_eq!(repo.tier(&id("premium")).await.expect("tier").formats, formats(&["webp", "avif"]));
    repo.close(std::time::Duration::from_secs(5));
}

mod from_before_formats {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn on_sled() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("db");
        {
            let db = ::sled::open(&path).expect("an old database");
            let tiers = db.open_tree("tiers").expect("tiers");
            for (id, json) in [
                (
                    "basic",
                    r#"{"id":"basic","name":"Starter","thumbnail_heights":[200],"original_link":false,"expiring_links":false,"builtin":true}"#,
                ),
                (
                    "premium",
                    r#"{"id":"premium","name":"Premium","thumbnail_heights":[200,400],"original_link":true,"expiring_links":false,"builtin":true}"#,
                ),
                (
                    "gold",
                    r#"{"id":"gold","name":"Gold","thumbnail_heights":[100,300],"original_link":false,"expiring_links":true,"builtin":false}"#,
                ),
            ] {
                tiers.insert(id, json).expect("tier");
            }
            db.flush().expect("flush");
        }
        tiers_from_before_formats_migrate(move || {
            let settings = RepoSettings {
                database_url: None,
                pool_size: 1,
                sled_dir: path.clone(),
                sled_cache_bytes: sled::DEFAULT_CACHE_BYTES,
            };
            Box::pin(async move { open(&settings).await.expect("open sled") })
        })
        .await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn on_postgres() {
        let Some(db) = ScratchDb::create().await else { return };
        let (client, connection) = tokio_postgres::connect(&db.url(), tokio_postgres::NoTls).await.expect("connect");
        let connection = tokio::spawn(connection);
        // The schema as it was before formats: migrations 1 to 3.
        client
            .batch_execute(concat!(
                "CREATE TABLE schema_migrations (version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now());",
                include_str!("postgres/migrations/0001_initial.sql"),
                include_str!("postgres/migrations/0002_usage.sql"),
                include_str!("postgres/migrations/0003_link_pruning.sql"),
                "INSERT INTO schema_migrations (version) VALUES (1), (2), (3);",
                "INSERT INTO tiers (id, name, thumbnail_heights, original_link, expiring_links, builtin) VALUES
                     ('basic', 'Starter', '{200}', false, false, true),
                     ('premium', 'Premium', '{200,400}', true, false, true),
                     ('gold', 'Gold', '{100,300}', false, true, false);"
            ))
            .await
            .expect("the old schema");
        drop(client);
        connection.await.ok();
        let db = Arc::new(db);
        let scratch = db.clone();
        tiers_from_before_formats_migrate(move || {
            let db = scratch.clone();
            Box::pin(async move { db.open().await })
        })
        .await;
    }
}

async fn a_users_images_page_newest_first_with_an_exclusive_cursor(repo: SharedRepo) {
    let repo = repo.as_ref();
    let ann = user(repo, "ann", "basic").await;
    let bob = user(repo, "bob", "basic").await;
    let mut ids = Vec::new();
    for _ in 0..5 {
        ids.push(image(repo, ann.id).await.id);
    }
    let bobs = image(repo, bob.id).await;

    let page = |cursor, limit| async move {
        repo.user_images(ann.id, cursor, limit).await.expect("page").iter().map(|i| i.id).collect::<Vec<_>>()
    };
    assert_eq!(page(None, 2).await, vec![ids[4], ids[3]]);
    assert_eq!(page(Some(ids[3]), 2).await, vec![ids[2], ids[1]]);
    assert_eq!(page(Some(ids[1]), 2).await, vec![ids[0]]);
    assert_eq!(repo.usage(ann.id).await.expect("usage").images, 5);
    let everyone = ImageFilter::default();
    let all = repo.find_images(&everyone, None, 10).await.expect("all");
    assert_eq!(
        all.images.iter().map(|i| i.id).collect::<Vec<_>>(),
        vec![bobs.id, ids[4], ids[3], ids[2], ids[1], ids[0]]
    );
    assert_eq!(all.next, None);
    let after = repo.find_images(&everyone, Some(ids[2]), 10).await.expect("all");
    assert_eq!(after.images.iter().map(|i| i.id).collect::<Vec<_>>(), vec![ids[1], ids[0]]);
    assert_eq!(repo.user_image_ids(ann.id).await.expect("ids"), ids);
    let stored = repo.image(ids[0]).await.expect("image");
    assert_eq!((stored.owner, stored.format, stored.width, stored.height), (ann.id, ImageFormat::Png, 400, 200));
}

async fn outcomes_are_idempotent_and_a_ready_thumbnail_stays_ready(repo: SharedRepo) {
    let repo = repo.as_ref();
    let ann = user(repo, "ann", "basic").await;
    let img = image(repo, ann.id).await;
    assert_eq!(pending(repo, img.id).await, vec![200]);

    apply(repo, ready(img.id, 200)).await.expect("apply");
    let first = repo.thumbnail(img.id, 200, ThumbnailFormat::Source).await.expect("get");
    assert_eq!(first, Some(ThumbState::Ready { width: 400, height: 200, size_bytes: 5 }));
    apply(repo, ready(img.id, 200)).await.expect("apply again");
    assert_eq!(
        repo.thumbnail(img.id, 200, ThumbnailFormat::Source).await.expect("get"),
        first,
        "second apply changes nothing"
    );
    let late_failure = ThumbnailOutcome {
        variant: ThumbnailFormat::Source,
        image_id: img.id,
        format: ImageFormat::Png,
        requested_height: 200,
        result: ThumbnailResult::Failed { reason: "late".into() },
    };
    apply(repo, late_failure).await.expect("late");
    assert_eq!(
        repo.thumbnail(img.id, 200, ThumbnailFormat::Source).await.expect("get"),
        first,
        "a ready thumbnail stays ready"
    );
    assert!(pending(repo, img.id).await.is_empty());

    let other = image(repo, ann.id).await;
    let failed = ThumbnailOutcome {
        variant: ThumbnailFormat::Source,
        image_id: other.id,
        format: ImageFormat::Png,
        requested_height: 200,
        result: ThumbnailResult::Failed { reason: "not a PNG".into() },
    };
    apply(repo, failed).await.expect("fail");
    assert_eq!(
        repo.thumbnail(other.id, 200, ThumbnailFormat::Source).await.expect("get"),
        Some(ThumbState::Failed { reason: "not a PNG".into() })
    );
    let mixed = JobReport {
        thumbhash: None,
        job_id: JobId::from_ulid(ulid::Ulid::new()),
        image_id: img.id,
        outcomes: vec![ready(other.id, 200)],
        worker: "test".into(),
        duration_ms: 1,
    };
    assert!(matches!(repo.apply_reports(&[mixed]).await, Err(RepoError::Conflict(_))));
}

async fn an_outcome_for_a_deleted_image_is_reported_as_an_orphan(repo: SharedRepo) {
    let repo = repo.as_ref();
    let ann = user(repo, "ann", "basic").await;
    let img = image(repo, ann.id).await;
    let deleted = repo.delete_image(img.id).await.expect("delete");
    assert_eq!(deleted.id, img.id);
    assert!(matches!(repo.delete_image(img.id).await, Err(RepoError::NotFound)));
    assert_eq!(apply(repo, ready(img.id, 200)).await.expect("apply").orphans, vec![ready(img.id, 200)]);
    assert!(pending(repo, img.id).await.is_empty(), "thumbnail records go with the image");
    assert_eq!(repo.thumbnail(img.id, 200, ThumbnailFormat::Source).await.expect("get"), None);
    assert_eq!(counts(repo.usage(ann.id).await.expect("usage")), (0, 0, 0), "an orphan takes no space");
    assert!(matches!(repo.image(img.id).await, Err(RepoError::NotFound)));
}

async fn deleting_an_image_deletes_its_links(repo: SharedRepo) {
    let repo = repo.as_ref();
    let ann = user(repo, "ann", "enterprise").await;
    let img = image(repo, ann.id).await;
    let link = link_to(ann.id, img.id, Variant::Original, 300);
    repo.insert_link(&link, &[7; 32], CAP).await.expect("link");
    let found = repo.link_by_token_hash(&[7; 32]).await.expect("lookup").expect("found");
    assert_eq!((found.id, found.variant), (link.id, Variant::Original));
    let of_image: Vec<_> = repo.image_links(img.id).await.expect("image links").iter().map(|l| l.id).collect();
    assert_eq!(of_image, vec![link.id]);
    assert_eq!(repo.link(link.id).await.expect("by id").image_id, img.id);
    repo.delete_image(img.id).await.expect("delete");
    assert!(repo.link_by_token_hash(&[7; 32]).await.expect("lookup").is_none());
    assert!(repo.user_links(ann.id).await.expect("links").is_empty());
    assert!(repo.image_links(img.id).await.expect("image links").is_empty());
    assert!(matches!(repo.link(link.id).await, Err(RepoError::NotFound)));
    // A link to an image deleted meanwhile is refused.
    let late = link_to(ann.id, img.id, Variant::Original, 300);
    assert!(matches!(repo.insert_link(&late, &[8; 32], CAP).await, Err(RepoError::NotFound)));
}

/// A cap no contract test reaches, but the one that tests it.
const CAP: usize = 1000;

async fn an_expired_link_leaves_lists_at_its_second_and_its_token_says_expired_until_forgotten(repo: SharedRepo) {
    let repo = repo.as_ref();
    let ann = user(repo, "ann", "enterprise").await;
    let img = image(repo, ann.id).await;
    let link = link_to(ann.id, img.id, Variant::Original, 300);
    let created = link.created_at;
    assert!(!link.is_expired(created + chrono::Duration::seconds(299)));
    assert!(link.is_expired(created + chrono::Duration::seconds(300)));
    assert_eq!(link.seconds_left(created + chrono::Duration::seconds(100)), 200);
    repo.insert_link(&link, &[1; 32], CAP).await.expect("link");
    tokio::time::sleep(std::time::Duration::from_millis(2)).await; // a later id millisecond: newer
    let soon = link_to(ann.id, img.id, Variant::Thumbnail(imageapi_core::domain::Height::parse(200).expect("h")), 100);
    repo.insert_link(&soon, &[2; 32], CAP).await.expect("link");
    let ids = |links: Vec<LinkRecord>| links.iter().map(|l| l.id).collect::<Vec<_>>();
    let now = Utc::now();
    assert_eq!(ids(repo.live_links(now, None, 10).await.expect("live")), vec![soon.id, link.id], "newest first");
    assert_eq!(ids(repo.live_links(soon.expires_at, None, 10).await.expect("live")), vec![link.id], "at its second");
    assert_eq!(ids(repo.user_live_links(ann.id, soon.expires_at, None, 10).await.expect("live")), vec![link.id]);

    assert_eq!(
        repo.prune_expired_links(soon.expires_at - chrono::Duration::milliseconds(1), created).await.expect("prune"),
        (0, 0)
    );
    assert_eq!(repo.prune_expired_links(soon.expires_at, created).await.expect("prune"), (1, 0), "due at its second");
    assert!(repo.link_by_token_hash(&[2; 32]).await.expect("lookup").is_none(), "gone from the links");
    assert!(repo.is_expired_link_token(&[2; 32]).await.expect("tombstone"), "its token says expired");
    assert!(!repo.is_expired_link_token(&[1; 32]).await.expect("tombstone"), "a live link is not expired");
    assert_eq!(ids(repo.user_links(ann.id).await.expect("links")), vec![link.id], "out of the owner's index");
    assert_eq!(repo.prune_expired_links(soon.expires_at, created).await.expect("prune"), (0, 0), "done once");

    let later = link.expires_at + chrono::Duration::seconds(1);
    assert_eq!(repo.prune_expired_links(later, soon.expires_at).await.expect("prune"), (1, 0));
    assert_eq!(repo.prune_expired_links(later, link.expires_at).await.expect("prune"), (0, 1), "the first forgotten");
    assert!(!repo.is_expired_link_token(&[2; 32]).await.expect("tombstone"));
    assert!(repo.is_expired_link_token(&[1; 32]).await.expect("tombstone"));
    assert_eq!(repo.prune_expired_links(later, later).await.expect("prune"), (0, 1));
    assert!(!repo.is_expired_link_token(&[1; 32]).await.expect("tombstone"));
    assert!(matches!(repo.delete_link(link.id).await, Err(RepoError::NotFound)));
    // A revoked link leaves no token behind: 404, not 410.
    let revoked = link_to(ann.id, img.id, Variant::Original, 300);
    repo.insert_link(&revoked, &[3; 32], CAP).await.expect("link");
    repo.delete_link(revoked.id).await.expect("revoke");
    assert_eq!(repo.prune_expired_links(revoked.expires_at, created).await.expect("prune"), (0, 0));
    assert!(!repo.is_expired_link_token(&[3; 32]).await.expect("tombstone"));
}

async fn live_links_page_newest_first_with_an_exclusive_cursor(repo: SharedRepo) {
    let repo = repo.as_ref();
    let ann = user(repo, "ann", "enterprise").await;
    let bob = user(repo, "bob", "enterprise").await;
    let (ann_img, bob_img) = (image(repo, ann.id).await, image(repo, bob.id).await);
    let mut made = Vec::new();
    for n in 0..7u8 {
        let (owner, img) = if n % 3 == 2 { (bob.id, bob_img.id) } else { (ann.id, ann_img.id) };
        // 100 s links, but every third one expired (created long ago).
        let mut link = link_to(owner, img, Variant::Original, 100);
        if n == 3 {
            link.expires_at = Utc::now() - chrono::Duration::seconds(1);
        }
        repo.insert_link(&link, &[n + 1; 32], CAP).await.expect("link");
        made.push(link);
        tokio::time::sleep(std::time::Duration::from_millis(2)).await; // distinct id milliseconds
    }
    let now = Utc::now();
    let newest_first = |owner: Option<UserId>| {
        let mut ids: Vec<LinkId> =
            made.iter().filter(|l| owner.is_none_or(|o| o == l.owner) && !l.is_expired(now)).map(|l| l.id).collect();
        ids.reverse();
        ids
    };
    let mut all = Vec::new();
    let mut cursor = None;
    loop {
        let page = repo.live_links(now, cursor, 2).await.expect("page");
        all.extend(page.iter().map(|l| l.id));
        if page.len() < 2 {
            break;
        }
        cursor = page.last().map(|l| l.id);
    }
    assert_eq!(all, newest_first(None), "every live link once, newest first, the expired one skipped");
    let mut ann_links = Vec::new();
    let mut cursor = None;
    loop {
        let page = repo.user_live_links(ann.id, now, cursor, 2).await.expect("page");
        ann_links.extend(page.iter().map(|l| l.id));
        if page.len() < 2 {
            break;
        }
        cursor = page.last().map(|l| l.id);
    }
    assert_eq!(ann_links, newest_first(Some(ann.id)), "only ann's, newest first");
}

async fn the_link_cap_counts_live_links_and_holds_under_racing_creations(repo: SharedRepo) {
    let ann = user(repo.as_ref(), "ann", "enterprise").await;
    let img = image(repo.as_ref(), ann.id).await;
    let cap = 5;
    let old = LinkRecord {
        expires_at: Utc::now() - chrono::Duration::seconds(1),
        ..link_to(ann.id, img.id, Variant::Original, 100)
    };
    repo.insert_link(&old, &[100; 32], cap).await.expect("an expired link");
    for n in 0..cap as u8 - 1 {
        repo.insert_link(&link_to(ann.id, img.id, Variant::Original, 300 + i64::from(n)), &[n; 32], cap)
            .await
            .expect("under the cap; the expired link does not count");
    }
    let racers: Vec<_> = (0..16u8)
        .map(|n| {
            let repo = repo.clone();
            let link = link_to(ann.id, img.id, Variant::Original, 1000);
            tokio::spawn(async move { repo.insert_link(&link, &[50 + n; 32], cap).await })
        })
        .collect();
    let mut landed = 0;
    let mut refusals = Vec::new();
    for racer in racers {
        match racer.await.expect("join") {
            Ok(()) => landed += 1,
            Err(RepoError::LinkLimit(limit)) => refusals.push(limit),
            Err(e) => panic!("unexpected: {e:?}"),
        }
    }
    assert_eq!(landed, 1, "one place was left");
    assert_eq!(refusals.len(), 15);
    let soonest = repo
        .user_links(ann.id)
        .await
        .expect("links")
        .iter()
        .filter(|l| !l.is_expired(Utc::now()))
        .map(|l| l.expires_at)
        .min();
    for refusal in refusals {
        assert_eq!(refusal.max_live, cap);
        let off = soonest.map(|s| (refusal.next_free_at - s).num_microseconds().unwrap_or(i64::MAX).abs());
        assert!(off.is_some_and(|us| us < 1000), "names when the soonest live link expires (to the ms): {off:?}");
    }
    // Another user has their own places.
    let bob = user(repo.as_ref(), "bob", "enterprise").await;
    let bob_img = image(repo.as_ref(), bob.id).await;
    repo.insert_link(&link_to(bob.id, bob_img.id, Variant::Original, 300), &[200; 32], cap).await.expect("bob's");
}

async fn links_the_grant_no_longer_covers_are_revoked(repo: SharedRepo) {
    let repo = repo.as_ref();
    let ann = user(repo, "ann", "enterprise").await;
    let img = image(repo, ann.id).await;
    let h = |n| Variant::Thumbnail(imageapi_core::domain::Height::parse(n).expect("h"));
    let original = link_to(ann.id, img.id, Variant::Original, 300);
    let small = link_to(ann.id, img.id, h(200), 300);
    let large = link_to(ann.id, img.id, h(400), 300);
    for (link, hash) in [(&original, [1; 32]), (&small, [2; 32]), (&large, [3; 32])] {
        repo.insert_link(link, &hash, CAP).await.expect("link");
    }
    let enterprise = repo.tier(&id("enterprise")).await.expect("tier");
    assert_eq!(repo.revoke_links_not_granted(&ann, &enterprise).await.expect("revoke"), 0, "all granted");
    let narrower = TierRecord {
        formats: Default::default(),
        thumbnail_heights: Heights::parse(&[200]).expect("heights"),
        original_link: false,
        ..enterprise.clone()
    };
    assert_eq!(repo.revoke_links_not_granted(&ann, &narrower).await.expect("revoke"), 2);
    let left: Vec<_> = repo.user_links(ann.id).await.expect("links").iter().map(|l| l.id).collect();
    assert_eq!(left, vec![small.id]);
    let inactive = UserRecord { is_active: false, ..ann.clone() };
    assert_eq!(repo.revoke_links_not_granted(&inactive, &enterprise).await.expect("revoke"), 1);
    assert!(repo.user_links(ann.id).await.expect("links").is_empty());
}

async fn tiers_cannot_be_deleted_while_builtin_or_held(repo: SharedRepo) {
    let repo = repo.as_ref();
    let gold = TierRecord {
        id: id("gold"),
        name: TierName::parse("Gold").expect("name"),
        thumbnail_heights: Heights::parse(&[100, 300]).expect("heights"),
        original_link: false,
        expiring_links: true,
        builtin: false,
        formats: Formats::default(),
        limits: TierLimits::UNLIMITED,
    };
    repo.create_tier(&gold).await.expect("create");
    assert_eq!(repo.tier(&gold.id).await.expect("read back"), gold);
    assert!(matches!(repo.create_tier(&gold).await, Err(RepoError::Conflict(_))));
    assert!(matches!(repo.delete_tier(&id("basic")).await, Err(RepoError::Conflict(_))));
    let ann = user(repo, "ann", "gold").await;
    assert_eq!(repo.tier_user_count(&gold.id).await.expect("count"), 1);
    assert!(matches!(repo.delete_tier(&gold.id).await, Err(RepoError::Conflict(_))));
    repo.update_user(ann.id, &move_to("basic")).await.expect("move");
    assert_eq!(repo.tier_user_count(&gold.id).await.expect("count"), 0);
    repo.delete_tier(&gold.id).await.expect("delete unused tier");
    assert!(matches!(repo.tier(&gold.id).await, Err(RepoError::NotFound)));
    assert!(matches!(repo.delete_tier(&gold.id).await, Err(RepoError::NotFound)));
    assert!(matches!(repo.update_user(ann.id, &move_to("gold")).await, Err(RepoError::NotFound)), "tier gone");
    assert_eq!(repo.user(ann.id).await.expect("user").tier, id("basic"), "a refused edit changes nothing");
}

async fn tier_changes_queue_the_affected_users_for_reconciliation(repo: SharedRepo) {
    let repo = repo.as_ref();
    let ann = user(repo, "ann", "basic").await;
    let bob = user(repo, "bob", "premium").await;
    let queued =
        || async { repo.reconcile_queue().await.expect("queue").into_iter().map(|e| e.user).collect::<Vec<_>>() };
    assert!(queued().await.is_empty());
    let edit = TierEdit { thumbnail_heights: Some(Heights::parse(&[100, 200]).expect("h")), ..TierEdit::default() };
    let edited = repo.update_tier(&id("basic"), &edit).await.expect("edit");
    assert_eq!(edited.thumbnail_heights.iter().map(|h| h.get()).collect::<Vec<_>>(), vec![100, 200]);
    assert_eq!(queued().await, vec![ann.id]);
    let entry = repo.reconcile_queue().await.expect("queue").remove(0);
    repo.reconcile_done(entry).await.expect("done");
    assert!(queued().await.is_empty());
    repo.update_user(bob.id, &move_to("enterprise")).await.expect("move");
    assert_eq!(queued().await, vec![bob.id]);
    assert!(matches!(repo.update_tier(&id("nope"), &edit).await, Err(RepoError::NotFound)));
}

async fn a_change_that_arrives_during_reconciliation_is_not_lost(repo: SharedRepo) {
    let repo = repo.as_ref();
    let ann = user(repo, "ann", "basic").await;
    repo.update_user(ann.id, &move_to("premium")).await.expect("move");
    let seen = repo.reconcile_queue().await.expect("queue").remove(0);
    // While the reconciler works from `seen`, the user moves again.
    repo.update_user(ann.id, &move_to("enterprise")).await.expect("move again");
    repo.reconcile_done(seen).await.expect("done");
    let left: Vec<_> = repo.reconcile_queue().await.expect("queue").into_iter().map(|e| e.user).collect();
    assert_eq!(left, vec![ann.id], "the newer change must still be queued");
}

async fn an_image_gets_its_owners_current_tier_and_needs_a_live_owner(repo: SharedRepo) {
    let repo = repo.as_ref();
    let ann = user(repo, "ann", "basic").await;
    repo.update_user(ann.id, &move_to("premium")).await.expect("move");
    let record = image_record(ann.id);
    let new = repo.insert_image(&record, crate::ids::new_job_id()).await.expect("insert").created();
    assert_eq!(new.tier.id, id("premium"));
    assert_eq!(new.job.map(|j| j.heights), Some(vec![200, 400]));
    assert_eq!(pending(repo, record.id).await, vec![200, 400]);

    repo.update_user(ann.id, &UserEdit { is_active: Some(false), ..UserEdit::default() }).await.expect("deactivate");
    let late = image_record(ann.id);
    assert!(matches!(repo.insert_image(&late, crate::ids::new_job_id()).await, Err(RepoError::NotFound)), "inactive");
    repo.delete_image(record.id).await.expect("delete the image first");
    repo.delete_user(ann.id).await.expect("delete");
    assert!(matches!(repo.insert_image(&late, crate::ids::new_job_id()).await, Err(RepoError::NotFound)), "deleted");
    assert!(matches!(repo.image(late.id).await, Err(RepoError::NotFound)), "nothing half-written");
}

async fn ensure_thumbnails_adds_only_missing_heights(repo: SharedRepo) {
    let repo = repo.as_ref();
    let ann = user(repo, "ann", "basic").await;
    let img = image(repo, ann.id).await;
    let other = image(repo, ann.id).await;
    apply(repo, ready(img.id, 200)).await.expect("ready");
    let gone = ImageId::from_ulid(ulid::Ulid::new());
    let jobs = repo
        .ensure_thumbnails(&[img.id, other.id, gone], &[200, 400], &[ThumbnailFormat::Source])
        .await
        .expect("ensure");
    let made: Vec<_> = jobs.iter().map(|j| (j.image_id, j.heights.clone())).collect();
    assert_eq!(made, vec![(img.id, vec![400]), (other.id, vec![400])], "no job for a missing image");
    assert!(repo
        .ensure_thumbnails(&[img.id, other.id], &[200, 400], &[ThumbnailFormat::Source])
        .await
        .expect("ensure")
        .is_empty());
    assert_eq!(pending(repo, img.id).await, vec![400]);
    assert_eq!(pending(repo, other.id).await, vec![200, 400]);
    for job in &jobs {
        assert!(repo.in_outbox(job.id).await.expect("outbox"), "each job recorded");
    }
}

/// A thumbnail's formats are separate records: made by their own jobs, applied and counted
/// one by one, gone with the image; a report's ThumbHash lands on the image.
async fn each_format_of_a_thumbnail_is_a_variant_of_its_own(repo: SharedRepo) {
    let repo = repo.as_ref();
    let ann = user(repo, "ann", "basic").await;
    let img = image(repo, ann.id).await;
    let avif = ThumbnailFormat::Avif;
    let jobs = repo.ensure_thumbnails(&[img.id], &[200], &[ThumbnailFormat::Source, avif]).await.expect("ensure");
    let made: Vec<_> = jobs.iter().map(|j| (j.heights.clone(), j.formats.clone())).collect();
    assert_eq!(made, vec![(vec![200], vec![avif])], "only the missing format gets a job");
    assert_eq!(repo.thumbnail(img.id, 200, avif).await.expect("get"), Some(ThumbState::Pending));

    let avif_ready = ThumbnailOutcome { variant: avif, ..ready(img.id, 200) };
    let report = JobReport {
        job_id: jobs[0].id,
        image_id: img.id,
        outcomes: vec![avif_ready],
        thumbhash: Some("3OcRJYB4d3h/iIeHeEh3eIhw+j3A".into()),
        worker: "test".into(),
        duration_ms: 1,
    };
    repo.apply_reports(std::slice::from_ref(&report)).await.expect("apply");
    repo.apply_reports(&[report]).await.expect("apply again");
    assert!(matches!(repo.thumbnail(img.id, 200, avif).await.expect("get"), Some(ThumbState::Ready { .. })));
    assert_eq!(repo.thumbnail(img.id, 200, ThumbnailFormat::Source).await.expect("get"), Some(ThumbState::Pending));
    assert_eq!(repo.thumbnail(img.id, 200, ThumbnailFormat::Webp).await.expect("get").is_some(), {
        // Basic grants WebP where the backend seeded it with its formats.
        repo.tier(&id("basic")).await.expect("tier").formats.contains(imageapi_core::image::ExtraFormat::Webp)
    });
    let usage = repo.usage(ann.id).await.expect("usage");
    assert_eq!(usage.thumbnail_bytes, 5, "the variant counted once");
    assert_eq!(repo.image(img.id).await.expect("image").thumbhash.as_deref(), Some("3OcRJYB4d3h/iIeHeEh3eIhw+j3A"));
    let states = repo.thumbnails_of_heights(img.id, &[200]).await.expect("states");
    assert!(states.contains_key(&(200, avif)) && states.contains_key(&(200, ThumbnailFormat::Source)));

    repo.delete_image(img.id).await.expect("delete");
    assert_eq!(counts(repo.usage(ann.id).await.expect("usage")), (0, 0, 0));
    assert_eq!(repo.thumbnail(img.id, 200, avif).await.expect("get"), None);
}

async fn usernames_are_unique_and_users_delete_with_their_tokens(repo: SharedRepo) {
    let repo = repo.as_ref();
    let ann = user(repo, "ann", "basic").await;
    let dup = UserRecord { id: UserId::from_ulid(ulid::Ulid::new()), ..ann.clone() };
    assert!(matches!(repo.create_user(&dup).await, Err(RepoError::Conflict(_))));
    let ghost = UserRecord {
        id: UserId::from_ulid(ulid::Ulid::new()),
        username: Username::parse("ghost").expect("n"),
        tier: id("nope"),
        ..ann.clone()
    };
    assert!(matches!(repo.create_user(&ghost).await, Err(RepoError::NotFound)), "unknown tier");
    let token = TokenRecord { id: TokenId::from_ulid(ulid::Ulid::new()), user_id: ann.id, created_at: Utc::now() };
    repo.insert_token(&token, &[9; 32]).await.expect("token");
    let listed = repo.user_tokens(ann.id).await.expect("tokens");
    assert_eq!(listed.iter().map(|t| (t.id, t.user_id)).collect::<Vec<_>>(), vec![(token.id, ann.id)]);
    assert_eq!(repo.user_by_token(&[9; 32]).await.expect("lookup").map(|u| u.id), Some(ann.id));
    assert!(repo.user_by_token(&[8; 32]).await.expect("lookup").is_none(), "unknown token");
    assert!(matches!(repo.delete_token(ann.id, TokenId::from_ulid(ulid::Ulid::new())).await, Err(RepoError::NotFound)));
    let names: Vec<_> = repo.users().await.expect("users").iter().map(|u| u.username.to_string()).collect();
    assert_eq!(names, ["ann"]);
    repo.delete_user(ann.id).await.expect("delete");
    assert!(repo.user_by_token(&[9; 32]).await.expect("lookup").is_none(), "tokens go with their user");
    assert!(repo.user_by_name("ann").await.expect("lookup").is_none());
    assert!(matches!(repo.user(ann.id).await, Err(RepoError::NotFound)));
    assert!(matches!(repo.delete_user(ann.id).await, Err(RepoError::NotFound)));
    assert_eq!(repo.tier_user_count(&id("basic")).await.expect("count"), 0);
}

async fn user_edits_bump_the_credentials_version_only_for_a_new_password(repo: SharedRepo) {
    let repo = repo.as_ref();
    let ann = user(repo, "ann", "basic").await;
    let admin =
        repo.update_user(ann.id, &UserEdit { is_admin: Some(true), ..UserEdit::default() }).await.expect("edit");
    assert!(admin.is_admin);
    assert_eq!(admin.credentials_version, 0);
    let edit = UserEdit { password_hash: Some("new-hash".into()), ..UserEdit::default() };
    let changed = repo.update_user(ann.id, &edit).await.expect("password");
    assert_eq!((changed.credentials_version, changed.password_hash.as_str()), (1, "new-hash"));
    let stored = repo.user_by_name("ann").await.expect("lookup").expect("found");
    assert_eq!((stored.credentials_version, stored.is_admin, stored.password_hash), (1, true, "new-hash".to_owned()));
    assert!(matches!(repo.update_user(UserId::from_ulid(ulid::Ulid::new()), &edit).await, Err(RepoError::NotFound)));
}

async fn the_outbox_holds_each_job_until_its_report_and_pages_in_order(repo: SharedRepo) {
    let repo = repo.as_ref();
    let ann = user(repo, "ann", "premium").await;
    let mut jobs = Vec::new();
    for _ in 0..3 {
        let new = repo.insert_image(&image_record(ann.id), crate::ids::new_job_id()).await.expect("insert").created();
        jobs.push(new.job.expect("premium has heights"));
    }
    assert_eq!(repo.outbox_jobs(None, 10).await.expect("outbox"), jobs);
    assert_eq!(repo.outbox_jobs(Some(jobs[0].id), 1).await.expect("outbox"), vec![jobs[1].clone()]);
    assert_eq!(repo.outbox_len().await.expect("len"), 3);
    assert_eq!(repo.outbox_ids().await.expect("ids"), jobs.iter().map(|j| j.id).collect());

    let report = |job: &imageapi_core::jobs::ThumbnailJob| JobReport {
        thumbhash: None,
        job_id: job.id,
        image_id: job.image_id,
        outcomes: job.heights.iter().map(|&h| ready(job.image_id, h)).collect(),
        worker: "test".into(),
        duration_ms: 1,
    };
    let applied = repo.apply_reports(&[report(&jobs[0]), report(&jobs[1])]).await.expect("apply");
    assert!(applied.iter().all(|a| a.was_outstanding && a.orphans.is_empty()));
    assert!(!repo.in_outbox(jobs[0].id).await.expect("outbox"));
    assert!(repo.in_outbox(jobs[2].id).await.expect("outbox"));
    assert_eq!(repo.outbox_len().await.expect("len"), 1);
    let again = repo.apply_reports(&[report(&jobs[0])]).await.expect("repeat");
    assert!(!again[0].was_outstanding, "a repeated report is recognised");
    assert!(matches!(
        repo.thumbnail(jobs[1].image_id, 400, ThumbnailFormat::Source).await.expect("get"),
        Some(ThumbState::Ready { .. })
    ));
}

async fn jobs_of_deleted_images_are_retired_and_uncovered_pending_adopted_once(repo: SharedRepo) {
    let repo = repo.as_ref();
    let ann = user(repo, "ann", "basic").await;
    let kept = image(repo, ann.id).await;
    let deleted = image(repo, ann.id).await;
    repo.delete_image(deleted.id).await.expect("delete");
    assert_eq!(repo.retire_jobs_of_deleted_images().await.expect("retire"), 1);
    assert_eq!(repo.retire_jobs_of_deleted_images().await.expect("retire"), 0);
    assert!(repo.adopt_uncovered_pending().await.expect("adopt").is_empty(), "covered by its upload job");

    // The job is lost (as from a database written before the outbox existed).
    let job = repo.outbox_jobs(None, 10).await.expect("outbox").remove(0);
    let empty = JobReport {
        job_id: job.id,
        image_id: kept.id,
        outcomes: vec![],
        thumbhash: None,
        worker: "t".into(),
        duration_ms: 1,
    };
    repo.apply_reports(&[empty]).await.expect("retire without outcomes");
    assert_eq!(repo.outbox_len().await.expect("len"), 0);
    let adopted = repo.adopt_uncovered_pending().await.expect("adopt");
    assert_eq!(adopted.iter().map(|j| (j.image_id, j.heights.clone())).collect::<Vec<_>>(), vec![(kept.id, vec![200])]);
    assert_eq!(repo.outbox_jobs(None, 10).await.expect("outbox"), adopted);
    assert!(repo.adopt_uncovered_pending().await.expect("adopt").is_empty(), "now covered");
}

async fn thumbnail_states_of_a_page_come_in_one_call(repo: SharedRepo) {
    let repo = repo.as_ref();
    let ann = user(repo, "ann", "premium").await;
    let a = image(repo, ann.id).await;
    let b = image(repo, ann.id).await;
    apply(repo, ready(a.id, 400)).await.expect("ready");
    let unknown = ImageId::from_ulid(ulid::Ulid::new());
    let states = repo.thumbnails_of_images(&[a.id, b.id, unknown]).await.expect("states");
    let source = ThumbnailFormat::Source;
    assert_eq!(states[&a.id].get(&(200, source)), Some(&ThumbState::Pending));
    assert!(matches!(states[&a.id].get(&(400, source)), Some(ThumbState::Ready { .. })));
    let heights =
        |states: &ThumbStates| states.keys().filter(|(_, f)| f.is_source()).map(|(h, _)| *h).collect::<Vec<_>>();
    assert_eq!(heights(&states[&b.id]), vec![200, 400]);
    assert!(states.get(&unknown).is_none_or(|s| s.is_empty()));
    let some = repo.thumbnails_of_heights(a.id, &[400, 800]).await.expect("heights");
    assert_eq!(some.keys().map(|(h, _)| *h).collect::<BTreeSet<_>>(), BTreeSet::from([400]));
    assert!(repo.thumbnails_of_images(&[]).await.expect("none").is_empty());
}

async fn the_store_marker_is_kept(repo: SharedRepo) {
    assert_eq!(repo.store_marker().await.expect("read"), None);
    repo.record_store_marker("m-1").await.expect("record");
    assert_eq!(repo.store_marker().await.expect("read").as_deref(), Some("m-1"));
    repo.check().await.expect("check");
}

/// Dozens of uploads of one user at once, with tier edits in between: none lost, none
/// deadlocked, the count exact.
async fn concurrent_uploads_of_one_user_all_land_and_are_counted(repo: SharedRepo) {
    let ann = user(repo.as_ref(), "ann", "basic").await;
    let mut tasks = Vec::new();
    for i in 0..48 {
        let repo = Arc::clone(&repo);
        tasks.push(tokio::spawn(async move {
            if i % 8 == 0 {
                let heights = if i % 16 == 0 { vec![200] } else { vec![200, 300] };
                let edit =
                    TierEdit { thumbnail_heights: Some(Heights::parse(&heights).expect("h")), ..TierEdit::default() };
                repo.update_tier(&id("basic"), &edit).await.expect("edit");
            }
            repo.insert_image(&image_record(ann.id), crate::ids::new_job_id()).await.expect("insert").created().job
        }));
    }
    let mut jobs = 0;
    for task in tasks {
        jobs += usize::from(task.await.expect("task").is_some());
    }
    assert_eq!(jobs, 48);
    assert_eq!(counts(repo.usage(ann.id).await.expect("usage")), (48, 480, 0));
    assert_eq!(repo.user_image_ids(ann.id).await.expect("ids").len(), 48);
    assert_eq!(repo.outbox_len().await.expect("len"), 48);
}

/// Originals count from the upload, a thumbnail once when it becomes ready, and all of it
/// goes with the image.
async fn usage_follows_uploads_thumbnails_and_deletes(repo: SharedRepo) {
    let repo = repo.as_ref();
    let ann = user(repo, "ann", "premium").await;
    let bob = user(repo, "bob", "basic").await;
    assert_eq!(counts(repo.usage(ann.id).await.expect("usage")), (0, 0, 0));
    let first = image(repo, ann.id).await;
    let second = image(repo, ann.id).await;
    image(repo, bob.id).await;
    assert_eq!(counts(repo.usage(ann.id).await.expect("usage")), (2, 20, 0));

    apply(repo, ready(first.id, 200)).await.expect("apply");
    apply(repo, ready(first.id, 200)).await.expect("a repeated report");
    apply(repo, ready(first.id, 400)).await.expect("apply");
    let failed = ThumbnailOutcome {
        variant: ThumbnailFormat::Source,
        image_id: second.id,
        format: ImageFormat::Png,
        requested_height: 200,
        result: ThumbnailResult::Failed { reason: "bad".into() },
    };
    apply(repo, failed).await.expect("apply");
    assert_eq!(counts(repo.usage(ann.id).await.expect("usage")), (2, 20, 10));
    assert_eq!(counts(repo.usage(bob.id).await.expect("usage")), (1, 10, 0));

    repo.delete_image(first.id).await.expect("delete");
    assert_eq!(counts(repo.usage(ann.id).await.expect("usage")), (1, 10, 0));
    repo.delete_image(second.id).await.expect("delete");
    assert_eq!(counts(repo.usage(ann.id).await.expect("usage")), (0, 0, 0));
}

async fn image_named(repo: &dyn Repo, owner: UserId, name: &str, minutes_ago: i64) -> ImageRecord {
    let record = ImageRecord {
        thumbhash: None,
        sha256: None,
        name: name.into(),
        created_at: crate::clock::now_micros() - chrono::Duration::minutes(minutes_ago),
        ..image_record(owner)
    };
    repo.insert_image(&record, crate::ids::new_job_id()).await.expect("insert");
    record
}

/// Every page of a browse, followed to its end with pages of `limit`.
async fn browse_all(repo: &dyn Repo, filter: &ImageFilter, limit: usize) -> Vec<String> {
    let (mut names, mut cursor) = (Vec::new(), None);
    for _ in 0..1000 {
        let page = repo.find_images(filter, cursor, limit).await.expect("browse");
        assert!(page.images.len() <= limit);
        names.extend(page.images.into_iter().map(|i| i.name));
        match page.next {
            Some(next) => cursor = Some(next),
            None => return names,
        }
    }
    panic!("the browse never ended");
}

async fn browsing_filters_by_owner_name_and_time_and_pages_through_all(repo: SharedRepo) {
    let repo = repo.as_ref();
    let ann = user(repo, "ann", "basic").await;
    let bob = user(repo, "bob", "basic").await;
    // Oldest first; created_at goes with the id order, as uploads do.
    image_named(repo, ann.id, "Beach.JPG", 50).await;
    image_named(repo, bob.id, "beach-bob.png", 40).await;
    image_named(repo, ann.id, "cat.png", 30).await;
    image_named(repo, ann.id, "sunny beach.png", 20).await;
    image_named(repo, ann.id, "dog.jpg", 10).await;

    let all = ImageFilter::default();
    assert_eq!(
        browse_all(repo, &all, 2).await,
        ["dog.jpg", "sunny beach.png", "cat.png", "beach-bob.png", "Beach.JPG"]
    );
    let anns = ImageFilter { owner: Some(ann.id), ..ImageFilter::default() };
    assert_eq!(browse_all(repo, &anns, 1).await, ["dog.jpg", "sunny beach.png", "cat.png", "Beach.JPG"]);
    let beaches = ImageFilter::default().with_name("BEACH");
    assert_eq!(browse_all(repo, &beaches, 2).await, ["sunny beach.png", "beach-bob.png", "Beach.JPG"]);
    let anns_beaches = ImageFilter { owner: Some(ann.id), ..ImageFilter::default() }.with_name("beach");
    assert_eq!(browse_all(repo, &anns_beaches, 10).await, ["sunny beach.png", "Beach.JPG"]);
    let now = crate::clock::now_micros();
    let window = ImageFilter {
        uploaded_after: Some(now - chrono::Duration::minutes(45)),
        uploaded_before: Some(now - chrono::Duration::minutes(15)),
        ..ImageFilter::default()
    };
    assert_eq!(browse_all(repo, &window, 2).await, ["sunny beach.png", "cat.png", "beach-bob.png"]);
    let nothing = ImageFilter::default().with_name("zebra");
    assert!(browse_all(repo, &nothing, 2).await.is_empty());
    let page = repo.find_images(&beaches, None, 1).await.expect("page");
    assert_eq!(page.images.len(), 1);
    assert_eq!(page.next, Some(page.images[0].id), "the next page starts after the last result");
}

/// A rare match cannot make one call read every record: past the budget a call stops with a
/// cursor, and following cursors still finds every match.
async fn a_browse_reads_a_bounded_number_of_records_per_call(repo: SharedRepo) {
    let repo = repo.as_ref();
    let ann = user(repo, "ann", "basic").await;
    image_named(repo, ann.id, "needle-old.png", 10).await;
    for _ in 0..SCAN_BUDGET + 5 {
        image(repo, ann.id).await;
    }
    image_named(repo, ann.id, "needle-new.png", 0).await;
    let needles = ImageFilter::default().with_name("needle");
    let first = repo.find_images(&needles, None, 10).await.expect("first");
    assert_eq!(first.images.iter().map(|i| i.name.as_str()).collect::<Vec<_>>(), ["needle-new.png"]);
    assert!(first.next.is_some(), "the budget ran out before the old needle");
    assert_eq!(browse_all(repo, &needles, 10).await, ["needle-new.png", "needle-old.png"]);
}

/// Reports making thumbnails ready while the images are being deleted: whichever comes
/// first, nothing is left counted once every image is gone.
async fn usage_stays_exact_when_reports_race_with_deletes(repo: SharedRepo) {
    let ann = user(repo.as_ref(), "ann", "premium").await;
    let mut images = Vec::new();
    for _ in 0..40 {
        images.push(image(repo.as_ref(), ann.id).await.id);
    }
    let mut tasks = Vec::new();
    for (n, id) in images.into_iter().enumerate() {
        let (reporter, deleter) = (Arc::clone(&repo), Arc::clone(&repo));
        tasks.push(tokio::spawn(async move { apply(reporter.as_ref(), ready(id, 200)).await.map(|_| ()) }));
        tasks.push(tokio::spawn(async move {
            if n % 2 == 0 {
                tokio::task::yield_now().await;
            }
            deleter.delete_image(id).await.map(|_| ())
        }));
    }
    for task in tasks {
        task.await.expect("task").expect("repository call");
    }
    assert_eq!(counts(repo.usage(ann.id).await.expect("usage")), (0, 0, 0));
}

async fn admin(repo: &dyn Repo, name: &str) -> UserRecord {
    let user = user(repo, name, "basic").await;
    repo.update_user(user.id, &UserEdit { is_admin: Some(true), ..UserEdit::default() }).await.expect("make admin")
}

async fn the_last_active_admin_cannot_lose_their_rights(repo: SharedRepo) {
    let repo = repo.as_ref();
    let root = admin(repo, "root").await;
    let last = |r: RepoResult<UserRecord>| matches!(r, Err(RepoError::Conflict(m)) if m.contains("admin"));
    assert!(last(repo.update_user(root.id, &UserEdit { is_admin: Some(false), ..UserEdit::default() }).await));
    assert!(last(repo.update_user(root.id, &UserEdit { is_active: Some(false), ..UserEdit::default() }).await));
    assert!(matches!(repo.delete_user(root.id).await, Err(RepoError::Conflict(_))), "nor be deleted");
    assert!(repo.user(root.id).await.expect("still there").is_admin);
    // Other edits of the last admin go through.
    let edit = UserEdit {
        password_hash: Some("h".into()),
        is_admin: Some(true),
        is_active: Some(true),
        ..UserEdit::default()
    };
    repo.update_user(root.id, &edit).await.expect("a harmless edit");
    // An inactive admin does not count as the one left.
    let dormant = admin(repo, "dormant").await;
    repo.update_user(dormant.id, &UserEdit { is_active: Some(false), ..UserEdit::default() })
        .await
        .expect("deactivate");
    assert!(last(repo.update_user(root.id, &UserEdit { is_admin: Some(false), ..UserEdit::default() }).await));
    // With a second active admin, either may go.
    let second = admin(repo, "second").await;
    repo.update_user(root.id, &UserEdit { is_admin: Some(false), ..UserEdit::default() }).await.expect("demote");
    assert!(matches!(repo.delete_user(second.id).await, Err(RepoError::Conflict(_))), "now the last");
    repo.delete_user(dormant.id).await.expect("an inactive admin may go");
}

async fn two_admins_demoting_each_other_at_once_leave_one(repo: SharedRepo) {
    let active_admins =
        |users: Vec<UserRecord>| users.into_iter().filter(|u| u.is_admin && u.is_active).collect::<Vec<_>>();
    let mut lone: Option<UserRecord> = None;
    for round in 0..10 {
        let a = admin(repo.as_ref(), &format!("alice{round}")).await;
        let b = admin(repo.as_ref(), &format!("bruno{round}")).await;
        // The previous round's survivor steps down, so that a and b are the only admins.
        if let Some(previous) = lone.take() {
            let edit = UserEdit { is_admin: Some(false), ..UserEdit::default() };
            repo.update_user(previous.id, &edit).await.expect("two others remain");
        }
        let removal = |n: i32| {
            if n % 2 == 0 {
                UserEdit { is_admin: Some(false), ..UserEdit::default() }
            } else {
                UserEdit { is_active: Some(false), ..UserEdit::default() }
            }
        };
        let demote = |target: UserId, edit: UserEdit| {
            let repo = repo.clone();
            tokio::spawn(async move { repo.update_user(target, &edit).await })
        };
        let (x, y) = tokio::join!(demote(a.id, removal(round)), demote(b.id, removal(round / 2)));
        let outcomes = [x.expect("join"), y.expect("join")];
        assert_eq!(outcomes.iter().filter(|o| o.is_ok()).count(), 1, "round {round}: one lands: {outcomes:?}");
        assert!(outcomes.iter().any(|o| matches!(o, Err(RepoError::Conflict(_)))), "the other is a conflict");
        let mut left = active_admins(repo.users().await.expect("users"));
        assert_eq!(left.len(), 1, "round {round}: one active admin remains");
        lone = left.pop();
    }
}
