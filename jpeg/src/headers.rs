//! The markers of a JPEG: quantisation and Huffman tables, the frame and its scans. Anything
//! this decoder does not handle (lossless or arithmetic-coded frames, 12-bit samples, a
//! baseline file in several scans, CMYK, RGB-coded files, unusual sampling) is
//! [`DecodeError::Unsupported`], headers that break the format [`DecodeError::Corrupt`]; the
//! caller decodes with a general decoder instead.

use super::error::DecodeError::{self, Corrupt, Unsupported};
use super::huffman::HuffmanTable;

/// One colour component of the frame.
#[derive(Clone, Debug)]
pub(super) struct Component {
    /// Horizontal and vertical sampling factors, in blocks per MCU.
    pub h: usize,
    pub v: usize,
    /// Quantisation table in zigzag order.
    pub quant: [u16; 64],
}

/// One component's part in a scan, with the Huffman tables in force for that scan (indices
/// into [`Frame::tables`]).
pub(super) struct ScanComponent {
    /// Index into the frame's components.
    pub index: usize,
    pub dc: Option<usize>,
    pub ac: Option<usize>,
}

/// One scan: which components, which coefficients (`start..=end` in zigzag order), which
/// bits of them (successive approximation: `high` is the previous scan's `low`, 0 for a
/// first scan), and where its entropy-coded data begins.
pub(super) struct Scan {
    pub components: Vec<ScanComponent>,
    pub start: usize,
    pub end: usize,
    pub high: u8,
    pub low: u8,
    pub data: usize,
    /// MCUs between restart markers; 0 when there are none.
    pub restart_interval: usize,
}

/// Everything needed to decode the image.
pub(super) struct Frame {
    pub width: u32,
    pub height: u32,
    pub progressive: bool,
    pub components: Vec<Component>,
    pub h_max: usize,
    pub v_max: usize,
    pub mcus_x: usize,
    pub mcus_y: usize,
    /// A baseline file's one scan, or every scan of a progressive one, in file order.
    pub scans: Vec<Scan>,
    /// Every Huffman table the file defines, in order (a table redefined between scans is a
    /// new entry).
    pub tables: Vec<HuffmanTable>,
}

impl Frame {
    pub fn table(&self, index: Option<usize>) -> Option<&HuffmanTable> {
        self.tables.get(index?)
    }

    /// Blocks in one MCU of an interleaved scan, over all components.
    pub fn blocks_per_mcu(&self) -> usize {
        self.components.iter().map(|c| c.h * c.v).sum()
    }

    pub fn total_mcus(&self) -> usize {
        self.mcus_x * self.mcus_y
    }

    /// A component's blocks per row and column as stored: whole MCUs.
    pub fn padded_blocks(&self, component: usize) -> (usize, usize) {
        let c = &self.components[component];
        (self.mcus_x * c.h, self.mcus_y * c.v)
    }

    /// A component's blocks per row and column that hold image data: what a scan of that
    /// component alone covers.
    pub fn covered_blocks(&self, component: usize) -> (usize, usize) {
        let c = &self.components[component];
        let width = (self.width as usize * c.h).div_ceil(self.h_max);
        let height = (self.height as usize * c.v).div_ceil(self.v_max);
        (width.div_ceil(8), height.div_ceil(8))
    }
}

const SOI: u8 = 0xD8;
const EOI: u8 = 0xD9;
const SOF0: u8 = 0xC0;
const SOF1: u8 = 0xC1;
const SOF2: u8 = 0xC2;
const DHT: u8 = 0xC4;
const DQT: u8 = 0xDB;
const DRI: u8 = 0xDD;
const SOS: u8 = 0xDA;
const APP14: u8 = 0xEE;

/// More scans than any encoder makes (libjpeg's richest script has about a dozen): a file
/// with more is declined rather than costing time and memory per scan.
const MAX_SCANS: usize = 128;
/// Huffman table definitions: four per scan is already generous.
const MAX_TABLES: usize = 4 * MAX_SCANS;

/// Component specifications of a frame header: (id, h, v, quantisation table).
type ComponentSpecs = Vec<(u8, usize, usize, usize)>;

/// A marker or segment cut short: the file ends (or the segment does) in the middle of it.
const ENDS_EARLY: DecodeError = Corrupt("a header ends early");
const BAD_QUANT: DecodeError = Corrupt("a quantisation table breaks the format");
const BAD_HUFFMAN: DecodeError = Corrupt("a Huffman table breaks the format");
const BAD_SCAN: DecodeError = Corrupt("a scan header breaks the format");
const NO_FRAME: DecodeError = Corrupt("a scan before the frame header, or no frame header");
const NO_QUANT: DecodeError = Corrupt("a component's quantisation table is missing");

/// The byte at `at`, or [`ENDS_EARLY`].
fn byte(data: &[u8], at: usize) -> Result<u8, DecodeError> {
    data.get(at).copied().ok_or(ENDS_EARLY)
}

/// Reads the headers: up to the one scan of a baseline file, every scan of a progressive one.
/// `Err` if the file is not one this decoder handles, or its headers are broken.
pub(super) fn read(data: &[u8]) -> Result<Frame, DecodeError> {
    if data.get(..2) != Some([0xFF, SOI].as_slice()) {
        return Err(Corrupt("no start-of-image marker"));
    }
    let mut pos = 2;
    let mut quant: [Option<[u16; 64]>; 4] = [None; 4];
    let mut tables: Vec<HuffmanTable> = Vec::new();
    // The table in force in each DC and AC slot, as an index into `tables`.
    let mut dc_tables: [Option<usize>; 4] = [None; 4];
    let mut ac_tables: [Option<usize>; 4] = [None; 4];
    let mut restart_interval = 0;
    let mut header: Option<(u32, u32, bool, ComponentSpecs)> = None;
    let mut components: Vec<Component> = Vec::new();
    let mut scans: Vec<Scan> = Vec::new();
    loop {
        // Markers may be preceded by any number of 0xFF fill bytes.
        while byte(data, pos)? == 0xFF && byte(data, pos + 1)? == 0xFF {
            pos += 1;
        }
        if byte(data, pos)? != 0xFF {
            return Err(Corrupt("a marker was expected"));
        }
        let marker = byte(data, pos + 1)?;
        if marker == EOI {
            break;
        }
        let length = usize::from(u16::from_be_bytes([byte(data, pos + 2)?, byte(data, pos + 3)?]));
        if length < 2 {
            return Err(Corrupt("a segment length under 2"));
        }
        let segment = data.get(pos + 4..pos + 2 + length).ok_or(ENDS_EARLY)?;
        pos += 2 + length;
        match marker {
            SOF0 | SOF1 | SOF2 if header.is_none() => {
                let (width, height, specs) = read_frame(segment)?;
                header = Some((width, height, marker == SOF2, specs));
            }
            DHT => read_huffman(segment, &mut tables, &mut dc_tables, &mut ac_tables)?,
            DQT => read_quant(segment, &mut quant)?,
            DRI => restart_interval = usize::from(u16::from_be_bytes([byte(segment, 0)?, byte(segment, 1)?])),
            // Adobe's transform flag: 0 means the three components are RGB, not YCbCr.
            APP14 if segment.starts_with(b"Adobe") && segment.len() >= 12 && segment[11] == 0 => {
                return Err(Unsupported("RGB-coded (Adobe transform 0)"))
            }
            0xE0..=0xEF | 0xFE => {}
            SOS => {
                let (_, _, progressive, specs) = header.as_ref().ok_or(NO_FRAME)?;
                if components.is_empty() {
                    // The quantisation tables in force at the first scan (they may not change
                    // between scans of one component).
                    for &(_, h, v, table) in specs {
                        let values = quant.get(table).copied().flatten().ok_or(NO_QUANT)?;
                        components.push(Component { h, v, quant: values });
                    }
                }
                let scan = read_scan(segment, specs, &dc_tables, &ac_tables, pos, restart_interval, *progressive)?;
                scans.push(scan);
                if scans.len() > MAX_SCANS {
                    return Err(Unsupported("more scans than any encoder writes"));
                }
                if !progressive {
                    // A baseline file's one scan must cover every component at once.
                    let scan = &scans[0];
                    let whole = scan.components.len() == specs.len()
                        && scan.components.iter().enumerate().all(|(i, c)| c.index == i)
                        && (scan.start, scan.end, scan.high, scan.low) == (0, 63, 0, 0);
                    if !whole {
                        return Err(Unsupported("a baseline file in several scans"));
                    }
                    return build(header.ok_or(NO_FRAME)?, components, scans, tables);
                }
                pos = end_of_entropy_data(data, pos)?;
            }
            SOF0 | SOF1 | SOF2 => return Err(Unsupported("a second frame")),
            0xC3 => return Err(Unsupported("a lossless frame")),
            0xC9..=0xCC => return Err(Unsupported("arithmetic coding")),
            0xC5..=0xC7 | 0xCD..=0xCF | 0xDE | 0xDF => return Err(Unsupported("a hierarchical file")),
            _ => return Err(Unsupported("a marker this decoder does not read")),
        }
    }
    build(header.ok_or(NO_FRAME)?, components, scans, tables)
}

/// The offset of the first marker after entropy-coded data starting at `pos` (restart
/// markers and stuffed bytes are part of the data).
fn end_of_entropy_data(data: &[u8], mut pos: usize) -> Result<usize, DecodeError> {
    const UNENDED: DecodeError = Corrupt("a scan's data ends without a marker");
    loop {
        pos += data.get(pos..).and_then(|rest| rest.iter().position(|&b| b == 0xFF)).ok_or(UNENDED)?;
        match *data.get(pos + 1).ok_or(UNENDED)? {
            0x00 | 0xD0..=0xD7 | 0xFF => pos += 1,
            _ => return Ok(pos),
        }
    }
}

fn read_frame(segment: &[u8]) -> Result<(u32, u32, ComponentSpecs), DecodeError> {
    let precision = byte(segment, 0)?;
    let height = u32::from(u16::from_be_bytes([byte(segment, 1)?, byte(segment, 2)?]));
    let width = u32::from(u16::from_be_bytes([byte(segment, 3)?, byte(segment, 4)?]));
    let count = usize::from(byte(segment, 5)?);
    if precision != 8 {
        return Err(Unsupported("samples of other than 8 bits"));
    }
    if height == 0 {
        return Err(Unsupported("a height defined after the first scan (DNL)"));
    }
    if width == 0 {
        return Err(Corrupt("a width of 0"));
    }
    match count {
        1 | 3 => {}
        4 => return Err(Unsupported("four components (CMYK)")),
        _ => return Err(Unsupported("neither one nor three components")),
    }
    let mut specs = Vec::with_capacity(count);
    for c in 0..count {
        let spec = segment.get(6 + 3 * c..9 + 3 * c).ok_or(ENDS_EARLY)?;
        let (h, v) = (usize::from(spec[1] >> 4), usize::from(spec[1] & 15));
        if !(1..=4).contains(&h) || !(1..=4).contains(&v) || spec[2] > 3 {
            return Err(Corrupt("a component's sampling factors or table out of range"));
        }
        specs.push((spec[0], h, v, usize::from(spec[2])));
    }
    // Components named R, G, B hold RGB without a colour transform.
    if specs.iter().map(|s| s.0).eq(*b"RGB") {
        return Err(Unsupported("RGB-coded (components named R, G, B)"));
    }
    Ok((width, height, specs))
}
fn read_quant(mut segment: &[u8], quant: &mut [Option<[u16; 64]>; 4]) -> Result<(), DecodeError> {
    while let Some(&spec) = segment.first() {
        let (precision, id) = (spec >> 4, usize::from(spec & 15));
        let mut table = [0u16; 64];
        let size = if precision == 0 { 64 } else { 128 };
        let values = segment.get(1..1 + size).ok_or(BAD_QUANT)?;
        for (i, value) in table.iter_mut().enumerate() {
            *value = if precision == 0 {
                u16::from(values[i])
            } else {
                u16::from_be_bytes([values[2 * i], values[2 * i + 1]])
            };
        }
        *quant.get_mut(id).ok_or(BAD_QUANT)? = Some(table);
        segment = &segment[1 + size..];
    }
    Ok(())
}

fn read_huffman(
    mut segment: &[u8],
    tables: &mut Vec<HuffmanTable>,
    dc_tables: &mut [Option<usize>; 4],
    ac_tables: &mut [Option<usize>; 4],
) -> Result<(), DecodeError> {
    while let Some(&spec) = segment.first() {
        let (class, id) = (spec >> 4, usize::from(spec & 15));
        let counts: [u8; 16] = segment.get(1..17).and_then(|counts| counts.try_into().ok()).ok_or(BAD_HUFFMAN)?;
        let total: usize = counts.iter().map(|&c| usize::from(c)).sum();
        let values = segment.get(17..17 + total).ok_or(BAD_HUFFMAN)?;
        let slot = match class {
            0 => dc_tables.get_mut(id),
            1 => ac_tables.get_mut(id),
            _ => None,
        };
        let slot = slot.ok_or(BAD_HUFFMAN)?;
        if tables.len() == MAX_TABLES {
            return Err(Unsupported("more Huffman tables than any encoder writes"));
        }
        tables.push(HuffmanTable::new(&counts, values, class == 1).ok_or(BAD_HUFFMAN)?);
        *slot = Some(tables.len() - 1);
        segment = &segment[17 + total..];
    }
    Ok(())
}

fn read_scan(
    segment: &[u8],
    specs: &ComponentSpecs,
    dc_tables: &[Option<usize>; 4],
    ac_tables: &[Option<usize>; 4],
    data: usize,
    restart_interval: usize,
    progressive: bool,
) -> Result<Scan, DecodeError> {
    let count = usize::from(byte(segment, 0)?);
    if count == 0 || count > specs.len() {
        return Err(BAD_SCAN);
    }
    let spectral = segment.get(1 + 2 * count..4 + 2 * count).ok_or(BAD_SCAN)?;
    let (start, end, high, low) =
        (usize::from(spectral[0]), usize::from(spectral[1]), spectral[2] >> 4, spectral[2] & 15);
    // In progressive files DC and AC are never mixed, AC scans have one component, and the
    // bits fit a 16-bit coefficient.
    let bad_progressive = start > end || (start == 0 && end != 0) || (start > 0 && count != 1) || low > 13 || high > 13;
    if end > 63 || (progressive && bad_progressive) {
        return Err(BAD_SCAN);
    }
    let mut components = Vec::with_capacity(count);
    for c in 0..count {
        let id = byte(segment, 1 + 2 * c)?;
        let tables = byte(segment, 2 + 2 * c)?;
        let index = specs.iter().position(|s| s.0 == id).ok_or(BAD_SCAN)?;
        if components.iter().any(|sc: &ScanComponent| sc.index == index) {
            return Err(BAD_SCAN);
        }
        // Only the tables the scan uses must exist: DC for DC scans, AC for AC scans (a
        // baseline scan uses both).
        let defined = |slots: &[Option<usize>; 4], id: u8| {
            slots.get(usize::from(id)).copied().flatten().ok_or(Corrupt("a scan uses a Huffman table not defined"))
        };
        let dc = if start == 0 { Some(defined(dc_tables, tables >> 4)?) } else { None };
        let ac = if end > 0 { Some(defined(ac_tables, tables & 15)?) } else { None };
        components.push(ScanComponent { index, dc, ac });
    }
    Ok(Scan { components, start, end, high, low, data, restart_interval })
}

fn build(
    header: (u32, u32, bool, ComponentSpecs),
    mut components: Vec<Component>,
    scans: Vec<Scan>,
    tables: Vec<HuffmanTable>,
) -> Result<Frame, DecodeError> {
    const NO_SCAN: DecodeError = Corrupt("no scan");
    let (width, height, progressive, _) = header;
    if scans.is_empty() {
        return Err(NO_SCAN);
    }
    if components.len() == 1 {
        // A single-component image is not interleaved: one block per MCU whatever the factors.
        components[0].h = 1;
        components[0].v = 1;
    }
    let h_max = components.iter().map(|c| c.h).max().ok_or(NO_SCAN)?;
    let v_max = components.iter().map(|c| c.v).max().ok_or(NO_SCAN)?;
    // Chroma is upsampled by 1, 2 or 4 only.
    let whole = |max: usize, factor: usize| max.is_multiple_of(factor) && (max / factor).is_power_of_two();
    if components.iter().any(|c| !whole(h_max, c.h) || !whole(v_max, c.v)) {
        return Err(Unsupported("unusual chroma subsampling"));
    }
    let frame = Frame {
        width,
        height,
        progressive,
        mcus_x: (width as usize).div_ceil(8 * h_max),
        mcus_y: (height as usize).div_ceil(8 * v_max),
        h_max,
        v_max,
        components,
        scans,
        tables,
    };
    // At most 10 blocks per MCU (the JPEG limit).
    if frame.blocks_per_mcu() > 10 {
        return Err(Corrupt("more than 10 blocks per MCU"));
    }
    Ok(frame)
}
