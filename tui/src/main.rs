//! `imageapi-tui`: the admin terminal UI, a client of the server's admin API.
//!
//! - [`api`]: the HTTP client; the answers are the server's own types (`imageapi_core::api`).
//! - [`action`]: [`action::Action`] (every state change) and [`action::Command`] (network work).
//! - [`app`]: the state and [`app::App::update`], the only place it changes; each view (users,
//!   tiers, images with previews, links, queue) owns its list, selection and part of `update`.
//! - [`ui`]: drawing from `&App`.
//! - [`net`]: runs commands on background tasks; [`tui`]: terminal setup and the event loop;
//!   [`clipboard`]: copying through the terminal (OSC 52); [`units`]: byte sizes typed and read.

mod action;
mod api;
mod app;
mod clipboard;
#[cfg(test)]
mod fixtures;
mod net;
mod tui;
mod ui;
mod units;

use std::io::Read;

use clap::Parser;

use crate::api::{ApiClient, Credentials};

#[derive(Debug, Parser)]
#[command(
    name = "imageapi-tui",
    version,
    about = "Admin terminal UI for imageapi (users, tiers, images, queue, links)"
)]
struct Cli {
    /// The server's base URL.
    #[arg(long, env = "IMAGEAPI_URL", default_value = "http://127.0.0.1:8000")]
    url: String,
    /// An admin's username (with IMAGEAPI_PASSWORD, or --password-stdin).
    #[arg(long, env = "IMAGEAPI_USERNAME")]
    username: Option<String>,
    /// Read the password from standard input's first line instead of IMAGEAPI_PASSWORD.
    #[arg(long)]
    password_stdin: bool,
    /// An admin's API token instead of a username and password.
    #[arg(long, env = "IMAGEAPI_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// How image previews are drawn: `auto` asks the terminal (kitty, sixel, iTerm2), falling
    /// back to coloured half blocks, which work everywhere (SSH, tmux).
    #[arg(long, env = "IMAGEAPI_TUI_GRAPHICS", value_enum, default_value = "auto")]
    graphics: tui::GraphicsChoice,
}

fn credentials(cli: &Cli) -> anyhow::Result<Credentials> {
    if let Some(token) = &cli.token {
        return Ok(Credentials::Bearer(token.clone()));
    }
    let Some(username) = &cli.username else {
        anyhow::bail!("give an admin's --token (IMAGEAPI_TOKEN) or --username (IMAGEAPI_USERNAME) with a password");
    };
    let password = if cli.password_stdin {
        let mut line = String::new();
        std::io::stdin().read_to_string(&mut line)?;
        line.lines().next().unwrap_or_default().to_owned()
    } else {
        // The environment only: a flag would show in `ps`.
        std::env::var("IMAGEAPI_PASSWORD")
            .map_err(|_| anyhow::anyhow!("set IMAGEAPI_PASSWORD or use --password-stdin"))?
    };
    Ok(Credentials::Basic { username: username.clone(), password })
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let result = credentials(&cli).and_then(|credentials| {
        let api = ApiClient::new(&cli.url, credentials)?;
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
        runtime.block_on(tui::run(api, cli.graphics))
    });
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            tui::restore();
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
