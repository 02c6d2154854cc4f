//! The cores the pipeline may use right now. A worker runs one render job per core; a job may
//! borrow the cores no other job is using, to decode one image on several of them, and gives
//! them back when it is done. So one upload on an idle machine is decoded on every core, and
//! a busy worker never runs more CPU-bound threads than it has cores.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;

/// Cores in use by jobs and their helpers, in this process.
static BUSY: AtomicUsize = AtomicUsize::new(0);

fn cores() -> usize {
    static CORES: OnceLock<usize> = OnceLock::new();
    *CORES.get_or_init(|| std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1))
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
}
