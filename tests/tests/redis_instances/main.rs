//! The two-instance suite (`cases.rs`) on one Redis server.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod cases;

const TARGET: tests::redis::RedisTarget = tests::redis::RedisTarget::Single;
