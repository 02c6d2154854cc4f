//! The one-shot `imageapi-worker thumbnail` command: exactly the production pipeline on one
//! file, as a process. Sizes, files, and the memory bounds: a 20-megapixel JPEG job stays
//! under 64 MB of peak resident memory (DCT-scaled decoding), a PNG job under 1.5× its decoded
//! image on top of the process's own baseline.

use std::path::Path;
use std::process::Command;

use image::{DynamicImage, Rgb, RgbImage, Rgba, RgbaImage};

use crate::fixtures::{corpus, encode_jpeg, encode_png};
use crate::helpers::worker_binary;

struct Run {
    /// (requested height, width, height, path) per line.
    thumbnails: Vec<(u32, u32, u32, String)>,
    peak_rss_kb: u64,
}

fn run_thumbnail(input: &Path, heights: &[u32], out: &Path) -> Run {
    let mut command = Command::new(worker_binary());
    command.arg("thumbnail").arg(input).arg("--out").arg(out).arg("--stats");
    for h in heights {
        command.args(["--height", &h.to_string()]);
    }
    let output = command.output().expect("run imageapi-worker thumbnail");
    assert!(output.status.success(), "thumbnail failed: {}", String::from_utf8_lossy(&output.stderr));
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let mut run = Run { thumbnails: Vec::new(), peak_rss_kb: 0 };
    for line in stdout.lines() {
        let fields: Vec<&str> = line.split('\t').collect();
        match fields.as_slice() {
            ["peak_rss_kb", kb] => run.peak_rss_kb = kb.parse().expect("kB"),
            ["pipeline_ms", _] => {}
            [height, size, path] => {
                let (w, h) = size.split_once('x').expect("WxH");
                run.thumbnails.push((
                    height.parse().expect("h"),
                    w.parse().expect("w"),
                    h.parse().expect("h"),
                    (*path).to_owned(),
                ));
            }
            other => panic!("unexpected output line {other:?} in:\n{stdout}"),
        }
    }
    assert!(run.peak_rss_kb > 0, "peak memory reported:\n{stdout}");
    run
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> std::path::PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, bytes).expect("write input");
    path
}

/// A 6000×4000 photo-like JPEG (smooth colour with fine texture).
fn big_jpeg() -> Vec<u8> {
    let image = RgbImage::from_fn(6000, 4000, |x, y| {
        let texture = ((x * 7 + y * 13) % 23) as u8;
        Rgb([(x / 24) as u8 ^ texture, (y / 16) as u8, ((x + y) / 40) as u8])
    });
    encode_jpeg(&image)
}

#[test]
fn the_one_shot_command_writes_each_height_and_prints_its_size() {
    let dir = tempfile::tempdir().expect("temp dir");
    let input = write(dir.path(), "big.jpg", &big_jpeg());
    let out = dir.path().join("out");
    let run = run_thumbnail(&input, &[200, 400], &out);
    let sizes: Vec<(u32, u32, u32)> = run.thumbnails.iter().map(|t| (t.0, t.1, t.2)).collect();
    assert_eq!(sizes, vec![(200, 300, 200), (400, 600, 400)]);
    for (_, w, h, path) in &run.thumbnails {
        let image = image::open(path).expect("a written thumbnail decodes");
        assert_eq!((image.width(), image.height()), (*w, *h));
        assert!(path.ends_with(".jpg"));
    }
    // 24 megapixels: a full RGB decode alone would be 72 MB.
    assert!(run.peak_rss_kb <= 64 * 1024, "peak RSS {} kB for a 6000x4000 JPEG", run.peak_rss_kb);
}

#[test]
fn the_corpus_bird_stays_under_64_mb() {
    let Some(bird) = corpus("photo-bird-6028x3391.jpg") else { return };
    let dir = tempfile::tempdir().expect("temp dir");
    let input = write(dir.path(), "bird.jpg", &bird);
    let run = run_thumbnail(&input, &[200, 400], &dir.path().join("out"));
    let sizes: Vec<(u32, u32)> = run.thumbnails.iter().map(|t| (t.1, t.2)).collect();
    assert_eq!(sizes, vec![(356, 200), (711, 400)]);
    assert!(run.peak_rss_kb <= 64 * 1024, "peak RSS {} kB", run.peak_rss_kb);
}

#[test]
fn a_png_job_needs_at_most_one_and_a_half_times_its_decoded_image() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (w, h) = (3000u32, 2000u32);
    let rgba = RgbaImage::from_fn(w, h, |x, y| {
        Rgba([(x % 251) as u8, (y % 241) as u8, ((x ^ y) % 239) as u8, (x % 256) as u8])
    });
    let input = write(dir.path(), "big.png", &encode_png(&DynamicImage::ImageRgba8(rgba)));
    let tiny = write(dir.path(), "tiny.png", &encode_png(&DynamicImage::ImageRgba8(RgbaImage::new(2, 2))));
    let baseline = run_thumbnail(&tiny, &[1], &dir.path().join("out")).peak_rss_kb;
    let run = run_thumbnail(&input, &[200, 400], &dir.path().join("out"));
    let decoded_kb = u64::from(w * h * 4) / 1024;
    let used = run.peak_rss_kb.saturating_sub(baseline);
    assert!(
        used * 2 <= decoded_kb * 3,
        "the job used {used} kB above the process baseline ({baseline} kB) for a {decoded_kb} kB decoded image"
    );
    let (_, tw, th, path) = &run.thumbnails[1];
    assert_eq!((*tw, *th), (600, 400));
    let thumb = image::open(path).expect("decodes");
    assert!(thumb.color().has_alpha(), "alpha kept");
}

/// `imageapi-worker repeat`, the in-process timing `scripts/bench-inprocess` relies on: one line
/// per timed run and file, the untimed first run's thumbnails written at the asked heights.
#[test]
fn the_repeat_command_times_each_run_and_writes_the_first_runs_thumbnails() {
    let dir = tempfile::tempdir().expect("temp dir");
    let jpeg = write(dir.path(), "big.jpg", &big_jpeg());
    let png = write(dir.path(), "flat.png", &encode_png(&DynamicImage::ImageRgb8(RgbImage::new(900, 600))));
    let out = dir.path().join("out");
    let output = Command::new(worker_binary())
        .arg("repeat")
        .arg(&jpeg)
        .arg(&png)
        .args(["--runs", "2", "--threads", "1", "--height", "300", "--height", "100", "--out"])
        .arg(&out)
        .output()
        .expect("run imageapi-worker repeat");
    assert!(output.status.success(), "repeat failed: {}", String::from_utf8_lossy(&output.stderr));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let lines: Vec<(String, f64)> = stdout
        .lines()
        .map(|line| {
            let (file, ms) = line.split_once('\t').unwrap_or_else(|| panic!("FILE<TAB>ms, got {line:?}"));
            (file.to_owned(), ms.parse().unwrap_or_else(|_| panic!("milliseconds in {line:?}")))
        })
        .collect();
    let files: Vec<&str> = lines.iter().map(|(file, _)| file.as_str()).collect();
    let (jpeg_name, png_name) = (jpeg.display().to_string(), png.display().to_string());
    assert_eq!(files, [&jpeg_name, &jpeg_name, &png_name, &png_name]);
    assert!(lines.iter().all(|(_, ms)| *ms > 0.0), "positive timings: {stdout}");
    for (name, width, height) in
        [("big-300.jpg", 450, 300), ("big-100.jpg", 150, 100), ("flat-300.png", 450, 300), ("flat-100.png", 150, 100)]
    {
        let image = image::open(out.join(name)).unwrap_or_else(|e| panic!("{name} written and decodable: {e}"));
        assert_eq!((image.width(), image.height()), (width, height), "{name}");
    }
    assert_eq!(std::fs::read_dir(&out).expect("out dir").count(), 4, "only the first run is written");
}
