//! Free space on the disks this server writes to, and the floor below which uploads are
//! refused before they are read.
//!
//! sled 0.34 does not survive meeting a full disk in one piece: after its first failed write
//! it refuses every write until the database is reopened (see `repo::sled`). So the server
//! keeps a floor (`IMAGEAPI_MIN_FREE_BYTES`) of free space on the filesystems of its database
//! and of its blob directory: an upload that would take the free space below it answers 507
//! at once, and what stays below the floor is room for thumbnails and small metadata writes.
//!
//! [`DiskSpace`] samples the free space (`statvfs`) every second on a blocking thread; between
//! samples it counts what uploads reserved and wrote, so sixteen concurrent uploads cannot all
//! pass a check made against the same stale sample. Stores not on a local filesystem (S3,
//! PostgreSQL) are not watched.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use prometheus::{IntGauge, IntGaugeVec};
use tokio_util::sync::CancellationToken;

/// How often the free space is measured.
const SAMPLE_EVERY: Duration = Duration::from_secs(1);
/// A refusal measures again first when the last sample is older than this, so uploads resume
/// as soon as there is room, not a second later.
const FRESH_ENOUGH: Duration = Duration::from_millis(100);

/// A filesystem the server writes to.
#[derive(Debug, Clone)]
pub struct Watched {
    /// What lives there, the metric's label: `metadata` or `blobs`.
    pub role: &'static str,
    pub path: PathBuf,
}

/// The free space below which uploads are refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LowSpace {
    pub free: u64,
    pub floor: u64,
}

/// What the disks look like now, for readiness.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpaceStatus {
    /// Nothing local to watch (S3 and PostgreSQL).
    NotWatched,
    Ok,
    Low(LowSpace),
}

#[derive(Debug, Default)]
struct Tally {
    /// The smallest free space of the watched filesystems at the last sample; `None` before
    /// the first, or when it could not be measured (then nothing is refused on its account).
    sampled: Option<u64>,
    /// Bytes reserved by uploads in progress.
    reserved: u64,
    /// Bytes written by uploads since the last sample (which does not show them yet).
    written: u64,
    /// When the last sample was taken.
    at: Option<Instant>,
}

impl Tally {
    fn free(&self) -> Option<u64> {
        self.sampled.map(|free| free.saturating_sub(self.reserved).saturating_sub(self.written))
    }
}

/// How the free space is measured: `statvfs` of each watched path, or a stand-in in tests.
type Probe = Box<dyn Fn(&Watched) -> std::io::Result<u64> + Send + Sync>;

pub struct DiskSpace {
    watched: Vec<Watched>,
    floor: u64,
    /// Room for one upload of the largest size above the floor: below `floor + headroom` the
    /// disk counts as low (such an upload would be refused).
    headroom: u64,
    probe: Probe,
    tally: Mutex<Tally>,
    gauges: Option<SpaceGauges>,
}

/// Where the measurements are exported: `imageapi_disk_free_bytes{store}` and
/// `imageapi_disk_min_free_bytes` (see [`crate::metrics`]).
pub struct SpaceGauges {
    pub free: IntGaugeVec,
    pub floor: IntGauge,
}

impl DiskSpace {
    /// Watches `watched` with the floor `floor`, measuring once now; `largest_upload` is what
    /// the disk must hold above the floor not to count as low.
    pub fn new(watched: Vec<Watched>, floor: u64, largest_upload: u64, gauges: Option<SpaceGauges>) -> Arc<Self> {
        Self::with_probe(watched, floor, largest_upload, gauges, Box::new(|w| fs2::available_space(&w.path)))
    }

    fn with_probe(
        watched: Vec<Watched>,
        floor: u64,
        headroom: u64,
        gauges: Option<SpaceGauges>,
        probe: Probe,
    ) -> Arc<Self> {
        if let Some(gauges) = &gauges {
            gauges.floor.set(i64::try_from(floor).unwrap_or(i64::MAX));
        }
        let space = Arc::new(Self { watched, floor, headroom, probe, tally: Mutex::default(), gauges });
        space.sample();
        space
    }

    fn lock(&self) -> MutexGuard<'_, Tally> {
        self.tally.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Measures every watched filesystem (blocking: `statvfs` can wait on a network disk).
    pub fn sample(&self) {
        if self.watched.is_empty() {
            return;
        }
        let mut smallest: Option<u64> = None;
        for watched in &self.watched {
            match (self.probe)(watched) {
                Ok(free) => {
                    if let Some(gauges) = &self.gauges {
                        gauges.free.with_label_values(&[watched.role]).set(i64::try_from(free).unwrap_or(i64::MAX));
                    }
                    smallest = Some(smallest.map_or(free, |s| s.min(free)));
                }
                Err(e) => tracing::debug!(path = %watched.path.display(), error = %e, "cannot measure free space"),
            }
        }
        let mut tally = self.lock();
        tally.sampled = smallest;
        tally.written = 0;
        tally.at = Some(Instant::now());
    }

    /// Measures every second until `shutdown`.
    pub fn spawn_sampler(self: &Arc<Self>, shutdown: CancellationToken) {
        if self.watched.is_empty() {
            return;
        }
        let space = self.clone();
        actix_web::rt::spawn(async move {
            let mut every = tokio::time::interval(SAMPLE_EVERY);
            every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = every.tick() => {}
                    () = shutdown.cancelled() => return,
                }
                let space = space.clone();
                let _ = tokio::task::spawn_blocking(move || space.sample()).await;
            }
        });
    }

    /// Sets `bytes` aside for an upload, unless that would leave less than the floor free —
    /// checked against a fresh measurement before refusing.
    pub async fn reserve(self: &Arc<Self>, bytes: u64) -> Result<Reservation, LowSpace> {
        let refused = match self.try_reserve(bytes) {
            Ok(reservation) => return Ok(reservation),
            Err(refused) => refused,
        };
        let stale = self.lock().at.is_none_or(|at| at.elapsed() > FRESH_ENOUGH);
        if !stale {
            return Err(refused);
        }
        let space = self.clone();
        if tokio::task::spawn_blocking(move || space.sample()).await.is_err() {
            return Err(refused);
        }
        self.try_reserve(bytes)
    }

    fn try_reserve(self: &Arc<Self>, bytes: u64) -> Result<Reservation, LowSpace> {
        let mut tally = self.lock();
        if let Some(free) = tally.free() {
            if free < self.floor.saturating_add(bytes) {
                return Err(LowSpace { free, floor: self.floor });
            }
        }
        tally.reserved += bytes;
        Ok(Reservation { space: self.clone(), bytes, stored: 0 })
    }

    /// A write just failed for lack of space: refuse uploads at once, until a sample shows room.
    pub fn saw_full_disk(&self) {
        if !self.watched.is_empty() {
            let mut tally = self.lock();
            tally.sampled = Some(0);
            tally.written = 0;
        }
    }

    /// Low once an upload of the largest size would be refused.
    pub fn status(&self) -> SpaceStatus {
        if self.watched.is_empty() {
            return SpaceStatus::NotWatched;
        }
        match self.lock().free() {
            Some(free) if free < self.floor.saturating_add(self.headroom) => {
                SpaceStatus::Low(LowSpace { free, floor: self.floor })
            }
            _ => SpaceStatus::Ok,
        }
    }
}

/// Space set aside for one upload; given back on drop, minus what it stored (which the next
/// sample sees on the disk).
pub struct Reservation {
    space: Arc<DiskSpace>,
    bytes: u64,
    stored: u64,
}

impl Reservation {
    /// The upload wrote `bytes` to the disk.
    pub fn stored(&mut self, bytes: u64) {
        self.stored = bytes;
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        let mut tally = self.space.lock();
        tally.reserved = tally.reserved.saturating_sub(self.bytes);
        tally.written += self.stored;
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU64, Ordering};

    use super::*;

    const MIB: u64 = 1024 * 1024;

    fn space_with(free: Arc<AtomicU64>, floor: u64) -> Arc<DiskSpace> {
        let watched = vec![Watched { role: "blobs", path: PathBuf::from("/nowhere") }];
        DiskSpace::with_probe(watched, floor, 0, None, Box::new(move |_| Ok(free.load(Ordering::SeqCst))))
    }

    #[test]
    fn an_upload_that_would_go_below_the_floor_is_refused() {
        let space = space_with(Arc::new(AtomicU64::new(100 * MIB)), 64 * MIB);

        assert!(space.try_reserve(30 * MIB).is_ok(), "100 - 30 leaves 70, above 64");
        let refused = space.try_reserve(37 * MIB).err().expect("100 - 37 leaves 63, below 64");

        assert_eq!(refused, LowSpace { free: 100 * MIB, floor: 64 * MIB });
    }

    #[test]
    fn concurrent_reservations_add_up_against_one_sample() {
        let space = space_with(Arc::new(AtomicU64::new(100 * MIB)), 10 * MIB);

        let first = space.try_reserve(40 * MIB).expect("first");
        let second = space.try_reserve(40 * MIB).expect("second: 20 left");
        assert!(space.try_reserve(11 * MIB).is_err(), "a third would leave 9, below the floor");
        drop(first);

        assert!(space.try_reserve(11 * MIB).is_ok(), "the first gave its reservation back");
        drop(second);
    }

    #[test]
    fn stored_bytes_count_until_the_next_sample_shows_them() {
        let free = Arc::new(AtomicU64::new(100 * MIB));
        let space = space_with(free.clone(), 10 * MIB);
        let mut upload = space.try_reserve(50 * MIB).expect("room");
        upload.stored(50 * MIB);
        drop(upload);

        assert!(space.try_reserve(41 * MIB).is_err(), "the 50 written still count: 50 left");
        free.store(50 * MIB, Ordering::SeqCst);
        space.sample();
        assert!(space.try_reserve(40 * MIB).is_ok(), "the sample shows them now, and they count once");
    }

    #[test]
    fn a_full_disk_refuses_at_once_and_a_sample_with_room_lifts_it() {
        let space = space_with(Arc::new(AtomicU64::new(100 * MIB)), 10 * MIB);

        space.saw_full_disk();
        assert!(matches!(space.status(), SpaceStatus::Low(LowSpace { free: 0, .. })));
        assert!(space.try_reserve(1).is_err());
        space.sample();

        assert_eq!(space.status(), SpaceStatus::Ok);
        assert!(space.try_reserve(1).is_ok());
    }

    #[test]
    fn the_disk_is_low_once_a_largest_upload_would_be_refused() {
        let free = Arc::new(AtomicU64::new(40 * MIB));
        let watched = vec![Watched { role: "blobs", path: PathBuf::from("/nowhere") }];
        let probe = free.clone();
        let space = DiskSpace::with_probe(
            watched,
            10 * MIB,
            25 * MIB,
            None,
            Box::new(move |_| Ok(probe.load(Ordering::SeqCst))),
        );
        assert_eq!(space.status(), SpaceStatus::Ok, "40 MiB holds the floor and a 25 MiB upload");

        free.store(34 * MIB, Ordering::SeqCst);
        space.sample();

        assert_eq!(space.status(), SpaceStatus::Low(LowSpace { free: 34 * MIB, floor: 10 * MIB }));
        assert!(space.try_reserve(MIB).is_ok(), "smaller uploads still fit");
    }

    #[tokio::test]
    async fn a_refusal_measures_again_when_its_sample_is_stale() {
        let free = Arc::new(AtomicU64::new(5 * MIB));
        let space = space_with(free.clone(), 10 * MIB);
        assert!(space.reserve(MIB).await.is_err(), "5 MiB free, 10 MiB floor");

        free.store(100 * MIB, Ordering::SeqCst);
        assert!(space.reserve(MIB).await.is_err(), "a sample this fresh is trusted");
        tokio::time::sleep(FRESH_ENOUGH * 2).await;

        assert!(space.reserve(MIB).await.is_ok(), "room seen at once, not at the next periodic sample");
    }

    #[tokio::test]
    async fn a_disk_that_cannot_be_measured_refuses_nothing_and_nothing_watched_is_not_watched() {
        let watched = vec![Watched { role: "blobs", path: PathBuf::from("/nowhere") }];
        let unmeasurable =
            DiskSpace::with_probe(watched, 10 * MIB, 0, None, Box::new(|_| Err(std::io::Error::other("gone"))));
        assert!(unmeasurable.reserve(u64::MAX / 2).await.is_ok());
        assert_eq!(unmeasurable.status(), SpaceStatus::Ok);

        let none = DiskSpace::new(Vec::new(), 10 * MIB, 0, None);
        assert_eq!(none.status(), SpaceStatus::NotWatched);
        none.saw_full_disk();
        assert!(none.reserve(u64::MAX / 2).await.is_ok());
    }
}
