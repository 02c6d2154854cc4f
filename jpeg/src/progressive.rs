//! Progressive JPEGs: the image arrives in scans, each a band of coefficients (DC, or a run
//! of AC positions) of one component, first its high bits, later scans refining the low ones.
//!
//! Decoding at a reduced size keeps only the coefficients that size needs (4 of 64 per block
//! at 1/4) plus one bit per coefficient saying whether it is non-zero, which the refinement
//! scans need to be parsed — so a 5120×2880 photo takes about 11 MB instead of the 88 MB of
//! all coefficients. Scans that only carry coefficients nobody needs are skipped unread.
//! Different components' scans touch different data, so with a spare core the luma scans
//! (and the DC scans) are decoded on one thread and the chroma AC scans on another.

use super::error::DecodeError;
use super::headers::{Frame, Scan, ScanComponent};
use super::huffman::{BitReader, Corrupt, HuffmanTable};
use super::idct::Scale;
use super::idct::DROP;
use super::scratch;
use super::threads::{self, Task};

/// One component's kept AC coefficients (quantised), and which of its 63 AC coefficients
/// are non-zero so far, per block.
struct AcPlane {
    values: Vec<i16>,
    nonzero: Vec<u64>,
    /// Kept AC coefficients per block.
    kept: usize,
}

impl AcPlane {
    #[inline(always)]
    fn is_nonzero(&self, block: usize, k: usize) -> bool {
        self.nonzero[block] >> k & 1 != 0
    }

    #[inline(always)]
    fn set(&mut self, keep: &[u8; 64], block: usize, k: usize, value: i32) {
        self.nonzero[block] |= 1 << k;
        let slot = keep[k];
        if slot != DROP && slot > 0 {
            self.values[block * self.kept + usize::from(slot) - 1] = value as i16;
        }
    }

    /// Adds a refinement bit to a non-zero coefficient, away from zero.
    #[inline(always)]
    fn refine(&mut self, keep: &[u8; 64], block: usize, k: usize, bit: i32) {
        let slot = keep[k];
        if slot != DROP && slot > 0 {
            let value = &mut self.values[block * self.kept + usize::from(slot) - 1];
            if i32::from(*value) & bit == 0 {
                *value = if *value >= 0 { value.wrapping_add(bit as i16) } else { value.wrapping_sub(bit as i16) };
            }
        }
    }
}

/// DC predictors and the end-of-band run, reset at each restart marker.
#[derive(Default)]
struct ScanState {
    predictors: [i32; 4],
    eob_run: u32,
}

/// Decodes every needed scan and returns each component's plane of samples (eighths of a
/// level, minus 128 levels) at the reduced size, whole MCUs wide and high. `Err` on bad data.
pub(super) fn decode(frame: &Frame, scale: &Scale, data: &[u8], threads: usize) -> Result<Vec<Vec<i16>>, DecodeError> {
    let kept = scale.side * scale.side - 1;
    let counts: Vec<usize> = (0..frame.components.len())
        .map(|c| {
            let (w, h) = frame.padded_blocks(c);
            w * h
        })
        .collect();
    let mut dc: Vec<Vec<i16>> = counts.iter().map(|&n| scratch::I16.zeroed(n)).collect();
    let mut ac: Vec<AcPlane> = counts
        .iter()
        .map(|&n| AcPlane { values: scratch::I16.zeroed(n * kept), nonzero: scratch::U64.zeroed(n), kept })
        .collect();
    let needed = needed_scans(frame, scale);

    if threads >= 2 && frame.components.len() > 1 {
        // Luma's AC scans and all DC scans here, the chroma AC scans on a second thread.
        let (ac_luma, ac_chroma) = ac.split_at_mut(1);
        let dc = &mut dc;
        let chroma_scans = needed_only(frame, &needed).filter(|s| s.start > 0 && s.components[0].index > 0);
        let luma_scans = needed_only(frame, &needed).filter(|s| s.start == 0 || s.components[0].index == 0);
        let tasks: Vec<Task<'_, Result<(), Corrupt>>> = vec![
            Box::new(move || run_scans(frame, scale, data, luma_scans, Some(dc), ac_luma, 0)),
            Box::new(move || run_scans(frame, scale, data, chroma_scans, None, ac_chroma, 1)),
        ];
        for scans in threads::run_all(tasks) {
            scans.ok_or(DecodeError::Panicked)??;
        }
    } else {
        run_scans(frame, scale, data, needed_only(frame, &needed), Some(&mut dc), &mut ac, 0)?;
    }
    let planes = planes(frame, scale, &dc, &ac);
    dc.into_iter().for_each(|dc| scratch::I16.give_back(dc));
    for plane in ac {
        scratch::I16.give_back(plane.values);
        scratch::U64.give_back(plane.nonzero);
    }
    Ok(planes)
}

/// The scans `needed` marks, in file order.
fn needed_only<'a>(frame: &'a Frame, needed: &'a [bool]) -> impl Iterator<Item = &'a Scan> + Send + 'a {
    frame.scans.iter().zip(needed).filter(|(_, &needed)| needed).map(|(scan, _)| scan)
}

/// Which scans must be read: every DC scan, and every AC scan whose band holds a kept
/// coefficient or a coefficient whose non-zero history a later needed refinement scan reads.
pub(super) fn needed_scans(frame: &Frame, scale: &Scale) -> Vec<bool> {
    let kept_mask =
        scale.keep.iter().enumerate().skip(1).filter(|(_, &slot)| slot != DROP).fold(0u64, |m, (k, _)| m | 1 << k);
    let mut wanted = vec![kept_mask; frame.components.len()];
    let mut needed = vec![false; frame.scans.len()];
    for (i, scan) in frame.scans.iter().enumerate().rev() {
        if scan.start == 0 {
            needed[i] = true;
            continue;
        }
        let band = (u64::MAX >> (63 - scan.end)) & (u64::MAX << scan.start);
        let component = scan.components[0].index;
        if wanted[component] & band != 0 {
            needed[i] = true;
            if scan.high > 0 {
                wanted[component] |= band;
            }
        }
    }
    needed
}

/// Decodes `scans` in order. DC scans need `dc`; AC scans write `ac[component - ac_first]`.
fn run_scans<'a>(
    frame: &Frame,
    scale: &Scale,
    data: &[u8],
    scans: impl Iterator<Item = &'a Scan>,
    mut dc: Option<&mut Vec<Vec<i16>>>,
    ac: &mut [AcPlane],
    ac_first: usize,
) -> Result<(), Corrupt> {
    for scan in scans {
        let mut reader = BitReader::new(data, scan.data);
        let low = scan.low;
        if scan.start == 0 {
            let Some(dc) = dc.as_deref_mut() else { return Err(Corrupt) };
            let tables: Vec<Option<&HuffmanTable>> = scan.components.iter().map(|c| frame.table(c.dc)).collect();
            for_each_block(frame, scan, &mut reader, |reader, state, position, block| {
                let component = scan.components[position].index;
                reader.ensure();
                let sample = &mut dc[component][block];
                if scan.high == 0 {
                    let Some(table) = tables[position] else { return Err(Corrupt) };
                    let size = u32::from(reader.symbol(table)?);
                    if size > 15 {
                        return Err(Corrupt);
                    }
                    if size > 0 {
                        let diff = reader.value(size);
                        state.predictors[position] = state.predictors[position].wrapping_add(diff);
                    }
                    *sample = state.predictors[position].wrapping_shl(u32::from(low)) as i16;
                } else if reader.bit() {
                    *sample |= 1 << low;
                }
                Ok(())
            })?;
        } else {
            let ScanComponent { index, ac: ac_table, .. } = &scan.components[0];
            let Some(table) = frame.table(*ac_table) else { return Err(Corrupt) };
            let Some(plane) = ac.get_mut(index.wrapping_sub(ac_first)) else { return Err(Corrupt) };
            let band = Band { table, scan, keep: &scale.keep };
            if scan.high == 0 {
                for_each_block(frame, scan, &mut reader, |reader, state, _, block| {
                    band.first(reader, state, plane, block)
                })?;
            } else {
                for_each_block(frame, scan, &mut reader, |reader, state, _, block| {
                    band.refine(reader, state, plane, block)
                })?;
            }
        }
        if reader.overran() {
            return Err(Corrupt);
        }
    }
    Ok(())
}

/// Calls `decode` for every block of the scan in its order — MCUs of all its components when
/// it has several, else the component's own blocks row by row — handling restart markers.
/// `decode` gets the reader, the scan state, the component's position in the scan and the
/// block's index in the component's padded block grid.
fn for_each_block(
    frame: &Frame,
    scan: &Scan,
    reader: &mut BitReader,
    mut decode: impl FnMut(&mut BitReader, &mut ScanState, usize, usize) -> Result<(), Corrupt>,
) -> Result<(), Corrupt> {
    let mut state = ScanState::default();
    let mut units = 0usize;
    let restart = |reader: &mut BitReader, state: &mut ScanState, units: &mut usize| {
        if scan.restart_interval > 0 && *units > 0 && units.is_multiple_of(scan.restart_interval) {
            reader.restart()?;
            *state = ScanState::default();
        }
        *units += 1;
        Ok::<(), Corrupt>(())
    };
    if scan.components.len() == 1 {
        let component = scan.components[0].index;
        let (padded_width, _) = frame.padded_blocks(component);
        let (width, height) = frame.covered_blocks(component);
        for y in 0..height {
            for x in 0..width {
                restart(reader, &mut state, &mut units)?;
                decode(reader, &mut state, 0, y * padded_width + x)?;
            }
        }
    } else {
        for mcu_y in 0..frame.mcus_y {
            for mcu_x in 0..frame.mcus_x {
                restart(reader, &mut state, &mut units)?;
                for (position, scan_component) in scan.components.iter().enumerate() {
                    let c = &frame.components[scan_component.index];
                    let (padded_width, _) = frame.padded_blocks(scan_component.index);
                    for by in 0..c.v {
                        for bx in 0..c.h {
                            let block = (mcu_y * c.v + by) * padded_width + mcu_x * c.h + bx;
                            decode(reader, &mut state, position, block)?;
                        }
                    }
                }
            }
        }
    }
    Ok(())
}

/// An AC scan's band of one component: its table, its coefficients, and which of them the
/// reduced size keeps.
struct Band<'a> {
    table: &'a HuffmanTable,
    scan: &'a Scan,
    keep: &'a [u8; 64],
}

impl Band<'_> {
    /// A first AC scan of one block: the band's coefficients' high bits, or part of a run of
    /// blocks with nothing in this band.
    #[inline(always)]
    fn first(
        &self,
        reader: &mut BitReader,
        state: &mut ScanState,
        plane: &mut AcPlane,
        block: usize,
    ) -> Result<(), Corrupt> {
        let (table, scan, keep) = (self.table, self.scan, self.keep);
        if state.eob_run > 0 {
            state.eob_run -= 1;
            return Ok(());
        }
        let mut k = scan.start;
        while k <= scan.end {
            reader.ensure();
            if let Some((run, value)) = reader.fast_ac(table) {
                k += run;
                if k > 63 {
                    return Err(Corrupt);
                }
                plane.set(keep, block, k, value.wrapping_shl(u32::from(scan.low)));
                k += 1;
                continue;
            }
            let symbol = reader.symbol(table)?;
            let (run, size) = (u32::from(symbol >> 4), u32::from(symbol & 15));
            if size == 0 {
                if run < 15 {
                    state.eob_run = (1 << run) - 1;
                    if run > 0 {
                        reader.ensure();
                        state.eob_run += reader.bits(run);
                    }
                    break;
                }
                k += 16;
                continue;
            }
            k += run as usize;
            if k > 63 {
                return Err(Corrupt);
            }
            let value = reader.value(size).wrapping_shl(u32::from(scan.low));
            plane.set(keep, block, k, value);
            k += 1;
        }
        Ok(())
    }

    /// A refinement AC scan of one block: one more bit of every non-zero coefficient in the
    /// band, and new coefficients of magnitude 1 at this bit (libjpeg's decode_mcu_AC_refine).
    #[inline(always)]
    fn refine(
        &self,
        reader: &mut BitReader,
        state: &mut ScanState,
        plane: &mut AcPlane,
        block: usize,
    ) -> Result<(), Corrupt> {
        let (table, scan, keep) = (self.table, self.scan, self.keep);
        let bit = 1i32 << scan.low;
        let mut k = scan.start;
        if state.eob_run == 0 {
            while k <= scan.end {
                reader.ensure();
                let symbol = reader.symbol(table)?;
                let (mut run, size) = (u32::from(symbol >> 4), symbol & 15);
                let mut new = 0;
                if size != 0 {
                    reader.ensure();
                    new = if reader.bit() { bit } else { -bit };
                } else if run != 15 {
                    state.eob_run = 1 << run;
                    if run > 0 {
                        reader.ensure();
                        state.eob_run += reader.bits(run);
                    }
                    break;
                }
                // Past `run` coefficients that are still zero, refining the non-zero ones met.
                while k <= scan.end {
                    if plane.is_nonzero(block, k) {
                        reader.ensure();
                        if reader.bit() {
                            plane.refine(keep, block, k, bit);
                        }
                    } else {
                        if run == 0 {
                            break;
                        }
                        run -= 1;
                    }
                    k += 1;
                }
                if new != 0 && k <= scan.end {
                    plane.set(keep, block, k, new);
                }
                k += 1;
            }
        }
        if state.eob_run > 0 {
            // The rest of the band is zero in this block: only the non-zero ones get a bit.
            while k <= scan.end {
                if plane.is_nonzero(block, k) {
                    reader.ensure();
                    if reader.bit() {
                        plane.refine(keep, block, k, bit);
                    }
                }
                k += 1;
            }
            state.eob_run -= 1;
        }
        Ok(())
    }
}

/// Dequantises and inverse-transforms every block into planes of samples.
fn planes(frame: &Frame, scale: &Scale, dc: &[Vec<i16>], ac: &[AcPlane]) -> Vec<Vec<i16>> {
    let side = scale.side;
    let block_len = side * side;
    let mut block = vec![0i16; block_len];
    let mut coefficients = [0i32; 16];
    frame
        .components
        .iter()
        .enumerate()
        .map(|(c, component)| {
            let (blocks_x, blocks_y) = frame.padded_blocks(c);
            let width = blocks_x * side;
            let mut plane = scratch::I16.zeroed(width * blocks_y * side);
            for by in 0..blocks_y {
                for bx in 0..blocks_x {
                    let index = by * blocks_x + bx;
                    coefficients[0] = i32::from(dc[c][index]) * i32::from(component.quant[0]);
                    let mut any_ac = false;
                    let kept = &ac[c].values[index * ac[c].kept..(index + 1) * ac[c].kept];
                    for (slot, &value) in kept.iter().enumerate() {
                        let zigzag = usize::from(scale.zigzag[slot + 1]);
                        coefficients[slot + 1] = i32::from(value) * i32::from(component.quant[zigzag]);
                        any_ac |= value != 0;
                    }
                    scale.inverse(&coefficients, any_ac, &mut block);
                    for (y, samples) in block.chunks_exact(side).enumerate() {
                        let start = (by * side + y) * width + bx * side;
                        plane[start..start + side].copy_from_slice(samples);
                    }
                }
            }
            plane
        })
        .collect()
}
