//! Points for members: the balance, a charge, the ledger.

use axum::Json;
use axum::extract::State;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::AppState;
use super::dto::{ChargeBody, LedgerBody, WalletBody};
use super::error::{ApiResult, ProblemBody};
use super::extract::{AppJson, AppQuery, Auth, Idempotent};
use super::paging::{PageQuery, Paged};

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(balance))
        .routes(routes!(charge))
        .routes(routes!(history))
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
    params(("Idempotency-Key" = Option<String>, Header, min_length = 1, max_length = 255, pattern = "^[!-~]+$", description = "retries with the same key, path and body replay the first answer (1–255 visible ASCII characters)")),
    responses((status = 200, body = WalletBody), (status = 409, body = ProblemBody, description = "points.limit_exceeded"),
        (status = 422, body = ProblemBody)))]
async fn charge(
    State(state): State<AppState>,
    auth: Auth,
    Idempotent {
        key,
        body: AppJson(body),
    }: Idempotent<AppJson<ChargeBody>>,
) -> ApiResult<Json<WalletBody>> {
    let balance = state
        .services
        .wallet
        .charge(auth.0.member_id, body.amount, key.as_ref())
        .await?;
    Ok(Json(WalletBody { balance }))
}

/// The caller's ledger, newest first, a page at a time.
#[utoipa::path(get, path = "/points/history", tag = "points", security(("bearer" = [])), params(PageQuery),
    responses((status = 200, body = Paged<LedgerBody>), (status = 422, body = ProblemBody)))]
async fn history(
    State(state): State<AppState>,
    auth: Auth,
    AppQuery(page): AppQuery<PageQuery>,
) -> ApiResult<Json<Paged<LedgerBody>>> {
    let entries = state
        .services
        .wallet
        .history(auth.0.member_id, page.after()?, page.limit)
        .await?;
    Ok(Json(Paged::of(entries, LedgerBody::from)))
}
