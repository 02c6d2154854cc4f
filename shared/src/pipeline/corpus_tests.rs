//! Tests on the shared corpus of real photos and artwork (skipped, with a message, where the
//! corpus is absent). Each file: probe reports the format and the dimensions its name carries,
//! thumbnails of 200 and 400 px have exact sizes and the right pixel layout, and the 200 px one
//! is visually the same as a slow reference: image's own Lanczos3 `resize_exact` of the
//! decoded, oriented original, encoded the same way as ours. Both heights are also compared
//! with it by SSIM, which notices the blur or aliasing a DCT scale too close to the thumbnail
//! would bring (see `jpeg::min_decoded_size`).

use std::io::Cursor;

use image::{ColorType, DynamicImage, ImageDecoder};

use crate::pipeline::test_support::{corpus, decode, ssim};
use crate::pipeline::thumbnail::encode_thumbnail_jpeg;
use crate::pipeline::{make_thumbnails, probe, ImageFormat, Limits};

/// Largest mean absolute difference per channel (0..255, premultiplied) allowed between our
/// 200 px JPEG thumbnail and the reference encoded with the same JPEG settings. Measured on the
/// corpus: 0.24-1.1 for photos, 2.0-2.3 on the grainy "safelanding" artwork (1.1 when it was
/// decoded at 1/2 instead of 1/4 for 400 px; by SSIM it is still closer to the reference than
/// libvips' thumbnail, see docs/BENCHMARKS.md). Comparing with the reference before encoding
/// would mostly measure JPEG loss instead.
const MAX_MEAN_DIFF_JPEG: f64 = 2.6;
/// The same for PNG, which is lossless: measured 0.09-0.13.
const MAX_MEAN_DIFF_PNG: f64 = 0.5;

/// Lowest SSIM allowed between a corpus thumbnail (200 or 400 px) and the reference, JPEG and
/// PNG. Measured: JPEG 0.914 (safelanding at 400 px; photos 0.988-0.997), PNG 0.998-0.9996.
const MIN_SSIM_JPEG: f64 = 0.9;
const MIN_SSIM_PNG: f64 = 0.995;

/// Dimensions from a corpus file name such as `photo-bird-6028x3391.jpg`.
fn dimensions_from_name(name: &str) -> (u32, u32) {
    let dims = name
        .split(['-', '.'])
        .find_map(|part| {
            let (w, h) = part.split_once('x')?;
            Some((w.parse().ok()?, h.parse().ok()?))
        })
        .expect("corpus file names carry WIDTHxHEIGHT");
    dims
}

/// Width for a height, rounded to nearest, computed independently of `thumbnail_size`.
fn expected_size(width: u32, height: u32, target: u32) -> (u32, u32) {
    let h = target.min(height);
    let w = (f64::from(width) * f64::from(h) / f64::from(height)).round() as u32;
    (w.max(1), h)
}

/// Premultiplied RGBA, so invisible colour under transparent pixels does not count.
fn premultiplied(image: &DynamicImage) -> Vec<f64> {
    image
        .to_rgba8()
        .pixels()
        .flat_map(|p| {
            let a = f64::from(p.0[3]) / 255.0;
            [f64::from(p.0[0]) * a, f64::from(p.0[1]) * a, f64::from(p.0[2]) * a, f64::from(p.0[3])]
        })
        .collect()
}

/// The slow reference: image's decode, orientation and Lanczos3, then the same encoding as
/// ours (a lossy JPEG is compared with a JPEG).
fn reference_thumbnail(original: &DynamicImage, format: ImageFormat, width: u32, height: u32) -> DynamicImage {
    let resized = original.resize_exact(width, height, image::imageops::FilterType::Lanczos3);
    match format {
        ImageFormat::Png => resized,
        ImageFormat::Jpeg => {
            let layout = match resized {
                DynamicImage::ImageLuma8(_) => resized,
                other => other.to_rgb8().into(),
            };
            decode(&encode_thumbnail_jpeg(&layout).expect("reference encodes"))
        }
    }
}

fn check_corpus_file(name: &str) {
    let Some(path) = corpus(name) else {
        println!("skipping: corpus not found ({name})");
        return;
    };
    let bytes = std::fs::read(&path).expect("corpus file readable");
    let (width, height) = dimensions_from_name(name);
    let format = if name.ends_with(".png") { ImageFormat::Png } else { ImageFormat::Jpeg };

    let probed = probe(&bytes, &Limits::default()).expect("corpus file passes probe");
    assert_eq!((probed.format, probed.width, probed.height), (format, width, height));

    let thumbs = make_thumbnails(&bytes, &[200, 400], &Limits::default()).expect("thumbnails");
    assert_eq!(thumbs.len(), 2);
    for (thumb, target) in thumbs.iter().zip([200, 400]) {
        let expected = expected_size(width, height, target);
        assert_eq!(thumb.requested_height, target);
        assert_eq!((thumb.width, thumb.height), expected, "{name} at {target}");
        assert_eq!(ImageFormat::detect(&thumb.bytes), Some(format));
        let decoded = decode(&thumb.bytes);
        assert_eq!((decoded.width(), decoded.height()), expected);
        let expected_color = if name.contains("gray") {
            ColorType::L8
        } else if name.contains("rgba") || name.ends_with("portrait.png") {
            ColorType::Rgba8
        } else {
            ColorType::Rgb8
        };
        assert_eq!(decoded.color(), expected_color, "{name}: pixel layout kept");
    }

    let mut decoder = image::ImageReader::new(Cursor::new(&bytes))
        .with_guessed_format()
        .expect("read")
        .into_decoder()
        .expect("header");
    let orientation = decoder.orientation().expect("orientation");
    let mut original = DynamicImage::from_decoder(decoder).expect("decode");
    original.apply_orientation(orientation);
    let min_ssim = match format {
        ImageFormat::Jpeg => MIN_SSIM_JPEG,
        ImageFormat::Png => MIN_SSIM_PNG,
    };
    for thumb in &thumbs {
        let reference = reference_thumbnail(&original, format, thumb.width, thumb.height);
        let similarity = ssim(&decode(&thumb.bytes), &reference);
        println!("{name}: SSIM to the reference at {} px {similarity:.4}", thumb.requested_height);
        assert!(similarity >= min_ssim, "{name} at {} px: SSIM {similarity:.4}", thumb.requested_height);
    }

    let ours = decode(&thumbs[0].bytes);
    let reference = reference_thumbnail(&original, format, thumbs[0].width, thumbs[0].height);
    let (a, b) = (premultiplied(&ours), premultiplied(&reference));
    let diff = a.iter().zip(&b).map(|(x, y)| (x - y).abs()).sum::<f64>() / a.len() as f64;
    println!("{name}: mean absolute difference to the reference {diff:.3}");
    let max = match format {
        ImageFormat::Jpeg => MAX_MEAN_DIFF_JPEG,
        ImageFormat::Png => MAX_MEAN_DIFF_PNG,
    };
    assert!(diff < max, "{name}: 200 px thumbnail differs from the reference by {diff:.3} per channel");
}

#[test]
fn corpus_names_parse_and_the_bird_has_the_documented_sizes() {
    assert_eq!(dimensions_from_name("photo-bird-6028x3391.jpg"), (6028, 3391));
    assert_eq!(dimensions_from_name("art-kay-5120x2880-rgba.png"), (5120, 2880));
    assert_eq!(expected_size(6028, 3391, 200), (356, 200));
    assert_eq!(expected_size(6028, 3391, 400), (711, 400));
}

macro_rules! corpus_test {
    ($($test:ident => $file:literal,)*) => {$(
        #[test]
        fn $test() {
            check_corpus_file($file);
        }
    )*};
}

corpus_test! {
    corpus_bird_baseline_jpeg_probes_and_thumbnails_correctly => "photo-bird-6028x3391.jpg",
    corpus_painting_baseline_jpeg_probes_and_thumbnails_correctly => "art-painting-6000x4000.jpg",
    corpus_volna_progressive_jpeg_probes_and_thumbnails_correctly => "photo-volna-5120x2880-progressive.jpg",
    corpus_safelanding_jpeg_probes_and_thumbnails_correctly => "art-safelanding-5120x2880.jpg",
    corpus_safelanding_portrait_jpeg_probes_and_thumbnails_correctly => "art-safelanding-1622x2880-portrait.jpg",
    corpus_summer_progressive_jpeg_probes_and_thumbnails_correctly => "photo-summer-2560x1600-progressive.jpg",
    corpus_grey_grayscale_jpeg_probes_and_thumbnails_correctly => "art-grey-2560x1600-gray.jpg",
    corpus_altai_rgb_png_probes_and_thumbnails_correctly => "photo-altai-5120x2880-rgb.png",
    corpus_kay_rgba_png_probes_and_thumbnails_correctly => "art-kay-5120x2880-rgba.png",
    corpus_kay_portrait_rgba_png_probes_and_thumbnails_correctly => "art-kay-1080x1920-portrait.png",
}
