//! The cores the pipeline may use right now. A worker runs one render job per render thread; a
//! job may borrow the budget no other job is using, to decode one image on several cores, and
//! gives it back when it is done. So one upload on an idle worker is decoded on every core the
//! worker may use, and a busy worker never runs more CPU-bound threads than that budget: its
//! render threads (`IMAGEAPI_WORKER_THREADS`, by default the machine's cores).

use std::sync::atomic::{AtomicUsize, Ordering};

/// Cores in use by jobs and their helpers, in this process.
static BUSY: AtomicUsize = AtomicUsize::new(0);

/// CPU-bound threads the pipeline may run at once in this process; 0 until set or first used.
static BUDGET: AtomicUsize = AtomicUsize::new(0);

fn cores() -> usize {
    match BUDGET.load(Ordering::Acquire) {
        0 => {
            let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
            // Whoever sets it first wins; a render pool's setting overrides this default.
            let _ = BUDGET.compare_exchange(0, cores, Ordering::AcqRel, Ordering::Acquire);
            BUDGET.load(Ordering::Acquire)
        }
        budget => budget,
    }
}

/// Sets how many CPU-bound threads the pipeline may run at once in this process: a render
/// pool's thread count, so that decoding one image on several cores never exceeds what the
/// operator gave the worker.
pub fn set_thread_budget(threads: usize) {
    BUDGET.store(threads.max(1), Ordering::Release);
}

/// Cores held until dropped.
#[must_use]
pub(crate) struct Lease(usize);

impl Lease {
    pub fn count(&self) -> usize {
        self.0
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        BUSY.fetch_sub(self.0, Ordering::AcqRel);
    }
}

/// The core the calling job runs on: always granted (the job is running already).
pub(crate) fn for_job() -> Lease {
    BUSY.fetch_add(1, Ordering::AcqRel);
    Lease(1)
}

/// Up to `wanted` more cores, as many as are idle right now — possibly none.
pub(crate) fn spare(wanted: usize) -> Lease {
    let mut busy = BUSY.load(Ordering::Acquire);
    loop {
        let take = cores().saturating_sub(busy).min(wanted);
        if take == 0 {
            return Lease(0);
        }
        match BUSY.compare_exchange_weak(busy, busy + take, Ordering::AcqRel, Ordering::Acquire) {
            Ok(_) => return Lease(take),
            Err(now) => busy = now,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spare_cores_are_only_the_idle_ones_and_come_back() {
        let all = cores();
        let job = for_job();
        let spare_now = spare(usize::MAX);
        assert!(spare_now.count() < all, "the job's own core is not spare");
        assert_eq!(spare(usize::MAX).count(), 0, "nothing left once taken");
        drop(spare_now);
        drop(job);
        // Other tests in this process may hold cores; at least none are lost.
        assert!(BUSY.load(Ordering::Acquire) <= all);
    }

    #[test]
    fn a_render_pools_thread_count_caps_what_a_job_may_borrow() {
        set_thread_budget(1);
        let job = for_job();
        assert_eq!(spare(usize::MAX).count(), 0, "a one-thread worker decodes on one core");
        set_thread_budget(3);
        assert_eq!(spare(usize::MAX).count(), 2, "a three-thread worker lends the other two");
        drop(job);
    }
}
