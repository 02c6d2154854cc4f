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
//! - `s3`: a private S3-compatible server (`s3s-fs`) per test.
//! - `postgres`: a PostgreSQL database per test (`IMAGEAPI_E2E_POSTGRES` runs every app on one).

mod api;
mod postgres;
mod reply;
mod s3;
mod scale;
mod server;

pub use postgres::*;
pub use reply::*;
pub use s3::*;
pub use scale::*;
pub use server::*;

/// Makes ring the TLS provider of this test process: the workspace's reqwest has rustls without
/// one, and a client cannot be built before. Idempotent; call before building a client.
pub fn install_tls_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}
