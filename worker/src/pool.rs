//! A pool of render actors on a `SyncArbiter`: CPU-bound work off the async runtime, one
//! thread per core, never more (no oversubscription).
//!
//! A `SyncArbiter` thread that panics is gone for good and later sends fail, so every render
//! runs inside `catch_unwind`: a panicking job becomes a [`RenderError::Panicked`] and the actor
//! lives on to take the next job.
//!
//! Renders side by side stay within a memory budget: each is estimated from its headers (on a
//! blocking thread, like every decoder call) and waits until its share is free. A render that takes longer than the timeout ends its job as
//! [`RenderError::TimedOut`]; the thread finishes it in the background (the upload limits bound
//! how long) and keeps its share of the budget until then.

use std::panic::AssertUnwindSafe;

use std::sync::Arc;
use std::time::Duration;

use actix::{Actor, Addr, Handler, Message, SyncArbiter, SyncContext};
use bytes::Bytes;
use imageapi_core::image::Limits;
use imageapi_core::image::ThumbnailFormat;
use imageapi_shared::pipeline::{render, render_memory_estimate, Rendered, ThumbnailError};
use imageapi_shared::settings::RenderSettings;
use tokio::sync::Semaphore;

#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    /// The image cannot be made into thumbnails (corrupt data, over limits): final.
    #[error(transparent)]
    Image(#[from] ThumbnailError),
    /// The renderer panicked; the pool survived. Final for this job.
    #[error("the thumbnailer crashed on this image: {0}")]
    Panicked(String),
    /// The render took longer than the timeout. Final for this job.
    #[error("rendering took longer than {} s", .0.as_secs())]
    TimedOut(std::time::Duration),
    /// The pool is not running (shutting down).
    #[error("the render pool is unavailable: {0}")]
    Unavailable(String),
}

/// Render these heights, each in these formats, from one original.
#[derive(Message)]
#[rtype(result = "Result<Rendered, RenderError>")]
pub struct Render {
    pub original: Bytes,
    pub heights: Vec<u32>,
    pub formats: Vec<ThumbnailFormat>,
    pub limits: Limits,
    /// Told when a render thread takes the job: the deadline counts from there, not from
    /// the wait for a free thread.
    pub started: Option<tokio::sync::oneshot::Sender<()>>,
}

/// The rendering function; production uses [`render`], tests inject failures.
pub type RenderFn = fn(Bytes, &[u32], &[ThumbnailFormat], &Limits) -> Result<Rendered, ThumbnailError>;

/// Production rendering: the original is handed over, so it is freed right after decoding.
fn render_original(
    original: Bytes,
    heights: &[u32],
    formats: &[ThumbnailFormat],
    limits: &Limits,
) -> Result<Rendered, ThumbnailError> {
    render(original, heights, formats, limits)
}

struct RenderActor {
    render: RenderFn,
}

impl Actor for RenderActor {
    type Context = SyncContext<Self>;
}

impl Handler<Render> for RenderActor {
    type Result = Result<Rendered, RenderError>;

    fn handle(&mut self, mut job: Render, _: &mut SyncContext<Self>) -> Self::Result {
        if let Some(started) = job.started.take() {
            let _ = started.send(());
        }
        let render = self.render;
        std::panic::catch_unwind(AssertUnwindSafe(|| render(job.original, &job.heights, &job.formats, &job.limits)))
            .map_err(|panic| RenderError::Panicked(panic_message(panic.as_ref())))?
            .map_err(RenderError::from)
    }
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "unknown panic".to_owned()
    }
}

/// Handle to the render actors; cheap to clone.
#[derive(Clone)]
pub struct ThumbnailPool {
    addr: Addr<RenderActor>,
    threads: usize,
    /// The memory budget in MiB, one permit each.
    budget: Arc<Semaphore>,
    budget_mib: u32,
    timeout: Duration,
}

/// Budget permits are MiB: a u32 of them covers 4 PiB.
const MIB: u64 = 1024 * 1024;

impl ThumbnailPool {
    /// Starts `threads` render actors. Must be called inside a running actix `System`. The
    /// pipeline may then use `threads` cores in all: a job decodes on several only while
    /// others are idle.
    pub fn start(threads: usize, settings: &RenderSettings) -> Self {
        imageapi_shared::pipeline::set_thread_budget(threads);
        Self::start_with(threads, settings, render_original)
    }

    /// Like [`ThumbnailPool::start`] with another rendering function (tests, benchmarks).
    pub fn start_with(threads: usize, settings: &RenderSettings, render: RenderFn) -> Self {
        let threads = threads.max(1);
        let budget_mib = u32::try_from((settings.memory_budget_bytes() / MIB).max(1)).unwrap_or(u32::MAX);
        Self {
            addr: SyncArbiter::start(threads, move || RenderActor { render }),
            threads,
            budget: Arc::new(Semaphore::new(budget_mib as usize)),
            budget_mib,
            timeout: settings.timeout(),
        }
    }

    pub fn threads(&self) -> usize {
        self.threads
    }

    pub async fn render(
        &self,
        original: Bytes,
        heights: Vec<u32>,
        formats: Vec<ThumbnailFormat>,
        limits: Limits,
    ) -> Result<Rendered, RenderError> {
        // Reading the headers (through the decoders' header readers) is decoding work: never on
        // the async runtime's thread.
        let estimate = {
            let (original, heights, formats) = (original.clone(), heights.clone(), formats.clone());
            tokio::task::spawn_blocking(move || render_memory_estimate(&original, &heights, &formats, &limits))
                .await
                .map_err(|e| RenderError::Unavailable(format!("estimating the render's memory: {e}")))?
        };
        let share = u32::try_from(estimate.div_ceil(MIB)).unwrap_or(u32::MAX).clamp(1, self.budget_mib);
        let permit =
            self.budget.clone().acquire_many_owned(share).await.map_err(|e| RenderError::Unavailable(e.to_string()))?;
        let (started, taken) = tokio::sync::oneshot::channel();
        let sent = self.addr.send(Render { original, heights, formats, limits, started: Some(started) });
        // The share is given back when the actor is done, also if this job stopped waiting.
        let rendering = actix_rt::spawn(async move {
            let result = sent.await;
            drop(permit);
            result
        });
        // Waiting for a free render thread is not rendering. (An error here means the pool
        // dropped the job; the result below says why.)
        let _ = taken.await;
        match tokio::time::timeout(self.timeout, rendering).await {
            Err(_) => Err(RenderError::TimedOut(self.timeout)),
            Ok(Err(e)) => Err(RenderError::Unavailable(e.to_string())),
            Ok(Ok(sent)) => sent.map_err(|e| RenderError::Unavailable(e.to_string()))?,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiny_png() -> Bytes {
        let img = image::RgbImage::from_pixel(40, 20, image::Rgb([10, 200, 30]));
        let mut out = std::io::Cursor::new(Vec::new());
        image::DynamicImage::ImageRgb8(img).write_to(&mut out, image::ImageFormat::Png).expect("encode");
        Bytes::from(out.into_inner())
    }

    fn panics_on_request(
        original: Bytes,
        heights: &[u32],
        formats: &[ThumbnailFormat],
        limits: &Limits,
    ) -> Result<Rendered, ThumbnailError> {
        if original.as_ref() == b"panic" {
            panic!("decoder bug on purpose");
        }
        render(original, heights, formats, limits)
    }

    #[actix_rt::test]
    async fn a_panic_inside_a_render_is_contained_and_the_pool_keeps_working() {
        // One thread: if the panic killed it, every later render would fail.
        let pool = ThumbnailPool::start_with(1, &RenderSettings::default(), panics_on_request);
        for _ in 0..3 {
            let source = vec![ThumbnailFormat::Source];
            let err = pool.render(Bytes::from_static(b"panic"), vec![5], source.clone(), Limits::default()).await;
            match err {
                Err(RenderError::Panicked(msg)) => assert!(msg.contains("decoder bug on purpose"), "{msg}"),
                other => panic!("expected a contained panic, got {:?}", other.map(|r| r.thumbnails.len())),
            }
            let rendered = pool.render(tiny_png(), vec![5], source, Limits::default()).await.expect("pool still alive");
            assert_eq!(rendered.thumbnails[0].height, 5);
        }
    }
}
