//! The Redis adapter suite of `redis_adapters`, unchanged, on a Redis Cluster: three masters
//! with a replica each, the adapters on one cluster connection (`redis+cluster://`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../redis_adapters/cases.rs"]
mod cases;

const TARGET: tests::redis::RedisTarget = tests::redis::RedisTarget::Cluster;
