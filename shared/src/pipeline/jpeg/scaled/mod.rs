//! imageapi's own JPEG decoder for thumbnails: it decodes straight to 1/8, 1/4 or 1/2 size.
//! It exists for speed. It reads only the coefficients the reduced size needs into a
//! block-sized inverse DCT, and it uses idle cores for one image, which neither
//! `jpeg-decoder` nor libjpeg-turbo can do: a baseline file's data is split into parts that
//! resynchronise (see [`baseline`]), a progressive file's luma and chroma scans are decoded
//! side by side (see [`progressive`]).
//!
//! It handles 8-bit Huffman-coded files, baseline (one interleaved scan) or progressive, gray
//! or YCbCr, with any power-of-two chroma subsampling, with or without restart markers.
//! Anything else — CMYK, Adobe RGB-coded, 12-bit, arithmetic-coded, a baseline file in
//! several scans, or a file it finds broken — is declined (`None`) and goes to the general
//! decoders, which also give the definitive error for a broken file.

mod baseline;
mod headers;
mod huffman;
mod idct;
mod progressive;
#[cfg(test)]
mod tests;

use image::{DynamicImage, GrayImage, RgbImage};

use baseline::{Part, Segment};
use headers::Frame;
use idct::Scale;

pub(in crate::pipeline) struct ScaledJpeg<'a> {
    data: &'a [u8],
    frame: Frame,
}

impl<'a> ScaledJpeg<'a> {
    /// Reads the headers; `None` if the file is not one this decoder handles.
    pub fn read(data: &'a [u8]) -> Option<Self> {
        Some(Self { frame: headers::read(data)?, data })
    }

    /// Stored width and height.
    pub fn dimensions(&self) -> (u32, u32) {
        (self.frame.width, self.frame.height)
    }

    /// Decodes at `eighths`/8 of the stored size (1, 2 or 4; sides rounded up) using up to
    /// `threads` threads. Gray stays gray, YCbCr becomes RGB.
    pub fn decode(&self, eighths: u32, threads: usize) -> Option<DynamicImage> {
        let scale = Scale::new(eighths)?;
        let planes = if self.frame.progressive {
            progressive::decode(&self.frame, &scale, self.data, threads)?
        } else {
            let (parts, segments) = baseline::decode(&self.frame, &scale, self.data, threads)?;
            baseline_planes(&self.frame, &scale, parts, &segments)?
        };
        let width = (self.frame.width * eighths).div_ceil(8);
        let height = (self.frame.height * eighths).div_ceil(8);
        to_image(&self.frame, &scale, &planes, width, height)
    }

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
fn baseline_planes(frame: &Frame, scale: &Scale, parts: Vec<Part>, segments: &[Segment]) -> Option<Vec<Vec<i16>>> {
    let side = scale.side;
    let block_len = side * side;
    let mcu_len = frame.blocks_per_mcu() * block_len;
    let components = &frame.components;
    let sizes: Vec<(usize, usize)> = (0..components.len()).map(|c| plane_size(frame, scale, c)).collect();
    let mut planes: Vec<Vec<i16>> = sizes.iter().map(|(w, h)| vec![0i16; w * h]).collect();
    // Each segment's DC correction in samples (eighths of a level): exact.
    let offsets: Vec<[i16; 3]> = segments
        .iter()
        .map(|segment| {
            let mut offsets = [0i16; 3];
            for (c, component) in components.iter().enumerate() {
                let eighths = segment.dc_offsets[c].wrapping_mul(i32::from(component.quant[0]));
                offsets[c] = eighths.clamp(i32::from(i16::MIN), i32::from(i16::MAX)) as i16;
            }
            offsets
        })
        .collect();
    let mut mcus = segments
        .iter()
        .enumerate()
        .flat_map(|(index, segment)| (segment.first..segment.first + segment.count).map(move |local| (index, local)));
    for mcu_row in 0..frame.mcus_y {
        for mcu_x in 0..frame.mcus_x {
            let (segment, local) = mcus.next()?;
            let mcu = parts.get(segments[segment].part)?.blocks.get(local * mcu_len..(local + 1) * mcu_len)?;
            let mut blocks = mcu.chunks_exact(block_len);
            for (c, component) in components.iter().enumerate() {
                let add = offsets[segment][c];
                let plane_width = sizes[c].0;
                for block_y in 0..component.v {
                    for block_x in 0..component.h {
                        let block = blocks.next()?;
                        let x0 = (mcu_x * component.h + block_x) * side;
                        let y0 = (mcu_row * component.v + block_y) * side;
                        for (y, samples) in block.chunks_exact(side).enumerate() {
                            let start = (y0 + y) * plane_width + x0;
                            for (dst, &src) in planes[c][start..start + side].iter_mut().zip(samples) {
                                *dst = src.saturating_add(add);
                            }
                        }
                    }
                }
            }
        }
    }
    Some(planes)
}

/// Converts planes to pixels: chroma upsampled with libjpeg's "fancy" triangle filter for
/// factor 2 (nearest for factor 4, as libjpeg), YCbCr to RGB, rounded and clamped once,
/// padding cropped.
fn to_image(frame: &Frame, scale: &Scale, planes: &[Vec<i16>], width: u32, height: u32) -> Option<DynamicImage> {
    let components = &frame.components;
    let sizes: Vec<(usize, usize)> = (0..components.len()).map(|c| plane_size(frame, scale, c)).collect();
    let (width, height) = (width as usize, height as usize);
    if components.len() == 1 {
        let plane_width = sizes[0].0;
        let mut pixels = Vec::with_capacity(width * height);
        for y in 0..height {
            let row = planes[0].get(y * plane_width..y * plane_width + width)?;
            pixels.extend(row.iter().map(|&v| clamp(((i32::from(v) + 4) >> 3) + 128)));
        }
        return GrayImage::from_raw(width as u32, height as u32, pixels).map(DynamicImage::ImageLuma8);
    }
    let mut pixels = vec![0u8; width * height * 3];
    let mut rows = [vec![0i32; width], vec![0i32; width], vec![0i32; width]];
    for (y, out) in pixels.chunks_exact_mut(width * 3).enumerate() {
        for (c, row) in rows.iter_mut().enumerate() {
            let factors = (frame.h_max / components[c].h, frame.v_max / components[c].v);
            upsample_row(&planes[c], sizes[c], factors, y, row);
        }
        for (x, rgb) in out.chunks_exact_mut(3).enumerate() {
            // Rows are in 1/128 of a level.
            let luma = (level(rows[0][x]) + 128) << 16;
            let (b, r) = (level(rows[1][x]), level(rows[2][x]));
            // JFIF's YCbCr → RGB in 16.16 fixed point, rounded.
            rgb[0] = clamp((luma + 91_881 * r + 32_768) >> 16);
            rgb[1] = clamp((luma - 22_554 * b - 46_802 * r + 32_768) >> 16);
            rgb[2] = clamp((luma + 116_130 * b + 32_768) >> 16);
        }
    }
    RgbImage::from_raw(width as u32, height as u32, pixels).map(DynamicImage::ImageRgb8)
}

/// Output row `y` of a component plane upsampled by `factors` (1, 2 or 4 per axis), in
/// 1/128 of a level (the plane's eighths times the filter's 16).
fn upsample_row(
    plane: &[i16],
    (plane_width, plane_height): (usize, usize),
    factors: (usize, usize),
    y: usize,
    out: &mut [i32],
) {
    let source_y = y / factors.1;
    // Vertically: 3/4 of the nearest chroma row, 1/4 of the next nearest, for factor 2.
    let (near, far, weight_near, weight_far) = if factors.1 == 2 {
        let other = if y.is_multiple_of(2) { source_y.saturating_sub(1) } else { (source_y + 1).min(plane_height - 1) };
        (source_y, other, 3, 1)
    } else {
        (source_y, source_y, 4, 0)
    };
    let near = &plane[near * plane_width..(near + 1) * plane_width];
    let far = &plane[far * plane_width..(far + 1) * plane_width];
    let column = |x: usize| weight_near * i32::from(near[x]) + weight_far * i32::from(far[x]);
    match factors.0 {
        1 => out.iter_mut().enumerate().for_each(|(x, v)| *v = column(x) * 4),
        2 => {
            for (x, v) in out.iter_mut().enumerate() {
                let source_x = x / 2;
                let other =
                    if x.is_multiple_of(2) { source_x.saturating_sub(1) } else { (source_x + 1).min(plane_width - 1) };
                *v = 3 * column(source_x) + column(other);
            }
        }
        _ => out.iter_mut().enumerate().for_each(|(x, v)| *v = column(x / factors.0) * 4),
    }
}

/// 1/128 of a level to a level, rounded, within a range that keeps the fixed-point colour
/// conversion from overflowing whatever a broken file decodes to.
#[inline(always)]
fn level(value: i32) -> i32 {
    ((value + 64) >> 7).clamp(-1024, 1024)
}

#[inline(always)]
fn clamp(value: i32) -> u8 {
    value.clamp(0, 255) as u8
}
