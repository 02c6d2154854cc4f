//! The Images view: a column of users; the selected user's images, loaded a page at a time
//! as the selection nears the end; the selected image's detail and preview.
//!
//! The users column lists the Users view's list, so the methods that need the selected
//! user take that list.

use super::confirm::Confirm;
use super::list_state::{Pane, Selection};
use super::previews::{Preview, Previews};
use super::remote::{InFlight, Remote};
use crate::action::{Command, List, PreviewImage};
use crate::api::{ApiError, Image, ImageDetail, ImagePage, ImageQuery, ThumbnailStatus, User};

/// The next page of images is fetched when the selection comes this close to the end.
const LOAD_AHEAD: usize = 5;

#[derive(Debug, Default)]
pub struct ImagesView {
    user_selection: Selection,
    /// `List`: the users column; `Detail`: the images.
    pane: Pane,
    /// The loaded pages of the selected user's images, newest first.
    pages: Remote<Vec<Image>>,
    /// The first page's fetch (later pages go by `loading_more`).
    pages_fetch: InFlight,
    /// The query `pages` answers (whose images, which filter).
    query: Option<ImageQuery>,
    /// The cursor of the page after the loaded ones; `None` when all are loaded.
    next: Option<String>,
    /// A next page is on its way.
    loading_more: bool,
    selection: Selection,
    /// The selected image as the admin detail shows it (owner, links).
    detail: Option<ImageDetail>,
    detail_fetch: InFlight,
    previews: Previews,
}

impl ImagesView {
    pub fn selected_user<'u>(&self, users: &'u [User]) -> Option<&'u User> {
        users.get(self.user_selection.index())
    }

    /// What the view should show: the selected user's images under the filter.
    pub fn wanted_query(&self, users: &[User], filter: &str) -> Option<ImageQuery> {
        self.selected_user(users).map(|u| ImageQuery::from_filter(&u.id, filter))
    }

    pub fn pages(&self) -> &Remote<Vec<Image>> {
        &self.pages
    }

    /// The loaded images (the server applies the filter).
    pub fn visible(&self) -> &[Image] {
        self.pages.data.as_deref().unwrap_or_default()
    }

    pub fn selected(&self) -> Option<&Image> {
        self.visible().get(self.selection.index())
    }

    /// The detail of the selected image, once loaded.
    pub fn selected_detail(&self) -> Option<&ImageDetail> {
        let selected = self.selected()?;
        self.detail.as_ref().filter(|d| d.image.id == selected.id)
    }

    pub fn preview(&self, id: &str) -> Option<&Preview> {
        self.previews.get(id)
    }

    pub fn loading_more(&self) -> bool {
        self.loading_more
    }

    /// More pages follow the loaded ones.
    pub fn has_more(&self) -> bool {
        self.next.is_some()
    }

    pub fn pane(&self) -> Pane {
        self.pane
    }

    pub fn user_selection(&self) -> usize {
        self.user_selection.index()
    }

    pub fn selection(&self) -> usize {
        self.selection.index()
    }

    // ---- its part of the update: panes and selections -----------------------------------

    pub fn focus_users(&mut self) {
        self.pane = Pane::List;
    }

    pub fn focus_images(&mut self) {
        self.pane = Pane::Detail;
    }

    pub fn in_detail(&self) -> bool {
        self.pane == Pane::Detail
    }

    /// Gives the focus to `list`; false if it is not on screen.
    pub fn focus(&mut self, list: List) -> bool {
        match list {
            List::ImageUsers => self.pane = Pane::List,
            List::Images => self.pane = Pane::Detail,
            _ => return false,
        }
        true
    }

    pub fn reset_selection(&mut self) {
        self.selection.reset();
    }

    /// The users list changed: keep the column's selection on a row.
    pub fn users_loaded(&mut self, users: &[User]) {
        self.user_selection.clamp(users.len());
    }

    /// Moves in the focused column: another image wants its detail (and the next page near
    /// the end), another user starts the list over.
    pub fn move_selection(&mut self, delta: i64, users: &[User], filter: &str) -> Vec<Command> {
        if self.pane == Pane::Detail {
            let before = self.selected().map(|i| i.id.clone());
            self.selection.step(self.visible().len(), delta);
            let mut commands = self.more();
            if before != self.selected().map(|i| i.id.clone()) {
                commands.extend(self.image_selected());
            }
            return commands;
        }
        let before = self.user_selection;
        self.user_selection.step(users.len(), delta);
        if before != self.user_selection {
            return self.requery(users, filter);
        }
        vec![]
    }

    pub fn delete_confirm(&self, users: &[User]) -> Option<Confirm> {
        if self.pane != Pane::Detail {
            return None;
        }
        let owner = self.selected_user(users).map(|u| u.username.clone()).unwrap_or_default();
        self.selected().map(|i| Confirm {
            question: format!("Delete image {} of {owner}, with its thumbnails and links?", i.name),
            command: Command::DeleteImage { id: i.id.clone(), name: i.name.clone() },
        })
    }

    // ---- its part of the update: fetches ------------------------------------------------

    /// The first page, the selected image's detail, and its preview if not at hand.
    pub fn refresh(&mut self, users: &[User], filter: &str) -> Vec<Command> {
        let mut commands = Vec::new();
        if let Some(query) = self.wanted_query(users, filter) {
            commands.extend(self.pages_fetch.send_if_idle(Command::FetchImages { query, cursor: None }));
        }
        if let Some(image) = self.selected() {
            let fetch = Command::FetchImageDetail(image.id.clone());
            commands.extend(self.detail_fetch.send_if_idle(fetch));
        }
        commands.extend(self.preview_wanted());
        commands
    }

    /// Starts the list over (another user, another filter): the first page.
    pub fn requery(&mut self, users: &[User], filter: &str) -> Vec<Command> {
        self.pages = Remote::default();
        self.query = None;
        self.next = None;
        self.loading_more = false;
        self.detail = None;
        self.selection.reset();
        match self.wanted_query(users, filter) {
            // Sent even while another page is on its way: that answer is for another query
            // and will be dropped.
            Some(query) => {
                self.pages_fetch.mark_sent();
                vec![Command::FetchImages { query, cursor: None }]
            }
            None => vec![],
        }
    }

    /// The next page, when the selection nears the end of what is loaded.
    fn more(&mut self) -> Vec<Command> {
        let loaded = self.visible().len();
        let (Some(cursor), Some(query)) = (self.next.clone(), self.query.clone()) else {
            return vec![];
        };
        if self.loading_more || self.selection.index() + LOAD_AHEAD < loaded {
            return vec![];
        }
        self.loading_more = true;
        vec![Command::FetchImages { query, cursor: Some(cursor) }]
    }

    /// A new image is selected: its detail, and its preview if not at hand.
    fn image_selected(&mut self) -> Vec<Command> {
        let Some(id) = self.selected().map(|i| i.id.clone()) else { return vec![] };
        let mut commands: Vec<Command> =
            self.detail_fetch.send_if_idle(Command::FetchImageDetail(id)).into_iter().collect();
        commands.extend(self.preview_wanted());
        commands
    }

    /// Fetches the selected image's preview once its thumbnail is ready and it is not cached.
    fn preview_wanted(&mut self) -> Vec<Command> {
        let Some(image) = self.selected() else { return vec![] };
        let Some(thumbnail) = image.preview_thumbnail().filter(|t| t.status == ThumbnailStatus::Ready) else {
            return vec![];
        };
        if self.previews.get(&image.id).is_some() {
            return vec![];
        }
        let (id, height) = (image.id.clone(), thumbnail.height);
        self.previews.insert(id.clone(), Preview::Loading);
        vec![Command::FetchPreview { id, height }]
    }

    // ---- its part of the update: answers ------------------------------------------------

    /// A page for `query` after `cursor` (`None`: the first page).
    pub fn page_loaded(
        &mut self,
        query: ImageQuery,
        cursor: Option<String>,
        result: Result<ImagePage, ApiError>,
        users: &[User],
        filter: &str,
    ) -> Vec<Command> {
        if cursor.is_none() {
            self.pages_fetch.mark_answered();
        } else {
            self.loading_more = false;
        }
        // An answer for another user or filter than the one on screen now.
        if self.wanted_query(users, filter).as_ref() != Some(&query) {
            return vec![];
        }
        match result {
            Ok(page) => self.place_page(query, cursor, page),
            Err(e) => {
                self.pages.error = Some(e.to_string());
                vec![]
            }
        }
    }

    /// Puts a page where it belongs: the first page replaces the head of the list (the rest
    /// already loaded stays), a later one goes at the end.
    fn place_page(&mut self, query: ImageQuery, cursor: Option<String>, page: ImagePage) -> Vec<Command> {
        let next = page.next_cursor();
        let same_query = self.query.as_ref() == Some(&query);
        let mut loaded = if same_query { self.pages.data.take().unwrap_or_default() } else { Vec::new() };
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
                    self.next = next;
                }
                loaded = head;
                loaded.extend(tail);
            }
            Some(_) => {
                let oldest = loaded.last().map(|i| i.id.clone());
                loaded.extend(page.results.into_iter().filter(|i| oldest.as_ref().is_none_or(|o| &i.id < o)));
                self.next = next;
            }
        }
        self.pages.data = Some(loaded);
        self.pages.error = None;
        self.query = Some(query);
        self.selection.clamp(self.visible().len());
        let mut commands = self.more();
        if self.selected_detail().is_none() {
            commands.extend(self.image_selected());
        } else {
            commands.extend(self.preview_wanted());
        }
        commands
    }

    pub fn detail_loaded(&mut self, result: Result<Box<ImageDetail>, ApiError>) -> Vec<Command> {
        self.detail_fetch.mark_answered();
        let Ok(detail) = result else { return vec![] };
        if self.selected().is_some_and(|i| i.id == detail.image.id) {
            // The detail is the fresher copy (thumbnail states move on).
            let row = self.selection.index();
            if let Some(image) = self.pages.data.as_mut().and_then(|rows| rows.get_mut(row)) {
                *image = detail.image.clone();
            }
            self.detail = Some(*detail);
            return self.preview_wanted();
        }
        vec![]
    }

    pub fn preview_loaded(&mut self, id: String, result: Result<PreviewImage, String>) {
        let preview = match result {
            Ok(image) => Preview::Ready(image),
            Err(e) => Preview::Failed(e),
        };
        self.previews.insert(id, preview);
    }

    /// The image is gone: off the list, and the one now selected wants its detail.
    pub fn deleted(&mut self, id: &str) -> Vec<Command> {
        if let Some(rows) = self.pages.data.as_mut() {
            rows.retain(|i| i.id != id);
        }
        self.selection.clamp(self.visible().len());
        self.detail = None;
        self.image_selected()
    }
}
