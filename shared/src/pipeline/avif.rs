//! AVIF variants, encoded by libaom through libavif (both C, built from the sources bundled in
//! `libavif-sys`/`libaom-sys` with cmake).
//!
//! Why libaom and not rav1e (pure Rust, which we used first, through ravif and then directly):
//! for still pictures libaom's all-intra mode is 3-4x faster at the same bytes and SSIM on our
//! corpus thumbnails, and rav1e alone made the whole modern job 1.6x libvips' time (whose
//! heifsave also encodes with libaom). Measured in docs/BENCHMARKS.md ("Modern formats").
//!
//! Colour: 8-bit YCbCr, BT.601 matrix, full range, signalled as sRGB (BT.709 primaries, sRGB
//! transfer) in the `colr` box; our conversion, so it matches what we signal. Gray images are
//! coded as 4:0:0 (one plane). Alpha, when any pixel is not opaque, is a second AV1 image coded
//! losslessly, so transparency and its edges stay exact. No metadata (no EXIF, XMP or ICC).

use std::borrow::Cow;

use image::DynamicImage;

/// How an AVIF is encoded; [`AvifSettings::default`] is what the pipeline uses.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct AvifSettings {
    /// libavif's quality, 0..=100 (100 lossless), mapped by libavif to libaom's quantizer.
    pub quality: u8,
    /// libavif's speed, 0 (slowest) ..= 10 (fastest); libaom's `cpu-used` in all-intra mode.
    pub speed: u8,
    /// Chroma at half resolution both ways (4:2:0) instead of full (4:4:4).
    pub subsample_chroma: bool,
}

impl Default for AvifSettings {
    fn default() -> Self {
        AvifSettings { quality: 70, speed: 8, subsample_chroma: false }
    }
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
    let gray = !image.color().has_color();
    // Packed 8-bit: gray (1 or 2 channels) or RGB/RGBA (3 or 4), alpha last when present.
    let (mut pixels, channels): (Cow<'_, [u8]>, usize) = match image {
        DynamicImage::ImageRgb8(rgb) => (Cow::Borrowed(rgb.as_raw()), 3),
        DynamicImage::ImageRgba8(rgba) => (Cow::Borrowed(rgba.as_raw()), 4),
        DynamicImage::ImageLuma8(luma) => (Cow::Borrowed(luma.as_raw()), 1),
        other if gray && other.color().has_alpha() => (Cow::Owned(other.to_luma_alpha8().into_raw()), 2),
        other if gray => (Cow::Owned(other.to_luma8().into_raw()), 1),
        other if other.color().has_alpha() => (Cow::Owned(other.to_rgba8().into_raw()), 4),
        other => (Cow::Owned(other.to_rgb8().into_raw()), 3),
    };
    let has_alpha = channels % 2 == 0;
    let alpha: Option<Vec<u8>> = (has_alpha && pixels.chunks_exact(channels).any(|px| px[channels - 1] != 255))
        .then(|| pixels.chunks_exact(channels).map(|px| px[channels - 1]).collect());
    if alpha.is_some() && channels == 4 {
        clean_transparent(pixels.to_mut(), width);
    }

    let layout = if gray {
        Layout::Gray
    } else if settings.subsample_chroma {
        Layout::Yuv420
    } else {
        Layout::Yuv444
    };
    let planes: Vec<Vec<u8>> = match layout {
        Layout::Gray => vec![pixels.chunks_exact(channels).map(|px| px[0]).collect()],
        Layout::Yuv420 | Layout::Yuv444 => {
            ycbcr_planes(&pixels, channels, width, height, layout == Layout::Yuv420).into()
        }
    };
    let planes: Vec<&[u8]> = planes.iter().map(Vec::as_slice).collect();
    libavif::encode(width, height, layout, &planes, alpha.as_deref(), settings)
        .map_err(|err| format!("libavif: {err} ({width}x{height} px)"))
}

/// Which planes an AVIF's colour image has.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Layout {
    Gray,
    Yuv420,
    Yuv444,
}

/// The only unsafe code of the pipeline: libavif's C API, wrapped so that every allocation it
/// makes is freed by a `Drop` and every plane copy stays inside the sizes libavif allocated
/// (checked against the row lengths and counts it reports, not assumed).
#[allow(unsafe_code)]
mod libavif {
    use libavif_sys as sys;

    use super::{AvifSettings, Layout};

    struct Image(*mut sys::avifImage);
    impl Drop for Image {
        fn drop(&mut self) {
            // SAFETY: created by avifImageCreate, destroyed once.
            unsafe { sys::avifImageDestroy(self.0) }
        }
    }

    struct Encoder(*mut sys::avifEncoder);
    impl Drop for Encoder {
        fn drop(&mut self) {
            // SAFETY: created by avifEncoderCreate, destroyed once.
            unsafe { sys::avifEncoderDestroy(self.0) }
        }
    }

    struct Output(sys::avifRWData);
    impl Drop for Output {
        fn drop(&mut self) {
            // SAFETY: filled by avifEncoderWrite (or still empty); freeing empty data is a no-op.
            unsafe { sys::avifRWDataFree(&mut self.0) }
        }
    }

    fn check(result: sys::avifResult) -> Result<(), String> {
        if result == sys::AVIF_RESULT_OK {
            return Ok(());
        }
        // SAFETY: avifResultToString returns a static NUL-terminated string for every value.
        let text = unsafe { std::ffi::CStr::from_ptr(sys::avifResultToString(result)) };
        Err(text.to_string_lossy().into_owned())
    }

    /// Copies `rows` rows of `row_len` bytes from `source` into a plane libavif allocated.
    ///
    /// SAFETY (of the caller): `dest` points to a plane of at least `rows` rows of `dest_stride`
    /// bytes each, as libavif allocated it for this image.
    unsafe fn copy_plane(
        source: &[u8],
        row_len: usize,
        rows: usize,
        dest: *mut u8,
        dest_stride: usize,
    ) -> Result<(), String> {
        if dest.is_null() || row_len > dest_stride || source.len() != row_len * rows {
            return Err(format!("plane of {} bytes does not fit {rows} rows of {row_len}", source.len()));
        }
        for (row, line) in source.chunks_exact(row_len).enumerate() {
            // SAFETY: row < rows and row_len <= dest_stride, within the caller's promise.
            unsafe { std::ptr::copy_nonoverlapping(line.as_ptr(), dest.add(row * dest_stride), row_len) };
        }
        Ok(())
    }

    pub(super) fn encode(
        width: usize,
        height: usize,
        layout: Layout,
        planes: &[&[u8]],
        alpha: Option<&[u8]>,
        settings: &AvifSettings,
    ) -> Result<Vec<u8>, String> {
        let (w, h) = (u32::try_from(width).map_err(|_| "width")?, u32::try_from(height).map_err(|_| "height")?);
        let (format, chroma) = match layout {
            Layout::Gray => (sys::AVIF_PIXEL_FORMAT_YUV400, None),
            Layout::Yuv420 => (sys::AVIF_PIXEL_FORMAT_YUV420, Some((width.div_ceil(2), height.div_ceil(2)))),
            Layout::Yuv444 => (sys::AVIF_PIXEL_FORMAT_YUV444, Some((width, height))),
        };
        // SAFETY: plain constructor; null is checked.
        let image = Image(unsafe { sys::avifImageCreate(w, h, 8, format) });
        if image.0.is_null() {
            return Err("out of memory".into());
        }
        // SAFETY: image.0 is a valid avifImage owned by `image` for the rest of this function.
        let img = unsafe { &mut *image.0 };
        img.yuvRange = sys::AVIF_RANGE_FULL;
        img.colorPrimaries = sys::AVIF_COLOR_PRIMARIES_BT709 as _;
        img.transferCharacteristics = sys::AVIF_TRANSFER_CHARACTERISTICS_SRGB as _;
        img.matrixCoefficients = sys::AVIF_MATRIX_COEFFICIENTS_BT601 as _;
        let wanted = sys::AVIF_PLANES_YUV | if alpha.is_some() { sys::AVIF_PLANES_A } else { 0 };
        // SAFETY: allocates the planes of this image per its size and format.
        check(unsafe { sys::avifImageAllocatePlanes(image.0, wanted) })?;

        let luma = planes.first().ok_or("no luma plane")?;
        // SAFETY (each copy): libavif allocated plane i with yuvRowBytes[i] per row for `height`
        // rows (luma, 4:4:4 chroma) or height/2 rounded up (4:2:0 chroma).
        unsafe { copy_plane(luma, width, height, img.yuvPlanes[0], img.yuvRowBytes[0] as usize)? };
        if let Some((cw, ch)) = chroma {
            for i in 1..3 {
                let plane = planes.get(i).ok_or("missing chroma plane")?;
                unsafe { copy_plane(plane, cw, ch, img.yuvPlanes[i], img.yuvRowBytes[i] as usize)? };
            }
        }
        if let Some(alpha) = alpha {
            // SAFETY: the alpha plane was allocated above with alphaRowBytes per row.
            unsafe { copy_plane(alpha, width, height, img.alphaPlane, img.alphaRowBytes as usize)? };
        }

        // SAFETY: plain constructor; null is checked.
        let encoder = Encoder(unsafe { sys::avifEncoderCreate() });
        if encoder.0.is_null() {
            return Err("out of memory".into());
        }
        // SAFETY: encoder.0 is valid and owned by `encoder`.
        let enc = unsafe { &mut *encoder.0 };
        enc.codecChoice = sys::AVIF_CODEC_CHOICE_AOM;
        enc.maxThreads = 1;
        enc.speed = i32::from(settings.speed.min(10));
        enc.quality = i32::from(settings.quality.min(100));
        enc.qualityAlpha = 100;
        let mut output = Output(sys::avifRWData { data: std::ptr::null_mut(), size: 0 });
        // SAFETY: valid encoder and image; output is an empty avifRWData libavif fills.
        check(unsafe { sys::avifEncoderWrite(encoder.0, image.0, &mut output.0) })?;
        if output.0.data.is_null() {
            return Err("no output".into());
        }
        // SAFETY: libavif wrote `size` bytes at `data`; copied before `output` frees them.
        Ok(unsafe { std::slice::from_raw_parts(output.0.data, output.0.size) }.to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn every_layout_encodes_at_odd_sizes_and_a_plane_of_the_wrong_size_is_an_error() {
        let settings = AvifSettings::default();
        for (w, h) in [(1u32, 1u32), (3, 5), (33, 17)] {
            let rgb = DynamicImage::ImageRgb8(image::RgbImage::from_fn(w, h, |x, y| {
                image::Rgb([(x * 7) as u8, (y * 5) as u8, 90])
            }));
            let luma = DynamicImage::ImageLuma8(image::GrayImage::from_fn(w, h, |x, _| image::Luma([(x * 9) as u8])));
            let rgba = DynamicImage::ImageRgba8(image::RgbaImage::from_fn(w, h, |x, _| {
                image::Rgba([200, 10, 10, (x * 40 % 256) as u8])
            }));
            for image in [&rgb, &luma, &rgba] {
                for subsample_chroma in [false, true] {
                    let bytes = encode_avif(image, &AvifSettings { subsample_chroma, ..settings }).expect("encodes");
                    assert_eq!(&bytes[4..12], b"ftypavif", "{w}x{h}");
                }
            }
        }
        let err = libavif::encode(4, 4, Layout::Gray, &[&[0u8; 15]], None, &settings).expect_err("short plane");
        assert!(err.contains("does not fit"), "{err}");
    }
}
