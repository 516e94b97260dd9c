//! The API test suite of `tests/api`, unchanged, on MariaDB: writes on the primary, eventual
//! reads on the GTID replica, read-your-writes for each member's own writes.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../api/access.rs"]
mod access;
#[path = "../api/catalog.rs"]
mod catalog;
#[path = "../api/concurrency.rs"]
mod concurrency;
#[path = "../api/coupons.rs"]
mod coupons;
#[path = "../api/helpers.rs"]
mod helpers;
#[path = "../api/idempotency.rs"]
mod idempotency;
#[path = "../api/insurance.rs"]
mod insurance;
#[path = "../api/licences.rs"]
mod licences;
#[path = "../api/members.rs"]
mod members;
#[path = "../api/ops.rs"]
mod ops;
#[path = "../api/orders.rs"]
mod orders;
#[path = "../api/paging.rs"]
mod paging;
#[path = "../api/wallet.rs"]
mod wallet;

pub const BACKEND: helpers::Backend = helpers::Backend::Mysql;
