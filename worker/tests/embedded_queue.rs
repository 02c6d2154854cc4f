//! The embedded queue end to end: a job pushed into apalis' MemoryStorage reaches the render
//! pool, thumbnails land in a real blob store on disk, and one outcome per height is reported.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use imageapi_shared::domain::ImageId;
use imageapi_shared::jobs::{ThumbnailJob, ThumbnailOutcome, ThumbnailResult};
use imageapi_shared::pipeline::{ImageFormat, Limits};
use imageapi_shared::store::{BlobKey, BlobStore, FsBlobStore};
use imageapi_worker::{embedded, JobContext, OutcomeSink, ThumbnailPool};
use tokio_util::sync::CancellationToken;

#[derive(Default)]
struct Collect(Mutex<Vec<ThumbnailOutcome>>);

#[async_trait]
impl OutcomeSink for Collect {
    async fn report(&self, outcome: ThumbnailOutcome) -> anyhow::Result<()> {
        self.0.lock().map_err(|_| anyhow::anyhow!("poisoned"))?.push(outcome);
        Ok(())
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
    let ctx = Arc::new(JobContext {
        pool: ThumbnailPool::start(2),
        store: store.clone(),
        sink: sink.clone(),
        limits: Limits::default(),
    });
    let (queue, worker) = embedded::queue();
    let shutdown = CancellationToken::new();
    let running = actix_rt::spawn(worker.run(ctx, 2, shutdown.clone()));

    let good = ImageId::from_ulid(ulid::Ulid::new());
    store.put(&BlobKey::original(good), png(300, 100)).await.expect("put");
    let broken = ImageId::from_ulid(ulid::Ulid::new());
    store.put(&BlobKey::original(broken), Bytes::from_static(b"\x89PNG\r\n\x1a\nnot really")).await.expect("put");
    queue.push(ThumbnailJob { image_id: good, format: ImageFormat::Png, heights: vec![50, 20] }).expect("push");
    queue.push(ThumbnailJob { image_id: broken, format: ImageFormat::Png, heights: vec![50] }).expect("push");

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
    let stored = store.get(&BlobKey::thumbnail(good, 50, ImageFormat::Png)).await.expect("thumbnail stored");
    assert_eq!(image::load_from_memory(&stored).expect("decodes").height(), 50);
    let failed = outcomes.iter().find(|o| o.image_id == broken).expect("broken image reported");
    assert!(matches!(&failed.result, ThumbnailResult::Failed { reason } if !reason.is_empty()), "{failed:?}");

    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(10), running).await.expect("worker stops").expect("join");
}

#[actix_rt::test]
async fn a_job_for_a_missing_original_reports_failure_instead_of_retrying_forever() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Arc::new(FsBlobStore::open(dir.path()).expect("store"));
    let sink = Arc::new(Collect::default());
    let ctx =
        Arc::new(JobContext { pool: ThumbnailPool::start(1), store, sink: sink.clone(), limits: Limits::default() });
    let (queue, worker) = embedded::queue();
    let shutdown = CancellationToken::new();
    actix_rt::spawn(worker.run(ctx, 1, shutdown.clone()));

    let gone = ImageId::from_ulid(ulid::Ulid::new());
    queue.push(ThumbnailJob { image_id: gone, format: ImageFormat::Jpeg, heights: vec![200] }).expect("push");
    let outcomes = outcomes_after(&sink, 1).await;
    assert!(matches!(&outcomes[0].result, ThumbnailResult::Failed { reason } if reason.contains("missing")));
    shutdown.cancel();
}
