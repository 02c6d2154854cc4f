//! What an image is to imageapi before any pixel is decoded: its format, the limits an upload
//! must meet, and the size of a thumbnail of it.

/// The image formats imageapi accepts. Anything else is rejected at upload.
/// Serialised as `"jpeg"` / `"png"` (job payloads, metadata records).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ImageFormat {
    Jpeg,
    Png,
}

impl ImageFormat {
    /// The MIME type to serve the original and its thumbnails with.
    pub fn mime(self) -> &'static str {
        match self {
            ImageFormat::Jpeg => "image/jpeg",
            ImageFormat::Png => "image/png",
        }
    }

    /// File-name extension without the dot.
    pub fn extension(self) -> &'static str {
        match self {
            ImageFormat::Jpeg => "jpg",
            ImageFormat::Png => "png",
        }
    }

    /// The name used in the API's image object (`"format": "jpeg"`).
    pub fn as_str(self) -> &'static str {
        match self {
            ImageFormat::Jpeg => "jpeg",
            ImageFormat::Png => "png",
        }
    }

    /// Detects the format from the first bytes only (never from a name or a declared type).
    pub fn detect(bytes: &[u8]) -> Option<ImageFormat> {
        if bytes.starts_with(&PNG_SIGNATURE) {
            Some(ImageFormat::Png)
        } else if bytes.starts_with(&JPEG_MAGIC) {
            Some(ImageFormat::Jpeg)
        } else {
            None
        }
    }
}

impl std::fmt::Display for ImageFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The formats a tier can grant beyond the source's own: every thumbnail is made in the
/// source's format, and in each of these that its owner's tier grants.
/// Serialised as `"webp"` / `"avif"` (tier records, the admin API).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum ExtraFormat {
    Webp,
    Avif,
}

impl ExtraFormat {
    pub const ALL: [ExtraFormat; 2] = [ExtraFormat::Webp, ExtraFormat::Avif];

    pub fn as_str(self) -> &'static str {
        match self {
            ExtraFormat::Webp => "webp",
            ExtraFormat::Avif => "avif",
        }
    }

    pub fn mime(self) -> &'static str {
        match self {
            ExtraFormat::Webp => "image/webp",
            ExtraFormat::Avif => "image/avif",
        }
    }

    pub fn parse(name: &str) -> Option<ExtraFormat> {
        Self::ALL.into_iter().find(|f| f.as_str() == name)
    }
}

impl std::fmt::Display for ExtraFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The encoding of one thumbnail variant: the source's own format, or a granted extra one.
/// Serialised as `"source"` / `"webp"` / `"avif"` (job payloads and reports, records).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ThumbnailFormat {
    /// JPEG for a JPEG original, PNG for a PNG one.
    #[default]
    Source,
    Webp,
    Avif,
}

impl ThumbnailFormat {
    pub fn extra(self) -> Option<ExtraFormat> {
        match self {
            ThumbnailFormat::Source => None,
            ThumbnailFormat::Webp => Some(ExtraFormat::Webp),
            ThumbnailFormat::Avif => Some(ExtraFormat::Avif),
        }
    }

    pub fn is_source(self) -> bool {
        self == ThumbnailFormat::Source
    }

    /// The MIME type of this variant of a thumbnail of a `source` image.
    pub fn mime(self, source: ImageFormat) -> &'static str {
        self.extra().map_or(source.mime(), ExtraFormat::mime)
    }

    /// The file-name extension (no dot) of this variant of a thumbnail of a `source` image.
    pub fn extension(self, source: ImageFormat) -> &'static str {
        self.extra().map_or(source.extension(), ExtraFormat::as_str)
    }

    /// The wire name of the actual format: `"jpeg"`, `"png"`, `"webp"` or `"avif"`.
    pub fn name(self, source: ImageFormat) -> &'static str {
        self.extra().map_or(source.as_str(), ExtraFormat::as_str)
    }
}

impl From<ExtraFormat> for ThumbnailFormat {
    fn from(f: ExtraFormat) -> Self {
        match f {
            ExtraFormat::Webp => ThumbnailFormat::Webp,
            ExtraFormat::Avif => ThumbnailFormat::Avif,
        }
    }
}

/// The 8-byte PNG file signature.
pub const PNG_SIGNATURE: [u8; 8] = [0x89, b'P', b'N', b'G', b'\r', b'\n', 0x1A, b'\n'];
/// SOI followed by the 0xFF that starts the next marker: every real JPEG starts like this.
pub const JPEG_MAGIC: [u8; 3] = [0xFF, 0xD8, 0xFF];

/// Upload limits. Over any of them an upload is refused (HTTP 413) from its header alone.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Maximum size of the uploaded file in bytes.
    pub max_bytes: u64,
    /// Maximum width x height.
    pub max_pixels: u64,
    /// Maximum width and maximum height.
    pub max_side: u32,
    /// Maximum number of scans in a JPEG (progressive files have several; see [`Limits::check_scans`]).
    pub max_scans: u32,
    /// Most memory, in bytes, one image's render may need, as estimated from its headers (see
    /// the pipeline's `render_memory_estimate`): over it an upload is refused when even its smallest
    /// thumbnail would be, and a job fails before it decodes anything.
    pub max_decode_memory: u64,
}

/// The default of [`Limits::max_decode_memory`]: the largest image the other limits accept,
/// 100 megapixels of 16-bit RGBA PNG, needs about 1.2 GB.
pub const DEFAULT_MAX_DECODE_MEMORY_MIB: u64 = 1536;

impl Default for Limits {
    fn default() -> Self {
        // 64 scans: the corpus' progressive photos have 10 and 12, libjpeg's default script 10.
        Limits {
            max_bytes: 25 * 1024 * 1024,
            max_pixels: 100_000_000,
            max_side: 30_000,
            max_scans: 64,
            max_decode_memory: DEFAULT_MAX_DECODE_MEMORY_MIB * 1024 * 1024,
        }
    }
}

impl Limits {
    /// Checks stored dimensions against the side and pixel limits; the message names the limit.
    pub fn check_dimensions(&self, width: u32, height: u32) -> Result<(), String> {
        if width > self.max_side || height > self.max_side {
            return Err(format!("image is {width}x{height} px; the limit is {} px per side", self.max_side));
        }
        let pixels = u64::from(width) * u64::from(height);
        if pixels > self.max_pixels {
            return Err(format!(
                "image is {width}x{height} px ({pixels} pixels); the limit is {} pixels",
                self.max_pixels
            ));
        }
        Ok(())
    }

    /// Checks a JPEG's scan count: decoding costs time in proportion to the scans, and a small
    /// file can carry thousands of them.
    pub fn check_scans(&self, scans: u32) -> Result<(), String> {
        if scans > self.max_scans {
            return Err(format!("the JPEG has {scans} scans; the limit is {}", self.max_scans));
        }
        Ok(())
    }

    /// Checks a render's memory estimate against `max_decode_memory`; `what` says what is
    /// decoded how.
    pub fn check_decode_memory(&self, needed: u64, what: &str) -> Result<(), String> {
        if needed > self.max_decode_memory {
            return Err(format!(
                "decoding {what} would take about {} MiB of memory; the limit is {} MiB",
                mib(needed),
                mib(self.max_decode_memory)
            ));
        }
        Ok(())
    }

    /// Checks a byte length against `max_bytes`.
    pub fn check_bytes(&self, len: usize) -> Result<(), String> {
        // usize -> u64 never truncates on supported targets; saturate to be safe anyway.
        let len = u64::try_from(len).unwrap_or(u64::MAX);
        if len > self.max_bytes {
            return Err(format!("file is {len} bytes; the limit is {} bytes", self.max_bytes));
        }
        Ok(())
    }
}

/// Bytes as whole MiB, rounded up: the unit of memory messages.
pub fn mib(bytes: u64) -> u64 {
    bytes.div_ceil(1024 * 1024)
}

/// Size of a thumbnail of the given target height.
///
/// The height is `min(target_height, src_height)` (a thumbnail never enlarges); the width keeps
/// the source's aspect ratio, rounded to the nearest pixel (halves round up) and at least 1.
/// Degenerate input (a zero source side or a zero target) gives `(0, 0)`: there is no
/// meaningful thumbnail, and callers reject zero heights before getting here.
pub fn thumbnail_size(src_width: u32, src_height: u32, target_height: u32) -> (u32, u32) {
    let height = target_height.min(src_height);
    if height == 0 || src_width == 0 {
        return (0, 0);
    }
    // Exact integer rounding (halves up) in u128, where nothing can overflow. The quotient is
    // at most src_width because height <= src_height, so it fits back into u32.
    let numerator = u128::from(src_width) * u128::from(height);
    let denominator = u128::from(src_height);
    let rounded = (2 * numerator + denominator) / (2 * denominator);
    let width = u32::try_from(rounded).unwrap_or(src_width).max(1);
    (width, height)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thumbnail_size_rounds_the_width_to_the_nearest_pixel() {
        assert_eq!(thumbnail_size(6028, 3391, 200), (356, 200));
        assert_eq!(thumbnail_size(6028, 3391, 400), (711, 400));
        assert_eq!(thumbnail_size(5120, 2880, 200), (356, 200));
        assert_eq!(thumbnail_size(1080, 1920, 200), (113, 200));
        // 3 * 100 / 200 = 1.5 rounds up to 2.
        assert_eq!(thumbnail_size(3, 200, 100), (2, 100));
    }

    #[test]
    fn thumbnail_size_never_enlarges_a_short_source() {
        assert_eq!(thumbnail_size(300, 150, 200), (300, 150));
        assert_eq!(thumbnail_size(3000, 1, 200), (3000, 1));
    }

    #[test]
    fn thumbnail_size_keeps_at_least_one_pixel_of_width() {
        assert_eq!(thumbnail_size(1, 1000, 200), (1, 200));
        assert_eq!(thumbnail_size(1, 30_000, 1), (1, 1));
    }

    #[test]
    fn thumbnail_size_handles_extreme_values_without_overflow() {
        assert_eq!(thumbnail_size(u32::MAX, u32::MAX, u32::MAX), (u32::MAX, u32::MAX));
        assert_eq!(thumbnail_size(u32::MAX, 1, 200), (u32::MAX, 1));
        assert_eq!(thumbnail_size(0, 100, 200), (0, 0));
        assert_eq!(thumbnail_size(100, 0, 200), (0, 0));
        assert_eq!(thumbnail_size(100, 100, 0), (0, 0));
    }

    #[test]
    fn image_format_names_match_the_api() {
        assert_eq!(ImageFormat::Jpeg.mime(), "image/jpeg");
        assert_eq!(ImageFormat::Png.mime(), "image/png");
        assert_eq!(ImageFormat::Jpeg.extension(), "jpg");
        assert_eq!(ImageFormat::Png.extension(), "png");
        assert_eq!(ImageFormat::Jpeg.as_str(), "jpeg");
        assert_eq!(ImageFormat::Png.as_str(), "png");
    }

    #[test]
    fn limit_messages_name_the_limit() {
        let limits = Limits::default();
        let side = limits.check_dimensions(60_000, 100);
        assert_eq!(side, Err("image is 60000x100 px; the limit is 30000 px per side".to_string()));
        let pixels = limits.check_dimensions(20_000, 20_000);
        assert!(pixels.is_err_and(|m| m.contains("the limit is 100000000 pixels")));
        assert!(limits.check_dimensions(10_000, 10_000).is_ok());
        assert!(limits.check_bytes(25 * 1024 * 1024).is_ok());
        assert!(limits.check_bytes(25 * 1024 * 1024 + 1).is_err_and(|m| m.contains("the limit is 26214400 bytes")));
    }
}
