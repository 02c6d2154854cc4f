use bytes::Bytes;
use imageapi_shared::domain::{TierId, UserId, Username};
use imageapi_shared::jobs::{JobReport, ThumbnailOutcome, ThumbnailResult};
use imageapi_shared::pipeline::ImageFormat;
use imageapi_shared::store::{FsBlobStore, StoreError};

use super::*;
use crate::repo::{ImageRecord, UserRecord};

struct Fixture {
    _dir: tempfile::TempDir,
    repo: Arc<SledRepo>,
    store: Arc<dyn BlobStore>,
    thumbnails: Thumbnails,
    // Keeps the embedded queue open.
    _worker: imageapi_worker::EmbeddedWorker,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().expect("tempdir");
    let repo = Arc::new(SledRepo::open(&dir.path().join("db")).expect("repo"));
    repo.seed_builtin_tiers().expect("seed");
    let store: Arc<dyn BlobStore> = Arc::new(FsBlobStore::open(dir.path().join("blobs")).expect("store"));
    let (queue, worker) = imageapi_worker::embedded::queue();
    let metrics = ServerMetrics::new().expect("metrics");
    let thumbnails = Thumbnails::new(repo.clone(), store.clone(), Arc::new(queue), metrics);
    Fixture { _dir: dir, repo, store, thumbnails, _worker: worker }
}

fn user(repo: &SledRepo, tier: &str) -> UserRecord {
    let user = UserRecord {
        id: UserId::from_ulid(ulid::Ulid::new()),
        username: Username::parse(&format!("u{}", ulid::Ulid::new().to_string().to_lowercase())[..20]).expect("name"),
        password_hash: String::new(),
        tier: TierId::parse(tier).expect("tier"),
        is_active: true,
        is_admin: false,
        created_at: chrono::Utc::now(),
        credentials_version: 0,
    };
    repo.create_user(&user).expect("user");
    user
}

fn image(owner: UserId) -> ImageRecord {
    ImageRecord {
        id: crate::ids::new_image_id(),
        owner,
        name: "a.png".into(),
        format: ImageFormat::Png,
        width: 10,
        height: 10,
        size_bytes: 1,
        created_at: chrono::Utc::now(),
    }
}

fn ready(job: &ThumbnailJob) -> JobReport {
    JobReport {
        job_id: job.id,
        image_id: job.image_id,
        outcomes: job
            .heights
            .iter()
            .map(|&h| ThumbnailOutcome {
                image_id: job.image_id,
                format: job.format,
                requested_height: h,
                result: ThumbnailResult::Ready { width: h, height: h, size_bytes: 5 },
            })
            .collect(),
        worker: "test".into(),
        duration_ms: 1,
    }
}

#[tokio::test]
async fn an_upload_records_its_job_and_the_report_retires_it_once() {
    let f = fixture();
    let owner = user(&f.repo, "premium");
    let (_, job) = f.repo.insert_image(&image(owner.id), crate::ids::new_job_id()).expect("insert");
    let job = job.expect("premium has heights");
    assert_eq!(job.heights, vec![200, 400]);
    assert_eq!(f.repo.outbox_jobs(None, 10).expect("outbox"), vec![job.clone()]);

    f.thumbnails.apply_reports(vec![ready(&job)]).await.expect("apply");
    assert_eq!(f.repo.outbox_len(), 0, "the applied job left the outbox");
    assert!(matches!(f.repo.thumbnail(job.image_id, 400).expect("read"), Some(ThumbState::Ready { .. })));

    let again = f.repo.apply_report(&ready(&job)).expect("apply twice");
    assert!(!again.was_outstanding, "a repeated report is recognised as such");
}

#[tokio::test]
async fn a_ready_report_for_a_deleted_image_removes_the_orphaned_thumbnail() {
    let f = fixture();
    let owner = user(&f.repo, "basic");
    let record = image(owner.id);
    let (_, job) = f.repo.insert_image(&record, crate::ids::new_job_id()).expect("insert");
    let job = job.expect("basic has 200");
    f.repo.delete_image(record.id).expect("delete");
    let key = BlobKey::thumbnail(record.id, 200, ImageFormat::Png);
    f.store.put(&key, Bytes::from_static(b"thumb")).await.expect("put");

    f.thumbnails.apply_reports(vec![ready(&job)]).await.expect("applying for a deleted image is not an error");

    assert!(matches!(f.store.get(&key).await, Err(StoreError::NotFound(_))));
    assert_eq!(f.repo.outbox_len(), 0);
}

#[tokio::test]
async fn pending_thumbnails_without_a_job_are_adopted_once() {
    let f = fixture();
    let owner = user(&f.repo, "basic");
    let record = image(owner.id);
    let (_, job) = f.repo.insert_image(&record, crate::ids::new_job_id()).expect("insert");
    assert_eq!(f.thumbnails.adopt_uncovered_pending().await.expect("adopt"), 0, "covered by its upload job");

    // A job lost (as from a database written before the outbox existed).
    let job = job.expect("job");
    f.repo.apply_report(&JobReport { outcomes: vec![], ..ready(&job) }).expect("retire without outcomes");
    assert_eq!(f.thumbnails.adopt_uncovered_pending().await.expect("adopt"), 1);
    let adopted = f.repo.outbox_jobs(None, 10).expect("outbox");
    assert_eq!(adopted.len(), 1);
    assert_eq!((adopted[0].image_id, adopted[0].heights.clone()), (record.id, vec![200]));
    assert_eq!(f.thumbnails.adopt_uncovered_pending().await.expect("adopt"), 0, "now covered");
}
