//! The markers before the entropy-coded data of a baseline JPEG: quantisation and Huffman
//! tables, the frame and the one scan. Anything this decoder does not handle (progressive or
//! lossless frames, 12-bit samples, more than one scan, CMYK, RGB-coded files, unusual
//! sampling) gives `None`, and the caller decodes with the general decoder instead.

use super::huffman::HuffmanTable;

/// One colour component of the frame, with the tables its blocks use.
#[derive(Clone, Debug)]
pub(super) struct Component {
    /// Horizontal and vertical sampling factors, in blocks per MCU.
    pub h: usize,
    pub v: usize,
    /// Quantisation table in zigzag order.
    pub quant: [u16; 64],
    pub dc_table: usize,
    pub ac_table: usize,
}

/// Everything needed to decode the scan.
pub(super) struct Frame {
    pub width: u32,
    pub height: u32,
    pub components: Vec<Component>,
    pub h_max: usize,
    pub v_max: usize,
    pub mcus_x: usize,
    pub mcus_y: usize,
    /// MCUs between restart markers; 0 when the file has none.
    pub restart_interval: usize,
    pub dc_tables: [Option<HuffmanTable>; 4],
    pub ac_tables: [Option<HuffmanTable>; 4],
    /// Offset of the entropy-coded data in the file.
    pub scan_start: usize,
}

impl Frame {
    /// Blocks in one MCU, over all components.
    pub fn blocks_per_mcu(&self) -> usize {
        self.components.iter().map(|c| c.h * c.v).sum()
    }

    pub fn total_mcus(&self) -> usize {
        self.mcus_x * self.mcus_y
    }
}

const SOI: u8 = 0xD8;
const SOF0: u8 = 0xC0;
const SOF1: u8 = 0xC1;
const DHT: u8 = 0xC4;
const DQT: u8 = 0xDB;
const DRI: u8 = 0xDD;
const SOS: u8 = 0xDA;
const APP14: u8 = 0xEE;

/// Reads the headers up to the start of the scan. `None`: not a file this decoder handles.
pub(super) fn read(data: &[u8]) -> Option<Frame> {
    if data.get(..2)? != [0xFF, SOI] {
        return None;
    }
    let mut pos = 2;
    let mut quant: [Option<[u16; 64]>; 4] = [None; 4];
    let mut dc_tables: [Option<HuffmanTable>; 4] = Default::default();
    let mut ac_tables: [Option<HuffmanTable>; 4] = Default::default();
    let mut restart_interval = 0;
    // (h, v, quantisation table) per component, in frame order.
    let mut frame: Option<FrameHeader> = None;
    loop {
        // Markers may be preceded by any number of 0xFF fill bytes.
        while *data.get(pos)? == 0xFF && *data.get(pos + 1)? == 0xFF {
            pos += 1;
        }
        if *data.get(pos)? != 0xFF {
            return None;
        }
        let marker = *data.get(pos + 1)?;
        let length = usize::from(u16::from_be_bytes([*data.get(pos + 2)?, *data.get(pos + 3)?]));
        if length < 2 {
            return None;
        }
        let segment = data.get(pos + 4..pos + 2 + length)?;
        match marker {
            SOF0 | SOF1 => frame = Some(read_frame(segment)?),
            DHT => read_huffman(segment, &mut dc_tables, &mut ac_tables)?,
            DQT => read_quant(segment, &mut quant)?,
            DRI => restart_interval = usize::from(u16::from_be_bytes([*segment.first()?, *segment.get(1)?])),
            // Adobe's transform flag: 0 means the three components are RGB, not YCbCr.
            APP14 if segment.starts_with(b"Adobe") && segment.len() >= 12 && segment[11] == 0 => return None,
            0xE0..=0xEF | 0xFE => {}
            SOS => {
                let (width, height, parts) = frame?;
                let components = read_scan(segment, &parts, &quant)?;
                return build(width, height, components, restart_interval, dc_tables, ac_tables, pos + 2 + length);
            }
            // Any other frame type (progressive, lossless, arithmetic) or marker.
            _ => return None,
        }
        pos += 2 + length;
    }
}

/// A frame header: width, height and each component's (h, v, quantisation table).
type FrameHeader = (u32, u32, Vec<(usize, usize, usize)>);

fn read_frame(segment: &[u8]) -> Option<FrameHeader> {
    let precision = *segment.first()?;
    let height = u32::from(u16::from_be_bytes([*segment.get(1)?, *segment.get(2)?]));
    let width = u32::from(u16::from_be_bytes([*segment.get(3)?, *segment.get(4)?]));
    let count = usize::from(*segment.get(5)?);
    // Height 0 (defined later by a DNL marker) is not supported; 4 components are CMYK.
    if precision != 8 || width == 0 || height == 0 || !(count == 1 || count == 3) {
        return None;
    }
    let mut parts = Vec::with_capacity(count);
    let mut ids = Vec::with_capacity(count);
    for c in 0..count {
        let spec = segment.get(6 + 3 * c..9 + 3 * c)?;
        let (h, v) = (usize::from(spec[1] >> 4), usize::from(spec[1] & 15));
        if !(1..=4).contains(&h) || !(1..=4).contains(&v) || spec[2] > 3 {
            return None;
        }
        ids.push(spec[0]);
        parts.push((h, v, usize::from(spec[2])));
    }
    // Components named R, G, B hold RGB without a colour transform.
    if ids == b"RGB" {
        return None;
    }
    Some((width, height, parts))
}

fn read_quant(mut segment: &[u8], quant: &mut [Option<[u16; 64]>; 4]) -> Option<()> {
    while let Some(&spec) = segment.first() {
        let (precision, id) = (spec >> 4, usize::from(spec & 15));
        let mut table = [0u16; 64];
        let size = if precision == 0 { 64 } else { 128 };
        let values = segment.get(1..1 + size)?;
        for (i, value) in table.iter_mut().enumerate() {
            *value = if precision == 0 {
                u16::from(values[i])
            } else {
                u16::from_be_bytes([values[2 * i], values[2 * i + 1]])
            };
        }
        *quant.get_mut(id)? = Some(table);
        segment = &segment[1 + size..];
    }
    Some(())
}

fn read_huffman(
    mut segment: &[u8],
    dc_tables: &mut [Option<HuffmanTable>; 4],
    ac_tables: &mut [Option<HuffmanTable>; 4],
) -> Option<()> {
    while let Some(&spec) = segment.first() {
        let (class, id) = (spec >> 4, usize::from(spec & 15));
        let counts: [u8; 16] = segment.get(1..17)?.try_into().ok()?;
        let total: usize = counts.iter().map(|&c| usize::from(c)).sum();
        let values = segment.get(17..17 + total)?;
        let table = HuffmanTable::new(&counts, values, class == 1)?;
        match class {
            0 => *dc_tables.get_mut(id)? = Some(table),
            1 => *ac_tables.get_mut(id)? = Some(table),
            _ => return None,
        }
        segment = &segment[17 + total..];
    }
    Some(())
}

/// The scan must cover every component of the frame in one interleaved pass over all 64
/// coefficients (a baseline sequential file).
fn read_scan(
    segment: &[u8],
    parts: &[(usize, usize, usize)],
    quant: &[Option<[u16; 64]>; 4],
) -> Option<Vec<Component>> {
    let count = usize::from(*segment.first()?);
    if count != parts.len() {
        return None;
    }
    let mut components = Vec::with_capacity(count);
    for (c, &(h, v, tq)) in parts.iter().enumerate() {
        let tables = *segment.get(2 + 2 * c)?;
        components.push(Component {
            h,
            v,
            quant: (*quant.get(tq)?)?,
            dc_table: usize::from(tables >> 4),
            ac_table: usize::from(tables & 15),
        });
    }
    let spectral = segment.get(1 + 2 * count..4 + 2 * count)?;
    if spectral != [0, 63, 0] {
        return None;
    }
    Some(components)
}

fn build(
    width: u32,
    height: u32,
    mut components: Vec<Component>,
    restart_interval: usize,
    dc_tables: [Option<HuffmanTable>; 4],
    ac_tables: [Option<HuffmanTable>; 4],
    scan_start: usize,
) -> Option<Frame> {
    if components.len() == 1 {
        // A single-component scan is not interleaved: one block per MCU whatever the factors.
        components[0].h = 1;
        components[0].v = 1;
    }
    let h_max = components.iter().map(|c| c.h).max()?;
    let v_max = components.iter().map(|c| c.v).max()?;
    // Chroma is upsampled by 1, 2 or 4 only.
    let whole = |max: usize, factor: usize| max.is_multiple_of(factor) && (max / factor).is_power_of_two();
    if components.iter().any(|c| !whole(h_max, c.h) || !whole(v_max, c.v)) {
        return None;
    }
    for c in &components {
        dc_tables.get(c.dc_table)?.as_ref()?;
        ac_tables.get(c.ac_table)?.as_ref()?;
    }
    let frame = Frame {
        width,
        height,
        mcus_x: (width as usize).div_ceil(8 * h_max),
        mcus_y: (height as usize).div_ceil(8 * v_max),
        h_max,
        v_max,
        components,
        restart_interval,
        dc_tables,
        ac_tables,
        scan_start,
    };
    // At most 10 blocks per MCU (the JPEG limit).
    (frame.blocks_per_mcu() <= 10).then_some(frame)
}
