//! The thumbnail job a server enqueues and the outcome a worker reports back.
//!
//! A job names an image and the heights still to make; the worker reads the original from the
//! blob store, writes each thumbnail back, and reports one [`ThumbnailOutcome`] per height.
//! Applying an outcome twice must be harmless, so outcomes carry everything needed to apply them.

use serde::{Deserialize, Serialize};

use crate::domain::ImageId;
use crate::pipeline::ImageFormat;

/// Make these thumbnails of one image, all from one decode.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ThumbnailJob {
    pub image_id: ImageId,
    pub format: ImageFormat,
    pub heights: Vec<u32>,
}

/// What became of one requested height.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ThumbnailOutcome {
    pub image_id: ImageId,
    /// The image's format, which names the thumbnail blob (to clean up after a deleted image).
    pub format: ImageFormat,
    pub requested_height: u32,
    pub result: ThumbnailResult,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "lowercase")]
pub enum ThumbnailResult {
    /// The thumbnail is in the blob store under [`crate::store::BlobKey::thumbnail`].
    Ready { width: u32, height: u32, size_bytes: u64 },
    /// It cannot be made; the reason is shown to the user.
    Failed { reason: String },
}
