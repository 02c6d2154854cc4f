//! How a render decodes its original, and the most memory that may take, decided from the
//! headers before any pixel is decoded.
//!
//! A JPEG goes to imageapi's own decoder at a reduced DCT scale when it reads the file; what
//! it declines (CMYK, RGB-coded, unusual sampling, or a thumbnail that needs full size) goes to
//! `jpeg-decoder`, and, if that fails, to the `image` crate's full-size decode; a PNG to the
//! `image` crate. The estimate ([`Plan::memory`]) is the first decoder's cost plus the work
//! after it, and a fallback decoder runs only if its own cost fits within it: so the estimate
//! bounds the render whichever decoder ends up making the pixels, a worker can keep the renders
//! it runs side by side within its budget, and one over the ceiling
//! (`Limits::max_decode_memory`) is refused before it starts (at upload already, when even
//! its smallest thumbnail would be).

use image::metadata::Orientation;
use image::ImageDecoder;

use super::decoder_input::DecoderInput;
use super::jpeg::{self, ScaledJpeg};
use super::structure::{self, JpegFrame};
use super::{read_orientation, swaps_dimensions, thumbnail_size, ImageFormat, Limits};
use imageapi_core::image::ThumbnailFormat;

const MIB: u64 = 1024 * 1024;
/// The source-format encoders, the resizer's coefficients and the decoders' small buffers.
const MARGIN: u64 = 8 * MIB;
/// libwebp's working memory per pixel of the thumbnail it encodes, rounded up: measured (peak
/// RSS with and without the WebP variant, `/usr/bin/time -v` on `render-repeat`, one thread)
/// at 5-11 bytes a pixel on 0.28 and 3.7 MP thumbnails of the corpus' safelanding and kay.
const WEBP_BYTES_PER_PIXEL: u64 = 16;
/// The AVIF encoder's (libavif + libaom) working memory per pixel of the thumbnail it encodes,
/// rounded up: peak RSS with and without AVIF, measured on the RGBA kay artwork at 31 bytes a
/// pixel for a 14.7 MP thumbnail and 50 for a 0.28 MP one (its fixed part weighs more there),
/// alpha plane included (rav1e, before it, measured 27-45).
const AVIF_BYTES_PER_PIXEL: u64 = 64;

/// What a header read through a [`DecoderInput`] says (so no metadata but the orientation is
/// read, whatever the file holds).
pub(super) struct Header {
    /// Stored width and height.
    pub width: u32,
    pub height: u32,
    pub orientation: Orientation,
    /// Bytes the `image` crate decodes the whole image to.
    pub decoded_bytes: u64,
    pub alpha: bool,
}

impl Header {
    /// Reads the header. No width or height limits here: callers check them with messages
    /// that name our limits, and nothing is allocated per pixel while reading a header.
    pub fn read(bytes: &[u8], format: ImageFormat) -> Result<Header, image::ImageError> {
        let headers = structure::header_bytes(bytes, format);
        let mut reader =
            image::ImageReader::with_format(DecoderInput::new(headers, format), super::image_crate_format(format));
        let mut limits = image::Limits::default();
        limits.max_image_width = None;
        limits.max_image_height = None;
        reader.limits(limits);
        let mut decoder = reader.into_decoder()?;
        let (width, height) = decoder.dimensions();
        Ok(Header {
            width,
            height,
            decoded_bytes: decoder.total_bytes(),
            alpha: decoder.color_type().has_alpha(),
            orientation: read_orientation(&mut decoder),
        })
    }
}

/// The decoder a render starts with.
pub(super) enum Decoder<'a> {
    /// imageapi's own JPEG decoder at `eighths`/8.
    Scaled { jpeg: ScaledJpeg<'a>, eighths: u32 },
    /// `jpeg-decoder` at `eighths`/8 (8: full size).
    General { eighths: u32 },
    /// The `image` crate, at full size.
    Image,
}

/// How one render decodes its original, and what that may cost.
pub(super) struct Plan<'a> {
    pub decoder: Decoder<'a>,
    /// What a reduced JPEG decode must cover (stored orientation), for the fallbacks.
    pub min_size: (u32, u32),
    /// The most bytes the render may use: its first decoder, the work after it, the original
    /// and a margin. Fallback decoders must fit within it too.
    pub memory: u64,
    format: ImageFormat,
    header: HeaderFacts,
    frame: Option<JpegFrame>,
    original_len: u64,
    /// The thumbnails' pixels, summed over the distinct heights.
    thumbnail_pixels: u64,
    /// The tallest thumbnail as stored (before orientation): the resizer's intermediate is
    /// the decoded width × this.
    tallest_stored: u32,
    /// The largest thumbnail's pixels: the WebP and AVIF encoders work on one thumbnail at a
    /// time.
    largest_thumbnail_pixels: u64,
}

/// The header facts the costs need.
struct HeaderFacts {
    width: u32,
    height: u32,
    decoded_bytes: u64,
    alpha: bool,
}

impl<'a> Plan<'a> {
    /// Plans rendering `heights` (all at least 1) from `original`, whose header is `header`.
    pub fn new(original: &'a [u8], format: ImageFormat, header: &Header, heights: &[u32]) -> Plan<'a> {
        let swap = swaps_dimensions(header.orientation);
        let (width, height) = (header.width, header.height);
        let (display_width, display_height) = if swap { (height, width) } else { (width, height) };
        let mut distinct = heights.to_vec();
        distinct.sort_unstable();
        distinct.dedup();
        let (mut thumbnail_pixels, mut tallest_stored) = (0u64, 0u32);
        for &h in &distinct {
            let (tw, th) = thumbnail_size(display_width, display_height, h);
            thumbnail_pixels += u64::from(tw) * u64::from(th);
            tallest_stored = tallest_stored.max(if swap { tw } else { th });
        }
        // A JPEG is decoded to a little more than the largest thumbnail, in stored orientation.
        let largest = distinct.last().copied().unwrap_or(1);
        let (thumb_width, thumb_height) = thumbnail_size(display_width, display_height, largest);
        let largest_thumbnail_pixels = u64::from(thumb_width) * u64::from(thumb_height);
        let (need_width, need_height) = if swap { (thumb_height, thumb_width) } else { (thumb_width, thumb_height) };
        let min_size = jpeg::min_decoded_size(need_width, need_height);

        let (decoder, frame) = match format {
            ImageFormat::Png => (Decoder::Image, None),
            ImageFormat::Jpeg => {
                let eighths = jpeg::reduced_scale(width, height, min_size.0, min_size.1);
                let ours = ScaledJpeg::read(original)
                    .inspect_err(|e| tracing::debug!(error = %e, "imageapi's JPEG decoder declines the file"))
                    .ok()
                    .filter(|jpeg| jpeg.dimensions() == (width, height));
                let decoder = match (ours, eighths) {
                    (Some(jpeg), Some(eighths)) => Decoder::Scaled { jpeg, eighths },
                    (_, eighths) => Decoder::General { eighths: eighths.unwrap_or(8) },
                };
                // No frame header to read here means none of the decoders will get far; until
                // then, count it as the costliest kind (four components, progressive).
                let frame = JpegFrame::read(original).unwrap_or(JpegFrame {
                    marker: 0xC2,
                    precision: 8,
                    width,
                    height,
                    sampling: vec![(1, 1); 4],
                });
                (decoder, Some(frame))
            }
        };
        let mut plan = Plan {
            decoder,
            min_size,
            memory: 0,
            format,
            header: HeaderFacts { width, height, decoded_bytes: header.decoded_bytes, alpha: header.alpha },
            frame,
            original_len: original.len() as u64,
            thumbnail_pixels,
            tallest_stored,
            largest_thumbnail_pixels,
        };
        plan.memory = match &plan.decoder {
            Decoder::Scaled { eighths, .. } => plan.scaled_memory(*eighths),
            Decoder::General { eighths } => plan.general_memory(*eighths),
            Decoder::Image => plan.image_memory(),
        };
        plan
    }

    /// imageapi's decoder: RGB out, three components' planes of 16-bit samples at the scale,
    /// and a progressive file's one bit per coefficient of the whole image.
    fn scaled_memory(&self, eighths: u32) -> u64 {
        let pixels = self.pixels();
        let (width, height) = jpeg::scaled_size(self.header.width, self.header.height, eighths);
        let scaled = u64::from(width) * u64::from(height);
        self.with_work(scaled * 3 + scaled * 6 + pixels * 3 / 8, width)
    }

    /// `jpeg-decoder` at `eighths`/8 (see [`jpeg::general_decoder_memory`]).
    pub fn general_memory(&self, eighths: u32) -> u64 {
        let Some(frame) = &self.frame else { return u64::MAX };
        let (width, _) = jpeg::scaled_size(self.header.width, self.header.height, eighths);
        self.with_work(jpeg::general_decoder_memory(frame, eighths), width)
    }

    /// The `image` crate at full size. A PNG: its decoded pixels and the 8-bit copy made for
    /// resizing. A JPEG (zune-jpeg): its own copy of the file, a progressive file's every
    /// coefficient, and the 8-bit output (CMYK comes out as RGB).
    pub fn image_memory(&self) -> u64 {
        let pixels = self.pixels();
        let decode = match (&self.format, &self.frame) {
            (ImageFormat::Jpeg, Some(frame)) => {
                let coefficients = if frame.progressive() { frame.stored_blocks().saturating_mul(128) } else { 0 };
                let channels = if frame.sampling.len() == 1 { 1 } else { 3 };
                self.original_len.saturating_add(coefficients).saturating_add(pixels * channels)
            }
            _ => self.header.decoded_bytes.saturating_add(pixels * (3 + u64::from(self.header.alpha))),
        };
        self.with_work(decode, self.header.width)
    }

    /// A decoder's cost plus what follows it from a decode `decoded_width` wide: the resizer's
    /// intermediate (it resizes vertically first: that width × the thumbnail's height, at most
    /// 4 bytes a pixel), every thumbnail held up to five times at 4 bytes a pixel (the resized
    /// image, the copy being oriented, its turned copy, the encoded file, and the previous
    /// size kept to resize the next one from), the original, and the margin.
    fn with_work(&self, decode: u64, decoded_width: u32) -> u64 {
        let resize = u64::from(decoded_width) * u64::from(self.tallest_stored) * 4;
        decode
            .saturating_add(resize)
            .saturating_add(self.thumbnail_pixels * 20)
            .saturating_add(self.original_len)
            .saturating_add(MARGIN)
    }

    /// What the WebP and AVIF encoders add for `formats`: they run one after the other on one
    /// thumbnail at a time, so the costlier one on the largest thumbnail.
    pub fn encoder_memory(&self, formats: &[ThumbnailFormat]) -> u64 {
        let per_pixel = formats
            .iter()
            .map(|format| match format {
                ThumbnailFormat::Source => 0,
                ThumbnailFormat::Webp => WEBP_BYTES_PER_PIXEL,
                ThumbnailFormat::Avif => AVIF_BYTES_PER_PIXEL,
            })
            .max()
            .unwrap_or(0);
        self.largest_thumbnail_pixels.saturating_mul(per_pixel)
    }

    fn pixels(&self) -> u64 {
        u64::from(self.header.width) * u64::from(self.header.height)
    }

    /// Whether a fallback decoder costing `memory` fits within what the render was given.
    pub fn fits(&self, memory: u64) -> bool {
        memory <= self.memory
    }

    /// What is decoded how, for messages: "a 10000x10000 progressive CMYK JPEG at 1/8 size
    /// (with the general decoder, which keeps all of its coefficients)".
    pub fn describe(&self) -> String {
        let (width, height) = (self.header.width, self.header.height);
        let Some(frame) = &self.frame else { return format!("a {width}x{height} PNG at full size") };
        let kind = match frame.sampling.len() {
            1 => "grey ",
            3 => "",
            4 => "CMYK ",
            _ => "unusual ",
        };
        let progressive = if frame.progressive() { "progressive " } else { "" };
        let scale = |eighths: u32| if eighths == 8 { "full".to_owned() } else { format!("1/{}", 8 / eighths) };
        match &self.decoder {
            Decoder::Scaled { eighths, .. } => {
                format!("a {width}x{height} {progressive}{kind}JPEG at {} size", scale(*eighths))
            }
            Decoder::General { eighths } => format!(
                "a {width}x{height} {progressive}{kind}JPEG at {} size (with the general decoder{})",
                scale(*eighths),
                if frame.progressive() { ", which keeps all of its coefficients" } else { "" }
            ),
            Decoder::Image => format!("a {width}x{height} {progressive}{kind}JPEG at full size"),
        }
    }
}

/// How much memory rendering `heights` in `formats` from `original` may take at most, from its
/// headers alone (see [`Plan`], plus the WebP and AVIF encoders' working memory on the largest
/// thumbnail). Pessimistic by design, so that a worker can keep the renders it runs side by
/// side within a budget: the bird photo (6028x3391, 200 and 400 px, source format only) is
/// estimated at 30 MiB and peaks at 17 MB for the whole one-shot process; a 10000x10000
/// progressive CMYK JPEG at 1552 MiB, and peaks at 0.8 GB here (jpeg-decoder's queues stayed
/// short). An unreadable header gives the margin and the file, as does one over the side or
/// pixel limits: such a file fails at once.
pub fn render_memory_estimate(original: &[u8], heights: &[u32], formats: &[ThumbnailFormat], limits: &Limits) -> u64 {
    let unreadable = MARGIN + original.len() as u64;
    let Some(format) = ImageFormat::detect(original) else { return unreadable };
    let Ok(header) = Header::read(original, format) else { return unreadable };
    if limits.check_dimensions(header.width, header.height).is_err() {
        return unreadable;
    }
    let heights: Vec<u32> = heights.iter().map(|&h| h.max(1)).collect();
    let plan = Plan::new(original, format, &header, &heights);
    plan.memory.saturating_add(plan.encoder_memory(formats))
}

pub(super) use imageapi_core::image::mib;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::test_support::*;

    fn plan_for(bytes: &[u8], heights: &[u32]) -> (u64, String) {
        let format = ImageFormat::detect(bytes).expect("an image");
        let header = Header::read(bytes, format).expect("a header");
        let plan = Plan::new(bytes, format, &header, heights);
        (plan.memory, plan.describe())
    }

    #[test]
    fn a_photo_our_decoder_reads_is_estimated_at_its_reduced_scale() {
        let jpeg = encode_jpeg_rgb(&gradient_rgb(1600, 1200));
        let (small, how) = plan_for(&jpeg, &[200]);
        assert_eq!(how, "a 1600x1200 JPEG at 1/4 size");
        let (whole, how) = plan_for(&jpeg, &[1200]);
        assert_eq!(how, "a 1600x1200 JPEG at full size (with the general decoder)");
        assert!(small < whole / 4, "{small} against {whole}");
        assert!(small < 20 * MIB, "{small}");
    }

    #[test]
    fn a_progressive_cmyk_jpeg_is_estimated_at_jpeg_decoders_full_coefficient_buffers() {
        let jpeg = cmyk_progressive(1000);
        let (memory, how) = plan_for(&jpeg, &[200]);
        assert_eq!(
            how,
            "a 1000x1000 progressive CMYK JPEG at 1/4 size (with the general decoder, which keeps all of its coefficients)"
        );
        // Every coefficient of four components at 16 bits, twice: 1000² × 4 × 2 × 2 bytes.
        let coefficients = 16_000_000;
        assert!(memory >= coefficients && memory < coefficients + 20 * MIB, "{memory}");
        // The same image made at 10000² (1.6 GB of coefficients) would be refused by the default
        // ceiling: the frame header alone says so.
        let mut frame = JpegFrame::read(&jpeg).expect("a frame");
        (frame.width, frame.height) = (10_000, 10_000);
        assert!(jpeg::general_decoder_memory(&frame, 1) > 1536 * MIB);
    }

    #[test]
    fn a_damaged_progressive_cmyk_jpeg_may_fall_back_to_a_full_decode_only_within_its_estimate() {
        let jpeg = cmyk_progressive(1000);
        let format = ImageFormat::Jpeg;
        let header = Header::read(&jpeg, format).expect("a header");
        let plan = Plan::new(&jpeg, format, &header, &[200]);
        // image's full-size decode keeps every coefficient too (8 MB) and makes 3 MB of RGB:
        // it fits in jpeg-decoder's estimate, so a file jpeg-decoder fails on may try it.
        assert!(plan.fits(plan.image_memory()), "{} against {}", plan.image_memory(), plan.memory);
        // A baseline photo our decoder reads at 1/8 leaves no room for a full-size fallback.
        let photo = encode_jpeg_rgb(&gradient_rgb(3000, 2000));
        let header = Header::read(&photo, format).expect("a header");
        let plan = Plan::new(&photo, format, &header, &[200]);
        assert!(matches!(plan.decoder, Decoder::Scaled { eighths: 1, .. }));
        assert!(!plan.fits(plan.image_memory()));
        assert!(!plan.fits(plan.general_memory(1)), "jpeg-decoder's queued coefficients are more than ours");
    }

    #[test]
    fn a_png_is_estimated_at_its_decoded_size_and_its_8_bit_copy() {
        let png = encode_png(&image::DynamicImage::ImageRgba16(image::ImageBuffer::new(1000, 500)));
        let (memory, how) = plan_for(&png, &[200]);
        assert_eq!(how, "a 1000x500 PNG at full size");
        let decoded = 1000 * 500 * 8;
        let copy = 1000 * 500 * 4;
        assert!(memory >= decoded + copy && memory < decoded + copy + 12 * MIB, "{memory}");
    }

    #[test]
    fn big_thumbnails_count_in_the_estimate() {
        let png = encode_png_rgb(&gradient_rgb(3000, 2000));
        let (small, _) = plan_for(&png, &[200]);
        let (big, _) = plan_for(&png, &[2000, 200]);
        // The 3000x2000 thumbnail, held up to five times at 4 bytes a pixel.
        assert!(big - small >= 3000 * 2000 * 20, "{small} -> {big}");
    }

    #[test]
    fn webp_and_avif_encoders_count_on_the_largest_thumbnail() {
        let png = encode_png_rgb(&gradient_rgb(3000, 2000));
        let limits = Limits::default();
        let estimate = |formats: &[ThumbnailFormat]| render_memory_estimate(&png, &[400, 200], formats, &limits);
        let source = estimate(&[ThumbnailFormat::Source]);
        // The largest thumbnail is 600x400.
        let largest = 600 * 400;
        assert_eq!(
            estimate(&[ThumbnailFormat::Source, ThumbnailFormat::Webp]),
            source + largest * WEBP_BYTES_PER_PIXEL
        );
        // One encoder at a time: WebP and AVIF together cost what AVIF alone does.
        let all = [ThumbnailFormat::Source, ThumbnailFormat::Webp, ThumbnailFormat::Avif];
        assert_eq!(estimate(&all), source + largest * AVIF_BYTES_PER_PIXEL);
        assert_eq!(estimate(&[ThumbnailFormat::Avif]), estimate(&all));
    }

    #[test]
    fn an_unreadable_header_costs_the_margin_and_the_file() {
        let limits = Limits::default();
        assert_eq!(render_memory_estimate(b"not an image", &[200], &[ThumbnailFormat::Avif], &limits), MARGIN + 12);
        let mut broken = crate::pipeline::PNG_SIGNATURE.to_vec();
        broken.extend_from_slice(b"garbage");
        assert_eq!(
            render_memory_estimate(&broken, &[200], &[ThumbnailFormat::Avif], &limits),
            MARGIN + broken.len() as u64
        );
    }
}
