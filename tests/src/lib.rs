//! hexride's integration tests, and the shared contract every SQL store adapter must pass.
#![allow(clippy::unwrap_used, clippy::expect_used)]

pub mod cluster;
pub mod contract;
pub mod kafka;
pub mod licence_provider;
pub mod load;
pub mod log_capture;
pub mod redis;
pub mod routing;
pub mod scale;
pub mod services;
