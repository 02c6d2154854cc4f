//! Password hashing and verification (argon2id) with a fixed memory budget.
//!
//! One argon2 run needs 19 MiB of working memory. Allocated and freed per run, that memory is
//! at the allocator's mercy: glibc raises its mmap threshold after the first free of such a
//! block and then keeps later ones in per-thread arenas, so a flood of bad passwords grew the
//! process by gigabytes. Here each [`Argon`] owns its memory for good, and the server runs a
//! [`PasswordPool`] of a few threads, one `Argon` each: password work costs
//! `threads × 19 MiB`, allocated once, whatever clients send. Work waits in a bounded queue
//! served in turns per client address ([`Lane`]); when it is full the caller learns at once
//! ([`PoolError::Busy`]) instead of piling up.

use crate::turns::Turns;
use std::net::IpAddr;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use argon2::password_hash::phc::{Output, ParamsString, PasswordHash, Salt};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use subtle::ConstantTimeEq;
use tokio::sync::oneshot;

/// Salt length of new hashes (the PHC format's recommendation).
const SALT_LEN: usize = 16;

/// argon2id with its default parameters and memory of its own, reused for every run.
pub struct Argon {
    blocks: Vec<Block>,
}

impl Default for Argon {
    fn default() -> Self {
        Self::new()
    }
}

impl Argon {
    pub fn new() -> Self {
        Self { blocks: vec![Block::new(); Params::DEFAULT.block_count()] }
    }

    /// Bytes of working memory this instance holds.
    pub fn memory_bytes(&self) -> usize {
        self.blocks.len() * Block::SIZE
    }

    /// A new PHC string for `password` with a random salt and the default parameters.
    pub fn hash(&mut self, password: &str) -> anyhow::Result<String> {
        let salt = crate::secrets::random_bytes::<SALT_LEN>();
        let params = Params::DEFAULT;
        let mut out = [0u8; Params::DEFAULT_OUTPUT_LEN];
        Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone())
            .hash_password_into_with_memory(password.as_bytes(), &salt, &mut out, &mut self.blocks[..])
            .map_err(|e| anyhow::anyhow!("hashing the password failed: {e}"))?;
        let phc = PasswordHash {
            algorithm: Algorithm::Argon2id.ident(),
            version: Some(Version::V0x13.into()),
            params: ParamsString::try_from(&params).map_err(|e| anyhow::anyhow!("{e}"))?,
            salt: Some(Salt::new(&salt).map_err(|e| anyhow::anyhow!("{e}"))?),
            hash: Some(Output::new(&out).map_err(|e| anyhow::anyhow!("{e}"))?),
        };
        Ok(phc.to_string())
    }

    /// Whether `password` matches the PHC string (false for a malformed one).
    pub fn verify(&mut self, phc: &str, password: &str) -> bool {
        self.try_verify(phc, password).unwrap_or(false)
    }

    fn try_verify(&mut self, phc: &str, password: &str) -> Option<bool> {
        let parsed = PasswordHash::new(phc).ok()?;
        let algorithm = Algorithm::try_from(parsed.algorithm.as_str()).ok()?;
        let version = match parsed.version {
            Some(v) => Version::try_from(v).ok()?,
            None => Version::default(),
        };
        let params = Params::try_from(&parsed).ok()?;
        let (salt, expected) = (parsed.salt?, parsed.hash?);
        let mut out = [0u8; 64];
        let out = out.get_mut(..expected.len())?;
        let argon = Argon2::new(algorithm, version, params.clone());
        let needed = params.block_count();
        let ran = if needed <= self.blocks.len() {
            argon.hash_password_into_with_memory(password.as_bytes(), salt.as_ref(), out, &mut self.blocks[..needed])
        } else {
            // Stronger parameters than ours (a hash from elsewhere): this one run allocates.
            argon.hash_password_into(password.as_bytes(), salt.as_ref(), out)
        };
        ran.ok()?;
        Some(bool::from(out.ct_eq(expected.as_bytes())))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PoolError {
    #[error("too many passwords are waiting to be checked; try again shortly")]
    Busy,
    #[error("the password threads have stopped")]
    Stopped,
    #[error(transparent)]
    Failed(#[from] anyhow::Error),
}

enum Work {
    Verify { phc: String, password: String, reply: oneshot::Sender<bool> },
    Hash { password: String, reply: oneshot::Sender<anyhow::Result<String>> },
}

/// Who a piece of work is for: a client address, or the server itself (`None`: admin
/// operations and start-up).
pub type Lane = Option<IpAddr>;

/// A bounded queue served in turns: each lane with waiting work gets one item per round, so a
/// lane that floods the queue delays the others by about one item each, not by its backlog.
struct FairQueue {
    state: Mutex<Lanes>,
    ready: Condvar,
    capacity: usize,
}

#[derive(Default)]
struct Lanes {
    waiting: Turns<Lane, Work>,
    closed: bool,
}

impl FairQueue {
    fn lock(&self) -> MutexGuard<'_, Lanes> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn push(&self, lane: Lane, work: Work) -> Result<(), PoolError> {
        let mut lanes = self.lock();
        if lanes.closed {
            return Err(PoolError::Stopped);
        }
        if lanes.waiting.len() >= self.capacity {
            return Err(PoolError::Busy);
        }
        lanes.waiting.push(lane, work);
        drop(lanes);
        self.ready.notify_one();
        Ok(())
    }

    /// The next item, in turn; `None` once the queue is closed.
    fn pop(&self) -> Option<Work> {
        let mut lanes = self.lock();
        loop {
            if lanes.closed {
                return None;
            }
            if let Some(work) = lanes.waiting.pop() {
                return Some(work);
            }
            lanes = self.ready.wait(lanes).unwrap_or_else(|e| e.into_inner());
        }
    }

    fn close(&self) {
        self.lock().closed = true;
        self.ready.notify_all();
    }
}

/// A few threads, each with its own [`Argon`], behind a bounded queue served fairly by lane.
pub struct PasswordPool {
    queue: Arc<FairQueue>,
    threads: usize,
    memory_bytes: usize,
}

impl PasswordPool {
    /// Starts `threads` password threads with room for `queue` waiting requests.
    pub fn start(threads: usize, queue: usize) -> std::io::Result<Self> {
        let threads = threads.max(1);
        let fair = Arc::new(FairQueue { state: Mutex::default(), ready: Condvar::new(), capacity: queue });
        let mut memory_bytes = 0;
        for n in 0..threads {
            let fair = fair.clone();
            let argon = Argon::new();
            memory_bytes += argon.memory_bytes();
            std::thread::Builder::new().name(format!("passwords-{n}")).spawn(move || run(argon, &fair))?;
        }
        Ok(Self { queue: fair, threads, memory_bytes })
    }

    pub fn threads(&self) -> usize {
        self.threads
    }

    /// The pool's fixed working memory.
    pub fn memory_bytes(&self) -> usize {
        self.memory_bytes
    }

    /// Checks a password, waiting in `lane`'s turn.
    pub async fn verify(&self, lane: Lane, phc: String, password: String) -> Result<bool, PoolError> {
        let (reply, answer) = oneshot::channel();
        self.queue.push(lane, Work::Verify { phc, password, reply })?;
        answer.await.map_err(|_| PoolError::Stopped)
    }

    /// Hashes a new password (admin operations: the server's own lane).
    pub async fn hash(&self, password: String) -> Result<String, PoolError> {
        let (reply, answer) = oneshot::channel();
        self.queue.push(None, Work::Hash { password, reply })?;
        Ok(answer.await.map_err(|_| PoolError::Stopped)??)
    }
}

impl Drop for PasswordPool {
    fn drop(&mut self) {
        self.queue.close();
    }
}

fn run(mut argon: Argon, queue: &FairQueue) {
    while let Some(work) = queue.pop() {
        match work {
            Work::Verify { phc, password, reply } => {
                // A caller that gave up (its connection closed) still had its turn: no matter.
                let _ = reply.send(argon.verify(&phc, &password));
            }
            Work::Hash { password, reply } => {
                let _ = reply.send(argon.hash(&password));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use argon2::PasswordVerifier;

    use super::*;

    #[test]
    fn a_hash_verifies_its_own_password_only_and_is_a_standard_phc_string() {
        let mut argon = Argon::new();
        let phc = argon.hash("correct horse").expect("hash");
        assert!(phc.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{phc}");
        assert!(argon.verify(&phc, "correct horse"));
        assert!(!argon.verify(&phc, "correct horse!"));
        // The argon2 crate's own verifier agrees, both ways.
        assert!(Argon2::default().verify_password(b"correct horse", phc.as_str()).is_ok());
        let theirs =
            argon2::PasswordHasher::hash_password(&Argon2::default(), b"battery staple").expect("hash").to_string();
        assert!(argon.verify(&theirs, "battery staple"));
        assert!(!argon.verify(&theirs, "battery stapler"));
    }

    #[test]
    fn malformed_hashes_never_verify() {
        let mut argon = Argon::new();
        for phc in ["", "not a phc string", "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ", "$md5$abc$def"] {
            assert!(!argon.verify(phc, "anything"), "{phc:?}");
        }
    }

    #[test]
    fn hashes_with_stronger_parameters_still_verify() {
        let params = Params::new(32 * 1024, 1, 1, None).expect("params");
        let strong = Argon2::new(Algorithm::Argon2id, Version::V0x13, params);
        let phc = argon2::PasswordHasher::hash_password(&strong, b"pw-123456").expect("hash").to_string();
        assert!(Argon::new().verify(&phc, "pw-123456"));
    }

    #[tokio::test]
    async fn the_pool_answers_and_refuses_at_once_when_its_queue_is_full() {
        let pool = PasswordPool::start(1, 1).expect("pool");
        assert_eq!(pool.memory_bytes(), 19 * 1024 * 1024);
        let phc = pool.hash("pool-password".into()).await.expect("hash");
        assert!(pool.verify(None, phc.clone(), "pool-password".into()).await.expect("verify"));
        assert!(!pool.verify(None, phc.clone(), "wrong".into()).await.expect("verify"));

        // One running, one queued: the next ones are refused without waiting.
        let mut waiting = Vec::new();
        let mut busy = 0;
        for _ in 0..8 {
            let (reply, answer) = oneshot::channel();
            match pool.queue.push(None, Work::Verify { phc: phc.clone(), password: "x".into(), reply }) {
                Ok(()) => waiting.push(answer),
                Err(PoolError::Busy) => busy += 1,
                Err(e) => panic!("{e}"),
            }
        }
        assert!(busy >= 6, "a queue of one holds at most two (one running): {busy} refused");
        for answer in waiting {
            assert!(!answer.await.expect("answered"));
        }
    }

    fn lane(n: u8) -> Lane {
        Some(IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, n)))
    }

    #[test]
    fn lanes_are_served_in_turns_so_a_flooding_lane_delays_others_by_one_item() {
        let queue = FairQueue { state: Mutex::default(), ready: Condvar::new(), capacity: 100 };
        let mut answers = Vec::new();
        let mut push = |l: Lane, tag: &str| {
            let (reply, answer) = oneshot::channel();
            queue.push(l, Work::Hash { password: tag.to_owned(), reply }).expect("room");
            answers.push(answer);
        };
        for n in 0..50 {
            push(lane(1), &format!("flood{n}"));
        }
        push(lane(2), "good");
        push(lane(3), "other");
        let order: Vec<String> = (0..5)
            .map(|_| match queue.pop() {
                Some(Work::Hash { password, .. }) => password,
                _ => panic!("hash work"),
            })
            .collect();
        assert_eq!(order, ["flood0", "good", "other", "flood1", "flood2"]);
        queue.close();
        assert!(queue.pop().is_none(), "a closed queue hands out nothing");
    }
}
