//! Rendering tests: draw to an 80×24 `TestBackend` from fixture data and read the cells.

use chrono::{TimeZone, Utc};
use ratatui::backend::TestBackend;
use ratatui::Terminal;

use super::{draw, Graphics};
use crate::action::{Action, Loaded, View};
use crate::api::{ApiError, LinkPage, NewToken, ThumbnailStatus};
use crate::app::App;
use crate::fixtures;

fn now() -> chrono::DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 28, 12, 0, 0).single().expect("time")
}

/// Draws the app on an 80×24 test terminal, previews in half blocks.
fn buffer(app: &App) -> ratatui::buffer::Buffer {
    let mut terminal = Terminal::new(TestBackend::new(80, 24)).expect("terminal");
    let mut graphics = Graphics::halfblocks();
    terminal.draw(|frame| draw(frame, app, &mut graphics)).expect("draw");
    terminal.backend().buffer().clone()
}

/// The screen as lines of text.
fn render(app: &App) -> Vec<String> {
    let buffer = buffer(app);
    (0..buffer.area.height)
        .map(|y| (0..buffer.area.width).map(|x| buffer[(x, y)].symbol()).collect::<String>())
        .collect()
}

fn screen(app: &App) -> String {
    render(app).join("\n")
}

fn app() -> App {
    let mut app = App::new("http://127.0.0.1:8000", now());
    app.update(Action::Loaded(Loaded::Users(Ok(fixtures::users()))));
    app.update(Action::Loaded(Loaded::Tiers(Ok(fixtures::tiers()))));
    app
}

fn line_with<'a>(lines: &'a [String], needle: &str) -> &'a str {
    lines
        .iter()
        .find(|l| l.contains(needle))
        .map(String::as_str)
        .unwrap_or_else(|| panic!("no line with {needle:?} in:\n{}", lines.join("\n")))
}

#[test]
fn the_users_view_lists_users_with_tier_flags_and_image_counts() {
    let mut app = app();
    app.update(Action::Loaded(Loaded::UserDetail(Ok(fixtures::user_with_tokens()))));
    let lines = render(&app);
    assert!(lines[0].contains("1 Users") && lines[0].contains("5 Links"), "{}", lines[0]);
    let bob = line_with(&lines, "bob");
    assert!(bob.contains("premium") && bob.contains("12"), "{bob}");
    // 12 × 1.5 MB of originals and 12 × 40 kB of thumbnails.
    assert!(bob.contains("17.6 MB"), "storage used: {bob}");
    let carol = line_with(&lines, "carol");
    assert!(carol.contains("basic") && carol.contains('-'), "inactive shows as '-': {carol}");
    assert!(screen(&app).contains("API tokens of admin"));
    assert!(screen(&app).contains("01TOKEN2"));
    assert!(lines[22].contains("127.0.0.1:8000"), "status line: {}", lines[22]);
    assert!(lines[23].contains("n new") && lines[23].contains("? help"), "footer: {}", lines[23]);
}

/// The foreground colour of the first cell of `needle` on the screen.
fn colour_of(app: &App, needle: &str) -> ratatui::style::Color {
    let buffer = buffer(app);
    let lines = render(app);
    let (y, line) = lines.iter().enumerate().find(|(_, l)| l.contains(needle)).expect("on screen");
    let x = line[..line.find(needle).expect("in the line")].chars().count();
    buffer[(x as u16, y as u16)].fg
}

#[test]
fn the_users_view_shows_usage_against_the_tiers_limits_and_marks_what_is_reached() {
    use ratatui::style::Color;
    let mut app = app();
    let lines = render(&app);
    assert!(line_with(&lines, "username").contains("uploads/h"), "{lines:#?}");
    let admin = line_with(&lines, "enterprise");
    assert!(admin.contains("0/∞") && admin.contains("0 B/∞"), "unlimited: {admin}");
    let bob = line_with(&lines, "bob");
    assert!(bob.contains("12/1000") && bob.contains("17.6 MB/10 GiB") && bob.contains("3/600"), "{bob}");
    // Carol, moved down to basic, is over its 100 images and has used the hour's 60 uploads.
    let carol = line_with(&lines, "carol");
    assert!(carol.contains("120/100!") && carol.contains("176.2 MB/1 GiB") && carol.contains("60/60"), "{carol}");
    assert_eq!(colour_of(&app, "120/100!"), Color::Red);
    assert_eq!(colour_of(&app, "60/60"), Color::Yellow);
    assert_eq!(colour_of(&app, "12/1000"), Color::Reset, "within the limit");

    assert!(screen(&app).contains("Usage of admin") && screen(&app).contains("server's limit"));
    app.update(Action::Down);
    app.update(Action::Down);
    let text = screen(&app);
    assert!(text.contains("Usage of carol"), "{text}");
    assert!(text.contains("images     120/100 over"), "{text}");
    assert!(text.contains("uploads/h  60/60 at limit"), "{text}");
    assert!(text.contains("max upload 10 MiB") && text.contains("created    2026-11-20"), "{text}");
}

#[test]
fn an_empty_or_unreachable_server_is_said_plainly() {
    let mut app = App::new("http://127.0.0.1:8000", now());
    assert!(screen(&app).contains("loading…"));
    assert!(screen(&app).contains("connecting to"));
    app.update(Action::Loaded(Loaded::Users(Err(ApiError::Unreachable("connection refused".into())))));
    let text = screen(&app);
    assert!(text.contains("could not load users"), "{text}");
    assert!(text.contains("server unreachable, retrying"), "{text}");
    app.update(Action::Loaded(Loaded::Users(Ok(vec![]))));
    assert!(screen(&app).contains("no users yet"));
}

#[test]
fn the_tiers_view_shows_heights_formats_flags_builtin_and_holders() {
    let mut app = app();
    app.update(Action::SwitchView(View::Tiers));
    let lines = render(&app);
    assert!(line_with(&lines, "heights").contains("formats"), "a formats column");
    let premium = line_with(&lines, "Premium");
    assert!(premium.contains("200,400") && premium.contains("webp,avif") && premium.contains("yes"), "{premium}");
    assert!(line_with(&lines, "Basic").contains("webp "), "{lines:#?}");
    let tiny = line_with(&lines, "Tiny thumbs");
    assert!(tiny.contains("64,128") && tiny.contains(" - ") && tiny.contains(" 0"), "{tiny}");
    assert!(line_with(&lines, "Limits of basic").starts_with('┌'));
    assert!(
        line_with(&lines, "max images").contains("max images  100 ")
            && line_with(&lines, "max images").contains("max storage  1 GiB"),
        "{lines:#?}"
    );
    let upload = line_with(&lines, "max upload");
    assert!(upload.contains("max upload  10 MiB ") && upload.contains("uploads/hour 60"), "{upload}");
    app.update(Action::Down);
    app.update(Action::Down);
    let lines = render(&app);
    assert!(line_with(&lines, "Limits of enterprise").starts_with('┌'));
    assert!(line_with(&lines, "max images").contains("unlimited"), "{lines:#?}");
    assert!(line_with(&lines, "max upload").contains("server's limit"), "{lines:#?}");
    app.update(Action::StartFilter);
    for c in "zzz".chars() {
        app.update(Action::FilterChar(c));
    }
    assert!(screen(&app).contains("no tiers match \"zzz\""));
}

#[test]
fn the_images_view_shows_statuses_sizes_and_why_a_thumbnail_failed() {
    let mut app = app();
    app.update(Action::SwitchView(View::Images));
    app.update(Action::Down);
    app.update(fixtures::bobs_images());
    let lines = render(&app);
    let bird = line_with(&lines, "bird.jpg");
    assert!(
        bird.contains("6028×3391") && bird.contains("4.2 MB") && bird.contains("200✓") && bird.contains("400…"),
        "{bird}"
    );
    let broken = line_with(&lines, "broken.png");
    assert!(broken.contains("200✗"), "{broken}");
    assert!(screen(&app).contains("Images of bob"));
    app.update(Action::FocusRight);
    app.update(Action::Down);
    assert!(screen(&app).contains("corrupt image data"), "{}", screen(&app));
}

#[test]
fn the_queue_view_shows_counts_workers_and_failed_jobs() {
    let mut app = app();
    app.update(Action::SwitchView(View::Queue));
    assert!(screen(&app).contains("loading…"));
    app.update(Action::Loaded(Loaded::Queue(Ok(fixtures::queue()))));
    let text = screen(&app);
    for expected in [
        "Queue (redis)",
        "pending 7",
        "running 2",
        "done 1234",
        "failed 1",
        "42 jobs in the last minute",
        "host-a-101",
        "01IMAGEBIRD",
        "40 s ago",
        "idle",
        "disk full",
        "host-c-303",
        "MISCONFIGURED, takes no jobs",
    ] {
        assert!(text.contains(expected), "{expected:?} missing:\n{text}");
    }
    app.update(Action::Loaded(Loaded::Queue(Err(ApiError::Status {
        status: 503,
        detail: "The job queue is unreachable".into(),
        fields: Default::default(),
    }))));
    assert!(screen(&app).contains("job queue is unreachable"), "the error is shown over the last data");
}

#[test]
fn the_links_view_counts_down_to_expiry() {
    let mut app = app();
    app.update(Action::SwitchView(View::Links));
    assert!(screen(&app).contains("loading…"));
    app.update(Action::Loaded(Loaded::Links {
        cursor: None,
        result: Ok(LinkPage { results: fixtures::links(now()), next: None }),
    }));
    let lines = render(&app);
    let first = line_with(&lines, "400 px");
    assert!(first.contains("bob") && first.contains("4m 05s"), "{first}");
    assert!(line_with(&lines, "original").contains("2h 01m"));
    app.update(Action::Loaded(Loaded::Links { cursor: None, result: Ok(LinkPage { results: vec![], next: None }) }));
    assert!(screen(&app).contains("no live links yet"));
}

#[test]
fn a_form_shows_the_servers_errors_by_their_fields() {
    let mut app = app();
    app.update(Action::SwitchView(View::Tiers));
    app.update(Action::New);
    for c in "Bad Id".chars() {
        app.update(Action::FormChar(c));
    }
    app.update(Action::FormSubmit);
    let refused = ApiError::Status {
        status: 400,
        detail: "invalid field(s): id".into(),
        fields: [("id".to_owned(), vec!["use 1-32 of a-z 0-9 -".to_owned()])].into(),
    };
    app.update(Action::Loaded(Loaded::Changed {
        done: "created tier".into(),
        attempt: "create tier".into(),
        result: Err(refused),
    }));
    let text = screen(&app);
    assert!(text.contains("New tier"), "{text}");
    assert!(text.contains("Max storage (e.g. 10GiB)   unlimited"), "limits, empty for none: {text}");
    assert!(text.contains("↳ use 1-32 of a-z 0-9 -"), "{text}");
    assert!(text.contains("invalid field(s): id"), "{text}");
    assert!(text.contains("Enter save"), "form keys in the footer: {text}");
}

#[test]
fn dialogs_for_confirmation_tokens_and_help() {
    let mut app = app();
    app.update(Action::Delete);
    assert!(screen(&app).contains("Delete user admin and all their images?"));
    app.update(Action::ConfirmNo);
    let token = NewToken { id: "01T".into(), token: "iat_abcdef".into() };
    app.update(Action::Loaded(Loaded::TokenIssued { username: "bob".into(), result: Ok(token) }));
    let text = screen(&app);
    assert!(text.contains("iat_abcdef") && text.contains("shown only now"), "{text}");
    app.update(Action::CloseToken);
    app.update(Action::ToggleHelp);
    let text = screen(&app);
    assert!(text.contains("switch view") && text.contains("quit"), "{text}");
}

#[test]
fn everything_fits_a_small_terminal_without_panicking() {
    let mut app = app();
    app.update(Action::Loaded(Loaded::Queue(Ok(fixtures::queue()))));
    app.update(Action::Loaded(Loaded::Links {
        cursor: None,
        result: Ok(LinkPage { results: fixtures::links(now()), next: None }),
    }));
    for view in View::ALL {
        app.update(Action::SwitchView(view));
        for (w, h) in [(80, 24), (40, 10), (200, 60)] {
            let mut terminal = Terminal::new(TestBackend::new(w, h)).expect("terminal");
            let mut graphics = Graphics::halfblocks();
            terminal.draw(|frame| draw(frame, &app, &mut graphics)).expect("draw");
        }
    }
}

/// Prints every view as text, for the README: `cargo test -p imageapi-tui -- --ignored captures --nocapture`.
#[test]
#[ignore = "prints the README's captures; nothing to assert"]
fn captures() {
    let mut app = app();
    app.update(Action::Loaded(Loaded::UserDetail(Ok(fixtures::user_with_tokens()))));
    app.update(Action::Loaded(Loaded::Queue(Ok(fixtures::queue()))));
    app.update(Action::Loaded(Loaded::Links {
        cursor: None,
        result: Ok(LinkPage { results: fixtures::links(now()), next: None }),
    }));
    for view in View::ALL {
        app.update(Action::SwitchView(view));
        if view == View::Images {
            app.update(Action::Down);
            app.update(fixtures::bobs_images());
            app.update(Action::FocusRight);
            app.update(Action::Loaded(Loaded::ImageDetail(Ok(Box::new(fixtures::bird_detail(now()))))));
        }
        if view == View::Queue {
            for sample in [3, 8, 15, 22, 30, 41, 42, 40, 38, 42] {
                let mut queue = fixtures::queue();
                queue.throughput_per_minute = sample;
                app.update(Action::Loaded(Loaded::Queue(Ok(queue))));
            }
        }
        app.connection = crate::app::Connection::Connected;
        println!(
            "--- {} ---\n{}\n",
            view.title(),
            render(&app).iter().map(|l| l.trim_end()).collect::<Vec<_>>().join("\n")
        );
    }
    app.update(Action::SwitchView(View::Tiers));
    app.update(Action::New);
    println!("--- New tier ---\n{}\n", render(&app).iter().map(|l| l.trim_end()).collect::<Vec<_>>().join("\n"));
}

/// The images view with bob's images and the images list focused.
fn images_app() -> App {
    let mut app = app();
    app.update(Action::SwitchView(View::Images));
    app.update(Action::Down);
    app.update(fixtures::bobs_images());
    app.update(Action::FocusRight);
    app
}

/// The preview pane's inside on the 80×24 screen.
fn preview_inside() -> ratatui::layout::Rect {
    let [_, body, _, _] = super::screen_layout(ratatui::layout::Rect::new(0, 0, 80, 24));
    ratatui::widgets::Block::bordered().inner(super::lists::images_layout(body).preview)
}

#[test]
fn the_preview_draws_the_thumbnail_in_half_blocks_with_both_halves_in_place() {
    let mut app = images_app();
    app.update(Action::Loaded(Loaded::Preview {
        id: "01IMAGEBIRD".into(),
        result: Ok(std::sync::Arc::new(fixtures::two_colour())),
    }));
    let buffer = buffer(&app);
    let area = preview_inside();
    let colours_at = |x: u16| -> Vec<ratatui::style::Color> {
        (area.y..area.bottom()).flat_map(|y| [buffer[(x, y)].fg, buffer[(x, y)].bg]).collect()
    };
    let (red, blue) = (ratatui::style::Color::Rgb(255, 0, 0), ratatui::style::Color::Rgb(0, 0, 255));
    let quarter = area.width / 4;
    for x in area.x + 1..area.x + quarter {
        let colours = colours_at(x);
        assert!(colours.contains(&red) && !colours.contains(&blue), "column {x} of the left half: {colours:?}");
    }
    for x in area.right() - quarter..area.right() - 1 {
        let colours = colours_at(x);
        assert!(colours.contains(&blue) && !colours.contains(&red), "column {x} of the right half: {colours:?}");
    }
    let painted = (area.y..area.bottom()).filter(|&y| buffer[(area.x + 1, y)].fg == red).count();
    assert!(painted >= 3, "the picture takes several rows ({painted})");
}

#[test]
fn the_preview_says_why_there_is_no_picture() {
    let mut app = images_app();
    assert!(screen(&app).contains("loading preview"), "{}", screen(&app));
    app.update(Action::Loaded(Loaded::Preview { id: "01IMAGEBIRD".into(), result: Err("404: gone".into()) }));
    assert!(screen(&app).contains("preview unavailable"), "{}", screen(&app));
    app.update(Action::Down);
    let text = screen(&app);
    assert!(text.contains("✗ the 200 px thumbnail") && text.contains("failed: corrupt image data"), "{text}");

    let mut pending = fixtures::images();
    pending[0].thumbnails[0].status = ThumbnailStatus::Pending;
    let app = bobs_images(pending);
    assert!(screen(&app).contains("200 px thumbnail is"), "{}", screen(&app));
    let area = preview_inside();
    let buffer = buffer(&app);
    let coloured = (area.y..area.bottom())
        .flat_map(|y| (area.x..area.right()).map(move |x| (x, y)))
        .filter(|&p| matches!(buffer[p].bg, ratatui::style::Color::Rgb(..)))
        .count();
    assert_eq!(coloured, 0, "no picture while pending");
}

/// The Images view on bob's images, as the server would list them, the first one selected.
fn bobs_images(images: Vec<crate::api::Image>) -> App {
    let mut app = app();
    app.update(Action::SwitchView(View::Images));
    app.update(Action::Down);
    app.update(Action::Loaded(Loaded::Images {
        query: crate::api::ImageQuery::from_filter("01USERBOB", ""),
        cursor: None,
        result: Ok(crate::api::ImagePage { results: images, next: None }),
    }));
    app
}

/// The fixture's two-colour picture as a ThumbHash, base64 as the API sends it.
fn two_colour_thumbhash() -> String {
    use base64::Engine as _;
    let small = image::imageops::thumbnail(&fixtures::two_colour().to_rgba8(), 64, 32);
    let hash = thumbhash::rgba_to_thumb_hash(small.width() as usize, small.height() as usize, small.as_raw());
    base64::engine::general_purpose::STANDARD.encode(hash)
}

#[test]
fn a_pending_thumbnail_is_stood_in_for_by_its_thumbhash() {
    let mut pending = fixtures::images();
    pending[0].thumbnails[0].status = ThumbnailStatus::Pending;
    pending[0].thumbhash = Some(two_colour_thumbhash());
    let app = bobs_images(pending);
    let text = screen(&app);
    assert!(text.contains("ThumbHash · pending"), "{text}");
    let area = preview_inside();
    let buffer = buffer(&app);
    let colour_at = |x: u16| -> Option<(u8, u8, u8)> {
        (area.y..area.bottom() - 1).find_map(|y| match buffer[(x, y)].fg {
            ratatui::style::Color::Rgb(r, g, b) => Some((r, g, b)),
            _ => None,
        })
    };
    // Blurred, but red on the left and blue on the right, as the picture.
    let (left, right) = (colour_at(area.x + 2), colour_at(area.right() - 3));
    assert!(left.is_some_and(|(r, _, b)| r > b), "left {left:?}");
    assert!(right.is_some_and(|(r, _, b)| b > r), "right {right:?}");
    assert!(text.contains("thumbhash "), "the detail pane shows the hash: {text}");

    // A failed thumbnail says why, placeholder or not.
    let mut failed = fixtures::images();
    failed[0].thumbnails[0].status = ThumbnailStatus::Failed;
    failed[0].thumbhash = Some(two_colour_thumbhash());
    let app = bobs_images(failed);
    let text = screen(&app);
    assert!(text.contains("✗ the 200 px thumbnail"), "{text}");
    assert!(!text.contains("ThumbHash ·"), "{text}");
}

#[test]
fn the_detail_pane_shows_owner_file_thumbnails_and_live_links() {
    let mut app = images_app();
    let text = screen(&app);
    assert!(text.contains("links: loading…"), "{text}");
    app.update(Action::Loaded(Loaded::ImageDetail(Ok(Box::new(fixtures::bird_detail(now()))))));
    let text = screen(&app);
    for expected in [
        "owner  bob (premium)",
        "jpeg  6028×3391  4.2 MB",
        "2026-11-27 09:30",
        "200 px ✓ ready",
        "400 px … pending",
        "1 live link(s)",
        "400 px, 4m 05s left",
    ] {
        assert!(text.contains(expected), "{expected:?} missing:\n{text}");
    }
    app.update(Action::Down);
    let text = screen(&app);
    assert!(text.contains("200 px ✗ failed: corrupt"), "{text}");
}

#[test]
fn clicks_select_rows_and_the_wheel_scrolls_the_list_under_it() {
    use crossterm::event::{KeyModifiers, MouseButton, MouseEvent, MouseEventKind};
    let screen_area = ratatui::layout::Rect::new(0, 0, 80, 24);
    let mouse = |kind, column, row| MouseEvent { kind, column, row, modifiers: KeyModifiers::NONE };
    let click = |column, row| mouse(MouseEventKind::Down(MouseButton::Left), column, row);
    let app = app();
    // Users view: the table's first row is screen row 3 (tabs, border, header).
    let action = super::mouse_action(&app, screen_area, click(10, 5));
    assert_eq!(action, Some(Action::Click { list: crate::action::List::Users, index: 2 }));
    let action = super::mouse_action(&app, screen_area, mouse(MouseEventKind::ScrollDown, 10, 4));
    assert_eq!(action, Some(Action::Scroll { list: crate::action::List::Users, delta: 1 }));
    assert_eq!(super::mouse_action(&app, screen_area, click(10, 23)), None, "the footer is no list");

    let mut app = images_app();
    let action = super::mouse_action(&app, screen_area, click(5, 3));
    assert_eq!(action, Some(Action::Click { list: crate::action::List::ImageUsers, index: 0 }));
    let action = super::mouse_action(&app, screen_area, click(40, 4));
    assert_eq!(action, Some(Action::Click { list: crate::action::List::Images, index: 1 }));
    app.update(Action::Delete);
    assert_eq!(super::mouse_action(&app, screen_area, click(40, 4)), None, "a dialog takes no clicks");
}
