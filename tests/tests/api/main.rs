//! The API test suite: every endpoint, every error code and the main flows, through the
//! real server on a temporary SQLite database. `api_postgres` runs the same modules on
//! PostgreSQL with a replica.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod access;
mod commerce;
mod concurrency;
mod helpers;
mod insurance;
mod members;
mod ops;

pub const BACKEND: helpers::Backend = helpers::Backend::Sqlite;
