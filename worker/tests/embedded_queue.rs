//! The embedded queue end to end: a job pushed into the in-process queue reaches the render
//! pool, thumbnails land in a real blob store on disk, and one outcome per height is reported.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed expectation is the test failing

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use imageapi_core::domain::ImageId;
use imageapi_core::domain::JobId;
use imageapi_core::image::{ImageFormat, Limits, ThumbnailFormat};
use imageapi_core::jobs::{JobReport, ThumbnailJob, ThumbnailOutcome, ThumbnailResult};
use imageapi_core::queue::QueueSnapshot;
use imageapi_queue::embedded;
use imageapi_queue::{JobQueue, OutcomeSink};
use imageapi_shared::store::{BlobKey, BlobStore, FsBlobStore};
use imageapi_worker::{JobContext, ThumbnailPool, WorkerMetrics};
use tokio_util::sync::CancellationToken;

#[derive(Default)]
struct Collect(Mutex<Vec<ThumbnailOutcome>>);

#[async_trait]
impl OutcomeSink for Collect {
    async fn report(&self, report: JobReport) -> anyhow::Result<()> {
        self.0.lock().map_err(|_| anyhow::anyhow!("poisoned"))?.extend(report.outcomes);
        Ok(())
    }
}

fn context(threads: usize, store: Arc<FsBlobStore>, sink: Arc<Collect>) -> Arc<JobContext> {
    context_until(threads, store, sink, CancellationToken::new())
}

fn context_until(
    threads: usize,
    store: Arc<FsBlobStore>,
    sink: Arc<Collect>,
    shutdown: CancellationToken,
) -> Arc<JobContext> {
    Arc::new(JobContext {
        pool: ThumbnailPool::start(threads, &Default::default()),
        store,
        sink,
        limits: Limits::default(),
        worker_name: "test".into(),
        metrics: WorkerMetrics::unregistered(),
        shutdown,
    })
}

fn job(image_id: ImageId, format: ImageFormat, heights: Vec<u32>) -> ThumbnailJob {
    ThumbnailJob {
        id: JobId::from_ulid(ulid::Ulid::new()),
        image_id,
        format,
        heights,
        formats: vec![ThumbnailFormat::Source],
        owner: None,
    }
}

fn png(width: u32, height: u32) -> Bytes {
    let img = image::RgbaImage::from_pixel(width, height, image::Rgba([200, 10, 10, 128]));
    let mut out = std::io::Cursor::new(Vec::new());
    image::DynamicImage::ImageRgba8(img).write_to(&mut out, image::ImageFormat::Png).expect("encode");
    Bytes::from(out.into_inner())
}

async fn outcomes_after(sink: &Collect, n: usize) -> Vec<ThumbnailOutcome> {
    for _ in 0..200 {
        let got = sink.0.lock().expect("lock").clone();
        if got.len() >= n {
            return got;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("expected {n} outcomes, got {:?}", sink.0.lock().expect("lock"));
}

#[actix_rt::test]
async fn a_pushed_job_is_rendered_stored_and_reported_per_height() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Arc::new(FsBlobStore::open(dir.path()).expect("store"));
    let sink = Arc::new(Collect::default());
    let ctx = context(2, store.clone(), sink.clone());
    let (queue, worker) = embedded::queue();
    let shutdown = CancellationToken::new();
    let running = actix_rt::spawn(worker.run(ctx, 2, shutdown.clone()));

    let good = ImageId::from_ulid(ulid::Ulid::new());
    store.put(&BlobKey::original(good), png(300, 100)).await.expect("put");
    let broken = ImageId::from_ulid(ulid::Ulid::new());
    store.put(&BlobKey::original(broken), Bytes::from_static(b"\x89PNG\r\n\x1a\nnot really")).await.expect("put");
    queue
        .push(&[job(good, ImageFormat::Png, vec![50, 20]), job(broken, ImageFormat::Png, vec![50])])
        .await
        .expect("push");

    let outcomes = outcomes_after(&sink, 3).await;
    let ready: Vec<_> = outcomes
        .iter()
        .filter(|o| o.image_id == good)
        .map(|o| match &o.result {
            ThumbnailResult::Ready { width, height, .. } => (o.requested_height, *width, *height),
            other => panic!("expected ready, got {other:?}"),
        })
        .collect();
    assert!(ready.contains(&(50, 150, 50)) && ready.contains(&(20, 60, 20)), "{ready:?}");
    let stored = store
        .get(&BlobKey::thumbnail(good, 50, ImageFormat::Png, ThumbnailFormat::Source))
        .await
        .expect("thumbnail stored");
    assert_eq!(image::load_from_memory(&stored).expect("decodes").height(), 50);
    let failed = outcomes.iter().find(|o| o.image_id == broken).expect("broken image reported");
    assert!(matches!(&failed.result, ThumbnailResult::Failed { reason } if !reason.is_empty()), "{failed:?}");

    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(10), running).await.expect("worker stops").expect("join");
}

/// The queue's snapshot once one job is in the failed list (five attempts, attempt n waiting
/// n seconds: about 10 s), or after 20 s.
async fn after_one_failed(queue: &impl JobQueue) -> QueueSnapshot {
    let mut snapshot = queue.snapshot().await.expect("snapshot");
    for _ in 0..800 {
        if snapshot.failed == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
        snapshot = queue.snapshot().await.expect("snapshot");
    }
    snapshot
}

#[actix_rt::test]
async fn a_job_for_a_missing_original_is_retried_then_listed_failed_without_failing_its_thumbnails() {
    // A missing original says the store is wrong or away, not that the image is bad: no
    // `failed` thumbnails, but retries and then the failed list, for an admin.
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Arc::new(FsBlobStore::open(dir.path()).expect("store"));
    let sink = Arc::new(Collect::default());
    let ctx = context(1, store, sink.clone());
    let (queue, worker) = embedded::queue();
    let shutdown = CancellationToken::new();
    actix_rt::spawn(worker.run(ctx, 1, shutdown.clone()));

    let gone = ImageId::from_ulid(ulid::Ulid::new());
    queue.push(&[job(gone, ImageFormat::Jpeg, vec![200])]).await.expect("push");
    let snapshot = after_one_failed(&queue).await;
    assert_eq!(snapshot.failed, 1, "the job ends in the failed list: {snapshot:?}");
    assert_eq!(snapshot.failed_jobs[0].attempts, 5, "{snapshot:?}");
    assert!(snapshot.failed_jobs[0].reason.contains("not found"), "{snapshot:?}");
    assert!(sink.0.lock().expect("lock").is_empty(), "no outcome is reported for a job whose original is missing");
    shutdown.cancel();
}

#[actix_rt::test]
async fn a_job_failing_every_attempt_is_listed_as_failed_and_an_admin_retry_runs_it_again() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Arc::new(FsBlobStore::open(dir.path()).expect("store"));
    let sink = Arc::new(Collect::default());
    let (queue, worker) = embedded::queue();
    let shutdown = CancellationToken::new();
    actix_rt::spawn(worker.run(context(1, store.clone(), sink.clone()), 1, shutdown.clone()));

    let id = ImageId::from_ulid(ulid::Ulid::new());
    store.put(&BlobKey::original(id), png(40, 40)).await.expect("put");
    // A file where the image's thumbnail folder belongs: every write fails (transiently, as
    // far as the worker can tell).
    let blocker = dir.path().join(BlobKey::thumbnail(id, 20, ImageFormat::Png, ThumbnailFormat::Source).as_str());
    let blocker = blocker.parent().expect("folder");
    std::fs::create_dir_all(blocker.parent().expect("shard")).expect("shard dir");
    std::fs::write(blocker, b"in the way").expect("blocker");
    let failing = job(id, ImageFormat::Png, vec![20]);
    queue.push(std::slice::from_ref(&failing)).await.expect("push");

    let snapshot = after_one_failed(&queue).await;
    assert_eq!((snapshot.failed, snapshot.pending, snapshot.running), (1, 0, 0), "{snapshot:?}");
    let listed = &snapshot.failed_jobs[0];
    assert_eq!((listed.job, listed.attempts), (failing.id, 5), "one attempt and four retries");
    assert!(listed.reason.contains("blob store"), "{}", listed.reason);
    assert!(sink.0.lock().expect("lock").is_empty(), "nothing reported for a job that never finished");
    queue.push(std::slice::from_ref(&failing)).await.expect("push again");
    assert_eq!(queue.snapshot().await.expect("snapshot").pending, 0, "a failed job is not re-queued by delivery");

    std::fs::remove_file(blocker).expect("unblock");
    assert!(queue.retry_failed(failing.id).await.expect("retry"));
    assert!(!queue.retry_failed(failing.id).await.expect("retry"), "no longer failed");
    let outcomes = outcomes_after(&sink, 1).await;
    assert!(matches!(outcomes[0].result, ThumbnailResult::Ready { height: 20, .. }), "{outcomes:?}");
    let snapshot = queue.snapshot().await.expect("snapshot");
    assert_eq!((snapshot.failed, snapshot.done), (0, 1));
    shutdown.cancel();
}

#[actix_rt::test]
async fn a_job_delivered_again_while_the_queue_holds_it_runs_once() {
    // The server's outbox passes re-deliver every unfinished job; the queue skips those it holds.
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Arc::new(FsBlobStore::open(dir.path()).expect("store"));
    let sink = Arc::new(Collect::default());
    let (queue, worker) = embedded::queue();
    let id = ImageId::from_ulid(ulid::Ulid::new());
    store.put(&BlobKey::original(id), png(60, 40)).await.expect("put");
    let once = job(id, ImageFormat::Png, vec![20]);
    // Delivered three times before the worker starts, so all three are held at once.
    for _ in 0..3 {
        queue.push(std::slice::from_ref(&once)).await.expect("push");
    }
    assert_eq!(queue.snapshot().await.expect("snapshot").pending, 1, "held once");

    let shutdown = CancellationToken::new();
    actix_rt::spawn(worker.run(context(2, store, sink.clone()), 2, shutdown.clone()));
    outcomes_after(&sink, 1).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(sink.0.lock().expect("lock").len(), 1, "rendered and reported once");
    let snapshot = queue.snapshot().await.expect("snapshot");
    assert_eq!((snapshot.pending, snapshot.running, snapshot.done), (0, 0, 1), "{snapshot:?}");
    shutdown.cancel();
}

#[actix_rt::test]
async fn shutdown_does_not_wait_for_a_job_between_its_attempts() {
    // A job waiting for its next attempt stops at once; the server's outbox delivers it again
    // at the next start.
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Arc::new(FsBlobStore::open(dir.path()).expect("store"));
    let sink = Arc::new(Collect::default());
    let (queue, worker) = embedded::queue();
    let shutdown = CancellationToken::new();
    let running = actix_rt::spawn(worker.run(context(1, store, sink), 1, shutdown.clone()));
    let missing = ImageId::from_ulid(ulid::Ulid::new());
    queue.push(&[job(missing, ImageFormat::Png, vec![20])]).await.expect("push");
    for _ in 0..200 {
        if queue.snapshot().await.expect("snapshot").running == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Past the first attempt (a missing original fails at once) and into its backoff.
    tokio::time::sleep(Duration::from_millis(300)).await;
    shutdown.cancel();
    tokio::time::timeout(Duration::from_millis(700), running).await.expect("stops during the backoff").expect("join");
    let snapshot = queue.snapshot().await.expect("snapshot");
    assert_eq!((snapshot.pending, snapshot.running, snapshot.failed), (0, 0, 0), "{snapshot:?}");
}

#[actix_rt::test]
async fn a_thumbnail_that_meets_a_full_disk_waits_for_room_and_is_never_failed() {
    let Some(fs) = imageapi_shared::testing::small_fs::SmallFs::mount(8 << 20) else { return };
    let store = Arc::new(FsBlobStore::open(fs.path().join("blobs")).expect("store"));
    let sink = Arc::new(Collect::default());
    let ctx = context(1, store.clone(), sink.clone());
    let id = ImageId::from_ulid(ulid::Ulid::new());
    store.put(&BlobKey::original(id), png(400, 300)).await.expect("the original fits");
    fs.fill_leaving(0);

    let running = actix_rt::spawn({
        let ctx = ctx.clone();
        async move { imageapi_worker::run_job(job(id, ImageFormat::Png, vec![200, 100]), &ctx).await }
    });
    tokio::time::sleep(Duration::from_secs(2)).await;

    assert!(!running.is_finished(), "the job waits for room instead of ending");
    assert!(sink.0.lock().expect("lock").is_empty(), "nothing reported while waiting, least of all `failed`");
    assert_eq!(ctx.metrics.waiting_for_space.get(), 1, "the wait shows in the metrics");
    fs.unfill();
    let finished = tokio::time::timeout(Duration::from_secs(20), running).await.expect("done once there is room");
    finished.expect("join").expect("the job succeeds");
    let outcomes = sink.0.lock().expect("lock").clone();
    assert_eq!(outcomes.len(), 2, "{outcomes:?}");
    assert!(outcomes.iter().all(|o| matches!(o.result, ThumbnailResult::Ready { .. })), "{outcomes:?}");
    let stored =
        store.get(&BlobKey::thumbnail(id, 200, ImageFormat::Png, ThumbnailFormat::Source)).await.expect("written");
    assert_eq!(image::load_from_memory(&stored).expect("a whole PNG").height(), 200);
    assert_eq!(ctx.metrics.waiting_for_space.get(), 0);
}

#[actix_rt::test]
async fn shutdown_ends_the_wait_for_room_with_a_transient_error() {
    let Some(fs) = imageapi_shared::testing::small_fs::SmallFs::mount(8 << 20) else { return };
    let store = Arc::new(FsBlobStore::open(fs.path().join("blobs")).expect("store"));
    let sink = Arc::new(Collect::default());
    let shutdown = CancellationToken::new();
    let ctx = context_until(1, store.clone(), sink.clone(), shutdown.clone());
    let id = ImageId::from_ulid(ulid::Ulid::new());
    store.put(&BlobKey::original(id), png(400, 300)).await.expect("the original fits");
    fs.fill_leaving(0);

    let running = actix_rt::spawn({
        let ctx = ctx.clone();
        async move { imageapi_worker::run_job(job(id, ImageFormat::Png, vec![200]), &ctx).await }
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    shutdown.cancel();

    let ended = tokio::time::timeout(Duration::from_secs(5), running).await.expect("ends at shutdown").expect("join");
    assert!(
        matches!(ended, Err(imageapi_worker::JobError::Store(imageapi_shared::store::StoreError::OutOfSpace { .. }))),
        "a transient error, so the queue delivers the job again: {ended:?}"
    );
    assert!(sink.0.lock().expect("lock").is_empty(), "nothing reported");
}
