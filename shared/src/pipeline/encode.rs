//! WebP and AVIF encoders of thumbnail variants (issue 31): both work on one thumbnail-sized,
//! un-premultiplied, oriented 8-bit image, the same pixels the source-format thumbnail is
//! encoded from, and write no metadata (no EXIF, XMP or ICC: the pixels are sRGB).
//!
//! Settings come from measurement on the corpus (200 and 400 px, SSIM against the slow
//! reference, bytes against our JPEG thumbnail): see "Modern formats" in docs/BENCHMARKS.md and
//! the ignored test `corpus_tests::modern_formats_table` that made the table.

use image::DynamicImage;

/// WebP (lossy) quality, libwebp's 0-100 scale.
pub const WEBP_QUALITY: f32 = 88.0;
/// libwebp's effort (0 fastest .. 6 smallest). 4 is libwebp's (and cwebp's) default.
pub const WEBP_METHOD: i32 = 4;
/// AVIF quality, ravif's 1-100 scale (it maps to rav1e's quantizer).
pub const AVIF_QUALITY: f32 = 85.0;
/// rav1e's speed preset (0 slowest .. 10 fastest).
pub const AVIF_SPEED: u8 = 8;

/// How WebP and AVIF variants are encoded. Only the benchmark changes these; the pipeline
/// uses [`EncodeSettings::default`], the constants above.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct EncodeSettings {
    pub webp_quality: f32,
    pub webp_method: i32,
    /// Whether WebP variants of PNG sources are lossless (true) or lossy with an alpha plane.
    pub webp_png_lossless: bool,
    pub avif_quality: f32,
    pub avif_speed: u8,
    /// AVIF bit depth: 8 or 10.
    pub avif_depth: u8,
}

impl Default for EncodeSettings {
    fn default() -> Self {
        EncodeSettings {
            webp_quality: WEBP_QUALITY,
            webp_method: WEBP_METHOD,
            webp_png_lossless: false,
            avif_quality: AVIF_QUALITY,
            avif_speed: AVIF_SPEED,
            avif_depth: 8,
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

/// Encodes an AVIF variant with rav1e through ravif: 4:4:4 YCbCr, full range, signalled as
/// sRGB (BT.709 primaries, sRGB transfer, BT.601 matrix in the `colr` nclx box, all written by
/// ravif), alpha as a separate lossless-quality plane when any pixel is not opaque (ravif
/// drops an all-opaque alpha by itself). No EXIF.
pub(crate) fn encode_avif(image: &DynamicImage, settings: &EncodeSettings) -> Result<Vec<u8>, String> {
    use ravif::{AlphaColorMode, BitDepth, Encoder, Img, RGB8, RGBA8};
    let (width, height) = (image.width() as usize, image.height() as usize);
    let depth = if settings.avif_depth >= 10 { BitDepth::Ten } else { BitDepth::Eight };
    let encoder = Encoder::new()
        .with_quality(settings.avif_quality)
        .with_alpha_quality(100.0)
        .with_speed(settings.avif_speed)
        .with_bit_depth(depth)
        .with_num_threads(Some(1))
        // Colour under fully transparent pixels is invisible: let it compress to nothing.
        .with_alpha_color_mode(AlphaColorMode::UnassociatedClean);
    let encoded = match packed(image) {
        Packed::Rgb(p) => {
            let pixels: Vec<RGB8> = p.chunks_exact(3).map(|c| RGB8::new(c[0], c[1], c[2])).collect();
            encoder.encode_rgb(Img::new(pixels.as_slice(), width, height))
        }
        Packed::Rgba(p) => {
            let pixels: Vec<RGBA8> = p.chunks_exact(4).map(|c| RGBA8::new(c[0], c[1], c[2], c[3])).collect();
            encoder.encode_rgba(Img::new(pixels.as_slice(), width, height))
        }
    };
    encoded.map(|e| e.avif_file).map_err(|err| format!("rav1e: {err} ({width}x{height} px)"))
}
