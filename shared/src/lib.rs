//! Code shared by the imageapi server and its workers, beyond the light types of
//! `imageapi_core` (domain types, job payloads, wire types) that the TUI uses too.
//!
//! - [`store`]: the [`store::BlobStore`] trait for originals and thumbnails, with a
//!   filesystem implementation; keys are built from ids, never from user input.
//! - [`pipeline`]: probing uploads (format, dimensions, limits) and making thumbnails.
//! - [`settings`]: settings the server and workers share (the image limits), defined once.
//! - [`malloc`]: allocator settings the long-running binaries apply at start.
//! - [`testing`]: test support — a small tmpfs to fill, a private PostgreSQL.

pub mod malloc;
pub mod pipeline;
pub mod settings;
pub mod store;
pub mod testing;
