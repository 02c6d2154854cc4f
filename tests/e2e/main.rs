//! End-to-end tests for imageapi: every test starts the real `imageapi-server` binary on
//! port 0 with a fresh data directory and talks HTTP to it (see `helpers`). One test binary,
//! one module per area of the API.
//!
//! `TEST_LOG=1 cargo test -p imageapi-e2e` shows the server logs on the terminal.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed expectation is the test failing

mod fixtures;
mod helpers;

mod abuse;
mod admin_cli;
mod auth;
mod contract;
mod docs_browser;
mod formats;
mod full_disk;
mod generated_client;
mod images;
mod isolation;
mod links;
mod load;
mod migrate_repo;
mod moderation;
mod multi_node;
mod pipeline;
mod queue;
mod quotas;
mod restart;
mod s3;
mod scale_out;
mod service;
mod tiers;
mod tui;
mod uploads;
mod users;
