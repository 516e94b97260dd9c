//! The catalogue: products, their pages and their errors.

use serde_json::json;

use core_domain::member::Role;

use crate::helpers::{assert_problem, error_fields, id, items, json_body, spawn_app};

#[tokio::test]
async fn admins_create_and_change_products_that_anyone_can_read() {
    let app = spawn_app().await;
    let admin = app.staff(Role::Admin).await;

    let created = app
        .post(
            "/admin/products",
            Some(&admin),
            &json!({ "name": "Rain jacket", "price": 39_000, "stock": 12 }),
        )
        .await;
    let product = json_body(created, 201).await;
    assert_eq!(product["name"], "Rain jacket");
    assert_eq!(
        (product["price"].as_i64(), product["stock"].as_i64()),
        (Some(39_000), Some(12))
    );

    let listed = json_body(app.get("/products", None).await, 200).await;
    assert_eq!(items(&listed).len(), 1);
    assert_eq!(items(&listed)[0]["id"], product["id"]);
    let path = format!("/products/{}", id(&product));
    assert_eq!(json_body(app.get(&path, None).await, 200).await, product);

    let repriced = json_body(
        app.patch(
            &format!("/admin/products/{}", id(&product)),
            Some(&admin),
            &json!({ "price": 35_000 }),
        )
        .await,
        200,
    )
    .await;
    assert_eq!(
        (repriced["price"].as_i64(), repriced["stock"].as_i64()),
        (Some(35_000), Some(12))
    );
    let restocked = json_body(
        app.patch(
            &format!("/admin/products/{}", id(&product)),
            Some(&admin),
            &json!({ "stock": 3 }),
        )
        .await,
        200,
    )
    .await;
    assert_eq!(
        (restocked["price"].as_i64(), restocked["stock"].as_i64()),
        (Some(35_000), Some(3))
    );
    let read = json_body(app.get(&path, None).await, 200).await;
    assert_eq!(
        (read["price"].as_i64(), read["stock"].as_i64()),
        (Some(35_000), Some(3))
    );

    let second = app.create_product(&admin, 1_000, 1).await;
    let page = json_body(app.get("/products?limit=1", None).await, 200).await;
    assert_eq!(
        items(&page).iter().map(|p| &p["id"]).collect::<Vec<_>>(),
        [&product["id"]]
    );
    let next = json_body(
        app.get(&format!("/products?limit=1&after={}", id(&product)), None)
            .await,
        200,
    )
    .await;
    assert_eq!(
        items(&next).iter().map(|p| &p["id"]).collect::<Vec<_>>(),
        [&second["id"]]
    );
}

#[tokio::test]
async fn product_writes_and_pages_with_invalid_values_name_the_fields() {
    let app = spawn_app().await;
    let admin = app.staff(Role::Admin).await;
    let product = app.create_product(&admin, 1_000, 1).await;
    let patch_path = format!("/admin/products/{}", id(&product));

    let create = app
        .post(
            "/admin/products",
            Some(&admin),
            &json!({ "name": "", "price": 0, "stock": -1 }),
        )
        .await;
    assert_eq!(
        error_fields(&assert_problem(create, 422, "validation.failed").await),
        ["name", "price", "stock"]
    );
    let empty_patch = app.patch(&patch_path, Some(&admin), &json!({})).await;
    assert_eq!(
        error_fields(&assert_problem(empty_patch, 422, "validation.failed").await),
        ["price"]
    );
    let negative_stock = app.patch(&patch_path, Some(&admin), &json!({ "stock": -5 })).await;
    assert_eq!(
        error_fields(&assert_problem(negative_stock, 422, "validation.failed").await),
        ["stock"]
    );
    let zero_limit = app.get("/products?limit=0", None).await;
    assert_eq!(
        error_fields(&assert_problem(zero_limit, 422, "validation.failed").await),
        ["limit"]
    );
    assert_problem(app.get("/products?limit=lots", None).await, 422, "validation.failed").await;

    assert_eq!(app.product_stock(&product["id"]).await, 1);
}

#[tokio::test]
async fn an_unknown_product_is_not_found() {
    let app = spawn_app().await;
    let admin = app.staff(Role::Admin).await;
    let unknown = uuid::Uuid::now_v7();

    assert_problem(
        app.get(&format!("/products/{unknown}"), None).await,
        404,
        "product.not_found",
    )
    .await;
    let patch = app
        .patch(
            &format!("/admin/products/{unknown}"),
            Some(&admin),
            &json!({ "price": 10 }),
        )
        .await;
    assert_problem(patch, 404, "product.not_found").await;
}
