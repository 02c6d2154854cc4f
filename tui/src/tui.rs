//! The terminal: raw mode and the alternate screen on start, restored on exit, on error and
//! on panic; the event loop that turns keys, ticks and network answers into actions.

use std::io::stdout;
use std::time::Duration;

use anyhow::Context;
use crossterm::event::{DisableMouseCapture, EnableMouseCapture, Event, EventStream};
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
use crate::ui::Graphics;

/// Views refresh at least this often.
const TICK: Duration = Duration::from_secs(1);

/// Puts the terminal back as it was. Safe to call more than once.
pub fn restore() {
    let _ = disable_raw_mode();
    let _ = execute!(stdout(), DisableMouseCapture, LeaveAlternateScreen, cursor::Show);
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

/// How previews are drawn: what the terminal answers it supports (`Auto`), or one forced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum GraphicsChoice {
    Auto,
    Halfblocks,
    Sixel,
    Kitty,
    Iterm2,
}

/// The graphics protocol the terminal announces in its environment, if any. Asking the
/// terminal itself is left to terminals known to answer: ratatui-image's query reads the
/// terminal from a thread that outlives its timeout, so in one that never answers (a bare
/// pseudo-terminal, some multiplexers) it would swallow the first key and turn raw mode off.
fn announced_protocol(env: impl Fn(&str) -> Option<String>) -> Option<ratatui_image::picker::ProtocolType> {
    use ratatui_image::picker::ProtocolType;
    let term = env("TERM").unwrap_or_default();
    let program = env("TERM_PROGRAM").unwrap_or_default();
    if env("KITTY_WINDOW_ID").is_some() || term.contains("kitty") || program == "ghostty" {
        Some(ProtocolType::Kitty)
    } else if matches!(program.as_str(), "iTerm.app" | "WezTerm") || env("LC_TERMINAL").as_deref() == Some("iTerm2") {
        Some(ProtocolType::Iterm2)
    } else if term.starts_with("foot") || term.starts_with("mlterm") || program == "contour" {
        Some(ProtocolType::Sixel)
    } else {
        None
    }
}

/// How previews will be drawn. A graphics protocol needs the cell size in pixels, which only
/// the terminal can tell (asked with escape sequences, within a timeout); half blocks need
/// nothing and work everywhere.
fn pick_graphics(choice: GraphicsChoice) -> Graphics {
    use ratatui_image::picker::{Picker, ProtocolType};
    let with = |protocol: ProtocolType| {
        let mut picker = Picker::from_query_stdio().unwrap_or_else(|_| Picker::halfblocks());
        picker.set_protocol_type(protocol);
        picker
    };
    Graphics::new(match choice {
        GraphicsChoice::Auto => match announced_protocol(|key| std::env::var(key).ok()) {
            Some(protocol) => with(protocol),
            None => Picker::halfblocks(),
        },
        GraphicsChoice::Halfblocks => Picker::halfblocks(),
        GraphicsChoice::Sixel => with(ProtocolType::Sixel),
        GraphicsChoice::Kitty => with(ProtocolType::Kitty),
        GraphicsChoice::Iterm2 => with(ProtocolType::Iterm2),
    })
}

pub async fn run(api: ApiClient, graphics: GraphicsChoice) -> anyhow::Result<()> {
    install_panic_hook();
    enable_raw_mode().context("the terminal does not support raw mode (is this a TTY?)")?;
    let _guard = Guard;
    // Cleared with a plain escape: ratatui's clear() asks the terminal for the cursor position,
    // which a terminal that does not answer (some pseudo-terminals) turns into a startup error.
    execute!(stdout(), EnterAlternateScreen, cursor::Hide, Clear(ClearType::All))?;
    // Before the event stream starts reading the terminal's answers as keys.
    let mut graphics = pick_graphics(graphics);
    // The query turns raw mode off when it is done: back on.
    enable_raw_mode().context("the terminal does not support raw mode (is this a TTY?)")?;
    execute!(stdout(), EnableMouseCapture)?;
    let mut terminal = Terminal::new(CrosstermBackend::new(stdout()))?;

    let mut app = App::new(api.base(), chrono::Utc::now());
    let (answers, mut incoming) = mpsc::unbounded_channel::<Action>();
    let mut events = EventStream::new();
    let mut tick = tokio::time::interval(TICK);

    loop {
        let screen = terminal.draw(|frame| crate::ui::draw(frame, &app, &mut graphics))?.area;
        let action = tokio::select! {
            event = events.next() => match event {
                Some(Ok(Event::Key(key))) => app.action_for(key),
                Some(Ok(Event::Mouse(mouse))) => crate::ui::mouse_action(&app, screen, mouse),
                // A resize is handled by the next draw (the preview is re-encoded for its
                // new size there).
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

#[cfg(test)]
mod tests {
    use ratatui_image::picker::ProtocolType;

    use super::announced_protocol;

    fn guess(vars: &[(&str, &str)]) -> Option<ProtocolType> {
        announced_protocol(|key| vars.iter().find(|(k, _)| *k == key).map(|(_, v)| (*v).to_owned()))
    }

    #[test]
    fn graphics_come_from_what_the_terminal_announces_and_half_blocks_otherwise() {
        assert_eq!(guess(&[("TERM", "xterm-kitty")]), Some(ProtocolType::Kitty));
        assert_eq!(guess(&[("TERM", "xterm-256color"), ("KITTY_WINDOW_ID", "3")]), Some(ProtocolType::Kitty));
        assert_eq!(guess(&[("TERM_PROGRAM", "WezTerm")]), Some(ProtocolType::Iterm2));
        assert_eq!(guess(&[("LC_TERMINAL", "iTerm2")]), Some(ProtocolType::Iterm2));
        assert_eq!(guess(&[("TERM", "foot")]), Some(ProtocolType::Sixel));
        assert_eq!(guess(&[("TERM", "xterm-256color")]), None);
        assert_eq!(guess(&[("TERM", "tmux-256color"), ("TERM_PROGRAM", "tmux")]), None);
        assert_eq!(guess(&[]), None);
    }
}
