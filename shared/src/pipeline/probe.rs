//! Upload-time validation: is this a whole PNG or JPEG within the limits, and what are its
//! display dimensions? Reads headers only and never decodes pixels, so it costs milliseconds
//! even for the largest accepted file, and memory stays at the size of the upload.

use super::plan::{Header, Plan};
use super::{check_exif_size, structure, swaps_dimensions, ImageFormat, Limits};

/// What an accepted upload is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Probe {
    pub format: ImageFormat,
    /// Display width: after EXIF orientation (orientations 5-8 swap width and height).
    pub width: u32,
    /// Display height: after EXIF orientation.
    pub height: u32,
}

/// Why an upload is refused. Each variant maps to one HTTP status.
#[derive(thiserror::Error, Debug)]
pub enum ProbeError {
    /// Not a PNG or JPEG by its content, or one using a feature we cannot decode (415).
    #[error("{0}")]
    Unsupported(String),
    /// PNG/JPEG by its magic bytes, but the header is unreadable or the file incomplete (400).
    #[error("{0}")]
    Corrupt(String),
    /// Over the byte, pixel or side limit (413).
    #[error("{0}")]
    TooLarge(String),
}

/// Validates an upload cheaply.
///
/// Order: byte size (before anything else, so an oversized body costs nothing), format by magic
/// bytes, a JPEG frame type no decoder here reads (415 rather than an unreadable header),
/// header via the image crate (dimensions and orientation, through a [`DecoderInput`] that
/// shows it no metadata but the orientation), side and pixel limits (so a header declaring
/// 60000x60000 is `TooLarge` before any allocation), structural completeness (with the scan
/// count of a JPEG and the EXIF size of a PNG against their limits), and the memory the
/// cheapest render of it would need against the ceiling: a file no thumbnail can be made of
/// within it is refused now rather than failing in a worker.
///
/// [`DecoderInput`]: super::decoder_input::DecoderInput
pub fn probe(bytes: &[u8], limits: &Limits) -> Result<Probe, ProbeError> {
    limits.check_bytes(bytes.len()).map_err(ProbeError::TooLarge)?;
    let format = ImageFormat::detect(bytes).ok_or_else(|| ProbeError::Unsupported(unsupported_message(bytes)))?;
    if format == ImageFormat::Jpeg {
        if let Some(why) = structure::jpeg_unsupported(bytes) {
            return Err(ProbeError::Unsupported(format!(
                "unsupported JPEG variant: {why}; only 8-bit baseline and progressive JPEGs are accepted"
            )));
        }
    }

    let header = Header::read(bytes, format).map_err(|err| header_error(format, err))?;
    let (width, height) = (header.width, header.height);
    limits.check_dimensions(width, height).map_err(ProbeError::TooLarge)?;
    if width == 0 || height == 0 {
        return Err(ProbeError::Corrupt(format!(
            "{} header declares an empty image ({width}x{height})",
            format.as_str().to_uppercase()
        )));
    }

    match format {
        ImageFormat::Jpeg => {
            let mut scans = 0u32;
            structure::walk_jpeg(bytes, |marker| scans += u32::from(marker == 0xDA)).map_err(ProbeError::Corrupt)?;
            limits.check_scans(scans).map_err(ProbeError::TooLarge)?;
        }
        ImageFormat::Png => {
            let exif = structure::check_png(bytes).map_err(ProbeError::Corrupt)?;
            check_exif_size(exif).map_err(ProbeError::TooLarge)?;
        }
    }

    // The smallest thumbnail: what the file costs whatever the tier (a tier with large heights
    // may cost more; such a job fails in the worker with the reason).
    let cheapest = Plan::new(bytes, format, &header, &[1]);
    limits.check_decode_memory(cheapest.memory, &cheapest.describe()).map_err(ProbeError::TooLarge)?;

    let (width, height) = if swaps_dimensions(header.orientation) { (height, width) } else { (width, height) };
    Ok(Probe { format, width, height })
}

fn header_error(format: ImageFormat, err: image::ImageError) -> ProbeError {
    let name = format.as_str().to_uppercase();
    match err {
        image::ImageError::Limits(err) => ProbeError::TooLarge(format!("{name} header exceeds a decoder limit: {err}")),
        image::ImageError::Unsupported(err) => ProbeError::Unsupported(format!("unsupported {name} variant: {err}")),
        err => ProbeError::Corrupt(format!("cannot read the {name} header: {err}")),
    }
}

/// Names what an unsupported upload looks like, when it is a common format, so the user
/// learns why it was refused.
fn unsupported_message(bytes: &[u8]) -> String {
    const KNOWN: &[(&[u8], &str)] = &[
        (b"GIF87a", "GIF"),
        (b"GIF89a", "GIF"),
        (b"BM", "BMP"),
        (b"II*\x00", "TIFF"),
        (b"MM\x00*", "TIFF"),
        (b"%PDF", "PDF"),
        (b"\x00\x00\x01\x00", "ICO"),
    ];
    let detected = if bytes.is_empty() {
        Some("an empty file")
    } else if bytes.starts_with(b"RIFF") && bytes.get(8..12) == Some(b"WEBP") {
        Some("WebP")
    } else if bytes.get(4..8) == Some(b"ftyp") {
        Some("HEIF/AVIF")
    } else {
        KNOWN.iter().find(|(magic, _)| bytes.starts_with(magic)).map(|(_, name)| *name)
    };
    match detected {
        Some(what) => format!("unsupported image format ({what}); only PNG and JPEG are accepted"),
        None => "unrecognised file content; only PNG and JPEG images are accepted".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::test_support::*;
    use image::{DynamicImage, GrayImage, RgbaImage};

    fn probe_default(bytes: &[u8]) -> Result<Probe, ProbeError> {
        probe(bytes, &Limits::default())
    }

    #[test]
    fn a_png_made_in_memory_is_accepted_with_its_dimensions() {
        let png = encode_png_rgb(&gradient_rgb(64, 48));
        let probed = probe_default(&png).expect("valid PNG");
        assert_eq!(probed, Probe { format: ImageFormat::Png, width: 64, height: 48 });
    }

    #[test]
    fn a_jpeg_made_in_memory_is_accepted_with_its_dimensions() {
        let jpeg = encode_jpeg_rgb(&gradient_rgb(64, 48));
        let probed = probe_default(&jpeg).expect("valid JPEG");
        assert_eq!(probed, Probe { format: ImageFormat::Jpeg, width: 64, height: 48 });
    }

    #[test]
    fn rgba_and_grayscale_images_are_accepted() {
        let rgba = encode_png(&DynamicImage::ImageRgba8(RgbaImage::new(5, 7)));
        assert_eq!(probe_default(&rgba).map(|p| (p.width, p.height)).ok(), Some((5, 7)));
        let gray = encode_jpeg(&DynamicImage::ImageLuma8(GrayImage::new(9, 3)));
        assert_eq!(probe_default(&gray).map(|p| (p.width, p.height)).ok(), Some((9, 3)));
    }

    #[test]
    fn a_gif_is_unsupported_and_the_message_says_gif() {
        let gif = b"GIF89a\x01\x00\x01\x00\x80\x00\x00\xff\xff\xff\x00\x00\x00!\xf9\x04\x00\x00\x00\x00\x00,\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;";
        match probe_default(gif) {
            Err(ProbeError::Unsupported(msg)) => assert!(msg.contains("GIF"), "{msg}"),
            other => panic!("expected Unsupported, got {other:?}"),
        }
    }

    #[test]
    fn a_webp_header_is_unsupported() {
        let webp = b"RIFF\x24\x00\x00\x00WEBPVP8 \x18\x00\x00\x00";
        assert!(matches!(probe_default(webp), Err(ProbeError::Unsupported(msg)) if msg.contains("WebP")));
    }

    #[test]
    fn random_garbage_is_unsupported() {
        // A fixed pseudo-random sequence (xorshift), so the test is reproducible.
        let mut state = 0x2545_F491_4F6C_DD1Du64;
        let garbage: Vec<u8> = (0..4096)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                (state >> 24) as u8
            })
            .collect();
        assert!(ImageFormat::detect(&garbage).is_none(), "garbage must not look like an image");
        assert!(matches!(probe_default(&garbage), Err(ProbeError::Unsupported(_))));
    }

    #[test]
    fn an_empty_upload_is_unsupported() {
        assert!(matches!(probe_default(&[]), Err(ProbeError::Unsupported(msg)) if msg.contains("empty")));
    }

    #[test]
    fn a_jpeg_truncated_at_half_is_corrupt() {
        let jpeg = encode_jpeg_rgb(&gradient_rgb(256, 256));
        let half = &jpeg[..jpeg.len() / 2];
        assert!(matches!(probe_default(half), Err(ProbeError::Corrupt(_))), "{:?}", probe_default(half));
    }

    #[test]
    fn a_jpeg_truncated_inside_its_header_is_corrupt() {
        let jpeg = encode_jpeg_rgb(&gradient_rgb(64, 64));
        for cut in [3, 4, 20, 100] {
            assert!(
                matches!(probe_default(&jpeg[..cut]), Err(ProbeError::Corrupt(_))),
                "cut at {cut}: {:?}",
                probe_default(&jpeg[..cut])
            );
        }
    }

    #[test]
    fn a_truncated_png_is_corrupt() {
        let png = encode_png_rgb(&gradient_rgb(256, 256));
        for cut in [png.len() / 2, png.len() - 1, 40] {
            assert!(
                matches!(probe_default(&png[..cut]), Err(ProbeError::Corrupt(_))),
                "cut at {cut}: {:?}",
                probe_default(&png[..cut])
            );
        }
    }

    #[test]
    fn a_png_with_a_corrupted_crc_is_corrupt() {
        let mut png = encode_png_rgb(&gradient_rgb(32, 32));
        // The IEND chunk is the last 12 bytes; its CRC is the last 4.
        let last = png.len() - 1;
        png[last] ^= 0x55;
        match probe_default(&png) {
            Err(ProbeError::Corrupt(msg)) => assert!(msg.contains("CRC"), "{msg}"),
            other => panic!("expected Corrupt, got {other:?}"),
        }
    }

    #[test]
    fn a_png_with_corrupted_pixel_data_bytes_is_corrupt() {
        let mut png = encode_png_rgb(&gradient_rgb(32, 32));
        // Flip a byte inside the IDAT data (after signature 8 + IHDR 25 + IDAT head 8).
        png[8 + 25 + 8 + 3] ^= 0xFF;
        assert!(matches!(probe_default(&png), Err(ProbeError::Corrupt(_))));
    }

    #[test]
    fn a_png_header_declaring_60000_by_60000_is_too_large() {
        let png = png_from_chunks(&[
            (b"IHDR", &ihdr_data(60_000, 60_000, 8, 2)),
            (b"IDAT", &zlib_stored(&[0u8; 16])),
            (b"IEND", &[]),
        ]);
        match probe_default(&png) {
            Err(ProbeError::TooLarge(msg)) => {
                assert_eq!(msg, "image is 60000x60000 px; the limit is 30000 px per side")
            }
            other => panic!("expected TooLarge, got {other:?}"),
        }
    }

    #[test]
    fn a_jpeg_frame_header_declaring_60000_by_60000_is_too_large() {
        let mut jpeg = encode_jpeg_rgb(&gradient_rgb(16, 16));
        set_jpeg_sof_dimensions(&mut jpeg, 60_000, 60_000);
        match probe_default(&jpeg) {
            Err(ProbeError::TooLarge(msg)) => {
                assert_eq!(msg, "image is 60000x60000 px; the limit is 30000 px per side")
            }
            other => panic!("expected TooLarge, got {other:?}"),
        }
    }

    #[test]
    fn a_2000_by_2000_image_over_a_one_megapixel_limit_is_too_large() {
        let png = encode_png(&DynamicImage::ImageLuma8(GrayImage::new(2000, 2000)));
        let limits = Limits { max_pixels: 1_000_000, ..Limits::default() };
        match probe(&png, &limits) {
            Err(ProbeError::TooLarge(msg)) => {
                assert!(msg.contains("the limit is 1000000 pixels"), "{msg}")
            }
            other => panic!("expected TooLarge, got {other:?}"),
        }
        // The same image is fine under the default limits.
        assert!(probe_default(&png).is_ok());
    }

    #[test]
    fn a_file_over_the_byte_limit_is_too_large() {
        let jpeg = encode_jpeg_rgb(&gradient_rgb(64, 64));
        let limits = Limits { max_bytes: jpeg.len() as u64 - 1, ..Limits::default() };
        assert!(matches!(probe(&jpeg, &limits), Err(ProbeError::TooLarge(msg)) if msg.contains("bytes")));
        let exact = Limits { max_bytes: jpeg.len() as u64, ..Limits::default() };
        assert!(probe(&jpeg, &exact).is_ok());
    }

    #[test]
    fn a_jpeg_with_exif_orientation_6_reports_swapped_display_dimensions() {
        let jpeg = encode_jpeg_rgb(&gradient_rgb(300, 200));
        let rotated = splice_after_soi(&jpeg, &exif_orientation_segment(6));
        let probed = probe_default(&rotated).expect("valid JPEG with EXIF");
        assert_eq!((probed.width, probed.height), (200, 300));
        // Orientation 3 (180 degrees) keeps the dimensions.
        let upside_down = splice_after_soi(&jpeg, &exif_orientation_segment(3));
        let probed = probe_default(&upside_down).expect("valid JPEG with EXIF");
        assert_eq!((probed.width, probed.height), (300, 200));
    }

    #[test]
    fn a_jpeg_with_garbage_exif_is_accepted_as_stored() {
        let jpeg = encode_jpeg_rgb(&gradient_rgb(30, 20));
        let mut segment = vec![0xFF, 0xE1, 0x00, 0x0A];
        segment.extend_from_slice(b"Exif\x00\x00MM");
        let odd = splice_after_soi(&jpeg, &segment);
        let probed = probe_default(&odd).expect("still a valid JPEG");
        assert_eq!((probed.width, probed.height), (30, 20));
    }

    #[test]
    fn png_magic_with_a_broken_header_is_corrupt_not_unsupported() {
        let mut bytes = crate::pipeline::PNG_SIGNATURE.to_vec();
        bytes.extend_from_slice(b"\x00\x00\x00\x0dIHDRshort");
        assert!(matches!(probe_default(&bytes), Err(ProbeError::Corrupt(_))));
        let jpeg_magic_only = [0xFF, 0xD8, 0xFF];
        assert!(matches!(probe_default(&jpeg_magic_only), Err(ProbeError::Corrupt(_))));
    }

    #[test]
    fn probing_reads_structure_not_pixels() {
        // Scramble the middle of the entropy-coded data without touching any marker: the
        // structure stays intact, so probe accepts it — proof that it does not decode pixels
        // (a full decode is the thumbnail job's business, off the request path).
        let img = image::RgbImage::from_fn(64, 48, |x, y| image::Rgb([(x * 4) as u8, (y * 5) as u8, 90]));
        let mut jpeg = encode_jpeg_rgb(&img);
        let (from, to) = (jpeg.len() / 2, jpeg.len() / 2 + 64);
        for i in from..to {
            let scrambled = jpeg[i] ^ 0x55;
            if jpeg[i] != 0xFF && scrambled != 0xFF && jpeg[i - 1] != 0xFF {
                jpeg[i] = scrambled;
            }
        }
        let probed = probe_default(&jpeg).expect("structure is intact");
        assert_eq!((probed.format, probed.width, probed.height), (ImageFormat::Jpeg, 64, 48));
    }
}
