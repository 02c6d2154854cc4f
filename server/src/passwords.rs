//! Password hashing and verification (argon2id) with a fixed memory budget.
//!
//! One argon2 run needs 19 MiB of working memory. Allocated and freed per run, that memory is
//! at the allocator's mercy: glibc raises its mmap threshold after the first free of such a
//! block and then keeps later ones in per-thread arenas, so a flood of bad passwords grew the
//! process by gigabytes. Here each [`Argon`] owns its memory for good, and the server runs a
//! [`PasswordPool`] of a few threads, one `Argon` each: password work costs
//! `threads × 19 MiB`, allocated once, whatever clients send. Work waits in a bounded queue;
//! when it is full the caller learns at once ([`PoolError::Busy`]) instead of piling up.

use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};

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
        let salt = crate::auth::random_bytes::<SALT_LEN>();
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

/// A few threads, each with its own [`Argon`], behind a bounded queue.
pub struct PasswordPool {
    queue: SyncSender<Work>,
    threads: usize,
    memory_bytes: usize,
}

impl PasswordPool {
    /// Starts `threads` password threads with room for `queue` waiting requests.
    pub fn start(threads: usize, queue: usize) -> std::io::Result<Self> {
        let threads = threads.max(1);
        let (tx, rx) = mpsc::sync_channel::<Work>(queue);
        let rx = Arc::new(Mutex::new(rx));
        let mut memory_bytes = 0;
        for n in 0..threads {
            let rx = rx.clone();
            let argon = Argon::new();
            memory_bytes += argon.memory_bytes();
            std::thread::Builder::new().name(format!("passwords-{n}")).spawn(move || run(argon, &rx))?;
        }
        Ok(Self { queue: tx, threads, memory_bytes })
    }

    pub fn threads(&self) -> usize {
        self.threads
    }

    /// The pool's fixed working memory.
    pub fn memory_bytes(&self) -> usize {
        self.memory_bytes
    }

    pub async fn verify(&self, phc: String, password: String) -> Result<bool, PoolError> {
        let (reply, answer) = oneshot::channel();
        self.submit(Work::Verify { phc, password, reply })?;
        answer.await.map_err(|_| PoolError::Stopped)
    }

    pub async fn hash(&self, password: String) -> Result<String, PoolError> {
        let (reply, answer) = oneshot::channel();
        self.submit(Work::Hash { password, reply })?;
        Ok(answer.await.map_err(|_| PoolError::Stopped)??)
    }

    fn submit(&self, work: Work) -> Result<(), PoolError> {
        self.queue.try_send(work).map_err(|e| match e {
            TrySendError::Full(_) => PoolError::Busy,
            TrySendError::Disconnected(_) => PoolError::Stopped,
        })
    }
}

fn run(mut argon: Argon, queue: &Mutex<Receiver<Work>>) {
    loop {
        // The lock is held only while waiting for the next item; work runs outside it.
        let next = queue.lock().unwrap_or_else(|e| e.into_inner()).recv();
        let Ok(work) = next else { return };
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
        assert!(pool.verify(phc.clone(), "pool-password".into()).await.expect("verify"));
        assert!(!pool.verify(phc.clone(), "wrong".into()).await.expect("verify"));

        // One running, one queued: the next ones are refused without waiting.
        let mut waiting = Vec::new();
        let mut busy = 0;
        for _ in 0..8 {
            let (reply, answer) = oneshot::channel();
            match pool.submit(Work::Verify { phc: phc.clone(), password: "x".into(), reply }) {
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
}
