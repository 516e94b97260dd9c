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
use core_domain::{PlanId, PolicyId, SessionId};

use super::AppState;
use super::dto::{CancellationBody, EnrolBody, List, PlanBody, PolicyBody, SessionBody, StatementBody, parse_time};
use super::error::{ApiError, ApiResult, ProblemBody};
use super::extract::{AppJson, AppPath, AppQuery, Auth, RawBody, Rider};
use super::paging::{self, PageQuery, Paged};

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(offered_plans))
        .routes(routes!(enrol, my_policies))
        .routes(routes!(statement))
        .routes(routes!(start_session))
        .routes(routes!(end_session))
        .routes(routes!(insurer_cancellation))
}

/// The plans riders can enrol in, by name (anyone).
#[utoipa::path(get, path = "/insurance/plans", tag = "insurance", responses((status = 200, body = List<PlanBody>)))]
async fn offered_plans(State(state): State<AppState>) -> ApiResult<Json<List<PlanBody>>> {
    let plans = state.services.insurance.plans(false).await?;
    Ok(Json(List::of(plans, PlanBody::from)))
}

/// Enrol in an offered plan (riders): coverage starts now, at the plan's hourly premium,
/// under the insurer's policy number if given, else one the server assigns.
#[utoipa::path(post, path = "/insurance/policies", tag = "insurance", security(("bearer" = [])), request_body = EnrolBody,
    responses((status = 201, body = PolicyBody), (status = 403, body = ProblemBody),
        (status = 404, body = ProblemBody, description = "insurance.plan_not_found"),
        (status = 409, body = ProblemBody, description = "insurance.already_active, insurance.plan_retired, insurance.policy_number_taken, member.inactive")))]
async fn enrol(
    State(state): State<AppState>,
    Rider(claims): Rider,
    AppJson(body): AppJson<EnrolBody>,
) -> ApiResult<(StatusCode, Json<PolicyBody>)> {
    let policy = state
        .services
        .insurance
        .enrol(claims.member_id, PlanId(body.plan_id), body.policy_number.as_deref())
        .await?;
    Ok((StatusCode::CREATED, Json(policy.into())))
}

/// The caller's policies, newest first, a page at a time (riders).
#[utoipa::path(get, path = "/insurance/policies", tag = "insurance", security(("bearer" = [])), params(PageQuery),
    responses((status = 200, body = Paged<PolicyBody>), (status = 403, body = ProblemBody), (status = 422, body = ProblemBody)))]
async fn my_policies(
    State(state): State<AppState>,
    Rider(claims): Rider,
    AppQuery(page): AppQuery<PageQuery>,
) -> ApiResult<Json<Paged<PolicyBody>>> {
    let policies = state
        .services
        .insurance
        .my_policies(claims.member_id, page.after()?, page.limit)
        .await?;
    Ok(Json(Paged::of(policies, PolicyBody::from)))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct Period {
    /// RFC 3339 start (inclusive).
    #[param(format = DateTime)]
    from: String,
    /// RFC 3339 end (exclusive), after `from`.
    #[param(format = DateTime)]
    to: String,
}

/// Insured minutes and premium per session for `[from, to)` (owner, cx, admin): the
/// sessions a page at a time, oldest first, the totals of every session.
#[utoipa::path(get, path = "/insurance/policies/{id}/statement", tag = "insurance", security(("bearer" = [])),
    params(("id" = Uuid, Path), Period, PageQuery),
    responses((status = 200, body = StatementBody), (status = 404, body = ProblemBody), (status = 422, body = ProblemBody)))]
async fn statement(
    State(state): State<AppState>,
    auth: Auth,
    AppPath(id): AppPath<Uuid>,
    AppQuery(period): AppQuery<Period>,
    AppQuery(page): AppQuery<PageQuery>,
) -> ApiResult<Json<StatementBody>> {
    let (from, to) = (parse_time("from", &period.from)?, parse_time("to", &period.to)?);
    let caller = Caller {
        member_id: auth.0.member_id,
        role: auth.0.role,
    };
    let (statement, next) = state
        .services
        .insurance
        .statement(caller, PolicyId(id), from, to, page.after()?, page.limit)
        .await?;
    Ok(Json(StatementBody {
        next: next.as_ref().map(paging::encode),
        ..statement.into()
    }))
}

/// Start a driving session under the active policy (riders).
#[utoipa::path(post, path = "/driving/sessions", tag = "driving", security(("bearer" = [])),
    responses((status = 201, body = SessionBody), (status = 409, body = ProblemBody, description = "driving.no_active_policy, driving.session_open, driving.licence_required, driving.licence_not_valid")))]
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

/// How far an insurer's `X-Insurer-Timestamp` may be from this server's clock: a captured
/// callback cannot be replayed later than this.
const SIGNATURE_TOLERANCE_SECS: u64 = 300;

/// Checks `X-Insurer-Timestamp: <unix seconds>` (within [`SIGNATURE_TOLERANCE_SECS`] of
/// `now`) and `X-Insurer-Signature: sha256=<hex HMAC-SHA256 of "<timestamp>.<raw body>">`, in
/// constant time.
fn verify_signature(secret: &[u8], headers: &HeaderMap, body: &[u8], now: i64) -> Result<(), ApiError> {
    let bad = |what: &str| {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "insurer.invalid_signature",
            format!("missing or invalid {what}"),
        )
    };
    if secret.is_empty() {
        return Err(bad("X-Insurer-Signature (callbacks are not configured)"));
    }
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::trim);
    let timestamp = header("x-insurer-timestamp").ok_or_else(|| bad("X-Insurer-Timestamp"))?;
    let at: i64 = timestamp.parse().map_err(|_| bad("X-Insurer-Timestamp"))?;
    // `abs_diff`: any i64 a client sends, down to i64::MIN, compares without overflow.
    if now.abs_diff(at) > SIGNATURE_TOLERANCE_SECS {
        return Err(bad("X-Insurer-Timestamp (more than 5 minutes from now)"));
    }
    let signature = header("x-insurer-signature")
        .and_then(|v| v.strip_prefix("sha256="))
        .and_then(|v| hex::decode(v).ok())
        .ok_or_else(|| bad("X-Insurer-Signature"))?;
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).map_err(|_| bad("X-Insurer-Signature"))?;
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body);
    mac.verify_slice(&signature).map_err(|_| bad("X-Insurer-Signature"))
}

/// The insurer reports a cancellation (HMAC-signed, idempotent on `event_id`).
#[utoipa::path(post, path = "/insurance/insurer/cancellations", tag = "insurance", request_body = CancellationBody,
    params(("X-Insurer-Timestamp" = i64, Header, description = "unix seconds, within 5 minutes of the server's clock"),
        ("X-Insurer-Signature" = String, Header, description = "sha256=<hex HMAC-SHA256 of \"<X-Insurer-Timestamp>.<raw body>\">")),
    responses((status = 200, body = PolicyBody), (status = 401, body = ProblemBody, description = "insurer.invalid_signature"),
        (status = 404, body = ProblemBody)))]
async fn insurer_cancellation(
    State(state): State<AppState>,
    headers: HeaderMap,
    RawBody(body): RawBody,
) -> ApiResult<Json<PolicyBody>> {
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    verify_signature(
        state.http.insurer_secret.expose_secret().as_bytes(),
        &headers,
        &body,
        now,
    )?;
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

    fn headers(secret: &[u8], at: i64, body: &[u8]) -> HeaderMap {
        let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("key");
        mac.update(format!("{at}.").as_bytes());
        mac.update(body);
        let mut headers = HeaderMap::new();
        let signature = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
        headers.insert("x-insurer-signature", signature.parse().expect("header"));
        headers.insert("x-insurer-timestamp", at.to_string().parse().expect("header"));
        headers
    }

    #[test]
    fn only_the_right_signature_of_the_exact_body_and_a_recent_timestamp_passes() {
        let now = 1_800_000_000;
        let signed = headers(b"k", now, b"{}");
        assert!(verify_signature(b"k", &signed, b"{}", now).is_ok());
        assert!(verify_signature(b"k", &signed, b"{}", now + 300).is_ok());
        assert!(verify_signature(b"k", &signed, b"{}", now - 300).is_ok());
        assert!(verify_signature(b"k", &signed, b"{}", now + 301).is_err());
        assert!(verify_signature(b"k", &signed, b"{}", now - 301).is_err());
        assert!(verify_signature(b"k", &signed, b"{ }", now).is_err());
        assert!(verify_signature(b"other", &signed, b"{}", now).is_err());
        assert!(verify_signature(b"", &signed, b"{}", now).is_err());
        assert!(verify_signature(b"k", &HeaderMap::new(), b"{}", now).is_err());
        // The timestamp is part of what is signed: changing it breaks the signature.
        let mut moved = signed.clone();
        moved.insert("x-insurer-timestamp", (now + 1).to_string().parse().expect("header"));
        assert!(verify_signature(b"k", &moved, b"{}", now).is_err());
    }

    #[test]
    fn extreme_timestamps_are_refused_not_a_panic() {
        let now = 1_800_000_000;
        for at in [i64::MIN, i64::MAX, -1, 0] {
            let signed = headers(b"k", at, b"{}");
            assert!(verify_signature(b"k", &signed, b"{}", now).is_err(), "{at}");
        }
    }
}
