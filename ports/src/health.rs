//! Readiness of the adapters behind the ports, for `/health/ready`.

use async_trait::async_trait;

/// How a component is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum HealthStatus {
    /// Working.
    Up,
    /// Working with reduced capacity (a replica or the cache down): still ready.
    Degraded,
    /// Cannot serve: not ready.
    Down,
}

/// One component's entry in `/health/ready`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ComponentHealth {
    /// `database`, `replica-1`, `redis`, `kafka`, …
    pub name: String,
    /// How it is doing.
    pub status: HealthStatus,
    /// Why it is not up, for people.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

impl ComponentHealth {
    /// An entry.
    pub fn new(name: impl Into<String>, status: HealthStatus, detail: Option<String>) -> Self {
        Self {
            name: name.into(),
            status,
            detail,
        }
    }
}

/// An adapter that can tell whether it is ready.
#[cfg_attr(feature = "mocks", mockall::automock)]
#[async_trait]
pub trait HealthCheck: Send + Sync {
    /// One entry per component it owns (the primary, each replica, …). Never fails: a
    /// failure is a `Down` entry.
    async fn health(&self) -> Vec<ComponentHealth>;
}
