//! The terminal: raw mode and the alternate screen on start, restored on exit, on error and
//! on panic; the event loop that turns keys, ticks and network answers into actions.

use std::io::{stdout, Write};
use std::time::Duration;

use anyhow::Context;
use crossterm::event::{Event, EventStream};
use crossterm::terminal::{
    disable_raw_mode, enable_raw_mode, Clear, ClearType, EnterAlternateScreen, LeaveAlternateScreen,
};
use crossterm::{cursor, execute};
use futures_util::StreamExt;
use ratatui::backend::CrosstermBackend;
use ratatui::Terminal;
use tokio::sync::mpsc;

use crate::action::Action;
use crate::api::ApiClient;
use crate::app::App;

/// Views refresh at least this often.
const TICK: Duration = Duration::from_secs(1);

/// Puts the terminal back as it was. Safe to call more than once.
pub fn restore() {
    let _ = disable_raw_mode();
    let _ = execute!(stdout(), LeaveAlternateScreen, cursor::Show);
}

/// Restores the terminal before the panic message is printed, so it is readable.
fn install_panic_hook() {
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        restore();
        previous(info);
    }));
}

/// Restores the terminal when dropped (normal exit and `?` errors alike).
struct Guard;

impl Drop for Guard {
    fn drop(&mut self) {
        restore();
    }
}

/// OSC 52: asks the terminal to put `text` on the clipboard (terminals that allow it do).
pub fn copy_to_clipboard(text: &str) {
    use base64::Engine;
    let encoded = base64::engine::general_purpose::STANDARD.encode(text);
    let mut out = stdout();
    let _ = write!(out, "\x1b]52;c;{encoded}\x07");
    let _ = out.flush();
}

pub async fn run(api: ApiClient) -> anyhow::Result<()> {
    install_panic_hook();
    enable_raw_mode().context("the terminal does not support raw mode (is this a TTY?)")?;
    let _guard = Guard;
    // Cleared with a plain escape: ratatui's clear() asks the terminal for the cursor position,
    // which a terminal that does not answer (some pseudo-terminals) turns into a startup error.
    execute!(stdout(), EnterAlternateScreen, cursor::Hide, Clear(ClearType::All))?;
    let mut terminal = Terminal::new(CrosstermBackend::new(stdout()))?;

    let mut app = App::new(api.base(), chrono::Utc::now());
    let (answers, mut incoming) = mpsc::unbounded_channel::<Action>();
    let mut events = EventStream::new();
    let mut tick = tokio::time::interval(TICK);

    loop {
        terminal.draw(|frame| crate::ui::draw(frame, &app))?;
        let action = tokio::select! {
            event = events.next() => match event {
                Some(Ok(Event::Key(key))) => app.action_for(key),
                // A resize is handled by the next draw.
                Some(Ok(_)) => None,
                Some(Err(e)) => return Err(e).context("reading the terminal"),
                None => Some(Action::Quit),
            },
            _ = tick.tick() => Some(Action::Tick),
            Some(answer) = incoming.recv() => Some(answer),
        };
        if let Some(action) = action {
            for command in app.update(action) {
                crate::net::spawn(&api, command, answers.clone());
            }
        }
        if app.quit {
            return Ok(());
        }
    }
}
