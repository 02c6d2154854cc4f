//! The pipeline without a queue, for comparisons and benchmarks: `thumbnail` runs exactly what
//! a render actor runs ([`make_thumbnails`]) on one file; `bench` runs `thumbnail` as a whole
//! process per image and run, the way other tools are timed; `repeat` times it in-process, the
//! way a library is timed.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use imageapi_core::image::{ImageFormat, Limits};
use imageapi_shared::pipeline::{make_thumbnails, set_thread_budget, Thumbnail};

pub fn thumbnail(input: &Path, heights: &[u32], out: &Path, stats: bool, limits: &Limits) -> anyhow::Result<()> {
    let original = std::fs::read(input).with_context(|| format!("reading {}", input.display()))?;
    let format = ImageFormat::detect(&original).context("not a PNG or JPEG")?;
    let started = Instant::now();
    // Handed over as the worker does, so the file is freed once decoded.
    let thumbnails = make_thumbnails(bytes::Bytes::from(original), heights, limits)?;
    let pipeline = started.elapsed();
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    for (thumb, path) in thumbnails.iter().zip(write_thumbnails(input, format, &thumbnails, out)?) {
        println!("{}\t{}x{}\t{}", thumb.requested_height, thumb.width, thumb.height, path.display());
    }
    if stats {
        println!("pipeline_ms\t{:.1}", pipeline.as_secs_f64() * 1000.0);
        if let Some(kb) = peak_rss_kb() {
            println!("peak_rss_kb\t{kb}");
        }
    }
    Ok(())
}

/// Writes each thumbnail of `input` into `out` as `STEM-HEIGHT.EXT`; returns the paths in order.
fn write_thumbnails(
    input: &Path,
    format: ImageFormat,
    thumbnails: &[Thumbnail],
    out: &Path,
) -> anyhow::Result<Vec<PathBuf>> {
    let stem = input.file_stem().and_then(|s| s.to_str()).unwrap_or("thumbnail");
    thumbnails
        .iter()
        .map(|thumb| {
            let path = out.join(format!("{stem}-{}.{}", thumb.requested_height, format.extension()));
            std::fs::write(&path, &thumb.bytes).with_context(|| format!("writing {}", path.display()))?;
            Ok(path)
        })
        .collect()
}

/// The process's peak resident set (VmHWM), in kB; Linux only.
fn peak_rss_kb() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    match values.len() {
        0 => 0.0,
        n if n % 2 == 1 => values[n / 2],
        n => (values[n / 2 - 1] + values[n / 2]) / 2.0,
    }
}

pub fn bench(dir: &Path, heights: &[u32], runs: usize) -> anyhow::Result<()> {
    let exe = std::env::current_exe()?;
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            matches!(
                p.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase).as_deref(),
                Some("jpg" | "jpeg" | "png")
            )
        })
        .collect();
    files.sort();
    if files.is_empty() {
        bail!("no PNG or JPEG files in {}", dir.display());
    }
    let out = std::env::temp_dir().join(format!("imageapi-bench-{}", std::process::id()));
    let height_args: Vec<String> = heights.iter().flat_map(|h| ["--height".to_owned(), h.to_string()]).collect();
    println!(
        "{:<44} {:>10} {:>11} {:>12} {:>9}",
        "image",
        "process ms",
        "pipeline ms",
        "peak RSS MB",
        format!("heights {}", heights.iter().map(u32::to_string).collect::<Vec<_>>().join("+"))
    );
    for file in &files {
        let mut wall = Vec::with_capacity(runs);
        let mut pipeline = Vec::with_capacity(runs);
        let mut peak = 0u64;
        for _ in 0..runs.max(1) {
            let started = Instant::now();
            let output = Command::new(&exe)
                .arg("thumbnail")
                .arg(file)
                .args(&height_args)
                .arg("--out")
                .arg(&out)
                .arg("--stats")
                .output()
                .context("running the thumbnail command")?;
            let elapsed: Duration = started.elapsed();
            if !output.status.success() {
                bail!("{}: {}", file.display(), String::from_utf8_lossy(&output.stderr));
            }
            wall.push(elapsed.as_secs_f64() * 1000.0);
            for line in String::from_utf8_lossy(&output.stdout).lines() {
                match line.split_once('\t') {
                    Some(("pipeline_ms", v)) => pipeline.push(v.parse().unwrap_or(0.0)),
                    Some(("peak_rss_kb", v)) => peak = peak.max(v.parse().unwrap_or(0)),
                    _ => {}
                }
            }
        }
        let name = file.file_name().and_then(|n| n.to_str()).unwrap_or("?");
        println!("{:<44} {:>10.1} {:>11.1} {:>12.1}", name, median(wall), median(pipeline), peak as f64 / 1024.0);
    }
    let _ = std::fs::remove_dir_all(&out);
    Ok(())
}

pub fn repeat(
    files: &[PathBuf],
    heights: &[u32],
    runs: usize,
    threads: usize,
    out: Option<&Path>,
    limits: &Limits,
) -> anyhow::Result<()> {
    use std::io::Write;
    set_thread_budget(threads);
    if let Some(out) = out {
        std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    }
    let mut stdout = std::io::stdout().lock();
    for file in files {
        let original = bytes::Bytes::from(std::fs::read(file).with_context(|| format!("reading {}", file.display()))?);
        let format = ImageFormat::detect(&original).context("not a PNG or JPEG")?;
        for run in 0..=runs {
            let started = Instant::now();
            // A cheap clone of the handle, handed over as the worker hands over the original.
            let thumbnails = make_thumbnails(original.clone(), heights, limits)?;
            let elapsed = started.elapsed();
            if run == 0 {
                if let Some(out) = out {
                    write_thumbnails(file, format, &thumbnails, out)?;
                }
            } else {
                writeln!(stdout, "{}\t{:.3}", file.display(), elapsed.as_secs_f64() * 1000.0)?;
            }
        }
        stdout.flush()?;
    }
    Ok(())
}
