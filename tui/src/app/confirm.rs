//! The question a destructive action waits on; the views that offer one build it.

use crate::action::Command;

/// A destructive action waiting for "y".
#[derive(Debug, Clone, PartialEq)]
pub struct Confirm {
    pub question: String,
    pub command: Command,
}
