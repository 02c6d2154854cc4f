//! WebP and AVIF encoders of thumbnail variants (issue 31): both work on one thumbnail-sized,
//! un-premultiplied, oriented 8-bit image, the same pixels the source-format thumbnail is
//! encoded from, and write no metadata (no EXIF, XMP or ICC: the pixels are sRGB).
//!
//! Settings come from measurement on the corpus (200 and 400 px, SSIM against the slow
//! reference, bytes against our JPEG thumbnail): see "Modern formats" in docs/BENCHMARKS.md and
//! the ignored test `corpus_tests::modern_formats_table` that made the table.

use image::DynamicImage;

pub(crate) use super::avif::AvifSettings;

/// WebP (lossy) quality, libwebp's 0-100 scale.
pub const WEBP_QUALITY: f32 = 88.0;
/// libwebp's effort (0 fastest .. 6 smallest). 4 is libwebp's (and cwebp's) default.
pub const WEBP_METHOD: i32 = 4;
/// How WebP and AVIF variants are encoded. Only the benchmark changes these; the pipeline
/// uses [`EncodeSettings::default`], the constants above and [`AvifSettings::default`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct EncodeSettings {
    pub webp_quality: f32,
    pub webp_method: i32,
    /// Whether WebP variants of PNG sources are lossless (true) or lossy with an alpha plane.
    pub webp_png_lossless: bool,
    pub avif: AvifSettings,
}

impl Default for EncodeSettings {
    fn default() -> Self {
        EncodeSettings {
            webp_quality: WEBP_QUALITY,
            webp_method: WEBP_METHOD,
            webp_png_lossless: false,
            avif: AvifSettings::default(),
        }
    }
}

/// The pixels as packed RGB or RGBA 8-bit (gray is expanded: neither encoder takes gray
/// input), borrowed when already so.
enum Packed<'a> {
    Rgb(std::borrow::Cow<'a, [u8]>),
    Rgba(std::borrow::Cow<'a, [u8]>),
}

fn packed(image: &DynamicImage) -> Packed<'_> {
    use std::borrow::Cow;
    match image {
        DynamicImage::ImageRgb8(rgb) => Packed::Rgb(Cow::Borrowed(rgb.as_raw())),
        DynamicImage::ImageRgba8(rgba) => Packed::Rgba(Cow::Borrowed(rgba.as_raw())),
        other if other.color().has_alpha() => Packed::Rgba(Cow::Owned(other.to_rgba8().into_raw())),
        other => Packed::Rgb(Cow::Owned(other.to_rgb8().into_raw())),
    }
}

/// Encodes a WebP variant.
///
/// JPEG sources: lossy at [`WEBP_QUALITY`]. PNG sources: lossy too, with the alpha plane kept
/// and compressed losslessly (`alpha_quality` 100), so transparency and its edges stay exact.
/// Measured on the corpus' three PNGs (libvips' 200 and 400 px thumbnails, 2026-12-07):
/// lossless WebP (effort 4) is 0.43-0.46x the PNG's bytes (23-242 KB), lossy q88 with alpha
/// 0.04-0.07x (3.6-21 KB), so lossless is 7-11x the bytes of lossy, whose SSIM against the
/// reference is within a few thousandths of the PNG's (docs/BENCHMARKS.md, "Modern formats").
/// A WebP variant exists to be small; the PNG variant already serves anyone who needs exact
/// pixels.
pub(crate) fn encode_webp(
    image: &DynamicImage,
    png_source: bool,
    settings: &EncodeSettings,
) -> Result<Vec<u8>, String> {
    let (width, height) = (image.width(), image.height());
    let pixels = packed(image);
    let encoder = match &pixels {
        Packed::Rgb(p) => webp::Encoder::from_rgb(p, width, height),
        Packed::Rgba(p) => webp::Encoder::from_rgba(p, width, height),
    };
    let mut config = webp::WebPConfig::new().map_err(|()| "libwebp rejected its default configuration".to_owned())?;
    let lossless = png_source && settings.webp_png_lossless;
    config.lossless = i32::from(lossless);
    config.quality = if lossless { 25.0 } else { settings.webp_quality };
    config.method = if lossless { 1 } else { settings.webp_method };
    // Lossless alpha plane (1 = compressed losslessly, 100 = no alpha quantisation).
    config.alpha_compression = 1;
    config.alpha_quality = 100;
    // One job, one core (see `cores`): no encoder threads.
    config.thread_level = 0;
    let encoded = encoder.encode_advanced(&config).map_err(|err| format!("libwebp: {err:?} ({width}x{height} px)"))?;
    Ok(encoded.to_vec())
}
