//! The Images view's decoded thumbnails, by image id, the most recent few kept.

use std::collections::{HashMap, VecDeque};

use crate::action::PreviewImage;

/// Decoded previews kept (a 200 px thumbnail is ~100-300 kB decoded).
const PREVIEWS_KEPT: usize = 32;

/// A thumbnail for the preview pane.
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

    pub fn insert(&mut self, id: String, preview: Preview) {
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
