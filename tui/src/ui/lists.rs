//! The list views: users (with the selected user's tokens), tiers, images per user, links.

use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style, Stylize};
use ratatui::widgets::{Block, Paragraph, Row, Table, TableState};
use ratatui::Frame;

use super::preview::{self, Graphics};
use super::{human_bytes, title, variant_label};
use crate::api::ThumbnailStatus;
use crate::app::{countdown, App, Pane, Remote};

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

/// The users view: the users, and the selected user's tokens below.
pub fn users_layout(area: Rect) -> [Rect; 2] {
    Layout::vertical([Constraint::Min(5), Constraint::Length(7)]).areas(area)
}

pub fn users(frame: &mut Frame, app: &App, area: Rect) {
    let [list, detail] = users_layout(area);
    let users = app.users.list.visible(&app.filter);
    let rows = users
        .iter()
        .map(|u| {
            Row::new(vec![
                u.username.clone(),
                u.tier.clone(),
                yes(u.is_active).to_owned(),
                yes(u.is_admin).to_owned(),
                u.image_count.to_string(),
                human_bytes(u.storage_bytes()),
                u.created_at.format("%Y-%m-%d").to_string(),
            ])
        })
        .collect();
    let header = Row::new(["username", "tier", "active", "admin", "images", "storage", "created"]);
    let widths = [
        Constraint::Min(12),
        Constraint::Length(12),
        Constraint::Length(6),
        Constraint::Length(5),
        Constraint::Length(6),
        Constraint::Length(9),
        Constraint::Length(10),
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

pub fn tiers(frame: &mut Frame, app: &App, area: Rect) {
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
