//! The limits an upload must fit, checked inside the write that records it, so the check and
//! the count are one atomic step in both engines (and across API servers on PostgreSQL).

use chrono::{DateTime, Utc};
use imageapi_core::domain::{Quota, TierLimits};

use super::Usage;

/// A refused upload: which limit, where the user stands and the limit itself; for the upload
/// rate also when a place frees up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuotaRefusal {
    pub quota: Quota,
    pub usage: u64,
    pub limit: u64,
    /// Seconds until one more upload fits (the rate only: the others need the user to act).
    pub retry_after_secs: Option<u64>,
}

/// Whether one more upload of `size` bytes fits `limits` at `now`.
pub fn check_upload(limits: &TierLimits, usage: &Usage, size: u64, now: DateTime<Utc>) -> Result<(), QuotaRefusal> {
    let refuse = |quota, usage, limit| QuotaRefusal { quota, usage, limit, retry_after_secs: None };
    if let Some(limit) = limits.max_images {
        if usage.images >= limit {
            return Err(refuse(Quota::MaxImages, usage.images, limit));
        }
    }
    if let Some(limit) = limits.max_storage_bytes {
        let stored = usage.storage_bytes();
        if stored.saturating_add(size) > limit {
            return Err(refuse(Quota::MaxStorageBytes, stored, limit));
        }
    }
    if let Some(limit) = limits.uploads_per_hour {
        let recent = usage.uploads.count(now);
        if recent >= limit {
            return Err(QuotaRefusal {
                quota: Quota::UploadsPerHour,
                usage: recent,
                limit,
                retry_after_secs: Some(usage.uploads.retry_after(now, limit)),
            });
        }
    }
    Ok(())
}

/// A user's recent uploads, counted per minute: at most [`UploadWindow::SPAN`] + 1 entries
/// whatever the rate, so the record stays small and one read answers "how many in the last
/// hour". An upload counts from its minute until the end of the 60th minute after it: a
/// little over an hour, never under, so no 60 minutes ever hold more than the limit.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UploadWindow {
    /// (minute since the epoch, uploads in it), oldest first.
    minutes: Vec<(i64, u32)>,
}

impl UploadWindow {
    /// Minutes before the current one that still count.
    pub const SPAN: i64 = 60;
    const ENTRY: usize = 12;

    fn minute(at: DateTime<Utc>) -> i64 {
        at.timestamp().div_euclid(60)
    }

    fn counted(&self, now: DateTime<Utc>) -> impl Iterator<Item = &(i64, u32)> {
        let first = Self::minute(now) - Self::SPAN;
        self.minutes.iter().filter(move |(m, _)| *m >= first)
    }

    /// Uploads that count against the hourly limit at `now`.
    pub fn count(&self, now: DateTime<Utc>) -> u64 {
        self.counted(now).map(|&(_, n)| u64::from(n)).sum()
    }

    /// Counts one upload at `now`, forgetting minutes that no longer count.
    pub fn record(&mut self, now: DateTime<Utc>) {
        let minute = Self::minute(now);
        self.minutes.retain(|(m, _)| *m >= minute - Self::SPAN);
        match self.minutes.last_mut() {
            Some((m, n)) if *m == minute => *n = n.saturating_add(1),
            // A clock that went back: count it in the newest minute rather than out of order.
            Some((m, n)) if *m > minute => *n = n.saturating_add(1),
            _ => self.minutes.push((minute, 1)),
        }
    }

    /// Seconds from `now` until fewer than `limit` uploads count (at least 1).
    pub fn retry_after(&self, now: DateTime<Utc>, limit: u64) -> u64 {
        let mut remaining = self.count(now);
        for &(minute, n) in self.counted(now) {
            remaining = remaining.saturating_sub(u64::from(n));
            if remaining < limit {
                let frees_at = (minute + Self::SPAN + 1) * 60;
                return u64::try_from(frees_at - now.timestamp()).unwrap_or(1).max(1);
            }
        }
        1
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.minutes.len() * Self::ENTRY);
        for &(minute, n) in &self.minutes {
            out.extend_from_slice(&minute.to_be_bytes());
            out.extend_from_slice(&n.to_be_bytes());
        }
        out
    }

    /// Reads [`Self::encode`]'s bytes; a trailing partial entry is ignored.
    pub fn decode(bytes: &[u8]) -> Self {
        let minutes = bytes
            .chunks_exact(Self::ENTRY)
            .filter_map(|e| {
                let minute = i64::from_be_bytes(e[..8].try_into().ok()?);
                let n = u32::from_be_bytes(e[8..].try_into().ok()?);
                Some((minute, n))
            })
            .collect();
        Self { minutes }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(secs: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(1_800_000_000 + secs, 0).single().expect("time")
    }

    #[test]
    fn an_upload_counts_for_at_least_an_hour_and_at_most_a_minute_more() {
        // 1_800_000_000 is a minute boundary (divisible by 60).
        let mut window = UploadWindow::default();
        window.record(at(30));
        assert_eq!(window.count(at(30)), 1);
        assert_eq!(window.count(at(30 + 3600)), 1, "an hour later it still counts");
        assert_eq!(window.count(at(60 * 61 - 1)), 1, "until the end of the 60th minute after its own");
        assert_eq!(window.count(at(60 * 61)), 0);
        assert_eq!(window.retry_after(at(30), 1), 60 * 61 - 30);
    }

    #[test]
    fn no_sixty_minutes_hold_more_than_the_limit() {
        // Uploads as fast as the limit allows, for three hours, one attempt every 7 s.
        let limit = 5;
        let mut window = UploadWindow::default();
        let mut accepted = Vec::new();
        for t in (0..3 * 3600).step_by(7) {
            let usage = Usage { uploads: window.clone(), ..Usage::default() };
            let limits = TierLimits { uploads_per_hour: Some(limit), ..TierLimits::UNLIMITED };
            match check_upload(&limits, &usage, 1, at(t)) {
                Ok(()) => {
                    window.record(at(t));
                    accepted.push(t);
                }
                Err(refusal) => {
                    assert_eq!(refusal.quota, Quota::UploadsPerHour);
                    let wait = refusal.retry_after_secs.expect("a wait");
                    let after = Usage { uploads: window.clone(), ..Usage::default() };
                    assert!(check_upload(&limits, &after, 1, at(t + wait as i64)).is_ok(), "at {t}+{wait}");
                    assert!(check_upload(&limits, &after, 1, at(t + wait as i64 - 1)).is_err() || wait == 1);
                }
            }
        }
        for (i, &start) in accepted.iter().enumerate() {
            let within = accepted[i..].iter().take_while(|&&t| t < start + 3600).count();
            assert!(within as u64 <= limit, "{within} uploads within an hour from {start}");
        }
        assert!(accepted.len() >= 3 * limit as usize - 1, "the limit is reached each hour: {}", accepted.len());
    }

    #[test]
    fn the_window_stays_small_and_survives_encoding() {
        let mut window = UploadWindow::default();
        for t in (0..5 * 3600).step_by(13) {
            window.record(at(t));
        }
        assert!(window.minutes.len() <= 61);
        assert_eq!(UploadWindow::decode(&window.encode()), window);
        assert_eq!(UploadWindow::decode(&[1, 2, 3]), UploadWindow::default());
    }

    #[test]
    fn images_and_storage_are_checked_before_the_rate() {
        let limits = TierLimits {
            max_images: Some(2),
            max_storage_bytes: Some(1000),
            max_upload_bytes: None,
            uploads_per_hour: Some(10),
        };
        let usage = Usage { images: 1, original_bytes: 600, thumbnail_bytes: 300, ..Usage::default() };
        assert_eq!(check_upload(&limits, &usage, 100, at(0)), Ok(()));
        let over = check_upload(&limits, &usage, 101, at(0)).expect_err("storage");
        assert_eq!((over.quota, over.usage, over.limit), (Quota::MaxStorageBytes, 900, 1000));
        let full = Usage { images: 2, ..usage.clone() };
        let refusal = check_upload(&limits, &full, 1, at(0)).expect_err("images");
        assert_eq!(
            (refusal.quota, refusal.usage, refusal.limit, refusal.retry_after_secs),
            (Quota::MaxImages, 2, 2, None)
        );
        assert_eq!(check_upload(&TierLimits::UNLIMITED, &full, u64::MAX, at(0)), Ok(()));
    }
}
