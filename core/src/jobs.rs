//! The thumbnail job a server enqueues and the outcome a worker reports back.
//!
//! A job names an image and the heights still to make; the worker reads the original from the
//! blob store, writes each thumbnail back, and reports one [`JobReport`] with a
//! [`ThumbnailOutcome`] per height. Applying a report twice must be harmless, so outcomes carry
//! everything needed to apply them.

use serde::{Deserialize, Serialize};

use crate::domain::{ImageId, JobId, UserId};
use crate::image::{ImageFormat, ThumbnailFormat};

/// Make these thumbnails of one image, all from one decode.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ThumbnailJob {
    /// Unique per job and time-ordered (it tells when the job was created).
    pub id: JobId,
    pub image_id: ImageId,
    pub format: ImageFormat,
    pub heights: Vec<u32>,
    /// The encodings to make of every height: the source's own and/or the extra formats the
    /// owner's tier grants. Jobs recorded before formats existed make the source's only.
    #[serde(default = "source_only")]
    pub formats: Vec<ThumbnailFormat>,
    /// Whose image it is: jobs are handed to the queue in turn per owner, so one user's
    /// backlog cannot hold up everyone else's thumbnails. `None` in jobs recorded before.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<UserId>,
}

fn source_only() -> Vec<ThumbnailFormat> {
    vec![ThumbnailFormat::Source]
}

impl ThumbnailJob {
    /// Every (height, encoding) this job makes.
    pub fn variants(&self) -> impl Iterator<Item = (u32, ThumbnailFormat)> + '_ {
        self.heights.iter().flat_map(|&h| self.formats.iter().map(move |&f| (h, f)))
    }
}

/// What became of one variant (a requested height in one encoding).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ThumbnailOutcome {
    pub image_id: ImageId,
    /// The image's format, which names the thumbnail blob (to clean up after a deleted image).
    pub format: ImageFormat,
    pub requested_height: u32,
    /// The variant's encoding; reports from before formats existed are the source's.
    #[serde(default)]
    pub variant: ThumbnailFormat,
    pub result: ThumbnailResult,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "lowercase")]
pub enum ThumbnailResult {
    /// The thumbnail is in the blob store (under the key `BlobKey::thumbnail` names).
    Ready { width: u32, height: u32, size_bytes: u64 },
    /// It cannot be made; the reason is shown to the user.
    Failed { reason: String },
}

/// Everything a finished job reports, in one message: the server applies it atomically and
/// then forgets the job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobReport {
    pub job_id: JobId,
    pub image_id: ImageId,
    pub outcomes: Vec<ThumbnailOutcome>,
    /// The image's ThumbHash (base64), computed from the same decode; `None` when the job could
    /// not decode the image, or from workers that predate it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thumbhash: Option<String>,
    /// The worker that ran it (for logs).
    pub worker: String,
    /// Time spent on the job by the worker, in milliseconds.
    pub duration_ms: u64,
}
