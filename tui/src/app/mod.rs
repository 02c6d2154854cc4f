//! The TUI's state and the one function that changes it, [`App::update`]. Drawing reads the
//! state (`&App`) and never changes it; network answers arrive as actions like keys do.
//!
//! Each view is a struct that owns its list, its selection and its part of the update:
//! [`users::UsersView`], [`tiers::TiersView`], [`images::ImagesView`] (with the previews),
//! [`queue::QueueView`] and [`links::LinksView`] (with the paging). `App` keeps what they
//! share (the view on screen, the filter, the status line, the dialogs) and hands each
//! action to the view it concerns; `answers.rs` does the same for network answers and
//! `dialogs.rs` for forms and confirmations.

mod answers;
mod confirm;
mod dialogs;
mod form;
mod images;
mod keys;
mod links;
mod list_state;
mod previews;
mod queue;
mod remote;
#[cfg(test)]
mod tests;
mod tiers;
mod users;

use chrono::{DateTime, Utc};
pub use confirm::Confirm;
pub use form::{FieldValue, Form, FormKind};
pub use list_state::Pane;
pub use previews::Preview;
pub use remote::Remote;

use crate::action::{Action, Command, List, View};
use crate::api::NewToken;

/// Rows PageUp/PageDown move.
const PAGE_ROWS: i64 = 10;

/// What keys currently talk to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Normal,
    Filter,
    Form,
    Confirm,
    Help,
    Token,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Connection {
    Connecting,
    Connected,
    Unreachable(String),
}

#[derive(Debug, Clone, PartialEq)]
pub struct ShownToken {
    pub username: String,
    pub token: NewToken,
    pub copied: bool,
}

#[derive(Debug)]
pub struct App {
    pub server: String,
    pub view: View,
    pub quit: bool,
    pub now: DateTime<Utc>,
    pub connection: Connection,
    /// The last change's outcome, for the status line.
    pub message: Option<(String, bool)>,
    /// One filter, for the view on screen (switching views clears it).
    pub filter: String,
    pub filtering: bool,
    pub help: bool,
    pub form: Option<Form>,
    pub confirm: Option<Confirm>,
    pub token: Option<ShownToken>,

    pub users: users::UsersView,
    pub tiers: tiers::TiersView,
    pub images: images::ImagesView,
    pub queue: queue::QueueView,
    pub links: links::LinksView,
}

impl App {
    pub fn new(server: &str, now: DateTime<Utc>) -> Self {
        Self {
            server: server.to_owned(),
            view: View::Users,
            quit: false,
            now,
            connection: Connection::Connecting,
            message: None,
            filter: String::new(),
            filtering: false,
            help: false,
            form: None,
            confirm: None,
            token: None,
            users: Default::default(),
            tiers: Default::default(),
            images: Default::default(),
            queue: Default::default(),
            links: Default::default(),
        }
    }

    pub fn mode(&self) -> Mode {
        if self.help {
            Mode::Help
        } else if self.token.is_some() {
            Mode::Token
        } else if self.confirm.is_some() {
            Mode::Confirm
        } else if self.form.is_some() {
            Mode::Form
        } else if self.filtering {
            Mode::Filter
        } else {
            Mode::Normal
        }
    }

    /// The selected row of `list`, on screen or not.
    pub fn selection_of(&self, list: List) -> usize {
        match list {
            List::Users => self.users.list.selection(),
            List::Tokens => self.users.token_selection(),
            List::Tiers => self.tiers.list.selection(),
            List::ImageUsers => self.images.user_selection(),
            List::Images => self.images.selection(),
            List::FailedJobs => self.queue.selection(),
            List::Links => self.links.page.selection(),
        }
    }

    // ---- the update ---------------------------------------------------------------------

    /// Applies an action; returns the network work it calls for.
    pub fn update(&mut self, action: Action) -> Vec<Command> {
        match action {
            Action::Quit => {
                self.quit = true;
                vec![]
            }
            Action::Tick => {
                self.now = Utc::now();
                self.refresh()
            }
            Action::SwitchView(view) => self.switch(view),
            Action::NextView => self.switch(View::ALL[(self.view.index() + 1) % View::ALL.len()]),
            Action::PrevView => self.switch(View::ALL[(self.view.index() + View::ALL.len() - 1) % View::ALL.len()]),
            Action::Up => self.move_selection(-1),
            Action::Down => self.move_selection(1),
            Action::PageUp => self.move_selection(-PAGE_ROWS),
            Action::PageDown => self.move_selection(PAGE_ROWS),
            Action::NextPage => self.turn_links_page(true),
            Action::PrevPage => self.turn_links_page(false),
            Action::Click { list, index } => {
                if !self.focus(list) {
                    return vec![];
                }
                let current = self.selection_of(list) as i64;
                self.move_selection(index as i64 - current)
            }
            Action::Scroll { list, delta } => {
                if !self.focus(list) {
                    return vec![];
                }
                self.move_selection(delta)
            }
            Action::FocusLeft => {
                self.images.focus_users();
                vec![]
            }
            Action::FocusRight => {
                if self.view == View::Images {
                    self.images.focus_images();
                }
                vec![]
            }
            Action::Enter => {
                match self.view {
                    View::Users => self.users.open_tokens(&self.filter),
                    View::Images => self.images.focus_images(),
                    View::Tiers | View::Queue | View::Links => {}
                }
                vec![]
            }
            Action::Back => {
                // Either view's detail pane, wherever it was left open.
                if self.users.in_detail() || self.images.in_detail() {
                    self.users.leave_detail();
                    self.images.focus_users();
                    vec![]
                } else {
                    self.filter.clear();
                    self.requery_images()
                }
            }
            Action::ToggleHelp => {
                self.help = !self.help;
                vec![]
            }
            Action::StartFilter => {
                self.filtering = true;
                vec![]
            }
            Action::FilterChar(c) => {
                self.filter.push(c);
                self.reset_selection();
                self.requery_images()
            }
            Action::FilterBackspace => {
                self.filter.pop();
                self.reset_selection();
                self.requery_images()
            }
            Action::FilterDone => {
                self.filtering = false;
                vec![]
            }
            Action::FilterCancel => {
                self.filtering = false;
                self.filter.clear();
                self.reset_selection();
                self.requery_images()
            }
            Action::New => self.open_new_form(),
            Action::Edit => self.open_edit_form(),
            Action::Delete => self.ask_delete(),
            Action::IssueToken => match self.view {
                View::Users => self.users.issue_token(&self.filter).into_iter().collect(),
                _ => vec![],
            },
            Action::Retry => match self.view {
                View::Queue => self.queue.retry(&self.filter).into_iter().collect(),
                _ => vec![],
            },
            Action::FormChar(c) => self.with_form(|f| f.type_char(c)),
            Action::FormBackspace => self.with_form(Form::backspace),
            Action::FormNext => self.with_form(Form::next),
            Action::FormPrev => self.with_form(Form::prev),
            Action::FormToggle => self.with_form(Form::toggle),
            Action::FormCancel => {
                self.form = None;
                vec![]
            }
            Action::FormSubmit => self.submit_form(),
            Action::ConfirmYes => self.confirm.take().map(|c| vec![c.command]).unwrap_or_default(),
            Action::ConfirmNo => {
                self.confirm = None;
                vec![]
            }
            Action::CopyToken => match &mut self.token {
                Some(shown) => {
                    shown.copied = true;
                    vec![Command::Copy(shown.token.token.clone())]
                }
                None => vec![],
            },
            Action::CloseToken => {
                self.token = None;
                vec![]
            }
            Action::Loaded(loaded) => self.loaded(loaded),
        }
    }

    fn switch(&mut self, view: View) -> Vec<Command> {
        if self.view != view {
            self.view = view;
            self.filter.clear();
            self.filtering = false;
        }
        self.refresh()
    }

    fn reset_selection(&mut self) {
        match self.view {
            View::Users => self.users.list.reset_selection(),
            View::Tiers => self.tiers.list.reset_selection(),
            View::Images => self.images.reset_selection(),
            View::Queue => self.queue.reset_selection(),
            View::Links => self.links.page.reset_selection(),
        }
    }

    fn move_selection(&mut self, delta: i64) -> Vec<Command> {
        let filter = &self.filter;
        match self.view {
            View::Users => self.users.move_selection(delta, filter),
            View::Tiers => {
                self.tiers.list.step(delta, filter);
                vec![]
            }
            View::Images => self.images.move_selection(delta, self.users.list.all(), filter),
            View::Queue => {
                self.queue.move_selection(delta, filter);
                vec![]
            }
            View::Links => {
                self.links.page.step(delta, filter);
                vec![]
            }
        }
    }

    /// Gives the focus to `list`; false if it is not on screen.
    fn focus(&mut self, list: List) -> bool {
        match self.view {
            View::Users => self.users.focus(list),
            View::Images => self.images.focus(list),
            View::Tiers => list == List::Tiers,
            View::Queue => list == List::FailedJobs,
            View::Links => list == List::Links,
        }
    }

    fn turn_links_page(&mut self, forward: bool) -> Vec<Command> {
        if self.view != View::Links {
            return vec![];
        }
        self.links.turn_page(forward)
    }

    /// Fetches what the current view shows, skipping what is still on its way.
    fn refresh(&mut self) -> Vec<Command> {
        let filter = &self.filter;
        let mut commands = Vec::new();
        match self.view {
            View::Users => {
                commands.extend(self.users.fetch_list());
                // The user forms offer the tiers.
                commands.extend(self.tiers.fetch());
                commands.extend(self.users.fetch_detail(filter));
            }
            View::Tiers => commands.extend(self.tiers.fetch()),
            View::Images => {
                commands.extend(self.users.fetch_list());
                commands.extend(self.images.refresh(self.users.list.all(), filter));
            }
            View::Queue => commands.extend(self.queue.fetch()),
            View::Links => commands.extend(self.links.fetch()),
        }
        commands
    }

    /// Starts the Images view's list over (another user, another filter), if it is on screen.
    fn requery_images(&mut self) -> Vec<Command> {
        if self.view != View::Images {
            return vec![];
        }
        self.images.requery(self.users.list.all(), &self.filter)
    }
}

/// `4m 05s`, `1h 02m`, or `expired`.
pub fn countdown(until: DateTime<Utc>, now: DateTime<Utc>) -> String {
    let secs = (until - now).num_seconds();
    if secs <= 0 {
        return "expired".to_owned();
    }
    match secs {
        s if s >= 3600 => format!("{}h {:02}m", s / 3600, (s % 3600) / 60),
        s if s >= 60 => format!("{}m {:02}s", s / 60, s % 60),
        s => format!("{s}s"),
    }
}
