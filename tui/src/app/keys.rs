//! Keys to actions. Which keys mean what depends on the mode (a form takes letters as text,
//! the lists take them as commands); nothing here changes state.

use crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};

use super::{App, Mode};
use crate::action::{Action, View};

impl App {
    pub fn action_for(&self, key: KeyEvent) -> Option<Action> {
        if key.kind == KeyEventKind::Release {
            return None;
        }
        if key.modifiers.contains(KeyModifiers::CONTROL) && key.code == KeyCode::Char('c') {
            return Some(Action::Quit);
        }
        match self.mode() {
            Mode::Help => Some(Action::ToggleHelp),
            Mode::Token => match key.code {
                KeyCode::Char('c') => Some(Action::CopyToken),
                KeyCode::Esc | KeyCode::Enter | KeyCode::Char('q') => Some(Action::CloseToken),
                _ => None,
            },
            Mode::Confirm => match key.code {
                KeyCode::Char('y') | KeyCode::Char('Y') | KeyCode::Enter => Some(Action::ConfirmYes),
                KeyCode::Char('n') | KeyCode::Char('N') | KeyCode::Esc => Some(Action::ConfirmNo),
                _ => None,
            },
            Mode::Form => match key.code {
                KeyCode::Esc => Some(Action::FormCancel),
                KeyCode::Enter => Some(Action::FormSubmit),
                KeyCode::Tab | KeyCode::Down => Some(Action::FormNext),
                KeyCode::BackTab | KeyCode::Up => Some(Action::FormPrev),
                KeyCode::Left | KeyCode::Right => Some(Action::FormToggle),
                KeyCode::Backspace => Some(Action::FormBackspace),
                KeyCode::Char(c) => Some(Action::FormChar(c)),
                _ => None,
            },
            Mode::Filter => match key.code {
                KeyCode::Esc => Some(Action::FilterCancel),
                KeyCode::Enter => Some(Action::FilterDone),
                KeyCode::Backspace => Some(Action::FilterBackspace),
                KeyCode::Char(c) => Some(Action::FilterChar(c)),
                KeyCode::Up => Some(Action::Up),
                KeyCode::Down => Some(Action::Down),
                _ => None,
            },
            Mode::Normal => self.normal_key(key.code),
        }
    }

    fn normal_key(&self, code: KeyCode) -> Option<Action> {
        Some(match code {
            KeyCode::Char('q') => Action::Quit,
            KeyCode::Char('?') => Action::ToggleHelp,
            KeyCode::Char('/') => Action::StartFilter,
            KeyCode::Tab => Action::NextView,
            KeyCode::BackTab => Action::PrevView,
            KeyCode::Char(c @ '1'..='5') => Action::SwitchView(View::ALL[(c as usize) - ('1' as usize)]),
            KeyCode::Up | KeyCode::Char('k') => Action::Up,
            KeyCode::Down | KeyCode::Char('j') => Action::Down,
            KeyCode::Left | KeyCode::Char('h') => Action::FocusLeft,
            KeyCode::Right | KeyCode::Char('l') => Action::FocusRight,
            KeyCode::PageUp => Action::PageUp,
            KeyCode::PageDown => Action::PageDown,
            KeyCode::Char(']') => Action::NextPage,
            KeyCode::Char('[') => Action::PrevPage,
            KeyCode::Enter => Action::Enter,
            KeyCode::Esc => Action::Back,
            KeyCode::Char('n') => Action::New,
            KeyCode::Char('e') => Action::Edit,
            KeyCode::Char('d') | KeyCode::Delete => Action::Delete,
            KeyCode::Char('t') => Action::IssueToken,
            KeyCode::Char('r') => Action::Retry,
            _ => return None,
        })
    }
}
