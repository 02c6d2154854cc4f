//! The Images view's preview and detail panes.
//!
//! The preview is drawn with `ratatui-image`: kitty, sixel or iTerm2 graphics where the
//! terminal speaks them, coloured half blocks elsewhere (SSH, tmux, plain terminals).
//! [`Graphics`] is the renderer's own state (the encoded picture for the current size), like
//! a table's scroll state: the app's state stays read-only while drawing.

use ratatui::layout::Rect;
use ratatui::style::{Color, Stylize};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Paragraph, Wrap};
use ratatui::Frame;
use ratatui_image::picker::Picker;
use ratatui_image::protocol::StatefulProtocol;
use ratatui_image::{FilterType, Resize, StatefulImage};

use super::human_bytes;
use crate::api::ThumbnailStatus;
use crate::app::{countdown, App, Preview};

/// How previews reach the terminal.
pub struct Graphics {
    picker: Picker,
    /// The picture on screen: its image id and the protocol state, re-encoded by the widget
    /// when the pane changes size.
    shown: Option<(String, StatefulProtocol)>,
}

impl Graphics {
    pub fn new(picker: Picker) -> Self {
        Self { picker, shown: None }
    }

    /// Coloured half blocks, as any terminal shows them.
    #[cfg(test)]
    pub fn halfblocks() -> Self {
        Self::new(Picker::halfblocks())
    }

    fn draw(&mut self, frame: &mut Frame, area: Rect, id: &str, image: &image::DynamicImage) {
        if self.shown.as_ref().is_none_or(|(shown, _)| shown != id) {
            self.shown = Some((id.to_owned(), self.picker.new_resize_protocol(image.clone())));
        }
        if let Some((_, protocol)) = &mut self.shown {
            let widget = StatefulImage::<StatefulProtocol>::default().resize(Resize::Scale(Some(FilterType::Triangle)));
            frame.render_stateful_widget(widget, area, protocol);
        }
    }
}

/// What the preview pane says instead of a picture, or `None` when it has one to draw.
pub fn placeholder(app: &App) -> Option<String> {
    let Some(image) = app.images.selected() else {
        return Some("no image selected".to_owned());
    };
    let Some(thumbnail) = image.preview_thumbnail() else {
        return Some("no thumbnails in this user's tier".to_owned());
    };
    match thumbnail.status {
        ThumbnailStatus::Ready => match app.images.preview(&image.id) {
            Some(Preview::Ready(_)) => None,
            Some(Preview::Failed(e)) => Some(format!("preview unavailable: {e}")),
            Some(Preview::Loading) | None => Some("loading preview…".to_owned()),
        },
        ThumbnailStatus::Failed => Some(format!(
            "✗ the {} px thumbnail failed: {}",
            thumbnail.height,
            thumbnail.error.as_deref().unwrap_or("no reason given")
        )),
        ThumbnailStatus::Pending => Some(format!("… the {} px thumbnail is pending", thumbnail.height)),
    }
}

pub fn draw_preview(frame: &mut Frame, app: &App, graphics: &mut Graphics, area: Rect) {
    let block = Block::bordered().title(" Preview ");
    let inner = block.inner(area);
    frame.render_widget(block, area);
    let ready = app.images.selected().and_then(|image| match app.images.preview(&image.id) {
        Some(Preview::Ready(picture)) if placeholder(app).is_none() => Some((image.id.clone(), picture.clone())),
        _ => None,
    });
    match ready {
        Some((id, picture)) => graphics.draw(frame, inner, &id, &picture),
        None => {
            let text = placeholder(app).unwrap_or_default();
            frame.render_widget(Paragraph::new(text).fg(Color::DarkGray).wrap(Wrap { trim: true }), inner);
        }
    }
}

fn status_mark(status: ThumbnailStatus) -> Span<'static> {
    match status {
        ThumbnailStatus::Ready => Span::raw("✓ ready").fg(Color::Green),
        ThumbnailStatus::Failed => Span::raw("✗ failed").fg(Color::Red),
        ThumbnailStatus::Pending => Span::raw("… pending").fg(Color::Yellow),
    }
}

pub fn draw_detail(frame: &mut Frame, app: &App, area: Rect) {
    let block = Block::bordered().title(" Detail ");
    let Some(image) = app.images.selected() else {
        frame.render_widget(Paragraph::new("select an image").fg(Color::DarkGray).block(block), area);
        return;
    };
    let detail = app.images.selected_detail();
    let owner = match detail {
        Some(d) => format!("{} ({})", d.owner_username, d.owner_tier),
        None => app.images.selected_user(app.users.list.all()).map(|u| u.username.clone()).unwrap_or_default(),
    };
    let mut lines = vec![
        Line::from(image.name.clone()).bold(),
        Line::from(format!("owner  {owner}")),
        Line::from(format!("{}  {}×{}  {}", image.format, image.width, image.height, human_bytes(image.size_bytes))),
        Line::from(format!("uploaded {}", image.created_at.format("%Y-%m-%d %H:%M UTC"))),
    ];
    for t in &image.thumbnails {
        let mut spans = vec![Span::raw(format!("{:>4} px ", t.height)), status_mark(t.status)];
        if let Some(e) = &t.error {
            spans.push(Span::raw(format!(": {e}")).fg(Color::Red));
        }
        lines.push(Line::from(spans));
    }
    match detail {
        None => lines.push(Line::from("links: loading…").fg(Color::DarkGray)),
        Some(d) if d.links.is_empty() => lines.push(Line::from("no live links").fg(Color::DarkGray)),
        Some(d) => {
            lines.push(Line::from(format!("{} live link(s):", d.links.len())));
            for link in &d.links {
                let variant = super::variant_label(&link.variant);
                lines.push(Line::from(format!(" {variant}, {} left", countdown(link.expires_at, app.now))));
            }
        }
    }
    frame.render_widget(Paragraph::new(lines).wrap(Wrap { trim: false }).block(block), area);
}
