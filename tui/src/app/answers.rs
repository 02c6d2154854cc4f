//! Network answers: each goes to the view that asked; changes and tokens end in the status
//! line or a dialog.

use super::{App, Connection, ShownToken};
use crate::action::{Command, Loaded};
use crate::api::ApiError;

impl App {
    pub(super) fn loaded(&mut self, loaded: Loaded) -> Vec<Command> {
        match loaded {
            Loaded::Users(result) => {
                self.note_connection(&result);
                let first_load = self.users.list_loaded(result, &self.filter);
                self.images.users_loaded(self.users.list.all());
                if first_load {
                    // Show details and images right away rather than at the next tick.
                    return self.refresh();
                }
                vec![]
            }
            Loaded::UserDetail(result) => {
                self.note_connection(&result);
                self.users.detail_loaded(result, &self.filter);
                vec![]
            }
            Loaded::Tiers(result) => {
                self.note_connection(&result);
                self.tiers.loaded(result, &self.filter);
                vec![]
            }
            Loaded::Images { query, cursor, result } => {
                self.note_connection(&result);
                self.images.page_loaded(query, cursor, result, self.users.list.all(), &self.filter)
            }
            Loaded::ImageDetail(result) => {
                self.note_connection(&result);
                self.images.detail_loaded(result)
            }
            Loaded::Preview { id, result } => {
                self.images.preview_loaded(id, result);
                vec![]
            }
            Loaded::ImageDeleted { id, name, result } => {
                self.note_connection(&result);
                match result {
                    Ok(()) => {
                        self.message = Some((format!("deleted image {name}"), false));
                        let mut commands = self.images.deleted(&id);
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
                self.note_connection(&result);
                self.queue.loaded(result, &self.filter);
                vec![]
            }
            Loaded::Links { cursor, result } => {
                self.note_connection(&result);
                self.links.loaded(cursor, result, &self.filter);
                vec![]
            }
            Loaded::Changed { done, attempt, result } => {
                self.note_connection(&result);
                self.changed(done, attempt, result);
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

    fn note_connection<T>(&mut self, result: &Result<T, ApiError>) {
        match result {
            Ok(_) => self.connection = Connection::Connected,
            Err(e) if e.is_unreachable() => self.connection = Connection::Unreachable(e.to_string()),
            // The server answered (with an error): it is there.
            Err(_) => self.connection = Connection::Connected,
        }
    }

    /// A change was made: the form closes. Refused: the form shows why, by field where the
    /// server says which.
    fn changed(&mut self, done: String, attempt: String, result: Result<(), ApiError>) {
        match result {
            Ok(()) => {
                self.form = None;
                self.message = Some((done, false));
            }
            Err(ApiError::Status { detail, fields, .. }) if self.form.as_ref().is_some_and(|f| f.submitting) => {
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
    }
}
