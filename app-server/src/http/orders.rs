//! Orders for members: placing, listing and reading them, and payment with points.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use core_domain::{CouponId, OrderId, ProductId};

use super::AppState;
use super::dto::{NewOrderBody, OrderBody, PaymentBody};
use super::error::{ApiResult, ProblemBody};
use super::extract::{AppJson, AppPath, AppQuery, Auth, Idempotent};
use super::paging::{PageQuery, Paged};

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(place_order, my_orders))
        .routes(routes!(get_order))
        .routes(routes!(pay))
}

/// Place an order: stock is taken at once; an optional coupon is applied.
#[utoipa::path(post, path = "/orders", tag = "orders", security(("bearer" = [])), request_body = NewOrderBody,
    params(("Idempotency-Key" = Option<String>, Header, min_length = 1, max_length = 255, pattern = "^[!-~]+$", description = "retries with the same key, path and body replay the first answer (1–255 visible ASCII characters)")),
    responses((status = 201, body = OrderBody), (status = 404, body = ProblemBody, description = "product.not_found, coupon.not_found"),
        (status = 409, body = ProblemBody, description = "order.out_of_stock, coupon.not_available, coupon.expired"),
        (status = 422, body = ProblemBody)))]
async fn place_order(
    State(state): State<AppState>,
    auth: Auth,
    Idempotent {
        key,
        body: AppJson(body),
    }: Idempotent<AppJson<NewOrderBody>>,
) -> ApiResult<(StatusCode, Json<OrderBody>)> {
    let items = body
        .items
        .iter()
        .map(|i| (ProductId(i.product_id), i.quantity))
        .collect();
    let order = state
        .services
        .orders
        .place(auth.0.member_id, items, body.coupon_id.map(CouponId), key.as_ref())
        .await?;
    Ok((StatusCode::CREATED, Json(order.into())))
}

/// The caller's orders, newest first, a page at a time.
#[utoipa::path(get, path = "/orders", tag = "orders", security(("bearer" = [])), params(PageQuery),
    responses((status = 200, body = Paged<OrderBody>), (status = 422, body = ProblemBody)))]
async fn my_orders(
    State(state): State<AppState>,
    auth: Auth,
    AppQuery(page): AppQuery<PageQuery>,
) -> ApiResult<Json<Paged<OrderBody>>> {
    let orders = state
        .services
        .orders
        .list(auth.0.member_id, page.after()?, page.limit)
        .await?;
    Ok(Json(Paged::of(orders, OrderBody::from)))
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
    params(("id" = Uuid, Path), ("Idempotency-Key" = String, Header, min_length = 1, max_length = 255, pattern = "^[!-~]+$", description = "required; retries with the same key, path and body replay the first answer (1–255 visible ASCII characters)")),
    responses((status = 200, body = PaymentBody), (status = 400, body = ProblemBody, description = "idempotency.key_required"),
        (status = 404, body = ProblemBody), (status = 409, body = ProblemBody, description = "points.insufficient, order.not_pending"),
        (status = 422, body = ProblemBody, description = "idempotency.key_mismatch")))]
async fn pay(
    State(state): State<AppState>,
    auth: Auth,
    AppPath(id): AppPath<Uuid>,
    request: Idempotent,
) -> ApiResult<Json<PaymentBody>> {
    let payment = state
        .services
        .orders
        .pay(auth.0.member_id, OrderId(id), request.required_key()?)
        .await?;
    Ok(Json(payment.into()))
}
