//! The imageapi HTTP server.
//!
//! [`startup::Application`] wires everything: the metadata repository ([`repo`]: sled or
//! PostgreSQL), the blob store, authentication ([`auth`]), the thumbnail bookkeeping
//! ([`thumbnails`]: outbox, fair lanes, reconciler) with its job queue (`imageapi_queue`'s
//! Redis transport for worker processes, or its embedded one feeding `imageapi-worker`'s render
//! pool in this process; [`thumbnails::start`] is where the mode is chosen), the routes
//! ([`routes`]) and the Prometheus metrics ([`metrics`]). Answers are `imageapi_core::api`'s
//! types, made from records in [`views`]; errors become problem+json in one place ([`error`]).
//! The admin commands besides serving are in [`cli`].

pub mod auth;
pub mod blobs;
pub mod cli;
pub mod clock;
pub mod config;
pub mod disk_space;
pub mod error;
pub mod ids;
pub mod login_limits;
pub mod metrics;
pub mod openapi;
pub mod passwords;
pub mod repo;
pub mod routes;
pub mod secrets;
pub mod services;
pub mod shutdown;
pub mod startup;
pub mod state;
pub mod superuser;
pub mod telemetry;
pub mod thumbnails;
pub mod turns;
pub mod upload_gate;
pub mod views;
