//! Who may have an upload body in flight: a few per user, a bounded number in all.
//!
//! Each upload is buffered in memory (up to the upload limit), so the total is bounded by
//! global slots. Without a per-user cap one user could hold every slot with bodies that never
//! finish; with it, a user's extra uploads answer 429 at once and other users keep theirs.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use imageapi_core::domain::UserId;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

pub struct UploadGate {
    slots: Arc<Semaphore>,
    per_user: usize,
    in_flight: Arc<Mutex<HashMap<UserId, usize>>>,
}

/// A user's place among the uploads in flight; the global slot is taken separately, since
/// waiting for one counts against the upload's deadline.
pub struct UserTurn {
    user: UserId,
    in_flight: Arc<Mutex<HashMap<UserId, usize>>>,
}

impl Drop for UserTurn {
    fn drop(&mut self) {
        let mut map = self.in_flight.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = map.get_mut(&self.user) {
            *n -= 1;
            if *n == 0 {
                map.remove(&self.user);
            }
        }
    }
}

impl UploadGate {
    pub fn new(slots: usize, per_user: usize) -> Self {
        Self {
            slots: Arc::new(Semaphore::new(slots.max(1))),
            per_user: per_user.max(1),
            in_flight: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    pub fn per_user(&self) -> usize {
        self.per_user
    }

    /// The user's turn, or `None` when they already have `per_user` uploads in flight.
    pub fn user_turn(&self, user: UserId) -> Option<UserTurn> {
        let mut map = self.in_flight.lock().unwrap_or_else(|e| e.into_inner());
        let n = map.entry(user).or_insert(0);
        if *n >= self.per_user {
            return None;
        }
        *n += 1;
        Some(UserTurn { user, in_flight: self.in_flight.clone() })
    }

    /// Waits for one of the global slots.
    pub async fn slot(&self) -> Option<OwnedSemaphorePermit> {
        self.slots.clone().acquire_owned().await.ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_user_gets_a_few_turns_and_others_keep_theirs() {
        let gate = UploadGate::new(3, 2);
        let (a, b) = (UserId::from_ulid(ulid::Ulid::new()), UserId::from_ulid(ulid::Ulid::new()));
        let a1 = gate.user_turn(a).expect("first");
        let _a2 = gate.user_turn(a).expect("second");
        assert!(gate.user_turn(a).is_none(), "a third upload of the same user is refused");
        assert!(gate.user_turn(b).is_some(), "another user is not affected");
        drop(a1);
        assert!(gate.user_turn(a).is_some(), "a finished upload frees the user's turn");

        let _s1 = gate.slot().await.expect("slot");
        let _s2 = gate.slot().await.expect("slot");
        let s3 = gate.slot().await.expect("slot");
        let waiting = tokio::time::timeout(std::time::Duration::from_millis(50), gate.slot()).await;
        assert!(waiting.is_err(), "all global slots are taken");
        drop(s3);
        assert!(gate.slot().await.is_some());
    }
}
