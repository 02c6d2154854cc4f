//! imageapi's core: the types every part of imageapi speaks, with light dependencies only
//! (serde, chrono, ulid, thiserror), so that the admin TUI uses the very types the server
//! writes instead of re-declaring them.
//!
//! - [`domain`]: validated newtypes (`TierId`, `Height`, `Heights`, `ExpirySeconds`,
//!   `Username`, …) and the ids (`ImageId`, `UserId`, `JobId`, …): a value is proof its rule holds.
//! - [`image`]: [`image::ImageFormat`], the upload [`image::Limits`] and [`image::thumbnail_size`].
//! - [`jobs`]: the thumbnail job ([`jobs::ThumbnailJob`]) and what a worker reports back
//!   ([`jobs::JobReport`]).
//! - [`queue`]: the queue's own picture of itself ([`queue::QueueSnapshot`]).
//! - [`api`]: the admin and user API's JSON shapes ([`api::ImageView`], [`api::UserView`],
//!   [`api::QueueView`], …): the server serialises them, the TUI deserialises them. With the
//!   `openapi` feature they carry their OpenAPI schemas.

pub mod api;
pub mod domain;
pub mod image;
pub mod jobs;
pub mod queue;
