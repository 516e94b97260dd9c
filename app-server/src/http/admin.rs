//! Staff routes: CX and admins look up riders and expire policies; admins manage products
//! insurance plans, products and coupon campaigns.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use application::coupons::CampaignRequest;
use core_domain::insurance::{ExpiryReason, PlanPatch};
use core_domain::{MemberId, PlanId, PolicyId, ProductId};

use super::AppState;
use super::dto::{
    CampaignBody, ExpireBody, List, MemberBody, NewCampaignBody, NewPlanBody, NewProductBody, PlanBody, PlanPatchBody,
    PolicyBody, ProductBody, ProductPatchBody, parse_time,
};
use super::error::{ApiError, ApiResult, ProblemBody};
use super::extract::{Admin, AppJson, AppPath, AppQuery, Staff};
use super::paging::{PageQuery, Paged};

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(search_members))
        .routes(routes!(member_policies))
        .routes(routes!(expire_policy))
        .routes(routes!(create_plan, all_plans))
        .routes(routes!(change_plan))
        .routes(routes!(create_product))
        .routes(routes!(update_product))
        .routes(routes!(create_campaign))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct MemberSearch {
    /// E-mail or its beginning.
    #[param(min_length = 1, pattern = "\\S")]
    email: String,
}

/// Search members by e-mail (cx, admin), by e-mail, a page at a time.
#[utoipa::path(get, path = "/admin/members", tag = "admin", security(("bearer" = [])), params(MemberSearch, PageQuery),
    responses((status = 200, body = Paged<MemberBody>), (status = 403, body = ProblemBody), (status = 422, body = ProblemBody)))]
async fn search_members(
    State(state): State<AppState>,
    _staff: Staff,
    AppQuery(q): AppQuery<MemberSearch>,
    AppQuery(page): AppQuery<PageQuery>,
) -> ApiResult<Json<Paged<MemberBody>>> {
    let members = state
        .services
        .members
        .search(&q.email, page.after()?, page.limit)
        .await?;
    Ok(Json(Paged::of(members, MemberBody::from)))
}

/// A member's policies, newest first, a page at a time (cx, admin).
#[utoipa::path(get, path = "/admin/members/{id}/policies", tag = "admin", security(("bearer" = [])), params(("id" = Uuid, Path), PageQuery),
    responses((status = 200, body = Paged<PolicyBody>), (status = 403, body = ProblemBody), (status = 422, body = ProblemBody)))]
async fn member_policies(
    State(state): State<AppState>,
    _staff: Staff,
    AppPath(id): AppPath<Uuid>,
    AppQuery(page): AppQuery<PageQuery>,
) -> ApiResult<Json<Paged<PolicyBody>>> {
    let policies = state
        .services
        .insurance
        .member_policies(MemberId(id), page.after()?, page.limit)
        .await?;
    Ok(Json(Paged::of(policies, PolicyBody::from)))
}

/// Expire a policy effective at a given time (cx, admin). An earlier time than the current
/// expiry moves it earlier; a later one changes nothing.
#[utoipa::path(post, path = "/admin/insurance/policies/{id}/expire", tag = "admin", security(("bearer" = [])),
    params(("id" = Uuid, Path)), request_body = ExpireBody,
    responses((status = 200, body = PolicyBody), (status = 403, body = ProblemBody), (status = 404, body = ProblemBody),
        (status = 422, body = ProblemBody, description = "insurance.invalid_effective_at")))]
async fn expire_policy(
    State(state): State<AppState>,
    Staff(claims): Staff,
    AppPath(id): AppPath<Uuid>,
    AppJson(body): AppJson<ExpireBody>,
) -> ApiResult<Json<PolicyBody>> {
    let effective_at = parse_time("effective_at", &body.effective_at)?;
    let reason = match body.reason.as_deref() {
        None => ExpiryReason::AdminRequest,
        Some(raw) => raw
            .parse()
            .map_err(|e: core_domain::UnknownValue| ApiError::invalid_field("reason", e.to_string()))?,
    };
    let policy = state
        .services
        .insurance
        .expire_by_staff(
            claims.member_id,
            PolicyId(id),
            effective_at,
            reason,
            body.note.as_deref(),
        )
        .await?;
    Ok(Json(policy.into()))
}

/// Offer a new insurance plan (admin).
#[utoipa::path(post, path = "/admin/insurance/plans", tag = "admin", security(("bearer" = [])), request_body = NewPlanBody,
    responses((status = 201, body = PlanBody), (status = 403, body = ProblemBody), (status = 422, body = ProblemBody)))]
async fn create_plan(
    State(state): State<AppState>,
    _admin: Admin,
    AppJson(body): AppJson<NewPlanBody>,
) -> ApiResult<(StatusCode, Json<PlanBody>)> {
    let plan = state
        .services
        .insurance
        .create_plan(&body.name, body.hourly_premium)
        .await?;
    Ok((StatusCode::CREATED, Json(plan.into())))
}

/// Every insurance plan, retired ones too, by name (cx, admin).
#[utoipa::path(get, path = "/admin/insurance/plans", tag = "admin", security(("bearer" = [])),
    responses((status = 200, body = List<PlanBody>), (status = 403, body = ProblemBody)))]
async fn all_plans(State(state): State<AppState>, _staff: Staff) -> ApiResult<Json<List<PlanBody>>> {
    let plans = state.services.insurance.plans(true).await?;
    Ok(Json(List::of(plans, PlanBody::from)))
}

/// Rename, re-price or retire a plan (admin). A new premium applies to enrolments from now
/// on; policies already written keep theirs.
#[utoipa::path(patch, path = "/admin/insurance/plans/{id}", tag = "admin", security(("bearer" = [])), params(("id" = Uuid, Path)),
    request_body = PlanPatchBody,
    responses((status = 200, body = PlanBody), (status = 403, body = ProblemBody), (status = 404, body = ProblemBody),
        (status = 422, body = ProblemBody)))]
async fn change_plan(
    State(state): State<AppState>,
    _admin: Admin,
    AppPath(id): AppPath<Uuid>,
    AppJson(body): AppJson<PlanPatchBody>,
) -> ApiResult<Json<PlanBody>> {
    let patch = PlanPatch::parse(body.name.as_deref(), body.hourly_premium, body.status.as_deref())?;
    let plan = state.services.insurance.change_plan(PlanId(id), patch).await?;
    Ok(Json(plan.into()))
}

/// Create a product (admin).
#[utoipa::path(post, path = "/admin/products", tag = "admin", security(("bearer" = [])), request_body = NewProductBody,
    responses((status = 201, body = ProductBody), (status = 403, body = ProblemBody), (status = 422, body = ProblemBody)))]
async fn create_product(
    State(state): State<AppState>,
    _admin: Admin,
    AppJson(body): AppJson<NewProductBody>,
) -> ApiResult<(StatusCode, Json<ProductBody>)> {
    let product = state
        .services
        .catalog
        .create(&body.name, body.price, body.stock)
        .await?;
    Ok((StatusCode::CREATED, Json(product.into())))
}

/// Change a product's price and/or stock (admin).
#[utoipa::path(patch, path = "/admin/products/{id}", tag = "admin", security(("bearer" = [])), params(("id" = Uuid, Path)),
    request_body = ProductPatchBody,
    responses((status = 200, body = ProductBody), (status = 403, body = ProblemBody), (status = 404, body = ProblemBody)))]
async fn update_product(
    State(state): State<AppState>,
    _admin: Admin,
    AppPath(id): AppPath<Uuid>,
    AppJson(body): AppJson<ProductPatchBody>,
) -> ApiResult<Json<ProductBody>> {
    let product = state
        .services
        .catalog
        .update(ProductId(id), body.price, body.stock)
        .await?;
    Ok(Json(product.into()))
}

/// Create a first-come-first-served coupon campaign (admin).
#[utoipa::path(post, path = "/admin/coupons", tag = "admin", security(("bearer" = [])), request_body = NewCampaignBody,
    responses((status = 201, body = CampaignBody), (status = 403, body = ProblemBody), (status = 422, body = ProblemBody)))]
async fn create_campaign(
    State(state): State<AppState>,
    _admin: Admin,
    AppJson(body): AppJson<NewCampaignBody>,
) -> ApiResult<(StatusCode, Json<CampaignBody>)> {
    let starts_at = body
        .starts_at
        .as_deref()
        .map(|t| parse_time("starts_at", t))
        .transpose()?;
    let ends_at = body.ends_at.as_deref().map(|t| parse_time("ends_at", t)).transpose()?;
    let campaign = state
        .services
        .coupons
        .create_campaign(CampaignRequest {
            name: body.name,
            discount: body.discount.into(),
            total_quantity: body.total_quantity,
            starts_at,
            ends_at,
        })
        .await?;
    Ok((StatusCode::CREATED, Json(campaign.into())))
}
