//! The one retry policy of thumbnail jobs, for both transports: a job whose failure was
//! transient (blob store or report I/O, a missing original) is tried again after a growing
//! delay, attempt n waiting n seconds, until its last attempt; then it is given up (listed as
//! failed, for an admin to retry). apalis-redis schedules its retries with exactly this delay;
//! the embedded queue sleeps it.

use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in all, at least 1.
    max_attempts: u32,
}

impl RetryPolicy {
    /// Attempts when none are configured (`IMAGEAPI_JOB_MAX_ATTEMPTS`' default; the embedded
    /// queue's always).
    pub const DEFAULT_ATTEMPTS: u32 = 5;

    pub fn new(max_attempts: u32) -> Self {
        Self { max_attempts: max_attempts.max(1) }
    }

    pub fn max_attempts(&self) -> u32 {
        self.max_attempts
    }

    /// Whether attempt `attempt` (counted from 1) was the last one.
    pub fn is_last(&self, attempt: u32) -> bool {
        attempt >= self.max_attempts
    }

    /// How long to wait after failed attempt `attempt` before the next.
    pub fn delay_after(&self, attempt: u32) -> Duration {
        Duration::from_secs(attempt.into())
    }
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self::new(Self::DEFAULT_ATTEMPTS)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attempt_n_waits_n_seconds_until_the_last() {
        let policy = RetryPolicy::default();
        assert_eq!(policy.max_attempts(), 5);
        assert!(!policy.is_last(4) && policy.is_last(5));
        assert_eq!(policy.delay_after(1), Duration::from_secs(1));
        assert_eq!(policy.delay_after(4), Duration::from_secs(4));
        assert!(RetryPolicy::new(0).is_last(1), "at least one attempt");
    }
}
