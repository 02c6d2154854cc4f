//! `imageapi-worker`: consume thumbnail jobs from Redis until SIGTERM; or run the pipeline
//! once (`thumbnail`), over a folder (`bench`) or repeatedly in-process (`repeat`).

use clap::Parser;
use imageapi_worker::config::{Cli, Command};

fn main() -> std::process::ExitCode {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).try_init();
    imageapi_shared::malloc::tune_for_servers();
    imageapi_shared::store::install_tls_provider();
    let cli = Cli::parse();
    let result = match cli.command {
        None | Some(Command::Run) => imageapi_worker::service::run(cli.config),
        Some(Command::Thumbnail { input, heights, out, stats }) => {
            imageapi_worker::oneshot::thumbnail(&input, &heights, &out, stats, &cli.config.limits())
        }
        Some(Command::Bench { dir, heights, runs }) => imageapi_worker::oneshot::bench(&dir, &heights, runs),
        Some(Command::Repeat { files, heights, runs, threads, out }) => {
            imageapi_worker::oneshot::repeat(&files, &heights, runs, threads, out.as_deref(), &cli.config.limits())
        }
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
