//! The API test suite: every endpoint, every error code and the main flows, through the
//! real server on a temporary SQLite database. `api_postgres` runs the same modules on
//! PostgreSQL with a replica.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod access;
mod catalog;
mod concurrency;
mod coupons;
mod helpers;
mod idempotency;
mod insurance;
mod licences;
mod members;
mod ops;
mod orders;
mod paging;
mod wallet;

pub const BACKEND: helpers::Backend = helpers::Backend::Sqlite;
