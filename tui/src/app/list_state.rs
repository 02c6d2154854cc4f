//! List state every view keeps the same way: a selected row that stays within its list, a
//! list the filter narrows, and which pane of a two-pane view has the focus.

use super::remote::Remote;
use crate::api::ApiError;

/// Which pane of a two-pane view has the focus.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Pane {
    #[default]
    List,
    Detail,
}

/// A list's selected row. Moves stop at either end rather than wrap.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Selection(usize);

impl Selection {
    pub fn index(self) -> usize {
        self.0
    }

    pub fn reset(&mut self) {
        self.0 = 0;
    }

    /// Moves `delta` rows within a list of `len` rows.
    pub fn step(&mut self, len: usize, delta: i64) {
        self.0 = if len == 0 { 0 } else { (self.0 as i64 + delta).clamp(0, len as i64 - 1) as usize };
    }

    /// Keeps it on a row after the list changed under it.
    pub fn clamp(&mut self, len: usize) {
        self.0 = self.0.min(len.saturating_sub(1));
    }
}

/// Whether a row shows under `filter`: any of `texts` contains it, ignoring case.
pub fn matches_filter(filter: &str, texts: &[&str]) -> bool {
    let needle = filter.to_lowercase();
    needle.is_empty() || texts.iter().any(|t| t.to_lowercase().contains(&needle))
}

/// A row the filter can hide; each view says which of its texts count.
pub trait Filterable {
    fn matches(&self, filter: &str) -> bool;
}

/// Rows from the server, the filter's view of them, and the selected one among those shown.
/// Anyone may read it; only the app's update changes it.
#[derive(Debug)]
pub struct FilteredList<T> {
    rows: Remote<Vec<T>>,
    selection: Selection,
}

impl<T> Default for FilteredList<T> {
    fn default() -> Self {
        Self { rows: Remote::default(), selection: Selection::default() }
    }
}

impl<T: Filterable> FilteredList<T> {
    pub fn remote(&self) -> &Remote<Vec<T>> {
        &self.rows
    }

    /// Every row loaded, unfiltered.
    pub fn all(&self) -> &[T] {
        self.rows.data.as_deref().unwrap_or_default()
    }

    pub fn visible(&self, filter: &str) -> Vec<&T> {
        self.all().iter().filter(|row| row.matches(filter)).collect()
    }

    pub fn selected(&self, filter: &str) -> Option<&T> {
        self.visible(filter).get(self.selection.index()).copied()
    }

    pub fn selection(&self) -> usize {
        self.selection.index()
    }

    /// Takes an answer (a failed one keeps the rows) and keeps the selection on a row.
    pub(in crate::app) fn set(&mut self, result: Result<Vec<T>, ApiError>, filter: &str) {
        self.rows.set(result);
        self.selection.clamp(self.visible(filter).len());
    }

    pub(in crate::app) fn step(&mut self, delta: i64, filter: &str) {
        self.selection.step(self.visible(filter).len(), delta);
    }

    pub(in crate::app) fn reset_selection(&mut self) {
        self.selection.reset();
    }
}
