//! The test harness: builds the real `imageapi-server` once per test process, spawns it on
//! port 0 with its own data directory, and wraps the HTTP API in typed request methods
//! (after zero2prod's `tests/api/helpers.rs`).
//!
//! Main types: [`TestApp`] (one running server and its data dir), [`TestUser`] (credentials
//! to act as), [`Reply`] (a fully read response with assertion helpers) and
//! [`ServerOptions`] (the knobs a test may turn: worker count, pending-thumbnail wait).
//!
//! - `server`: building the binary and the lifecycle of a [`TestApp`] (spawn, kill, restart).
//! - `reply`: [`TestUser`], [`Reply`] and JSON/assertion helpers.
//! - `api`: typed request methods on [`TestApp`], one per API call.
//! - `scale`: a private `redis-server` per test and `imageapi-worker` processes.

mod api;
mod reply;
mod scale;
mod server;

pub use reply::*;
pub use scale::*;
pub use server::*;
