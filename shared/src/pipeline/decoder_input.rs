//! What the decoders are shown of a file: the parts that make its pixels and its orientation,
//! and no other metadata.
//!
//! Decoders keep, and sometimes inflate, metadata we never use: the png crate inflates an
//! `iCCP` profile up to its allocation limit (a 2 MB file inflated to 512 MiB on every header
//! read) and keeps every text chunk; zune-jpeg and jpeg-decoder keep every ICC, XMP and gain
//! map segment of a JPEG. Thumbnails carry no metadata, and the only metadata read is the EXIF
//! orientation, so a [`DecoderInput`] hands the decoders the file without the rest. It is a
//! reader over the original bytes: nothing is copied, and what a decoder holds is bounded by
//! what it is shown.
//!
//! - PNG: every critical chunk (an unknown one still fails the decode, as it must), `tRNS`
//!   (transparency: pixels) and `eXIf` (orientation) up to [`MAX_PNG_EXIF_BYTES`], over which
//!   the structural check refuses the file anyway. Other ancillary chunks (`iCCP`, `tEXt`, `zTXt`, `iTXt`, `sBIT`, `gAMA`, `acTL`,
//!   ...) are skipped: none of them changes the decoded pixels.
//! - JPEG: every segment except metadata, and of the metadata segments that decoders read the
//!   first of each kind: APP0 (JFIF, which tells jpeg-decoder the colour transform), the
//!   first Exif APP1 (orientation) and APP14 (Adobe's colour transform). Other APPn segments
//!   (ICC profiles, XMP, MPF, gain maps, Photoshop data, ...) and comments are skipped. At most
//!   three segments of 64 KiB of metadata reach a decoder, however many the file holds.
//!
//! Whatever cannot be followed (a truncated chunk, a broken segment length) is handed over as
//! it is, for the decoder to report.

use std::io::{BufRead, Read, Seek, SeekFrom};

use super::structure::{next_marker, segment_end, skip_entropy_coded_data};
use super::{ImageFormat, MAX_PNG_EXIF_BYTES};

/// A reader over the parts of an image file that decoders need (see the module docs).
pub(crate) struct DecoderInput<'a> {
    bytes: &'a [u8],
    format: ImageFormat,
    /// Next byte of `bytes` to hand out.
    pos: usize,
    /// End of the run being handed out: a kept chunk or segment, or a scan's data.
    run_end: usize,
    /// Nothing is handed out from here on (a JPEG ends at its EOI).
    end: usize,
    /// The last run was a JPEG scan header: its entropy-coded data comes next.
    scan_data_next: bool,
    /// JPEG metadata segments already handed out: APP0, Exif APP1, APP14.
    kept: [bool; 3],
    /// PNG `eXIf` bytes handed out.
    exif_shown: u64,
    /// Bytes handed out so far: the stream position.
    position: u64,
}

impl<'a> DecoderInput<'a> {
    pub(crate) fn new(bytes: &'a [u8], format: ImageFormat) -> Self {
        Self {
            bytes,
            format,
            pos: 0,
            run_end: 0,
            end: bytes.len(),
            scan_data_next: false,
            kept: [false; 3],
            exif_shown: 0,
            position: 0,
        }
    }

    /// Sets `run_end` past `pos` (skipping what decoders are not shown), or `pos` to `end`.
    fn next_run(&mut self) {
        match self.format {
            ImageFormat::Png => self.next_png_run(),
            ImageFormat::Jpeg => self.next_jpeg_run(),
        }
        if self.run_end <= self.pos {
            self.pos = self.end;
        }
        self.run_end = self.run_end.min(self.end);
    }

    fn next_png_run(&mut self) {
        let bytes = self.bytes;
        if self.pos == 0 {
            self.run_end = super::PNG_SIGNATURE.len();
            return;
        }
        loop {
            let Some(head) = bytes.get(self.pos..self.pos.saturating_add(8)) else {
                self.run_end = bytes.len();
                return;
            };
            let data_len = u32::from_be_bytes([head[0], head[1], head[2], head[3]]);
            let chunk_end = usize::try_from(data_len)
                .ok()
                .and_then(|len| self.pos.checked_add(12)?.checked_add(len))
                .unwrap_or(usize::MAX)
                .min(bytes.len());
            let hidden = match &head[4..8] {
                b"tRNS" => false,
                // Over the cap the structural check refuses the file; here, decoders never
                // copy more than the cap whatever path reaches them.
                b"eXIf" => {
                    let shown = self.exif_shown.saturating_add(u64::from(data_len));
                    let hidden = shown > MAX_PNG_EXIF_BYTES;
                    if !hidden {
                        self.exif_shown = shown;
                    }
                    hidden
                }
                // Ancillary chunks have a lower-case first letter.
                _ => head[4].is_ascii_lowercase(),
            };
            if !hidden {
                self.run_end = chunk_end;
                return;
            }
            self.pos = chunk_end;
            if self.pos >= bytes.len() {
                return;
            }
        }
    }

    fn next_jpeg_run(&mut self) {
        let bytes = self.bytes;
        if std::mem::take(&mut self.scan_data_next) {
            self.run_end = skip_entropy_coded_data(bytes, self.pos).unwrap_or(bytes.len());
            if self.run_end > self.pos {
                return;
            }
        }
        loop {
            let Some((marker, after)) = next_marker(bytes, self.pos) else {
                self.run_end = bytes.len();
                return;
            };
            match marker {
                // The end: what follows EOI (camera previews, appended data) is no decoder's business.
                0xD9 => {
                    self.run_end = after;
                    self.end = after;
                    return;
                }
                // Markers without a length: SOI, RSTn, TEM, and 0xFF00 outside a scan.
                0x00 | 0x01 | 0xD0..=0xD8 => {
                    self.run_end = after;
                    return;
                }
                _ => {}
            }
            let Ok(segment_end) = segment_end(bytes, after, marker) else {
                self.run_end = bytes.len();
                return;
            };
            if self.keeps(marker, &bytes[after + 2..segment_end]) {
                self.run_end = segment_end;
                self.scan_data_next = marker == 0xDA;
                return;
            }
            // Skipped, with any stray bytes before it.
            self.pos = segment_end;
        }
    }

    /// Whether a JPEG segment is shown to the decoders.
    fn keeps(&mut self, marker: u8, payload: &[u8]) -> bool {
        let slot = match marker {
            0xE0 => 0,
            0xE1 if payload.starts_with(b"Exif\0\0") => 1,
            0xEE => 2,
            0xE1..=0xEF | 0xFE => return false,
            _ => return true,
        };
        !std::mem::replace(&mut self.kept[slot], true)
    }
}

impl Read for DecoderInput<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let available = self.fill_buf()?;
        let n = available.len().min(buf.len());
        buf[..n].copy_from_slice(&available[..n]);
        self.consume(n);
        Ok(n)
    }
}

impl BufRead for DecoderInput<'_> {
    fn fill_buf(&mut self) -> std::io::Result<&[u8]> {
        while self.pos >= self.run_end && self.pos < self.end {
            self.next_run();
        }
        Ok(self.bytes.get(self.pos..self.run_end.max(self.pos)).unwrap_or(&[]))
    }

    fn consume(&mut self, amount: usize) {
        let amount = amount.min(self.run_end.saturating_sub(self.pos));
        self.pos += amount;
        self.position += amount as u64;
    }
}

/// Decoders only ever ask where they are; seeking is supported by reading again from the
/// start, which is correct and cheap enough for that.
impl Seek for DecoderInput<'_> {
    fn seek(&mut self, to: SeekFrom) -> std::io::Result<u64> {
        let target = match to {
            SeekFrom::Start(n) => Some(n),
            SeekFrom::Current(delta) => self.position.checked_add_signed(delta),
            SeekFrom::End(_) => None,
        };
        let Some(target) = target else {
            return Err(std::io::Error::new(std::io::ErrorKind::Unsupported, "seek from the end of a decoder input"));
        };
        if target < self.position {
            *self = Self::new(self.bytes, self.format);
        }
        while self.position < target {
            let available = self.fill_buf()?.len();
            if available == 0 {
                break;
            }
            self.consume(available.min(usize::try_from(target - self.position).unwrap_or(usize::MAX)));
        }
        Ok(self.position)
    }

    fn stream_position(&mut self) -> std::io::Result<u64> {
        Ok(self.position)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::test_support::*;

    fn shown(bytes: &[u8], format: ImageFormat) -> Vec<u8> {
        let mut out = Vec::new();
        DecoderInput::new(bytes, format).read_to_end(&mut out).expect("in memory");
        out
    }

    #[test]
    fn a_png_is_shown_without_its_ancillary_chunks_except_transparency_and_exif() {
        let raw: Vec<u8> = (0..4).flat_map(|_| [0u8; 1 + 4 * 3]).collect();
        let essential: Vec<(&[u8; 4], Vec<u8>)> = vec![
            (b"IHDR", ihdr_data(4, 4, 8, 2)),
            (b"tRNS", vec![0, 1, 0, 2, 0, 3]),
            (b"eXIf", exif_orientation_tiff(6)),
            (b"IDAT", zlib_stored(&raw)),
            (b"IEND", vec![]),
        ];
        let mut with_metadata = essential.clone();
        with_metadata.insert(1, (b"iCCP", b"p\0\0xyz".to_vec()));
        with_metadata.insert(2, (b"tEXt", b"Comment\0hi".to_vec()));
        with_metadata.insert(4, (b"zTXt", b"k\0\0abc".to_vec()));
        with_metadata.insert(6, (b"iTXt", b"k\0\0\0\0\0text".to_vec()));
        with_metadata.insert(8, (b"gAMA", vec![0, 0, 0xB1, 0x8F]));
        let chunks = |list: &[(&[u8; 4], Vec<u8>)]| {
            png_from_chunks(&list.iter().map(|(t, d)| (*t, d.as_slice())).collect::<Vec<_>>())
        };
        assert_eq!(shown(&chunks(&with_metadata), ImageFormat::Png), chunks(&essential));
        // An unknown critical chunk is shown, so the decoder still refuses the file.
        let mut critical = essential.clone();
        critical.insert(1, (b"ABCD", vec![1, 2, 3]));
        assert_eq!(shown(&chunks(&critical), ImageFormat::Png), chunks(&critical));
    }

    #[test]
    fn a_million_text_chunks_cost_a_png_decoder_nothing() {
        let mut chunks: Vec<(&[u8; 4], &[u8])> = vec![(b"IHDR", &[0, 0, 0, 1, 0, 0, 0, 1, 8, 0, 0, 0, 0])];
        chunks.extend(std::iter::repeat_n((b"tEXt", &b"a\0"[..]), 1_000_000));
        let idat = zlib_stored(&[0, 0]);
        chunks.push((b"IDAT", &idat));
        chunks.push((b"IEND", &[]));
        let png = png_from_chunks(&chunks);
        let essential = png_from_chunks(&[chunks[0], (b"IDAT", &idat), (b"IEND", &[])]);
        assert_eq!(shown(&png, ImageFormat::Png), essential);
        let decoded = image::load_from_memory_with_format(&essential, image::ImageFormat::Png).expect("decodes");
        let mut reader =
            image::ImageReader::with_format(DecoderInput::new(&png, ImageFormat::Png), image::ImageFormat::Png);
        reader.no_limits();
        assert_eq!(reader.decode().expect("decodes through the input"), decoded);
    }

    #[test]
    fn a_jpeg_is_shown_with_one_segment_of_each_metadata_kind_and_nothing_after_its_end() {
        let jpeg = encode_jpeg_rgb(&gradient_rgb(40, 30));
        let exif = exif_orientation_segment(6);
        let icc = jpeg_segment(0xE2, &[b"ICC_PROFILE\0\x01\x01".as_slice(), &[7; 60_000]].concat());
        let xmp = jpeg_segment(0xE1, b"http://ns.adobe.com/xap/1.0/\0<x/>");
        let adobe = jpeg_segment(0xEE, b"Adobe\0\x64\0\0\0\0\x01");
        let comment = jpeg_segment(0xFE, b"hello");
        let mut metadata = Vec::new();
        for segment in [&exif, &icc, &icc, &xmp, &adobe, &comment, &exif, &adobe] {
            metadata.extend_from_slice(segment);
        }
        let mut file = splice_after_soi(&jpeg, &metadata);
        file.extend_from_slice(b"appended after the end \xFF\xD8\xFF\xE2");
        let mut expected_metadata = exif.clone();
        expected_metadata.extend_from_slice(&adobe);
        // image's encoder writes a JFIF APP0 first: kept, and it is the only APP0.
        assert_eq!(shown(&file, ImageFormat::Jpeg), splice_after_soi(&jpeg, &expected_metadata));
        // The decoded pixels and the orientation are the same as from the file.
        let read = |input: DecoderInput<'_>| {
            let mut decoder =
                image::ImageReader::with_format(input, image::ImageFormat::Jpeg).into_decoder().expect("header");
            let orientation = crate::pipeline::read_orientation(&mut decoder);
            (orientation, image::DynamicImage::from_decoder(decoder).expect("decodes"))
        };
        let through_input = read(DecoderInput::new(&file, ImageFormat::Jpeg));
        let plain = read(DecoderInput::new(&splice_after_soi(&jpeg, &exif), ImageFormat::Jpeg));
        assert_eq!(through_input, plain);
        assert_eq!(through_input.0, image::metadata::Orientation::Rotate90);
    }

    #[test]
    fn progressive_scans_and_their_tables_pass_unchanged() {
        let mut jpeg = Vec::new();
        let mut encoder = jpeg_encoder::Encoder::new(&mut jpeg, 80);
        encoder.set_progressive(true);
        encoder.encode(gradient_rgb(64, 48).as_raw(), 64, 48, jpeg_encoder::ColorType::Rgb).expect("encodes");
        // Between scans too, metadata is skipped and everything else kept.
        let sos = jpeg.windows(2).rposition(|w| w == [0xFF, 0xDA]).expect("a last scan");
        let mut with_comment = jpeg[..sos].to_vec();
        with_comment.extend_from_slice(&jpeg_segment(0xFE, b"between scans"));
        with_comment.extend_from_slice(&jpeg[sos..]);
        assert_eq!(shown(&with_comment, ImageFormat::Jpeg), jpeg);
    }

    #[test]
    fn what_cannot_be_followed_is_shown_as_it_is() {
        let jpeg = encode_jpeg_rgb(&gradient_rgb(16, 16));
        let truncated = &jpeg[..jpeg.len() / 2];
        assert_eq!(shown(truncated, ImageFormat::Jpeg), truncated);
        let png = encode_png_rgb(&gradient_rgb(16, 16));
        let cut = &png[..png.len() - 5];
        assert_eq!(shown(cut, ImageFormat::Png), cut);
        assert_eq!(shown(&png[..5], ImageFormat::Png), &png[..5]);
        assert!(shown(&[], ImageFormat::Png).is_empty());
    }

    #[test]
    fn seeking_reads_the_same_bytes_again() {
        let jpeg = splice_after_soi(&encode_jpeg_rgb(&gradient_rgb(16, 16)), &jpeg_segment(0xFE, b"skipped"));
        let whole = shown(&jpeg, ImageFormat::Jpeg);
        let mut input = DecoderInput::new(&jpeg, ImageFormat::Jpeg);
        let mut first = [0u8; 30];
        input.read_exact(&mut first).expect("30 bytes");
        assert_eq!(input.stream_position().expect("position"), 30);
        assert_eq!(input.seek(SeekFrom::Start(4)).expect("back"), 4);
        let mut again = Vec::new();
        input.read_to_end(&mut again).expect("the rest");
        assert_eq!(again, whole[4..]);
        assert_eq!(input.seek(SeekFrom::Current(-10)).expect("back 10"), whole.len() as u64 - 10);
        assert!(input.seek(SeekFrom::End(0)).is_err());
    }
}
