//! The HTTP API: axum routes under `/api/v1`, OpenAPI at `/openapi.json` with Swagger UI at
//! `/docs`, health and metrics outside it. Handlers only translate: HTTP in, use case,
//! HTTP out.

pub mod admin;
pub mod catalog;
pub mod coupons;
pub mod dto;
pub mod error;
pub mod extract;
pub mod insurance;
pub mod licences;
pub mod members;
pub mod openapi;
pub mod ops;
pub mod orders;
pub mod paging;
pub mod wallet;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::{HeaderName, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use metrics_exporter_prometheus::PrometheusHandle;
use secrecy::SecretString;
use tower::ServiceBuilder;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::OpenApiRouter;
use utoipa_swagger_ui::SwaggerUi;

use application::{Ports, Services};
use ports::{HealthCheck, Quota};

use error::ApiError;

/// HTTP-only settings.
#[derive(Debug, Clone)]
pub struct HttpSettings {
    pub insurer_secret: SecretString,
    pub api_quota: Quota,
    pub trusted_proxies: Vec<ipnet::IpNet>,
    pub request_timeout: Duration,
    pub max_body_bytes: usize,
}

/// Logs an outage of a fail-open dependency once, not once per request. Each report comes
/// with the time its call started: a call that started before the last change of state
/// carries stale news (a reply read just before a crash, an error from just before a
/// recovery) and changes nothing, so one outage is one warning even under concurrency.
#[derive(Debug)]
pub struct OutageLog {
    limiter_down: AtomicBool,
    /// When `limiter_down` last changed.
    limiter_changed: Mutex<Instant>,
}

impl Default for OutageLog {
    fn default() -> Self {
        Self {
            limiter_down: AtomicBool::new(false),
            limiter_changed: Mutex::new(Instant::now()),
        }
    }
}

impl OutageLog {
    /// A limiter call that started at `started` failed.
    pub fn limiter_down(&self, started: Instant, error: &str) {
        if self.limiter_flip(started, true) {
            tracing::warn!(error, "API rate limiter unavailable; failing open until it recovers");
        }
    }

    /// A limiter call that started at `started` succeeded.
    pub fn limiter_up(&self, started: Instant) {
        if self.limiter_flip(started, false) {
            tracing::info!("API rate limiter recovered");
        }
    }

    /// Sets the state to `down` unless it is so already or the news is stale; whether it did.
    fn limiter_flip(&self, started: Instant, down: bool) -> bool {
        // The common case (no change) stays a single atomic load.
        if self.limiter_down.load(Ordering::Relaxed) == down {
            return false;
        }
        let mut changed = self.limiter_changed.lock().unwrap_or_else(PoisonError::into_inner);
        if self.limiter_down.load(Ordering::Relaxed) == down || started < *changed {
            return false;
        }
        self.limiter_down.store(down, Ordering::Relaxed);
        *changed = Instant::now();
        true
    }
}

/// What every handler reaches. axum clones it for each extractor of each request, so the
/// bundles of `Arc`s sit behind one `Arc` each: a clone is a handful of reference counts
/// rather than a hundred contended ones.
#[derive(Clone)]
pub struct AppState {
    pub services: Arc<Services>,
    pub ports: Arc<Ports>,
    pub http: Arc<HttpSettings>,
    pub health: Arc<Vec<Arc<dyn HealthCheck>>>,
    pub metrics: PrometheusHandle,
    pub outage_log: Arc<OutageLog>,
    /// Set when shutdown begins: readiness answers 503 and every response says
    /// `Connection: close`, so the load balancer moves on while this instance still serves.
    pub draining: Arc<AtomicBool>,
}

#[derive(OpenApi)]
#[openapi(
    info(title = "hexride", description = "Rider platform: members, time-based insurance, commerce."),
    modifiers(&BearerAuth),
    components(schemas(error::ProblemBody)),
    tags((name = "members"), (name = "auth"), (name = "insurance"), (name = "driving"), (name = "products"),
        (name = "points"), (name = "coupons"), (name = "orders"), (name = "admin"))
)]
struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        );
    }
}

/// The API routes and their OpenAPI document.
pub fn api() -> (Router<AppState>, utoipa::openapi::OpenApi) {
    let v1 = OpenApiRouter::new()
        .merge(members::routes())
        .merge(insurance::routes())
        .merge(licences::routes())
        .merge(catalog::routes())
        .merge(wallet::routes())
        .merge(coupons::routes())
        .merge(orders::routes())
        .merge(admin::routes());
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .nest("/api/v1", v1)
        .split_for_parts()
}

/// The public HTTP application: the API, its OpenAPI document (`/openapi.json`, for API
/// clients), liveness and readiness without details. Metrics and the Swagger UI are on
/// [`admin_router`].
pub fn router(state: AppState) -> Router {
    let (api, openapi) = api();
    // Serialised once: every request gets the same bytes.
    let document = axum::body::Bytes::from(serde_json::to_vec(&openapi::complete(&openapi)).unwrap_or_default());
    let routes = Router::new()
        .merge(api)
        .merge(ops::public_routes())
        .merge(crate::web::routes())
        .route(
            "/openapi.json",
            axum::routing::get(
                move || async move { ([(axum::http::header::CONTENT_TYPE, "application/json")], document) },
            ),
        );
    layered(routes, state)
}

/// The operators' HTTP application, for `server.admin_listen` (keep it off the public
/// network): metrics, readiness with each component's detail, the Swagger UI at `/docs`.
pub fn admin_router(state: AppState) -> Router {
    let (_, derived) = api();
    // The Swagger UI shows the document the public listener serves.
    let openapi = serde_json::from_value(openapi::complete(&derived)).unwrap_or(derived);
    let routes = Router::new()
        .merge(ops::admin_routes())
        .merge(SwaggerUi::new("/docs").url("/openapi.json", openapi));
    layered(routes, state)
}

/// The shared layers: problem+json fallbacks, body limit, timeout, metrics, request ids,
/// tracing, panics as 500.
fn layered(routes: Router<AppState>, state: AppState) -> Router {
    let request_id = HeaderName::from_static("x-request-id");
    let timeout = state.http.request_timeout;
    routes
        .fallback(|| async { ApiError::not_found() })
        .method_not_allowed_fallback(|| async {
            ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "request.method_not_allowed", "method not allowed here")
        })
        .layer(DefaultBodyLimit::max(state.http.max_body_bytes))
        .layer(middleware::from_fn_with_state(timeout, timeout_layer))
        .layer(middleware::from_fn(record_metrics))
        .layer(middleware::from_fn_with_state(state.draining.clone(), close_when_draining))
        .layer(
            ServiceBuilder::new()
                .layer(SetRequestIdLayer::new(request_id.clone(), MakeRequestUuid))
                .layer(TraceLayer::new_for_http().make_span_with(|request: &Request| {
                    let id = request.headers().get("x-request-id").and_then(|v| v.to_str().ok()).unwrap_or("-");
                    tracing::info_span!("http", method = %request.method(), uri = %request.uri().path(), request_id = %id)
                }))
                .layer(PropagateRequestIdLayer::new(request_id))
                .layer(CatchPanicLayer::custom(|_panic: Box<dyn std::any::Any + Send>| {
                    ApiError::internal(&"handler panicked").into_response()
                })),
        )
        .with_state(state)
}

/// While draining, every response closes its connection: a keep-alive connection is never
/// left idle for the shutdown to close under a request the client is sending on it.
async fn close_when_draining(State(draining): State<Arc<AtomicBool>>, request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    if draining.load(Ordering::Relaxed) {
        response.headers_mut().insert(
            axum::http::header::CONNECTION,
            axum::http::HeaderValue::from_static("close"),
        );
    }
    response
}

/// Answers 503 problem+json when a request runs longer than the configured timeout.
async fn timeout_layer(State(timeout): State<Duration>, request: Request, next: Next) -> Response {
    match tokio::time::timeout(timeout, next.run(request)).await {
        Ok(response) => response,
        Err(_) => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "request.timeout",
            "the request took too long",
        )
        .into_response(),
    }
}

/// The `method` label: the standard methods by name, anything else (any token a client
/// sends) as `OTHER`, so a client cannot add label values without end.
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        Method::CONNECT => "CONNECT",
        Method::TRACE => "TRACE",
        _ => "OTHER",
    }
}

/// `http_requests_total{method, route, status}` and `http_request_duration_seconds`.
async fn record_metrics(request: Request, next: Next) -> Response {
    let started = Instant::now();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let method = method_label(request.method());
    let response = next.run(request).await;
    let status = response.status().as_u16().to_string();
    metrics::counter!("http_requests_total", "method" => method, "route" => route.clone(), "status" => status)
        .increment(1);
    metrics::histogram!("http_request_duration_seconds", "method" => method, "route" => route)
        .record(started.elapsed().as_secs_f64());
    response
}
