//! imageapi's own decoder for baseline JPEGs at 1/8, 1/4 or 1/2 size, the common case of
//! camera photos and exported artwork. It exists for speed: it decodes only the coefficients
//! the reduced size needs into a block-sized inverse DCT, and it decodes one image on several
//! cores when they are idle (see [`parts`]), which neither `jpeg-decoder` nor libjpeg-turbo
//! can do for files without restart markers.
//!
//! It handles 8-bit sequential Huffman files with one interleaved scan, gray or YCbCr, with
//! any power-of-two chroma subsampling, with or without restart markers. Anything else —
//! progressive, CMYK, Adobe RGB-coded, 12-bit, arithmetic coded, or a file it finds broken —
//! is declined (`None`) and goes to the general decoders, which also give the definitive
//! error for a broken file.

mod headers;
mod huffman;
mod idct;
mod parts;
#[cfg(test)]
mod tests;

use image::{DynamicImage, GrayImage, RgbImage};

use headers::Frame;
use idct::Scale;
use parts::{Part, Segment};

pub(in crate::pipeline) struct Baseline<'a> {
    data: &'a [u8],
    frame: Frame,
}

impl<'a> Baseline<'a> {
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
        let (parts, segments) = parts::decode(&self.frame, &scale, self.data, threads)?;
        let width = (self.frame.width * eighths).div_ceil(8);
        let height = (self.frame.height * eighths).div_ceil(8);
        assemble(&self.frame, &scale, parts, &segments, width, height)
    }

    /// How many threads are worth using on this file: about one per 256 KiB of data.
    pub fn useful_threads(&self) -> usize {
        (self.data.len() / parts::MIN_PART_BYTES).max(1)
    }
}

/// Lays the parts' blocks out as planes (DC corrections added), frees the blocks, and
/// converts: chroma upsampled with libjpeg's "fancy" triangle filter for factor 2 (nearest for
/// factor 4, as libjpeg), YCbCr to RGB, rounded and clamped once, padding cropped.
fn assemble(
    frame: &Frame,
    scale: &Scale,
    parts: Vec<Part>,
    segments: &[Segment],
    width: u32,
    height: u32,
) -> Option<DynamicImage> {
    let side = scale.side;
    let block_len = side * side;
    let mcu_len = frame.blocks_per_mcu() * block_len;
    let components = &frame.components;
    let sizes: Vec<(usize, usize)> =
        components.iter().map(|c| (frame.mcus_x * c.h * side, frame.mcus_y * c.v * side)).collect();
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
    drop(parts);

    let (width, height) = (width as usize, height as usize);
    if components.len() == 1 {
        let plane_width = sizes[0].0;
        let mut pixels = Vec::with_capacity(width * height);
        for y in 0..height {
            let row = &planes[0][y * plane_width..y * plane_width + width];
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
fn upsample_row(plane: &[i16], (plane_width, plane_height): (usize, usize), factors: (usize, usize), y: usize, out: &mut [i32]) {
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
                let other = if x.is_multiple_of(2) { source_x.saturating_sub(1) } else { (source_x + 1).min(plane_width - 1) };
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
