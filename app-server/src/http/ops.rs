//! Operations endpoints: liveness, readiness with per-component status, Prometheus metrics.
//! The public listener answers liveness and readiness without details (why a component is
//! degraded names hosts and drivers); the admin listener has the details and the metrics.

use std::collections::BTreeMap;

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;

use ports::{ComponentHealth, HealthStatus};

use super::AppState;

/// Liveness, and readiness with each component's status only.
pub fn public_routes() -> Router<AppState> {
    Router::new()
        .route("/health/live", get(live))
        .route("/health/ready", get(ready_public))
}

/// Liveness, readiness with each component's detail, and the metrics.
pub fn admin_routes() -> Router<AppState> {
    Router::new()
        .route("/health/live", get(live))
        .route("/health/ready", get(ready))
        .route("/metrics", get(metrics))
}

#[derive(Serialize)]
struct Readiness {
    status: HealthStatus,
    /// Shutting down: still serving, but the load balancer should send nothing new.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    draining: bool,
    components: BTreeMap<String, ComponentHealth>,
}

async fn live() -> Json<serde_json::Value> {
    Json(serde_json::json!({ "status": "up" }))
}

/// [`ready`] without the components' details.
async fn ready_public(State(state): State<AppState>) -> impl IntoResponse {
    let (code, Json(mut readiness)) = readiness(&state).await;
    for component in readiness.components.values_mut() {
        component.detail = None;
    }
    (code, Json(readiness))
}

/// 200 while every component is up or degraded (a replica or the cache down), 503 when one
/// is down or the instance is draining.
async fn ready(State(state): State<AppState>) -> impl IntoResponse {
    readiness(&state).await
}

async fn readiness(state: &AppState) -> (StatusCode, Json<Readiness>) {
    let checks = futures::future::join_all(state.health.iter().map(|h| h.health())).await;
    let components: BTreeMap<String, ComponentHealth> =
        checks.into_iter().flatten().map(|c| (c.name.clone(), c)).collect();
    let status = if components.values().any(|c| c.status == HealthStatus::Down) {
        HealthStatus::Down
    } else if components.values().any(|c| c.status == HealthStatus::Degraded) {
        HealthStatus::Degraded
    } else {
        HealthStatus::Up
    };
    let draining = state.draining.load(std::sync::atomic::Ordering::Relaxed);
    let status = if draining { HealthStatus::Down } else { status };
    let code = if status == HealthStatus::Down {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::OK
    };
    (
        code,
        Json(Readiness {
            status,
            draining,
            components,
        }),
    )
}

async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
}
