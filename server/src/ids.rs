//! Ids that must sort in creation order (images and links in listings, jobs in the outbox) come from one
//! monotonic ULID generator, so the order holds even within the same millisecond.

use std::sync::Mutex;

use imageapi_core::domain::{ImageId, JobId, LinkId};
use ulid::Ulid;

fn monotonic() -> Ulid {
    static GENERATOR: Mutex<Option<ulid::Generator>> = Mutex::new(None);
    let mut guard = GENERATOR.lock().unwrap_or_else(|e| e.into_inner());
    let generator = guard.get_or_insert_with(ulid::Generator::new);
    // Overflow needs 2^80 ids in one millisecond; a fresh random ULID is then fine.
    generator.generate().unwrap_or_else(|_| Ulid::new())
}

pub fn new_image_id() -> ImageId {
    ImageId::from_ulid(monotonic())
}

pub fn new_job_id() -> JobId {
    JobId::from_ulid(monotonic())
}

pub fn new_link_id() -> LinkId {
    LinkId::from_ulid(monotonic())
}

#[cfg(test)]
mod tests {
    #[test]
    fn ids_follow_creation_order() {
        let ids: Vec<_> = (0..1000).map(|_| super::new_image_id()).collect();
        assert!(ids.windows(2).all(|w| w[0] < w[1]));
    }
}
