//! The dialogs over the views: forms to create and edit users and tiers, and the question
//! before a delete. The views say what is selected; the dialogs are the app's.

use super::{App, Form, FormKind};
use crate::action::{Command, View};
use crate::api::NewUser;

impl App {
    pub(super) fn open_new_form(&mut self) -> Vec<Command> {
        match self.view {
            View::Users => self.form = Some(Form::create_user(self.tiers.ids())),
            View::Tiers => self.form = Some(Form::create_tier()),
            _ => {}
        }
        vec![]
    }

    pub(super) fn open_edit_form(&mut self) -> Vec<Command> {
        let form = match self.view {
            View::Users => self.users.edit_form(&self.filter, self.tiers.ids()),
            View::Tiers => self.tiers.edit_form(&self.filter),
            _ => None,
        };
        if form.is_some() {
            self.form = form;
        }
        vec![]
    }

    pub(super) fn ask_delete(&mut self) -> Vec<Command> {
        self.confirm = match self.view {
            View::Users => self.users.delete_confirm(&self.filter),
            View::Tiers => self.tiers.delete_confirm(&self.filter),
            View::Links => self.links.revoke_confirm(&self.filter),
            View::Images => self.images.delete_confirm(self.users.list.all()),
            View::Queue => None,
        };
        vec![]
    }

    pub(super) fn with_form(&mut self, f: impl FnOnce(&mut Form)) -> Vec<Command> {
        if let Some(form) = &mut self.form {
            if !form.submitting {
                f(form);
            }
        }
        vec![]
    }

    pub(super) fn submit_form(&mut self) -> Vec<Command> {
        let Some(form) = &mut self.form else { return vec![] };
        if form.submitting || !form.check_locally() {
            return vec![];
        }
        form.submitting = true;
        form.error = None;
        vec![submission(form)]
    }
}

/// What a filled-in form asks the server to do.
fn submission(form: &Form) -> Command {
    let body = form.body();
    let text = |key: &str| body[key].as_str().unwrap_or_default().to_owned();
    match &form.kind {
        FormKind::CreateUser => Command::CreateUser(NewUser {
            username: text("username"),
            password: text("password"),
            tier: text("tier"),
            is_admin: body["is_admin"].as_bool().unwrap_or(false),
        }),
        FormKind::EditUser { id, username } => {
            Command::UpdateUser { id: id.clone(), username: username.clone(), changes: body }
        }
        FormKind::CreateTier => Command::CreateTier(body),
        FormKind::EditTier { id, .. } => {
            let mut changes = body;
            if let Some(map) = changes.as_object_mut() {
                map.remove("id");
            }
            Command::UpdateTier { id: id.clone(), changes }
        }
    }
}
