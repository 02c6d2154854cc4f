//! The baseline decoder against `jpeg-decoder` (the reference for scaled decoding), in one
//! part and in several, on generated files of every sampling and on the corpus.

use std::io::Cursor;
use std::path::PathBuf;

use image::DynamicImage;
use jpeg_encoder::{ColorType, Encoder, SamplingFactor};

use super::*;

/// Photo-like content with enough fine noise to make a large file.
fn textured(width: u32, height: u32) -> Vec<u8> {
    let mut state = 0x2545_F491_4F6C_DD1Du64;
    let mut rgb = Vec::with_capacity((width * height * 3) as usize);
    for y in 0..height {
        for x in 0..width {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let noise = (state % 48) as i32 - 24;
            let wave = ((x as f32 * 0.05).sin() * (y as f32 * 0.03).cos() * 60.0) as i32;
            rgb.push((x * 255 / width) as i32 + noise + wave);
            rgb.push((y * 255 / height) as i32 - noise);
            rgb.push(128 + wave - noise / 2);
        }
    }
    rgb.into_iter().map(|v| v.clamp(0, 255) as u8).collect()
}

fn encode(pixels: &[u8], width: u32, height: u32, color: ColorType, sampling: SamplingFactor, restart: u16) -> Vec<u8> {
    let mut bytes = Vec::new();
    let mut encoder = Encoder::new(&mut bytes, 90);
    encoder.set_sampling_factor(sampling);
    if restart > 0 {
        encoder.set_restart_interval(restart);
    }
    encoder.encode(pixels, width as u16, height as u16, color).expect("encode");
    bytes
}

/// `jpeg-decoder`'s decode at the same reduced size.
fn reference(jpeg: &[u8], eighths: u32) -> DynamicImage {
    let mut decoder = jpeg_decoder::Decoder::new(Cursor::new(jpeg));
    decoder.read_info().expect("headers");
    let info = decoder.info().expect("info");
    let (w, h) = (u32::from(info.width), u32::from(info.height));
    let size = ((w * eighths).div_ceil(8) as u16, (h * eighths).div_ceil(8) as u16);
    let got = decoder.scale(size.0, size.1).expect("scale");
    assert_eq!(got, size, "jpeg-decoder chose the same size");
    let pixels = decoder.decode().expect("decode");
    let (w, h) = (u32::from(got.0), u32::from(got.1));
    match info.pixel_format {
        jpeg_decoder::PixelFormat::L8 => {
            DynamicImage::ImageLuma8(image::GrayImage::from_raw(w, h, pixels).expect("size"))
        }
        _ => DynamicImage::ImageRgb8(image::RgbImage::from_raw(w, h, pixels).expect("size")),
    }
}

fn ours(jpeg: &[u8], eighths: u32, threads: usize) -> DynamicImage {
    ScaledJpeg::read(jpeg).expect("a baseline file").decode(eighths, threads).expect("decoded")
}

#[test]
fn every_sampling_and_scale_matches_jpeg_decoder() {
    // Odd sizes, so the padding blocks of the last MCU row and column are cropped.
    let (width, height) = (517, 389);
    let rgb = textured(width, height);
    let samplings = [SamplingFactor::F_1_1, SamplingFactor::F_2_1, SamplingFactor::F_1_2, SamplingFactor::F_2_2];
    for sampling in samplings {
        let jpeg = encode(&rgb, width, height, ColorType::Rgb, sampling, 0);
        for eighths in [1, 2, 4] {
            let (a, b) = (ours(&jpeg, eighths, 1), reference(&jpeg, eighths));
            assert!(matches!(a, DynamicImage::ImageRgb8(_)));
            assert_eq!((a.width(), a.height()), (b.width(), b.height()), "{sampling:?} at {eighths}/8");
            let diff = mean_abs_diff(&a, &b);
            assert!(diff < 1.5, "{sampling:?} at {eighths}/8: mean difference {diff}");
        }
    }
}

#[test]
fn gray_files_stay_gray_and_match() {
    let (width, height) = (300, 211);
    let luma: Vec<u8> = textured(width, height).chunks_exact(3).map(|p| p[0]).collect();
    let jpeg = encode(&luma, width, height, ColorType::Luma, SamplingFactor::F_1_1, 0);
    for eighths in [1, 2, 4] {
        let (a, b) = (ours(&jpeg, eighths, 1), reference(&jpeg, eighths));
        assert!(matches!(a, DynamicImage::ImageLuma8(_)));
        let diff = mean_abs_diff(&a, &b);
        assert!(diff < 1.0, "at {eighths}/8: mean difference {diff}");
    }
}

#[test]
fn restart_markers_are_followed_and_split_the_work_exactly() {
    let (width, height) = (640, 480);
    let jpeg = encode(&textured(width, height), width, height, ColorType::Rgb, SamplingFactor::F_2_2, 7);
    assert!(jpeg.windows(2).any(|w| w == [0xFF, 0xD3]), "the file has restart markers");
    let diff = mean_abs_diff(&ours(&jpeg, 2, 4), &reference(&jpeg, 2));
    assert!(diff < 1.5, "mean difference {diff}");

    // Large enough for several parts: cut at restart markers, no joining needed.
    let (width, height) = (2400, 1600);
    let jpeg = encode(&textured(width, height), width, height, ColorType::Rgb, SamplingFactor::F_2_1, 7);
    let decoder = ScaledJpeg::read(&jpeg).expect("baseline");
    let (_, segments) = baseline::decode(&decoder.frame, &Scale::new(1).expect("scale"), &jpeg, 4).expect("decoded");
    assert_eq!(segments.len(), 4, "four runs of intervals");
    for eighths in [1, 2, 4] {
        let sequential = decoder.decode(eighths, 1).expect("sequential");
        assert!(decoder.decode(eighths, 3) == Ok(sequential.clone()), "three parts at {eighths}/8");
        let diff = mean_abs_diff(&sequential, &reference(&jpeg, eighths));
        assert!(diff < 1.5, "at {eighths}/8: mean difference {diff}");
    }
    // Fewer intervals than parts: one interval covers the whole image.
    let one_interval = encode(&textured(width, height), width, height, ColorType::Rgb, SamplingFactor::F_2_1, 65535);
    let decoder = ScaledJpeg::read(&one_interval).expect("baseline");
    assert!(decoder.decode(1, 4) == decoder.decode(1, 1) && decoder.decode(1, 1).is_ok());
}

/// Splitting the scan changes nothing: the parts meet and give the sequential decode's
/// pixels (up to the rounding of the DC correction).
#[test]
fn parts_meet_and_give_the_sequential_pixels() {
    let (width, height) = (2400, 1600);
    let jpeg = encode(&textured(width, height), width, height, ColorType::Rgb, SamplingFactor::F_2_1, 0);
    let baseline = ScaledJpeg::read(&jpeg).expect("baseline");
    assert!(baseline.useful_threads() >= 4, "{} bytes is enough data for four parts", jpeg.len());
    let scale = Scale::new(2).expect("scale");
    let (_, segments) = baseline::decode(&baseline.frame, &scale, &jpeg, 4).expect("decoded");
    assert_eq!(segments.len(), 4, "every part met the one before it");
    assert!(segments.iter().skip(1).any(|s| s.dc_offsets != [0; 3]), "DC corrections were needed");

    for eighths in [1, 2, 4] {
        let sequential = baseline.decode(eighths, 1).expect("sequential");
        for threads in [2, 3, 4] {
            assert!(baseline.decode(eighths, threads) == Ok(sequential.clone()), "{threads} parts at {eighths}/8");
        }
    }
}

/// A part that started with a DC predictor far from the true one (a speculative start reads
/// garbage before it synchronises) is corrected exactly: the correction is applied to the
/// DC values, not to samples that may have been saturated.
#[test]
fn a_part_far_off_in_dc_is_corrected_exactly() {
    let (width, height) = (320, 240);
    let jpeg = encode(&textured(width, height), width, height, ColorType::Rgb, SamplingFactor::F_2_2, 0);
    let decoder = ScaledJpeg::read(&jpeg).expect("baseline");
    let scale = Scale::new(2).expect("scale");
    let expected = decoder.decode(2, 1).expect("decoded");

    let (mut parts, mut segments) = baseline::decode(&decoder.frame, &scale, &jpeg, 1).expect("decoded");
    // As if the part had started 30 000 quantisation steps off in every component.
    for dc in &mut parts[0].dc {
        *dc += 30_000;
    }
    segments[0].dc_offsets = [-30_000; 3];
    let planes = baseline_planes(&decoder.frame, &scale, parts, &segments, 2).expect("planes");
    let image = to_image(&decoder.frame, &scale, &planes, expected.width(), expected.height(), 1).expect("image");
    assert!(image == expected);
}

#[test]
fn other_kinds_of_jpeg_are_declined() {
    let rgb = textured(64, 48);
    let cmyk: Vec<u8> = rgb.chunks_exact(3).flat_map(|p| [p[0], p[1], p[2], 0]).collect();
    let cmyk = encode(&cmyk, 64, 48, ColorType::Cmyk, SamplingFactor::F_1_1, 0);
    assert!(matches!(ScaledJpeg::read(&cmyk), Err(DecodeError::Unsupported(_))), "CMYK");

    // jpeg-encoder writes 4:1:1 as one scan per component (not interleaved).
    let separate_scans = encode(&rgb, 64, 48, ColorType::Rgb, SamplingFactor::F_4_1, 0);
    assert!(matches!(ScaledJpeg::read(&separate_scans), Err(DecodeError::Unsupported(_))), "one scan per component");
    assert!(matches!(ScaledJpeg::read(b"not a jpeg"), Err(DecodeError::Corrupt(_))));
}

#[test]
fn scales_other_than_one_two_or_four_eighths_are_refused() {
    let jpeg = encode(&textured(64, 48), 64, 48, ColorType::Rgb, SamplingFactor::F_2_2, 0);
    let decoder = ScaledJpeg::read(&jpeg).expect("baseline");
    for eighths in [0, 3, 8] {
        assert!(decoder.decode(eighths, 1) == Err(DecodeError::Scale(eighths)), "{eighths}/8");
    }
}

/// Progressive files made by libjpeg-turbo (through vips) with its standard script: DC and
/// AC bands, first scans and refinement scans, 4:2:0 and gray, 331×197.
const PROGRESSIVE_420: &[u8] = include_bytes!("fixtures/progressive-420.jpg");
const PROGRESSIVE_GRAY: &[u8] = include_bytes!("fixtures/progressive-gray.jpg");

#[test]
fn progressive_files_match_jpeg_decoder_on_one_thread_and_two() {
    for (name, jpeg) in [("4:2:0", PROGRESSIVE_420), ("gray", PROGRESSIVE_GRAY)] {
        assert!(ScaledJpeg::read(jpeg).expect("read").frame.scans.iter().any(|s| s.high > 0), "has refinement scans");
        for eighths in [1, 2, 4] {
            let one = ours(jpeg, eighths, 1);
            let diff = mean_abs_diff(&one, &reference(jpeg, eighths));
            assert!(diff < 1.0, "{name} at {eighths}/8: mean difference {diff}");
            assert_eq!(one, ours(jpeg, eighths, 2), "{name} at {eighths}/8: threads change nothing");
        }
    }
    // jpeg-encoder's progressive files: spectral bands only, 4:2:2.
    let (width, height) = (403, 251);
    let mut jpeg = Vec::new();
    let mut encoder = Encoder::new(&mut jpeg, 90);
    encoder.set_progressive(true);
    encoder.set_sampling_factor(SamplingFactor::F_2_1);
    encoder.encode(&textured(width, height), width as u16, height as u16, ColorType::Rgb).expect("encode");
    for eighths in [1, 2, 4] {
        let diff = mean_abs_diff(&ours(&jpeg, eighths, 2), &reference(&jpeg, eighths));
        assert!(diff < 1.5, "jpeg-encoder's at {eighths}/8: mean difference {diff}");
    }
}

#[test]
fn scans_only_the_dropped_coefficients_need_are_skipped() {
    let frame = ScaledJpeg::read(PROGRESSIVE_420).expect("read").frame;
    let eighth = progressive::needed_scans(&frame, &Scale::new(1).expect("scale"));
    for (scan, needed) in frame.scans.iter().zip(&eighth) {
        assert_eq!(*needed, scan.start == 0, "at 1/8 only DC scans are read");
    }
    // At 1/4, luma's 6..63 band holds no kept coefficient, but the later 1..63 refinement
    // needs to know which of them are non-zero.
    let quarter = progressive::needed_scans(&frame, &Scale::new(2).expect("scale"));
    assert!(quarter.iter().all(|&needed| needed));
}

#[test]
fn broken_files_are_declined_or_decoded_but_never_panic() {
    let (width, height) = (1200, 800);
    let jpeg = encode(&textured(width, height), width, height, ColorType::Rgb, SamplingFactor::F_2_2, 0);
    let baseline = ScaledJpeg::read(&jpeg).expect("baseline");
    assert!(baseline.decode(1, 2).is_ok());
    // Cut short: the decoder needs bits that are not there.
    for cut in [jpeg.len() / 3, jpeg.len() / 2, jpeg.len() - 100] {
        let truncated = &jpeg[..cut];
        if let Ok(baseline) = ScaledJpeg::read(truncated) {
            assert!(matches!(baseline.decode(2, 2), Err(DecodeError::Corrupt(_))), "cut at {cut}: not enough data");
        }
    }
    // Flipped bytes in the headers and in the data: anything but a panic or a hang.
    let mut state = 12345u32;
    for _ in 0..200 {
        state = state.wrapping_mul(1_103_515_245).wrapping_add(12345);
        let mut broken = jpeg.clone();
        let at = (state as usize >> 4) % broken.len();
        broken[at] ^= (state >> 24) as u8 | 1;
        if let Ok(baseline) = ScaledJpeg::read(&broken) {
            let _ = baseline.decode([1, 2, 4][(state % 3) as usize], 1 + (state % 3) as usize);
        }
        let mut broken = PROGRESSIVE_420.to_vec();
        let at = (state as usize >> 4) % broken.len();
        broken[at] ^= (state >> 24) as u8 | 1;
        if let Ok(progressive) = ScaledJpeg::read(&broken) {
            let _ = progressive.decode([1, 2, 4][(state % 3) as usize], 1 + (state % 2) as usize);
        }
    }
    // A restart interval cut short.
    let (width, height) = (96, 64);
    let mut restarts = encode(&textured(width, height), width, height, ColorType::Rgb, SamplingFactor::F_1_1, 2);
    let first_rst = restarts.windows(2).position(|w| w == [0xFF, 0xD0]).expect("RST0");
    restarts.drain(first_rst - 20..first_rst);
    assert!(ScaledJpeg::read(&restarts).and_then(|j| j.decode(2, 1)).is_err(), "interval short of data");

    for cut in [PROGRESSIVE_420.len() / 2, PROGRESSIVE_420.len() - 40] {
        assert!(
            matches!(ScaledJpeg::read(&PROGRESSIVE_420[..cut]), Err(DecodeError::Corrupt(_))),
            "cut at {cut}: scans missing"
        );
    }
}

/// A gray 8×8 progressive file: one DC scan, then `ac_scans` AC scans of band 1..1, each
/// an end-of-band code (one-bit codes "0" in both tables).
fn gray_progressive_with_scans(ac_scans: usize) -> Vec<u8> {
    fn segment(marker: u8, body: &[u8]) -> Vec<u8> {
        let mut out = vec![0xFF, marker];
        out.extend_from_slice(&((body.len() + 2) as u16).to_be_bytes());
        out.extend_from_slice(body);
        out
    }
    let one_code = |class: u8, symbol: u8| {
        let mut body = vec![class, 1];
        body.extend([0u8; 15]);
        body.push(symbol);
        body
    };
    let mut jpeg = vec![0xFF, 0xD8];
    jpeg.extend(segment(0xDB, &[[0u8].as_slice(), &[1u8; 64]].concat()));
    jpeg.extend(segment(0xC2, &[8, 0, 8, 0, 8, 1, 1, 0x11, 0]));
    jpeg.extend(segment(0xC4, &one_code(0x00, 0)));
    jpeg.extend(segment(0xC4, &one_code(0x10, 0x00)));
    jpeg.extend(segment(0xDA, &[1, 1, 0x00, 0, 0, 0]));
    jpeg.push(0x7F); // DC difference 0, then padding
    for _ in 0..ac_scans {
        jpeg.extend(segment(0xDA, &[1, 1, 0x00, 1, 1, 0]));
        jpeg.push(0x7F); // end of band
    }
    jpeg.extend([0xFF, 0xD9]);
    jpeg
}

#[test]
fn files_with_more_scans_than_any_encoder_makes_are_declined() {
    let gray = ours(&gray_progressive_with_scans(100), 1, 1);
    assert_eq!(gray.to_luma8().as_raw(), &vec![128u8; 1], "a flat mid-gray block");
    assert!(matches!(ScaledJpeg::read(&gray_progressive_with_scans(100_000)), Err(DecodeError::Unsupported(_))));
}

/// The corpus' photos and artwork, decoded the way the pipeline does for a 200 px
/// thumbnail on two cores, against `jpeg-decoder`.
#[test]
fn the_corpus_matches_jpeg_decoder() {
    for name in [
        "art-grey-2560x1600-gray.jpg",
        "art-painting-6000x4000.jpg",
        "art-safelanding-1622x2880-portrait.jpg",
        "art-safelanding-5120x2880.jpg",
        "photo-bird-6028x3391.jpg",
        "photo-summer-2560x1600-progressive.jpg",
        "photo-volna-5120x2880-progressive.jpg",
    ] {
        let Some(path) = corpus(name) else {
            eprintln!("skipped: {name} is not beside this checkout");
            continue;
        };
        let jpeg = std::fs::read(path).expect("read corpus file");
        let eighths = if name.contains("portrait") || name.contains("progressive") { 2 } else { 1 };
        let diff = mean_abs_diff(&ours(&jpeg, eighths, 2), &reference(&jpeg, eighths));
        assert!(diff < 1.5, "{name}: mean difference {diff}");
    }
}

/// A file of the shared corpus of real images (`../shared/corpus` from the workspace root),
/// if this checkout has it beside it.
fn corpus(name: &str) -> Option<PathBuf> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/corpus").join(name);
    path.is_file().then_some(path)
}

/// Mean absolute difference per channel between two images of the same size, as RGBA8.
fn mean_abs_diff(a: &DynamicImage, b: &DynamicImage) -> f64 {
    assert_eq!((a.width(), a.height()), (b.width(), b.height()));
    let (a, b) = (a.to_rgba8(), b.to_rgba8());
    let total: u64 = a.as_raw().iter().zip(b.as_raw()).map(|(&x, &y)| u64::from(x.abs_diff(y))).sum();
    total as f64 / a.as_raw().len() as f64
}
