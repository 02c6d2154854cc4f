//! Key → action → state, without drawing.

use chrono::{TimeZone, Utc};
use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use serde_json::json;

use super::*;
use crate::action::Loaded;
use crate::api::{ApiError, Image, NewToken};
use crate::fixtures;

fn key(code: KeyCode) -> KeyEvent {
    KeyEvent::new(code, KeyModifiers::NONE)
}

/// Presses a key the way the event loop does: map it, apply it.
fn press(app: &mut App, code: KeyCode) -> Vec<Command> {
    match app.action_for(key(code)) {
        Some(action) => app.update(action),
        None => vec![],
    }
}

fn typed(app: &mut App, text: &str) {
    for c in text.chars() {
        press(app, KeyCode::Char(c));
    }
}

fn loaded_app() -> App {
    let mut app = App::new("http://test", Utc.with_ymd_and_hms(2026, 11, 28, 12, 0, 0).single().expect("time"));
    app.update(Action::Loaded(Loaded::Users(Ok(fixtures::users()))));
    app.update(Action::Loaded(Loaded::Tiers(Ok(fixtures::tiers()))));
    app
}

#[test]
fn number_keys_and_tab_switch_views_and_fetch_what_they_show() {
    let mut app = loaded_app();
    assert_eq!(press(&mut app, KeyCode::Char('4')), vec![Command::FetchQueue]);
    assert_eq!(app.view, View::Queue);
    assert_eq!(press(&mut app, KeyCode::Tab), vec![Command::FetchLinks { cursor: None }]);
    assert_eq!(app.view, View::Links);
    press(&mut app, KeyCode::Tab);
    assert_eq!(app.view, View::Users, "tab wraps around");
    press(&mut app, KeyCode::BackTab);
    assert_eq!(app.view, View::Links);
}

#[test]
fn a_refresh_is_not_sent_again_while_the_last_one_is_on_its_way() {
    let mut app = loaded_app();
    app.update(Action::SwitchView(View::Queue));
    assert_eq!(app.update(Action::Tick), vec![], "the queue fetch from the switch is still out");
    app.update(Action::Loaded(Loaded::Queue(Ok(fixtures::queue()))));
    assert_eq!(app.update(Action::Tick), vec![Command::FetchQueue]);
}

#[test]
fn moving_through_users_loads_the_selected_users_tokens() {
    let mut app = loaded_app();
    let commands = press(&mut app, KeyCode::Down);
    assert_eq!(commands, vec![Command::FetchUserDetail(fixtures::users()[1].id.clone())]);
    assert_eq!(app.users.list.selected(&app.filter).map(|u| u.username.as_str()), Some("bob"));
    press(&mut app, KeyCode::Down);
    press(&mut app, KeyCode::Down);
    assert_eq!(app.users.list.selection(), 2, "the selection stops at the last user");
}

#[test]
fn the_filter_narrows_the_list_and_esc_clears_it() {
    let mut app = loaded_app();
    press(&mut app, KeyCode::Char('/'));
    assert_eq!(app.mode(), Mode::Filter);
    typed(&mut app, "car");
    assert_eq!(
        app.users.list.visible(&app.filter).iter().map(|u| u.username.as_str()).collect::<Vec<_>>(),
        vec!["carol"]
    );
    press(&mut app, KeyCode::Char('q'));
    assert!(!app.quit, "q is text while filtering");
    press(&mut app, KeyCode::Backspace);
    press(&mut app, KeyCode::Enter);
    assert_eq!(app.mode(), Mode::Normal);
    assert_eq!(app.filter, "car");
    press(&mut app, KeyCode::Esc);
    assert_eq!(app.filter, "");
}

#[test]
fn editing_a_tier_starts_from_its_formats_and_sends_the_changed_ones() {
    let mut app = loaded_app();
    press(&mut app, KeyCode::Char('2'));
    press(&mut app, KeyCode::Char('e'));
    let form = app.form.as_ref().expect("the basic tier's form");
    assert_eq!(form.fields.get(4).map(|f| (f.key, f.display())), Some(("formats", "webp".to_owned())));
    for _ in 0..4 {
        press(&mut app, KeyCode::Tab);
    }
    typed(&mut app, ", avif");
    let commands = press(&mut app, KeyCode::Enter);
    assert!(
        matches!(commands.as_slice(), [Command::UpdateTier { id, changes }] if id == "basic" && changes["formats"] == json!(["webp", "avif"])),
        "{commands:?}"
    );
}

#[test]
fn creating_a_tier_sends_the_form_and_server_errors_come_back_inline() {
    let mut app = loaded_app();
    press(&mut app, KeyCode::Char('2'));
    press(&mut app, KeyCode::Char('n'));
    assert_eq!(app.mode(), Mode::Form);
    typed(&mut app, "bronze");
    press(&mut app, KeyCode::Tab);
    typed(&mut app, "Bronze");
    press(&mut app, KeyCode::Tab);
    typed(&mut app, "100, 9000");
    press(&mut app, KeyCode::Tab);
    press(&mut app, KeyCode::Char(' '));
    let commands = press(&mut app, KeyCode::Enter);
    assert_eq!(
        commands,
        vec![Command::CreateTier(
            json!({"id": "bronze", "name": "Bronze", "thumbnail_heights": [100, 9000], "original_link": true, "expiring_links": false, "formats": []})
        )]
    );
    assert_eq!(press(&mut app, KeyCode::Enter), vec![], "no second submit while the first is out");

    let refused = ApiError::Status {
        status: 400,
        detail: "invalid field(s): thumbnail_heights".into(),
        fields: [("thumbnail_heights".to_owned(), vec!["each height must be 1..=4096".to_owned()])].into(),
    };
    app.update(Action::Loaded(Loaded::Changed {
        done: "created tier bronze".into(),
        attempt: "create tier bronze".into(),
        result: Err(refused),
    }));
    let form = app.form.as_ref().expect("the form stays open");
    assert_eq!(form.fields[2].error.as_deref(), Some("each height must be 1..=4096"));
    assert_eq!(form.focus, 2);

    press(&mut app, KeyCode::Backspace);
    press(&mut app, KeyCode::Backspace);
    press(&mut app, KeyCode::Backspace);
    press(&mut app, KeyCode::Backspace);
    typed(&mut app, "300");
    assert!(
        matches!(press(&mut app, KeyCode::Enter).as_slice(), [Command::CreateTier(body)] if body["thumbnail_heights"] == json!([100, 300]))
    );
    app.update(Action::Loaded(Loaded::Changed {
        done: "created tier bronze".into(),
        attempt: "create tier bronze".into(),
        result: Ok(()),
    }));
    assert!(app.form.is_none());
    assert_eq!(app.message, Some(("created tier bronze".to_owned(), false)));
}

fn tab(app: &mut App, times: usize) {
    for _ in 0..times {
        press(app, KeyCode::Tab);
    }
}

/// The Tiers view with a tier form open: `n` a new one, `e` the basic tier's.
fn tier_form(key: char) -> App {
    let mut app = loaded_app();
    press(&mut app, KeyCode::Char('2'));
    press(&mut app, KeyCode::Char(key));
    app
}

fn backspaces(app: &mut App, times: usize) {
    for _ in 0..times {
        press(app, KeyCode::Backspace);
    }
}

#[test]
fn creating_a_tier_sends_the_limits_set_and_leaves_out_the_empty_ones() {
    let mut app = tier_form('n');
    typed(&mut app, "bronze");
    tab(&mut app, 1);
    typed(&mut app, "Bronze");
    tab(&mut app, 5);
    typed(&mut app, "100");
    tab(&mut app, 1);
    typed(&mut app, "1GiB");
    tab(&mut app, 2);
    typed(&mut app, "60");
    let commands = press(&mut app, KeyCode::Enter);
    assert_eq!(
        commands,
        vec![Command::CreateTier(json!({
            "id": "bronze", "name": "Bronze", "thumbnail_heights": [], "original_link": false,
            "expiring_links": false, "formats": [],
            "max_images": 100, "max_storage_bytes": 1_073_741_824_u64, "uploads_per_hour": 60
        }))],
        "the empty upload limit is left out (unlimited)"
    );
}

#[test]
fn editing_a_tier_sends_only_the_changed_limits_and_null_for_a_cleared_one() {
    let mut app = tier_form('e');
    let form = app.form.as_ref().expect("the basic tier's form");
    let shown: Vec<_> = form.fields[5..].iter().map(|f| f.display()).collect();
    assert_eq!(shown, ["100", "1GiB", "10MiB", "60"], "basic's limits, sizes in their unit");
    tab(&mut app, 7);
    backspaces(&mut app, 3);
    typed(&mut app, "0MiB");
    tab(&mut app, 1);
    backspaces(&mut app, 2);
    let commands = press(&mut app, KeyCode::Enter);
    let [Command::UpdateTier { id, changes }] = commands.as_slice() else { panic!("{commands:?}") };
    assert_eq!(id, "basic");
    assert_eq!((&changes["max_upload_bytes"], &changes["uploads_per_hour"]), (&json!(100_u64 << 20), &json!(null)));
    assert!(changes.get("max_images").is_none() && changes.get("max_storage_bytes").is_none(), "{changes}");
}

#[test]
fn an_invalid_limit_is_refused_here_by_its_field_and_nothing_is_sent() {
    let mut app = tier_form('n');
    typed(&mut app, "bronze");
    tab(&mut app, 7);
    typed(&mut app, "lots");
    tab(&mut app, 2);
    typed(&mut app, "0");
    press(&mut app, KeyCode::Up);
    assert_eq!(press(&mut app, KeyCode::Enter), vec![], "not sent");
    let form = app.form.as_ref().expect("the form stays open");
    assert!(!form.submitting);
    assert_eq!(form.error.as_deref(), Some("invalid field(s): max_storage_bytes, uploads_per_hour (not sent)"));
    assert_eq!(form.focus, 7, "the first refused field");
    assert!(form.fields[7].error.as_deref().is_some_and(|e| e.contains("not a size")), "{:?}", form.fields[7]);
    assert!(form.fields[9].error.as_deref().is_some_and(|e| e.contains("1 to 1000000")), "{:?}", form.fields[9]);

    backspaces(&mut app, "lots".len());
    typed(&mut app, "2 GiB");
    tab(&mut app, 2);
    backspaces(&mut app, 1);
    typed(&mut app, "600");
    let commands = press(&mut app, KeyCode::Enter);
    assert!(
        matches!(commands.as_slice(), [Command::CreateTier(body)] if body["max_storage_bytes"] == json!(2_u64 << 30) && body["uploads_per_hour"] == json!(600)),
        "{commands:?}"
    );
}

#[test]
fn the_servers_refusal_of_an_upload_limit_lands_under_that_field() {
    let mut app = tier_form('e');
    tab(&mut app, 7);
    backspaces(&mut app, 3);
    typed(&mut app, "0MiB");
    let commands = press(&mut app, KeyCode::Enter);
    assert!(
        matches!(commands.as_slice(), [Command::UpdateTier { changes, .. }] if changes["max_upload_bytes"] == json!(100_u64 << 20)),
        "the top of the range is the server's to judge: {commands:?}"
    );
    let message = "must be a whole number from 1 to 52428800 (the server's upload limit), or null for unlimited";
    let refused = ApiError::Status {
        status: 400,
        detail: "invalid field(s): max_upload_bytes".into(),
        fields: [("max_upload_bytes".to_owned(), vec![message.to_owned()])].into(),
    };
    app.update(Action::Loaded(Loaded::Changed {
        done: "updated tier basic".into(),
        attempt: "update tier basic".into(),
        result: Err(refused),
    }));
    let form = app.form.as_ref().expect("the form stays open");
    assert_eq!((form.focus, form.fields[7].error.as_deref()), (7, Some(message)));
}

#[test]
fn deleting_asks_first_and_only_yes_sends_it() {
    let mut app = loaded_app();
    press(&mut app, KeyCode::Char('d'));
    assert_eq!(app.mode(), Mode::Confirm);
    assert_eq!(press(&mut app, KeyCode::Char('n')), vec![]);
    assert_eq!(app.mode(), Mode::Normal);
    press(&mut app, KeyCode::Char('d'));
    let users = fixtures::users();
    assert_eq!(
        press(&mut app, KeyCode::Char('y')),
        vec![Command::DeleteUser { id: users[0].id.clone(), username: users[0].username.clone() }]
    );
}

#[test]
fn an_issued_token_is_shown_once_and_can_be_copied() {
    let mut app = loaded_app();
    let commands = press(&mut app, KeyCode::Char('t'));
    assert!(matches!(commands.as_slice(), [Command::IssueToken { username, .. }] if username == "admin"));
    let token = NewToken { id: "01TOKEN".into(), token: "iat_secret".into() };
    app.update(Action::Loaded(Loaded::TokenIssued { username: "admin".into(), result: Ok(token) }));
    assert_eq!(app.mode(), Mode::Token);
    assert_eq!(press(&mut app, KeyCode::Char('c')), vec![Command::Copy("iat_secret".into())]);
    press(&mut app, KeyCode::Esc);
    assert!(app.token.is_none(), "gone once closed");
}

#[test]
fn revoking_a_token_works_from_the_token_pane() {
    let mut app = loaded_app();
    app.update(Action::Loaded(Loaded::UserDetail(Ok(fixtures::user_with_tokens()))));
    press(&mut app, KeyCode::Enter);
    press(&mut app, KeyCode::Down);
    press(&mut app, KeyCode::Char('d'));
    let command = app.confirm.as_ref().map(|c| c.command.clone());
    assert_eq!(command, Some(Command::RevokeToken { user: fixtures::users()[0].id.clone(), token: "01TOKEN2".into() }));
}

#[test]
fn an_unreachable_server_keeps_the_last_data_and_says_so() {
    let mut app = loaded_app();
    app.update(Action::Loaded(Loaded::Users(Err(ApiError::Unreachable("connection refused".into())))));
    assert!(matches!(app.connection, Connection::Unreachable(_)));
    assert_eq!(app.users.list.visible(&app.filter).len(), 3, "the last good list stays");
    app.update(Action::Loaded(Loaded::Users(Ok(fixtures::users()))));
    assert_eq!(app.connection, Connection::Connected);
}

#[test]
fn retry_sends_the_selected_failed_job() {
    let mut app = loaded_app();
    app.update(Action::SwitchView(View::Queue));
    app.update(Action::Loaded(Loaded::Queue(Ok(fixtures::queue()))));
    assert_eq!(press(&mut app, KeyCode::Char('r')), vec![Command::RetryJob("01JOBFAILED".into())]);
    assert_eq!(app.queue.throughput(), vec![42]);
}

#[test]
fn countdowns_read_like_a_clock() {
    let now = Utc.with_ymd_and_hms(2026, 11, 28, 12, 0, 0).single().expect("time");
    assert_eq!(countdown(now + chrono::Duration::seconds(4 * 60 + 5), now), "4m 05s");
    assert_eq!(countdown(now + chrono::Duration::seconds(3725), now), "1h 02m");
    assert_eq!(countdown(now + chrono::Duration::seconds(9), now), "9s");
    assert_eq!(countdown(now, now), "expired");
}

#[test]
fn help_opens_with_question_mark_and_any_key_closes_it() {
    let mut app = loaded_app();
    press(&mut app, KeyCode::Char('?'));
    assert_eq!(app.mode(), Mode::Help);
    press(&mut app, KeyCode::Char('q'));
    assert_eq!(app.mode(), Mode::Normal);
    assert!(!app.quit);
    press(&mut app, KeyCode::Char('q'));
    assert!(app.quit);
}

#[test]
fn a_refused_delete_says_what_could_not_be_done_and_why() {
    let mut app = loaded_app();
    app.update(Action::SwitchView(View::Tiers));
    let refused = ApiError::Status { status: 409, detail: "the tier is builtin".into(), fields: Default::default() };
    app.update(Action::Loaded(Loaded::Changed {
        done: "deleted tier basic".into(),
        attempt: "delete tier basic".into(),
        result: Err(refused),
    }));
    assert_eq!(app.message, Some(("could not delete tier basic: 409: the tier is builtin".to_owned(), true)));
}

/// The Images view with bob selected, his first page loaded and the images list focused.
fn images_app(next: Option<&str>) -> App {
    let mut app = loaded_app();
    app.update(Action::SwitchView(View::Images));
    app.update(Action::Down);
    let page = crate::api::ImagePage {
        results: fixtures::images(),
        next: next.map(|c| format!("http://elsewhere/api/v1/admin/images?limit=50&cursor={c}&user=01USERBOB")),
    };
    app.update(Action::Loaded(Loaded::Images { query: bob(""), cursor: None, result: Ok(page) }));
    press(&mut app, KeyCode::Right);
    app
}

fn bob(filter: &str) -> crate::api::ImageQuery {
    crate::api::ImageQuery::from_filter("01USERBOB", filter)
}

fn image(id: &str) -> Image {
    Image { id: id.into(), name: format!("{id}.png"), ..fixtures::images().remove(1) }
}

#[test]
fn deleting_an_image_asks_first_and_the_list_updates() {
    let mut app = images_app(None);
    press(&mut app, KeyCode::Down);
    assert!(press(&mut app, KeyCode::Char('d')).is_empty(), "nothing is sent before the answer");
    let question = app.confirm.as_ref().map(|c| c.question.clone()).unwrap_or_default();
    assert!(question.contains("broken.png") && question.contains("bob"), "{question}");
    assert!(press(&mut app, KeyCode::Char('n')).is_empty());
    assert!(app.confirm.is_none());

    press(&mut app, KeyCode::Char('d'));
    let sent = press(&mut app, KeyCode::Char('y'));
    assert_eq!(sent, vec![Command::DeleteImage { id: "01IMAGEBROKEN".into(), name: "broken.png".into() }]);
    app.update(Action::Loaded(Loaded::ImageDeleted {
        id: "01IMAGEBROKEN".into(),
        name: "broken.png".into(),
        result: Ok(()),
    }));
    let left: Vec<_> = app.images.visible().iter().map(|i| i.id.clone()).collect();
    assert_eq!(left, ["01IMAGEBIRD"]);
    assert_eq!(app.images.selection(), 0);
    assert_eq!(app.message, Some(("deleted image broken.png".into(), false)));

    // With the users column focused, `d` does not touch images.
    press(&mut app, KeyCode::Left);
    press(&mut app, KeyCode::Char('d'));
    assert!(app.confirm.is_none());
}

#[test]
fn a_failed_delete_keeps_the_image_and_says_why() {
    let mut app = images_app(None);
    let refused = ApiError::Status { status: 403, detail: "admins only".into(), fields: Default::default() };
    app.update(Action::Loaded(Loaded::ImageDeleted {
        id: "01IMAGEBIRD".into(),
        name: "bird.jpg".into(),
        result: Err(refused),
    }));
    assert_eq!(app.images.visible().len(), 2);
    assert!(app.message.as_ref().is_some_and(|(m, error)| *error && m.contains("admins only")));
}

#[test]
fn the_next_page_loads_near_the_end_once_and_goes_at_the_end() {
    let mut app = loaded_app();
    app.update(Action::SwitchView(View::Images));
    app.update(Action::Down);
    let first = crate::api::ImagePage {
        results: fixtures::images(),
        next: Some("http://elsewhere/api/v1/admin/images?limit=50&cursor=01IMAGEBROKEN&user=01USERBOB".into()),
    };
    // Two rows loaded: the end is near at once; the cursor comes from the server's link.
    let sent = app.update(Action::Loaded(Loaded::Images { query: bob(""), cursor: None, result: Ok(first) }));
    assert!(sent.contains(&Command::FetchImages { query: bob(""), cursor: Some("01IMAGEBROKEN".into()) }), "{sent:?}");
    assert!(app.images.loading_more());
    press(&mut app, KeyCode::Right);
    let again = press(&mut app, KeyCode::Down);
    assert!(!again.iter().any(|c| matches!(c, Command::FetchImages { cursor: Some(_), .. })), "not twice: {again:?}");
    press(&mut app, KeyCode::Up);

    let page = crate::api::ImagePage { results: vec![image("01IMAGEA"), image("01IMAGE0")], next: None };
    app.update(Action::Loaded(Loaded::Images {
        query: bob(""),
        cursor: Some("01IMAGEBROKEN".into()),
        result: Ok(page),
    }));
    let ids: Vec<_> = app.images.visible().iter().map(|i| i.id.clone()).collect();
    assert_eq!(ids, ["01IMAGEBIRD", "01IMAGEBROKEN", "01IMAGEA", "01IMAGE0"]);
    assert!(!app.images.loading_more() && !app.images.has_more());
    press(&mut app, KeyCode::PageDown);
    assert_eq!(app.images.selection(), 3, "page keys move ten rows, up to the end");
    press(&mut app, KeyCode::PageUp);
    assert_eq!(app.images.selection(), 0);

    // A refresh of the first page keeps the pages after it.
    let head = crate::api::ImagePage {
        results: fixtures::images(),
        next: Some("http://x/api/v1/admin/images?cursor=01IMAGEBROKEN".into()),
    };
    app.update(Action::Loaded(Loaded::Images { query: bob(""), cursor: None, result: Ok(head) }));
    assert_eq!(app.images.visible().len(), 4);
    assert!(!app.images.has_more(), "everything is loaded");
}

#[test]
fn the_filter_becomes_the_servers_filters() {
    let query = bob("beach  after:2026-12-01 before:2026-12-02T12:00:00+01:00 sunny");
    assert_eq!(query.name, "beach sunny");
    assert_eq!(query.uploaded_after.as_deref(), Some("2026-12-01T00:00:00Z"));
    assert_eq!(query.uploaded_before.as_deref(), Some("2026-12-02T12:00:00+01:00"));
    assert_eq!(
        query.to_query(Some("01C"), 50),
        "user=01USERBOB&limit=50&name=beach%20sunny&uploaded_after=2026-12-01T00%3A00%3A00Z\
         &uploaded_before=2026-12-02T12%3A00%3A00%2B01%3A00&cursor=01C"
    );
    assert_eq!(bob("").to_query(None, 50), "user=01USERBOB&limit=50");

    let mut app = images_app(None);
    press(&mut app, KeyCode::Char('/'));
    let sent = press(&mut app, KeyCode::Char('b'));
    assert_eq!(sent, vec![Command::FetchImages { query: bob("b"), cursor: None }]);
    assert!(app.images.visible().is_empty(), "the old list goes while the filtered one loads");
    // A late answer for the unfiltered list is dropped.
    app.update(fixtures::bobs_images());
    assert!(app.images.visible().is_empty());
    let filtered = crate::api::ImagePage { results: vec![fixtures::images().remove(1)], next: None };
    app.update(Action::Loaded(Loaded::Images { query: bob("b"), cursor: None, result: Ok(filtered) }));
    assert_eq!(app.images.visible().len(), 1);
    let sent = press(&mut app, KeyCode::Esc);
    assert_eq!(sent, vec![Command::FetchImages { query: bob(""), cursor: None }], "Esc clears the filter");
}

#[test]
fn selecting_an_image_fetches_its_detail_and_preview_once() {
    let mut app = loaded_app();
    app.update(Action::SwitchView(View::Images));
    app.update(Action::Down);
    let sent = app.update(fixtures::bobs_images());
    assert!(sent.contains(&Command::FetchImageDetail("01IMAGEBIRD".into())), "{sent:?}");
    assert!(sent.contains(&Command::FetchPreview { id: "01IMAGEBIRD".into(), height: 200 }), "{sent:?}");
    assert_eq!(app.images.preview("01IMAGEBIRD"), Some(&Preview::Loading));
    let again = app.update(Action::Tick);
    assert!(!again.iter().any(|c| matches!(c, Command::FetchPreview { .. })), "cached: {again:?}");
    // The broken image's thumbnail failed: no preview to fetch.
    app.update(Action::Loaded(Loaded::ImageDetail(Ok(Box::new(fixtures::bird_detail(app.now))))));
    press(&mut app, KeyCode::Right);
    let sent = press(&mut app, KeyCode::Down);
    assert!(!sent.iter().any(|c| matches!(c, Command::FetchPreview { .. })), "{sent:?}");
    assert!(app.images.selected_detail().is_none(), "the bird's detail is not the broken image's");
}

#[test]
fn clicks_and_the_wheel_focus_the_list_and_move_its_selection() {
    let mut app = images_app(None);
    press(&mut app, KeyCode::Left);
    app.update(Action::Click { list: List::Images, index: 1 });
    assert_eq!((app.images.pane(), app.images.selection()), (Pane::Detail, 1));
    let sent = app.update(Action::Click { list: List::ImageUsers, index: 2 });
    assert_eq!((app.images.pane(), app.images.user_selection()), (Pane::List, 2));
    assert_eq!(
        sent,
        vec![Command::FetchImages { query: crate::api::ImageQuery::from_filter("01USERCAROL", ""), cursor: None }]
    );
    app.update(Action::Scroll { list: List::ImageUsers, delta: -1 });
    assert_eq!(app.images.user_selection(), 1);
    assert!(app.update(Action::Click { list: List::Links, index: 0 }).is_empty(), "not on screen");

    app.update(Action::SwitchView(View::Users));
    app.update(Action::Click { list: List::Users, index: 2 });
    assert_eq!(app.users.list.selection(), 2);
    app.update(Action::Scroll { list: List::Users, delta: 5 });
    assert_eq!(app.users.list.selection(), 2, "the wheel stops at the end");
}

#[test]
fn the_links_view_pages_forward_and_back_and_refreshes_the_page_on_screen() {
    let mut app = loaded_app();
    assert_eq!(press(&mut app, KeyCode::Char('5')), vec![Command::FetchLinks { cursor: None }]);
    let page = |next: Option<&str>| crate::api::LinkPage {
        results: crate::fixtures::links(chrono::Utc::now()),
        next: next.map(|c| format!("http://elsewhere/api/v1/admin/links?limit=100&cursor={c}")),
    };
    app.update(Action::Loaded(Loaded::Links { cursor: None, result: Ok(page(Some("C1"))) }));
    assert_eq!(press(&mut app, KeyCode::Char('[')), vec![], "no page before the first");
    assert_eq!(press(&mut app, KeyCode::Char(']')), vec![Command::FetchLinks { cursor: Some("C1".into()) }]);
    // A late answer for the first page does not replace the second.
    app.update(Action::Loaded(Loaded::Links { cursor: None, result: Ok(page(Some("C1"))) }));
    assert!(!app.links.has_next_page(), "the first page's answer was dropped");
    app.update(Action::Loaded(Loaded::Links { cursor: Some("C1".into()), result: Ok(page(None)) }));
    assert_eq!(press(&mut app, KeyCode::Char(']')), vec![], "the last page");
    assert_eq!(
        app.update(Action::Tick),
        vec![Command::FetchLinks { cursor: Some("C1".into()) }],
        "refresh keeps the page"
    );
    app.update(Action::Loaded(Loaded::Links { cursor: Some("C1".into()), result: Ok(page(None)) }));
    assert_eq!(press(&mut app, KeyCode::Char('[')), vec![Command::FetchLinks { cursor: None }]);
}
