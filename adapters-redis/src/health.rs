//! Readiness of Redis for `/health/ready`. Every Redis port has a database or in-process
//! fallback, so an unreachable Redis degrades the service instead of taking it down.

use async_trait::async_trait;
use ports::{ComponentHealth, HealthCheck, HealthStatus};

use crate::conn::RedisConn;

/// [`ports::HealthCheck`] for the component `redis`: `Up` when it answers `PING`, else
/// `Degraded` (never `Down`).
#[derive(Debug, Clone)]
pub struct RedisHealth {
    conn: RedisConn,
}

impl RedisHealth {
    /// Checks `conn` (a `PING` per call).
    pub fn new(conn: RedisConn) -> Self {
        Self { conn }
    }
}

#[async_trait]
impl HealthCheck for RedisHealth {
    async fn health(&self) -> Vec<ComponentHealth> {
        let (status, detail) = match self.conn.ping().await {
            Ok(()) => (HealthStatus::Up, None),
            Err(failure) => (
                HealthStatus::Degraded,
                Some(format!(
                    "{} unreachable ({failure}); serving from fallbacks",
                    self.conn.address()
                )),
            ),
        };
        vec![ComponentHealth::new("redis", status, detail)]
    }
}
