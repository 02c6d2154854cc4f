//! Cursor pagination, one way for every list: `?limit=1..=100&cursor=<id>` where the cursor
//! is the last id of the previous page (lists run newest first, ids are time-ordered), and a
//! `next` URL while more may follow.

use serde::Deserialize;
use utoipa::IntoParams;

use crate::error::ApiError;

#[derive(Debug, Deserialize, IntoParams)]
pub struct PageQuery {
    /// Page size (default 20).
    #[param(value_type = Option<u32>, minimum = 1, maximum = 100)]
    limit: Option<String>,
    /// The `next` link's cursor.
    #[param(pattern = "^[0-9A-HJKMNP-TV-Za-hjkmnp-tv-z]{26}$")]
    cursor: Option<String>,
}

pub struct Page<Id> {
    pub limit: usize,
    pub cursor: Option<Id>,
}

impl PageQuery {
    /// The page asked for, with the cursor read by `parse_id` (the listed items' id type).
    pub fn parse<Id>(&self, parse_id: impl Fn(&str) -> Option<Id>) -> Result<Page<Id>, ApiError> {
        let limit = match &self.limit {
            None => 20,
            Some(raw) => match raw.parse::<usize>() {
                Ok(n) if (1..=100).contains(&n) => n,
                _ => return Err(ApiError::field("limit", "must be a whole number from 1 to 100")),
            },
        };
        let cursor = match &self.cursor {
            None => None,
            Some(raw) => {
                Some(parse_id(raw).ok_or_else(|| ApiError::field("cursor", "is not a cursor from a `next` link"))?)
            }
        };
        Ok(Page { limit, cursor })
    }
}

/// Splits a page read with one item more than asked for: the page, and the cursor of the
/// next one when that extra item exists.
pub fn split_page<T, Id>(mut items: Vec<T>, limit: usize, id_of: impl Fn(&T) -> Id) -> (Vec<T>, Option<Id>) {
    if items.len() > limit {
        items.truncate(limit);
        let next = items.last().map(id_of);
        (items, next)
    } else {
        (items, None)
    }
}
