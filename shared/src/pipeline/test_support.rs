//! Test helpers: small images encoded in memory, hand-built PNG chunks and JPEG segments, and
//! the path of the shared corpus of real images.

use std::io::Cursor;
use std::path::PathBuf;

use image::codecs::jpeg::JpegEncoder;
use image::codecs::png::PngEncoder;
use image::{DynamicImage, ImageEncoder, RgbImage};

/// A smooth RGB gradient (smooth, so JPEG round trips stay close to it).
pub fn gradient_rgb(width: u32, height: u32) -> RgbImage {
    RgbImage::from_fn(width, height, |x, y| {
        image::Rgb([(x * 255 / width.max(1)) as u8, (y * 255 / height.max(1)) as u8, 128])
    })
}

pub fn encode_jpeg(image: &DynamicImage) -> Vec<u8> {
    let mut out = Vec::new();
    JpegEncoder::new_with_quality(&mut out, 90)
        .write_image(image.as_bytes(), image.width(), image.height(), image.color().into())
        .expect("test JPEG encodes");
    out
}

pub fn encode_jpeg_rgb(image: &RgbImage) -> Vec<u8> {
    encode_jpeg(&DynamicImage::ImageRgb8(image.clone()))
}

pub fn encode_png(image: &DynamicImage) -> Vec<u8> {
    let mut out = Vec::new();
    PngEncoder::new(&mut out)
        .write_image(image.as_bytes(), image.width(), image.height(), image.color().into())
        .expect("test PNG encodes");
    out
}

pub fn encode_png_rgb(image: &RgbImage) -> Vec<u8> {
    encode_png(&DynamicImage::ImageRgb8(image.clone()))
}

/// Decodes with the image crate, guessing the format from the content.
pub fn decode(bytes: &[u8]) -> DynamicImage {
    image::ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .expect("in-memory read")
        .decode()
        .expect("output decodes")
}

/// The 13 data bytes of an IHDR chunk (no interlace).
pub fn ihdr_data(width: u32, height: u32, bit_depth: u8, color_type: u8) -> Vec<u8> {
    let mut data = Vec::new();
    data.extend_from_slice(&width.to_be_bytes());
    data.extend_from_slice(&height.to_be_bytes());
    data.extend_from_slice(&[bit_depth, color_type, 0, 0, 0]);
    data
}

/// A zlib stream of stored (uncompressed) deflate blocks: valid for PNG without a compressor.
pub fn zlib_stored(data: &[u8]) -> Vec<u8> {
    let mut out = vec![0x78, 0x01];
    let mut blocks = data.chunks(65_535).peekable();
    if blocks.peek().is_none() {
        out.extend_from_slice(&[1, 0, 0, 0xFF, 0xFF]);
    }
    while let Some(block) = blocks.next() {
        let last = u8::from(blocks.peek().is_none());
        let n = block.len() as u16;
        out.push(last);
        out.extend_from_slice(&n.to_le_bytes());
        out.extend_from_slice(&(!n).to_le_bytes());
        out.extend_from_slice(block);
    }
    let (mut a, mut b) = (1u32, 0u32);
    for &byte in data {
        a = (a + u32::from(byte)) % 65_521;
        b = (b + a) % 65_521;
    }
    out.extend_from_slice(&((b << 16) | a).to_be_bytes());
    out
}

/// A PNG file from chunks, with correct lengths and CRCs.
pub fn png_from_chunks(chunks: &[(&[u8; 4], &[u8])]) -> Vec<u8> {
    let mut out = crate::pipeline::PNG_SIGNATURE.to_vec();
    for (chunk_type, data) in chunks {
        out.extend_from_slice(&(data.len() as u32).to_be_bytes());
        let start = out.len();
        out.extend_from_slice(&chunk_type[..]);
        out.extend_from_slice(data);
        let crc = crc32fast::hash(&out[start..]);
        out.extend_from_slice(&crc.to_be_bytes());
    }
    out
}

/// A big-endian TIFF structure whose IFD0 holds only Orientation (tag 0x0112): the payload of
/// a PNG eXIf chunk, and of a JPEG APP1 segment after "Exif\0\0".
pub fn exif_orientation_tiff(orientation: u16) -> Vec<u8> {
    let mut tiff = Vec::new();
    tiff.extend_from_slice(b"MM\x00\x2A"); // big-endian TIFF header
    tiff.extend_from_slice(&8u32.to_be_bytes()); // IFD0 right after the header
    tiff.extend_from_slice(&1u16.to_be_bytes()); // one entry
    tiff.extend_from_slice(&0x0112u16.to_be_bytes()); // tag: Orientation
    tiff.extend_from_slice(&3u16.to_be_bytes()); // type: SHORT
    tiff.extend_from_slice(&1u32.to_be_bytes()); // count
    tiff.extend_from_slice(&orientation.to_be_bytes());
    tiff.extend_from_slice(&[0, 0]); // value padding to 4 bytes
    tiff.extend_from_slice(&0u32.to_be_bytes()); // no next IFD
    tiff
}

/// An APP1 Exif segment (marker included) holding only an Orientation tag.
pub fn exif_orientation_segment(orientation: u16) -> Vec<u8> {
    let mut payload = b"Exif\x00\x00".to_vec();
    payload.extend_from_slice(&exif_orientation_tiff(orientation));
    let mut segment = vec![0xFF, 0xE1];
    segment.extend_from_slice(&((payload.len() + 2) as u16).to_be_bytes());
    segment.extend_from_slice(&payload);
    segment
}

/// A JPEG marker segment (marker included) with this payload.
pub fn jpeg_segment(marker: u8, payload: &[u8]) -> Vec<u8> {
    let mut segment = vec![0xFF, marker];
    segment.extend_from_slice(&u16::try_from(payload.len() + 2).expect("a segment holds 64 KiB").to_be_bytes());
    segment.extend_from_slice(payload);
    segment
}

/// A progressive CMYK JPEG of `side`² (what Pillow makes of a CMYK image): imageapi's decoder
/// declines it, jpeg-decoder keeps all of its coefficients.
pub fn cmyk_progressive(side: u16) -> Vec<u8> {
    let pixels: Vec<u8> = (0..u32::from(side) * u32::from(side))
        .flat_map(|i| [(i % 251) as u8, (i % 241) as u8, (i % 239) as u8, 30])
        .collect();
    let mut out = Vec::new();
    let mut encoder = jpeg_encoder::Encoder::new(&mut out, 80);
    encoder.set_progressive(true);
    encoder.set_sampling_factor(jpeg_encoder::SamplingFactor::F_1_1);
    encoder.encode(&pixels, side, side, jpeg_encoder::ColorType::Cmyk).expect("encodes");
    out
}

/// Inserts a segment right after a JPEG's SOI.
pub fn splice_after_soi(jpeg: &[u8], segment: &[u8]) -> Vec<u8> {
    let mut out = jpeg[..2].to_vec();
    out.extend_from_slice(segment);
    out.extend_from_slice(&jpeg[2..]);
    out
}

/// Rewrites the dimensions in a JPEG's SOF0 segment (the data stays as encoded).
pub fn set_jpeg_sof_dimensions(jpeg: &mut [u8], width: u16, height: u16) {
    let mut pos = 2;
    loop {
        assert_eq!(jpeg[pos], 0xFF, "marker expected at {pos}");
        let marker = jpeg[pos + 1];
        let len = usize::from(u16::from_be_bytes([jpeg[pos + 2], jpeg[pos + 3]]));
        if marker == 0xC0 {
            // FF C0, length (2), precision (1), height (2), width (2)
            jpeg[pos + 5..pos + 7].copy_from_slice(&height.to_be_bytes());
            jpeg[pos + 7..pos + 9].copy_from_slice(&width.to_be_bytes());
            return;
        }
        assert_ne!(marker, 0xDA, "no SOF0 before the scan");
        pos += 2 + len;
    }
}

/// Marker bytes of a JPEG's segments, in order.
pub fn jpeg_markers(jpeg: &[u8]) -> Vec<u8> {
    let mut markers = Vec::new();
    crate::pipeline::structure::walk_jpeg(jpeg, |m| markers.push(m)).expect("whole JPEG");
    markers
}

/// Chunk types of a PNG, in order.
pub fn png_chunk_types(png: &[u8]) -> Vec<String> {
    let mut types = Vec::new();
    crate::pipeline::structure::walk_png(png, |t, _| types.push(String::from_utf8_lossy(&t).into_owned()))
        .expect("whole PNG");
    types
}

/// A file of the shared corpus of real images, if this checkout has it beside it.
///
/// From the `shared` crate of the workspace the corpus is `../../shared/corpus`; from a
/// standalone crate next to the workspace it is `../shared/corpus`.
pub fn corpus(name: &str) -> Option<PathBuf> {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    [manifest.join("../../shared/corpus").join(name), manifest.join("../shared/corpus").join(name)]
        .into_iter()
        .find(|path| path.is_file())
}

/// Mean absolute difference per channel between two images of the same size, as RGBA8.
pub fn mean_abs_diff(a: &DynamicImage, b: &DynamicImage) -> f64 {
    assert_eq!((a.width(), a.height()), (b.width(), b.height()));
    let (a, b) = (a.to_rgba8(), b.to_rgba8());
    let total: u64 = a.as_raw().iter().zip(b.as_raw()).map(|(&x, &y)| u64::from(x.abs_diff(y))).sum();
    total as f64 / a.as_raw().len() as f64
}

/// Structural similarity (Wang et al. 2004: Gaussian window, sigma 1.5, 11 taps, edges
/// clamped), per RGB channel and averaged, of two images of the same size; 1 is identical.
/// Unlike a mean difference it weighs what eyes notice: lost detail, blur, blocking.
pub fn ssim(a: &DynamicImage, b: &DynamicImage) -> f64 {
    assert_eq!((a.width(), a.height()), (b.width(), b.height()));
    let (width, height) = (a.width() as usize, a.height() as usize);
    let (a, b) = (a.to_rgb8(), b.to_rgb8());
    let weights: Vec<f64> = (-5i32..=5).map(|i| (-f64::from(i * i) / (2.0 * 1.5 * 1.5)).exp()).collect();
    let sum: f64 = weights.iter().sum();
    let weights: Vec<f64> = weights.iter().map(|w| w / sum).collect();
    let blur = |plane: &[f64]| -> Vec<f64> {
        let clamp = |v: isize, len: usize| v.clamp(0, len as isize - 1) as usize;
        let mut rows = vec![0.0; plane.len()];
        for y in 0..height {
            for x in 0..width {
                rows[y * width + x] =
                    (0..11).map(|i| weights[i] * plane[y * width + clamp(x as isize + i as isize - 5, width)]).sum();
            }
        }
        let mut out = vec![0.0; plane.len()];
        for y in 0..height {
            for x in 0..width {
                out[y * width + x] =
                    (0..11).map(|i| weights[i] * rows[clamp(y as isize + i as isize - 5, height) * width + x]).sum();
            }
        }
        out
    };
    let (c1, c2) = ((0.01f64 * 255.0).powi(2), (0.03f64 * 255.0).powi(2));
    let mut total = 0.0;
    for channel in 0..3 {
        let plane = |image: &image::RgbImage| -> Vec<f64> { image.pixels().map(|p| f64::from(p.0[channel])).collect() };
        let (x, y) = (plane(&a), plane(&b));
        let product = |p: &[f64], q: &[f64]| -> Vec<f64> { p.iter().zip(q).map(|(u, v)| u * v).collect() };
        let (mx, my) = (blur(&x), blur(&y));
        let (xx, yy, xy) = (blur(&product(&x, &x)), blur(&product(&y, &y)), blur(&product(&x, &y)));
        let mean: f64 = (0..x.len())
            .map(|i| {
                let (sx, sy, sxy) = (xx[i] - mx[i] * mx[i], yy[i] - my[i] * my[i], xy[i] - mx[i] * my[i]);
                ((2.0 * mx[i] * my[i] + c1) * (2.0 * sxy + c2))
                    / ((mx[i] * mx[i] + my[i] * my[i] + c1) * (sx + sy + c2))
            })
            .sum::<f64>()
            / x.len() as f64;
        total += mean;
    }
    total / 3.0
}

/// A zlib stream inflating to `len` zero bytes (at least 4), about 160 times smaller: one
/// block of fixed Huffman codes, a literal zero and then copies of 258 bytes at distance 1
/// (13 bits each). Made by hand, so a compression bomb needs no compressor.
pub fn zlib_zeros(len: u64) -> Vec<u8> {
    struct Bits {
        out: Vec<u8>,
        acc: u64,
        count: u32,
    }
    impl Bits {
        /// Appends `n` bits of `value`, least significant first (deflate's bit order).
        fn put(&mut self, value: u64, n: u32) {
            self.acc |= value << self.count;
            self.count += n;
            while self.count >= 8 {
                self.out.push(self.acc as u8);
                self.acc >>= 8;
                self.count -= 8;
            }
        }
        /// Appends a Huffman code, most significant bit first.
        fn code(&mut self, code: u64, n: u32) {
            let reversed = (0..n).fold(0, |r, i| r | (((code >> i) & 1) << (n - 1 - i)));
            self.put(reversed, n);
        }
    }
    assert!(len >= 4, "a copy is at least 3 bytes");
    let mut bits = Bits { out: vec![0x78, 0x01], acc: 0, count: 0 };
    bits.put(1, 1); // the last block
    bits.put(1, 2); // fixed Huffman codes
    bits.code(0x30, 8); // literal 0
    let mut left = len - 1;
    // A copy of length 3..=258 and distance 1: length code, extra bits, distance code 0.
    let copy = |bits: &mut Bits, n: u64| {
        const BASES: [(u64, u64, u32); 29] = [
            (257, 3, 0),
            (258, 4, 0),
            (259, 5, 0),
            (260, 6, 0),
            (261, 7, 0),
            (262, 8, 0),
            (263, 9, 0),
            (264, 10, 0),
            (265, 11, 1),
            (266, 13, 1),
            (267, 15, 1),
            (268, 17, 1),
            (269, 19, 2),
            (270, 23, 2),
            (271, 27, 2),
            (272, 31, 2),
            (273, 35, 3),
            (274, 43, 3),
            (275, 51, 3),
            (276, 59, 3),
            (277, 67, 4),
            (278, 83, 4),
            (279, 99, 4),
            (280, 115, 4),
            (281, 131, 5),
            (282, 163, 5),
            (283, 195, 5),
            (284, 227, 5),
            (285, 258, 0),
        ];
        let &(symbol, base, extra) = BASES.iter().rev().find(|(_, base, _)| *base <= n).expect("n >= 3");
        // Symbols 257..=279 have 7-bit codes from 0, 280..=287 8-bit codes from 0xC0.
        if symbol <= 279 {
            bits.code(symbol - 256, 7);
        } else {
            bits.code(0xC0 + symbol - 280, 8);
        }
        bits.put(n - base, extra);
        bits.code(0, 5);
    };
    while left > 0 {
        // Never leave 1 or 2 bytes over: a copy is at least 3.
        let n = if left > 258 && left < 261 { left - 3 } else { left.min(258) };
        copy(&mut bits, n);
        left -= n;
    }
    bits.code(0, 7); // end of block
    if bits.count > 0 {
        bits.put(0, 8 - bits.count);
    }
    let mut out = bits.out;
    // Adler-32 of `len` zeros: a stays 1, b adds 1 per byte.
    let b = (len % 65_521) as u32;
    out.extend_from_slice(&((b << 16) | 1).to_be_bytes());
    out
}
