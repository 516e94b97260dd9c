//! Driving licences: a rider registers theirs (verified by the provider first) and reads it;
//! staff read a member's licence and its verification trail.

use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};
use time::{Date, OffsetDateTime};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use application::licences::LicenceRecord;
use core_domain::MemberId;
use core_domain::licence::{Licence, LicenceCheck};

use super::AppState;
use super::error::{ApiError, ApiResult, ProblemBody};
use super::extract::{AppJson, AppPath, Rider, Staff};

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(register, my_licence))
        .routes(routes!(member_licence))
}

time::serde::format_description!(iso_date, Date, "[year]-[month]-[day]");

/// A licence to register.
#[derive(Debug, Deserialize, ToSchema)]
pub struct LicenceRegisterBody {
    /// 8 to 24 characters: letters or digits, optionally separated by single hyphens
    /// (`11-22-333333-44`).
    #[schema(min_length = 8, max_length = 24, pattern = "^[A-Za-z0-9]+(-[A-Za-z0-9]+)*$")]
    pub number: String,
    /// The last day the licence is in force, `YYYY-MM-DD` (a date already past answers 409
    /// `licence.expired`).
    #[schema(format = Date)]
    pub expires_on: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct LicenceBody {
    pub member_id: Uuid,
    pub number: String,
    /// The last day the licence is in force (the provider's date).
    #[serde(with = "iso_date")]
    #[schema(value_type = String, format = Date)]
    pub expires_on: Date,
    /// `valid`, `suspended` (the provider rejected it) or `expired`.
    pub status: String,
    /// Why it is suspended.
    pub status_reason: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    pub last_verified_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub registered_at: OffsetDateTime,
}

impl From<Licence> for LicenceBody {
    fn from(l: Licence) -> Self {
        Self {
            member_id: l.member_id.0,
            number: l.number,
            expires_on: l.expires_on,
            status: l.status.as_str().to_owned(),
            status_reason: l.status_reason,
            last_verified_at: l.last_verified_at,
            registered_at: l.registered_at,
        }
    }
}

/// One verification of a licence.
#[derive(Debug, Serialize, ToSchema)]
pub struct LicenceCheckBody {
    pub id: Uuid,
    pub number: String,
    /// The licence's status after the check (`suspended` for a rejection).
    pub status: String,
    pub reason: Option<String>,
    /// `member:<id>` (registration) or `system:licence-reverification` (the batch).
    pub actor: String,
    #[serde(with = "time::serde::rfc3339")]
    pub checked_at: OffsetDateTime,
}

impl From<LicenceCheck> for LicenceCheckBody {
    fn from(c: LicenceCheck) -> Self {
        Self {
            id: c.id.0,
            number: c.number,
            status: c.status.as_str().to_owned(),
            reason: c.reason,
            actor: c.actor.to_string(),
            checked_at: c.checked_at,
        }
    }
}

/// A member's licence (none registered: `null`) and its checks, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct LicenceRecordBody {
    pub licence: Option<LicenceBody>,
    pub checks: Vec<LicenceCheckBody>,
}

impl From<LicenceRecord> for LicenceRecordBody {
    fn from(r: LicenceRecord) -> Self {
        Self {
            licence: r.licence.map(LicenceBody::from),
            checks: r.checks.into_iter().map(LicenceCheckBody::from).collect(),
        }
    }
}

fn parse_date(field: &str, raw: &str) -> Result<Date, ApiError> {
    let format = time::macros::format_description!("[year]-[month]-[day]");
    Date::parse(raw.trim(), &format).map_err(|_| ApiError::invalid_field(field, "must be a date, YYYY-MM-DD"))
}

/// Register the caller's driving licence (riders), replacing any earlier one. The
/// licence-verification provider checks it first; its expiry date is the one kept.
#[utoipa::path(put, path = "/members/me/licence", tag = "members", security(("bearer" = [])),
    request_body = LicenceRegisterBody,
    responses((status = 200, body = LicenceBody), (status = 403, body = ProblemBody),
        (status = 409, body = ProblemBody, description = "licence.rejected, licence.expired, member.inactive"),
        (status = 422, body = ProblemBody),
        (status = 503, body = ProblemBody, description = "licence.provider_unavailable")))]
async fn register(
    State(state): State<AppState>,
    Rider(claims): Rider,
    AppJson(body): AppJson<LicenceRegisterBody>,
) -> ApiResult<Json<LicenceBody>> {
    let expires_on = parse_date("expires_on", &body.expires_on)?;
    let licence = state
        .services
        .licences
        .register(claims.member_id, &body.number, expires_on)
        .await?;
    Ok(Json(licence.into()))
}

/// The caller's driving licence (riders).
#[utoipa::path(get, path = "/members/me/licence", tag = "members", security(("bearer" = [])),
    responses((status = 200, body = LicenceBody), (status = 403, body = ProblemBody),
        (status = 404, body = ProblemBody, description = "licence.not_found")))]
async fn my_licence(State(state): State<AppState>, Rider(claims): Rider) -> ApiResult<Json<LicenceBody>> {
    Ok(Json(state.services.licences.my_licence(claims.member_id).await?.into()))
}

/// A member's driving licence and its verifications (cx, admin).
#[utoipa::path(get, path = "/admin/members/{id}/licence", tag = "admin", security(("bearer" = [])),
    params(("id" = Uuid, Path)),
    responses((status = 200, body = LicenceRecordBody), (status = 403, body = ProblemBody)))]
async fn member_licence(
    State(state): State<AppState>,
    _staff: Staff,
    AppPath(id): AppPath<Uuid>,
) -> ApiResult<Json<LicenceRecordBody>> {
    Ok(Json(state.services.licences.record(MemberId(id)).await?.into()))
}
