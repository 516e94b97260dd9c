//! The two-instance suite of `redis_instances`, unchanged, on a Redis Cluster: both
//! instances on one cluster of three masters with a replica each.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../redis_instances/cases.rs"]
mod cases;

const TARGET: tests::redis::RedisTarget = tests::redis::RedisTarget::Cluster;
