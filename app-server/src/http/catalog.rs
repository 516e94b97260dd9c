//! The catalogue, public: product pages, one product, popular products (replica + cache).

use axum::Json;
use axum::extract::State;
use serde::Deserialize;
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use core_domain::ProductId;

use super::AppState;
use super::dto::{List, ProductBody};
use super::error::{ApiResult, ProblemBody};
use super::extract::{AppPath, AppQuery};

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_products))
        .routes(routes!(popular_products))
        .routes(routes!(get_product))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct Page {
    /// Products after this id (the last id of the previous page).
    #[param(nullable = false)]
    after: Option<Uuid>,
    /// 1–100, default 20.
    #[param(nullable = false, minimum = 1, maximum = 100)]
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
