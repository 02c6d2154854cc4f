//! The list views: users (with the selected user's tokens), tiers, images per user, links.

use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style, Stylize};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Cell, Paragraph, Row, Table, TableState};
use ratatui::Frame;

use super::preview::{self, Graphics};
use super::{human_bytes, limit_bytes, title, usage_bytes, usage_count, variant_label, Standing};
use crate::api::{ThumbnailStatus, User};
use crate::app::{countdown, App, Pane, Remote};
use imageapi_core::domain::TierLimits;

fn highlight(focused: bool) -> Style {
    if focused {
        Style::new().bg(Color::Cyan).fg(Color::Black).add_modifier(Modifier::BOLD)
    } else {
        Style::new().add_modifier(Modifier::REVERSED)
    }
}

fn yes(flag: bool) -> &'static str {
    if flag {
        "yes"
    } else {
        "-"
    }
}

/// What an empty table says: still loading, nothing there, or nothing matching the filter.
fn empty_text<T>(remote: &Remote<T>, what: &str, filter: &str) -> String {
    match (&remote.data, &remote.error) {
        (None, Some(e)) => format!("could not load {what}: {e}"),
        (None, None) => "loading…".to_owned(),
        _ if !filter.is_empty() => format!("no {what} match \"{filter}\""),
        _ => format!("no {what} yet"),
    }
}

/// A list to draw: its rows, or what to say when there are none.
struct ListTable<'a> {
    block: Block<'a>,
    header: Row<'a>,
    rows: Vec<Row<'a>>,
    widths: &'a [Constraint],
    selected: usize,
    focused: bool,
    empty: String,
}

fn table_or_empty(frame: &mut Frame, area: Rect, list: ListTable) {
    if list.rows.is_empty() {
        frame.render_widget(Paragraph::new(list.empty).fg(Color::DarkGray).block(list.block), area);
        return;
    }
    let table = Table::new(list.rows, list.widths.to_vec())
        .header(list.header.style(Style::new().bold().underlined()))
        .row_highlight_style(highlight(list.focused))
        .block(list.block);
    let mut state = TableState::default().with_selected(Some(list.selected));
    frame.render_stateful_widget(table, area, &mut state);
}

/// The users view: the users; below, the selected user's usage and their tokens.
pub fn users_layout(area: Rect) -> [Rect; 3] {
    let [list, bottom] = Layout::vertical([Constraint::Min(5), Constraint::Length(7)]).areas(area);
    let [usage, tokens] = Layout::horizontal([Constraint::Length(32), Constraint::Min(40)]).areas(bottom);
    [list, usage, tokens]
}

/// A user's usage against their tier's limits: images, storage, uploads in the last hour.
fn user_usage(u: &User) -> [(String, Standing); 3] {
    [
        usage_count(u.image_count, u.limits.max_images),
        usage_bytes(u.storage_bytes(), u.limits.max_storage_bytes),
        usage_count(u.uploads_last_hour, u.limits.uploads_per_hour),
    ]
}

/// A usage cell: coloured at or over the limit, and marked `!` over it.
fn usage_cell((text, standing): (String, Standing)) -> Cell<'static> {
    let text = if standing == Standing::Over { format!("{text}!") } else { text };
    Cell::from(text).style(standing.style())
}

pub fn users(frame: &mut Frame, app: &App, area: Rect) {
    let [list, usage, detail] = users_layout(area);
    let users = app.users.list.visible(&app.filter);
    let rows = users
        .iter()
        .map(|u| {
            let mut cells = vec![
                Cell::from(u.username.clone()),
                Cell::from(u.tier.clone()),
                Cell::from(yes(u.is_active)),
                Cell::from(yes(u.is_admin)),
            ];
            cells.extend(user_usage(u).map(usage_cell));
            Row::new(cells)
        })
        .collect();
    let header = Row::new(["username", "tier", "active", "admin", "images", "storage", "uploads/h"]);
    // 78 columns with the spacing, as in the tiers table.
    let widths = [
        Constraint::Min(17),
        Constraint::Length(10),
        Constraint::Length(6),
        Constraint::Length(5),
        Constraint::Length(9),
        Constraint::Length(16),
        Constraint::Length(9),
    ];
    let block = Block::bordered().title(title("Users", users.len(), app.users.list.remote().error.as_deref()));
    let empty = empty_text(app.users.list.remote(), "users", &app.filter);
    table_or_empty(
        frame,
        list,
        ListTable {
            block,
            header,
            rows,
            widths: &widths,
            selected: app.users.list.selection(),
            focused: app.users.pane() == Pane::List,
            empty,
        },
    );
    user_detail(frame, app.users.list.selected(&app.filter), usage);

    let focused = app.users.pane() == Pane::Detail;
    let block = Block::bordered().title(match app.users.list.selected(&app.filter) {
        Some(u) => format!(" API tokens of {} ", u.username),
        None => " API tokens ".to_owned(),
    });
    let tokens = app.users.detail().and_then(|u| u.tokens.clone()).unwrap_or_default();
    let rows = tokens
        .iter()
        .map(|t| Row::new(vec![t.id.clone(), t.created_at.format("%Y-%m-%d %H:%M").to_string()]))
        .collect();
    let empty = if app.users.list.selected(&app.filter).is_none() {
        "select a user".to_owned()
    } else if app.users.detail().is_none() {
        "loading…".to_owned()
    } else {
        "no tokens (t issues one)".to_owned()
    };
    let header = Row::new(["token id", "issued"]);
    let widths = [Constraint::Length(28), Constraint::Min(16)];
    table_or_empty(
        frame,
        detail,
        ListTable { block, header, rows, widths: &widths, selected: app.users.token_selection(), focused, empty },
    );
}

/// The selected user's usage against their tier's limits, in words where one is reached.
fn user_detail(frame: &mut Frame, user: Option<&User>, area: Rect) {
    let Some(u) = user else {
        frame.render_widget(Paragraph::new("select a user").fg(Color::DarkGray).block(Block::bordered()), area);
        return;
    };
    let line = |label: &str, (text, standing): (String, Standing)| {
        let note = match standing {
            Standing::Within => "",
            Standing::AtLimit => " at limit",
            Standing::Over => " over",
        };
        Line::from(vec![Span::raw(format!("{label:<11}")), Span::styled(format!("{text}{note}"), standing.style())])
    };
    let [images, storage, hourly] = user_usage(u);
    let upload = u.limits.max_upload_bytes.map_or_else(|| "server's limit".to_owned(), limit_bytes);
    let lines = vec![
        line("images", images),
        line("storage", storage),
        line("uploads/h", hourly),
        Line::from(format!("{:<11}{upload}", "max upload")),
        Line::from(format!("{:<11}{}", "created", u.created_at.format("%Y-%m-%d"))),
    ];
    let block = Block::bordered().title(format!(" Usage of {} ", u.username));
    frame.render_widget(Paragraph::new(lines).block(block), area);
}

/// The tiers view: the tiers, and the selected tier's limits below.
pub fn tiers_layout(area: Rect) -> [Rect; 2] {
    Layout::vertical([Constraint::Min(5), Constraint::Length(4)]).areas(area)
}

/// A tier's limits in two lines, `unlimited` where there is none.
fn limit_lines(limits: &TierLimits) -> Vec<Line<'static>> {
    let count = |n: Option<u64>| n.map_or_else(|| "unlimited".to_owned(), |n| n.to_string());
    let bytes = |n: Option<u64>| n.map_or_else(|| "unlimited".to_owned(), limit_bytes);
    let upload = limits.max_upload_bytes.map_or_else(|| "server's limit".to_owned(), limit_bytes);
    vec![
        Line::from(format!(
            "max images  {:<16}max storage  {}",
            count(limits.max_images),
            bytes(limits.max_storage_bytes)
        )),
        Line::from(format!("max upload  {upload:<16}uploads/hour {}", count(limits.uploads_per_hour))),
    ]
}

pub fn tiers(frame: &mut Frame, app: &App, area: Rect) {
    let [area, limits] = tiers_layout(area);
    let tiers = app.tiers.list.visible(&app.filter);
    let rows = tiers
        .iter()
        .map(|t| {
            let heights = t.thumbnail_heights.iter().map(u32::to_string).collect::<Vec<_>>().join(",");
            let formats = t.formats.iter().map(|f| f.as_str()).collect::<Vec<_>>().join(",");
            Row::new(vec![
                t.id.clone(),
                t.name.clone(),
                if heights.is_empty() { "-".to_owned() } else { heights },
                if formats.is_empty() { "-".to_owned() } else { formats },
                yes(t.original_link).to_owned(),
                yes(t.expiring_links).to_owned(),
                yes(t.builtin).to_owned(),
                t.user_count.map(|n| n.to_string()).unwrap_or_default(),
            ])
        })
        .collect();
    let header = Row::new(["id", "name", "heights", "formats", "original", "expiring", "builtin", "users"]);
    // 78 columns with the spacing: wider constraints leave the solver to pick which to cut.
    let widths = [
        Constraint::Length(11),
        Constraint::Min(11),
        Constraint::Length(12),
        Constraint::Length(9),
        Constraint::Length(8),
        Constraint::Length(8),
        Constraint::Length(7),
        Constraint::Length(5),
    ];
    let block = Block::bordered().title(title("Tiers", tiers.len(), app.tiers.list.remote().error.as_deref()));
    let empty = empty_text(app.tiers.list.remote(), "tiers", &app.filter);
    table_or_empty(
        frame,
        area,
        ListTable { block, header, rows, widths: &widths, selected: app.tiers.list.selection(), focused: true, empty },
    );
    let paragraph = match app.tiers.list.selected(&app.filter) {
        Some(t) => {
            Paragraph::new(limit_lines(&t.limits())).block(Block::bordered().title(format!(" Limits of {} ", t.id)))
        }
        None => Paragraph::new("select a tier").fg(Color::DarkGray).block(Block::bordered().title(" Limits ")),
    };
    frame.render_widget(paragraph, limits);
}

/// The images view: users on the left; the user's images, and under them the selected
/// image's preview and detail.
pub struct ImagesLayout {
    pub users: Rect,
    pub table: Rect,
    pub preview: Rect,
    pub detail: Rect,
}

pub fn images_layout(area: Rect) -> ImagesLayout {
    let [users, right] = Layout::horizontal([Constraint::Length(20), Constraint::Min(30)]).areas(area);
    let [table, bottom] = Layout::vertical([Constraint::Min(6), Constraint::Length(12)]).areas(right);
    let [preview, detail] = Layout::horizontal([Constraint::Length(28), Constraint::Min(20)]).areas(bottom);
    ImagesLayout { users, table, preview, detail }
}

pub fn images(frame: &mut Frame, app: &App, graphics: &mut Graphics, area: Rect) {
    let layout = images_layout(area);
    let left = layout.users;
    let users = app.users.list.all();
    let rows = users.iter().map(|u| Row::new(vec![u.username.clone(), u.image_count.to_string()])).collect();
    let block = Block::bordered().title(" Users ");
    let empty = empty_text(app.users.list.remote(), "users", "");
    let widths = [Constraint::Min(10), Constraint::Length(5)];
    let focused = app.images.pane() == Pane::List;
    let header = Row::new(["user", "imgs"]);
    table_or_empty(
        frame,
        left,
        ListTable { block, header, rows, widths: &widths, selected: app.images.user_selection(), focused, empty },
    );

    let images = app.images.visible();
    let table = layout.table;
    let rows = images
        .iter()
        .map(|i| {
            let thumbs = i
                .thumbnails
                .iter()
                .map(|t| {
                    let mark = match t.status {
                        ThumbnailStatus::Ready => "✓",
                        ThumbnailStatus::Failed => "✗",
                        ThumbnailStatus::Pending => "…",
                    };
                    format!("{}{mark}", t.height)
                })
                .collect::<Vec<_>>()
                .join(" ");
            Row::new(vec![
                i.name.clone(),
                format!("{}×{}", i.width, i.height),
                human_bytes(i.size_bytes),
                thumbs,
                i.created_at.format("%m-%d %H:%M").to_string(),
            ])
        })
        .collect();
    let header = Row::new(["name", "size", "bytes", "thumbnails", "uploaded"]);
    let widths = [
        Constraint::Min(10),
        Constraint::Length(11),
        Constraint::Length(8),
        Constraint::Length(12),
        Constraint::Length(11),
    ];
    let whose = app.images.selected_user(app.users.list.all()).map(|u| u.username.clone()).unwrap_or_default();
    let more = if app.images.loading_more() {
        ", loading more…"
    } else if app.images.has_more() {
        ", more below"
    } else {
        ""
    };
    let block = Block::bordered().title(title(
        &format!("Images of {whose}{more}"),
        images.len(),
        app.images.pages().error.as_deref(),
    ));
    let empty = if app.images.selected_user(app.users.list.all()).is_none() {
        "select a user".to_owned()
    } else {
        empty_text(app.images.pages(), "images", &app.filter)
    };
    let focused = app.images.pane() == Pane::Detail;
    table_or_empty(
        frame,
        table,
        ListTable { block, header, rows, widths: &widths, selected: app.images.selection(), focused, empty },
    );
    preview::draw_preview(frame, app, graphics, layout.preview);
    preview::draw_detail(frame, app, layout.detail);
}

pub fn links(frame: &mut Frame, app: &App, area: Rect) {
    let links = app.links.page.visible(&app.filter);
    let rows = links
        .iter()
        .map(|l| {
            let variant = variant_label(&l.variant);
            Row::new(vec![
                l.owner_username.clone().unwrap_or_default(),
                l.image_id.clone(),
                variant,
                countdown(l.expires_at, app.now),
            ])
            .style(if l.expires_at - app.now < chrono::Duration::seconds(60) {
                Style::new().yellow()
            } else {
                Style::new()
            })
        })
        .collect();
    let header = Row::new(["owner", "image", "variant", "expires in"]);
    let widths = [Constraint::Min(12), Constraint::Length(27), Constraint::Length(9), Constraint::Length(11)];
    // Newest first, a page at a time: say which page, and whether more follow.
    let page = app.links.page_number();
    let more = if app.links.has_next_page() { ", more: ]" } else { "" };
    let name = format!("Expiring links, page {page}{more}");
    let block = Block::bordered().title(title(&name, links.len(), app.links.page.remote().error.as_deref()));
    let empty = empty_text(app.links.page.remote(), "live links", &app.filter);
    table_or_empty(
        frame,
        area,
        ListTable { block, header, rows, widths: &widths, selected: app.links.page.selection(), focused: true, empty },
    );
}
