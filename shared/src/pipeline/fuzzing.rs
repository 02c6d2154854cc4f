//! Entry points for `imageapi-fuzz` (feature `fuzzing`): the parts of the pipeline that the
//! public API reaches only behind the upload check, opened to a fuzzer.

use super::jpeg::{recycle, ScaledJpeg};

/// Most stored pixels the fuzzed decoder is given (anything that grows with the full size,
/// like a progressive file's coefficients, stays bounded; the real flow's memory plan does
/// this per file).
const MAX_STORED_PIXELS: u64 = 16_000_000;

/// Runs imageapi's own JPEG decoder at `eighths`/8 on any bytes, unless its headers promise
/// more than `max_decoded_bytes` of pixels. True if it decoded an image.
pub fn decode_jpeg_scaled(data: &[u8], eighths: u32, max_decoded_bytes: u64) -> bool {
    let Ok(jpeg) = ScaledJpeg::read(data) else { return false };
    let (width, height) = jpeg.dimensions();
    let scaled = |side: u32| (u64::from(side) * u64::from(eighths)).div_ceil(8);
    if u64::from(width) * u64::from(height) > MAX_STORED_PIXELS
        || scaled(width) * scaled(height) * 4 > max_decoded_bytes
    {
        return false;
    }
    // Two threads where the file allows, so the parallel paths are fuzzed too.
    match jpeg.decode(eighths, jpeg.useful_threads().min(2)) {
        Ok(image) => {
            recycle(image);
            true
        }
        Err(_) => false,
    }
}
