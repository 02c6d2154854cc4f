//! Drawing. Every function takes `&App` and a frame: drawing never changes state. Layout: a
//! tab bar, the view, a status line and a footer of key hints; dialogs float on top. Fits an
//! 80×24 terminal.

mod lists;
mod preview;
mod queue;
#[cfg(test)]
mod tests;

use ratatui::layout::{Constraint, Flex, Layout, Rect};
use ratatui::style::{Color, Modifier, Style, Stylize};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Clear, Paragraph, Tabs, Wrap};
use ratatui::Frame;

pub use preview::Graphics;

use crate::action::{Action, List, View};
use crate::api::VariantView;
use crate::app::{App, Connection, FieldValue, Mode, Pane};

/// The screen's rows: tabs, the view, status, footer.
fn screen_layout(area: Rect) -> [Rect; 4] {
    Layout::vertical([Constraint::Length(1), Constraint::Min(3), Constraint::Length(1), Constraint::Length(1)])
        .areas(area)
}

pub fn draw(frame: &mut Frame, app: &App, graphics: &mut Graphics) {
    let [tabs, body, status, footer] = screen_layout(frame.area());
    draw_tabs(frame, app, tabs);
    match app.view {
        View::Users => lists::users(frame, app, body),
        View::Tiers => lists::tiers(frame, app, body),
        View::Images => lists::images(frame, app, graphics, body),
        View::Queue => queue::queue(frame, app, body),
        View::Links => lists::links(frame, app, body),
    }
    draw_status(frame, app, status);
    draw_footer(frame, app, footer);
    if app.form.is_some() {
        draw_form(frame, app);
    }
    if let Some(confirm) = &app.confirm {
        draw_dialog(
            frame,
            "Confirm",
            vec![Line::from(confirm.question.clone()), Line::from(""), Line::from("y: yes   n: no")],
        );
    }
    if let Some(shown) = &app.token {
        let copied = if shown.copied { "copied (if your terminal allows OSC 52)" } else { "c: copy to clipboard" };
        draw_dialog(
            frame,
            "New API token",
            vec![
                Line::from(format!("Token for {} (shown only now):", shown.username)),
                Line::from(""),
                Line::from(shown.token.token.clone()).bold(),
                Line::from(""),
                Line::from(format!("{copied}   Esc: close")),
            ],
        );
    }
    if app.help {
        draw_help(frame);
    }
}

fn draw_tabs(frame: &mut Frame, app: &App, area: Rect) {
    let titles = View::ALL.iter().enumerate().map(|(i, v)| format!("{} {}", i + 1, v.title()));
    let tabs = Tabs::new(titles)
        .select(app.view.index())
        .highlight_style(Style::new().fg(Color::Black).bg(Color::Cyan).add_modifier(Modifier::BOLD))
        .divider(" ")
        .padding(" ", "");
    let [name, rest] = Layout::horizontal([Constraint::Length(10), Constraint::Min(0)]).areas(area);
    frame.render_widget(Paragraph::new(" imageapi").bold(), name);
    frame.render_widget(tabs, rest);
}

fn draw_status(frame: &mut Frame, app: &App, area: Rect) {
    let connection = match &app.connection {
        Connection::Connecting => Span::raw(format!(" connecting to {} …", app.server)).fg(Color::Yellow),
        Connection::Connected => Span::raw(format!(" ● {}", app.server)).fg(Color::Green),
        Connection::Unreachable(why) => {
            Span::raw(format!(" ✗ server unreachable, retrying: {why}")).fg(Color::Red).bold()
        }
    };
    let mut spans = vec![connection];
    if let Some((message, is_error)) = &app.message {
        spans.push(Span::raw("  "));
        spans.push(Span::raw(message.clone()).fg(if *is_error { Color::Red } else { Color::Green }));
    }
    if !app.filter.is_empty() || app.filtering {
        spans.push(
            Span::raw(format!("  filter: {}{}", app.filter, if app.filtering { "▏" } else { "" })).fg(Color::Cyan),
        );
    }
    frame.render_widget(Paragraph::new(Line::from(spans)), area);
}

fn footer_hints(app: &App) -> &'static str {
    match app.mode() {
        Mode::Help => "any key: close help",
        Mode::Token => "c copy  Esc close",
        Mode::Confirm => "y confirm  n cancel",
        Mode::Form => "Tab/↑↓ field  Space/←→ toggle  Enter save  Esc cancel",
        Mode::Filter => "type to filter  Enter keep  Esc clear",
        Mode::Normal => match app.view {
            View::Users if app.users.pane() == Pane::Detail => "↑↓ token  d revoke  t new token  Esc back  ? help",
            View::Users => "↑↓ move  n new  e edit  d delete  t token  ⏎ tokens  / filter  ? help  q quit",
            View::Tiers => "↑↓ move  n new  e edit  d delete  / filter  Tab view  ? help  q quit",
            View::Images if app.images.pane() == Pane::Detail => {
                "↑↓ PgUp/PgDn move  d delete  ← users  / filter (after:/before:)  ? help  q quit"
            }
            View::Images => "↑↓ user  → images  / filter by name  Tab view  ? help  q quit",
            View::Queue => "↑↓ failed job  r retry  / filter  Tab view  ? help  q quit",
            View::Links => "↑↓ move  [ ] page  d revoke  / filter  Tab view  ? help  q quit",
        },
    }
}

fn draw_footer(frame: &mut Frame, app: &App, area: Rect) {
    frame.render_widget(Paragraph::new(format!(" {}", footer_hints(app))).fg(Color::DarkGray), area);
}

/// A rectangle of the given size centred in `area` (clipped to it).
fn centered(area: Rect, width: u16, height: u16) -> Rect {
    let [row] = Layout::vertical([Constraint::Length(height.min(area.height))]).flex(Flex::Center).areas(area);
    let [cell] = Layout::horizontal([Constraint::Length(width.min(area.width))]).flex(Flex::Center).areas(row);
    cell
}

fn draw_dialog(frame: &mut Frame, title: &str, lines: Vec<Line>) {
    let width = lines.iter().map(Line::width).max().unwrap_or(20).clamp(30, 76) as u16 + 4;
    let area = centered(frame.area(), width, lines.len() as u16 + 2);
    frame.render_widget(Clear, area);
    frame.render_widget(
        Paragraph::new(lines).wrap(Wrap { trim: false }).block(Block::bordered().title(format!(" {title} "))),
        area,
    );
}

fn draw_form(frame: &mut Frame, app: &App) {
    let Some(form) = &app.form else { return };
    let mut lines = Vec::new();
    for (i, field) in form.fields.iter().enumerate() {
        let focused = i == form.focus;
        let marker = if focused { "▶ " } else { "  " };
        let mut value = field.display();
        if focused && matches!(field.value, FieldValue::Text(_) | FieldValue::Secret(_)) {
            value.push('▏');
        }
        let style = if focused { Style::new().bold() } else { Style::new() };
        let mut spans = vec![
            Span::raw(marker),
            Span::styled(format!("{:<27}", field.label), style),
            Span::styled(value, style.fg(Color::Cyan)),
        ];
        if let (Some(placeholder), FieldValue::Text(text)) = (field.placeholder, &field.value) {
            if text.is_empty() {
                spans.push(Span::raw(placeholder).fg(Color::DarkGray));
            }
        }
        lines.push(Line::from(spans));
        if let Some(error) = &field.error {
            lines.push(Line::from(format!("    ↳ {error}")).fg(Color::Red));
        }
    }
    lines.push(Line::from(""));
    if let Some(error) = &form.error {
        lines.push(Line::from(error.clone()).fg(Color::Red));
    }
    lines.push(Line::from(if form.submitting { "saving…" } else { "Enter: save   Esc: cancel" }).fg(Color::DarkGray));
    let area = centered(frame.area(), 72, lines.len() as u16 + 2);
    frame.render_widget(Clear, area);
    frame.render_widget(
        Paragraph::new(lines).wrap(Wrap { trim: false }).block(Block::bordered().title(format!(" {} ", form.title()))),
        area,
    );
}

const HELP: &[(&str, &str)] = &[
    ("1-5, Tab, Shift-Tab", "switch view: Users, Tiers, Images, Queue, Links"),
    ("↑↓ / j k", "move the selection"),
    ("←→ / h l", "images: users ↔ images"),
    ("PgUp / PgDn", "move ten rows; images load page by page"),
    ("mouse", "click selects a row, the wheel scrolls"),
    ("Enter / Esc", "users: open / leave the token list"),
    ("/", "filter the list (Enter keeps it, Esc clears)"),
    ("n / e / d", "new / edit / delete (users, tiers, images); d revokes links, tokens"),
    ("[ / ]", "previous / next page of links (newest first, 100 a page)"),
    ("/ in Images", "name substring; after:2026-12-01 before:… bound the upload"),
    ("t", "users: issue an API token (shown once)"),
    ("r", "queue: retry the selected failed job"),
    ("?", "this help"),
    ("q, Ctrl-C", "quit"),
];

fn draw_help(frame: &mut Frame) {
    let mut lines: Vec<Line> = HELP
        .iter()
        .map(|(keys, what)| Line::from(vec![Span::raw(format!("{keys:<22}")).bold(), Span::raw(*what)]))
        .collect();
    lines.push(Line::from(""));
    lines.push(Line::from("Views refresh every second; the status line shows the connection."));
    draw_dialog(frame, "Keys", lines);
}

/// The lists on screen now, with where each is drawn (borders included) and its selection.
fn lists_on_screen(app: &App, screen: Rect) -> Vec<(List, Rect, usize)> {
    let [_, body, _, _] = screen_layout(screen);
    let areas = match app.view {
        View::Users => {
            let [users, _, tokens] = lists::users_layout(body);
            vec![(List::Users, users), (List::Tokens, tokens)]
        }
        View::Tiers => vec![(List::Tiers, lists::tiers_layout(body)[0])],
        View::Images => {
            let layout = lists::images_layout(body);
            vec![(List::ImageUsers, layout.users), (List::Images, layout.table)]
        }
        View::Queue => vec![(List::FailedJobs, queue::failed_area(app, body))],
        View::Links => vec![(List::Links, body)],
    };
    areas.into_iter().map(|(list, area)| (list, area, app.selection_of(list))).collect()
}

/// What a mouse event means on this screen: a click on a list's row selects it, the wheel
/// over a list scrolls it. Only in normal mode (dialogs take no clicks).
pub fn mouse_action(app: &App, screen: Rect, event: crossterm::event::MouseEvent) -> Option<Action> {
    use crossterm::event::{MouseButton, MouseEventKind};
    if app.mode() != Mode::Normal {
        return None;
    }
    let (column, row) = (event.column, event.row);
    let (list, area, selected) = lists_on_screen(app, screen)
        .into_iter()
        .find(|(_, area, _)| area.contains(ratatui::layout::Position { x: column, y: row }))?;
    match event.kind {
        MouseEventKind::ScrollUp => Some(Action::Scroll { list, delta: -1 }),
        MouseEventKind::ScrollDown => Some(Action::Scroll { list, delta: 1 }),
        MouseEventKind::Down(MouseButton::Left) => {
            // Rows start below the top border and the header line; the table scrolls just
            // enough to show the selection (ratatui's rule with a fresh offset).
            let first_row = area.y + 2;
            let visible = area.height.saturating_sub(3) as usize;
            if row < first_row || visible == 0 || (row - first_row) as usize >= visible {
                // The header or a border: focus without moving.
                return Some(Action::Click { list, index: selected });
            }
            let offset = (selected + 1).saturating_sub(visible);
            Some(Action::Click { list, index: offset + (row - first_row) as usize })
        }
        _ => None,
    }
}

/// A link's variant as the lists show it: `original` or `400 px`.
fn variant_label(variant: &VariantView) -> String {
    match variant {
        VariantView::Named(name) => name.clone(),
        VariantView::Height(height) => format!("{height} px"),
    }
}

/// `4.2 MB`, `17 kB`, `512 B` (in 1024s).
fn human_bytes(bytes: u64) -> String {
    match bytes {
        b if b >= 1 << 30 => format!("{:.1} GB", b as f64 / f64::from(1 << 30)),
        b if b >= 1 << 20 => format!("{:.1} MB", b as f64 / f64::from(1 << 20)),
        b if b >= 1 << 10 => format!("{:.0} kB", b as f64 / f64::from(1 << 10)),
        b => format!("{b} B"),
    }
}

/// A size limit as it was set: `1 GiB` when it is a whole number of a unit, else as
/// [`human_bytes`] puts it.
fn limit_bytes(bytes: u64) -> String {
    let exact = crate::units::exact_bytes(bytes);
    match exact.find(|c: char| c.is_ascii_alphabetic()) {
        Some(unit) => format!("{} {}", &exact[..unit], &exact[unit..]),
        None => human_bytes(bytes),
    }
}

/// Where a usage stands against its limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Standing {
    Within,
    /// Reached: nothing more fits.
    AtLimit,
    /// Beyond it (after a downgrade, say).
    Over,
}

impl Standing {
    fn of(used: u64, limit: Option<u64>) -> Self {
        match limit {
            Some(limit) if used > limit => Standing::Over,
            Some(limit) if used == limit => Standing::AtLimit,
            _ => Standing::Within,
        }
    }

    fn style(self) -> Style {
        match self {
            Standing::Within => Style::new(),
            Standing::AtLimit => Style::new().fg(Color::Yellow),
            Standing::Over => Style::new().fg(Color::Red).add_modifier(Modifier::BOLD),
        }
    }
}

/// `12/100`, `3/∞`: a count against its limit.
fn usage_count(used: u64, limit: Option<u64>) -> (String, Standing) {
    let limit_text = limit.map_or_else(|| "∞".to_owned(), |l| l.to_string());
    (format!("{used}/{limit_text}"), Standing::of(used, limit))
}

/// `17.6 MB/1 GiB`, `0 B/∞`: bytes against their limit.
fn usage_bytes(used: u64, limit: Option<u64>) -> (String, Standing) {
    let limit_text = limit.map_or_else(|| "∞".to_owned(), limit_bytes);
    (format!("{}/{limit_text}", human_bytes(used)), Standing::of(used, limit))
}

/// A table's title line with the loading/error state of its data.
fn title(name: &str, count: usize, error: Option<&str>) -> Line<'static> {
    match error {
        Some(e) => {
            Line::from(vec![Span::raw(format!(" {name} ({count}) ")), Span::raw(format!("⚠ {e} ")).fg(Color::Red)])
        }
        None => Line::from(format!(" {name} ({count}) ")),
    }
}
