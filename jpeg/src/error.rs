//! Why the decoder declines a file: [`DecodeError`].

/// Why [`ScaledJpeg`](crate::ScaledJpeg) declined a file or a decode. Either way the caller
/// may hand the file to a general decoder, which also gives the definitive error for a broken
/// file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// A file this decoder does not handle, though it may be a good JPEG: CMYK, RGB-coded,
    /// 12-bit, arithmetic-coded or lossless, unusual sampling, a baseline file in several
    /// scans, more scans or tables than any encoder writes.
    #[error("not a JPEG this decoder reads: {0}")]
    Unsupported(&'static str),
    /// Broken data: the headers or the entropy-coded data break the format, or end early.
    #[error("broken JPEG data: {0}")]
    Corrupt(&'static str),
    /// A scale other than 1, 2 or 4 eighths was asked for.
    #[error("{0}/8 is not a scale this decoder decodes to (1/8, 2/8 or 4/8)")]
    Scale(u32),
    /// A thread of the decode panicked: a bug, caught rather than spread to the caller.
    #[error("a decoding thread panicked")]
    Panicked,
}
