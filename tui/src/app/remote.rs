//! Data the views fetch from the server, and whether a fetch of it is on its way.

use crate::action::Command;
use crate::api::ApiError;

/// Data from the server: the last good copy stays on screen when a refresh fails.
#[derive(Debug, Clone, PartialEq)]
pub struct Remote<T> {
    pub data: Option<T>,
    pub error: Option<String>,
}

impl<T> Default for Remote<T> {
    fn default() -> Self {
        Self { data: None, error: None }
    }
}

impl<T> Remote<T> {
    pub fn set(&mut self, result: Result<T, ApiError>) {
        match result {
            Ok(data) => {
                self.data = Some(data);
                self.error = None;
            }
            Err(e) => self.error = Some(e.to_string()),
        }
    }
}

/// Whether a fetch is on its way, so that a refresh does not send it again meanwhile.
#[derive(Debug, Default)]
pub struct InFlight(bool);

impl InFlight {
    /// `command`, unless the last one has not been answered yet.
    pub fn send_if_idle(&mut self, command: Command) -> Option<Command> {
        let out = std::mem::replace(&mut self.0, true);
        (!out).then_some(command)
    }

    /// A fetch is sent regardless (it supersedes the one out, whose answer will be dropped).
    pub fn mark_sent(&mut self) {
        self.0 = true;
    }

    pub fn mark_answered(&mut self) {
        self.0 = false;
    }
}
