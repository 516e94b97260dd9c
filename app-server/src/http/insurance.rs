//! Insurance and driving: enrolment, own policies, statements, sessions, and the insurer's
//! signed cancellation callback.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use hmac::{Hmac, KeyInit, Mac};
use secrecy::ExposeSecret;
use serde::Deserialize;
use sha2::Sha256;
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use application::insurance::Caller;
use core_domain::{PolicyId, SessionId};

use super::AppState;
use super::dto::{CancellationBody, EnrolBody, List, PolicyBody, SessionBody, StatementBody, parse_time};
use super::error::{ApiError, ApiResult, ProblemBody};
use super::extract::{AppJson, AppPath, AppQuery, Auth, RawBody, Rider};

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(enrol, my_policies))
        .routes(routes!(statement))
        .routes(routes!(start_session))
        .routes(routes!(end_session))
        .routes(routes!(insurer_cancellation))
}

/// Enrol in an hourly-billed policy (riders).
#[utoipa::path(post, path = "/insurance/policies", tag = "insurance", security(("bearer" = [])), request_body = EnrolBody,
    responses((status = 201, body = PolicyBody), (status = 403, body = ProblemBody),
        (status = 409, body = ProblemBody, description = "insurance.already_active, insurance.policy_number_taken, member.inactive")))]
async fn enrol(
    State(state): State<AppState>,
    Rider(claims): Rider,
    AppJson(body): AppJson<EnrolBody>,
) -> ApiResult<(StatusCode, Json<PolicyBody>)> {
    let policy = state
        .services
        .insurance
        .enrol(claims.member_id, &body.policy_number, body.hourly_premium)
        .await?;
    Ok((StatusCode::CREATED, Json(policy.into())))
}

/// The caller's policies, newest first (riders).
#[utoipa::path(get, path = "/insurance/policies", tag = "insurance", security(("bearer" = [])),
    responses((status = 200, body = List<PolicyBody>), (status = 403, body = ProblemBody)))]
async fn my_policies(State(state): State<AppState>, Rider(claims): Rider) -> ApiResult<Json<List<PolicyBody>>> {
    let policies = state.services.insurance.my_policies(claims.member_id).await?;
    Ok(Json(List::of(policies, PolicyBody::from)))
}

#[derive(Debug, Deserialize, IntoParams)]
struct Period {
    /// RFC 3339 start (inclusive).
    from: String,
    /// RFC 3339 end (exclusive).
    to: String,
}

/// Insured minutes and premium per session for `[from, to)` (owner, cx, admin).
#[utoipa::path(get, path = "/insurance/policies/{id}/statement", tag = "insurance", security(("bearer" = [])),
    params(("id" = Uuid, Path), Period),
    responses((status = 200, body = StatementBody), (status = 404, body = ProblemBody), (status = 422, body = ProblemBody)))]
async fn statement(
    State(state): State<AppState>,
    auth: Auth,
    AppPath(id): AppPath<Uuid>,
    AppQuery(period): AppQuery<Period>,
) -> ApiResult<Json<StatementBody>> {
    let (from, to) = (parse_time("from", &period.from)?, parse_time("to", &period.to)?);
    let caller = Caller {
        member_id: auth.0.member_id,
        role: auth.0.role,
    };
    let statement = state
        .services
        .insurance
        .statement(caller, PolicyId(id), from, to)
        .await?;
    Ok(Json(statement.into()))
}

/// Start a driving session under the active policy (riders).
#[utoipa::path(post, path = "/driving/sessions", tag = "driving", security(("bearer" = [])),
    responses((status = 201, body = SessionBody), (status = 409, body = ProblemBody, description = "driving.no_active_policy, driving.session_open")))]
async fn start_session(
    State(state): State<AppState>,
    Rider(claims): Rider,
) -> ApiResult<(StatusCode, Json<SessionBody>)> {
    let session = state.services.insurance.start_session(claims.member_id).await?;
    Ok((StatusCode::CREATED, Json(SessionBody::new(session, 0, 0))))
}

/// End a driving session: its insured minutes and premium under the current expiry.
#[utoipa::path(post, path = "/driving/sessions/{id}/end", tag = "driving", security(("bearer" = [])),
    params(("id" = Uuid, Path)),
    responses((status = 200, body = SessionBody), (status = 404, body = ProblemBody), (status = 409, body = ProblemBody, description = "driving.session_ended")))]
async fn end_session(
    State(state): State<AppState>,
    Rider(claims): Rider,
    AppPath(id): AppPath<Uuid>,
) -> ApiResult<Json<SessionBody>> {
    let bill = state
        .services
        .insurance
        .end_session(claims.member_id, SessionId(id))
        .await?;
    Ok(Json(SessionBody::new(bill.session, bill.insured_minutes, bill.premium)))
}

/// Checks `X-Insurer-Signature: sha256=<hex HMAC-SHA256 of the raw body>` in constant time.
fn verify_signature(secret: &[u8], headers: &HeaderMap, body: &[u8]) -> Result<(), ApiError> {
    let bad = || {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "insurer.invalid_signature",
            "missing or invalid X-Insurer-Signature",
        )
    };
    if secret.is_empty() {
        return Err(bad());
    }
    let header = headers
        .get("x-insurer-signature")
        .and_then(|v| v.to_str().ok())
        .ok_or_else(bad)?;
    let signature = hex::decode(header.trim().strip_prefix("sha256=").ok_or_else(bad)?).map_err(|_| bad())?;
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).map_err(|_| bad())?;
    mac.update(body);
    mac.verify_slice(&signature).map_err(|_| bad())
}

/// The insurer reports a cancellation (HMAC-signed, idempotent on `event_id`).
#[utoipa::path(post, path = "/insurance/insurer/cancellations", tag = "insurance", request_body = CancellationBody,
    params(("X-Insurer-Signature" = String, Header, description = "sha256=<hex HMAC-SHA256 of the raw body>")),
    responses((status = 200, body = PolicyBody), (status = 401, body = ProblemBody, description = "insurer.invalid_signature"),
        (status = 404, body = ProblemBody)))]
async fn insurer_cancellation(
    State(state): State<AppState>,
    headers: HeaderMap,
    RawBody(body): RawBody,
) -> ApiResult<Json<PolicyBody>> {
    verify_signature(state.http.insurer_secret.expose_secret().as_bytes(), &headers, &body)?;
    let body: CancellationBody = serde_json::from_slice(&body).map_err(|e| {
        if e.is_data() {
            ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "validation.failed", e.to_string())
        } else {
            ApiError::new(StatusCode::BAD_REQUEST, "request.malformed_json", e.to_string())
        }
    })?;
    let cancelled_at = parse_time("cancelled_at", &body.cancelled_at)?;
    let policy = state
        .services
        .insurance
        .insurer_cancellation(&body.event_id, &body.policy_number, cancelled_at)
        .await?;
    Ok(Json(policy.into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sign(secret: &[u8], body: &[u8]) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("key");
        mac.update(body);
        format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
    }

    #[test]
    fn only_the_right_signature_of_the_exact_body_passes() {
        let mut headers = HeaderMap::new();
        headers.insert("x-insurer-signature", sign(b"k", b"{}").parse().expect("header"));
        assert!(verify_signature(b"k", &headers, b"{}").is_ok());
        assert!(verify_signature(b"k", &headers, b"{ }").is_err());
        assert!(verify_signature(b"other", &headers, b"{}").is_err());
        assert!(verify_signature(b"", &headers, b"{}").is_err());
        assert!(verify_signature(b"k", &HeaderMap::new(), b"{}").is_err());
    }
}
