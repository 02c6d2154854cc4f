//! The Queue view: the queue's state, a throughput history and the failed jobs.

use std::collections::VecDeque;

use super::list_state::{matches_filter, Filterable, Selection};
use super::remote::{InFlight, Remote};
use crate::action::Command;
use crate::api::{ApiError, FailedJob, Queue};

impl Filterable for FailedJob {
    fn matches(&self, filter: &str) -> bool {
        matches_filter(filter, &[&self.job, &self.reason, self.image_id.as_deref().unwrap_or("")])
    }
}

/// Samples kept for the throughput sparkline (one per refresh).
const SPARK_SAMPLES: usize = 60;

#[derive(Debug, Default)]
pub struct QueueView {
    queue: Remote<Queue>,
    fetch: InFlight,
    throughput: VecDeque<u64>,
    /// In the failed jobs.
    selection: Selection,
}

impl QueueView {
    pub fn state(&self) -> &Remote<Queue> {
        &self.queue
    }

    /// Jobs per minute, one sample per answer, oldest first.
    pub fn throughput(&self) -> Vec<u64> {
        self.throughput.iter().copied().collect()
    }

    pub fn visible_failed(&self, filter: &str) -> Vec<&FailedJob> {
        let all = self.queue.data.as_ref().map(|q| q.failed_jobs.as_slice()).unwrap_or_default();
        all.iter().filter(|f| f.matches(filter)).collect()
    }

    pub fn selection(&self) -> usize {
        self.selection.index()
    }

    // ---- its part of the update ---------------------------------------------------------

    pub fn fetch(&mut self) -> Option<Command> {
        self.fetch.send_if_idle(Command::FetchQueue)
    }

    pub fn loaded(&mut self, result: Result<Queue, ApiError>, filter: &str) {
        self.fetch.mark_answered();
        if let Ok(queue) = &result {
            self.throughput.push_back(queue.throughput_per_minute);
            while self.throughput.len() > SPARK_SAMPLES {
                self.throughput.pop_front();
            }
        }
        self.queue.set(result);
        self.selection.clamp(self.visible_failed(filter).len());
    }

    pub fn move_selection(&mut self, delta: i64, filter: &str) {
        self.selection.step(self.visible_failed(filter).len(), delta);
    }

    pub fn reset_selection(&mut self) {
        self.selection.reset();
    }

    pub fn retry(&self, filter: &str) -> Option<Command> {
        let job = self.visible_failed(filter).get(self.selection.index()).copied()?;
        Some(Command::RetryJob(job.job.clone()))
    }
}
