//! A fuzzer that runs on stable Rust: `cargo fuzz` needs nightly, which these machines cannot
//! fetch. It is a deterministic mutation loop ([`Fuzzer`]): seeds (small images made here, the
//! corpus' photos, the regression inputs) are mutated with byte-level and marker-aware
//! mutations ([`mutate`]) and fed to two targets ([`Target`]):
//!
//! - `jpeg`: imageapi's own DCT-scaled JPEG decoder, alone, at every scale, on any input
//!   (the real flow shows it only files the upload check passed);
//! - `upload`: what an upload and its job do: the upload check (`probe`), the render memory
//!   estimate, and, within the limits, the thumbnails.
//!
//! A panic, or an input that takes longer than the hang limit, is a finding: the input is
//! written to the findings directory. Inputs that once failed live in `fuzz/regressions/` and
//! are replayed by this crate's tests.

use std::panic::{catch_unwind, AssertUnwindSafe};

use imageapi_shared::pipeline;

use imageapi_core::image::{Limits, ThumbnailFormat};

/// What a run feeds its inputs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    Jpeg,
    Upload,
}

impl Target {
    pub const ALL: [Target; 2] = [Target::Jpeg, Target::Upload];

    pub fn name(self) -> &'static str {
        match self {
            Target::Jpeg => "jpeg",
            Target::Upload => "upload",
        }
    }

    pub fn parse(name: &str) -> Option<Target> {
        Target::ALL.into_iter().find(|t| t.name() == name)
    }

    /// Runs one input: `Ok(true)` if it went deep (decoded, or passed the upload check: worth
    /// mutating further), `Err` with the panic's message.
    pub fn run(self, input: &[u8]) -> Result<bool, String> {
        catch_unwind(AssertUnwindSafe(|| match self {
            Target::Jpeg => decode_jpeg(input),
            Target::Upload => upload(input),
        }))
        .map_err(|panic| {
            panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                .unwrap_or_else(|| "a panic without a message".to_owned())
        })
    }
}

/// The limits of the fuzzed upload path: the server's defaults, with a smaller memory budget
/// so that one input cannot take the fuzzer's machine (the budget is what bounds a render).
pub fn limits() -> Limits {
    Limits { max_decode_memory: 256 << 20, ..Limits::default() }
}

/// Most decoded bytes the `jpeg` target lets the decoder produce (it has no budget of its own;
/// in the real flow the memory plan decides the scale).
const MAX_DECODED_BYTES: u64 = 64 << 20;

fn decode_jpeg(input: &[u8]) -> bool {
    let mut decoded = false;
    for eighths in [1, 2, 4, 8] {
        decoded |= pipeline::fuzzing::decode_jpeg_scaled(input, eighths, MAX_DECODED_BYTES);
    }
    decoded
}

fn upload(input: &[u8]) -> bool {
    let limits = limits();
    if pipeline::probe(input, &limits).is_err() {
        return false;
    }
    let heights = [400, 200];
    // `make_thumbnails` below makes the source format only.
    let estimate = pipeline::render_memory_estimate(input, &heights, &[ThumbnailFormat::Source], &limits);
    if estimate > limits.max_decode_memory {
        return true;
    }
    // Errors (damaged data) are answers, not findings; only a panic is.
    let _ = pipeline::make_thumbnails(input, &heights, &limits);
    true
}

/// A small, fast, reproducible generator (xorshift64*): the same seed gives the same run.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.max(1))
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A number below `n` (0 when `n` is 0).
    pub fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next_u64() % n as u64) as usize
        }
    }
}

/// Values that make headers interesting: zero, one, the edges of bytes and words.
const INTERESTING_U8: [u8; 8] = [0x00, 0x01, 0x02, 0x08, 0x10, 0x7f, 0x80, 0xff];
const INTERESTING_U16: [u16; 10] = [0, 1, 2, 3, 8, 16, 0x00ff, 0x7fff, 0x8000, 0xffff];

/// Applies one to four mutations to `input`; `other` is another seed to splice from.
pub fn mutate(input: &mut Vec<u8>, other: &[u8], rng: &mut Rng) {
    for _ in 0..1 + rng.below(4) {
        mutate_once(input, other, rng);
    }
    // Bounded like an upload, so a run of insertions cannot grow inputs without end.
    input.truncate(4 << 20);
}

fn mutate_once(input: &mut Vec<u8>, other: &[u8], rng: &mut Rng) {
    if input.is_empty() {
        input.push(rng.next_u64() as u8);
        return;
    }
    let at = position(input, rng);
    match rng.below(10) {
        0 => input[at] ^= 1 << rng.below(8),
        1 => input[at] = rng.next_u64() as u8,
        2 => input[at] = INTERESTING_U8[rng.below(INTERESTING_U8.len())],
        3 => {
            let value = INTERESTING_U16[rng.below(INTERESTING_U16.len())].to_be_bytes();
            let end = (at + 2).min(input.len());
            input[at..end].copy_from_slice(&value[..end - at]);
        }
        4 => {
            let end = (at + 1 + rng.below(64)).min(input.len());
            input.drain(at..end);
        }
        5 => {
            let len = 1 + rng.below(64);
            let bytes: Vec<u8> = (0..len).map(|_| rng.next_u64() as u8).collect();
            input.splice(at..at, bytes);
        }
        6 => {
            // Repeat a span: duplicated segments, scans and chunks.
            let end = (at + 1 + rng.below(512)).min(input.len());
            let span = input[at..end].to_vec();
            input.splice(at..at, span);
        }
        7 => input.truncate(at.max(1)),
        8 if !other.is_empty() => {
            // Splice: this input's head, another's tail.
            let from = rng.below(other.len());
            input.truncate(at);
            input.extend_from_slice(&other[from..]);
        }
        _ => {
            // A marker or chunk boundary: JPEG's 0xFF, then the segment's length or a code.
            input[at] = 0xff;
            if at + 1 < input.len() {
                input[at + 1] = [0xc0, 0xc2, 0xc4, 0xda, 0xdb, 0xdd, 0xd9, 0xe1, 0xfe][rng.below(9)];
            }
        }
    }
}

/// Where to mutate: anywhere, but half the time within the first 2 KiB (the headers, where a
/// change reaches most code) or just after a 0xFF (a JPEG marker).
fn position(input: &[u8], rng: &mut Rng) -> usize {
    match rng.below(4) {
        0 => rng.below(input.len().min(2048)),
        1 => {
            let start = rng.below(input.len());
            input[start..].iter().position(|&b| b == 0xff).map_or(start, |i| (start + i + 1).min(input.len() - 1))
        }
        _ => rng.below(input.len()),
    }
}

/// Small seeds made here, one per kind of file the decoders see: baseline JPEGs (colour,
/// grey, odd sizes) and PNGs (grey, RGB, RGBA, 16-bit).
pub fn made_seeds() -> Vec<Vec<u8>> {
    use image::{DynamicImage, ImageBuffer, ImageFormat, Luma, Rgb, Rgba};
    let mut seeds = Vec::new();
    let mut encode = |image: DynamicImage, format: ImageFormat| {
        let mut out = std::io::Cursor::new(Vec::new());
        if image.write_to(&mut out, format).is_ok() {
            seeds.push(out.into_inner());
        }
    };
    let rgb = |w, h| {
        DynamicImage::ImageRgb8(ImageBuffer::from_fn(w, h, |x, y| {
            Rgb([(x * 7) as u8, (y * 5) as u8, ((x ^ y) * 3) as u8])
        }))
    };
    encode(rgb(64, 48), ImageFormat::Jpeg);
    encode(rgb(17, 33), ImageFormat::Jpeg);
    encode(rgb(300, 9), ImageFormat::Jpeg);
    encode(DynamicImage::ImageLuma8(ImageBuffer::from_fn(40, 40, |x, y| Luma([(x * y) as u8]))), ImageFormat::Jpeg);
    encode(rgb(32, 32), ImageFormat::Png);
    encode(
        DynamicImage::ImageRgba8(ImageBuffer::from_fn(24, 20, |x, y| {
            Rgba([x as u8 * 9, y as u8 * 11, 90, (x * y) as u8])
        })),
        ImageFormat::Png,
    );
    encode(
        DynamicImage::ImageLuma16(ImageBuffer::from_fn(16, 16, |x, y| Luma([(x * 4000 + y) as u16]))),
        ImageFormat::Png,
    );
    seeds
}
