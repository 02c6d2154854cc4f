//! Everything that can change the TUI's state is an [`Action`]: keys are mapped to actions,
//! the clock ticks as an action, and the network answers as actions. [`crate::app::App::update`]
//! is the only place that applies them; what it wants done outside (HTTP calls) comes back
//! as [`Command`]s.

use std::sync::Arc;

use serde_json::Value;

use crate::api::{ApiError, ImageDetail, ImagePage, ImageQuery, LinkPage, NewToken, NewUser, Queue, Tier, User};

/// A decoded thumbnail for the preview pane.
pub type PreviewImage = Arc<image::DynamicImage>;

/// The lists a mouse can point at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum List {
    Users,
    Tokens,
    Tiers,
    ImageUsers,
    Images,
    FailedJobs,
    Links,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum View {
    Users,
    Tiers,
    Images,
    Queue,
    Links,
}

impl View {
    pub const ALL: [View; 5] = [View::Users, View::Tiers, View::Images, View::Queue, View::Links];

    pub fn title(self) -> &'static str {
        match self {
            View::Users => "Users",
            View::Tiers => "Tiers",
            View::Images => "Images",
            View::Queue => "Queue",
            View::Links => "Links",
        }
    }

    pub fn index(self) -> usize {
        View::ALL.iter().position(|v| *v == self).unwrap_or(0)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    Quit,
    /// The clock: refresh what is on screen, advance countdowns.
    Tick,
    SwitchView(View),
    NextView,
    PrevView,
    Up,
    Down,
    PageUp,
    PageDown,
    /// The next or the previous page of a paged list (the Links view).
    NextPage,
    PrevPage,
    /// A click on row `index` of a list (focuses it and selects the row).
    Click {
        list: List,
        index: usize,
    },
    /// The mouse wheel over a list: moves its selection by `delta` rows.
    Scroll {
        list: List,
        delta: i64,
    },
    /// Move focus between the panes of a view.
    FocusLeft,
    FocusRight,
    /// Open the selected thing (a user's tokens).
    Enter,
    /// Leave a pane or clear the filter.
    Back,
    ToggleHelp,
    StartFilter,
    FilterChar(char),
    FilterBackspace,
    FilterDone,
    FilterCancel,
    New,
    Edit,
    Delete,
    IssueToken,
    Retry,
    FormChar(char),
    FormBackspace,
    FormNext,
    FormPrev,
    /// Flip a yes/no field or step through a choice.
    FormToggle,
    FormSubmit,
    FormCancel,
    ConfirmYes,
    ConfirmNo,
    CopyToken,
    CloseToken,
    /// A network answer.
    Loaded(Loaded),
}

/// Answers from the background network task.
#[derive(Debug, Clone, PartialEq)]
pub enum Loaded {
    Users(Result<Vec<User>, ApiError>),
    UserDetail(Result<User, ApiError>),
    Tiers(Result<Vec<Tier>, ApiError>),
    /// A page of images for `query`, after `cursor` (`None`: the first page).
    Images {
        query: ImageQuery,
        cursor: Option<String>,
        result: Result<ImagePage, ApiError>,
    },
    /// Boxed: an image's detail is several times the size of every other answer.
    ImageDetail(Result<Box<ImageDetail>, ApiError>),
    Preview {
        id: String,
        result: Result<PreviewImage, String>,
    },
    ImageDeleted {
        id: String,
        name: String,
        result: Result<(), ApiError>,
    },
    Queue(Result<Queue, ApiError>),
    Links {
        cursor: Option<String>,
        result: Result<LinkPage, ApiError>,
    },
    /// A change was made (`done` says what, for the status line) or refused (`attempt` says
    /// what was tried).
    Changed {
        done: String,
        attempt: String,
        result: Result<(), ApiError>,
    },
    TokenIssued {
        username: String,
        result: Result<NewToken, ApiError>,
    },
}

/// Work for the network task.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    FetchUsers,
    FetchUserDetail(String),
    FetchTiers,
    FetchImages {
        query: ImageQuery,
        cursor: Option<String>,
    },
    FetchImageDetail(String),
    /// Fetch and decode a thumbnail for the preview.
    FetchPreview {
        id: String,
        height: u32,
    },
    DeleteImage {
        id: String,
        name: String,
    },
    FetchQueue,
    /// One page of links: the first, or the one after `cursor`.
    FetchLinks {
        cursor: Option<String>,
    },
    CreateUser(NewUser),
    UpdateUser {
        id: String,
        username: String,
        changes: Value,
    },
    DeleteUser {
        id: String,
        username: String,
    },
    IssueToken {
        id: String,
        username: String,
    },
    RevokeToken {
        user: String,
        token: String,
    },
    CreateTier(Value),
    UpdateTier {
        id: String,
        changes: Value,
    },
    DeleteTier(String),
    RevokeLink(String),
    RetryJob(String),
    /// Put text on the clipboard through the terminal (OSC 52).
    Copy(String),
}
