//! The Links view: live links a page at a time, newest first.

use super::confirm::Confirm;
use super::list_state::{matches_filter, Filterable, FilteredList};
use super::remote::InFlight;
use crate::action::Command;
use crate::api::{ApiError, Link, LinkPage};

impl Filterable for Link {
    fn matches(&self, filter: &str) -> bool {
        let owner = self.owner_username.as_deref().unwrap_or("");
        matches_filter(filter, &[owner, &self.image_id, &self.variant.to_string()])
    }
}

#[derive(Debug, Default)]
pub struct LinksView {
    /// The page on screen.
    pub page: FilteredList<Link>,
    fetch: InFlight,
    /// The cursors of the pages before this one, the last being this page's own (none on the
    /// first page): `[` goes back one, refreshes re-read this page.
    cursors: Vec<String>,
    /// The cursor of the page after this one; `None` on the last.
    next: Option<String>,
}

impl LinksView {
    /// Counting from 1.
    pub fn page_number(&self) -> usize {
        self.cursors.len() + 1
    }

    pub fn has_next_page(&self) -> bool {
        self.next.is_some()
    }

    // ---- its part of the update ---------------------------------------------------------

    /// Re-reads the page on screen.
    pub fn fetch(&mut self) -> Option<Command> {
        self.fetch.send_if_idle(Command::FetchLinks { cursor: self.cursors.last().cloned() })
    }

    /// Shows the next (or previous) page, fetched at once; refreshes keep to it.
    pub fn turn_page(&mut self, forward: bool) -> Vec<Command> {
        if forward {
            let Some(next) = self.next.take() else { return vec![] };
            self.cursors.push(next);
        } else if self.cursors.pop().is_none() {
            return vec![];
        }
        self.page.reset_selection();
        self.next = None;
        self.fetch.mark_sent();
        vec![Command::FetchLinks { cursor: self.cursors.last().cloned() }]
    }

    pub fn loaded(&mut self, cursor: Option<String>, result: Result<LinkPage, ApiError>, filter: &str) {
        self.fetch.mark_answered();
        // A page turned meanwhile: this answer is for a page no longer on screen.
        if cursor.as_ref() != self.cursors.last() {
            return;
        }
        let result = result.map(|page| {
            self.next = page.next_cursor();
            page.results
        });
        self.page.set(result, filter);
    }

    pub fn revoke_confirm(&self, filter: &str) -> Option<Confirm> {
        self.page
            .selected(filter)
            .map(|l| Confirm { question: format!("Revoke link {}?", l.id), command: Command::RevokeLink(l.id.clone()) })
    }
}
