//! The image pipeline: everything imageapi does to image bytes.
//!
//! - [`probe`] (upload time): cheap validation of an upload without decoding pixels: format by
//!   magic bytes, header dimensions, EXIF orientation, size limits and a structural
//!   completeness check.
//! - [`make_thumbnails`] (worker): one decode, planned with its memory (`plan`), EXIF
//!   orientation, Lanczos3 resizes with `fast_image_resize`, and re-encoding in the source's
//!   format without metadata.
//! - [`render`] (worker): the same from one decode, with each height also in WebP and/or AVIF
//!   (`encode`) from the same resized pixels, and the image's ThumbHash (`thumbhash`).
//! - Every decoder, in both, reads the file through `decoder_input`, which shows it no
//!   metadata but the orientation: nothing a client adds to a file can make a decoder hold
//!   or inflate more than the pixels it asks for.
//!
//! The format, the limits and the thumbnail geometry are `imageapi_core::image`'s; this file
//! holds what both halves share of decoding (orientation, the EXIF size bound). The module only uses `super::`/`crate::pipeline`
//! paths so that the directory can be moved between crates unchanged.

mod avif;
mod cores;
mod decoder_input;
mod encode;
#[cfg(feature = "fuzzing")]
pub mod fuzzing;
mod jpeg;
mod plan;
mod probe;
mod structure;
mod thumbhash;
mod thumbnail;

#[cfg(test)]
mod abuse_tests;
#[cfg(test)]
mod corpus_tests;
#[cfg(test)]
mod formats_bench;
#[cfg(test)]
mod render_tests;
#[cfg(test)]
mod test_support;

pub use cores::set_thread_budget;
pub use encode::{WEBP_METHOD, WEBP_QUALITY};
pub use plan::render_memory_estimate;
pub use probe::{probe, Probe, ProbeError};
pub use thumbhash::THUMBHASH_MAX_SIDE;
pub use thumbnail::{make_thumbnails, render, Encoded, Original, Rendered, RenderedHeight, Thumbnail, ThumbnailError};

use image::metadata::Orientation;
pub(crate) use imageapi_core::image::{thumbnail_size, ImageFormat, Limits, PNG_SIGNATURE};

/// The `image` crate's name for a format imageapi accepts.
fn image_crate_format(format: ImageFormat) -> image::ImageFormat {
    match format {
        ImageFormat::Jpeg => image::ImageFormat::Jpeg,
        ImageFormat::Png => image::ImageFormat::Png,
    }
}

/// The most `eXIf` data a PNG may carry, the one metadata chunk decoders are shown (see
/// [`decoder_input`]): a camera's EXIF fits in JPEG's 64 KiB segment; 1 MiB leaves room for
/// tools that add more, and keeps what a decoder copies of it small.
pub(crate) const MAX_PNG_EXIF_BYTES: u64 = 1024 * 1024;

/// Checks the size of a PNG's `eXIf` data against [`MAX_PNG_EXIF_BYTES`].
pub(crate) fn check_exif_size(bytes: u64) -> Result<(), String> {
    if bytes > MAX_PNG_EXIF_BYTES {
        return Err(format!("the PNG carries {bytes} bytes of EXIF data; the limit is {MAX_PNG_EXIF_BYTES} bytes"));
    }
    Ok(())
}

/// Whether an EXIF orientation turns the image by a quarter turn (EXIF values 5-8), so that
/// the displayed width is the stored height.
pub(crate) fn swaps_dimensions(orientation: Orientation) -> bool {
    matches!(
        orientation,
        Orientation::Rotate90 | Orientation::Rotate270 | Orientation::Rotate90FlipH | Orientation::Rotate270FlipH
    )
}

/// Reads the EXIF orientation from an open decoder (headers only).
///
/// Broken or unreadable EXIF is not worth refusing an image for: it is shown as stored, the
/// way browsers do. Probe and thumbnails both use this, so their dimensions always agree.
pub(crate) fn read_orientation(decoder: &mut impl image::ImageDecoder) -> Orientation {
    decoder.orientation().unwrap_or(Orientation::NoTransforms)
}
