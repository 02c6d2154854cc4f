//! Failed-login limits per client address and per username, so that a flood of bad
//! credentials costs its sender a 429 instead of costing everyone else their logins.
//!
//! Only logins that need a password verification pass here (a cached Basic login or a Bearer
//! token never does). Each address and each username has a budget of failures per window;
//! once it is spent, further uncached attempts answer 429 with `Retry-After` without touching
//! argon2. Known and unknown usernames are treated alike, so the limits reveal nothing about
//! which accounts exist. An address may also have only a few verifications waiting at once,
//! and the password threads serve waiting addresses in turn (see [`crate::passwords`]), so a
//! good login from elsewhere waits for about one verification, however many a flooding
//! address sends.
//!
//! The tables are bounded: entries are dropped when their window has passed, and if a table
//! is still full, new keys are refused tracking (fail closed for the newcomer: 429).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// The limits, from the configuration.
#[derive(Debug, Clone, Copy)]
pub struct LoginLimits {
    /// Failed logins one client address may make per window.
    pub failures_per_address: u32,
    /// Failed logins for one username (from anywhere) per window.
    pub failures_per_username: u32,
    pub window: Duration,
    /// Verifications one address may have waiting or running at once.
    pub pending_per_address: usize,
    /// Most addresses and usernames tracked at once (each table).
    pub max_tracked: usize,
}

impl Default for LoginLimits {
    fn default() -> Self {
        Self {
            failures_per_address: 30,
            failures_per_username: 10,
            window: Duration::from_secs(60),
            pending_per_address: 8,
            max_tracked: 100_000,
        }
    }
}

/// Why an attempt is refused before its password is checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    pub reason: &'static str,
    pub retry_after: Duration,
}

#[derive(Debug, Clone, Copy)]
struct Window {
    started: Instant,
    failures: u32,
}

#[derive(Default)]
struct Tables {
    by_address: HashMap<IpAddr, Window>,
    by_username: HashMap<String, Window>,
    pending: HashMap<IpAddr, usize>,
}

pub struct LoginLimiter {
    limits: LoginLimits,
    tables: Arc<Mutex<Tables>>,
}

/// Held while an admitted attempt waits for and runs its verification.
pub struct Admission {
    address: IpAddr,
    tables: Arc<Mutex<Tables>>,
}

impl Drop for Admission {
    fn drop(&mut self) {
        let mut tables = lock(&self.tables);
        if let Some(n) = tables.pending.get_mut(&self.address) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                tables.pending.remove(&self.address);
            }
        }
    }
}

fn lock(m: &Mutex<Tables>) -> MutexGuard<'_, Tables> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// IPv6 clients usually hold a whole /64: count them as one address.
pub fn client_key(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let mut segments = v6.segments();
                segments[4..].fill(0);
                IpAddr::V6(segments.into())
            }
        },
        v4 => v4,
    }
}

impl LoginLimiter {
    pub fn new(limits: LoginLimits) -> Self {
        Self { limits, tables: Arc::new(Mutex::new(Tables::default())) }
    }

    /// May `address` try a password for `username` now? On success the returned admission
    /// counts as one of the address's pending verifications until it is dropped.
    pub fn admit(&self, address: IpAddr, username: &str, now: Instant) -> Result<Admission, Refused> {
        let address = client_key(address);
        let mut tables = lock(&self.tables);
        let limits = self.limits;
        if let Some(retry_after) =
            spent(tables.by_address.get(&address), limits.failures_per_address, limits.window, now)
        {
            return Err(Refused { reason: "too many failed logins from your address", retry_after });
        }
        if let Some(retry_after) =
            spent(tables.by_username.get(username), limits.failures_per_username, limits.window, now)
        {
            return Err(Refused { reason: "too many failed logins for this username", retry_after });
        }
        let pending = tables.pending.get(&address).copied().unwrap_or(0);
        if pending >= limits.pending_per_address {
            return Err(Refused {
                reason: "too many logins from your address are being checked",
                retry_after: Duration::from_secs(1),
            });
        }
        if pending == 0 && tables.pending.len() >= limits.max_tracked {
            return Err(Refused {
                reason: "the server is checking too many logins",
                retry_after: Duration::from_secs(1),
            });
        }
        *tables.pending.entry(address).or_insert(0) += 1;
        drop(tables);
        Ok(Admission { address, tables: self.tables.clone() })
    }

    /// Records a failed verification against the address and the username.
    pub fn failed(&self, address: IpAddr, username: &str, now: Instant) {
        let address = client_key(address);
        let mut tables = lock(&self.tables);
        let (window, max) = (self.limits.window, self.limits.max_tracked);
        count_failure(&mut tables.by_address, address, window, max, now);
        count_failure(&mut tables.by_username, username.to_owned(), window, max, now);
    }

    /// A correct password clears the username's failures (not the address's: one good account
    /// must not reset an address that guesses at others).
    pub fn succeeded(&self, username: &str) {
        lock(&self.tables).by_username.remove(username);
    }

    #[cfg(test)]
    fn tracked(&self) -> (usize, usize, usize) {
        let t = lock(&self.tables);
        (t.by_address.len(), t.by_username.len(), t.pending.len())
    }
}

/// `Some(time left)` when the window's failures have reached `max`.
fn spent(window: Option<&Window>, max: u32, length: Duration, now: Instant) -> Option<Duration> {
    let w = window?;
    let age = now.saturating_duration_since(w.started);
    (age < length && w.failures >= max).then(|| (length - age).max(Duration::from_secs(1)))
}

fn count_failure<K: std::hash::Hash + Eq>(
    table: &mut HashMap<K, Window>,
    key: K,
    length: Duration,
    max_tracked: usize,
    now: Instant,
) {
    if table.len() >= max_tracked && !table.contains_key(&key) {
        table.retain(|_, w| now.saturating_duration_since(w.started) < length);
        if table.len() >= max_tracked {
            // Full of live windows: the newcomer is not tracked (its next failures are not
            // counted), which bounds memory; a flood that fills the table from many addresses
            // still meets the per-username limit and the fair queue.
            return;
        }
    }
    let w = table.entry(key).or_insert(Window { started: now, failures: 0 });
    if now.saturating_duration_since(w.started) >= length {
        *w = Window { started: now, failures: 0 };
    }
    w.failures = w.failures.saturating_add(1);
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, Ipv6Addr};

    use super::*;

    fn limiter() -> LoginLimiter {
        LoginLimiter::new(LoginLimits {
            failures_per_address: 5,
            failures_per_username: 3,
            window: Duration::from_secs(60),
            pending_per_address: 2,
            max_tracked: 1000,
        })
    }

    const A: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1));
    const B: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2));

    #[test]
    fn an_address_that_keeps_failing_is_refused_until_its_window_passes() {
        let l = limiter();
        let t0 = Instant::now();
        for n in 0..5 {
            assert!(l.admit(A, &format!("user{n}"), t0).is_ok());
            l.failed(A, &format!("user{n}"), t0);
        }
        let refused = l.admit(A, "someone-else", t0).err().expect("refused");
        assert_eq!(refused.reason, "too many failed logins from your address");
        assert_eq!(refused.retry_after, Duration::from_secs(60));
        assert!(l.admit(B, "someone-else", t0).is_ok(), "other addresses are not affected");
        assert!(l.admit(A, "someone-else", t0 + Duration::from_secs(61)).is_ok(), "the window passes");
    }

    #[test]
    fn a_username_under_attack_from_many_addresses_is_refused_for_everyone_uncached() {
        let l = limiter();
        let t0 = Instant::now();
        for n in 0..3u8 {
            let from = IpAddr::V4(Ipv4Addr::new(10, 1, 0, n));
            drop(l.admit(from, "victim", t0).expect("admitted"));
            l.failed(from, "victim", t0);
        }
        let refused = l.admit(B, "victim", t0 + Duration::from_secs(10)).err().expect("refused");
        assert_eq!(refused.reason, "too many failed logins for this username");
        assert_eq!(refused.retry_after, Duration::from_secs(50));
        assert!(l.admit(B, "bystander", t0).is_ok());
    }

    #[test]
    fn unknown_and_known_usernames_are_limited_alike_and_success_clears_the_username() {
        let l = limiter();
        let t0 = Instant::now();
        for _ in 0..2 {
            l.failed(A, "ann", t0);
        }
        l.succeeded("ann");
        l.failed(A, "ann", t0);
        l.failed(A, "ann", t0);
        assert!(l.admit(B, "ann", t0).is_ok(), "two failures since the success: under the limit of 3");
        assert_eq!(l.tracked().1, 1);
    }

    #[test]
    fn an_address_may_have_only_a_few_verifications_pending() {
        let l = limiter();
        let t0 = Instant::now();
        let first = l.admit(A, "u", t0).expect("1");
        let _second = l.admit(A, "u", t0).expect("2");
        let refused = l.admit(A, "u", t0).err().expect("third refused");
        assert_eq!(refused.reason, "too many logins from your address are being checked");
        assert!(l.admit(B, "u", t0).is_ok(), "another address is free");
        drop(first);
        assert!(l.admit(A, "u", t0).is_ok(), "a finished verification frees its place");
    }

    #[test]
    fn ipv6_clients_count_per_64_and_mapped_v4_as_v4() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse::<Ipv6Addr>().expect("v6").into();
        let b: IpAddr = "2001:db8:1:2:bbbb::2".parse::<Ipv6Addr>().expect("v6").into();
        assert_eq!(client_key(a), client_key(b));
        let mapped: IpAddr = "::ffff:10.0.0.1".parse::<Ipv6Addr>().expect("v6").into();
        assert_eq!(client_key(mapped), A);
    }

    #[test]
    fn the_tables_stay_bounded_under_a_flood_of_new_keys() {
        let l = LoginLimiter::new(LoginLimits { max_tracked: 100, ..LoginLimits::default() });
        let t0 = Instant::now();
        for n in 0..10_000u32 {
            let from = IpAddr::V4(Ipv4Addr::from(n));
            l.failed(from, &format!("user{n}"), t0);
        }
        let (addresses, usernames, _) = l.tracked();
        assert!(addresses <= 100 && usernames <= 100, "{addresses} {usernames}");
        // Once the windows have passed, new keys are tracked again.
        l.failed(A, "late", t0 + Duration::from_secs(120));
        assert!(l.tracked().0 <= 100);
    }
}
