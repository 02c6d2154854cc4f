//! `imageapi-server`: parse the configuration, then serve or run an admin command.

use clap::Parser;
use imageapi_server::config::{Cli, Command};
use imageapi_server::{cli, startup, telemetry};

fn main() -> std::process::ExitCode {
    telemetry::init();
    imageapi_shared::malloc::tune_for_servers();
    imageapi_shared::store::install_tls_provider();
    let cli = Cli::parse();
    let result = match cli.command {
        None | Some(Command::Serve) => startup::serve(cli.config),
        Some(Command::MigrateStore { to }) => cli::migrate_store(&cli.config, &to),
        Some(Command::MigrateRepo { to }) => cli::migrate_repo(&cli.config, &to),
        Some(Command::Createsuperuser { username, password_stdin }) => {
            cli::createsuperuser(&cli.config, &username, password_stdin)
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
