//! Settings read by both the server and the workers, defined once: the same variables, flags,
//! defaults and help text on both sides.

use std::time::Duration;

use clap::Args;

use imageapi_core::image::{Limits, DEFAULT_MAX_DECODE_MEMORY_MIB};

/// The image limits: checked at upload (from the header) and again before a worker decodes.
#[derive(Debug, Clone, Args)]
pub struct LimitSettings {
    /// Largest accepted upload in bytes.
    #[arg(long, env = "IMAGEAPI_MAX_UPLOAD_BYTES", default_value_t = Limits::default().max_bytes, global = true)]
    pub max_upload_bytes: u64,
    /// Largest accepted image in pixels (width × height).
    #[arg(long, env = "IMAGEAPI_MAX_PIXELS", default_value_t = Limits::default().max_pixels, global = true)]
    pub max_pixels: u64,
    /// Largest accepted width or height in pixels.
    #[arg(long, env = "IMAGEAPI_MAX_SIDE", default_value_t = Limits::default().max_side, global = true)]
    pub max_side: u32,
    /// Most scans a (progressive) JPEG may have. Real encoders write 1 to about 12; files with
    /// hundreds cost a decoder time in proportion, so they are refused at upload (413).
    #[arg(long, env = "IMAGEAPI_MAX_JPEG_SCANS", default_value_t = Limits::default().max_scans, global = true)]
    pub max_jpeg_scans: u32,
    /// Most memory one image's render may need, in MiB, as estimated from its headers (the
    /// decoder's buffers, a progressive JPEG's coefficients, the resized copies). An upload is
    /// refused (413) when even its smallest thumbnail would need more; a job needing more for
    /// its tier's heights fails before decoding. The default fits the largest image the other
    /// default limits accept (100 megapixels of 16-bit RGBA PNG: about 1.2 GB).
    #[arg(long, env = "IMAGEAPI_MAX_DECODE_MEMORY_MB", default_value_t = DEFAULT_MAX_DECODE_MEMORY_MIB, global = true)]
    pub max_decode_memory_mb: u64,
}

impl LimitSettings {
    pub fn limits(&self) -> Limits {
        Limits {
            max_bytes: self.max_upload_bytes,
            max_pixels: self.max_pixels,
            max_side: self.max_side,
            max_scans: self.max_jpeg_scans.max(1),
            max_decode_memory: self.max_decode_memory_mb.max(1).saturating_mul(1024 * 1024),
        }
    }
}

/// How thumbnail rendering is bounded, wherever it runs (worker processes, or the server in
/// embedded mode).
#[derive(Debug, Clone, Args)]
pub struct RenderSettings {
    /// Memory the renders of one process may use together, in MiB. Each job is estimated from
    /// its headers before it starts and waits until its share is free; a job larger than the
    /// whole budget runs alone. The default fits the largest image the default limits accept
    /// (100 megapixels of 16-bit RGBA PNG: about 1.2 GB).
    #[arg(long, env = "IMAGEAPI_RENDER_MEMORY_MB", default_value_t = 1536, global = true)]
    pub render_memory_mb: u64,
    /// Longest time one render may take; then the job's thumbnails end `failed` with the reason.
    #[arg(long, env = "IMAGEAPI_RENDER_TIMEOUT_SECS", default_value_t = 60, global = true)]
    pub render_timeout_secs: u64,
}

impl Default for RenderSettings {
    fn default() -> Self {
        Self { render_memory_mb: 1536, render_timeout_secs: 60 }
    }
}

impl RenderSettings {
    pub fn memory_budget_bytes(&self) -> u64 {
        self.render_memory_mb.max(1).saturating_mul(1024 * 1024)
    }

    pub fn timeout(&self) -> Duration {
        Duration::from_secs(self.render_timeout_secs.max(1))
    }
}

/// A name for this process among its peers (workers in the queue, servers on the results
/// stream) when none is configured: `host-pid`.
pub fn host_and_pid(fallback_host: &str) -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| fallback_host.to_owned());
    format!("{host}-{}", std::process::id())
}
