//! `render` timed in-process, for scripts/bench-inprocess `--formats all`: per file, one
//! untimed warm-up run (which writes the variants to `--out DIR` when given) and RUNS timed
//! runs of the whole job: one decode, every height in the source format, WebP and AVIF, and
//! the ThumbHash. Prints "file<TAB>ms" per timed run, like `imageapi-worker repeat`.
//!
//!   cargo build --release -p imageapi-shared --example render-repeat
//!   target/release/examples/render-repeat --threads 1 --runs 3 [--out DIR] [--formats source,webp,avif] \
//!       --height 400 --height 200 FILE...

use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

use imageapi_core::image::{ImageFormat, Limits, ThumbnailFormat};
use imageapi_shared::pipeline::{render, set_thread_budget};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (mut threads, mut runs, mut heights, mut out, mut files) = (1usize, 3usize, Vec::new(), None, Vec::new());
    let mut formats = vec![ThumbnailFormat::Source, ThumbnailFormat::Webp, ThumbnailFormat::Avif];
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--threads" => threads = args.next().ok_or("--threads N")?.parse()?,
            "--runs" => runs = args.next().ok_or("--runs N")?.parse()?,
            "--height" => heights.push(args.next().ok_or("--height H")?.parse::<u32>()?),
            "--out" => out = Some(PathBuf::from(args.next().ok_or("--out DIR")?)),
            // Comma-separated subset, to see what each format costs: source,webp,avif.
            "--formats" => {
                formats = args
                    .next()
                    .ok_or("--formats LIST")?
                    .split(',')
                    .map(|f| serde_json::from_value(serde_json::Value::String(f.to_owned())))
                    .collect::<Result<_, _>>()?;
            }
            _ => files.push(PathBuf::from(arg)),
        }
    }
    heights.sort_unstable_by(|a, b| b.cmp(a));
    set_thread_budget(threads);
    let limits = Limits::default();
    let mut stdout = std::io::stdout().lock();
    for file in &files {
        let original = bytes::Bytes::from(std::fs::read(file)?);
        let source = ImageFormat::detect(&original).ok_or("not a PNG or JPEG")?;
        for run in 0..=runs {
            let started = Instant::now();
            let rendered = render(original.clone(), &heights, &formats, &limits)?;
            let elapsed = started.elapsed();
            if run > 0 {
                writeln!(stdout, "{}\t{:.3}", file.display(), elapsed.as_secs_f64() * 1000.0)?;
                continue;
            }
            let Some(dir) = &out else { continue };
            std::fs::create_dir_all(dir)?;
            let stem = file.file_stem().and_then(|s| s.to_str()).unwrap_or("image");
            for t in &rendered.thumbnails {
                for v in &t.variants {
                    let bytes = v.result.as_ref().map_err(|e| format!("{stem} {}: {e}", t.requested_height))?;
                    let path = dir.join(format!("{stem}-{}.{}", t.requested_height, v.format.extension(source)));
                    std::fs::write(path, bytes)?;
                }
            }
            if let Some(hash) = &rendered.thumbhash {
                std::fs::write(dir.join(format!("{stem}.thumbhash")), hash)?;
            }
        }
        stdout.flush()?;
    }
    Ok(())
}
