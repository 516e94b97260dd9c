//! Coupons for members: first-come-first-served issue, the member's coupons.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use core_domain::CampaignId;

use super::AppState;
use super::dto::CouponBody;
use super::error::{ApiResult, ProblemBody};
use super::extract::{AppPath, AppQuery, Auth, Idempotent};
use super::paging::{PageQuery, Paged};

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(issue_coupon))
        .routes(routes!(my_coupons))
}

/// First come, first served: one coupon of the campaign.
#[utoipa::path(post, path = "/coupons/{campaign_id}/issue", tag = "coupons", security(("bearer" = [])),
    params(("campaign_id" = Uuid, Path), ("Idempotency-Key" = Option<String>, Header, min_length = 1, max_length = 255, pattern = "^[!-~]+$", description = "retries with the same key, path and body replay the first answer (1–255 visible ASCII characters)")),
    responses((status = 201, body = CouponBody), (status = 404, body = ProblemBody),
        (status = 409, body = ProblemBody, description = "coupon.sold_out, coupon.already_issued, coupon.not_started, coupon.ended")))]
async fn issue_coupon(
    State(state): State<AppState>,
    auth: Auth,
    AppPath(id): AppPath<Uuid>,
    request: Idempotent,
) -> ApiResult<(StatusCode, Json<CouponBody>)> {
    let coupon = state
        .services
        .coupons
        .issue(auth.0.member_id, CampaignId(id), request.key.as_ref())
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(CouponBody::at(coupon, state.ports.clock.now())),
    ))
}

/// The caller's coupons, newest first, a page at a time.
#[utoipa::path(get, path = "/coupons", tag = "coupons", security(("bearer" = [])), params(PageQuery),
    responses((status = 200, body = Paged<CouponBody>), (status = 422, body = ProblemBody)))]
async fn my_coupons(
    State(state): State<AppState>,
    auth: Auth,
    AppQuery(page): AppQuery<PageQuery>,
) -> ApiResult<Json<Paged<CouponBody>>> {
    let now = state.ports.clock.now();
    let coupons = state
        .services
        .coupons
        .my_coupons(auth.0.member_id, page.after()?, page.limit)
        .await?;
    Ok(Json(Paged::of(coupons, |c| CouponBody::at(c, now))))
}
