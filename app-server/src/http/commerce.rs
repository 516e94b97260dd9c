//! Commerce for members: the catalogue (public), points, coupons, orders and payment.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use core_domain::{CampaignId, CouponId, OrderId, ProductId};

use super::AppState;
use super::dto::{
    ChargeBody, CouponBody, LedgerBody, List, NewOrderBody, OrderBody, PaymentBody, ProductBody, WalletBody,
};
use super::error::{ApiError, ApiResult, ProblemBody};
use super::extract::{AppJson, AppPath, AppQuery, Auth, RawBody};

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_products))
        .routes(routes!(popular_products))
        .routes(routes!(get_product))
        .routes(routes!(balance))
        .routes(routes!(charge))
        .routes(routes!(history))
        .routes(routes!(issue_coupon))
        .routes(routes!(my_coupons))
        .routes(routes!(place_order, my_orders))
        .routes(routes!(get_order))
        .routes(routes!(pay))
}

#[derive(Debug, Deserialize, IntoParams)]
struct Page {
    /// Products after this id (the last id of the previous page).
    after: Option<Uuid>,
    /// 1–100, default 20.
    limit: Option<i64>,
}

/// Products by creation order (replica + cache).
#[utoipa::path(get, path = "/products", tag = "products", params(Page), responses((status = 200, body = List<ProductBody>)))]
async fn list_products(
    State(state): State<AppState>,
    AppQuery(page): AppQuery<Page>,
) -> ApiResult<Json<List<ProductBody>>> {
    let products = state
        .services
        .catalog
        .list(page.after.map(ProductId), page.limit)
        .await?;
    Ok(Json(List::of(products, ProductBody::from)))
}

/// Top 5 by units in paid orders over the last 3 days.
#[utoipa::path(get, path = "/products/popular", tag = "products", responses((status = 200, body = List<ProductBody>)))]
async fn popular_products(State(state): State<AppState>) -> ApiResult<Json<List<ProductBody>>> {
    let products = state.services.catalog.popular().await?;
    Ok(Json(List::of(products, ProductBody::from)))
}

/// One product (replica + cache).
#[utoipa::path(get, path = "/products/{id}", tag = "products", params(("id" = Uuid, Path)),
    responses((status = 200, body = ProductBody), (status = 404, body = ProblemBody)))]
async fn get_product(State(state): State<AppState>, AppPath(id): AppPath<Uuid>) -> ApiResult<Json<ProductBody>> {
    Ok(Json(state.services.catalog.get(ProductId(id)).await?.into()))
}

/// The caller's point balance.
#[utoipa::path(get, path = "/points", tag = "points", security(("bearer" = [])), responses((status = 200, body = WalletBody)))]
async fn balance(State(state): State<AppState>, auth: Auth) -> ApiResult<Json<WalletBody>> {
    Ok(Json(WalletBody {
        balance: state.services.wallet.balance(auth.0.member_id).await?,
    }))
}

/// Charge 1–1,000,000 points (the balance stays ≤ 10,000,000).
#[utoipa::path(post, path = "/points/charge", tag = "points", security(("bearer" = [])), request_body = ChargeBody,
    responses((status = 200, body = WalletBody), (status = 409, body = ProblemBody, description = "points.limit_exceeded"),
        (status = 422, body = ProblemBody)))]
async fn charge(
    State(state): State<AppState>,
    auth: Auth,
    AppJson(body): AppJson<ChargeBody>,
) -> ApiResult<Json<WalletBody>> {
    let balance = state.services.wallet.charge(auth.0.member_id, body.amount).await?;
    Ok(Json(WalletBody { balance }))
}

/// The caller's ledger, newest first.
#[utoipa::path(get, path = "/points/history", tag = "points", security(("bearer" = [])), responses((status = 200, body = List<LedgerBody>)))]
async fn history(State(state): State<AppState>, auth: Auth) -> ApiResult<Json<List<LedgerBody>>> {
    let entries = state.services.wallet.history(auth.0.member_id, 100).await?;
    Ok(Json(List::of(entries, LedgerBody::from)))
}

/// First come, first served: one coupon of the campaign.
#[utoipa::path(post, path = "/coupons/{campaign_id}/issue", tag = "coupons", security(("bearer" = [])),
    params(("campaign_id" = Uuid, Path)),
    responses((status = 201, body = CouponBody), (status = 404, body = ProblemBody),
        (status = 409, body = ProblemBody, description = "coupon.sold_out, coupon.already_issued, coupon.not_started, coupon.ended")))]
async fn issue_coupon(
    State(state): State<AppState>,
    auth: Auth,
    AppPath(id): AppPath<Uuid>,
) -> ApiResult<(StatusCode, Json<CouponBody>)> {
    let coupon = state.services.coupons.issue(auth.0.member_id, CampaignId(id)).await?;
    Ok((
        StatusCode::CREATED,
        Json(CouponBody::at(coupon, state.ports.clock.now())),
    ))
}

/// The caller's coupons.
#[utoipa::path(get, path = "/coupons", tag = "coupons", security(("bearer" = [])), responses((status = 200, body = List<CouponBody>)))]
async fn my_coupons(State(state): State<AppState>, auth: Auth) -> ApiResult<Json<List<CouponBody>>> {
    let now = state.ports.clock.now();
    let coupons = state.services.coupons.my_coupons(auth.0.member_id).await?;
    Ok(Json(List::of(coupons, |c| CouponBody::at(c, now))))
}

/// Place an order: stock is taken at once; an optional coupon is applied.
#[utoipa::path(post, path = "/orders", tag = "orders", security(("bearer" = [])), request_body = NewOrderBody,
    responses((status = 201, body = OrderBody), (status = 404, body = ProblemBody, description = "product.not_found, coupon.not_found"),
        (status = 409, body = ProblemBody, description = "order.out_of_stock, coupon.not_available, coupon.expired"),
        (status = 422, body = ProblemBody)))]
async fn place_order(
    State(state): State<AppState>,
    auth: Auth,
    AppJson(body): AppJson<NewOrderBody>,
) -> ApiResult<(StatusCode, Json<OrderBody>)> {
    let items = body
        .items
        .iter()
        .map(|i| (ProductId(i.product_id), i.quantity))
        .collect();
    let order = state
        .services
        .orders
        .place(auth.0.member_id, items, body.coupon_id.map(CouponId))
        .await?;
    Ok((StatusCode::CREATED, Json(order.into())))
}

/// The caller's orders, newest first.
#[utoipa::path(get, path = "/orders", tag = "orders", security(("bearer" = [])), responses((status = 200, body = List<OrderBody>)))]
async fn my_orders(State(state): State<AppState>, auth: Auth) -> ApiResult<Json<List<OrderBody>>> {
    let orders = state.services.orders.list(auth.0.member_id).await?;
    Ok(Json(List::of(orders, OrderBody::from)))
}

/// One of the caller's orders.
#[utoipa::path(get, path = "/orders/{id}", tag = "orders", security(("bearer" = [])), params(("id" = Uuid, Path)),
    responses((status = 200, body = OrderBody), (status = 404, body = ProblemBody)))]
async fn get_order(
    State(state): State<AppState>,
    auth: Auth,
    AppPath(id): AppPath<Uuid>,
) -> ApiResult<Json<OrderBody>> {
    Ok(Json(
        state.services.orders.get(auth.0.member_id, OrderId(id)).await?.into(),
    ))
}

/// Pay a pending order with points. `Idempotency-Key` makes retries safe: the same key and
/// body replay the first response; the same key with another body is refused (422).
#[utoipa::path(post, path = "/orders/{id}/payment", tag = "orders", security(("bearer" = [])),
    params(("id" = Uuid, Path), ("Idempotency-Key" = String, Header, description = "1–255 visible ASCII characters")),
    responses((status = 200, body = PaymentBody), (status = 400, body = ProblemBody, description = "idempotency.key_required"),
        (status = 404, body = ProblemBody), (status = 409, body = ProblemBody, description = "points.insufficient, order.not_pending"),
        (status = 422, body = ProblemBody, description = "idempotency.key_mismatch")))]
async fn pay(
    State(state): State<AppState>,
    auth: Auth,
    AppPath(id): AppPath<Uuid>,
    headers: HeaderMap,
    RawBody(body): RawBody,
) -> ApiResult<Json<PaymentBody>> {
    let key = headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "idempotency.key_required",
                "the Idempotency-Key header is required",
            )
        })?;
    // The request is the order and the body: a different order or body under one key is
    // a different request.
    let mut hasher = Sha256::new();
    hasher.update(id.as_bytes());
    hasher.update(&body);
    let fingerprint = hex::encode(hasher.finalize());
    let payment = state
        .services
        .orders
        .pay(auth.0.member_id, OrderId(id), key, &fingerprint)
        .await?;
    Ok(Json(payment.into()))
}
