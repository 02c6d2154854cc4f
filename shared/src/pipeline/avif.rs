//! AVIF variants, encoded with rav1e directly and wrapped by `avif-serialize`.
//!
//! Why not through `ravif` (which we used first): ravif ties every encoder knob to one speed
//! number, and its fast presets (9, 10) allow only 16x16 partitions, which costs the grey and
//! painted corpus images many bytes; its slower ones code chroma at full resolution, which is
//! half of rav1e's work. Here each knob is chosen from the measurement in docs/BENCHMARKS.md
//! ("Modern formats"): the cheap intra-only settings of rav1e's fast presets, the partition
//! sizes and chroma subsampling picked for bytes and SSIM against our JPEG thumbnail.
//!
//! Colour: 8-bit YCbCr, BT.601 matrix, full range, signalled as sRGB (BT.709 primaries, sRGB
//! transfer) in the `colr` box, as libavif and ravif write it. Alpha, when any pixel is not
//! opaque, is a second AV1 image coded losslessly, so transparency and its edges stay exact.

use std::borrow::Cow;

use image::DynamicImage;
use rav1e::prelude::*;

/// How an AVIF is encoded; [`AvifSettings::default`] is what the pipeline uses.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct AvifSettings {
    /// 1..=100, on ravif's (and libavif's) scale, mapped to rav1e's quantizer.
    pub quality: f32,
    /// rav1e's speed preset the other settings start from (intra-only images use few of them).
    pub speed: u8,
    /// Smallest and largest partition rav1e may choose (4, 8, 16, 32 or 64 px).
    pub partitions: (u8, u8),
    /// Chroma at half resolution both ways (4:2:0) instead of full (4:4:4).
    pub subsample_chroma: bool,
    /// rav1e's psychovisual tuning (on) or plain PSNR (off; allows transform-domain distortion).
    pub psychovisual: bool,
    /// Transform types limited to the common ones (faster search).
    pub reduced_tx_set: bool,
    /// The constrained directional enhancement filter (searched per 64x64 block).
    pub cdef: bool,
    /// The loop restoration filter.
    pub lrf: bool,
}

impl Default for AvifSettings {
    fn default() -> Self {
        AvifSettings {
            quality: 85.0,
            speed: 8,
            partitions: (8, 16),
            subsample_chroma: false,
            psychovisual: true,
            reduced_tx_set: false,
            cdef: true,
            lrf: true,
        }
    }
}

/// ravif's mapping of quality to rav1e's quantizer (0 = lossless .. 255), kept so that quality
/// figures stay comparable with ravif's and with earlier measurements.
fn quantizer(quality: f32) -> usize {
    let q = (quality / 100.0).clamp(0.0, 1.0);
    let x = if q >= 0.82 {
        (1.0 - q) * 2.6
    } else if q > 0.25 {
        q.mul_add(-0.5, 1.0 - 0.125)
    } else {
        1.0 - q
    };
    (x * 255.0).round() as usize
}

fn block(size: u8) -> BlockSize {
    match size {
        4 => BlockSize::BLOCK_4X4,
        8 => BlockSize::BLOCK_8X8,
        16 => BlockSize::BLOCK_16X16,
        32 => BlockSize::BLOCK_32X32,
        _ => BlockSize::BLOCK_64X64,
    }
}

fn speed_settings(settings: &AvifSettings) -> SpeedSettings {
    let mut speed = SpeedSettings::from_preset(settings.speed);
    // One still picture: nothing between frames to search.
    speed.multiref = false;
    speed.rdo_lookahead_frames = 1;
    speed.scene_detection_mode = SceneDetectionSpeed::None;
    speed.motion.include_near_mvs = false;
    speed.lrf = settings.lrf;
    speed.cdef = settings.cdef;
    speed.fast_deblock = true;
    speed.sgr_complexity = SGRComplexityLevel::Reduced;
    speed.partition.encode_bottomup = false;
    speed.transform.rdo_tx_decision = false;
    speed.transform.reduced_tx_set = settings.reduced_tx_set;
    speed.prediction.prediction_modes = PredictionModesSetting::Simple;
    speed.prediction.fine_directional_intra = false;
    speed.partition.partition_range = PartitionRange::new(block(settings.partitions.0), block(settings.partitions.1));
    speed
}

/// One AV1 still picture of `planes` (luma first), each `stride` samples wide.
fn encode_av1(
    width: usize,
    height: usize,
    planes: &[(&[u8], usize)],
    chroma: ChromaSampling,
    colour: Option<ColorDescription>,
    quantizer: usize,
    settings: &AvifSettings,
) -> Result<Vec<u8>, String> {
    let config = Config::new()
        .with_encoder_config(EncoderConfig {
            width,
            height,
            bit_depth: 8,
            chroma_sampling: chroma,
            chroma_sample_position: ChromaSamplePosition::Unknown,
            pixel_range: PixelRange::Full,
            color_description: colour,
            still_picture: true,
            quantizer,
            min_quantizer: u8::try_from(quantizer).unwrap_or(u8::MAX),
            bitrate: 0,
            tune: if settings.psychovisual { Tune::Psychovisual } else { Tune::Psnr },
            tiles: 1,
            speed_settings: speed_settings(settings),
            ..EncoderConfig::default()
        })
        .with_threads(1);
    let mut context: Context<u8> = config.new_context().map_err(|err| format!("rav1e config: {err}"))?;
    let mut frame = context.new_frame();
    for (plane, (samples, stride)) in frame.planes.iter_mut().zip(planes) {
        plane.copy_from_raw_u8(samples, *stride, 1);
    }
    context.send_frame(frame).map_err(|err| format!("rav1e: {err}"))?;
    context.flush();
    let mut out = Vec::new();
    loop {
        match context.receive_packet() {
            Ok(mut packet) => out.append(&mut packet.data),
            Err(EncoderStatus::Encoded) => {}
            Err(EncoderStatus::LimitReached) => break,
            Err(err) => return Err(format!("rav1e: {err}")),
        }
    }
    Ok(out)
}

/// Full-range BT.601 YCbCr of one sRGB pixel, as floats (rounded by the caller).
#[inline]
fn ycbcr(r: u8, g: u8, b: u8) -> (f32, f32, f32) {
    let (r, g, b) = (f32::from(r), f32::from(g), f32::from(b));
    let y = 0.299f32.mul_add(r, 0.587f32.mul_add(g, 0.114 * b));
    let cb = (b - y).mul_add(0.5 / (1.0 - 0.114), 128.0);
    let cr = (r - y).mul_add(0.5 / (1.0 - 0.299), 128.0);
    (y, cb, cr)
}

fn to_u8(v: f32) -> u8 {
    v.round().clamp(0.0, 255.0) as u8
}

/// Splits packed pixels (`channels` 3 or 4, colour first) into Y, Cb, Cr planes; Cb and Cr at
/// half resolution (averaged over each 2x2 block, in YCbCr) when `subsample`.
fn ycbcr_planes(pixels: &[u8], channels: usize, width: usize, height: usize, subsample: bool) -> [Vec<u8>; 3] {
    let mut y_plane = Vec::with_capacity(width * height);
    if !subsample {
        let (mut cb_plane, mut cr_plane) = (Vec::with_capacity(width * height), Vec::with_capacity(width * height));
        for px in pixels.chunks_exact(channels) {
            let (y, cb, cr) = ycbcr(px[0], px[1], px[2]);
            y_plane.push(to_u8(y));
            cb_plane.push(to_u8(cb));
            cr_plane.push(to_u8(cr));
        }
        return [y_plane, cb_plane, cr_plane];
    }
    let (cw, ch) = (width.div_ceil(2), height.div_ceil(2));
    let mut sums = vec![(0.0f32, 0.0f32, 0u8); cw * ch];
    for (row, line) in pixels.chunks_exact(width * channels).enumerate() {
        let sums_row = &mut sums[(row / 2) * cw..(row / 2 + 1) * cw];
        for (col, px) in line.chunks_exact(channels).enumerate() {
            let (y, cb, cr) = ycbcr(px[0], px[1], px[2]);
            y_plane.push(to_u8(y));
            let sum = &mut sums_row[col / 2];
            sum.0 += cb;
            sum.1 += cr;
            sum.2 += 1;
        }
    }
    let cb_plane = sums.iter().map(|s| to_u8(s.0 / f32::from(s.2.max(1)))).collect();
    let cr_plane = sums.iter().map(|s| to_u8(s.1 / f32::from(s.2.max(1)))).collect();
    [y_plane, cb_plane, cr_plane]
}

/// Colour under fully transparent pixels is invisible; repeating the nearest visible colour of
/// the row there (instead of whatever the source held) leaves nothing for the encoder to code.
fn clean_transparent(rgba: &mut [u8], width: usize) {
    for row in rgba.chunks_exact_mut(width * 4) {
        let Some(first) = row.chunks_exact(4).position(|px| px[3] != 0) else { continue };
        let mut fill = [row[first * 4], row[first * 4 + 1], row[first * 4 + 2]];
        for px in row.chunks_exact_mut(4) {
            if px[3] == 0 {
                px[..3].copy_from_slice(&fill);
            } else {
                fill = [px[0], px[1], px[2]];
            }
        }
    }
}

/// Encodes one thumbnail-sized image as AVIF (see the module's comment for the format).
pub(crate) fn encode_avif(image: &DynamicImage, settings: &AvifSettings) -> Result<Vec<u8>, String> {
    let (width, height) = (image.width() as usize, image.height() as usize);
    // Packed 8-bit RGB, or RGBA when the image has an alpha channel (gray is expanded).
    let (mut pixels, channels): (Cow<'_, [u8]>, usize) = match image {
        DynamicImage::ImageRgb8(rgb) => (Cow::Borrowed(rgb.as_raw()), 3),
        DynamicImage::ImageRgba8(rgba) => (Cow::Borrowed(rgba.as_raw()), 4),
        other if other.color().has_alpha() => (Cow::Owned(other.to_rgba8().into_raw()), 4),
        other => (Cow::Owned(other.to_rgb8().into_raw()), 3),
    };
    let alpha: Option<Vec<u8>> = (channels == 4 && pixels.chunks_exact(4).any(|px| px[3] != 255))
        .then(|| pixels.chunks_exact(4).map(|px| px[3]).collect());
    if alpha.is_some() {
        clean_transparent(pixels.to_mut(), width);
    }

    let subsample = settings.subsample_chroma;
    let [y, cb, cr] = ycbcr_planes(&pixels, channels, width, height, subsample);
    let chroma_stride = if subsample { width.div_ceil(2) } else { width };
    let colour = ColorDescription {
        color_primaries: ColorPrimaries::BT709,
        transfer_characteristics: TransferCharacteristics::SRGB,
        matrix_coefficients: MatrixCoefficients::BT601,
    };
    let chroma = if subsample { ChromaSampling::Cs420 } else { ChromaSampling::Cs444 };
    let colour_av1 = encode_av1(
        width,
        height,
        &[(&y, width), (&cb, chroma_stride), (&cr, chroma_stride)],
        chroma,
        Some(colour),
        quantizer(settings.quality),
        settings,
    )
    .map_err(|err| format!("{err} ({width}x{height} px)"))?;
    let alpha_av1 = match &alpha {
        Some(alpha) => Some(
            encode_av1(width, height, &[(alpha, width)], ChromaSampling::Cs400, None, 0, settings)
                .map_err(|err| format!("alpha: {err} ({width}x{height} px)"))?,
        ),
        None => None,
    };

    let mut container = avif_serialize::Aviffy::new();
    container
        .set_matrix_coefficients(avif_serialize::constants::MatrixCoefficients::Bt601)
        .set_color_primaries(avif_serialize::constants::ColorPrimaries::Bt709)
        .set_transfer_characteristics(avif_serialize::constants::TransferCharacteristics::Srgb)
        .set_full_color_range(true)
        .set_chroma_subsampling((subsample, subsample));
    let (w, h) = (u32::try_from(width).unwrap_or(u32::MAX), u32::try_from(height).unwrap_or(u32::MAX));
    Ok(container.to_vec(&colour_av1, alpha_av1.as_deref(), w, h, 8))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quality_maps_like_ravif() {
        assert_eq!(quantizer(100.0), 0);
        assert_eq!(quantizer(85.0), 99);
        assert_eq!(quantizer(50.0), 159);
    }

    #[test]
    fn subsampled_chroma_averages_each_two_by_two_block_and_keeps_odd_edges() {
        // 3x2 pixels: a red 2x2 block and a blue column.
        let red = [255u8, 0, 0];
        let blue = [0u8, 0, 255];
        let pixels: Vec<u8> = [red, red, blue, red, red, blue].concat();
        let [y, cb, cr] = ycbcr_planes(&pixels, 3, 3, 2, true);
        assert_eq!(y.len(), 6);
        assert_eq!((cb.len(), cr.len()), (2, 2));
        let (_, red_cb, red_cr) = ycbcr(255, 0, 0);
        let (_, blue_cb, blue_cr) = ycbcr(0, 0, 255);
        assert_eq!((cb[0], cr[0]), (to_u8(red_cb), to_u8(red_cr)));
        assert_eq!((cb[1], cr[1]), (to_u8(blue_cb), to_u8(blue_cr)));
    }

    #[test]
    fn transparent_pixels_take_the_nearest_visible_colour_of_their_row() {
        let mut rgba = vec![9, 9, 9, 0, 10, 20, 30, 255, 1, 2, 3, 0, 40, 50, 60, 128, 7, 7, 7, 0];
        clean_transparent(&mut rgba, 5);
        assert_eq!(rgba, vec![10, 20, 30, 0, 10, 20, 30, 255, 10, 20, 30, 0, 40, 50, 60, 128, 40, 50, 60, 0]);
    }
}
