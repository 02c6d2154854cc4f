//! Thumbnail generation (worker side): decode once (JPEG scaled in the DCT domain to what the
//! largest thumbnail needs), resize to each requested height with `fast_image_resize`
//! (Lanczos3 convolution), apply the EXIF orientation, and encode in the source's format with
//! no metadata.
//!
//! Memory is bounded before a single pixel buffer is allocated: by the side and pixel limits,
//! by the decode plan's estimate against `Limits::max_decode_memory` (see [`super::plan`],
//! which also keeps every fallback decoder within that estimate), and by what the decoders are
//! shown of the file (see [`super::decoder_input`]: no metadata but the orientation).

use fast_image_resize::{FilterType, MulDiv, ResizeAlg, ResizeOptions, Resizer};
use image::codecs::png::{CompressionType, FilterType as PngFilter, PngEncoder};
use image::metadata::Orientation;
use image::{DynamicImage, ImageDecoder, ImageEncoder};

use imageapi_core::image::ThumbnailFormat;

use super::avif::encode_avif;
use super::decoder_input::DecoderInput;
use super::encode::{encode_webp, EncodeSettings};
use super::plan::{mib, Decoder, Header, Plan};
use super::thumbhash::{hash_size, THUMBHASH_MAX_SIDE};
use super::{jpeg, structure, swaps_dimensions, thumbnail_size, ImageFormat, Limits};

/// JPEG quality of thumbnails: the usual web default, free of visible artefacts at thumbnail
/// sizes (image's encoder writes 4:4:4, so colour edges stay sharp too).
pub const JPEG_QUALITY: u8 = 85;

/// Compression effort for PNG thumbnails. Measured on the corpus (200 + 400 px, release build,
/// whole `make_thumbnails` call): `Fast` 104-111 ms per 5120x2880 original, `Default` 167-224 ms
/// for files only 7-10% smaller (kay RGBA 459 -> 428 KB, altai RGB 272 -> 244 KB), `Best`
/// 330-490 ms for 2-3% more. On a 2-core worker, CPU is the scarce resource; a few per cent of
/// thumbnail bytes are not worth doubling the job's cost, so `Fast`.
pub const PNG_COMPRESSION: CompressionType = CompressionType::Fast;

/// Widest decoded pixel we may have to hold: RGBA with 16 bits per channel.
const MAX_DECODED_BYTES_PER_PIXEL: u64 = 8;

/// The original's bytes for [`make_thumbnails`]: borrowed, or owned (then released as soon as
/// it is decoded, which lowers a job's peak memory by the file's size).
pub enum Original<'a> {
    Borrowed(&'a [u8]),
    Owned(bytes::Bytes),
}

impl AsRef<[u8]> for Original<'_> {
    fn as_ref(&self) -> &[u8] {
        match self {
            Original::Borrowed(b) => b,
            Original::Owned(b) => b,
        }
    }
}

impl<'a> From<&'a [u8]> for Original<'a> {
    fn from(b: &'a [u8]) -> Self {
        Original::Borrowed(b)
    }
}

impl<'a> From<&'a Vec<u8>> for Original<'a> {
    fn from(b: &'a Vec<u8>) -> Self {
        Original::Borrowed(b)
    }
}

impl From<bytes::Bytes> for Original<'static> {
    fn from(b: bytes::Bytes) -> Self {
        Original::Owned(b)
    }
}

/// One encoded thumbnail.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Thumbnail {
    /// The height that was asked for.
    pub requested_height: u32,
    /// Actual width and height of the encoded image (display orientation). The height is less
    /// than requested when the source is shorter: thumbnails never enlarge.
    pub width: u32,
    pub height: u32,
    /// The encoded image: JPEG for JPEG sources, PNG for PNG sources.
    pub bytes: Vec<u8>,
}

/// Why no thumbnails could be made.
#[derive(thiserror::Error, Debug)]
pub enum ThumbnailError {
    /// The original is not a decodable PNG or JPEG.
    #[error("cannot decode the image: {0}")]
    Decode(String),
    /// The original is over the configured limits.
    #[error("image too large: {0}")]
    TooLarge(String),
    /// Resizing or encoding a thumbnail failed (not the input's fault).
    #[error("cannot make the thumbnail: {0}")]
    Encode(String),
    /// A requested height of 0.
    #[error("invalid thumbnail height: {0}")]
    InvalidHeight(String),
}

/// Makes one thumbnail per entry of `heights`, in the order given, from a PNG or JPEG.
///
/// The original is decoded once. Larger thumbnails are made first, and a smaller one is
/// resized from an already made larger one when that one is at least twice its size: with
/// Lanczos3 this is visually the same as resizing the original (measured on the corpus: mean
/// difference 0.13 of 255 per channel against 0.05 for a direct resize) and saves a pass over
/// the full-size pixels (about 20 ms of the 140 ms for a 20 MP photo). The EXIF orientation is
/// applied to each resized image rather than to the original, which gives the same pixels
/// without a full-size rotated copy. Duplicate heights are made once and returned as often as
/// asked.
///
/// An empty `heights` gives an empty vector without decoding anything (nothing was asked for);
/// a height of 0 is an [`ThumbnailError::InvalidHeight`] error. Never panics on any input.
///
/// This is [`render`] with only the source format and no ThumbHash.
pub fn make_thumbnails<'a>(
    original: impl Into<Original<'a>>,
    heights: &[u32],
    limits: &Limits,
) -> Result<Vec<Thumbnail>, ThumbnailError> {
    let rendered =
        render_with(original, heights, &[ThumbnailFormat::Source], false, &EncodeSettings::default(), limits)?;
    rendered
        .thumbnails
        .into_iter()
        .map(|t| {
            let bytes = t
                .variants
                .into_iter()
                .find(|v| v.format == ThumbnailFormat::Source)
                .ok_or_else(|| ThumbnailError::Encode(format!("no thumbnail made for {} px", t.requested_height)))?
                .result
                .map_err(ThumbnailError::Encode)?;
            Ok(Thumbnail { requested_height: t.requested_height, width: t.width, height: t.height, bytes })
        })
        .collect()
}

/// Everything one render made: per requested height its variants, and the ThumbHash.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rendered {
    /// One entry per requested height, in the order asked.
    pub thumbnails: Vec<RenderedHeight>,
    /// The raw ThumbHash bytes (about 25) of the oriented image; `None` only if it could not
    /// be computed (which does not fail the render: it is a placeholder).
    pub thumbhash: Option<Vec<u8>>,
}

/// The variants of one thumbnail height, all from the same resized pixels.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RenderedHeight {
    /// The height that was asked for.
    pub requested_height: u32,
    /// Actual width and height of every variant (display orientation); the height is less
    /// than requested when the source is shorter: thumbnails never enlarge.
    pub width: u32,
    pub height: u32,
    /// One per distinct requested format, in the order asked.
    pub variants: Vec<Encoded>,
}

/// One encoded variant, or why its encoder failed (which fails only this variant).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Encoded {
    pub format: ThumbnailFormat,
    pub result: Result<Vec<u8>, String>,
}

impl RenderedHeight {
    /// The variant in `format`, if it was asked for.
    pub fn variant(&self, format: ThumbnailFormat) -> Option<&Encoded> {
        self.variants.iter().find(|v| v.format == format)
    }
}

/// Renders a PNG or JPEG into every requested height, each in every requested format, plus
/// its ThumbHash, from one decode.
///
/// Per height there is one resize (as in [`make_thumbnails`]: largest first, smaller ones
/// from a larger one when it is at least twice their size) and the resized pixels are
/// un-premultiplied and oriented once; every format is then encoded from those same pixels:
/// [`ThumbnailFormat::Source`] as the source's own format (JPEG quality 85 / PNG), `Webp` and
/// `Avif` as in [`super::encode`]. `formats` may omit `Source` (an old image newly granted
/// WebP needs only its WebP variants); duplicates are made once. An encoder that fails fails
/// only its own variant, as `Err(reason)`. Nothing is written but pixels: no metadata.
///
/// The ThumbHash is always computed (it costs well under a millisecond): from the smallest
/// resized thumbnail, or from the decoded image when `heights` is empty, shrunk to at most
/// 100x100 keeping the aspect ratio, oriented, un-premultiplied RGBA.
///
/// Errors are the whole render's: an undecodable or over-limit original, a height of 0, or a
/// failed resize. Memory is bounded as in [`make_thumbnails`]: the encoders only ever see
/// thumbnail-sized buffers. Never panics on any input.
pub fn render<'a>(
    original: impl Into<Original<'a>>,
    heights: &[u32],
    formats: &[ThumbnailFormat],
    limits: &Limits,
) -> Result<Rendered, ThumbnailError> {
    render_with(original, heights, formats, true, &EncodeSettings::default(), limits)
}

/// [`render`] with the encoders' settings given (benchmarks) and the ThumbHash optional.
pub(crate) fn render_with<'a>(
    original: impl Into<Original<'a>>,
    heights: &[u32],
    formats: &[ThumbnailFormat],
    want_thumbhash: bool,
    settings: &EncodeSettings,
    limits: &Limits,
) -> Result<Rendered, ThumbnailError> {
    // This job's core: the decoder borrows only the cores beyond the running jobs'.
    let _core = super::cores::for_job();
    let original_bytes = original.into();
    let original: &[u8] = original_bytes.as_ref();
    if heights.contains(&0) {
        return Err(ThumbnailError::InvalidHeight("a thumbnail height must be at least 1 px".into()));
    }
    if heights.is_empty() && !want_thumbhash {
        return Ok(Rendered { thumbnails: Vec::new(), thumbhash: None });
    }
    limits.check_bytes(original.len()).map_err(ThumbnailError::TooLarge)?;
    let format =
        ImageFormat::detect(original).ok_or_else(|| ThumbnailError::Decode("not a PNG or JPEG image".into()))?;

    // The decode must also serve the ThumbHash: when no thumbnail is at least its size, plan
    // as if one were (the usual 200/400 px renders plan exactly as without it).
    let mut plan_heights = heights.to_vec();
    let hash_height = THUMBHASH_MAX_SIDE;
    if want_thumbhash && heights.iter().all(|&h| h < hash_height) {
        plan_heights.push(hash_height);
    }
    let (decoded, orientation, (full_width, full_height)) =
        decode_for_thumbnails(original, format, &plan_heights, limits)?;
    // The compressed original is not needed any more: an owned one is released before the
    // resizes, so it never adds to their memory.
    drop(original_bytes);
    let mut source = to_thumbnail_layout(decoded, format);
    let alpha = source.color().has_alpha();
    if alpha {
        // Premultiply once for all sizes, so transparent pixels' colours do not bleed into
        // their neighbours (dark or coloured fringes). The resizer would otherwise premultiply
        // into a full-size copy on every call.
        MulDiv::new()
            .multiply_alpha_inplace(&mut source)
            .map_err(|err| ThumbnailError::Encode(format!("premultiplying alpha: {err}")))?;
    }

    // Sizes follow the original's dimensions, whatever scale it was decoded at.
    let swap = swaps_dimensions(orientation);
    let (display_width, display_height) = if swap { (full_height, full_width) } else { (full_width, full_height) };

    let mut distinct = heights.to_vec();
    distinct.sort_unstable_by(|a, b| b.cmp(a));
    distinct.dedup();
    let mut wanted: Vec<ThumbnailFormat> = Vec::with_capacity(formats.len());
    for &f in formats {
        if !wanted.contains(&f) {
            wanted.push(f);
        }
    }

    let mut resizer = Resizer::new();
    let mut made: Vec<RenderedHeight> = Vec::with_capacity(distinct.len());
    // The last (smallest so far) resized image, still premultiplied and in stored orientation.
    let mut previous: Option<DynamicImage> = None;
    for requested_height in distinct {
        let (width, height) = thumbnail_size(display_width, display_height, requested_height);
        let mut variants = Vec::with_capacity(wanted.len());
        if !wanted.is_empty() {
            // Resize in the stored orientation and rotate the small result: the same pixels as
            // rotating first, without a full-size rotated copy of the original.
            let (stored_width, stored_height) = if swap { (height, width) } else { (width, height) };
            let from = match &previous {
                Some(larger) if can_resize_from(larger, stored_width, stored_height) => larger,
                _ => &source,
            };
            let resized = resize(&mut resizer, from, stored_width, stored_height)?;
            let pixels = finish(resized.clone(), alpha, orientation)?;
            previous = Some(resized);
            for &f in &wanted {
                variants.push(Encoded { format: f, result: encode_variant(&pixels, f, format, settings) });
            }
        }
        made.push(RenderedHeight { requested_height, width, height, variants });
    }

    let thumbhash = if want_thumbhash {
        let from = previous.as_ref().unwrap_or(&source);
        match hash_pixels(&mut resizer, from, alpha, orientation) {
            Ok(pixels) => super::thumbhash::thumbhash(&pixels),
            Err(err) => {
                tracing::warn!(error = %err, "no ThumbHash");
                None
            }
        }
    } else {
        None
    };
    if format == ImageFormat::Jpeg {
        super::jpeg::recycle(source);
    }

    let thumbnails = heights
        .iter()
        .map(|&h| {
            made.iter()
                .find(|t| t.requested_height == h)
                .cloned()
                .ok_or_else(|| ThumbnailError::Encode(format!("no thumbnail made for {h} px")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Rendered { thumbnails, thumbhash })
}

/// Encodes one variant of a finished (un-premultiplied, oriented) thumbnail.
fn encode_variant(
    pixels: &DynamicImage,
    variant: ThumbnailFormat,
    source: ImageFormat,
    settings: &EncodeSettings,
) -> Result<Vec<u8>, String> {
    match variant {
        // The bare reason, so that make_thumbnails' error reads as it always did.
        ThumbnailFormat::Source => encode(pixels, source).map_err(|err| match err {
            ThumbnailError::Encode(reason) => reason,
            other => other.to_string(),
        }),
        ThumbnailFormat::Webp => encode_webp(pixels, source == ImageFormat::Png, settings),
        ThumbnailFormat::Avif => encode_avif(pixels, &settings.avif),
    }
}

/// The ThumbHash's input: `from` (premultiplied, stored orientation) shrunk to within
/// 100x100, then un-premultiplied and oriented.
fn hash_pixels(
    resizer: &mut Resizer,
    from: &DynamicImage,
    alpha: bool,
    orientation: Orientation,
) -> Result<DynamicImage, ThumbnailError> {
    let (width, height) = hash_size(from.width(), from.height());
    let small = resize(resizer, from, width, height)?;
    finish(small, alpha, orientation)
}

/// Checks the original against the limits (the same checks as at upload, for files accepted
/// before a limit existed or under other limits), plans its decode ([`Plan`]), refuses it if
/// the plan needs more memory than the ceiling, and decodes it. Returns the pixels as stored,
/// the orientation, and the original's stored dimensions.
fn decode_for_thumbnails(
    original: &[u8],
    format: ImageFormat,
    heights: &[u32],
    limits: &Limits,
) -> Result<(DynamicImage, Orientation, (u32, u32)), ThumbnailError> {
    match format {
        // Every decoder's time grows with the scans.
        ImageFormat::Jpeg => {
            let mut scans = 0u32;
            structure::walk_jpeg(original, |marker| scans += u32::from(marker == 0xDA))
                .map_err(ThumbnailError::Decode)?;
            limits.check_scans(scans).map_err(ThumbnailError::TooLarge)?;
        }
        ImageFormat::Png => {
            let exif = structure::check_png(original).map_err(ThumbnailError::Decode)?;
            super::check_exif_size(exif).map_err(ThumbnailError::TooLarge)?;
        }
    }
    // Dimensions and orientation from the same header reader the upload probe uses, so both
    // always agree on the display size.
    let header = Header::read(original, format).map_err(decode_error)?;
    limits.check_dimensions(header.width, header.height).map_err(ThumbnailError::TooLarge)?;
    let plan = Plan::new(original, format, &header, heights);
    limits.check_decode_memory(plan.memory, &plan.describe()).map_err(ThumbnailError::TooLarge)?;
    let image = decode_planned(original, format, &plan, limits)?;
    Ok((image, header.orientation, (header.width, header.height)))
}

/// Decodes as planned. A decoder that gives up hands over to the next (imageapi's JPEG
/// decoder to `jpeg-decoder`, that to the `image` crate) only if the next one fits within the
/// plan's memory: a fallback never costs more than the render was given.
fn decode_planned(
    original: &[u8],
    format: ImageFormat,
    plan: &Plan<'_>,
    limits: &Limits,
) -> Result<DynamicImage, ThumbnailError> {
    let (min_width, min_height) = plan.min_size;
    let mut gave_up = "it could not be decoded".to_owned();
    let general = match &plan.decoder {
        Decoder::Image => None,
        Decoder::Scaled { jpeg, eighths } => {
            match jpeg::decode_scaled(jpeg, *eighths) {
                Ok(image) => return Ok(image),
                Err(e) => tracing::debug!(error = %e, "imageapi's JPEG decoder gave up part-way"),
            }
            gave_up = "imageapi's decoder could not read its data".to_owned();
            Some(*eighths)
        }
        Decoder::General { eighths } => Some(*eighths),
    };
    if let Some(eighths) = general {
        if plan.fits(plan.general_memory(eighths)) {
            match jpeg::decode_general(original, min_width, min_height) {
                Ok(image) => return Ok(image),
                Err(reason) => gave_up = reason,
            }
        }
    }
    let whole = plan.image_memory();
    if !plan.fits(whole) {
        return Err(ThumbnailError::Decode(format!(
            "{gave_up}; decoding it whole instead would take about {} MiB, more than the {} MiB set aside for {}",
            mib(whole),
            mib(plan.memory),
            plan.describe()
        )));
    }
    decode_original(original, format, limits)
}

/// Decodes the whole original with the `image` crate, within the limits.
fn decode_original(original: &[u8], format: ImageFormat, limits: &Limits) -> Result<DynamicImage, ThumbnailError> {
    let budget = limits.max_pixels.saturating_mul(MAX_DECODED_BYTES_PER_PIXEL);
    let mut decoder_limits = image::Limits::default();
    decoder_limits.max_image_width = Some(limits.max_side);
    decoder_limits.max_image_height = Some(limits.max_side);
    decoder_limits.max_alloc = Some(budget);

    let mut reader =
        image::ImageReader::with_format(DecoderInput::new(original, format), super::image_crate_format(format));
    reader.limits(decoder_limits);
    let decoder = reader.into_decoder().map_err(decode_error)?;

    let (width, height) = decoder.dimensions();
    limits.check_dimensions(width, height).map_err(ThumbnailError::TooLarge)?;
    // `DynamicImage::from_decoder` allocates this much without consulting `max_alloc`.
    if decoder.total_bytes() > budget {
        return Err(ThumbnailError::TooLarge(format!(
            "decoding needs {} bytes; the limit is {budget} bytes",
            decoder.total_bytes()
        )));
    }
    DynamicImage::from_decoder(decoder).map_err(decode_error)
}

fn decode_error(err: image::ImageError) -> ThumbnailError {
    match err {
        image::ImageError::Limits(err) => ThumbnailError::TooLarge(err.to_string()),
        err => ThumbnailError::Decode(err.to_string()),
    }
}

/// Converts the decoded image to the 8-bit layout of its thumbnails: gray stays gray, colour
/// stays colour, alpha is kept for PNG (JPEG has none). 16-bit PNGs become 8-bit, palette PNGs
/// arrive already expanded by the decoder. No copy when the layout already fits.
fn to_thumbnail_layout(image: DynamicImage, format: ImageFormat) -> DynamicImage {
    let color = image.color();
    let alpha = format == ImageFormat::Png && color.has_alpha();
    match (color.has_color(), alpha) {
        (false, false) => DynamicImage::ImageLuma8(image.into_luma8()),
        (false, true) => DynamicImage::ImageLumaA8(image.into_luma_alpha8()),
        (true, false) => DynamicImage::ImageRgb8(image.into_rgb8()),
        (true, true) => DynamicImage::ImageRgba8(image.into_rgba8()),
    }
}

/// Whether `larger` is at least about twice the target on both axes (or both are 1 px), so
/// resizing from it loses nothing visible compared with resizing from the original. The
/// `+ 1` absorbs the rounding of widths (711 px for 400 high is "twice" 356 px for 200 high).
fn can_resize_from(larger: &DynamicImage, width: u32, height: u32) -> bool {
    let enough = |have: u32, want: u32| u64::from(have) + 1 >= 2 * u64::from(want);
    enough(larger.width(), width) && enough(larger.height(), height)
}

fn resize(resizer: &mut Resizer, from: &DynamicImage, width: u32, height: u32) -> Result<DynamicImage, ThumbnailError> {
    let mut resized = DynamicImage::new(width, height, from.color());
    // Alpha is already premultiplied (see make_thumbnails), so the resizer must not do it.
    let options = ResizeOptions::new().resize_alg(ResizeAlg::Convolution(FilterType::Lanczos3)).use_alpha(false);
    resizer.resize(from, &mut resized, &options).map_err(|err| ThumbnailError::Encode(format!("resizing: {err}")))?;
    Ok(resized)
}

/// Un-premultiplies and orients one resized image.
fn finish(mut image: DynamicImage, alpha: bool, orientation: Orientation) -> Result<DynamicImage, ThumbnailError> {
    if alpha {
        MulDiv::new()
            .divide_alpha_inplace(&mut image)
            .map_err(|err| ThumbnailError::Encode(format!("restoring alpha: {err}")))?;
    }
    image.apply_orientation(orientation);
    Ok(image)
}

/// Encodes without any metadata: image's encoders write EXIF, ICC or text only when asked to.
fn encode(image: &DynamicImage, format: ImageFormat) -> Result<Vec<u8>, ThumbnailError> {
    let mut out = Vec::new();
    let (width, height) = (image.width(), image.height());
    let color = image.color().into();
    let result =
        match format {
            ImageFormat::Jpeg => return encode_thumbnail_jpeg(image),
            ImageFormat::Png => PngEncoder::new_with_quality(&mut out, PNG_COMPRESSION, PngFilter::Adaptive)
                .write_image(image.as_bytes(), width, height, color),
        };
    result.map_err(|err| ThumbnailError::Encode(format!("encoding {format}: {err}")))?;
    Ok(out)
}

/// JPEG with `jpeg-encoder`: the same baseline file with libjpeg's tables scaled to
/// [`JPEG_QUALITY`] as image's encoder wrote, in 4:4:4, and about three times faster (AVX2 colour
/// conversion and forward DCT where the CPU has them). Writes only the JFIF header.
pub(crate) fn encode_thumbnail_jpeg(image: &DynamicImage) -> Result<Vec<u8>, ThumbnailError> {
    let (color, width, height) = match image {
        DynamicImage::ImageLuma8(_) => (jpeg_encoder::ColorType::Luma, image.width(), image.height()),
        DynamicImage::ImageRgb8(_) => (jpeg_encoder::ColorType::Rgb, image.width(), image.height()),
        other => return Err(ThumbnailError::Encode(format!("no JPEG thumbnail of {:?} pixels", other.color()))),
    };
    let (Ok(width), Ok(height)) = (u16::try_from(width), u16::try_from(height)) else {
        return Err(ThumbnailError::Encode(format!("a JPEG cannot be {width}x{height} px")));
    };
    let mut out = Vec::with_capacity(usize::from(width) * usize::from(height) / 4);
    let mut encoder = jpeg_encoder::Encoder::new(&mut out, JPEG_QUALITY);
    encoder.set_sampling_factor(jpeg_encoder::SamplingFactor::F_1_1);
    encoder
        .encode(image.as_bytes(), width, height, color)
        .map_err(|err| ThumbnailError::Encode(format!("encoding jpeg: {err}")))?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::test_support::*;
    use image::{ColorType, GrayImage, ImageBuffer, Rgb, RgbImage, Rgba, RgbaImage};

    fn thumbs(bytes: &[u8], heights: &[u32]) -> Vec<Thumbnail> {
        make_thumbnails(bytes, heights, &Limits::default()).expect("thumbnails")
    }

    /// Asserts the encoded size matches both the reported size and the expectation.
    fn assert_dims(thumb: &Thumbnail, expected: (u32, u32)) -> DynamicImage {
        let decoded = decode(&thumb.bytes);
        assert_eq!((decoded.width(), decoded.height()), expected, "decoded size");
        assert_eq!((thumb.width, thumb.height), expected, "reported size");
        decoded
    }

    fn close(actual: [u8; 3], expected: [u8; 3], tolerance: u8) -> bool {
        actual.iter().zip(expected).all(|(&a, e)| a.abs_diff(e) <= tolerance)
    }

    #[test]
    fn each_height_gives_exact_dimensions_with_the_source_aspect() {
        let jpeg = encode_jpeg_rgb(&gradient_rgb(1000, 600));
        let out = thumbs(&jpeg, &[200, 400, 50]);
        assert_eq!(out.len(), 3);
        let expected = [(200, (333, 200)), (400, (667, 400)), (50, (83, 50))];
        for (thumb, (requested, dims)) in out.iter().zip(expected) {
            assert_eq!(thumb.requested_height, requested);
            assert_dims(thumb, dims);
        }
    }

    #[test]
    fn results_come_back_in_the_order_asked_including_duplicates() {
        let png = encode_png_rgb(&gradient_rgb(300, 300));
        let out = thumbs(&png, &[50, 200, 50, 100]);
        let order: Vec<u32> = out.iter().map(|t| t.requested_height).collect();
        assert_eq!(order, vec![50, 200, 50, 100]);
        assert_eq!(out[0], out[2]);
        assert_dims(&out[1], (200, 200));
    }

    #[test]
    fn a_one_pixel_wide_strip_keeps_one_pixel_of_width() {
        let png = encode_png_rgb(&gradient_rgb(1, 1000));
        let out = thumbs(&png, &[200, 400]);
        assert_dims(&out[0], (1, 200));
        assert_dims(&out[1], (1, 400));
    }

    #[test]
    fn a_one_pixel_high_strip_is_not_enlarged() {
        let png = encode_png_rgb(&gradient_rgb(3000, 1));
        let out = thumbs(&png, &[200]);
        assert_dims(&out[0], (3000, 1));
    }

    #[test]
    fn a_source_shorter_than_the_height_keeps_its_size() {
        let source = gradient_rgb(120, 80);
        let jpeg = encode_jpeg_rgb(&source);
        let out = thumbs(&jpeg, &[200, 80, 40]);
        assert_dims(&out[0], (120, 80));
        assert_dims(&out[1], (120, 80));
        assert_dims(&out[2], (60, 40));
        // Re-encoded, not a copy of the original bytes.
        assert_ne!(out[0].bytes, jpeg);
    }

    #[test]
    fn jpeg_in_gives_jpeg_out_and_png_in_gives_png_out() {
        let jpeg = encode_jpeg_rgb(&gradient_rgb(400, 300));
        let png = encode_png_rgb(&gradient_rgb(400, 300));
        for t in thumbs(&jpeg, &[100, 200]) {
            assert_eq!(ImageFormat::detect(&t.bytes), Some(ImageFormat::Jpeg));
        }
        for t in thumbs(&png, &[100, 200]) {
            assert_eq!(ImageFormat::detect(&t.bytes), Some(ImageFormat::Png));
        }
    }

    #[test]
    fn an_rgba_png_keeps_its_transparent_region_and_has_no_dark_fringe() {
        // Left half fully transparent black, right half opaque white.
        let source =
            RgbaImage::from_fn(400, 200, |x, _| if x < 200 { Rgba([0, 0, 0, 0]) } else { Rgba([255, 255, 255, 255]) });
        let png = encode_png(&DynamicImage::ImageRgba8(source));
        let out = thumbs(&png, &[100]);
        let decoded = assert_dims(&out[0], (200, 100));
        assert_eq!(decoded.color(), ColorType::Rgba8);
        let rgba = decoded.to_rgba8();
        assert_eq!(rgba.get_pixel(10, 50).0[3], 0, "transparent stays transparent");
        assert_eq!(rgba.get_pixel(190, 50).0[3], 255, "opaque stays opaque");
        // Across the edge, every partly visible pixel is still white: with straight-alpha
        // resizing the transparent black would darken it.
        for x in 90..110 {
            let px = rgba.get_pixel(x, 50).0;
            if px[3] > 8 {
                assert!(px[0] >= 250, "dark fringe at x={x}: {px:?}");
            }
        }
    }

    #[test]
    fn a_gray_alpha_png_stays_gray_alpha() {
        let source = ImageBuffer::from_fn(64, 64, |x, _| image::LumaA([200u8, (x * 4) as u8]));
        let png = encode_png(&DynamicImage::ImageLumaA8(source));
        let out = thumbs(&png, &[32]);
        let decoded = assert_dims(&out[0], (32, 32));
        assert_eq!(decoded.color(), ColorType::La8);
    }

    #[test]
    fn a_gray_jpeg_stays_gray() {
        let source = GrayImage::from_fn(300, 200, |x, _| image::Luma([(x % 256) as u8]));
        let jpeg = encode_jpeg(&DynamicImage::ImageLuma8(source));
        let out = thumbs(&jpeg, &[100]);
        let decoded = assert_dims(&out[0], (150, 100));
        assert_eq!(decoded.color(), ColorType::L8);
    }

    #[test]
    fn an_rgb_png_stays_rgb_without_alpha() {
        let png = encode_png_rgb(&gradient_rgb(64, 64));
        let decoded = assert_dims(&thumbs(&png, &[16])[0], (16, 16));
        assert_eq!(decoded.color(), ColorType::Rgb8);
    }

    #[test]
    fn a_16_bit_png_gives_an_8_bit_thumbnail_of_the_same_colours() {
        let source: ImageBuffer<Rgba<u16>, Vec<u16>> = ImageBuffer::from_pixel(100, 50, Rgba([65535, 32768, 0, 65535]));
        let png = encode_png(&DynamicImage::ImageRgba16(source));
        let out = thumbs(&png, &[20]);
        let decoded = assert_dims(&out[0], (40, 20));
        assert_eq!(decoded.color(), ColorType::Rgba8);
        let px = decoded.to_rgba8().get_pixel(20, 10).0;
        assert!(close([px[0], px[1], px[2]], [255, 128, 0], 1), "{px:?}");
        assert_eq!(px[3], 255);
    }

    #[test]
    fn a_16_bit_gray_png_works() {
        let source: ImageBuffer<image::Luma<u16>, Vec<u16>> = ImageBuffer::from_pixel(50, 100, image::Luma([0x8080]));
        let png = encode_png(&DynamicImage::ImageLuma16(source));
        let decoded = assert_dims(&thumbs(&png, &[10])[0], (5, 10));
        assert_eq!(decoded.color(), ColorType::L8);
        assert!(decoded.to_luma8().pixels().all(|p| p.0[0].abs_diff(128) <= 1));
    }

    #[test]
    fn a_palette_png_with_trns_keeps_its_transparency() {
        // 8x8, palette: 0 = red (opaque), 1 = blue (fully transparent via tRNS).
        // Left half index 0, right half index 1.
        let (w, h) = (8u32, 8u32);
        let mut raw = Vec::new();
        for _ in 0..h {
            raw.push(0); // filter: none
            raw.extend((0..w).map(|x| u8::from(x >= w / 2)));
        }
        let png = png_from_chunks(&[
            (b"IHDR", &ihdr_data(w, h, 8, 3)),
            (b"PLTE", &[255, 0, 0, 0, 0, 255]),
            (b"tRNS", &[255, 0]),
            (b"IDAT", &zlib_stored(&raw)),
            (b"IEND", &[]),
        ]);
        assert!(crate::pipeline::probe(&png, &Limits::default()).is_ok());
        let out = thumbs(&png, &[4]);
        let decoded = assert_dims(&out[0], (4, 4));
        assert_eq!(decoded.color(), ColorType::Rgba8);
        let rgba = decoded.to_rgba8();
        let left = rgba.get_pixel(0, 2).0;
        assert!(close([left[0], left[1], left[2]], [255, 0, 0], 2) && left[3] == 255, "{left:?}");
        assert_eq!(rgba.get_pixel(3, 2).0[3], 0, "transparent side stays transparent");
    }

    /// 300x200, left half red, right half blue, with EXIF orientation 6 spliced in.
    fn red_blue_jpeg_with_orientation(orientation: u16) -> Vec<u8> {
        let source = RgbImage::from_fn(300, 200, |x, _| if x < 150 { Rgb([255, 0, 0]) } else { Rgb([0, 0, 255]) });
        splice_after_soi(&encode_jpeg_rgb(&source), &exif_orientation_segment(orientation))
    }

    #[test]
    fn exif_orientation_6_rotates_the_thumbnail_clockwise() {
        let jpeg = red_blue_jpeg_with_orientation(6);
        let out = thumbs(&jpeg, &[150, 60]);
        // Display size is 200x300, so 150 high is 100 wide.
        let decoded = assert_dims(&out[0], (100, 150)).to_rgb8();
        assert_dims(&out[1], (40, 60));
        // Rotating 90 degrees clockwise puts the left (red) half on top.
        let top = decoded.get_pixel(50, 10).0;
        let bottom = decoded.get_pixel(50, 140).0;
        assert!(close(top, [255, 0, 0], 40), "top should be red: {top:?}");
        assert!(close(bottom, [0, 0, 255], 40), "bottom should be blue: {bottom:?}");
    }

    #[test]
    fn exif_orientation_8_rotates_the_thumbnail_counter_clockwise() {
        let jpeg = red_blue_jpeg_with_orientation(8);
        let decoded = assert_dims(&thumbs(&jpeg, &[150])[0], (100, 150)).to_rgb8();
        assert!(close(decoded.get_pixel(50, 10).0, [0, 0, 255], 40));
        assert!(close(decoded.get_pixel(50, 140).0, [255, 0, 0], 40));
    }

    #[test]
    fn exif_orientation_3_turns_the_thumbnail_upside_down() {
        let jpeg = red_blue_jpeg_with_orientation(3);
        let decoded = assert_dims(&thumbs(&jpeg, &[100])[0], (150, 100)).to_rgb8();
        assert!(close(decoded.get_pixel(10, 50).0, [0, 0, 255], 40));
        assert!(close(decoded.get_pixel(140, 50).0, [255, 0, 0], 40));
    }

    #[test]
    fn exif_orientation_in_a_png_exif_chunk_is_applied_too() {
        // 6x2: left half red, right half blue; eXIf orientation 6 (90 degrees clockwise).
        let (w, h) = (6u32, 2u32);
        // Each scanline: filter byte 0 (none), then RGB pixels.
        let row: Vec<u8> =
            std::iter::once(0).chain((0..w).flat_map(|x| if x < w / 2 { [255, 0, 0] } else { [0, 0, 255] })).collect();
        let raw = row.repeat(h as usize);
        let png = png_from_chunks(&[
            (b"IHDR", &ihdr_data(w, h, 8, 2)),
            (b"eXIf", &exif_orientation_tiff(6)),
            (b"IDAT", &zlib_stored(&raw)),
            (b"IEND", &[]),
        ]);
        let probed = crate::pipeline::probe(&png, &Limits::default()).expect("valid PNG");
        assert_eq!((probed.width, probed.height), (2, 6));
        let out = thumbs(&png, &[6]);
        let decoded = assert_dims(&out[0], (2, 6)).to_rgb8();
        assert!(close(decoded.get_pixel(0, 0).0, [255, 0, 0], 0), "top red");
        assert!(close(decoded.get_pixel(1, 5).0, [0, 0, 255], 0), "bottom blue");
        assert!(!png_chunk_types(&out[0].bytes).contains(&"eXIf".to_string()));
    }

    #[test]
    fn jpeg_thumbnails_carry_no_metadata_segments() {
        // The source has EXIF; the thumbnail must not.
        let jpeg = red_blue_jpeg_with_orientation(6);
        assert!(jpeg_markers(&jpeg).contains(&0xE1), "source has APP1");
        for thumb in thumbs(&jpeg, &[100, 50]) {
            let markers = jpeg_markers(&thumb.bytes);
            assert!(
                !markers.iter().any(|m| (0xE1..=0xEF).contains(m) || *m == 0xFE),
                "metadata segment in thumbnail: {markers:02X?}"
            );
        }
    }

    /// The sampling factors byte of each component in the SOF0 (baseline) frame header.
    fn jpeg_frame_sampling(jpeg: &[u8]) -> Vec<u8> {
        let at = jpeg.windows(2).position(|w| w == [0xFF, 0xC0]).expect("a baseline frame header");
        let count = usize::from(jpeg[at + 9]);
        (0..count).map(|i| jpeg[at + 11 + 3 * i]).collect()
    }

    #[test]
    fn jpeg_thumbnails_are_baseline_4_4_4_colour_or_one_grey_component_at_the_set_quality() {
        let colour = encode_thumbnail_jpeg(&DynamicImage::ImageRgb8(RgbImage::from_fn(64, 40, |x, y| {
            Rgb([(x * 4) as u8, (y * 6) as u8, 90])
        })))
        .expect("colour encodes");
        assert_eq!(jpeg_frame_sampling(&colour), [0x11, 0x11, 0x11], "no chroma subsampling");
        let grey = encode_thumbnail_jpeg(&DynamicImage::ImageLuma8(image::GrayImage::from_fn(64, 40, |x, _| {
            image::Luma([(x * 4) as u8])
        })))
        .expect("grey encodes");
        assert_eq!(jpeg_frame_sampling(&grey), [0x11], "grey stays one component");
        let decoded = image::load_from_memory(&colour).expect("decodes").to_rgb8();
        assert_eq!(decoded.dimensions(), (64, 40));
        // Quality 85 keeps a smooth gradient within a few levels.
        let worst = decoded.get_pixel(32, 20).0.iter().zip([128u8, 120, 90]).map(|(a, b)| a.abs_diff(b)).max();
        assert!(worst.is_some_and(|d| d <= 6), "pixel {:?}", decoded.get_pixel(32, 20));
        let too_wide = DynamicImage::ImageLuma8(image::GrayImage::new(70_000, 1));
        assert!(matches!(encode_thumbnail_jpeg(&too_wide), Err(ThumbnailError::Encode(_))));
        let with_alpha = DynamicImage::ImageRgba8(RgbaImage::new(4, 4));
        assert!(matches!(encode_thumbnail_jpeg(&with_alpha), Err(ThumbnailError::Encode(_))));
    }

    #[test]
    fn png_thumbnails_carry_no_metadata_chunks() {
        // The source has text, EXIF and a (fake) ICC chunk; the thumbnail must have none.
        let raw: Vec<u8> = (0..16).flat_map(|_| [0u8; 1 + 16 * 3]).collect();
        let mut iccp = b"fake\x00\x00".to_vec();
        iccp.extend_from_slice(&zlib_stored(b"not really a profile"));
        let png = png_from_chunks(&[
            (b"IHDR", &ihdr_data(16, 16, 8, 2)),
            (b"iCCP", &iccp),
            (b"tEXt", b"Comment\x00hello"),
            (b"IDAT", &zlib_stored(&raw)),
            (b"IEND", &[]),
        ]);
        assert!(png_chunk_types(&png).contains(&"tEXt".to_string()));
        let out = thumbs(&png, &[8]);
        let chunks = png_chunk_types(&out[0].bytes);
        for forbidden in ["eXIf", "iCCP", "tEXt", "zTXt", "iTXt", "tIME", "pHYs"] {
            assert!(!chunks.iter().any(|c| c == forbidden), "{forbidden} in {chunks:?}");
        }
        assert_eq!(chunks.first().map(String::as_str), Some("IHDR"));
    }

    #[test]
    fn garbage_input_is_a_decode_error() {
        let garbage = b"this is not an image at all, just text".repeat(10);
        assert!(matches!(make_thumbnails(&garbage, &[200], &Limits::default()), Err(ThumbnailError::Decode(_))));
        // PNG and JPEG magic followed by garbage.
        for magic in [&crate::pipeline::PNG_SIGNATURE[..], &[0xFF, 0xD8, 0xFF][..]] {
            let mut bytes = magic.to_vec();
            bytes.extend_from_slice(&garbage);
            assert!(matches!(make_thumbnails(&bytes, &[200], &Limits::default()), Err(ThumbnailError::Decode(_))));
        }
    }

    #[test]
    fn mutated_and_truncated_images_never_panic() {
        let sources = [
            encode_jpeg_rgb(&gradient_rgb(48, 32)),
            encode_png_rgb(&gradient_rgb(48, 32)),
            encode_png(&DynamicImage::ImageRgba8(RgbaImage::new(20, 30))),
        ];
        let mut state = 0x9E37_79B9u32;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            state
        };
        for source in &sources {
            for cut in (0..source.len()).step_by(7) {
                let _ = make_thumbnails(&source[..cut], &[16], &Limits::default());
                let _ = crate::pipeline::probe(&source[..cut], &Limits::default());
            }
            for _ in 0..150 {
                let mut bytes = source.clone();
                for _ in 0..(1 + next() % 4) {
                    let at = next() as usize % bytes.len();
                    bytes[at] = next() as u8;
                }
                let _ = make_thumbnails(&bytes, &[16, 8], &Limits::default());
                let _ = crate::pipeline::probe(&bytes, &Limits::default());
            }
        }
    }

    #[test]
    fn empty_heights_give_no_thumbnails_and_zero_is_rejected() {
        let png = encode_png_rgb(&gradient_rgb(10, 10));
        assert!(make_thumbnails(&png, &[], &Limits::default()).expect("empty request").is_empty());
        assert!(matches!(make_thumbnails(&png, &[200, 0], &Limits::default()), Err(ThumbnailError::InvalidHeight(_))));
    }

    #[test]
    fn an_image_over_the_limits_is_too_large_before_decoding() {
        let png = encode_png(&DynamicImage::ImageLuma8(GrayImage::new(2000, 2000)));
        let pixels = Limits { max_pixels: 1_000_000, ..Limits::default() };
        assert!(matches!(make_thumbnails(&png, &[200], &pixels), Err(ThumbnailError::TooLarge(_))));
        let side = Limits { max_side: 1999, ..Limits::default() };
        assert!(matches!(make_thumbnails(&png, &[200], &side), Err(ThumbnailError::TooLarge(_))));
        let mut jpeg = encode_jpeg_rgb(&gradient_rgb(16, 16));
        set_jpeg_sof_dimensions(&mut jpeg, 60_000, 60_000);
        assert!(matches!(make_thumbnails(&jpeg, &[200], &Limits::default()), Err(ThumbnailError::TooLarge(_))));
    }

    #[test]
    fn one_call_makes_several_heights_that_match_direct_resizes() {
        // A smooth source, so JPEG loss is small and the chained 100 px thumbnail (resized
        // from the 200 px one) can be compared with a direct resize of the source.
        let source = gradient_rgb(800, 600);
        let png = encode_png_rgb(&source);
        let out = thumbs(&png, &[100, 200, 400]);
        let dims: Vec<(u32, u32)> = out.iter().map(|t| (t.width, t.height)).collect();
        assert_eq!(dims, vec![(133, 100), (267, 200), (533, 400)]);
        for thumb in &out {
            let decoded = assert_dims(thumb, (thumb.width, thumb.height));
            let reference = DynamicImage::ImageRgb8(source.clone()).resize_exact(
                thumb.width,
                thumb.height,
                image::imageops::FilterType::Lanczos3,
            );
            let diff = mean_abs_diff(&decoded, &reference);
            assert!(diff < 1.0, "{} px: mean difference {diff}", thumb.height);
        }
    }
}
