//! The API test suite of `tests/api`, unchanged, on PostgreSQL with its replica and a Redis
//! Cluster (three masters with a replica each): the cache, rate limits, coupon gate, refresh
//! tokens and read-your-writes tokens all in the cluster.

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
#[path = "../api/wallet.rs"]
mod wallet;

pub const BACKEND: helpers::Backend = helpers::Backend::PostgresRedisCluster;
