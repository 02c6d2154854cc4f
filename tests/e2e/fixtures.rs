//! Test images, generated in memory: small JPEGs and PNGs made with the `image` crate, and
//! hand-crafted byte streams (a GIF, a PNG whose header lies about its size, an EXIF-rotated
//! JPEG). Plus the decoding helpers tests use to check what the server sends back.
//!
//! The `#[test]`s at the bottom check the hand-crafted fixtures themselves (no server needed),
//! so a failing API test points at the server, not at a broken fixture.

use std::io::{Cursor, Write};
use std::path::PathBuf;

use image::codecs::jpeg::JpegEncoder;
use image::{DynamicImage, ImageFormat, Rgb, RgbImage, Rgba, RgbaImage};

/// An RGB gradient; `seed` makes images of the same size differ.
pub fn rgb_gradient(width: u32, height: u32, seed: u8) -> RgbImage {
    RgbImage::from_fn(width, height, |x, y| {
        Rgb([((x * 255) / width.max(1)) as u8 ^ seed, ((y * 255) / height.max(1)) as u8, seed.wrapping_mul(37)])
    })
}

pub fn encode_jpeg(image: &RgbImage) -> Vec<u8> {
    let mut out = Vec::new();
    JpegEncoder::new_with_quality(&mut out, 90).encode_image(image).expect("encode a test JPEG");
    out
}

pub fn encode_png(image: &DynamicImage) -> Vec<u8> {
    let mut out = Cursor::new(Vec::new());
    image.write_to(&mut out, ImageFormat::Png).expect("encode a test PNG");
    out.into_inner()
}

/// A `width`x`height` baseline JPEG (a gradient).
pub fn jpeg(width: u32, height: u32) -> Vec<u8> {
    jpeg_seeded(width, height, 0)
}

pub fn jpeg_seeded(width: u32, height: u32, seed: u8) -> Vec<u8> {
    encode_jpeg(&rgb_gradient(width, height, seed))
}

/// A `width`x`height` RGB PNG (a gradient).
pub fn png(width: u32, height: u32) -> Vec<u8> {
    png_seeded(width, height, 0)
}

pub fn png_seeded(width: u32, height: u32, seed: u8) -> Vec<u8> {
    encode_png(&DynamicImage::ImageRgb8(rgb_gradient(width, height, seed)))
}

/// An RGBA PNG: the left half fully transparent, the right half opaque green.
pub fn rgba_png_left_half_transparent(width: u32, height: u32) -> Vec<u8> {
    let image =
        RgbaImage::from_fn(
            width,
            height,
            |x, _| {
                if x < width / 2 {
                    Rgba([0, 0, 0, 0])
                } else {
                    Rgba([0, 200, 0, 255])
                }
            },
        );
    encode_png(&DynamicImage::ImageRgba8(image))
}

/// A JPEG whose left half is red and right half blue.
pub fn red_left_blue_right_jpeg(width: u32, height: u32) -> Vec<u8> {
    encode_jpeg(&RgbImage::from_fn(
        width,
        height,
        |x, _| {
            if x < width / 2 {
                Rgb([255, 0, 0])
            } else {
                Rgb([0, 0, 255])
            }
        },
    ))
}

/// Deterministic pseudo-random bytes (xorshift64*).
pub fn pseudo_random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed | 1;
    (0..len)
        .map(|_| {
            state ^= state >> 12;
            state ^= state << 25;
            state ^= state >> 27;
            (state.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 56) as u8
        })
        .collect()
}

/// A high-entropy JPEG (noise), so its entropy-coded data is most of the file.
pub fn noisy_jpeg(width: u32, height: u32) -> Vec<u8> {
    let noise = pseudo_random_bytes((width * height * 3) as usize, 7);
    let image = RgbImage::from_raw(width, height, noise).expect("a noise buffer of the right size");
    encode_jpeg(&image)
}

/// Bytes that are neither PNG nor JPEG (nor anything else).
pub fn garbage(len: usize) -> Vec<u8> {
    let mut bytes = pseudo_random_bytes(len, 0xDEAD_BEEF);
    bytes[0] = b'Q'; // never a PNG (0x89) or JPEG (0xFF) signature
    bytes
}

/// A valid 1x1 GIF89a.
pub fn gif() -> Vec<u8> {
    vec![
        0x47, 0x49, 0x46, 0x38, 0x39, 0x61, // GIF89a
        0x01, 0x00, 0x01, 0x00, 0x80, 0x00, 0x00, // screen 1x1, global colour table of 2
        0xFF, 0xFF, 0xFF, 0x00, 0x00, 0x00, // the colour table
        0x2C, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x01, 0x00, 0x00, // image descriptor
        0x02, 0x02, 0x44, 0x01, 0x00, // LZW min code size 2, one sub-block, terminator
        0x3B, // trailer
    ]
}

fn png_chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
    out.extend_from_slice(&(data.len() as u32).to_be_bytes());
    out.extend_from_slice(kind);
    out.extend_from_slice(data);
    let mut crc = crc32fast::Hasher::new();
    crc.update(kind);
    crc.update(data);
    out.extend_from_slice(&crc.finalize().to_be_bytes());
}

/// A PNG whose IHDR (with a correct CRC) declares `width`x`height` RGB 8-bit, followed by a
/// tiny IDAT (a valid zlib stream, far too short for that size) and IEND. Only a server that
/// decodes pixels before checking the header would notice the data is short.
pub fn png_declaring(width: u32, height: u32) -> Vec<u8> {
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = Vec::new();
    ihdr.extend_from_slice(&width.to_be_bytes());
    ihdr.extend_from_slice(&height.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]); // depth 8, RGB, deflate, adaptive, no interlace
    png_chunk(&mut out, b"IHDR", &ihdr);
    // zlib: header 78 01, one final stored block of 64 zero bytes, Adler-32 of those bytes.
    let mut idat = vec![0x78, 0x01, 0x01, 64, 0, !64, 0xFF];
    idat.extend_from_slice(&[0u8; 64]);
    idat.extend_from_slice(&0x0040_0001u32.to_be_bytes());
    png_chunk(&mut out, b"IDAT", &idat);
    png_chunk(&mut out, b"IEND", &[]);
    out
}

/// A 64x64 RGB PNG with `extra` chunks right after its IHDR (metadata an attacker adds).
pub fn png_with_chunks(extra: &[(&[u8; 4], &[u8])]) -> Vec<u8> {
    let plain = png(64, 64);
    // The signature and the IHDR chunk (8 + 4 + 4 + 13 + 4 bytes).
    let (head, rest) = plain.split_at(33);
    let mut out = head.to_vec();
    for (kind, data) in extra {
        png_chunk(&mut out, kind, data);
    }
    out.extend_from_slice(rest);
    out
}

/// Writes a PNG row by row, so that test images far larger in pixels than in bytes cost the
/// test no more than a row: `setup` chooses colour, depth, compression and filter.
pub fn streamed_png(
    width: u32,
    height: u32,
    setup: impl FnOnce(&mut png::Encoder<'static, SharedBuffer>),
    row: &[u8],
) -> Vec<u8> {
    let out = SharedBuffer::default();
    let mut encoder = png::Encoder::new(out.clone(), width, height);
    setup(&mut encoder);
    let mut writer = encoder.write_header().expect("header").into_stream_writer().expect("stream");
    for _ in 0..height {
        writer.write_all(row).expect("row");
    }
    writer.finish().expect("finish");
    let bytes = out.0.lock().expect("buffer").clone();
    bytes
}

/// An output buffer for png's stream writer, which wants to own its output.
#[derive(Clone, Default)]
pub struct SharedBuffer(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for SharedBuffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("buffer").extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A zlib stream that inflates to about `mib` MiB of zeros, 160 times smaller: one block of
/// fixed Huffman codes, a literal zero, then copies of 258 bytes from one byte back (13 bits
/// each). Written by hand: png's encoder, compiled at the tests' opt-level, took 20 s a GiB.
pub fn zlib_zeros(mib: u64) -> Vec<u8> {
    // Deflate packs bits from the least significant; Huffman codes go most significant first.
    let mut bits: Vec<bool> = vec![true, true, false]; // the last block; fixed codes (01)
    let code = |bits: &mut Vec<bool>, value: u32, len: u32| bits.extend((0..len).rev().map(|i| value >> i & 1 == 1));
    code(&mut bits, 0x30, 8); // literal 0
                              // Eight copies are 104 bits, a whole number of bytes: past the first partial bytes the
                              // stream repeats every 13 bytes, so a long run of copies is that period repeated.
    for _ in 0..16 {
        code(&mut bits, 0xC5, 8); // length 258 (symbol 285)
        code(&mut bits, 0, 5); // distance 1
    }
    code(&mut bits, 0, 7); // end of block
    let mut short: Vec<u8> =
        bits.chunks(8).map(|byte| byte.iter().rev().fold(0, |b, &bit| b << 1 | u8::from(bit))).collect();
    let periods = (mib * 1024 * 1024 / 258 / 8).saturating_sub(2);
    let period = short[2..15].to_vec();
    let mut out = vec![0x78, 0x01];
    out.extend_from_slice(&short[..2]);
    for _ in 0..periods {
        out.extend_from_slice(&period);
    }
    out.append(&mut short.split_off(2));
    // Adler-32 of that many zeros: a stays 1, b adds 1 a byte.
    let zeros = 1 + 258 * (16 + 8 * periods);
    out.extend_from_slice(&(((zeros % 65_521) as u32) << 16 | 1).to_be_bytes());
    out
}

/// A `side`x`side` progressive CMYK JPEG with every block flat, written by hand (a DC scan of
/// the four components, one 1-bit code a block, and an AC scan each of end-of-band runs), as
/// small as Pillow's CMYK files. imageapi's own decoder declines CMYK; jpeg-decoder keeps every
/// coefficient of a progressive file, whatever they hold. At least 1024 px a side (its one
/// end-of-band code covers runs of 16384 blocks and more).
pub fn cmyk_progressive_jpeg(side: u16) -> Vec<u8> {
    assert!(side >= 1024, "runs of at least 16384 blocks");
    let segment = |marker: u8, payload: &[u8]| {
        let mut out = vec![0xFF, marker];
        out.extend_from_slice(&(payload.len() as u16 + 2).to_be_bytes());
        out.extend_from_slice(payload);
        out
    };
    let blocks = u32::from(side).div_ceil(8).pow(2);
    let one_code = [1u8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]; // one code, "0"
    let mut out = vec![0xFF, 0xD8];
    out.extend(segment(0xEE, b"Adobe\0\x64\0\0\0\0\0")); // CMYK, no colour transform
    out.extend(segment(0xDB, &[[0u8].as_slice(), &[1; 64]].concat()));
    let mut frame = vec![8];
    frame.extend_from_slice(&side.to_be_bytes());
    frame.extend_from_slice(&side.to_be_bytes());
    frame.push(4);
    for id in 1..=4 {
        frame.extend_from_slice(&[id, 0x11, 0]);
    }
    out.extend(segment(0xC2, &frame));
    out.extend(segment(0xC4, &[[0x00].as_slice(), &one_code, &[0x00]].concat())); // DC: difference 0
    out.extend(segment(0xC4, &[[0x10].as_slice(), &one_code, &[0xE0]].concat())); // AC: EOB run 2^14 + 14 bits
                                                                                  // DC scan, four components interleaved: four "0" codes an MCU.
    out.extend(segment(0xDA, &[4, 1, 0, 2, 0, 3, 0, 4, 0, 0, 0, 0]));
    out.extend(std::iter::repeat_n(0u8, (blocks as usize * 4).div_ceil(8)));
    for id in 1..=4 {
        out.extend(segment(0xDA, &[1, id, 0, 1, 63, 0]));
        // End-of-band runs of 16384..=32767 blocks: "0", then the run less 16384 in 14 bits.
        let mut bits: Vec<bool> = Vec::new();
        let mut left = blocks;
        while left > 0 {
            let run = if left <= 32767 {
                left
            } else if left - 32767 >= 16384 {
                32767
            } else {
                left - 16384
            };
            bits.push(false);
            bits.extend((0..14).rev().map(|i| (run - 16384) >> i & 1 == 1));
            left -= run;
        }
        bits.resize(bits.len().div_ceil(8) * 8, true);
        for byte in bits.chunks(8).map(|b| b.iter().fold(0u8, |acc, &bit| acc << 1 | u8::from(bit))) {
            out.push(byte);
            if byte == 0xFF {
                out.push(0);
            }
        }
    }
    out.extend_from_slice(&[0xFF, 0xD9]);
    out
}

/// The JPEG with an APP1 Exif segment (big-endian TIFF, IFD0 holding only Orientation)
/// spliced in right after SOI.
pub fn with_exif_orientation(jpeg: &[u8], orientation: u16) -> Vec<u8> {
    assert_eq!(&jpeg[..2], &[0xFF, 0xD8], "expected a JPEG starting with SOI");
    let mut payload = b"Exif\0\0".to_vec();
    payload.extend_from_slice(b"MM\x00\x2A"); // big-endian TIFF
    payload.extend_from_slice(&8u32.to_be_bytes()); // IFD0 right after the header
    payload.extend_from_slice(&1u16.to_be_bytes()); // one entry
    payload.extend_from_slice(&0x0112u16.to_be_bytes()); // Orientation
    payload.extend_from_slice(&3u16.to_be_bytes()); // SHORT
    payload.extend_from_slice(&1u32.to_be_bytes()); // count 1
    payload.extend_from_slice(&orientation.to_be_bytes());
    payload.extend_from_slice(&[0, 0]); // value padding
    payload.extend_from_slice(&0u32.to_be_bytes()); // no next IFD
    let segment_len = u16::try_from(payload.len() + 2).expect("a small segment");

    let mut out = vec![0xFF, 0xD8, 0xFF, 0xE1];
    out.extend_from_slice(&segment_len.to_be_bytes());
    out.extend_from_slice(&payload);
    out.extend_from_slice(&jpeg[2..]);
    out
}

/// Decodes bytes the server sent; fails with a clear message if they are no PNG/JPEG.
#[track_caller]
pub fn decode(bytes: &[u8]) -> (ImageFormat, DynamicImage) {
    let format = image::guess_format(bytes).unwrap_or_else(|error| {
        panic!(
            "expected image bytes, got {} bytes starting {:02x?}: {error}",
            bytes.len(),
            &bytes[..bytes.len().min(16)]
        )
    });
    let image = image::load_from_memory_with_format(bytes, format)
        .unwrap_or_else(|error| panic!("expected a decodable {format:?}: {error}"));
    (format, image)
}

/// Decodes and asserts format and exact dimensions; returns the image.
#[track_caller]
pub fn assert_image(bytes: &[u8], format: ImageFormat, width: u32, height: u32) -> DynamicImage {
    let (actual_format, image) = decode(bytes);
    assert_eq!(actual_format, format, "expected a {format:?} thumbnail");
    assert_eq!((image.width(), image.height()), (width, height), "expected a {width}x{height} {format:?}");
    image
}

/// The thumbnail size the contract promises for a `height`-px thumbnail of a
/// `source_width`x`source_height` (display) image: the height, the width from the aspect
/// ratio rounded (at least 1 px); a source no taller than `height` is not enlarged.
pub fn expected_thumbnail_size(source_width: u32, source_height: u32, height: u32) -> (u32, u32) {
    if source_height <= height {
        return (source_width, source_height);
    }
    let width = (f64::from(source_width) * f64::from(height) / f64::from(source_height)).round();
    ((width as u32).max(1), height)
}

/// A file of the shared corpus (`/work/shared/corpus` next to the workspace), if present.
pub fn corpus(name: &str) -> Option<Vec<u8>> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/corpus").join(name);
    match std::fs::read(&path) {
        Ok(bytes) => Some(bytes),
        Err(error) => {
            println!("skipping: corpus file {} unavailable: {error}", path.display());
            None
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Checks of the fixtures themselves
// ---------------------------------------------------------------------------------------------

#[test]
fn the_hand_made_zlib_stream_inflates_to_zeros_of_the_length_asked() {
    let mut profile = b"zeros\0\0".to_vec();
    profile.extend_from_slice(&zlib_zeros(3));
    let png = png_with_chunks(&[(b"iCCP", &profile)]);
    let reader = png::Decoder::new(Cursor::new(png)).read_info().expect("a valid PNG");
    let icc = reader.info().icc_profile.as_ref().expect("the profile inflated");
    assert!(icc.iter().all(|&b| b == 0));
    assert!(icc.len().abs_diff(3 * 1024 * 1024) < 8 * 258, "{} bytes", icc.len());
}

#[test]
fn the_hand_made_cmyk_jpeg_is_a_progressive_four_component_image_that_decodes() {
    let jpeg = cmyk_progressive_jpeg(1100);
    let sof = jpeg.windows(2).position(|w| w == [0xFF, 0xC2]).expect("a progressive frame");
    assert_eq!(jpeg[sof + 9], 4, "four components");
    let (format, image) = decode(&jpeg);
    assert_eq!((format, image.width(), image.height()), (ImageFormat::Jpeg, 1100, 1100));
}

#[test]
fn crafted_png_header_declares_the_requested_size() {
    let bytes = png_declaring(60_000, 60_000);
    let dimensions = image::ImageReader::with_format(Cursor::new(bytes), ImageFormat::Png)
        .into_dimensions()
        .expect("the crafted PNG has a valid header (signature, IHDR, CRC)");
    assert_eq!(dimensions, (60_000, 60_000));
}

#[test]
fn crafted_exif_jpeg_reports_orientation_6_and_still_decodes() {
    use image::ImageDecoder;
    let bytes = with_exif_orientation(&red_left_blue_right_jpeg(300, 200), 6);
    let mut decoder =
        image::codecs::jpeg::JpegDecoder::new(Cursor::new(&bytes)).expect("the spliced JPEG has a valid header");
    assert_eq!(decoder.orientation().expect("readable EXIF"), image::metadata::Orientation::Rotate90);
    let (format, image) = decode(&bytes);
    assert_eq!(format, ImageFormat::Jpeg);
    assert_eq!((image.width(), image.height()), (300, 200));
}

#[test]
fn crafted_gif_is_recognised_as_gif() {
    assert_eq!(image::guess_format(&gif()).ok(), Some(ImageFormat::Gif));
}

#[test]
fn garbage_is_not_recognised_as_an_image() {
    assert!(image::guess_format(&garbage(4096)).is_err());
}

#[test]
fn truncated_noisy_jpeg_keeps_its_header_but_loses_its_end() {
    let bytes = noisy_jpeg(256, 256);
    assert!(bytes.len() > 50_000, "noise should not compress well");
    let cut = &bytes[..bytes.len() * 6 / 10];
    assert!(image::ImageReader::with_format(Cursor::new(cut), ImageFormat::Jpeg).into_dimensions().is_ok());
    assert_ne!(&cut[cut.len() - 2..], &[0xFF, 0xD9], "no EOI marker left");
}

#[test]
fn expected_sizes_follow_the_contract() {
    assert_eq!(expected_thumbnail_size(6028, 3391, 200), (356, 200));
    assert_eq!(expected_thumbnail_size(6028, 3391, 400), (711, 400));
    assert_eq!(expected_thumbnail_size(200, 300, 200), (133, 200));
    assert_eq!(expected_thumbnail_size(1, 1000, 200), (1, 200));
    assert_eq!(expected_thumbnail_size(90, 60, 200), (90, 60));
}

/// The same picture as other bytes: a JPEG comment segment after SOI, or a PNG `tEXt` chunk
/// after IHDR, carrying `n`. Uploads of the same bytes by one user are one image (idempotent
/// uploads); tests that want many images of one file upload `distinct(file, n)`.
pub fn distinct(bytes: &[u8], n: u64) -> Vec<u8> {
    let text = format!("imageapi-e2e {n}").into_bytes();
    if bytes.starts_with(&[0xff, 0xd8]) {
        let mut out = vec![0xff, 0xd8, 0xff, 0xfe];
        out.extend_from_slice(&u16::try_from(text.len() + 2).expect("short").to_be_bytes());
        out.extend_from_slice(&text);
        out.extend_from_slice(&bytes[2..]);
        return out;
    }
    assert!(bytes.starts_with(b"\x89PNG\r\n\x1a\n"), "distinct() takes a JPEG or a PNG");
    let mut data = b"comment\0".to_vec();
    data.extend_from_slice(&text);
    let mut chunk = Vec::new();
    png_chunk(&mut chunk, b"tEXt", &data);
    // Signature (8) and IHDR (4 + 4 + 13 + 4) come first.
    [&bytes[..33], &chunk[..], &bytes[33..]].concat()
}
