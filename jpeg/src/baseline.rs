//! Decoding a baseline file's one scan, in parts at once on idle cores.
//!
//! A file with restart markers is cut at the markers (see `decode_between_restarts`), in one
//! part or several. Without them:
//!
//! Baseline JPEG has no index into its entropy-coded data: without restart markers a block's
//! bits can only be found by decoding everything before them. But Huffman codes
//! resynchronise: a decoder started at an arbitrary byte in the middle reads garbage for a
//! few blocks and then, in practice within a few MCUs, lands on the true MCU boundaries and
//! stays there. So part `k` starts at its share of the bytes and records where each of its
//! first MCUs begins; part `k - 1` decodes until it reaches such a boundary itself — from
//! that bit on, both decoders are in the same state and part `k`'s blocks are the true ones.
//! Only the DC predictors differ (each part started from zero), by a constant per component,
//! which the assembly adds back before clamping. If part `k - 1` never meets one of those
//! boundaries, it abandons part `k` and decodes the rest itself: never a wrong pixel, at
//! worst the speed of one part.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;

use super::error::DecodeError;
use super::headers::Frame;
use super::huffman::{BitReader, Corrupt, HuffmanTable};
use super::idct::Scale;
use super::scratch;
use super::threads::{self, Task};

/// MCUs of a part whose starting positions are offered to the part before it.
const SYNC_POINTS: usize = 4096;
/// Fresh starts a speculative part may make before it gives up offering sync points.
const MAX_FRESH_STARTS: usize = 256;
/// Each part decodes at least this much of the data; smaller scans are not split.
pub(super) const MIN_PART_BYTES: usize = 256 * 1024;

/// The scan's data ends before its last MCU.
const ENDS_EARLY: DecodeError = DecodeError::Corrupt("the entropy-coded data ends early");

/// Where a part starts: a byte of the scan, and that byte's bit position in the stream with
/// the byte stuffing removed (the positions both decoders compare).
#[derive(Clone, Copy)]
struct Start {
    byte: usize,
    bits: u64,
}

impl Start {
    /// The start at the first usable byte at or after `byte` (counting the stuffed bytes in
    /// between, so positions stay comparable).
    fn moved_to(self, scan: &[u8], byte: usize) -> Start {
        let moved = part_start_from(scan, byte.max(self.byte + 1));
        let stuffed = scan[self.byte..moved].iter().filter(|&&b| b == 0xFF).count();
        Start { byte: moved, bits: self.bits + (moved - self.byte - stuffed) as u64 * 8 }
    }
}

/// An MCU boundary a part passed: its position, the part's MCU count there, and its DC
/// predictors before that MCU.
#[derive(Clone, Copy)]
struct SyncPoint {
    position: u64,
    mcu: usize,
    predictors: [i32; 3],
}

/// What part `k` offers part `k - 1`.
struct Handoff {
    start: Start,
    points: OnceLock<Vec<SyncPoint>>,
    /// Set by part `k - 1` when it went past every offered point: part `k` may stop.
    abandoned: AtomicBool,
}

/// How a part ended.
#[derive(Clone, Copy)]
enum End {
    /// It reached its MCU limit.
    Complete,
    /// At its MCU `mcu`, with `predictors`, it met the next part's MCU `next_mcu`, where the
    /// next part's predictors were `next_predictors`.
    Joined { mcu: usize, predictors: [i32; 3], next_mcu: usize, next_predictors: [i32; 3] },
    /// Bad data, the data's end, or abandoned: its first `mcus` MCUs are all it has.
    Stopped,
}

/// A part's decoded MCUs: for each, every component's blocks in order, each block `side`²
/// samples (eighths of a level) of its AC coefficients only, row-major; and each block's DC
/// value (quantised, as this part's predictor had it). The DC term is kept apart so that a
/// part that started with a wrong predictor is corrected exactly, however far off it was:
/// the DC term adds `dc × quant[0]` eighths to every sample of the block, at every scale.
pub(super) struct Part {
    pub blocks: Vec<i16>,
    pub dc: Vec<i32>,
    mcus: usize,
    end: End,
}

/// A run of the image's MCUs taken from one part, with that part's DC correction per
/// component (in quantised DC units).
pub(super) struct Segment {
    pub part: usize,
    pub first: usize,
    pub count: usize,
    pub dc_offsets: [i32; 3],
}

/// Decodes the scan in `parts` parts (1 = sequentially) and says which part's MCUs make up
/// the image. `Err`: the data is bad or ends early.
pub(super) fn decode(
    frame: &Frame,
    scale: &Scale,
    data: &[u8],
    parts: usize,
) -> Result<(Vec<Part>, Vec<Segment>), DecodeError> {
    let first = frame.scans.first().ok_or(DecodeError::Corrupt("no scan"))?;
    let restart_interval = first.restart_interval;
    let scan = data.get(first.data..).ok_or(ENDS_EARLY)?;
    let parts = parts.clamp(1, (scan.len() / MIN_PART_BYTES).max(1));
    let decoder =
        McuDecoder::new(frame, scale).ok_or(DecodeError::Corrupt("a scan uses a Huffman table not defined"))?;
    if restart_interval > 0 {
        // Restart markers are an index into the data: no need to speculate.
        return decode_between_restarts(&decoder, scan, restart_interval, parts);
    }
    let handoffs: Vec<Handoff> = (0..parts)
        .map(|k| Handoff {
            start: part_start(scan, scan.len() * k / parts),
            points: OnceLock::new(),
            abandoned: AtomicBool::new(false),
        })
        .collect();
    let decoded: Vec<Part> = if parts == 1 {
        vec![decode_part(&decoder, scan, &handoffs, 0)]
    } else {
        std::thread::scope(|scope| {
            let (decoder, handoffs) = (&decoder, &handoffs);
            let helpers: Vec<_> = (1..parts)
                .map(|k| {
                    let helper = std::thread::Builder::new()
                        .name("jpeg-part".into())
                        .spawn_scoped(scope, move || decode_part(decoder, scan, handoffs, k));
                    if helper.is_err() {
                        // No thread: nothing to meet, the part before decodes this share.
                        let _ = handoffs[k].points.set(Vec::new());
                    }
                    helper
                })
                .collect();
            // Not `threads::run_all`: a part whose thread cannot start must not run later here,
            // where the part before it would wait for its sync points forever.
            let mut all = vec![decode_part(decoder, scan, handoffs, 0)];
            for helper in helpers {
                match helper {
                    Ok(helper) => all.push(helper.join().map_err(|_| DecodeError::Panicked)?),
                    Err(_) => all.push(Part { blocks: Vec::new(), dc: Vec::new(), mcus: 0, end: End::Stopped }),
                }
            }
            Ok::<_, DecodeError>(all)
        })?
    };
    // Parts stop at bad data or the data's end; then they do not cover the image.
    let segments =
        segments(frame, &decoded).ok_or(DecodeError::Corrupt("the entropy-coded data is broken or ends early"))?;
    Ok((decoded, segments))
}

/// Decodes a file with restart markers in up to `parts` runs of whole restart intervals, each
/// from the byte after its first interval's marker, where the DC predictors restart at zero —
/// so the runs need no joining. `Err` when the data is bad or has fewer markers than the
/// headers promise.
fn decode_between_restarts(
    decoder: &McuDecoder,
    scan: &[u8],
    interval: usize,
    parts: usize,
) -> Result<(Vec<Part>, Vec<Segment>), DecodeError> {
    let frame = decoder.frame;
    // Where each interval starts: the data's start, then after each RSTn.
    let mut starts = vec![0usize];
    let mut pos = 0;
    while let Some(found) = scan.get(pos..).and_then(|rest| rest.iter().position(|&b| b == 0xFF)) {
        pos += found;
        match *scan.get(pos + 1).ok_or(ENDS_EARLY)? {
            0xD0..=0xD7 => starts.push(pos + 2),
            0x00 | 0xFF => {}
            _ => break, // the end of the scan
        }
        pos += 1;
    }
    let total = frame.total_mcus();
    // Markers after the last interval are never read, as by a sequential decoder.
    if starts.len() < total.div_ceil(interval) {
        return Err(DecodeError::Corrupt("fewer restart markers than the headers promise"));
    }
    starts.truncate(total.div_ceil(interval));
    // Runs of intervals of about equal bytes.
    let mut firsts: Vec<usize> =
        (0..parts).map(|k| starts.partition_point(|&start| start < scan.len() * k / parts)).collect();
    // Fewer intervals than parts leave some runs empty.
    firsts.retain(|&first| first < starts.len());
    firsts.dedup();
    let tasks: Vec<Task<'_, Result<Part, DecodeError>>> = firsts
        .iter()
        .enumerate()
        .map(|(run, &first)| {
            let last = firsts.get(run + 1).copied().unwrap_or(starts.len());
            let count = (last * interval).min(total) - first * interval;
            let start = starts[first];
            Box::new(move || decode_run(decoder, scan, start, first, count, interval))
                as Task<'_, Result<Part, DecodeError>>
        })
        .collect();
    let decoded: Vec<Part> = threads::run_all(tasks)
        .into_iter()
        .map(|run| run.unwrap_or(Err(DecodeError::Panicked)))
        .collect::<Result<_, _>>()?;
    let segments = decoded
        .iter()
        .enumerate()
        .map(|(part, decoded)| Segment { part, first: 0, count: decoded.mcus, dc_offsets: [0; 3] })
        .collect();
    Ok((decoded, segments))
}

/// Decodes `count` MCUs from restart interval number `interval_index`, which starts at byte
/// `start` of the scan.
fn decode_run(
    decoder: &McuDecoder,
    scan: &[u8],
    start: usize,
    interval_index: usize,
    count: usize,
    interval: usize,
) -> Result<Part, DecodeError> {
    let mut blocks = scratch::I16.with_capacity(count * decoder.mcu_len());
    let mut dc = scratch::I32.with_capacity(count * decoder.frame.blocks_per_mcu());
    let mut reader = BitReader::after_restart(scan, start, interval_index);
    let mut predictors = [0i32; 3];
    for mcu in 0..count {
        if mcu > 0 && mcu.is_multiple_of(interval) {
            reader.restart()?;
            predictors = [0; 3];
        }
        decoder.decode(&mut reader, &mut predictors, &mut blocks, &mut dc)?;
        if reader.overran() {
            return Err(ENDS_EARLY);
        }
    }
    Ok(Part { blocks, dc, mcus: count, end: End::Complete })
}

/// Where a part given the bytes from `byte` on starts.
fn part_start(scan: &[u8], byte: usize) -> Start {
    if byte == 0 {
        return Start { byte: 0, bits: 0 };
    }
    let byte = part_start_from(scan, byte);
    // Without restart markers every 0xFF in the scan is followed by a stuffed zero.
    let stuffed = scan[..byte].iter().filter(|&&b| b == 0xFF).count();
    Start { byte, bits: (byte - stuffed) as u64 * 8 }
}

/// The first byte at or after `byte` (> 0) that is neither 0xFF nor the stuffed byte after one.
fn part_start_from(scan: &[u8], mut byte: usize) -> usize {
    while byte < scan.len() && (scan[byte] == 0xFF || scan[byte - 1] == 0xFF) {
        byte += 1;
    }
    byte.min(scan.len())
}

/// Publishes a part's sync points when dropped, so the part before it never waits forever,
/// whatever way this part ends.
struct Publisher<'a> {
    cell: Option<&'a OnceLock<Vec<SyncPoint>>>,
    points: Vec<SyncPoint>,
}

impl Publisher<'_> {
    fn publish(&mut self) {
        if let Some(cell) = self.cell.take() {
            let _ = cell.set(std::mem::take(&mut self.points));
        }
    }
}

impl Drop for Publisher<'_> {
    fn drop(&mut self) {
        self.publish();
    }
}

/// Decodes part `index` of a file without restart markers (see the module's doc).
fn decode_part(decoder: &McuDecoder, scan: &[u8], handoffs: &[Handoff], index: usize) -> Part {
    let frame = decoder.frame;
    let total = frame.total_mcus();
    let own = (index > 0).then(|| &handoffs[index]);
    let mut next = handoffs.get(index + 1);
    let mut start = handoffs[index].start;
    let share = match next {
        Some(next) => (next.start.byte - start.byte) as f64 / scan.len().max(1) as f64,
        None => (scan.len() - start.byte) as f64 / scan.len().max(1) as f64,
    };
    // A little more than this part's share of the MCUs, so it rarely reallocates.
    let expected = ((total as f64 * share * 1.1) as usize + 16).min(total);
    let mut blocks: Vec<i16> = scratch::I16.with_capacity(expected * decoder.mcu_len());
    let mut dc: Vec<i32> = scratch::I32.with_capacity(expected * frame.blocks_per_mcu());
    // Offers this part's sync points however it ends, so the part before never waits forever.
    let mut publisher = Publisher {
        cell: own.map(|h| &h.points),
        points: Vec::with_capacity(if own.is_some() { SYNC_POINTS } else { 0 }),
    };

    let mut reader = BitReader::new(scan, start.byte);
    let mut predictors = [0i32; 3];
    let mut next_points: Option<(&[SyncPoint], usize)> = None;
    let stopped = |blocks: Vec<i16>, dc: Vec<i32>, mcus| Part { blocks, dc, mcus, end: End::Stopped };
    let mut fresh_starts = 0;

    let mut mcu = 0;
    while mcu < total {
        let position = start.bits + reader.position();
        if let Some(own) = own {
            if mcu < SYNC_POINTS {
                publisher.points.push(SyncPoint { position, mcu, predictors });
            } else if mcu == SYNC_POINTS {
                publisher.publish();
            }
            if mcu % 1024 == 0 && own.abandoned.load(Ordering::Relaxed) {
                return stopped(blocks, dc, mcu);
            }
        }
        if let Some(handoff) = next {
            if position >= handoff.start.bits {
                let (points, cursor) = next_points.get_or_insert_with(|| (handoff.points.wait().as_slice(), 0));
                while *cursor < points.len() && points[*cursor].position < position {
                    *cursor += 1;
                }
                match points.get(*cursor) {
                    Some(point) if point.position == position => {
                        let end =
                            End::Joined { mcu, predictors, next_mcu: point.mcu, next_predictors: point.predictors };
                        return Part { blocks, dc, mcus: mcu, end };
                    }
                    Some(_) => {}
                    None => {
                        // Past every boundary the next part offered: it is on its own.
                        handoff.abandoned.store(true, Ordering::Relaxed);
                        next = None;
                    }
                }
            }
        }
        let (base, dc_base) = (blocks.len(), dc.len());
        let decoded = decoder.decode(&mut reader, &mut predictors, &mut blocks, &mut dc);
        if decoded.is_err() || reader.overran() {
            blocks.truncate(base);
            dc.truncate(dc_base);
            // A speculative start often lands in the middle of a code and soon reads one that
            // no table has: it starts afresh a little further on, until it has offered its
            // sync points.
            let speculating = own.is_some() && publisher.cell.is_some() && !reader.overran();
            if speculating && fresh_starts < MAX_FRESH_STARTS {
                fresh_starts += 1;
                start = start.moved_to(scan, reader.next_byte());
                reader = BitReader::new(scan, start.byte);
                blocks.clear();
                dc.clear();
                publisher.points.clear();
                predictors = [0; 3];
                mcu = 0;
                continue;
            }
            return stopped(blocks, dc, mcu);
        }
        mcu += 1;
    }
    Part { blocks, dc, mcus: total, end: End::Complete }
}

/// Decodes the MCUs of a baseline scan at one scale: the components' Huffman tables are
/// looked up once.
struct McuDecoder<'a> {
    frame: &'a Frame,
    scale: &'a Scale,
    tables: Vec<(&'a HuffmanTable, &'a HuffmanTable)>,
}

impl<'a> McuDecoder<'a> {
    fn new(frame: &'a Frame, scale: &'a Scale) -> Option<Self> {
        let tables = frame
            .scans
            .first()?
            .components
            .iter()
            .map(|c| Some((frame.table(c.dc)?, frame.table(c.ac)?)))
            .collect::<Option<_>>()?;
        Some(Self { frame, scale, tables })
    }

    /// Samples one MCU takes in a part.
    fn mcu_len(&self) -> usize {
        self.frame.blocks_per_mcu() * self.scale.side * self.scale.side
    }

    /// Decodes one MCU, appending its blocks' AC samples and DC values. One instance of the
    /// loop per block size, so the per-block copies have a constant length.
    fn decode(
        &self,
        reader: &mut BitReader,
        predictors: &mut [i32; 3],
        blocks: &mut Vec<i16>,
        dc: &mut Vec<i32>,
    ) -> Result<(), Corrupt> {
        match self.scale.side {
            1 => self.decode_sized::<1>(reader, predictors, blocks, dc),
            2 => self.decode_sized::<4>(reader, predictors, blocks, dc),
            _ => self.decode_sized::<16>(reader, predictors, blocks, dc),
        }
    }

    #[inline(always)]
    fn decode_sized<const N: usize>(
        &self,
        reader: &mut BitReader,
        predictors: &mut [i32; 3],
        blocks: &mut Vec<i16>,
        dc: &mut Vec<i32>,
    ) -> Result<(), Corrupt> {
        let components = self.frame.components.iter().zip(&self.tables).zip(predictors.iter_mut());
        for ((component, (dc_table, ac_table)), predictor) in components {
            for _ in 0..component.h * component.v {
                let mut coefficients = [0i32; 16];
                let any_ac =
                    reader.block(dc_table, ac_table, predictor, &component.quant, self.scale, &mut coefficients)?;
                coefficients[0] = 0;
                let mut samples = [0i16; N];
                self.scale.inverse(&coefficients, any_ac, &mut samples);
                blocks.extend_from_slice(&samples);
                dc.push(*predictor);
            }
        }
        Ok(())
    }
}

/// Chains the parts: part 0 up to where it met part 1, part 1 from there to where it met
/// part 2, and so on, until the image's MCUs are all covered. `None` if they are not.
fn segments(frame: &Frame, parts: &[Part]) -> Option<Vec<Segment>> {
    let total = frame.total_mcus();
    let mut segments = Vec::with_capacity(parts.len());
    let mut covered = 0;
    let mut first = 0;
    let mut dc_offsets = [0i32; 3];
    for (index, part) in parts.iter().enumerate() {
        let last = match part.end {
            End::Joined { mcu, .. } => mcu,
            End::Complete | End::Stopped => part.mcus,
        };
        let count = last.checked_sub(first)?.min(total - covered);
        segments.push(Segment { part: index, first, count, dc_offsets });
        covered += count;
        match part.end {
            End::Joined { predictors, next_mcu, next_predictors, .. } if covered < total => {
                for c in 0..3 {
                    dc_offsets[c] = predictors[c].wrapping_add(dc_offsets[c]).wrapping_sub(next_predictors[c]);
                }
                first = next_mcu;
            }
            _ => break,
        }
    }
    (covered == total).then_some(segments)
}
