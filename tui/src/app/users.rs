//! The Users view: the users, and the selected user's tokens in a second pane.

use super::confirm::Confirm;
use super::form::Form;
use super::list_state::{matches_filter, Filterable, FilteredList, Pane, Selection};
use super::remote::InFlight;
use crate::action::{Command, List};
use crate::api::{ApiError, User};

impl Filterable for User {
    fn matches(&self, filter: &str) -> bool {
        matches_filter(filter, &[&self.username, &self.tier])
    }
}

#[derive(Debug, Default)]
pub struct UsersView {
    /// Also the Images view's users column.
    pub list: FilteredList<User>,
    list_fetch: InFlight,
    /// The selected user with their tokens.
    detail: Option<User>,
    detail_fetch: InFlight,
    token_selection: Selection,
    pane: Pane,
}

impl UsersView {
    pub fn token_selection(&self) -> usize {
        self.token_selection.index()
    }

    pub fn pane(&self) -> Pane {
        self.pane
    }

    /// The selected user with their tokens, once loaded.
    pub fn detail(&self) -> Option<&User> {
        self.detail.as_ref()
    }

    fn token_count(&self) -> usize {
        self.detail.as_ref().and_then(|u| u.tokens.as_ref()).map_or(0, Vec::len)
    }

    // ---- its part of the update ---------------------------------------------------------

    pub fn fetch_list(&mut self) -> Option<Command> {
        self.list_fetch.send_if_idle(Command::FetchUsers)
    }

    pub fn fetch_detail(&mut self, filter: &str) -> Option<Command> {
        let id = self.list.selected(filter)?.id.clone();
        self.detail_fetch.send_if_idle(Command::FetchUserDetail(id))
    }

    /// Takes the list; true if it is the first one (the other fetches wait for it).
    pub fn list_loaded(&mut self, result: Result<Vec<User>, ApiError>, filter: &str) -> bool {
        self.list_fetch.mark_answered();
        let first_load = self.list.remote().data.is_none();
        self.list.set(result, filter);
        first_load
    }

    pub fn detail_loaded(&mut self, result: Result<User, ApiError>, filter: &str) {
        self.detail_fetch.mark_answered();
        let Ok(user) = result else { return };
        // Only if it is still the selected user.
        if self.list.selected(filter).is_some_and(|u| u.id == user.id) {
            self.token_selection.clamp(user.tokens.as_ref().map_or(0, Vec::len));
            self.detail = Some(user);
        }
    }

    /// Moves in the focused pane; another user selected wants their tokens.
    pub fn move_selection(&mut self, delta: i64, filter: &str) -> Vec<Command> {
        if self.pane == Pane::Detail {
            self.token_selection.step(self.token_count(), delta);
            return vec![];
        }
        let before = self.list.selected(filter).map(|u| u.id.clone());
        self.list.step(delta, filter);
        let after = self.list.selected(filter).map(|u| u.id.clone());
        if before != after {
            self.detail = None;
            return after.map(Command::FetchUserDetail).into_iter().collect();
        }
        vec![]
    }

    /// Opens the selected user's tokens, if a user is selected.
    pub fn open_tokens(&mut self, filter: &str) {
        if self.list.selected(filter).is_some() {
            self.pane = Pane::Detail;
            self.token_selection.reset();
        }
    }

    pub fn in_detail(&self) -> bool {
        self.pane == Pane::Detail
    }

    pub fn leave_detail(&mut self) {
        self.pane = Pane::List;
    }

    /// Gives the focus to `list`; false if it is not on screen.
    pub fn focus(&mut self, list: List) -> bool {
        match list {
            List::Users => self.pane = Pane::List,
            List::Tokens if self.detail.is_some() => self.pane = Pane::Detail,
            _ => return false,
        }
        true
    }

    /// Revoking the selected token, or deleting the selected user.
    pub fn delete_confirm(&self, filter: &str) -> Option<Confirm> {
        if self.pane == Pane::Detail {
            let user = self.detail.as_ref()?;
            let token = user.tokens.as_ref()?.get(self.token_selection.index())?;
            return Some(Confirm {
                question: format!("Revoke token {} of {}?", token.id, user.username),
                command: Command::RevokeToken { user: user.id.clone(), token: token.id.clone() },
            });
        }
        self.list.selected(filter).map(|u| Confirm {
            question: format!("Delete user {} and all their images?", u.username),
            command: Command::DeleteUser { id: u.id.clone(), username: u.username.clone() },
        })
    }

    pub fn edit_form(&self, filter: &str, tiers: Vec<String>) -> Option<Form> {
        let u = self.list.selected(filter)?;
        Some(Form::edit_user(&u.id, &u.username, &u.tier, u.is_active, u.is_admin, tiers))
    }

    pub fn issue_token(&self, filter: &str) -> Option<Command> {
        let user = self.list.selected(filter)?;
        Some(Command::IssueToken { id: user.id.clone(), username: user.username.clone() })
    }
}
