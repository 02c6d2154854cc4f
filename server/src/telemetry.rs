//! Logging through `tracing` to stderr; `RUST_LOG` filters (default `info`).
//! Standard output carries only the "listening on" line, for scripts and tests.

pub fn init() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,sled=warn"));
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).try_init();
}
