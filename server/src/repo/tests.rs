//! Repository rules that are easy to get wrong: ordering, cursors, idempotent outcomes,
//! cascades, tier deletion and reconciliation bookkeeping.

use chrono::Utc;
use imageapi_shared::domain::{Heights, ImageId, JobId, LinkId, TierId, TierName, UserId, Username, Variant};
use imageapi_shared::jobs::{JobReport, ThumbnailOutcome, ThumbnailResult};
use imageapi_shared::pipeline::ImageFormat;

use super::*;

fn repo() -> (tempfile::TempDir, SledRepo) {
    let dir = tempfile::tempdir().expect("tempdir");
    let repo = SledRepo::open(dir.path()).expect("open");
    repo.seed_builtin_tiers().expect("seed");
    (dir, repo)
}

fn user(repo: &SledRepo, name: &str, tier: &str) -> UserRecord {
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
    repo.create_user(&user).expect("create user");
    user
}

fn image(repo: &SledRepo, owner: UserId) -> ImageRecord {
    std::thread::sleep(std::time::Duration::from_millis(2)); // distinct ULID timestamps
    let record = ImageRecord {
        id: ImageId::from_ulid(ulid::Ulid::new()),
        owner,
        name: "x.png".into(),
        format: ImageFormat::Png,
        width: 400,
        height: 200,
        size_bytes: 10,
        created_at: Utc::now(),
    };
    repo.insert_image(&record, JobId::from_ulid(ulid::Ulid::new())).expect("insert");
    record
}

/// Applies one outcome as a report of its own job; returns whether that job was outstanding.
fn apply(repo: &SledRepo, outcome: ThumbnailOutcome) -> Result<Applied, RepoError> {
    repo.apply_report(&JobReport {
        job_id: JobId::from_ulid(ulid::Ulid::new()),
        image_id: outcome.image_id,
        outcomes: vec![outcome],
        worker: "test".into(),
        duration_ms: 1,
    })
}

fn ready(image: ImageId, h: u32) -> ThumbnailOutcome {
    ThumbnailOutcome {
        image_id: image,
        format: ImageFormat::Png,
        requested_height: h,
        result: ThumbnailResult::Ready { width: 2 * h, height: h, size_bytes: 5 },
    }
}

#[test]
fn builtin_tiers_are_seeded_once_and_edits_survive_reseeding() {
    let (_dir, repo) = repo();
    let ids: Vec<_> = repo.tiers().expect("tiers").into_iter().map(|t| t.id.to_string()).collect();
    assert_eq!(ids, ["basic", "enterprise", "premium"]);
    let basic = TierId::parse("basic").expect("id");
    repo.update_tier(&basic, |t| t.name = TierName::parse("Starter").expect("name")).expect("edit");
    repo.seed_builtin_tiers().expect("reseed");
    assert_eq!(repo.tier(&basic).expect("tier").name.as_str(), "Starter");
}

#[test]
fn a_users_images_page_newest_first_with_an_exclusive_cursor() {
    let (_dir, repo) = repo();
    let ann = user(&repo, "ann", "basic");
    let bob = user(&repo, "bob", "basic");
    let ids: Vec<_> = (0..5).map(|_| image(&repo, ann.id).id).collect();
    image(&repo, bob.id);

    let first = repo.user_images(ann.id, None, 2).expect("page");
    assert_eq!(first.iter().map(|i| i.id).collect::<Vec<_>>(), vec![ids[4], ids[3]]);
    let second = repo.user_images(ann.id, Some(ids[3]), 2).expect("page");
    assert_eq!(second.iter().map(|i| i.id).collect::<Vec<_>>(), vec![ids[2], ids[1]]);
    let last = repo.user_images(ann.id, Some(ids[1]), 2).expect("page");
    assert_eq!(last.iter().map(|i| i.id).collect::<Vec<_>>(), vec![ids[0]]);
    assert_eq!(repo.image_count(ann.id).expect("count"), 5);
}

#[test]
fn outcomes_are_idempotent_and_a_ready_thumbnail_stays_ready() {
    let (_dir, repo) = repo();
    let ann = user(&repo, "ann", "basic");
    let img = image(&repo, ann.id);
    assert_eq!(repo.pending_thumbnails().expect("pending").get(&img.id), Some(&vec![200]));

    apply(&repo, ready(img.id, 200)).expect("apply");
    let first = repo.thumbnail(img.id, 200).expect("get");
    apply(&repo, ready(img.id, 200)).expect("apply again");
    assert_eq!(repo.thumbnail(img.id, 200).expect("get"), first, "second apply changes nothing");
    let late_failure = ThumbnailOutcome {
        image_id: img.id,
        format: ImageFormat::Png,
        requested_height: 200,
        result: ThumbnailResult::Failed { reason: "late".into() },
    };
    apply(&repo, late_failure).expect("late");
    assert!(matches!(repo.thumbnail(img.id, 200).expect("get"), Some(ThumbState::Ready { .. })));
    assert!(repo.pending_thumbnails().expect("pending").is_empty());
}

#[test]
fn an_outcome_for_a_deleted_image_is_reported_as_an_orphan() {
    let (_dir, repo) = repo();
    let ann = user(&repo, "ann", "basic");
    let img = image(&repo, ann.id);
    repo.delete_image(img.id).expect("delete");
    assert_eq!(apply(&repo, ready(img.id, 200)).expect("apply").orphans, vec![ready(img.id, 200)]);
    assert!(repo.pending_thumbnails().expect("pending").is_empty(), "pending records go with the image");
    assert_eq!(repo.image_count(ann.id).expect("count"), 0);
}

#[test]
fn deleting_an_image_deletes_its_links() {
    let (_dir, repo) = repo();
    let ann = user(&repo, "ann", "enterprise");
    let img = image(&repo, ann.id);
    let link = LinkRecord {
        id: LinkId::from_ulid(ulid::Ulid::new()),
        owner: ann.id,
        image_id: img.id,
        variant: Variant::Original,
        created_at: Utc::now(),
        expires_at: Utc::now() + chrono::Duration::seconds(300),
    };
    repo.insert_link(&link, &[7; 32]).expect("link");
    assert!(repo.link_by_token_hash(&[7; 32]).expect("lookup").is_some());
    repo.delete_image(img.id).expect("delete");
    assert!(repo.link_by_token_hash(&[7; 32]).expect("lookup").is_none());
    assert!(repo.user_links(ann.id).expect("links").is_empty());
}

#[test]
fn a_link_expires_at_its_second_and_purging_keeps_recently_expired_ones() {
    let (_dir, repo) = repo();
    let ann = user(&repo, "ann", "enterprise");
    let img = image(&repo, ann.id);
    let created = Utc::now();
    let link = LinkRecord {
        id: LinkId::from_ulid(ulid::Ulid::new()),
        owner: ann.id,
        image_id: img.id,
        variant: Variant::Original,
        created_at: created,
        expires_at: created + chrono::Duration::seconds(300),
    };
    assert!(!link.is_expired(created + chrono::Duration::seconds(299)));
    assert!(link.is_expired(created + chrono::Duration::seconds(300)));
    assert_eq!(link.seconds_left(created + chrono::Duration::seconds(100)), 200);
    repo.insert_link(&link, &[1; 32]).expect("link");
    assert_eq!(repo.purge_links_expired_before(link.expires_at).expect("purge"), 0);
    assert_eq!(repo.purge_links_expired_before(link.expires_at + chrono::Duration::seconds(1)).expect("purge"), 1);
    assert!(repo.link_by_token_hash(&[1; 32]).expect("lookup").is_none());
}

#[test]
fn tiers_cannot_be_deleted_while_builtin_or_held() {
    let (_dir, repo) = repo();
    let gold = TierRecord {
        id: TierId::parse("gold").expect("id"),
        name: TierName::parse("Gold").expect("name"),
        thumbnail_heights: Heights::parse(&[100]).expect("heights"),
        original_link: false,
        expiring_links: false,
        builtin: false,
    };
    repo.create_tier(&gold).expect("create");
    assert!(matches!(repo.create_tier(&gold), Err(RepoError::Conflict(_))));
    assert!(matches!(repo.delete_tier(&TierId::parse("basic").expect("id")), Err(RepoError::Conflict(_))));
    let ann = user(&repo, "ann", "gold");
    assert_eq!(repo.tier_user_count(&gold.id).expect("count"), 1);
    assert!(matches!(repo.delete_tier(&gold.id), Err(RepoError::Conflict(_))));
    repo.update_user(ann.id, |u| u.tier = TierId::parse("basic").expect("id")).expect("move");
    assert_eq!(repo.tier_user_count(&gold.id).expect("count"), 0);
    repo.delete_tier(&gold.id).expect("delete unused tier");
    assert!(matches!(repo.tier(&gold.id), Err(RepoError::NotFound)));
}

#[test]
fn tier_changes_queue_the_affected_users_for_reconciliation() {
    let (_dir, repo) = repo();
    let ann = user(&repo, "ann", "basic");
    let bob = user(&repo, "bob", "premium");
    let queued =
        |repo: &SledRepo| repo.reconcile_queue().expect("queue").into_iter().map(|(u, _)| u).collect::<Vec<_>>();
    assert!(queued(&repo).is_empty());
    repo.update_tier(&TierId::parse("basic").expect("id"), |t| {
        t.thumbnail_heights = Heights::parse(&[100, 200]).expect("h")
    })
    .expect("edit");
    assert_eq!(queued(&repo), vec![ann.id]);
    let (_, generation) = repo.reconcile_queue().expect("queue").remove(0);
    repo.reconcile_done(ann.id, &generation).expect("done");
    assert!(queued(&repo).is_empty());
    repo.update_user(bob.id, |u| u.tier = TierId::parse("enterprise").expect("id")).expect("move");
    assert_eq!(queued(&repo), vec![bob.id]);
}

#[test]
fn a_change_that_arrives_during_reconciliation_is_not_lost() {
    let (_dir, repo) = repo();
    let ann = user(&repo, "ann", "basic");
    repo.update_user(ann.id, |u| u.tier = TierId::parse("premium").expect("id")).expect("move");
    let (_, seen) = repo.reconcile_queue().expect("queue").remove(0);
    // While the reconciler works from `seen`, the user moves again.
    repo.update_user(ann.id, |u| u.tier = TierId::parse("enterprise").expect("id")).expect("move again");
    repo.reconcile_done(ann.id, &seen).expect("done");
    let left: Vec<_> = repo.reconcile_queue().expect("queue").into_iter().map(|(u, _)| u).collect();
    assert_eq!(left, vec![ann.id], "the newer change must still be queued");
}

#[test]
fn an_image_gets_its_owners_current_tier_and_needs_a_live_owner() {
    let (_dir, repo) = repo();
    let ann = user(&repo, "ann", "basic");
    repo.update_user(ann.id, |u| u.tier = TierId::parse("premium").expect("id")).expect("move");
    let img = image(&repo, ann.id);
    assert_eq!(repo.thumbnails(img.id).expect("thumbs").keys().copied().collect::<Vec<_>>(), vec![200, 400]);

    repo.update_user(ann.id, |u| u.is_active = false).expect("deactivate");
    let late = ImageRecord { id: ImageId::from_ulid(ulid::Ulid::new()), ..img.clone() };
    assert!(
        matches!(repo.insert_image(&late, JobId::from_ulid(ulid::Ulid::new())), Err(RepoError::NotFound)),
        "inactive owner"
    );
    repo.delete_user(ann.id).expect("delete");
    assert!(
        matches!(repo.insert_image(&late, JobId::from_ulid(ulid::Ulid::new())), Err(RepoError::NotFound)),
        "deleted owner"
    );
}

#[test]
fn ensure_thumbnails_adds_only_missing_heights() {
    let (_dir, repo) = repo();
    let ann = user(&repo, "ann", "basic");
    let img = image(&repo, ann.id);
    apply(&repo, ready(img.id, 200)).expect("ready");
    let job = repo.ensure_thumbnails(img.id, &[200, 400], JobId::from_ulid(ulid::Ulid::new())).expect("ensure");
    assert_eq!(job.map(|j| j.heights), Some(vec![400]));
    assert_eq!(repo.ensure_thumbnails(img.id, &[200, 400], JobId::from_ulid(ulid::Ulid::new())).expect("ensure"), None);
    assert_eq!(repo.pending_thumbnails().expect("pending").get(&img.id), Some(&vec![400]));
}

#[test]
fn usernames_are_unique_and_users_delete_with_their_tokens() {
    let (_dir, repo) = repo();
    let ann = user(&repo, "ann", "basic");
    let dup = UserRecord { id: UserId::from_ulid(ulid::Ulid::new()), ..ann.clone() };
    assert!(matches!(repo.create_user(&dup), Err(RepoError::Conflict(_))));
    let token = TokenRecord {
        id: imageapi_shared::domain::TokenId::from_ulid(ulid::Ulid::new()),
        user_id: ann.id,
        created_at: Utc::now(),
    };
    repo.insert_token(&token, &[9; 32]).expect("token");
    assert_eq!(repo.user_tokens(ann.id).expect("tokens").len(), 1);
    repo.delete_user(ann.id).expect("delete");
    assert!(repo.token_by_hash(&[9; 32]).expect("lookup").is_none());
    assert!(repo.user_by_name("ann").expect("lookup").is_none());
    assert_eq!(repo.tier_user_count(&TierId::parse("basic").expect("id")).expect("count"), 0);
}
