//! imageapi's own JPEG decoder: it decodes straight to 1/8, 1/4 or 1/2 size.
//! It exists for speed. It reads only the coefficients the reduced size needs into a
//! block-sized inverse DCT, and it uses idle cores for one image, which neither
//! `jpeg-decoder` nor libjpeg-turbo can do: a baseline file's data is split into parts that
//! resynchronise (see `baseline.rs`), a progressive file's luma and chroma scans are decoded
//! side by side (see `progressive.rs`).
//!
//! - [`ScaledJpeg`]: a file's headers, read once ([`ScaledJpeg::read`]); it says how many
//!   threads the file can use and decodes at a scale on as many as the caller grants.
//! - [`DecodeError`]: why it declines a file, [`Unsupported`](DecodeError::Unsupported) or
//!   [`Corrupt`](DecodeError::Corrupt).
//! - [`recycle`]: hands a decoded image's buffer back for the next decode (see `scratch.rs`).
//!
//! It handles 8-bit Huffman-coded files, baseline (one interleaved scan) or progressive, gray
//! or YCbCr, with any power-of-two chroma subsampling, with or without restart markers.
//! Anything else — CMYK, Adobe RGB-coded, 12-bit, arithmetic-coded, a baseline file in
//! several scans, or a file it finds broken — is declined with the reason, for the caller to
//! hand to a general decoder, which also gives the definitive error for a broken file.

mod baseline;
mod error;
mod headers;
mod huffman;
mod idct;
mod progressive;
mod scratch;
#[cfg(test)]
mod tests;
mod threads;

use image::{DynamicImage, GrayImage, RgbImage};

pub use error::DecodeError;

use baseline::{Part, Segment};
use headers::Frame;
use idct::Scale;
use threads::Task;

pub struct ScaledJpeg<'a> {
    data: &'a [u8],
    frame: Frame,
}

impl<'a> ScaledJpeg<'a> {
    /// Reads the headers. `Err`: the file is not one this decoder handles
    /// ([`DecodeError::Unsupported`]) or its headers are broken ([`DecodeError::Corrupt`]).
    pub fn read(data: &'a [u8]) -> Result<Self, DecodeError> {
        Ok(Self { frame: headers::read(data)?, data })
    }

    /// Stored width and height.
    pub fn dimensions(&self) -> (u32, u32) {
        (self.frame.width, self.frame.height)
    }

    /// Decodes at `eighths`/8 of the stored size (1, 2 or 4; sides rounded up) using up to
    /// `threads` threads. Gray stays gray, YCbCr becomes RGB. `Err`: the data is broken
    /// (most likely), `eighths` is not a scale it decodes to, or a helper thread panicked.
    pub fn decode(&self, eighths: u32, threads: usize) -> Result<DynamicImage, DecodeError> {
        let scale = Scale::new(eighths).ok_or(DecodeError::Scale(eighths))?;
        let planes = if self.frame.progressive {
            progressive::decode(&self.frame, &scale, self.data, threads)?
        } else {
            let (parts, segments) = baseline::decode(&self.frame, &scale, self.data, threads)?;
            baseline_planes(&self.frame, &scale, parts, &segments, threads)?
        };
        let width = (self.frame.width * eighths).div_ceil(8);
        let height = (self.frame.height * eighths).div_ceil(8);
        let image = to_image(&self.frame, &scale, &planes, width, height, threads);
        planes.into_iter().for_each(|plane| scratch::I16.give_back(plane));
        image
    }
}

/// Hands a decoded image's pixels back for the next decode to write into, once the caller is
/// done with them: large buffers are kept, within a bound, so that the next decode does not
/// fault fresh memory in (see `scratch.rs`).
pub fn recycle(image: DynamicImage) {
    scratch::U8.give_back(image.into_bytes());
}

impl ScaledJpeg<'_> {
    /// How many threads this file can use: a baseline file about one per 256 KiB of data, a
    /// progressive colour file two (luma and chroma).
    pub fn useful_threads(&self) -> usize {
        if self.frame.progressive {
            self.frame.components.len().min(2)
        } else {
            (self.data.len() / baseline::MIN_PART_BYTES).max(1)
        }
    }
}

/// A component's plane size in samples: whole MCUs.
fn plane_size(frame: &Frame, scale: &Scale, component: usize) -> (usize, usize) {
    let (blocks_x, blocks_y) = frame.padded_blocks(component);
    (blocks_x * scale.side, blocks_y * scale.side)
}

/// Lays the baseline parts' blocks out as planes, DC corrections added, and frees the blocks.
fn baseline_planes(
    frame: &Frame,
    scale: &Scale,
    parts: Vec<Part>,
    segments: &[Segment],
    threads: usize,
) -> Result<Vec<Vec<i16>>, DecodeError> {
    let side = scale.side;
    let components = &frame.components;
    let sizes: Vec<(usize, usize)> = (0..components.len()).map(|c| plane_size(frame, scale, c)).collect();
    let mut planes: Vec<Vec<i16>> = sizes.iter().map(|(w, h)| scratch::I16.zeroed(w * h)).collect();
    // Where each block of an MCU goes: its component, and its offset in that component's
    // plane from the MCU's first sample.
    let layout: Vec<(usize, usize)> = components
        .iter()
        .enumerate()
        .flat_map(|(c, component)| {
            let plane_width = sizes[c].0;
            (0..component.v).flat_map(move |by| (0..component.h).map(move |bx| (c, (by * plane_width + bx) * side)))
        })
        .collect();
    // Luma here, chroma on a second thread if there is one.
    let split = if threads > 1 { 1 } else { components.len() };
    let (first, rest) = planes.split_at_mut(split.min(components.len()));
    let fill = |components: std::ops::Range<usize>, planes: &mut [Vec<i16>]| {
        fill_planes(frame, scale, &parts, segments, &layout, components, planes)
    };
    let mut tasks: Vec<Task<'_, Option<()>>> = vec![Box::new(move || fill(0..split, first))];
    if !rest.is_empty() {
        tasks.push(Box::new(move || fill(split..components.len(), rest)));
    }
    for filled in threads::run_all(tasks) {
        let filled = filled.ok_or(DecodeError::Panicked)?;
        filled.ok_or(DecodeError::Corrupt("the decoded parts do not cover the image"))?;
    }
    for part in parts {
        scratch::I16.give_back(part.blocks);
        scratch::I32.give_back(part.dc);
    }
    Ok(planes)
}

/// Lays out the blocks of `components` (whose planes `planes` are) from every MCU: each
/// block's AC samples plus its DC term, the segment's DC correction included — exactly, in
/// 32 bits, before anything is saturated.
fn fill_planes(
    frame: &Frame,
    scale: &Scale,
    parts: &[Part],
    segments: &[Segment],
    layout: &[(usize, usize)],
    components: std::ops::Range<usize>,
    planes: &mut [Vec<i16>],
) -> Option<()> {
    let side = scale.side;
    let block_len = side * side;
    let blocks_per_mcu = frame.blocks_per_mcu();
    let mcu_len = blocks_per_mcu * block_len;
    let widths: Vec<usize> = (0..frame.components.len()).map(|c| plane_size(frame, scale, c).0).collect();
    let mut global = 0;
    for segment in segments {
        let part = parts.get(segment.part)?;
        let range = segment.first..segment.first + segment.count;
        let blocks = part.blocks.get(range.start * mcu_len..range.end * mcu_len)?;
        let dc = part.dc.get(range.start * blocks_per_mcu..range.end * blocks_per_mcu)?;
        for (mcu, mcu_dc) in blocks.chunks_exact(mcu_len).zip(dc.chunks_exact(blocks_per_mcu)) {
            let (mcu_row, mcu_x) = (global / frame.mcus_x, global % frame.mcus_x);
            global += 1;
            for ((block, &dc), &(c, offset)) in mcu.chunks_exact(block_len).zip(mcu_dc).zip(layout) {
                if !components.contains(&c) {
                    continue;
                }
                let component = &frame.components[c];
                let level = dc.wrapping_add(segment.dc_offsets[c]).wrapping_mul(i32::from(component.quant[0]));
                let start = (mcu_row * component.v * side * widths[c] + mcu_x * component.h * side) + offset;
                let plane = &mut planes[c - components.start];
                match side {
                    4 => add_level::<4>(plane, block, start, widths[c], level),
                    2 => add_level::<2>(plane, block, start, widths[c], level),
                    _ => add_level::<1>(plane, block, start, widths[c], level),
                }
            }
        }
    }
    Some(())
}

/// Writes a SIDE×SIDE block at `start` of a plane `width` samples wide, its DC `level` added
/// to each sample and saturated. A fixed side lets each row become one SIMD add; `level` is
/// clamped first so the add cannot overflow (any level beyond ±65536 saturates every sample
/// either way).
#[inline(always)]
fn add_level<const SIDE: usize>(plane: &mut [i16], block: &[i16], start: usize, width: usize, level: i32) {
    let level = level.clamp(-65536, 65536);
    for (y, samples) in block.chunks_exact(SIDE).enumerate() {
        let row = start + y * width;
        let (Some(dst), Ok(samples)) = (plane.get_mut(row..row + SIDE), <&[i16; SIDE]>::try_from(samples)) else {
            return;
        };
        for (dst, &ac) in dst.iter_mut().zip(samples) {
            *dst = saturate(level + i32::from(ac));
        }
    }
}

/// Converts planes to pixels: chroma upsampled with libjpeg's "fancy" triangle filter for
/// factor 2 (nearest for factor 4, as libjpeg), YCbCr to RGB, rounded and clamped once,
/// padding cropped. Bands of rows are converted on `threads` threads.
fn to_image(
    frame: &Frame,
    scale: &Scale,
    planes: &[Vec<i16>],
    width: u32,
    height: u32,
    threads: usize,
) -> Result<DynamicImage, DecodeError> {
    let channels = if frame.components.len() == 1 { 1 } else { 3 };
    let (width, height) = (width as usize, height as usize);
    let mut pixels = scratch::U8.zeroed(width * height * channels);
    let rows_per_band = height.div_ceil(threads.max(1)).max(1);
    let tasks: Vec<Task<'_, ()>> = pixels
        .chunks_mut(rows_per_band * width * channels)
        .enumerate()
        .map(|(band, out)| {
            Box::new(move || convert_rows(frame, scale, planes, width, band * rows_per_band, out)) as Task<'_, ()>
        })
        .collect();
    if threads::run_all(tasks).iter().any(Option::is_none) {
        return Err(DecodeError::Panicked);
    }
    let (width, height) = (width as u32, height as u32);
    let image = if channels == 1 {
        GrayImage::from_raw(width, height, pixels).map(DynamicImage::ImageLuma8)
    } else {
        RgbImage::from_raw(width, height, pixels).map(DynamicImage::ImageRgb8)
    };
    image.ok_or(DecodeError::Corrupt("decoded pixels do not fill the image"))
}

/// Converts the rows from `first_row` on into `out` (whole rows of `width` pixels).
fn convert_rows(frame: &Frame, scale: &Scale, planes: &[Vec<i16>], width: usize, first_row: usize, out: &mut [u8]) {
    let components = &frame.components;
    let sizes: Vec<(usize, usize)> = (0..components.len()).map(|c| plane_size(frame, scale, c)).collect();
    if components.len() == 1 {
        let plane_width = sizes[0].0;
        for (i, out) in out.chunks_exact_mut(width).enumerate() {
            let y = first_row + i;
            let row = &planes[0][y * plane_width..y * plane_width + width];
            for (dst, &v) in out.iter_mut().zip(row) {
                *dst = clamp(((i32::from(v) + 4) >> 3) + 128);
            }
        }
        return;
    }
    let mut rows = [vec![0i32; width], vec![0i32; width], vec![0i32; width]];
    let mut blended = Vec::new();
    for (i, out) in out.chunks_exact_mut(width * 3).enumerate() {
        let y = first_row + i;
        for (c, row) in rows.iter_mut().enumerate() {
            let factors = (frame.h_max / components[c].h, frame.v_max / components[c].v);
            upsample_row(&planes[c], sizes[c], factors, y, &mut blended, row);
        }
        for (((rgb, &luma), &b), &r) in out.chunks_exact_mut(3).zip(&rows[0]).zip(&rows[1]).zip(&rows[2]) {
            // Rows are in 1/128 of a level.
            let luma = (level(luma) + 128) << 16;
            let (b, r) = (level(b), level(r));
            // JFIF's YCbCr → RGB in 16.16 fixed point, rounded.
            rgb[0] = clamp((luma + 91_881 * r + 32_768) >> 16);
            rgb[1] = clamp((luma - 22_554 * b - 46_802 * r + 32_768) >> 16);
            rgb[2] = clamp((luma + 116_130 * b + 32_768) >> 16);
        }
    }
}

/// Output row `y` of a component plane upsampled by `factors` (1, 2 or 4 per axis), in
/// 1/128 of a level (the plane's eighths times the filter's 16). `blended` is scratch space.
fn upsample_row(
    plane: &[i16],
    (plane_width, plane_height): (usize, usize),
    factors: (usize, usize),
    y: usize,
    blended: &mut Vec<i32>,
    out: &mut [i32],
) {
    let source_y = y / factors.1;
    let near = &plane[source_y * plane_width..(source_y + 1) * plane_width];
    // Vertically: 3/4 of the nearest source row, 1/4 of the next nearest, for factor 2.
    blended.clear();
    if factors.1 == 2 {
        let other = if y.is_multiple_of(2) { source_y.saturating_sub(1) } else { (source_y + 1).min(plane_height - 1) };
        let far = &plane[other * plane_width..(other + 1) * plane_width];
        blended.extend(near.iter().zip(far).map(|(&n, &f)| 3 * i32::from(n) + i32::from(f)));
    } else {
        blended.extend(near.iter().map(|&n| 4 * i32::from(n)));
    }
    match factors.0 {
        1 => out.iter_mut().zip(blended.iter()).for_each(|(v, &b)| *v = b * 4),
        2 => {
            // Horizontally the same: each source sample makes two, leaning to either side.
            let last = blended.len() - 1;
            for (x, pair) in out.chunks_mut(2).enumerate() {
                let here = 3 * blended[x];
                pair[0] = here + blended[x.saturating_sub(1)];
                if let Some(right) = pair.get_mut(1) {
                    *right = here + blended[(x + 1).min(last)];
                }
            }
        }
        factor => out.iter_mut().enumerate().for_each(|(x, v)| *v = blended[x / factor] * 4),
    }
}

/// 1/128 of a level to a level, rounded, within a range that keeps the fixed-point colour
/// conversion from overflowing whatever a broken file decodes to.
#[inline(always)]
fn level(value: i32) -> i32 {
    ((value + 64) >> 7).clamp(-1024, 1024)
}

#[inline(always)]
fn saturate(value: i32) -> i16 {
    value.clamp(i32::from(i16::MIN), i32::from(i16::MAX)) as i16
}

#[inline(always)]
fn clamp(value: i32) -> u8 {
    value.clamp(0, 255) as u8
}
