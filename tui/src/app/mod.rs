//! The TUI's state and the one function that changes it, [`App::update`]. Drawing reads the
//! state (`&App`) and never changes it; network answers arrive as actions like keys do.

mod form;
mod keys;
#[cfg(test)]
mod tests;

use std::collections::{HashMap, HashSet, VecDeque};

use chrono::{DateTime, Utc};
pub use form::{FieldValue, Form, FormKind};

use crate::action::{Action, Command, List, Loaded, PreviewImage, View};
use crate::api::{ApiError, Image, ImageDetail, ImagePage, ImageQuery, Link, NewToken, NewUser, Queue, Tier, User};

/// Samples kept for the throughput sparkline (one per refresh).
const SPARK_SAMPLES: usize = 60;
/// Decoded previews kept (a 200 px thumbnail is ~100-300 kB decoded).
const PREVIEWS_KEPT: usize = 32;
/// The next page of images is fetched when the selection comes this close to the end.
const LOAD_AHEAD: usize = 5;
/// Rows PageUp/PageDown move.
const PAGE_ROWS: i64 = 10;

/// A thumbnail for the preview pane, by image id.
#[derive(Debug, Clone, PartialEq)]
pub enum Preview {
    Loading,
    Ready(PreviewImage),
    Failed(String),
}

/// Decoded previews, the most recent [`PREVIEWS_KEPT`].
#[derive(Debug, Default)]
pub struct Previews {
    entries: HashMap<String, Preview>,
    order: VecDeque<String>,
}

impl Previews {
    pub fn get(&self, id: &str) -> Option<&Preview> {
        self.entries.get(id)
    }

    fn insert(&mut self, id: String, preview: Preview) {
        if self.entries.insert(id.clone(), preview).is_none() {
            self.order.push_back(id);
        }
        while self.order.len() > PREVIEWS_KEPT {
            if let Some(old) = self.order.pop_front() {
                self.entries.remove(&old);
            }
        }
    }
}

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

/// Which pane of a two-pane view has the focus.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Pane {
    #[default]
    List,
    Detail,
}

/// Data from the server: the last good copy stays on screen when a refresh fails.
#[derive(Debug, Clone, PartialEq)]
pub struct Remote<T> {
    pub data: Option<T>,
    pub error: Option<String>,
}

impl<T> Default for Remote<T> {
    fn default() -> Self {
        Self { data: None, error: None }
    }
}

impl<T> Remote<T> {
    fn set(&mut self, result: Result<T, ApiError>) {
        match result {
            Ok(data) => {
                self.data = Some(data);
                self.error = None;
            }
            Err(e) => self.error = Some(e.to_string()),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Connection {
    Connecting,
    Connected,
    Unreachable(String),
}

/// A destructive action waiting for "y".
#[derive(Debug, Clone, PartialEq)]
pub struct Confirm {
    pub question: String,
    pub command: Command,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ShownToken {
    pub username: String,
    pub token: NewToken,
    pub copied: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Resource {
    Users,
    UserDetail,
    Tiers,
    Images,
    ImageDetail,
    Queue,
    Links,
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
    pub filter: String,
    pub filtering: bool,
    pub help: bool,
    pub form: Option<Form>,
    pub confirm: Option<Confirm>,
    pub token: Option<ShownToken>,

    pub users: Remote<Vec<User>>,
    pub user_detail: Option<User>,
    pub tiers: Remote<Vec<Tier>>,
    /// The loaded pages of the selected user's images, newest first.
    pub images: Remote<Vec<Image>>,
    /// The query `images` answers (whose images, which filter).
    pub images_query: Option<ImageQuery>,
    /// The cursor of the page after the loaded ones; `None` when all are loaded.
    pub images_next: Option<String>,
    /// A next page is on its way.
    pub loading_more: bool,
    /// The selected image as the admin detail shows it (owner, links).
    pub image_detail: Option<ImageDetail>,
    pub previews: Previews,
    pub queue: Remote<Queue>,
    /// The page of live links on screen, newest first.
    pub links: Remote<Vec<Link>>,
    /// The cursors of the pages before this one, the last being this page's own (none on the
    /// first page): `[` goes back one, refreshes re-read this page.
    pub link_cursors: Vec<String>,
    /// The cursor of the page after this one; `None` on the last.
    pub links_next: Option<String>,
    pub throughput: VecDeque<u64>,

    pub user_sel: usize,
    pub token_sel: usize,
    pub users_pane: Pane,
    pub tier_sel: usize,
    pub image_user_sel: usize,
    pub image_sel: usize,
    pub images_pane: Pane,
    pub failed_sel: usize,
    pub link_sel: usize,

    in_flight: HashSet<Resource>,
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
            users: Remote::default(),
            user_detail: None,
            tiers: Remote::default(),
            images: Remote::default(),
            images_query: None,
            images_next: None,
            loading_more: false,
            image_detail: None,
            previews: Previews::default(),
            queue: Remote::default(),
            links: Remote::default(),
            link_cursors: Vec::new(),
            links_next: None,
            throughput: VecDeque::new(),
            user_sel: 0,
            token_sel: 0,
            users_pane: Pane::List,
            tier_sel: 0,
            image_user_sel: 0,
            image_sel: 0,
            images_pane: Pane::List,
            failed_sel: 0,
            link_sel: 0,
            in_flight: HashSet::new(),
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

    fn matches(&self, text: &[&str]) -> bool {
        let needle = self.filter.to_lowercase();
        needle.is_empty() || text.iter().any(|t| t.to_lowercase().contains(&needle))
    }

    // ---- what the views list (filtered) ------------------------------------------------

    pub fn visible_users(&self) -> Vec<&User> {
        let all = self.users.data.as_deref().unwrap_or_default();
        all.iter().filter(|u| self.matches(&[&u.username, &u.tier])).collect()
    }

    pub fn visible_tiers(&self) -> Vec<&Tier> {
        let all = self.tiers.data.as_deref().unwrap_or_default();
        all.iter().filter(|t| self.matches(&[&t.id, &t.name])).collect()
    }

    /// The users column of the images view: every user (the filter applies to images).
    pub fn image_users(&self) -> Vec<&User> {
        self.users.data.as_deref().unwrap_or_default().iter().collect()
    }

    /// The loaded images (the server applies the filter).
    pub fn visible_images(&self) -> Vec<&Image> {
        self.images.data.as_deref().unwrap_or_default().iter().collect()
    }

    pub fn selected_image(&self) -> Option<&Image> {
        self.visible_images().get(self.image_sel).copied()
    }

    /// The detail of the selected image, once loaded.
    pub fn selected_image_detail(&self) -> Option<&ImageDetail> {
        let selected = self.selected_image()?;
        self.image_detail.as_ref().filter(|d| d.image.id == selected.id)
    }

    /// What the Images view should show: the selected user's images under the filter.
    pub fn image_query(&self) -> Option<ImageQuery> {
        self.selected_image_user().map(|u| ImageQuery::from_filter(&u.id, &self.filter))
    }

    pub fn visible_links(&self) -> Vec<&Link> {
        let all = self.links.data.as_deref().unwrap_or_default();
        all.iter()
            .filter(|l| self.matches(&[l.owner_username.as_deref().unwrap_or(""), &l.image_id, &l.variant.to_string()]))
            .collect()
    }

    pub fn visible_failed(&self) -> Vec<&crate::api::FailedJob> {
        let all = self.queue.data.as_ref().map(|q| q.failed_jobs.as_slice()).unwrap_or_default();
        all.iter().filter(|f| self.matches(&[&f.job, &f.reason, f.image_id.as_deref().unwrap_or("")])).collect()
    }

    pub fn selected_user(&self) -> Option<&User> {
        self.visible_users().get(self.user_sel).copied()
    }

    fn selected_tier(&self) -> Option<&Tier> {
        self.visible_tiers().get(self.tier_sel).copied()
    }

    pub fn selected_image_user(&self) -> Option<&User> {
        self.image_users().get(self.image_user_sel).copied()
    }

    fn tier_ids(&self) -> Vec<String> {
        let ids: Vec<String> = self.tiers.data.as_deref().unwrap_or_default().iter().map(|t| t.id.clone()).collect();
        if ids.is_empty() {
            vec!["basic".into(), "premium".into(), "enterprise".into()]
        } else {
            ids
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
                self.images_pane = Pane::List;
                vec![]
            }
            Action::FocusRight => {
                if self.view == View::Images {
                    self.images_pane = Pane::Detail;
                }
                vec![]
            }
            Action::Enter => {
                if self.view == View::Users && self.selected_user().is_some() {
                    self.users_pane = Pane::Detail;
                    self.token_sel = 0;
                } else if self.view == View::Images {
                    self.images_pane = Pane::Detail;
                }
                vec![]
            }
            Action::Back => {
                if self.users_pane == Pane::Detail || self.images_pane == Pane::Detail {
                    self.users_pane = Pane::List;
                    self.images_pane = Pane::List;
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
            Action::IssueToken => match (self.view, self.selected_user()) {
                (View::Users, Some(user)) => {
                    vec![Command::IssueToken { id: user.id.clone(), username: user.username.clone() }]
                }
                _ => vec![],
            },
            Action::Retry => match (self.view, self.visible_failed().get(self.failed_sel)) {
                (View::Queue, Some(job)) => vec![Command::RetryJob(job.job.clone())],
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
            View::Users => self.user_sel = 0,
            View::Tiers => self.tier_sel = 0,
            View::Images => self.image_sel = 0,
            View::Queue => self.failed_sel = 0,
            View::Links => self.link_sel = 0,
        }
    }

    fn move_selection(&mut self, delta: i64) -> Vec<Command> {
        fn step(current: usize, len: usize, delta: i64) -> usize {
            if len == 0 {
                return 0;
            }
            (current as i64 + delta).clamp(0, len as i64 - 1) as usize
        }
        match self.view {
            View::Users if self.users_pane == Pane::Detail => {
                let tokens = self.user_detail.as_ref().and_then(|u| u.tokens.as_ref()).map_or(0, Vec::len);
                self.token_sel = step(self.token_sel, tokens, delta);
                vec![]
            }
            View::Users => {
                let before = self.selected_user().map(|u| u.id.clone());
                self.user_sel = step(self.user_sel, self.visible_users().len(), delta);
                let after = self.selected_user().map(|u| u.id.clone());
                if before != after {
                    self.user_detail = None;
                    return after.map(Command::FetchUserDetail).into_iter().collect();
                }
                vec![]
            }
            View::Tiers => {
                self.tier_sel = step(self.tier_sel, self.visible_tiers().len(), delta);
                vec![]
            }
            View::Images if self.images_pane == Pane::Detail => {
                let before = self.selected_image().map(|i| i.id.clone());
                self.image_sel = step(self.image_sel, self.visible_images().len(), delta);
                let mut commands = self.more_images();
                if before != self.selected_image().map(|i| i.id.clone()) {
                    commands.extend(self.image_selected());
                }
                commands
            }
            View::Images => {
                let before = self.image_user_sel;
                self.image_user_sel = step(self.image_user_sel, self.image_users().len(), delta);
                if before != self.image_user_sel {
                    return self.requery_images();
                }
                vec![]
            }
            View::Queue => {
                self.failed_sel = step(self.failed_sel, self.visible_failed().len(), delta);
                vec![]
            }
            View::Links => {
                self.link_sel = step(self.link_sel, self.visible_links().len(), delta);
                vec![]
            }
        }
    }

    /// Shows the next (or previous) page of links, fetched at once; refreshes keep to it.
    fn turn_links_page(&mut self, forward: bool) -> Vec<Command> {
        if self.view != View::Links {
            return vec![];
        }
        if forward {
            let Some(next) = self.links_next.take() else { return vec![] };
            self.link_cursors.push(next);
        } else if self.link_cursors.pop().is_none() {
            return vec![];
        }
        self.link_sel = 0;
        self.links_next = None;
        self.in_flight.insert(Resource::Links);
        vec![Command::FetchLinks { cursor: self.link_cursors.last().cloned() }]
    }

    /// Fetches what the current view shows, skipping what is still on its way.
    fn refresh(&mut self) -> Vec<Command> {
        let mut wanted = Vec::new();
        match self.view {
            View::Users => {
                wanted.push((Resource::Users, Command::FetchUsers));
                wanted.push((Resource::Tiers, Command::FetchTiers));
                if let Some(user) = self.selected_user() {
                    wanted.push((Resource::UserDetail, Command::FetchUserDetail(user.id.clone())));
                }
            }
            View::Tiers => wanted.push((Resource::Tiers, Command::FetchTiers)),
            View::Images => {
                wanted.push((Resource::Users, Command::FetchUsers));
                if let Some(query) = self.image_query() {
                    wanted.push((Resource::Images, Command::FetchImages { query, cursor: None }));
                }
                if let Some(image) = self.selected_image() {
                    wanted.push((Resource::ImageDetail, Command::FetchImageDetail(image.id.clone())));
                }
            }
            View::Queue => wanted.push((Resource::Queue, Command::FetchQueue)),
            View::Links => {
                wanted.push((Resource::Links, Command::FetchLinks { cursor: self.link_cursors.last().cloned() }))
            }
        }
        let mut commands: Vec<Command> = wanted
            .into_iter()
            .filter_map(|(resource, command)| self.in_flight.insert(resource).then_some(command))
            .collect();
        if self.view == View::Images {
            commands.extend(self.preview_wanted());
        }
        commands
    }

    // ---- the Images view: pages, detail, previews -----------------------------------------

    /// Starts the Images view's list over (another user, another filter): the first page.
    fn requery_images(&mut self) -> Vec<Command> {
        if self.view != View::Images {
            return vec![];
        }
        self.images = Remote::default();
        self.images_query = None;
        self.images_next = None;
        self.loading_more = false;
        self.image_detail = None;
        self.image_sel = 0;
        match self.image_query() {
            // Sent even while another page is on its way: that answer is for another query
            // and will be dropped.
            Some(query) => {
                self.in_flight.insert(Resource::Images);
                vec![Command::FetchImages { query, cursor: None }]
            }
            None => vec![],
        }
    }

    /// The next page, when the selection nears the end of what is loaded.
    fn more_images(&mut self) -> Vec<Command> {
        let loaded = self.visible_images().len();
        let (Some(cursor), Some(query)) = (self.images_next.clone(), self.images_query.clone()) else {
            return vec![];
        };
        if self.loading_more || self.image_sel + LOAD_AHEAD < loaded {
            return vec![];
        }
        self.loading_more = true;
        vec![Command::FetchImages { query, cursor: Some(cursor) }]
    }

    /// A new image is selected: its detail, and its preview if not at hand.
    fn image_selected(&mut self) -> Vec<Command> {
        let Some(id) = self.selected_image().map(|i| i.id.clone()) else { return vec![] };
        let mut commands = Vec::new();
        if self.in_flight.insert(Resource::ImageDetail) {
            commands.push(Command::FetchImageDetail(id));
        }
        commands.extend(self.preview_wanted());
        commands
    }

    /// Fetches the selected image's preview once its thumbnail is ready and it is not cached.
    fn preview_wanted(&mut self) -> Vec<Command> {
        let Some(image) = self.selected_image() else { return vec![] };
        let Some(thumbnail) = image.preview_thumbnail().filter(|t| t.status == "ready") else { return vec![] };
        if self.previews.get(&image.id).is_some() {
            return vec![];
        }
        let (id, height) = (image.id.clone(), thumbnail.height);
        self.previews.insert(id.clone(), Preview::Loading);
        vec![Command::FetchPreview { id, height }]
    }

    /// Puts a page where it belongs: the first page replaces the head of the list (the rest
    /// already loaded stays), a later one goes at the end.
    fn images_loaded(&mut self, query: ImageQuery, cursor: Option<String>, page: ImagePage) -> Vec<Command> {
        let next = page.next_cursor();
        let same_query = self.images_query.as_ref() == Some(&query);
        let mut loaded = if same_query { self.images.data.take().unwrap_or_default() } else { Vec::new() };
        match cursor {
            None => {
                let head = page.results;
                // What was loaded after the head's last image, none of the head repeated.
                let tail: Vec<Image> = match (head.last(), &next) {
                    (Some(last), Some(_)) => {
                        let after = match loaded.iter().position(|i| i.id == last.id) {
                            Some(at) => loaded.split_off(at + 1),
                            None => loaded.into_iter().filter(|i| i.id < last.id).collect(),
                        };
                        after.into_iter().filter(|i| !head.iter().any(|h| h.id == i.id)).collect()
                    }
                    _ => Vec::new(),
                };
                if tail.is_empty() || next.is_none() {
                    self.images_next = next;
                }
                loaded = head;
                loaded.extend(tail);
            }
            Some(_) => {
                let oldest = loaded.last().map(|i| i.id.clone());
                loaded.extend(page.results.into_iter().filter(|i| oldest.as_ref().is_none_or(|o| &i.id < o)));
                self.images_next = next;
            }
        }
        self.images.data = Some(loaded);
        self.images.error = None;
        self.images_query = Some(query);
        self.image_sel = self.image_sel.min(self.visible_images().len().saturating_sub(1));
        let mut commands = self.more_images();
        if self.selected_image_detail().is_none() {
            commands.extend(self.image_selected());
        } else {
            commands.extend(self.preview_wanted());
        }
        commands
    }

    /// Gives the focus to `list`; false if it is not on screen.
    fn focus(&mut self, list: List) -> bool {
        match (self.view, list) {
            (View::Users, List::Users) => self.users_pane = Pane::List,
            (View::Users, List::Tokens) if self.user_detail.is_some() => self.users_pane = Pane::Detail,
            (View::Images, List::ImageUsers) => self.images_pane = Pane::List,
            (View::Images, List::Images) => self.images_pane = Pane::Detail,
            (View::Tiers, List::Tiers) | (View::Queue, List::FailedJobs) | (View::Links, List::Links) => {}
            _ => return false,
        }
        true
    }

    fn selection_of(&self, list: List) -> usize {
        match list {
            List::Users => self.user_sel,
            List::Tokens => self.token_sel,
            List::Tiers => self.tier_sel,
            List::ImageUsers => self.image_user_sel,
            List::Images => self.image_sel,
            List::FailedJobs => self.failed_sel,
            List::Links => self.link_sel,
        }
    }

    fn note_connection<T>(&mut self, result: &Result<T, ApiError>) {
        match result {
            Ok(_) => self.connection = Connection::Connected,
            Err(e) if e.is_unreachable() => self.connection = Connection::Unreachable(e.to_string()),
            // The server answered (with an error): it is there.
            Err(_) => self.connection = Connection::Connected,
        }
    }

    fn loaded(&mut self, loaded: Loaded) -> Vec<Command> {
        match loaded {
            Loaded::Users(result) => {
                self.in_flight.remove(&Resource::Users);
                self.note_connection(&result);
                let first_load = self.users.data.is_none();
                self.users.set(result);
                self.user_sel = self.user_sel.min(self.visible_users().len().saturating_sub(1));
                self.image_user_sel = self.image_user_sel.min(self.image_users().len().saturating_sub(1));
                if first_load {
                    // Show details and images right away rather than at the next tick.
                    return self.refresh();
                }
                vec![]
            }
            Loaded::UserDetail(result) => {
                self.in_flight.remove(&Resource::UserDetail);
                self.note_connection(&result);
                if let Ok(user) = result {
                    // Only if it is still the selected user.
                    if self.selected_user().is_some_and(|u| u.id == user.id) {
                        let tokens = user.tokens.as_ref().map_or(0, Vec::len);
                        self.token_sel = self.token_sel.min(tokens.saturating_sub(1));
                        self.user_detail = Some(user);
                    }
                }
                vec![]
            }
            Loaded::Tiers(result) => {
                self.in_flight.remove(&Resource::Tiers);
                self.note_connection(&result);
                self.tiers.set(result);
                self.tier_sel = self.tier_sel.min(self.visible_tiers().len().saturating_sub(1));
                vec![]
            }
            Loaded::Images { query, cursor, result } => {
                if cursor.is_none() {
                    self.in_flight.remove(&Resource::Images);
                } else {
                    self.loading_more = false;
                }
                self.note_connection(&result);
                // An answer for another user or filter than the one on screen now.
                if self.image_query().as_ref() != Some(&query) {
                    return vec![];
                }
                match result {
                    Ok(page) => self.images_loaded(query, cursor, page),
                    Err(e) => {
                        self.images.error = Some(e.to_string());
                        vec![]
                    }
                }
            }
            Loaded::ImageDetail(result) => {
                self.in_flight.remove(&Resource::ImageDetail);
                self.note_connection(&result);
                let Ok(detail) = result else { return vec![] };
                let sel = self.image_sel;
                if self.selected_image().is_some_and(|i| i.id == detail.image.id) {
                    // The detail is the fresher copy (thumbnail states move on).
                    if let Some(row) = self.images.data.as_mut().and_then(|rows| rows.get_mut(sel)) {
                        *row = detail.image.clone();
                    }
                    self.image_detail = Some(detail);
                    return self.preview_wanted();
                }
                vec![]
            }
            Loaded::Preview { id, result } => {
                let preview = match result {
                    Ok(image) => Preview::Ready(image),
                    Err(e) => Preview::Failed(e),
                };
                self.previews.insert(id, preview);
                vec![]
            }
            Loaded::ImageDeleted { id, name, result } => {
                self.note_connection(&result);
                match result {
                    Ok(()) => {
                        if let Some(rows) = self.images.data.as_mut() {
                            rows.retain(|i| i.id != id);
                        }
                        self.image_sel = self.image_sel.min(self.visible_images().len().saturating_sub(1));
                        self.image_detail = None;
                        self.message = Some((format!("deleted image {name}"), false));
                        let mut commands = self.image_selected();
                        commands.extend(self.refresh());
                        commands
                    }
                    Err(e) => {
                        self.message = Some((format!("could not delete image {name}: {e}"), true));
                        vec![]
                    }
                }
            }
            Loaded::Queue(result) => {
                self.in_flight.remove(&Resource::Queue);
                self.note_connection(&result);
                if let Ok(queue) = &result {
                    self.throughput.push_back(queue.throughput_per_minute);
                    while self.throughput.len() > SPARK_SAMPLES {
                        self.throughput.pop_front();
                    }
                }
                self.queue.set(result);
                self.failed_sel = self.failed_sel.min(self.visible_failed().len().saturating_sub(1));
                vec![]
            }
            Loaded::Links { cursor, result } => {
                self.in_flight.remove(&Resource::Links);
                self.note_connection(&result);
                // A page turned meanwhile: this answer is for a page no longer on screen.
                if cursor.as_ref() != self.link_cursors.last() {
                    return vec![];
                }
                let result = result.map(|page| {
                    self.links_next = page.next_cursor();
                    page.results
                });
                self.links.set(result);
                self.link_sel = self.link_sel.min(self.visible_links().len().saturating_sub(1));
                vec![]
            }
            Loaded::Changed { done, attempt, result } => {
                self.note_connection(&result);
                match result {
                    Ok(()) => {
                        self.form = None;
                        self.message = Some((done, false));
                    }
                    Err(ApiError::Status { detail, fields, .. })
                        if self.form.as_ref().is_some_and(|f| f.submitting) =>
                    {
                        if let Some(form) = &mut self.form {
                            form.show_errors(&detail, &fields);
                        }
                    }
                    Err(e) => {
                        if let Some(form) = &mut self.form {
                            form.submitting = false;
                            form.error = Some(e.to_string());
                        }
                        self.message = Some((format!("could not {attempt}: {e}"), true));
                    }
                }
                self.refresh()
            }
            Loaded::TokenIssued { username, result } => {
                self.note_connection(&result);
                match result {
                    Ok(token) => self.token = Some(ShownToken { username, token, copied: false }),
                    Err(e) => self.message = Some((format!("issuing a token failed: {e}"), true)),
                }
                self.refresh()
            }
        }
    }

    fn open_new_form(&mut self) -> Vec<Command> {
        match self.view {
            View::Users => self.form = Some(Form::create_user(self.tier_ids())),
            View::Tiers => self.form = Some(Form::create_tier()),
            _ => {}
        }
        vec![]
    }

    fn open_edit_form(&mut self) -> Vec<Command> {
        let tiers = self.tier_ids();
        match self.view {
            View::Users => {
                if let Some(u) = self.selected_user() {
                    self.form = Some(Form::edit_user(&u.id, &u.username, &u.tier, u.is_active, u.is_admin, tiers));
                }
            }
            View::Tiers => {
                if let Some(t) = self.selected_tier() {
                    self.form =
                        Some(Form::edit_tier(&t.id, &t.name, &t.thumbnail_heights, t.original_link, t.expiring_links));
                }
            }
            _ => {}
        }
        vec![]
    }

    fn ask_delete(&mut self) -> Vec<Command> {
        let confirm = match self.view {
            View::Users if self.users_pane == Pane::Detail => {
                let user = self.user_detail.as_ref();
                let token = user.and_then(|u| u.tokens.as_ref()).and_then(|t| t.get(self.token_sel));
                match (user, token) {
                    (Some(user), Some(token)) => Some(Confirm {
                        question: format!("Revoke token {} of {}?", token.id, user.username),
                        command: Command::RevokeToken { user: user.id.clone(), token: token.id.clone() },
                    }),
                    _ => None,
                }
            }
            View::Users => self.selected_user().map(|u| Confirm {
                question: format!("Delete user {} and all their images?", u.username),
                command: Command::DeleteUser { id: u.id.clone(), username: u.username.clone() },
            }),
            View::Tiers => self.selected_tier().map(|t| Confirm {
                question: format!("Delete tier {}?", t.id),
                command: Command::DeleteTier(t.id.clone()),
            }),
            View::Links => self.visible_links().get(self.link_sel).map(|l| Confirm {
                question: format!("Revoke link {}?", l.id),
                command: Command::RevokeLink(l.id.clone()),
            }),
            View::Images if self.images_pane == Pane::Detail => {
                let owner = self.selected_image_user().map(|u| u.username.clone()).unwrap_or_default();
                self.selected_image().map(|i| Confirm {
                    question: format!("Delete image {} of {owner}, with its thumbnails and links?", i.name),
                    command: Command::DeleteImage { id: i.id.clone(), name: i.name.clone() },
                })
            }
            View::Images | View::Queue => None,
        };
        self.confirm = confirm;
        vec![]
    }

    fn with_form(&mut self, f: impl FnOnce(&mut Form)) -> Vec<Command> {
        if let Some(form) = &mut self.form {
            if !form.submitting {
                f(form);
            }
        }
        vec![]
    }

    fn submit_form(&mut self) -> Vec<Command> {
        let Some(form) = &mut self.form else { return vec![] };
        if form.submitting {
            return vec![];
        }
        form.submitting = true;
        form.error = None;
        let body = form.body();
        let command = match &form.kind {
            FormKind::CreateUser => Command::CreateUser(NewUser {
                username: body["username"].as_str().unwrap_or_default().to_owned(),
                password: body["password"].as_str().unwrap_or_default().to_owned(),
                tier: body["tier"].as_str().unwrap_or_default().to_owned(),
                is_admin: body["is_admin"].as_bool().unwrap_or(false),
            }),
            FormKind::EditUser { id, username } => {
                Command::UpdateUser { id: id.clone(), username: username.clone(), changes: body }
            }
            FormKind::CreateTier => Command::CreateTier(body),
            FormKind::EditTier { id } => {
                let mut changes = body;
                if let Some(map) = changes.as_object_mut() {
                    map.remove("id");
                }
                Command::UpdateTier { id: id.clone(), changes }
            }
        };
        vec![command]
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
