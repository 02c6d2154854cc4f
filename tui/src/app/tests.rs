//! Key → action → state, without drawing.

use chrono::{TimeZone, Utc};
use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use serde_json::json;

use super::*;
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
    assert_eq!(press(&mut app, KeyCode::Tab), vec![Command::FetchLinks]);
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
    assert_eq!(app.selected_user().map(|u| u.username.as_str()), Some("bob"));
    press(&mut app, KeyCode::Down);
    press(&mut app, KeyCode::Down);
    assert_eq!(app.user_sel, 2, "the selection stops at the last user");
}

#[test]
fn the_filter_narrows_the_list_and_esc_clears_it() {
    let mut app = loaded_app();
    press(&mut app, KeyCode::Char('/'));
    assert_eq!(app.mode(), Mode::Filter);
    typed(&mut app, "car");
    assert_eq!(app.visible_users().iter().map(|u| u.username.as_str()).collect::<Vec<_>>(), vec!["carol"]);
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
            json!({"id": "bronze", "name": "Bronze", "thumbnail_heights": [100, 9000], "original_link": true, "expiring_links": false})
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
    assert_eq!(app.visible_users().len(), 3, "the last good list stays");
    app.update(Action::Loaded(Loaded::Users(Ok(fixtures::users()))));
    assert_eq!(app.connection, Connection::Connected);
}

#[test]
fn retry_sends_the_selected_failed_job() {
    let mut app = loaded_app();
    app.update(Action::SwitchView(View::Queue));
    app.update(Action::Loaded(Loaded::Queue(Ok(fixtures::queue()))));
    assert_eq!(press(&mut app, KeyCode::Char('r')), vec![Command::RetryJob("01JOBFAILED".into())]);
    assert_eq!(app.throughput.iter().copied().collect::<Vec<_>>(), vec![42]);
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
