//! Files made to cost the decoders memory, or to look supported when they are not: each limit
//! of issue 29 pinned on a crafted file, through the upload check ([`probe`]) and the render
//! ([`make_thumbnails`]).
//!
//! Memory is asserted on how much the process's peak resident set grows while the code under
//! test runs, where each test is a process of its own (cargo-nextest, which CI runs); under
//! `cargo test`, where tests share a process, only the functional part is checked.

use image::{DynamicImage, RgbImage};

use crate::pipeline::structure::JpegFrame;
use crate::pipeline::test_support::*;
use crate::pipeline::{make_thumbnails, probe, Limits, ProbeError, ThumbnailError};
use imageapi_core::image::ThumbnailFormat;

/// Runs `f`, and returns how far the process's peak resident set rose above where it stood
/// before (MiB), when the process is this test's alone.
fn peak_growth_mib(f: impl FnOnce()) -> Option<u64> {
    let alone = std::env::var("NEXTEST_EXECUTION_MODE").is_ok_and(|mode| mode == "process-per-test");
    let field = |name: &str| -> Option<u64> {
        let status = std::fs::read_to_string("/proc/self/status").ok()?;
        let line = status.lines().find(|l| l.starts_with(name))?;
        line.split_whitespace().nth(1)?.parse::<u64>().ok()
    };
    // "5" resets the peak to the current resident set (Linux 4.0 and later).
    let reset = alone && std::fs::write("/proc/self/clear_refs", "5").is_ok();
    let before = field("VmRSS:");
    f();
    let peak = field("VmHWM:");
    match (reset, before, peak) {
        (true, Some(before), Some(peak)) => Some(peak.saturating_sub(before) / 1024),
        _ => {
            eprintln!("not a process of its own (or no /proc): the memory bound is not checked");
            None
        }
    }
}

/// A 64×64 RGB PNG with these chunks between its header and its data.
fn png_with(extra: &[(&[u8; 4], Vec<u8>)]) -> Vec<u8> {
    let raw: Vec<u8> = (0..64).flat_map(|_| std::iter::once(0).chain(std::iter::repeat_n(90u8, 64 * 3))).collect();
    let ihdr = ihdr_data(64, 64, 8, 2);
    let idat = zlib_stored(&raw);
    let mut chunks: Vec<(&[u8; 4], &[u8])> = vec![(b"IHDR", &ihdr)];
    chunks.extend(extra.iter().map(|(t, d)| (*t, d.as_slice())));
    chunks.push((b"IDAT", &idat));
    chunks.push((b"IEND", &[]));
    png_from_chunks(&chunks)
}

#[test]
fn the_zeros_bomb_helper_inflates_to_exactly_its_length() {
    // As the data of a 1000x1000 grey PNG: 1000 rows of a filter byte and 1000 samples.
    let png = png_from_chunks(&[
        (b"IHDR", &ihdr_data(1000, 1000, 8, 0)),
        (b"IDAT", &zlib_zeros(1000 * 1001)),
        (b"IEND", &[]),
    ]);
    let decoded = image::load_from_memory(&png).expect("a valid stream");
    assert!(decoded.to_luma8().pixels().all(|p| p.0[0] == 0));
    assert!(zlib_zeros(1000 * 1001).len() < 1000 * 1001 / 150);
}

#[test]
fn a_colour_profile_bomb_is_never_inflated_by_the_upload_check_or_the_render() {
    // 600 MiB of zeros in a 4 MB iCCP chunk: the png crate used to inflate it up to its
    // allocation limit (512 MiB) on every header read.
    let mut iccp = b"bomb\0\0".to_vec();
    iccp.extend_from_slice(&zlib_zeros(600 * 1024 * 1024));
    let png = png_with(&[(b"iCCP", iccp)]);
    let growth = peak_growth_mib(|| {
        let probed = probe(&png, &Limits::default()).expect("the image itself is fine");
        assert_eq!((probed.width, probed.height), (64, 64));
        let estimate =
            crate::pipeline::render_memory_estimate(&png, &[32], &[ThumbnailFormat::Source], &Limits::default());
        assert!(estimate < 16 * 1024 * 1024, "{estimate}");
        let thumbs = make_thumbnails(&png, &[32], &Limits::default()).expect("thumbnails");
        assert_eq!((thumbs[0].width, thumbs[0].height), (32, 32));
    });
    if let Some(growth) = growth {
        assert!(growth < 16, "grew {growth} MiB: the profile was inflated");
    }
}

#[test]
fn a_million_text_chunks_cost_the_decoders_nothing() {
    // The png crate kept every text chunk it read (1.5 million tiny ones: 192-392 MB).
    let mut extra = Vec::new();
    for n in 0..300_000u32 {
        extra.push((b"tEXt", format!("k\0{n}").into_bytes()));
        extra.push((b"zTXt", b"k\0\0\x78\x01\x03\x00\x00\x00\x00\x01".to_vec()));
        extra.push((b"iTXt", b"k\0\0\0\0\0t".to_vec()));
    }
    let png = png_with(&extra);
    drop(extra);
    assert!(png.len() < 25 * 1024 * 1024, "{} bytes: within the upload limit", png.len());
    let growth = peak_growth_mib(|| {
        assert!(probe(&png, &Limits::default()).is_ok());
        assert!(make_thumbnails(&png, &[16], &Limits::default()).is_ok());
    });
    if let Some(growth) = growth {
        assert!(growth < 16, "grew {growth} MiB");
    }
}

#[test]
fn png_exif_over_one_mib_is_refused_with_the_reason_and_up_to_it_is_read() {
    let mut big = exif_orientation_tiff(6);
    big.resize(1024 * 1024, 0);
    let accepted = png_with(&[(b"eXIf", big.clone())]);
    let probed = probe(&accepted, &Limits::default()).expect("1 MiB of EXIF is fine");
    assert_eq!((probed.width, probed.height), (64, 64), "the orientation is read (a square turns into itself)");
    big.push(0);
    let refused = png_with(&[(b"eXIf", big)]);
    match probe(&refused, &Limits::default()) {
        Err(ProbeError::TooLarge(msg)) => assert!(msg.contains("EXIF") && msg.contains("1048576"), "{msg}"),
        other => panic!("expected TooLarge, got {other:?}"),
    }
    assert!(matches!(make_thumbnails(&refused, &[16], &Limits::default()), Err(ThumbnailError::TooLarge(_))));
}

#[test]
fn a_jpeg_full_of_icc_xmp_and_exif_segments_shows_the_decoders_only_the_first_exif() {
    // 150 ICC chunks and 150 extended-XMP segments of 64 KB (19 MB that zune-jpeg and
    // jpeg-decoder kept whole, and image copied before reading a header), then 40 Exif
    // segments: the first says "turned", the others "as stored".
    let mut metadata = Vec::new();
    let filler = vec![0x55u8; 65_000];
    for n in 0..150u8 {
        metadata.extend(jpeg_segment(0xE2, &[b"ICC_PROFILE\0".as_slice(), &[n + 1, 150], &filler].concat()));
        metadata.extend(jpeg_segment(0xE1, &[b"http://ns.adobe.com/xmp/extension/\0".as_slice(), &filler].concat()));
    }
    metadata.extend(exif_orientation_segment(6));
    for _ in 0..40 {
        metadata.extend(exif_orientation_segment(1));
    }
    let jpeg = splice_after_soi(&encode_jpeg_rgb(&gradient_rgb(300, 200)), &metadata);
    drop(metadata);
    assert!(jpeg.len() > 19_000_000);
    let growth = peak_growth_mib(|| {
        let probed = probe(&jpeg, &Limits::default()).expect("accepted");
        assert_eq!((probed.width, probed.height), (200, 300), "the first Exif segment's orientation");
        let thumbs = make_thumbnails(&jpeg, &[150], &Limits::default()).expect("thumbnails");
        assert_eq!((thumbs[0].width, thumbs[0].height), (100, 150));
    });
    if let Some(growth) = growth {
        // Each decoder used to keep the 19 MB, and image copied it before reading a header.
        assert!(growth < 8, "grew {growth} MiB");
    }
    let mut shown = Vec::new();
    std::io::Read::read_to_end(
        &mut crate::pipeline::decoder_input::DecoderInput::new(&jpeg, crate::pipeline::ImageFormat::Jpeg),
        &mut shown,
    )
    .expect("in memory");
    assert!(shown.len() < 100_000, "{} bytes shown to decoders", shown.len());
}

#[test]
fn a_progressive_cmyk_jpeg_over_the_ceiling_is_refused_at_upload_and_before_rendering() {
    let jpeg = cmyk_progressive(1200);
    // Every coefficient at 16 bits, four components, kept and queued: 1200² × 4 × 2 × 2 bytes.
    let tight = Limits { max_decode_memory: 20 * 1024 * 1024, ..Limits::default() };
    match probe(&jpeg, &tight) {
        Err(ProbeError::TooLarge(msg)) => {
            assert!(msg.contains("progressive CMYK JPEG") && msg.contains("keeps all of its coefficients"), "{msg}");
            assert!(msg.contains("the limit is 20 MiB"), "{msg}");
        }
        other => panic!("expected TooLarge, got {other:?}"),
    }
    assert!(matches!(make_thumbnails(&jpeg, &[100], &tight), Err(ThumbnailError::TooLarge(_))));
    // Under the default ceiling it is made, and the thumbnail looks like the image.
    assert!(probe(&jpeg, &Limits::default()).is_ok());
    let thumb = &make_thumbnails(&jpeg, &[100], &Limits::default()).expect("thumbnail")[0];
    assert_eq!((thumb.width, thumb.height), (100, 100));
}

#[test]
fn the_100_megapixel_cmyk_jpeg_of_the_probe_is_over_the_default_ceiling_from_its_header() {
    // 10000x10000, four components, progressive: 1.6 GB for jpeg-decoder's coefficients.
    let mut frame = JpegFrame::read(&cmyk_progressive(16)).expect("a frame");
    (frame.width, frame.height) = (10_000, 10_000);
    let memory = crate::pipeline::jpeg::general_decoder_memory(&frame, 1);
    assert!(memory > Limits::default().max_decode_memory, "{memory}");
    // Baseline, the same file needs its coefficient rows only once, in flight.
    frame.marker = 0xC0;
    let baseline = crate::pipeline::jpeg::general_decoder_memory(&frame, 1);
    assert!(baseline < memory / 2 + 64 * 1024 * 1024, "{baseline}");
}

/// Flips bits in the middle of the first scan's entropy-coded data, never making or
/// breaking a 0xFF byte, so the structure stays whole.
fn damage_first_scan(jpeg: &mut [u8]) {
    let sos = jpeg.windows(2).position(|w| w == [0xFF, 0xDA]).expect("a scan");
    let data = sos + 2 + usize::from(u16::from_be_bytes([jpeg[sos + 2], jpeg[sos + 3]]));
    let end = data + jpeg[data..].windows(2).position(|w| w[0] == 0xFF && w[1] != 0).expect("the scan ends");
    for i in (data + (end - data) / 4)..(data + (end - data) / 2) {
        let flipped = jpeg[i] ^ 0x5A;
        if jpeg[i] != 0xFF && flipped != 0xFF && jpeg[i - 1] != 0xFF {
            jpeg[i] = flipped;
        }
    }
}

#[test]
fn a_damaged_jpeg_falls_back_to_a_full_size_decode_only_within_its_estimate() {
    // A baseline photo that imageapi's decoder reads at 1/8: with its data damaged, a
    // full-size decode would cost several times its estimate, so the render fails with the
    // reason instead of running one.
    let mut photo = encode_jpeg(&DynamicImage::ImageRgb8(RgbImage::from_fn(3000, 2000, |x, y| {
        image::Rgb([(x % 256) as u8, (y % 256) as u8, ((x * y) % 256) as u8])
    })));
    damage_first_scan(&mut photo);
    assert!(probe(&photo, &Limits::default()).is_ok(), "the structure is whole");
    match make_thumbnails(&photo, &[200], &Limits::default()) {
        Err(ThumbnailError::Decode(msg)) => {
            assert!(msg.contains("decoding it whole instead would take about"), "{msg}")
        }
        Ok(_) => panic!("the damaged data decoded at reduced size"),
        Err(other) => panic!("expected a decode error, got {other}"),
    }
    // A damaged CMYK file: jpeg-decoder's estimate (every coefficient, twice) leaves room for
    // image's full decode (every coefficient once, and the RGB output), which makes
    // something of it rather than nothing.
    let mut cmyk = cmyk_progressive(600);
    damage_first_scan(&mut cmyk);
    let thumb = make_thumbnails(&cmyk, &[100], &Limits::default());
    assert!(!matches!(thumb, Err(ThumbnailError::TooLarge(_))), "{:?}", thumb.map(|t| t.len()));
}

#[test]
fn jpeg_frames_no_decoder_here_reads_are_unsupported_not_corrupt() {
    let jpeg = encode_jpeg_rgb(&gradient_rgb(64, 48));
    let sof = jpeg.windows(2).position(|w| w == [0xFF, 0xC0]).expect("a baseline frame");
    let cases = [
        (0xC3, "lossless frames (SOF3)"),
        (0xC5, "hierarchical frames (SOF5)"),
        (0xC6, "hierarchical frames (SOF6)"),
        (0xC7, "hierarchical frames (SOF7)"),
        (0xC9, "arithmetic-coded frames (SOF9)"),
        (0xCA, "arithmetic-coded frames (SOF10)"),
        (0xCB, "arithmetic-coded frames (SOF11)"),
        (0xCD, "hierarchical arithmetic-coded frames (SOF13)"),
        (0xCE, "hierarchical arithmetic-coded frames (SOF14)"),
        (0xCF, "hierarchical arithmetic-coded frames (SOF15)"),
    ];
    for (marker, why) in cases {
        let mut variant = jpeg.clone();
        variant[sof + 1] = marker;
        match probe(&variant, &Limits::default()) {
            Err(ProbeError::Unsupported(msg)) => assert!(msg.contains(why), "SOF {marker:02X}: {msg}"),
            other => panic!("SOF {marker:02X}: expected Unsupported, got {other:?}"),
        }
    }
    for marker in [0xC1, 0xC2, 0xC0] {
        let mut twelve_bit = jpeg.clone();
        twelve_bit[sof + 1] = marker;
        twelve_bit[sof + 4] = 12;
        match probe(&twelve_bit, &Limits::default()) {
            Err(ProbeError::Unsupported(msg)) => assert!(msg.contains("12-bit samples"), "{msg}"),
            other => panic!("12-bit SOF {marker:02X}: expected Unsupported, got {other:?}"),
        }
    }
    let hierarchical =
        splice_after_soi(&jpeg, &jpeg_segment(0xDE, &[8, 0, 48, 0, 64, 3, 1, 0x11, 0, 2, 0x11, 1, 3, 0x11, 1]));
    assert!(
        matches!(probe(&hierarchical, &Limits::default()), Err(ProbeError::Unsupported(msg)) if msg.contains("DHP"))
    );
    // Extended sequential 8-bit (SOF1) is an ordinary JPEG.
    let mut extended = jpeg.clone();
    extended[sof + 1] = 0xC1;
    assert!(probe(&extended, &Limits::default()).is_ok());
}
