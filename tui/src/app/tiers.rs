//! The Tiers view: the tiers, which the user forms also offer as choices.

use super::confirm::Confirm;
use super::form::Form;
use super::list_state::{matches_filter, Filterable, FilteredList};
use super::remote::InFlight;
use crate::action::Command;
use crate::api::{ApiError, Tier};

impl Filterable for Tier {
    fn matches(&self, filter: &str) -> bool {
        matches_filter(filter, &[&self.id, &self.name])
    }
}

#[derive(Debug, Default)]
pub struct TiersView {
    pub list: FilteredList<Tier>,
    fetch: InFlight,
}

impl TiersView {
    /// The tier ids a user form offers; the built-in ones until the tiers are loaded.
    pub fn ids(&self) -> Vec<String> {
        let ids: Vec<String> = self.list.all().iter().map(|t| t.id.clone()).collect();
        if ids.is_empty() {
            vec!["basic".into(), "premium".into(), "enterprise".into()]
        } else {
            ids
        }
    }

    // ---- its part of the update ---------------------------------------------------------

    pub fn fetch(&mut self) -> Option<Command> {
        self.fetch.send_if_idle(Command::FetchTiers)
    }

    pub fn loaded(&mut self, result: Result<Vec<Tier>, ApiError>, filter: &str) {
        self.fetch.mark_answered();
        self.list.set(result, filter);
    }

    pub fn delete_confirm(&self, filter: &str) -> Option<Confirm> {
        self.list
            .selected(filter)
            .map(|t| Confirm { question: format!("Delete tier {}?", t.id), command: Command::DeleteTier(t.id.clone()) })
    }

    pub fn edit_form(&self, filter: &str) -> Option<Form> {
        let t = self.list.selected(filter)?;
        Some(Form::edit_tier(
            &t.id,
            &t.name,
            &t.thumbnail_heights,
            t.original_link,
            t.expiring_links,
            &t.formats,
            t.limits(),
        ))
    }
}
