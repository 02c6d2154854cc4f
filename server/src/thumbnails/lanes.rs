//! Fair turns for thumbnail jobs: one lane per owner, served round-robin.
//!
//! The queue (in-process or Redis) is first come, first served, so a user who uploads a
//! hundred heavy images at once would make everyone else wait for all of them. Instead the
//! dispatcher keeps jobs in [`Lanes`] and hands the queue only a small window of them at a
//! time, taking one job from each owner in turn: a new job waits for at most the window plus
//! one job of every other owner with work waiting, however long their backlogs.
//!
//! The lanes are not durable and need not be: every job in them is in the outbox, and the
//! dispatcher's passes over the outbox fill them again after a restart. They also remember
//! which jobs were handed to the queue, so that a pass does not line those up again (unless
//! the queue may have lost them: [`Lanes::forget_fed`]).

use std::collections::HashSet;

use imageapi_core::domain::{JobId, UserId};
use imageapi_core::jobs::ThumbnailJob;

use crate::turns::Turns;

/// Jobs recorded before jobs named their owner share one lane.
type Owner = Option<UserId>;

#[derive(Debug, Default)]
pub struct Lanes {
    turns: Turns<Owner, Entry>,
    waiting: HashSet<JobId>,
    /// Handed to the queue and not known to be finished.
    fed: HashSet<JobId>,
    /// Counts additions, so a pass over the outbox can tell which jobs arrived during it.
    added: u64,
}

#[derive(Debug)]
struct Entry {
    job: ThumbnailJob,
    /// The value of [`Lanes::added`] when it was added.
    seq: u64,
}

/// Marks the start of a pass over the outbox (see [`Lanes::keep_only`]).
#[derive(Debug, Clone, Copy)]
pub struct PassStart(u64);

impl Lanes {
    /// Puts a job at the end of its owner's lane, unless it is waiting already or in the queue.
    pub fn add(&mut self, job: ThumbnailJob) {
        if self.fed.contains(&job.id) || !self.waiting.insert(job.id) {
            return;
        }
        self.added += 1;
        self.turns.push(job.owner, Entry { job, seq: self.added });
    }

    /// Up to `n` jobs, one per owner in turn.
    pub fn take(&mut self, n: usize) -> Vec<ThumbnailJob> {
        let mut taken = Vec::with_capacity(n.min(self.waiting.len()));
        while taken.len() < n {
            let Some(entry) = self.turns.pop() else { break };
            self.waiting.remove(&entry.job.id);
            taken.push(entry.job);
        }
        taken
    }

    /// These jobs are in the queue now.
    pub fn fed(&mut self, jobs: &[ThumbnailJob]) {
        self.fed.extend(jobs.iter().map(|job| job.id));
    }

    /// This job finished (its report was applied).
    pub fn finished(&mut self, job: JobId) {
        self.fed.remove(&job);
    }

    /// The queue may have lost what it was given (it restarted, or a call failed): the next
    /// pass lines every unfinished job up again.
    pub fn forget_fed(&mut self) {
        self.fed.clear();
    }

    pub fn len(&self) -> usize {
        self.waiting.len()
    }

    /// Owners with jobs waiting.
    #[cfg(test)]
    pub fn owners(&self) -> usize {
        self.turns.lanes()
    }

    pub fn start_pass(&self) -> PassStart {
        PassStart(self.added)
    }

    /// After a pass over the outbox that saw `in_outbox`: drops the jobs that left the
    /// outbox (applied elsewhere, or their image deleted), except those added since the pass
    /// began (which it may have missed).
    pub fn keep_only(&mut self, in_outbox: &HashSet<JobId>, since: PassStart) {
        self.fed.retain(|id| in_outbox.contains(id));
        let waiting = &mut self.waiting;
        self.turns.retain(|entry| {
            let keep = entry.seq > since.0 || in_outbox.contains(&entry.job.id);
            if !keep {
                waiting.remove(&entry.job.id);
            }
            keep
        });
    }
}

#[cfg(test)]
mod tests {
    use imageapi_core::domain::ImageId;
    use imageapi_core::image::ImageFormat;

    use super::*;

    fn job(owner: Owner) -> ThumbnailJob {
        ThumbnailJob {
            formats: vec![imageapi_core::image::ThumbnailFormat::Source],
            id: JobId::from_ulid(ulid::Ulid::new()),
            image_id: ImageId::from_ulid(ulid::Ulid::new()),
            format: ImageFormat::Jpeg,
            heights: vec![200],
            owner,
        }
    }

    fn owners_of(jobs: &[ThumbnailJob]) -> Vec<Owner> {
        jobs.iter().map(|j| j.owner).collect()
    }

    #[test]
    fn owners_take_turns_whatever_their_backlog() {
        let (heavy, light) = (Some(UserId::from_ulid(ulid::Ulid::new())), Some(UserId::from_ulid(ulid::Ulid::new())));
        let mut lanes = Lanes::default();
        for _ in 0..100 {
            lanes.add(job(heavy));
        }
        let first_light = job(light);
        lanes.add(first_light.clone());
        lanes.add(job(light));

        let taken = lanes.take(4);

        assert_eq!(owners_of(&taken), vec![heavy, light, heavy, light]);
        assert_eq!(taken[1].id, first_light.id, "each lane keeps its own order");
        assert_eq!(lanes.len(), 98);
        assert_eq!(lanes.owners(), 1);
    }

    #[test]
    fn a_newcomer_waits_for_one_turn_of_each_owner_ahead_of_it() {
        let owners: Vec<Owner> = (0..3).map(|_| Some(UserId::from_ulid(ulid::Ulid::new()))).collect();
        let mut lanes = Lanes::default();
        for owner in &owners {
            for _ in 0..50 {
                lanes.add(job(*owner));
            }
        }
        lanes.take(7);
        let newcomer = job(Some(UserId::from_ulid(ulid::Ulid::new())));
        lanes.add(newcomer.clone());

        let next = lanes.take(4);

        assert_eq!(next.last().map(|j| j.id), Some(newcomer.id), "after one job of each of the 3 others");
    }

    #[test]
    fn a_job_waits_once_and_taking_more_than_there_is_takes_all() {
        let mut lanes = Lanes::default();
        let same = job(None);
        lanes.add(same.clone());
        lanes.add(same.clone());
        lanes.add(job(None));

        assert_eq!(lanes.len(), 2);
        assert_eq!(lanes.take(10).len(), 2);
        assert!(lanes.len() == 0 && lanes.owners() == 0);
        assert!(lanes.take(1).is_empty());
        lanes.add(same);
        assert_eq!(lanes.len(), 1, "a job taken can wait again (a queue that lost it)");
    }

    #[test]
    fn a_job_in_the_queue_is_not_lined_up_again_until_the_queue_may_have_lost_it() {
        let mut lanes = Lanes::default();
        let fed = job(None);
        lanes.add(fed.clone());
        let taken = lanes.take(1);
        lanes.fed(&taken);

        lanes.add(fed.clone());
        assert_eq!(lanes.len(), 0, "a pass does not line up a job the queue holds");
        lanes.forget_fed();
        lanes.add(fed.clone());
        assert_eq!(lanes.len(), 1, "after the queue may have lost it, it is lined up again");
        lanes.take(1);
        lanes.fed(std::slice::from_ref(&fed));
        lanes.finished(fed.id);
        lanes.add(fed);
        assert_eq!(lanes.len(), 1, "a finished job is not remembered (a report applied twice is harmless)");
    }

    #[test]
    fn a_pass_drops_jobs_that_left_the_outbox_but_not_those_added_meanwhile() {
        let owner = Some(UserId::from_ulid(ulid::Ulid::new()));
        let mut lanes = Lanes::default();
        let (stays, leaves, other_owner_leaves) = (job(owner), job(owner), job(None));
        for j in [&stays, &leaves, &other_owner_leaves] {
            lanes.add(j.clone());
        }
        let pass = lanes.start_pass();
        let arrived_during_pass = job(owner);
        lanes.add(arrived_during_pass.clone());

        lanes.keep_only(&HashSet::from([stays.id]), pass);

        let left: Vec<JobId> = lanes.take(10).iter().map(|j| j.id).collect();
        assert_eq!(left, vec![stays.id, arrived_during_pass.id]);
        assert_eq!(lanes.owners(), 0);
    }
}
