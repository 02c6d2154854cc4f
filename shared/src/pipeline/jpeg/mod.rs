//! JPEG decoding scaled in the DCT domain: a 20-megapixel photo needed as a 400 px thumbnail
//! is decoded straight to about 1/8 size. That skips most of the IDCT and colour conversion,
//! and the decoded buffer is 1/64 of the full one (the memory bound of a job). The scale is
//! chosen by [`min_decoded_size`]: the smallest that leaves a Lanczos3 reduction of at least
//! 5 % to do, so the final resize, not the DCT, sets the thumbnail's look (see there).
//!
//! Baseline and progressive files (nearly all photos) go to imageapi's own decoder (the
//! [`imageapi_jpeg`] crate), which decodes only what the reduced size needs and uses the idle
//! cores; the rest (CMYK, RGB-coded, unusual sampling, or a thumbnail that needs full size) to
//! `jpeg-decoder`'s scaled decode, whose memory [`general_decoder_memory`] bounds (12-bit,
//! lossless and arithmetic-coded files are refused at upload: no decoder here reads them).

use image::{DynamicImage, GrayImage, RgbImage};
use imageapi_jpeg::DecodeError;
use jpeg_decoder::{Decoder, PixelFormat};

use super::decoder_input::DecoderInput;
use super::structure::JpegFrame;
use super::ImageFormat;
pub(super) use imageapi_jpeg::{recycle, ScaledJpeg};

/// Decodes with imageapi's own decoder at `eighths`/8, on the cores no other job holds.
/// `Err`: it declined part-way (damaged data, most likely).
pub(super) fn decode_scaled(jpeg: &ScaledJpeg<'_>, eighths: u32) -> Result<DynamicImage, DecodeError> {
    let helpers = super::cores::spare(jpeg.useful_threads() - 1);
    jpeg.decode(eighths, 1 + helpers.count())
}

/// Decodes with `jpeg-decoder` at the smallest DCT scale giving at least `min_width` ×
/// `min_height` pixels (stored orientation), or full size: the files imageapi's own decoder
/// does not read (CMYK, RGB-coded, unusual sampling, ...) and those needing full size. Gray
/// stays gray; CMYK becomes RGB. It is shown the file through a [`DecoderInput`], so it keeps
/// no metadata. `Err`: why it cannot decode this file.
pub(super) fn decode_general(original: &[u8], min_width: u32, min_height: u32) -> Result<DynamicImage, String> {
    let mut decoder = Decoder::new(DecoderInput::new(original, ImageFormat::Jpeg));
    decoder.read_info().map_err(|err| err.to_string())?;
    let info = decoder.info().ok_or("no frame header")?;
    if !matches!(info.pixel_format, PixelFormat::L8 | PixelFormat::RGB24 | PixelFormat::CMYK32) {
        return Err(format!("{:?} samples", info.pixel_format));
    }
    let (width, height) =
        scale_for(&mut decoder, info.width, info.height, min_width, min_height).map_err(|err| err.to_string())?;
    // Bound what the decoder may allocate for its output at this scale.
    decoder
        .set_max_decoding_buffer_size(usize::try_from(u64::from(width) * u64::from(height) * 4).unwrap_or(usize::MAX));
    let pixels = decoder.decode().map_err(|err| err.to_string())?;
    let (w, h) = (u32::from(width), u32::from(height));
    let image = match info.pixel_format {
        PixelFormat::L8 => GrayImage::from_raw(w, h, pixels).map(DynamicImage::ImageLuma8),
        PixelFormat::RGB24 => RgbImage::from_raw(w, h, pixels).map(DynamicImage::ImageRgb8),
        PixelFormat::CMYK32 => RgbImage::from_raw(w, h, cmyk_to_rgb(&pixels)).map(DynamicImage::ImageRgb8),
        PixelFormat::L16 => None,
    };
    image.ok_or_else(|| "decoded data does not match its size".to_owned())
}

/// The most [`decode_general`] may hold at `eighths`/8, from the frame header: every
/// coefficient of a progressive file, kept at full size until its last scan (what makes a
/// 1.5 MB 100-megapixel CMYK file cost 800 MB); as much again for the copies of coefficient
/// rows it queues to its worker threads (the queues are unbounded, and a scan may finish every
/// component at once); its sample planes and output at the scale; and our CMYK to RGB copy.
pub(super) fn general_decoder_memory(frame: &JpegFrame, eighths: u32) -> u64 {
    let blocks = frame.stored_blocks();
    let coefficients = blocks.saturating_mul(64 * 2) * if frame.progressive() { 2 } else { 1 };
    let planes = blocks.saturating_mul(u64::from(eighths * eighths));
    let (width, height) = scaled_size(frame.width, frame.height, eighths);
    let out = u64::from(width) * u64::from(height);
    let components = frame.sampling.len() as u64;
    let rgb = if components == 4 { out * 3 } else { 0 };
    coefficients.saturating_add(planes).saturating_add(out * components).saturating_add(rgb)
}

/// The size of a decode at `eighths`/8 (sides rounded up, as the decoders do).
pub(super) fn scaled_size(width: u32, height: u32, eighths: u32) -> (u32, u32) {
    ((width * eighths).div_ceil(8), (height * eighths).div_ceil(8))
}

/// What a JPEG must be decoded to for a thumbnail of `thumb_width` x `thumb_height` (stored
/// orientation): that size plus 5 %, rounded up.
///
/// Measured with `scripts/bench-inprocess` (SSIM against a full decode with an exact Lanczos3
/// resize): at 1/8 or 1/4 of the original the DCT acts as a box-like filter, and a Lanczos3
/// reduction after it, even a small one, gives thumbnails as close to the reference as libvips'
/// (which keeps at least twice the target). Where the DCT scale lands exactly on the thumbnail
/// size (2560x1600 at 1/4 for 400 px, 1.00x) there is no resize left, and the DCT's own filter
/// is measurably less faithful (SSIM 0.9866 against 0.9888 for twice the target; libvips
/// 0.9889). At 1.06x (the 6028x3391 bird at 1/8) it is already closer than libvips (0.9788
/// against 0.9778), at 1.25x as close as twice the target. The corpus has nothing between
/// 1.00x and 1.06x; 5 % sits in that gap. Keeping twice the target, as before, costs up to four
/// times the pixels to transform, convert and resize (0.75x libvips' time on one core against
/// 1.2x, the same run). The price, on content made to be the worst case (a pattern of period
/// 7 px, 2400x1600, 760 px high, decoded at 1/2 where libvips decodes at full size): SSIM 0.537
/// against libvips' 0.550; on every corpus photo and artwork ours is the closer one.
pub(super) fn min_decoded_size(thumb_width: u32, thumb_height: u32) -> (u32, u32) {
    let with_margin = |side: u32| side.saturating_add(side.div_ceil(20));
    (with_margin(thumb_width), with_margin(thumb_height))
}

/// The smallest reduced scale (1/8, 1/4 or 1/2, as eighths) whose output covers
/// `min_width` × `min_height`; `None` when only full size does, or the image is under 64 px on
/// a side.
pub(super) fn reduced_scale(width: u32, height: u32, min_width: u32, min_height: u32) -> Option<u32> {
    // On a side under 64 px the last, padded block is a large share of a reduced decode and
    // shifts what the resize sees (a 3x900 strip: mean difference 6.4 against 0.9 at full size);
    // a full decode of such an image costs nothing anyway.
    if width.min(height) < 64 {
        return None;
    }
    [1, 2, 4]
        .into_iter()
        .find(|&eighths| (width * eighths).div_ceil(8) >= min_width && (height * eighths).div_ceil(8) >= min_height)
}

/// Sets `jpeg-decoder` to the scale [`reduced_scale`] chooses, or full size. (`jpeg-decoder`'s
/// own choice is satisfied by either axis.)
fn scale_for<R: std::io::Read>(
    decoder: &mut Decoder<R>,
    width: u16,
    height: u16,
    min_width: u32,
    min_height: u32,
) -> Result<(u16, u16), jpeg_decoder::Error> {
    if let Some(eighths) = reduced_scale(width.into(), height.into(), min_width, min_height) {
        // Asking for exactly this scale's size (the decoder rounds up too) selects this scale;
        // tiny sides round the same at every scale, so the result is checked and full size
        // used otherwise.
        let request = |len: u16| u16::try_from((u32::from(len) * eighths).div_ceil(8)).unwrap_or(len);
        let got = decoder.scale(request(width), request(height))?;
        if u32::from(got.0) >= min_width.min(u32::from(width)) && u32::from(got.1) >= min_height.min(u32::from(height))
        {
            return Ok(got);
        }
    }
    decoder.scale(width, height)
}

/// `jpeg-decoder` hands CMYK out inverted (as Adobe applications store it); this is the
/// conversion the `image` crate applied to it, so colours match the general decoder's.
fn cmyk_to_rgb(cmyk: &[u8]) -> Vec<u8> {
    let mut rgb = Vec::with_capacity(cmyk.len() / 4 * 3);
    for px in cmyk.chunks_exact(4) {
        let k = 255 - u16::from(px[3]);
        for &channel in &px[..3] {
            let c = 255 - u16::from(channel);
            rgb.push(((c * k) / 255) as u8);
        }
    }
    rgb
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::test_support::{encode_jpeg, gradient_rgb, mean_abs_diff, ssim};
    use crate::pipeline::{make_thumbnails, thumbnail_size, Limits};
    use image::{Rgb, RgbImage};

    /// What a render decodes to: imageapi's decoder at the smallest scale covering the
    /// request, or jpeg-decoder for what it declines.
    fn decode_for(jpeg: &[u8], min_width: u32, min_height: u32) -> DynamicImage {
        let ours = ScaledJpeg::read(jpeg).ok().and_then(|scaled| {
            let (width, height) = scaled.dimensions();
            decode_scaled(&scaled, reduced_scale(width, height, min_width, min_height)?).ok()
        });
        ours.unwrap_or_else(|| decode_general(jpeg, min_width, min_height).expect("decoded"))
    }

    /// A photo-like test image: smooth gradients with fine detail on top.
    fn detailed(width: u32, height: u32) -> RgbImage {
        RgbImage::from_fn(width, height, |x, y| {
            let fine = ((x as f32 * 0.9).sin() * (y as f32 * 0.7).cos() * 40.0) as i32;
            let r = (x * 255 / width) as i32 + fine;
            let g = (y * 255 / height) as i32 - fine;
            let b = ((x + y) * 255 / (width + height)) as i32;
            Rgb([r.clamp(0, 255) as u8, g.clamp(0, 255) as u8, b.clamp(0, 255) as u8])
        })
    }

    #[test]
    fn the_smallest_dct_scale_that_still_covers_the_request_is_chosen() {
        let jpeg = encode_jpeg(&DynamicImage::ImageRgb8(detailed(1600, 1200)));
        let decoded = |w, h| decode_for(&jpeg, w, h);
        assert_eq!(decoded(400, 300).height(), 300, "1/4");
        assert_eq!(decoded(401, 300).width(), 800, "one pixel more needs 1/2");
        assert_eq!(decoded(200, 150).width(), 200, "1/8");
        assert_eq!(decoded(100, 50).width(), 200, "never below 1/8");
        assert_eq!(decoded(5000, 5000).width(), 1600, "never above full size");
    }

    #[test]
    fn the_decoded_size_leaves_a_resize_of_at_least_five_percent() {
        let scale = |(w, h): (u32, u32), target: u32| {
            let (tw, th) = thumbnail_size(w, h, target);
            let (min_w, min_h) = min_decoded_size(tw, th);
            reduced_scale(w, h, min_w, min_h)
        };
        // The corpus: the bird at 1/8 (424 px for 400, 1.06x), the painting at 1/8 (500 px).
        assert_eq!(scale((6028, 3391), 400), Some(1));
        assert_eq!(scale((6000, 4000), 400), Some(1));
        // 1/8 would be too small (360 px), 1/4 leaves 720.
        assert_eq!(scale((5120, 2880), 400), Some(2));
        // 1/4 lands exactly on 400 px: no resize would be left, so 1/2.
        assert_eq!(scale((2560, 1600), 400), Some(4));
        assert_eq!(scale((2560, 1600), 380), Some(2), "400 px is 5.3 % more than 380");
        assert_eq!(scale((2560, 1600), 390), Some(4), "400 px is only 2.6 % more than 390");
        assert_eq!(scale((800, 600), 400), None, "full size when no scale leaves enough");
        assert_eq!(min_decoded_size(1, 1), (2, 2), "rounded up, never nothing");
        assert_eq!(min_decoded_size(u32::MAX, 400), (u32::MAX, 420), "no overflow");
    }

    #[test]
    fn thumbnails_from_the_smallest_dct_scales_stay_close_to_the_reference() {
        // 2400x1600: 190 px comes from the 1/8 decode (200 px), 380 from 1/4 (400 px), 760
        // from 1/2; each compared with a Lanczos3 resize of the full decode.
        let source = detailed(2400, 1600);
        let jpeg = encode_jpeg(&DynamicImage::ImageRgb8(source));
        let full = image::load_from_memory(&jpeg).expect("decode");
        // Floors just under what was measured (0.989, 0.916, 0.864): the pattern's period of
        // 7 px is near what a reduced decode can hold, the worst case for the DCT's filter.
        // scripts/bench-inprocess, on its own copy of this pattern and against its own
        // reference, puts libvips level with us at 190 and 380 px and ahead at 760 px, where it
        // decodes at full size: the trade-off that `min_decoded_size` documents.
        for (height, floor) in [(190, 0.98), (380, 0.9), (760, 0.85)] {
            let thumb = &make_thumbnails(&jpeg, &[height], &Limits::default()).expect("thumbnail")[0];
            let ours = image::load_from_memory(&thumb.bytes).expect("decode thumbnail");
            let reference = full.resize_exact(thumb.width, thumb.height, image::imageops::FilterType::Lanczos3);
            let similarity = ssim(&ours, &reference);
            assert!(similarity > floor, "{height} px: SSIM {similarity:.4}");
        }
    }

    #[test]
    fn gray_stays_gray_with_either_decoder() {
        let gray = DynamicImage::ImageLuma8(DynamicImage::ImageRgb8(detailed(640, 480)).into_luma8());
        let jpeg = encode_jpeg(&gray);
        assert!(matches!(decode_for(&jpeg, 160, 120), DynamicImage::ImageLuma8(_)));
        assert!(matches!(decode_general(&jpeg, 160, 120), Ok(DynamicImage::ImageLuma8(_))));
    }

    #[test]
    fn cmyk_jpegs_get_the_same_colours_as_from_the_general_decoder() {
        let rgb = detailed(320, 240);
        // CMYK with K from the darkest channel, as a print workflow would separate it.
        let mut cmyk = Vec::with_capacity(320 * 240 * 4);
        for p in rgb.pixels() {
            let k = 255 - p.0.iter().copied().max().unwrap_or(0);
            for &c in &p.0 {
                let v = if k == 255 { 0 } else { (255 - c - k) as u16 * 255 / (255 - k) as u16 };
                cmyk.push(v as u8);
            }
            cmyk.push(k);
        }
        let mut bytes = Vec::new();
        jpeg_encoder::Encoder::new(&mut bytes, 95)
            .encode(&cmyk, 320, 240, jpeg_encoder::ColorType::Cmyk)
            .expect("encode CMYK");
        let ours = decode_for(&bytes, 320, 240);
        let general = image::load_from_memory(&bytes).expect("image decodes CMYK");
        assert!(matches!(ours, DynamicImage::ImageRgb8(_)));
        let diff = mean_abs_diff(&ours, &DynamicImage::ImageRgb8(general.to_rgb8()));
        assert!(diff < 1.5, "mean difference {diff}");
        let back = mean_abs_diff(&ours, &DynamicImage::ImageRgb8(rgb));
        assert!(back < 6.0, "close to the original colours, mean difference {back}");
    }

    #[test]
    fn thumbnails_from_a_scaled_decode_look_like_a_full_size_lanczos_reference() {
        let source = detailed(2400, 1600);
        let jpeg = encode_jpeg(&DynamicImage::ImageRgb8(source));
        let full = image::load_from_memory(&jpeg).expect("decode");
        let thumbs = make_thumbnails(&jpeg, &[400, 200, 120], &Limits::default()).expect("thumbnails");
        for thumb in thumbs {
            let (w, h) = thumbnail_size(2400, 1600, thumb.requested_height);
            assert_eq!((thumb.width, thumb.height), (w, h));
            let ours = image::load_from_memory(&thumb.bytes).expect("decode thumbnail");
            let reference = full.resize_exact(w, h, image::imageops::FilterType::Lanczos3);
            let diff = mean_abs_diff(&ours, &reference);
            assert!(diff < 2.5, "{} px: mean difference {diff}", thumb.requested_height);
        }
    }

    #[test]
    fn jpeg_strips_and_small_images_keep_exact_sizes_and_their_content() {
        for (w, h) in [(1, 2000), (2000, 1), (3, 900), (150, 100)] {
            // Smooth content: a 1 px strip of fine detail would mostly measure JPEG's loss.
            let source = DynamicImage::ImageRgb8(gradient_rgb(w, h));
            let jpeg = encode_jpeg(&source);
            let full = image::load_from_memory(&jpeg).expect("decode");
            for thumb in make_thumbnails(&jpeg, &[400, 200], &Limits::default()).expect("thumbnails") {
                let expected = thumbnail_size(w, h, thumb.requested_height);
                assert_eq!((thumb.width, thumb.height), expected, "{w}x{h} at {}", thumb.requested_height);
                let ours = image::load_from_memory(&thumb.bytes).expect("decode thumbnail");
                let reference = full.resize_exact(expected.0, expected.1, image::imageops::FilterType::Lanczos3);
                let diff = mean_abs_diff(&ours, &reference);
                assert!(diff < 4.0, "{w}x{h} at {}: mean difference {diff}", thumb.requested_height);
            }
        }
    }
}
