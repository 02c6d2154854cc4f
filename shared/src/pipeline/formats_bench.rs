//! The measurement behind the WebP and AVIF settings (docs/BENCHMARKS.md, "Modern formats"):
//! for each corpus image and height (200, 400), bytes of each variant and its SSIM against the
//! slow reference (image's full decode, orientation and Lanczos3 `resize_exact`, not encoded),
//! for a list of candidate settings. Transparent images are compared over white.
//!
//! Ignored (minutes of work); the figures do not depend on the build profile:
//!   FORMATS_SETTINGS="80:60:8 75:55:8" cargo test -p imageapi-shared --lib \
//!       formats_bench -- --ignored --nocapture
//! Each setting is WEBP_QUALITY:AVIF_QUALITY:AVIF_SPEED[:FLAG...], AVIF on libavif's scales;
//! flags: `420` (AVIF chroma subsampled), `lossless` (PNG sources' WebP lossless). AVIF is
//! decoded for SSIM with libvips' `vips` command (Debian `libvips-tools`).

use std::io::Cursor;

use image::{DynamicImage, ImageDecoder, Rgb, RgbImage};
use imageapi_core::image::ThumbnailFormat;

use crate::pipeline::encode::EncodeSettings;
use crate::pipeline::test_support::{corpus, decode, ssim};
use crate::pipeline::thumbnail::render_with;
use crate::pipeline::Limits;

const FILES: &[&str] = &[
    "photo-bird-6028x3391.jpg",
    "art-painting-6000x4000.jpg",
    "photo-volna-5120x2880-progressive.jpg",
    "photo-summer-2560x1600-progressive.jpg",
    "art-safelanding-5120x2880.jpg",
    "art-safelanding-1622x2880-portrait.jpg",
    "art-grey-2560x1600-gray.jpg",
    "photo-altai-5120x2880-rgb.png",
    "art-kay-5120x2880-rgba.png",
    "art-kay-1080x1920-portrait.png",
];

fn over_white(image: &DynamicImage) -> DynamicImage {
    let rgba = image.to_rgba8();
    let out = RgbImage::from_fn(rgba.width(), rgba.height(), |x, y| {
        let p = rgba.get_pixel(x, y).0;
        let a = u32::from(p[3]);
        let mix = |c: u8| ((u32::from(c) * a + 255 * (255 - a) + 127) / 255) as u8;
        Rgb([mix(p[0]), mix(p[1]), mix(p[2])])
    });
    DynamicImage::ImageRgb8(out)
}

fn decode_webp(bytes: &[u8]) -> DynamicImage {
    let image = webp::Decoder::new(bytes).decode().expect("libwebp decodes");
    let (w, h) = (image.width(), image.height());
    if image.is_alpha() {
        DynamicImage::ImageRgba8(image::RgbaImage::from_raw(w, h, image.to_vec()).expect("rgba"))
    } else {
        DynamicImage::ImageRgb8(RgbImage::from_raw(w, h, image.to_vec()).expect("rgb"))
    }
}

/// Decodes an AVIF through `vips copy` (libheif + dav1d/aom); `None` without libvips.
fn decode_avif(bytes: &[u8]) -> Option<DynamicImage> {
    let dir = tempfile::tempdir().ok()?;
    let (input, output) = (dir.path().join("t.avif"), dir.path().join("t.png"));
    std::fs::write(&input, bytes).ok()?;
    let status = std::process::Command::new("vips").arg("copy").arg(&input).arg(&output).status().ok()?;
    status.success().then(|| decode(&std::fs::read(&output).expect("vips wrote it")))
}

fn settings_list() -> Vec<(String, EncodeSettings)> {
    let spec = std::env::var("FORMATS_SETTINGS").unwrap_or_else(|_| "80:60:8".into());
    spec.split_whitespace()
        .map(|one| {
            let parts: Vec<&str> = one.split(':').collect();
            let mut s =
                EncodeSettings { webp_quality: parts[0].parse().expect("webp quality"), ..EncodeSettings::default() };
            s.avif.quality = parts[1].parse().expect("avif quality");
            s.avif.speed = parts[2].parse().expect("avif speed");
            for flag in &parts[3..] {
                match *flag {
                    "420" => s.avif.subsample_chroma = true,
                    "lossless" => s.webp_png_lossless = true,
                    other => panic!("unknown flag {other}"),
                }
            }
            (one.to_owned(), s)
        })
        .collect()
}

#[test]
#[ignore = "measurement for docs/BENCHMARKS.md; minutes"]
fn formats_bench() {
    let settings = settings_list();
    // Per setting: worst WebP and AVIF byte ratios, worst SSIM deltas, and how many rows met
    // the targets (WebP <= 0.75x JPEG, AVIF <= 0.55x, each at SSIM >= JPEG's - 0.005).
    let mut summary = vec![(0.0f64, 0.0f64, f64::MAX, f64::MAX, 0u32, 0u32, 0u32, 0.0f64, 0.0f64); settings.len()];
    // Per setting: milliseconds of `render_with` (decode, both heights in all three formats),
    // best of TIMED_RUNS, summed over the JPEG files and over the PNG files. Run pinned to one
    // core (taskset -c 0) in a release build for figures comparable to bench-inprocess.
    let runs: usize = std::env::var("FORMATS_RUNS").ok().and_then(|r| r.parse().ok()).unwrap_or(1);
    let mut millis = vec![(0.0f64, 0.0f64); settings.len()];
    // Per setting, AVIF on the JPEG rows only: rows at SSIM >= JPEG's - 0.005, rows at <= 0.55x
    // the JPEG's bytes, and the worst SSIM delta.
    let mut avif_jpeg = vec![(0u32, 0u32, f64::MAX); settings.len()];
    println!("| image | px | source bytes | source SSIM | setting | WebP bytes (x) | WebP SSIM | AVIF bytes (x) | AVIF SSIM |");
    println!("| --- | --- | --- | --- | --- | --- | --- | --- | --- |");
    for name in FILES {
        let Some(path) = corpus(name) else {
            println!("skipping {name}: corpus not found");
            continue;
        };
        let bytes = std::fs::read(&path).expect("read");
        let mut decoder = image::ImageReader::new(Cursor::new(&bytes))
            .with_guessed_format()
            .expect("read")
            .into_decoder()
            .expect("hdr");
        let orientation = decoder.orientation().expect("orientation");
        let mut original = DynamicImage::from_decoder(decoder).expect("decode");
        original.apply_orientation(orientation);
        let png = name.ends_with(".png");

        for (i, (label, setting)) in settings.iter().enumerate() {
            let all = [ThumbnailFormat::Source, ThumbnailFormat::Webp, ThumbnailFormat::Avif];
            let mut best = f64::MAX;
            let mut out = None;
            for _ in 0..runs {
                let started = std::time::Instant::now();
                out = Some(render_with(&bytes, &[200, 400], &all, false, setting, &Limits::default()).expect("render"));
                best = best.min(started.elapsed().as_secs_f64() * 1000.0);
            }
            let out = out.expect("at least one run");
            if png {
                millis[i].1 += best;
            } else {
                millis[i].0 += best;
            }
            for t in &out.thumbnails {
                let reference =
                    over_white(&original.resize_exact(t.width, t.height, image::imageops::FilterType::Lanczos3));
                let get = |f| t.variant(f).expect("asked").result.clone().expect("encoded");
                let (src, wp, av) =
                    (get(ThumbnailFormat::Source), get(ThumbnailFormat::Webp), get(ThumbnailFormat::Avif));
                let s_src = ssim(&over_white(&decode(&src)), &reference);
                let s_wp = ssim(&over_white(&decode_webp(&wp)), &reference);
                let s_av = decode_avif(&av).map_or(f64::NAN, |a| ssim(&over_white(&a), &reference));
                let (r_wp, r_av) = (wp.len() as f64 / src.len() as f64, av.len() as f64 / src.len() as f64);
                println!(
                    "| {name} | {} | {} | {s_src:.4} | {label} | {} ({r_wp:.2}) | {s_wp:.4} | {} ({r_av:.2}) | {s_av:.4} |",
                    t.height,
                    src.len(),
                    wp.len(),
                    av.len()
                );
                let sum = &mut summary[i];
                sum.0 = sum.0.max(r_wp);
                sum.1 = sum.1.max(r_av);
                sum.2 = sum.2.min(s_wp - s_src);
                sum.3 = sum.3.min(s_av - s_src);
                sum.4 += 1;
                sum.5 += u32::from(r_wp <= 0.75 && s_wp >= s_src - 0.005);
                sum.6 += u32::from(r_av <= 0.55 && s_av >= s_src - 0.005);
                if !png {
                    let a = &mut avif_jpeg[i];
                    a.0 += u32::from(s_av >= s_src - 0.005);
                    a.1 += u32::from(r_av <= 0.55);
                    a.2 = a.2.min(s_av - s_src);
                    sum.7 += r_wp;
                    sum.8 += r_av;
                }
            }
        }
    }
    println!();
    println!(
        "| setting | rows | WebP meets | AVIF meets | worst WebP x | worst AVIF x | worst WebP dSSIM | worst AVIF dSSIM \
         | JPEG rows: AVIF SSIM ok | AVIF bytes ok | worst AVIF dSSIM | JPEG ms | PNG ms |"
    );
    println!("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |");
    for (((label, _), s), (ms, a)) in settings.iter().zip(&summary).zip(millis.iter().zip(&avif_jpeg)) {
        println!(
            "| {label} | {} | {} | {} | {:.2} | {:.2} | {:+.4} | {:+.4} | {} | {} | {:+.4} | {:.0} | {:.0} |",
            s.4, s.5, s.6, s.0, s.1, s.2, s.3, a.0, a.1, a.2, ms.0, ms.1
        );
    }
}
