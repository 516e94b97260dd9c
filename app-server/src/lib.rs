//! The hexride server: configuration, the composition root, the HTTP API, background
//! workers and the CLI. `main.rs` only parses arguments and calls into here, so tests and
//! embedders run exactly what the binary runs.

pub mod config;
pub mod http;
pub mod jwt;
pub mod kafka;
pub mod licence_provider;
pub mod resilient;
pub mod runtime;
pub mod server;
pub mod sink;
pub mod telemetry;
pub mod web;
