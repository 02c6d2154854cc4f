//! `imageapi-fuzz`: runs the mutation loop of [`imageapi_fuzz`] for a bounded time.
//!
//! ```text
//! cargo run -p imageapi-fuzz -- [--target jpeg|upload|all] [--seconds 60] [--seed 1]
//!                               [--corpus ../shared/corpus] [--findings target/fuzz-findings]
//! ```
//! Prints executions, time and findings; exits 1 if anything panicked or hung (the inputs are
//! in the findings directory: add them to `fuzz/regressions/` once fixed).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use imageapi_fuzz::{made_seeds, mutate, Rng, Target};

/// Corpus files larger than this are left out of the seeds: a 20 MB decode per execution
/// would make a bounded run see a few hundred inputs.
const MAX_SEED_BYTES: u64 = 2 << 20;
/// Mutated inputs kept for further mutation (those that went deep).
const POOL: usize = 256;

struct Options {
    targets: Vec<Target>,
    seconds: u64,
    seed: u64,
    corpus: Vec<PathBuf>,
    findings: PathBuf,
    hang: Duration,
}

fn options() -> Result<Options, String> {
    let mut options = Options {
        targets: Target::ALL.to_vec(),
        seconds: 60,
        seed: 1,
        corpus: vec![PathBuf::from("../shared/corpus"), PathBuf::from("fuzz/regressions")],
        findings: PathBuf::from("target/fuzz-findings"),
        hang: Duration::from_secs(20),
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let mut value = || args.next().ok_or_else(|| format!("{flag} needs a value"));
        let number = |v: String| v.parse::<u64>().map_err(|_| format!("{flag}: not a number: {v}"));
        match flag.as_str() {
            "--target" => {
                let v = value()?;
                options.targets = match v.as_str() {
                    "all" => Target::ALL.to_vec(),
                    name => vec![Target::parse(name).ok_or_else(|| format!("unknown target {name}"))?],
                }
            }
            "--seconds" => options.seconds = number(value()?)?,
            "--seed" => options.seed = number(value()?)?,
            "--corpus" => options.corpus.push(PathBuf::from(value()?)),
            "--findings" => options.findings = PathBuf::from(value()?),
            "--hang-seconds" => options.hang = Duration::from_secs(number(value()?)?),
            "--help" | "-h" => return Err(include_str!("main.rs").lines().take(9).collect::<Vec<_>>().join("\n")),
            other => return Err(format!("unknown argument {other} (see --help)")),
        }
    }
    Ok(options)
}

/// Every PNG or JPEG file in `dirs` up to [`MAX_SEED_BYTES`], in a stable order.
fn file_seeds(dirs: &[PathBuf]) -> Vec<(String, Vec<u8>)> {
    let mut files = Vec::new();
    for dir in dirs {
        let Ok(entries) = std::fs::read_dir(dir) else { continue };
        let mut paths: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
        paths.sort();
        for path in paths {
            let small = path.metadata().is_ok_and(|m| m.is_file() && m.len() <= MAX_SEED_BYTES);
            let image = path.extension().is_some_and(|e| matches!(e.to_str(), Some("jpg" | "jpeg" | "png" | "bin")));
            if small && image {
                if let Ok(bytes) = std::fs::read(&path) {
                    files.push((path.display().to_string(), bytes));
                }
            }
        }
    }
    files
}

fn save(findings: &Path, target: Target, input: &[u8], why: &str) -> PathBuf {
    let _ = std::fs::create_dir_all(findings);
    let path = findings.join(format!("{}-{:016x}.bin", target.name(), fnv(input)));
    if let Err(e) = std::fs::write(&path, input) {
        eprintln!("could not write {}: {e}", path.display());
    }
    eprintln!("FINDING ({}): {why}\n  input: {}", target.name(), path.display());
    path
}

fn fnv(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}

/// Ends the process if one execution runs longer than `limit`, keeping its input.
fn watchdog(limit: Duration, findings: PathBuf, current: Arc<Mutex<(Target, Vec<u8>)>>, started_ms: Arc<AtomicU64>) {
    let clock = Instant::now();
    std::thread::spawn(move || loop {
        std::thread::sleep(Duration::from_millis(500));
        let started = started_ms.load(Ordering::Acquire);
        let now = clock.elapsed().as_millis() as u64;
        if started != u64::MAX && now.saturating_sub(started) > limit.as_millis() as u64 {
            let (target, input) = current.lock().map(|c| c.clone()).unwrap_or((Target::Jpeg, Vec::new()));
            save(&findings, target, &input, &format!("one input ran longer than {limit:?}"));
            std::process::exit(1);
        }
    });
}

fn main() {
    let options = match options() {
        Ok(o) => o,
        Err(message) => {
            eprintln!("{message}");
            std::process::exit(2);
        }
    };
    // Panics are findings, reported by the loop; the default hook would print each twice.
    std::panic::set_hook(Box::new(|_| {}));
    let mut seeds: Vec<(String, Vec<u8>)> =
        made_seeds().into_iter().enumerate().map(|(i, s)| (format!("made-{i}"), s)).collect();
    seeds.extend(file_seeds(&options.corpus));
    let seed_count = seeds.len();
    let mut pool: Vec<Vec<u8>> = seeds.iter().map(|(_, bytes)| bytes.clone()).collect();
    let mut rng = Rng::new(options.seed);
    let current = Arc::new(Mutex::new((Target::Jpeg, Vec::new())));
    let clock = Instant::now();
    let started_ms = Arc::new(AtomicU64::new(u64::MAX));
    watchdog(options.hang, options.findings.clone(), current.clone(), started_ms.clone());

    let mut execs = vec![0u64; options.targets.len()];
    let mut deep = vec![0u64; options.targets.len()];
    let mut findings = Vec::new();
    let deadline = Duration::from_secs(options.seconds);
    let mut round = 0usize;
    // The seeds as they are first, then mutations.
    let mut unmutated = pool.clone().into_iter();
    while clock.elapsed() < deadline {
        let which = round % options.targets.len();
        round += 1;
        let target = options.targets[which];
        let input = match unmutated.next() {
            Some(seed) => seed,
            None => {
                let mut input = pool[rng.below(pool.len())].clone();
                let other = &pool[rng.below(pool.len())];
                mutate(&mut input, other, &mut rng);
                input
            }
        };
        if let Ok(mut slot) = current.lock() {
            slot.0 = target;
            slot.1.clone_from(&input);
        }
        started_ms.store(clock.elapsed().as_millis() as u64, Ordering::Release);
        let outcome = target.run(&input);
        started_ms.store(u64::MAX, Ordering::Release);
        execs[which] += 1;
        match outcome {
            Ok(true) => {
                deep[which] += 1;
                if pool.len() < seed_count + POOL {
                    pool.push(input);
                } else {
                    let slot = seed_count + rng.below(POOL);
                    pool[slot] = input;
                }
            }
            Ok(false) => {}
            Err(panic) => findings.push(save(&options.findings, target, &input, &format!("panic: {panic}"))),
        }
    }
    let seconds = clock.elapsed().as_secs_f64();
    println!("imageapi-fuzz: {seed_count} seeds, seed {}, {seconds:.0} s", options.seed);
    for (i, target) in options.targets.iter().enumerate() {
        println!(
            "  {:<6} {:>8} executions ({:.0}/s), {} went deep",
            target.name(),
            execs[i],
            execs[i] as f64 / seconds,
            deep[i]
        );
    }
    println!("  findings: {}", findings.len());
    if !findings.is_empty() {
        std::process::exit(1);
    }
}
