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
    if let Some((id, picture)) = ready {
        graphics.draw(frame, inner, &id, &picture);
        return;
    }
    let text = placeholder(app).unwrap_or_default();
    // While the thumbnail is still to come, its ThumbHash stands in: a blurred picture of the
    // image with the reason underneath.
    let waiting = app
        .images
        .selected()
        .filter(|image| image.preview_thumbnail().is_some_and(|t| t.status != ThumbnailStatus::Failed));
    if let Some((image, picture)) =
        waiting.and_then(|image| Some((image, thumbhash_picture(image.thumbhash.as_deref()?)?)))
    {
        let caption_text = match image.preview_thumbnail() {
            Some(t) if t.status == ThumbnailStatus::Pending => "ThumbHash · pending",
            _ => "ThumbHash · loading…",
        };
        if inner.height >= 3 {
            let [picture_area, caption] = ratatui::layout::Layout::vertical([
                ratatui::layout::Constraint::Fill(1),
                ratatui::layout::Constraint::Length(1),
            ])
            .areas(inner);
            graphics.draw(frame, picture_area, &format!("{}#thumbhash", image.id), &picture);
            frame.render_widget(Paragraph::new(caption_text).fg(Color::DarkGray), caption);
            return;
        }
    }
    frame.render_widget(Paragraph::new(text).fg(Color::DarkGray).wrap(Wrap { trim: true }), inner);
}

/// The picture a ThumbHash (base64, as the API sends it) stands for; `None` if it is not one.
fn thumbhash_picture(encoded: &str) -> Option<image::DynamicImage> {
    use base64::Engine as _;
    let hash = base64::engine::general_purpose::STANDARD.decode(encoded).ok()?;
    let (width, height, rgba) = thumbhash::thumb_hash_to_rgba(&hash).ok()?;
    let image = image::RgbaImage::from_raw(u32::try_from(width).ok()?, u32::try_from(height).ok()?, rgba)?;
    Some(image::DynamicImage::ImageRgba8(image))
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
    if let Some(hash) = &image.thumbhash {
        lines.push(Line::from(format!("thumbhash {hash}")).fg(Color::DarkGray));
    }
    for t in &image.thumbnails {
        let mut spans = vec![Span::raw(format!("{:>4} px ", t.height)), status_mark(t.status)];
        if let Some(e) = &t.error {
            spans.push(Span::raw(format!(": {e}")).fg(Color::Red));
        }
        // The formats beyond the source's, each with a mark of its own state.
        for f in t.formats.iter().skip(1) {
            let (mark, colour) = match f.status {
                ThumbnailStatus::Ready => ("✓", Color::Green),
                ThumbnailStatus::Failed => ("✗", Color::Red),
                ThumbnailStatus::Pending => ("…", Color::Yellow),
            };
            spans.push(Span::raw(format!(" {}{mark}", f.format)).fg(colour));
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
