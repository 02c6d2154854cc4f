//! Structural completeness checks for uploads: one linear pass over the bytes, no decoding.
//!
//! Decoders are lenient: zune-jpeg pads a truncated scan with grey, and a PNG header reads fine
//! however much of the file is missing. So, before an upload is accepted, these walks make sure
//! the container is whole: every JPEG segment and scan up to an EOI marker, every PNG chunk
//! with a valid CRC up to IEND. Bytes after EOI/IEND are ignored (some cameras and editors
//! append data there, and decoders ignore it too).
//!
//! Errors are human-readable strings; the caller turns them into "corrupt" (HTTP 400).

/// Walks a JPEG's marker segments and entropy-coded data up to EOI.
///
/// `visit` sees every marker byte (the byte after 0xFF) in order, for callers that want to know
/// which segments a file has (tests use it to check that thumbnails carry no metadata).
pub(crate) fn walk_jpeg(bytes: &[u8], mut visit: impl FnMut(u8)) -> Result<(), String> {
    if !bytes.starts_with(&[0xFF, 0xD8]) {
        return Err("JPEG does not start with a start-of-image marker".into());
    }
    visit(0xD8);
    let mut pos = 2usize;
    let mut seen_frame = false;
    let mut seen_scan = false;
    loop {
        let Some((marker, after)) = next_marker(bytes, pos) else {
            return Err(truncated_message(seen_scan));
        };
        pos = after;
        match marker {
            // 0xFF00 outside scan data is garbage, not a marker; keep looking.
            0x00 => continue,
            0xD9 => {
                visit(marker);
                if !seen_scan {
                    return Err("JPEG ends before any image data (no scan)".into());
                }
                return Ok(());
            }
            // Standalone markers without a length field (RSTn, TEM).
            0xD0..=0xD7 | 0x01 => {
                visit(marker);
                continue;
            }
            0xD8 => return Err("JPEG has a second start-of-image marker".into()),
            _ => {}
        }
        visit(marker);
        pos = segment_end(bytes, pos, marker)?;
        if is_start_of_frame(marker) {
            seen_frame = true;
        }
        if marker == 0xDA {
            if !seen_frame {
                return Err("JPEG has a scan before its frame header".into());
            }
            seen_scan = true;
            // Entropy-coded data follows the SOS header. Progressive files have several scans
            // with tables in between: the loop continues with whatever marker ends this scan.
            pos = skip_entropy_coded_data(bytes, pos)?;
        }
    }
}

/// The part of an image its header readers need: for a JPEG everything up to the end of the
/// first scan header (SOS), which holds the frame header and every EXIF segment; for a PNG all
/// of it (its reader streams). image's JPEG decoder copies its whole input before reading a
/// header: given the whole original, a header read cost a 4 MB copy, freshly faulted in, on
/// every upload and every job. A JPEG whose markers cannot be followed is returned whole, for
/// the reader to report.
pub(crate) fn header_bytes(bytes: &[u8], format: super::ImageFormat) -> &[u8] {
    if format != super::ImageFormat::Jpeg {
        return bytes;
    }
    header_segments(bytes).find(|segment| segment.marker == 0xDA).map_or(bytes, |sos| &bytes[..sos.end])
}

/// One marker segment of a JPEG header.
pub(crate) struct Segment<'a> {
    pub marker: u8,
    /// What follows the length field.
    pub payload: &'a [u8],
    /// Offset just past the segment.
    pub end: usize,
}

/// The marker segments of a JPEG up to and including its first scan header (SOS), in order.
/// Ends early where the markers cannot be followed (or at a second SOI or an EOI).
pub(crate) fn header_segments(bytes: &[u8]) -> impl Iterator<Item = Segment<'_>> {
    let mut pos = if bytes.starts_with(&[0xFF, 0xD8]) { 2 } else { usize::MAX };
    std::iter::from_fn(move || loop {
        let (marker, after) = next_marker(bytes, pos)?;
        pos = usize::MAX;
        match marker {
            0x00 | 0xD0..=0xD7 | 0x01 => {
                pos = after;
                continue;
            }
            0xD8 | 0xD9 => return None,
            _ => {}
        }
        let end = segment_end(bytes, after, marker).ok()?;
        if marker != 0xDA {
            pos = end;
        }
        return Some(Segment { marker, payload: &bytes[after + 2..end], end });
    })
}

/// A JPEG's frame header (SOFn): what the memory estimate and the support check need.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct JpegFrame {
    /// The SOF marker byte: 0xC0 baseline, 0xC1 extended, 0xC2 progressive, ...
    pub marker: u8,
    /// Bits per sample.
    pub precision: u8,
    pub width: u32,
    pub height: u32,
    /// Horizontal and vertical sampling factors of each component.
    pub sampling: Vec<(u32, u32)>,
}

impl JpegFrame {
    /// The first frame header before the first scan; `None` if there is none to read.
    pub(crate) fn read(bytes: &[u8]) -> Option<JpegFrame> {
        let frame = header_segments(bytes).find(|s| is_start_of_frame(s.marker))?;
        let p = frame.payload;
        let count = usize::from(*p.get(5)?);
        let sampling = (0..count)
            .map(|c| p.get(7 + 3 * c).map(|&f| (u32::from(f >> 4), u32::from(f & 15))))
            .collect::<Option<Vec<_>>>()?;
        Some(JpegFrame {
            marker: frame.marker,
            precision: p[0],
            height: u32::from(u16::from_be_bytes([*p.get(1)?, *p.get(2)?])),
            width: u32::from(u16::from_be_bytes([*p.get(3)?, *p.get(4)?])),
            sampling,
        })
    }

    /// Progressive frames keep every coefficient of the image until the last scan.
    pub(crate) fn progressive(&self) -> bool {
        matches!(self.marker, 0xC2 | 0xC6 | 0xCA | 0xCE)
    }

    /// What makes this frame one that no decoder here reads, if anything: only 8-bit
    /// Huffman-coded sequential (SOF0, SOF1) and progressive (SOF2) frames are.
    pub(crate) fn unsupported(&self) -> Option<String> {
        let kind = match self.marker {
            0xC0..=0xC2 => None,
            0xC3 => Some("lossless"),
            0xC5..=0xC7 => Some("hierarchical"),
            0xC9..=0xCB => Some("arithmetic-coded"),
            _ => Some("hierarchical arithmetic-coded"),
        };
        match kind {
            Some(kind) => Some(format!("{kind} frames (SOF{})", self.marker - 0xC0)),
            None if self.precision != 8 => Some(format!("{}-bit samples", self.precision)),
            None => None,
        }
    }

    /// 8×8 blocks stored over all components, padded to whole MCUs (as jpeg-decoder and
    /// zune-jpeg keep them); saturates rather than overflows on nonsense factors.
    pub(crate) fn stored_blocks(&self) -> u64 {
        let h_max = self.sampling.iter().map(|s| s.0).max().unwrap_or(1).max(1);
        let v_max = self.sampling.iter().map(|s| s.1).max().unwrap_or(1).max(1);
        let mcus_x = u64::from(self.width.div_ceil(8 * h_max));
        let mcus_y = u64::from(self.height.div_ceil(8 * v_max));
        self.sampling
            .iter()
            .map(|&(h, v)| (mcus_x * u64::from(h)).saturating_mul(mcus_y * u64::from(v)))
            .fold(0u64, u64::saturating_add)
    }
}

/// Why no decoder here reads this JPEG, if none does (see [`JpegFrame::unsupported`]); also
/// hierarchical files, which announce themselves with a DHP segment before their frames.
pub(crate) fn jpeg_unsupported(bytes: &[u8]) -> Option<String> {
    if header_segments(bytes).any(|s| s.marker == 0xDE) {
        return Some("hierarchical frames (DHP)".to_owned());
    }
    JpegFrame::read(bytes)?.unsupported()
}

/// The next marker at or after `pos`: its byte (after any 0xFF fill bytes) and the position
/// after it. Stray bytes between segments are skipped, as libjpeg does ("extraneous bytes
/// before marker"): they do not make an image incomplete. `None`: no marker before the end.
pub(super) fn next_marker(bytes: &[u8], pos: usize) -> Option<(u8, usize)> {
    let mut pos = find_ff(bytes, pos)?;
    while bytes.get(pos) == Some(&0xFF) {
        pos += 1;
    }
    let &marker = bytes.get(pos)?;
    Some((marker, pos + 1))
}

/// The end of segment `marker`, whose length field is at `pos`.
pub(super) fn segment_end(bytes: &[u8], pos: usize, marker: u8) -> Result<usize, String> {
    let Some(length_bytes) = bytes.get(pos..pos.saturating_add(2)) else {
        return Err(format!("JPEG is truncated in the header of segment 0xFF{marker:02X}"));
    };
    let seg_len = usize::from(u16::from_be_bytes([length_bytes[0], length_bytes[1]]));
    if seg_len < 2 {
        return Err(format!("JPEG segment 0xFF{marker:02X} has an invalid length {seg_len}"));
    }
    pos.checked_add(seg_len)
        .filter(|&end| end <= bytes.len())
        .ok_or_else(|| format!("JPEG is truncated inside segment 0xFF{marker:02X}"))
}

/// Checks that a JPEG is complete (see [`walk_jpeg`]).
#[cfg(test)]
pub(crate) fn check_jpeg(bytes: &[u8]) -> Result<(), String> {
    walk_jpeg(bytes, |_| {})
}

fn truncated_message(seen_scan: bool) -> String {
    if seen_scan {
        "JPEG is truncated: its image data ends without an end-of-image marker".into()
    } else {
        "JPEG is truncated before its image data".into()
    }
}

/// SOF0..SOF15, which are 0xC0..=0xCF except DHT (C4), JPG (C8) and DAC (CC).
fn is_start_of_frame(marker: u8) -> bool {
    (0xC0..=0xCF).contains(&marker) && !matches!(marker, 0xC4 | 0xC8 | 0xCC)
}

/// Skips entropy-coded data starting at `pos`; returns the position of the 0xFF that starts
/// the next real marker. Inside scan data 0xFF00 is an escaped 0xFF byte and 0xFFD0..D7 are
/// restart markers, neither of which ends the scan.
pub(super) fn skip_entropy_coded_data(bytes: &[u8], mut pos: usize) -> Result<usize, String> {
    loop {
        let Some(ff) = find_ff(bytes, pos) else {
            return Err(truncated_message(true));
        };
        let Some(&next) = bytes.get(ff + 1) else {
            return Err(truncated_message(true));
        };
        match next {
            0x00 | 0xD0..=0xD7 => pos = ff + 2,
            // A fill byte: the marker (if any) starts at the next 0xFF.
            0xFF => pos = ff + 1,
            _ => return Ok(ff),
        }
    }
}

/// Position of the next 0xFF at or after `from`.
///
/// Scan data is most of a JPEG, so this is the hot loop of the check; it tests eight bytes at
/// a time for a 0xFF byte (a zero byte in the complement), which keeps 25 MB in milliseconds.
fn find_ff(bytes: &[u8], from: usize) -> Option<usize> {
    const LO: u64 = 0x0101_0101_0101_0101;
    const HI: u64 = 0x8080_8080_8080_8080;
    let tail = bytes.get(from..)?;
    let mut offset = 0usize;
    let mut chunks = tail.chunks_exact(8);
    for chunk in &mut chunks {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        let inverted = !u64::from_ne_bytes(word);
        // Classic "has a zero byte" test: non-zero iff some byte of `inverted` is zero.
        if inverted.wrapping_sub(LO) & !inverted & HI != 0 {
            // The word holds a 0xFF; find exactly where.
            let inner = chunk.iter().position(|&b| b == 0xFF)?;
            return Some(from + offset + inner);
        }
        offset += 8;
    }
    chunks.remainder().iter().position(|&b| b == 0xFF).map(|inner| from + offset + inner)
}

/// Walks a PNG's chunks up to IEND, verifying each chunk's CRC.
///
/// `visit` sees every chunk's type and data in order.
pub(crate) fn walk_png(bytes: &[u8], mut visit: impl FnMut([u8; 4], &[u8])) -> Result<(), String> {
    if !bytes.starts_with(&super::PNG_SIGNATURE) {
        return Err("PNG does not start with the PNG signature".into());
    }
    let len = bytes.len();
    let mut pos = super::PNG_SIGNATURE.len();
    let mut first = true;
    let mut seen_idat = false;
    loop {
        let Some(head) = bytes.get(pos..pos.saturating_add(8)) else {
            return Err("PNG is truncated: it ends before its IEND chunk".into());
        };
        let data_len = u32::from_be_bytes([head[0], head[1], head[2], head[3]]);
        let chunk_type = [head[4], head[5], head[6], head[7]];
        // Only for messages: a file may hold millions of chunks.
        let name = || String::from_utf8_lossy(&chunk_type).into_owned();
        if !chunk_type.iter().all(u8::is_ascii_alphabetic) {
            return Err(format!("PNG has an invalid chunk type {chunk_type:02X?} at byte {pos}"));
        }
        // The PNG spec caps chunk lengths at 2^31 - 1.
        if data_len > 0x7FFF_FFFF {
            return Err(format!("PNG chunk {} has an invalid length {data_len}", name()));
        }
        let data_start = pos + 8;
        let crc_end = usize::try_from(data_len)
            .ok()
            .and_then(|n| data_start.checked_add(n))
            .and_then(|data_end| data_end.checked_add(4).map(|crc_end| (data_end, crc_end)))
            .filter(|&(_, crc_end)| crc_end <= len);
        let Some((data_end, crc_end)) = crc_end else {
            return Err(format!("PNG is truncated inside its {} chunk", name()));
        };
        let stored_crc =
            u32::from_be_bytes([bytes[data_end], bytes[data_end + 1], bytes[data_end + 2], bytes[data_end + 3]]);
        // The CRC covers the chunk type and data, not the length.
        if crc32fast::hash(&bytes[pos + 4..data_end]) != stored_crc {
            return Err(format!("PNG chunk {} has a wrong CRC (damaged file)", name()));
        }
        visit(chunk_type, &bytes[data_start..data_end]);
        match &chunk_type {
            b"IHDR" if first && data_len == 13 => {}
            b"IHDR" if first => return Err("PNG IHDR chunk has a wrong length".into()),
            _ if first => return Err(format!("PNG starts with {} instead of IHDR", name())),
            b"IHDR" => return Err("PNG has a second IHDR chunk".into()),
            b"IDAT" => seen_idat = true,
            b"IEND" if !seen_idat => return Err("PNG has no image data (no IDAT)".into()),
            b"IEND" => return Ok(()),
            _ => {}
        }
        first = false;
        pos = crc_end;
    }
}

/// Checks that a PNG is complete (see [`walk_png`]); returns the size of its `eXIf` data, the
/// one metadata chunk decoders are shown (see [`super::decoder_input`]), for its cap.
pub(crate) fn check_png(bytes: &[u8]) -> Result<u64, String> {
    let mut exif = 0u64;
    walk_png(bytes, |chunk_type, data| {
        if &chunk_type == b"eXIf" {
            exif = exif.saturating_add(data.len() as u64);
        }
    })?;
    Ok(exif)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::test_support::*;
    use crate::pipeline::ImageFormat;

    /// Dimensions and EXIF orientation as image's decoder reads them.
    fn read_header(bytes: &[u8]) -> ((u32, u32), image::metadata::Orientation) {
        let mut decoder = image::ImageReader::with_format(std::io::Cursor::new(bytes), image::ImageFormat::Jpeg)
            .into_decoder()
            .expect("a header");
        let dimensions = image::ImageDecoder::dimensions(&decoder);
        (dimensions, image::ImageDecoder::orientation(&mut decoder).expect("orientation"))
    }

    #[test]
    fn header_bytes_end_with_the_first_scan_header_and_read_the_same_as_the_whole_file() {
        let rotated = splice_after_soi(
            &encode_jpeg(&image::DynamicImage::ImageRgb8(image::RgbImage::new(300, 120))),
            &exif_orientation_segment(6),
        );
        let mut files = vec![("rotated".to_owned(), rotated)];
        for name in ["photo-bird-6028x3391.jpg", "photo-volna-5120x2880-progressive.jpg", "art-grey-2560x1600-gray.jpg"]
        {
            if let Some(path) = corpus(name) {
                files.push((name.to_owned(), std::fs::read(path).expect("corpus file")));
            }
        }
        for (name, bytes) in &files {
            let headers = header_bytes(bytes, ImageFormat::Jpeg);
            assert!(headers.len() < bytes.len() && headers.len() < 100_000, "{name}: {} bytes", headers.len());
            let sos = headers.windows(2).rposition(|w| w == [0xFF, 0xDA]).expect("ends with the SOS segment");
            let sos_length = usize::from(u16::from_be_bytes([headers[sos + 2], headers[sos + 3]]));
            assert_eq!(sos + 2 + sos_length, headers.len(), "{name}: the SOS segment is the last thing");
            assert_eq!(read_header(headers), read_header(bytes), "{name}");
        }
        assert_eq!(read_header(header_bytes(&files[0].1, ImageFormat::Jpeg)).1, image::metadata::Orientation::Rotate90);
        // What cannot be followed, and PNGs, are handed over whole.
        let truncated = &files[0].1[..40];
        assert_eq!(header_bytes(truncated, ImageFormat::Jpeg), truncated);
        assert_eq!(header_bytes(b"not a jpeg at all", ImageFormat::Jpeg), b"not a jpeg at all");
        assert_eq!(header_bytes(&files[0].1, ImageFormat::Png), &files[0].1[..]);
    }

    #[test]
    fn find_ff_finds_every_position_in_and_across_words() {
        for len in 0..20 {
            for at in 0..len {
                let mut bytes = vec![0x12u8; len];
                bytes[at] = 0xFF;
                for from in 0..=at {
                    assert_eq!(find_ff(&bytes, from), Some(at), "len {len} at {at}");
                }
                assert_eq!(find_ff(&bytes, at + 1), None);
            }
        }
        // 0xFE and 0x7F must not be mistaken for 0xFF by the word test.
        assert_eq!(find_ff(&[0xFE, 0x7F, 0xFE, 0xFE, 0x7F, 0xFE, 0xFE, 0xFE, 0xFF], 0), Some(8));
        assert_eq!(find_ff(&[], 0), None);
        assert_eq!(find_ff(&[1, 2], 5), None);
    }

    #[test]
    fn a_whole_jpeg_passes_and_its_segments_are_visited() {
        let jpeg = encode_jpeg_rgb(&gradient_rgb(40, 30));
        let mut markers = Vec::new();
        assert_eq!(walk_jpeg(&jpeg, |m| markers.push(m)), Ok(()));
        assert_eq!(markers.first(), Some(&0xD8));
        assert_eq!(markers.last(), Some(&0xD9));
        assert!(markers.contains(&0xDA), "scan marker visited: {markers:02X?}");
    }

    #[test]
    fn a_jpeg_truncated_anywhere_fails_the_check() {
        let jpeg = encode_jpeg_rgb(&gradient_rgb(64, 48));
        // Every proper prefix lacks the EOI (the last two bytes).
        for cut in [3, 10, 50, jpeg.len() / 2, jpeg.len() - 2, jpeg.len() - 1] {
            assert!(check_jpeg(&jpeg[..cut]).is_err(), "prefix of {cut} bytes");
        }
    }

    #[test]
    fn garbage_after_the_end_of_a_jpeg_or_png_is_accepted() {
        let mut jpeg = encode_jpeg_rgb(&gradient_rgb(16, 16));
        jpeg.extend_from_slice(b"trailing junk \xFF\xD8\xFF");
        assert_eq!(check_jpeg(&jpeg), Ok(()));
        let mut png = encode_png_rgb(&gradient_rgb(16, 16));
        png.extend_from_slice(b"trailing junk");
        assert_eq!(check_png(&png), Ok(0));
    }

    #[test]
    fn a_jpeg_without_any_scan_is_rejected() {
        assert!(check_jpeg(&[0xFF, 0xD8, 0xFF, 0xD9]).is_err());
    }

    #[test]
    fn a_jpeg_segment_length_past_the_end_is_rejected() {
        let bytes = [0xFF, 0xD8, 0xFF, 0xE0, 0x40, 0x00, 0, 0, 0xFF, 0xD9];
        let err = check_jpeg(&bytes).unwrap_err();
        assert!(err.contains("truncated inside segment 0xFFE0"), "{err}");
    }

    #[test]
    fn a_png_missing_iend_or_idat_or_ihdr_is_rejected() {
        let ihdr = ihdr_data(4, 4, 8, 2);
        let idat = zlib_stored(&[0u8; 4 * (1 + 12)]);
        let whole = png_from_chunks(&[(b"IHDR", &ihdr), (b"IDAT", &idat), (b"IEND", &[])]);
        assert_eq!(check_png(&whole), Ok(0));
        let no_iend = png_from_chunks(&[(b"IHDR", &ihdr), (b"IDAT", &idat)]);
        assert!(check_png(&no_iend).is_err());
        let no_idat = png_from_chunks(&[(b"IHDR", &ihdr), (b"IEND", &[])]);
        assert!(check_png(&no_idat).unwrap_err().contains("no IDAT"));
        let no_ihdr = png_from_chunks(&[(b"IDAT", &idat), (b"IEND", &[])]);
        assert!(check_png(&no_ihdr).unwrap_err().contains("instead of IHDR"));
    }

    #[test]
    fn a_png_chunk_length_near_u32_max_is_rejected_without_overflow() {
        let ihdr = ihdr_data(4, 4, 8, 2);
        let mut png = png_from_chunks(&[(b"IHDR", &ihdr)]);
        png.extend_from_slice(&0xFFFF_FFF0u32.to_be_bytes());
        png.extend_from_slice(b"IDAT");
        assert!(check_png(&png).unwrap_err().contains("invalid length"));
        let mut png = png_from_chunks(&[(b"IHDR", &ihdr)]);
        png.extend_from_slice(&0x7FFF_FFFFu32.to_be_bytes());
        png.extend_from_slice(b"IDAT");
        assert!(check_png(&png).unwrap_err().contains("truncated"));
    }
}
