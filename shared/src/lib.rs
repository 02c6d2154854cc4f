//! Code shared by the imageapi server and its workers.
//!
//! - [`domain`]: validated newtypes (`TierId`, `Height`, `ExpirySeconds`, `Username`, …) that
//!   can only hold legal values, so handlers parse once and pass proofs around.
//! - [`jobs`]: the thumbnail job payload and the outcome a worker reports back.
//! - [`store`]: the [`store::BlobStore`] trait for originals and thumbnails, with a
//!   filesystem implementation; keys are built from ids, never from user input.
//! - [`pipeline`]: probing uploads (format, dimensions, limits) and making thumbnails.
//! - [`queue`]: the queue contract of server and workers (job queue trait, Redis queue client,
//!   results stream, store-marker check), so neither depends on the other's internals.
//! - [`settings`]: settings the server and workers share (the image limits), defined once.
//! - [`malloc`]: allocator settings the long-running binaries apply at start.
//! - [`testing`]: test support — a small tmpfs to fill, a private PostgreSQL.

pub mod domain;
pub mod jobs;
pub mod malloc;
pub mod pipeline;
pub mod queue;
pub mod settings;
pub mod store;
pub mod testing;
