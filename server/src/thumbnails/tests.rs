use bytes::Bytes;
use imageapi_core::domain::{TierId, UserId, Username};
use imageapi_core::image::{ImageFormat, ThumbnailFormat};
use imageapi_core::jobs::{JobReport, ThumbnailOutcome, ThumbnailResult};
use imageapi_shared::store::{FsBlobStore, StoreError};

use super::*;
use crate::repo::{ImageRecord, SharedRepo, UserRecord};

struct Fixture {
    _dir: tempfile::TempDir,
    repo: SharedRepo,
    store: Arc<dyn BlobStore>,
    thumbnails: Thumbnails,
    queue: Arc<dyn JobQueue>,
    // Keeps the embedded queue open (it runs nothing: jobs stay in it).
    _worker: imageapi_queue::embedded::EmbeddedWorker,
}

/// A queue window of 4.
async fn fixture() -> Fixture {
    fixture_with_window(4).await
}

async fn fixture_with_window(window: usize) -> Fixture {
    let dir = tempfile::tempdir().expect("tempdir");
    let settings = crate::repo::RepoSettings {
        database_url: None,
        pool_size: 1,
        sled_dir: dir.path().join("db"),
        sled_cache_bytes: crate::repo::sled::DEFAULT_CACHE_BYTES,
    };
    let repo = crate::repo::open(&settings).await.expect("repo");
    let store: Arc<dyn BlobStore> = Arc::new(FsBlobStore::open(dir.path().join("blobs")).expect("store"));
    let (queue, worker) = imageapi_queue::embedded::queue();
    let queue: Arc<dyn JobQueue> = Arc::new(queue);
    let metrics = ServerMetrics::new().expect("metrics");
    let thumbnails = Thumbnails::new(repo.clone(), store.clone(), queue.clone(), metrics, window);
    Fixture { _dir: dir, repo, store, thumbnails, queue, _worker: worker }
}

async fn user(repo: &SharedRepo, tier: &str) -> UserRecord {
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
    repo.create_user(&user).await.expect("user");
    user
}

fn image(owner: UserId) -> ImageRecord {
    ImageRecord {
        thumbhash: None,
        sha256: None,
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
        thumbhash: None,
        job_id: job.id,
        image_id: job.image_id,
        outcomes: job
            .heights
            .iter()
            .map(|&h| ThumbnailOutcome {
                variant: ThumbnailFormat::Source,
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
    let f = fixture().await;
    let owner = user(&f.repo, "premium").await;
    let job = f.repo.insert_image(&image(owner.id), crate::ids::new_job_id()).await.expect("insert").created().job;
    let job = job.expect("premium has heights");
    assert_eq!(job.heights, vec![200, 400]);
    assert_eq!(f.repo.outbox_jobs(None, 10).await.expect("outbox"), vec![job.clone()]);

    f.thumbnails.apply_reports(vec![ready(&job)]).await.expect("apply");
    assert_eq!(f.repo.outbox_len().await.expect("len"), 0, "the applied job left the outbox");
    assert!(matches!(
        f.repo.thumbnail(job.image_id, 400, ThumbnailFormat::Source).await.expect("read"),
        Some(ThumbState::Ready { .. })
    ));

    let again = f.repo.apply_reports(&[ready(&job)]).await.expect("apply twice").remove(0);
    assert!(!again.was_outstanding, "a repeated report is recognised as such");
}

#[tokio::test]
async fn a_ready_report_for_a_deleted_image_removes_the_orphaned_thumbnail() {
    let f = fixture().await;
    let owner = user(&f.repo, "basic").await;
    let record = image(owner.id);
    let job = f.repo.insert_image(&record, crate::ids::new_job_id()).await.expect("insert").created().job;
    let job = job.expect("basic has 200");
    f.repo.delete_image(record.id).await.expect("delete");
    let key = BlobKey::thumbnail(record.id, 200, ImageFormat::Png, ThumbnailFormat::Source);
    f.store.put(&key, Bytes::from_static(b"thumb")).await.expect("put");

    f.thumbnails.apply_reports(vec![ready(&job)]).await.expect("applying for a deleted image is not an error");

    assert!(matches!(f.store.get(&key).await, Err(StoreError::NotFound(_))));
    assert_eq!(f.repo.outbox_len().await.expect("len"), 0);
}

#[tokio::test]
async fn pending_thumbnails_without_a_job_are_adopted_once() {
    let f = fixture().await;
    let owner = user(&f.repo, "basic").await;
    let record = image(owner.id);
    let job = f.repo.insert_image(&record, crate::ids::new_job_id()).await.expect("insert").created().job;
    assert_eq!(f.thumbnails.adopt_uncovered_pending().await.expect("adopt"), 0, "covered by its upload job");

    // A job lost (as from a database written before the outbox existed).
    let job = job.expect("job");
    f.repo.apply_reports(&[JobReport { outcomes: vec![], ..ready(&job) }]).await.expect("retire without outcomes");
    assert_eq!(f.thumbnails.adopt_uncovered_pending().await.expect("adopt"), 1);
    let adopted = f.repo.outbox_jobs(None, 10).await.expect("outbox");
    assert_eq!(adopted.len(), 1);
    assert_eq!((adopted[0].image_id, adopted[0].heights.clone()), (record.id, vec![200]));
    assert_eq!(f.thumbnails.adopt_uncovered_pending().await.expect("adopt"), 0, "now covered");
}

#[tokio::test]
async fn the_embedded_sink_wants_a_job_only_while_its_image_exists() {
    let f = fixture().await;
    let owner = user(&f.repo, "basic").await;
    let kept = f.repo.insert_image(&image(owner.id), crate::ids::new_job_id()).await.expect("insert").created().job;
    let record = image(owner.id);
    let gone = f.repo.insert_image(&record, crate::ids::new_job_id()).await.expect("insert").created().job;
    f.repo.delete_image(record.id).await.expect("delete");
    let (queue, _worker) = imageapi_queue::embedded::queue();
    let metrics = ServerMetrics::new().expect("metrics");
    let sink = DirectSink(Arc::new(Thumbnails::new(f.repo.clone(), f.store.clone(), Arc::new(queue), metrics, 4)));

    let (kept, gone) = (kept.expect("job"), gone.expect("job"));
    assert!(f.repo.in_outbox(gone.id).await.expect("outbox"), "the deleted image's job is still recorded");
    assert!(sink.is_wanted(&kept).await.expect("ask"), "a live image's job is wanted");
    assert!(!sink.is_wanted(&gone).await.expect("ask"), "a deleted image's job is not, outbox or not");
}

#[tokio::test]
async fn jobs_enter_the_queue_in_turns_per_owner_and_never_beyond_the_window() {
    let f = fixture_with_window(3).await;
    let (heavy, light) = (user(&f.repo, "basic").await, user(&f.repo, "basic").await);
    let mut heavy_jobs = Vec::new();
    for _ in 0..6 {
        let new = f.repo.insert_image(&image(heavy.id), crate::ids::new_job_id()).await.expect("insert").created();
        heavy_jobs.push(new.job.expect("a job"));
    }
    f.thumbnails.submitted(&heavy_jobs).await;
    assert_eq!(f.thumbnails.feed().await.expect("feed"), 3, "the window is full at 3");
    let light_job =
        f.repo.insert_image(&image(light.id), crate::ids::new_job_id()).await.expect("insert").created().job;
    let light_job = light_job.expect("a job");
    f.thumbnails.submitted(std::slice::from_ref(&light_job)).await;

    assert_eq!(f.thumbnails.feed().await.expect("feed"), 0, "no room until a job finishes");
    f.thumbnails.apply_reports(vec![ready(&heavy_jobs[0])]).await.expect("report");
    // (The embedded queue forgets a job when its runner finishes it; none runs here.)
    assert_eq!(f.queue.in_flight().await.expect("count"), 3);

    let view = f.thumbnails.queue_view(chrono::Utc::now()).await.expect("status");
    assert_eq!((view.pending, view.undelivered), (7, 4), "3 in the queue, 4 waiting their turn");
    assert_eq!(f.queue.push(&heavy_jobs[..3]).await.expect("push"), 0, "the first three are in the queue");
}
