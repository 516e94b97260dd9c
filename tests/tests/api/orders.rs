//! Orders and payments: stock, coupons, points, idempotency keys and the stale-order job.

use reqwest::Method;
use serde_json::{Value, json};

use core_domain::member::Role;

use crate::helpers::{assert_problem, error_fields, fixed_campaign, id, items, json_body, spawn_app};

#[tokio::test]
async fn an_order_takes_stock_and_applies_a_coupon_and_payment_debits_points_once() {
    let app = spawn_app().await;
    let admin = app.staff(Role::Admin).await;
    let (_, rider) = app.rider().await;
    let jacket = app.create_product(&admin, 12_000, 10).await;
    let gloves = app.create_product(&admin, 3_000, 5).await;
    let campaign = app
        .create_campaign(
            &admin,
            &json!({ "name": "Ten off", "discount": { "kind": "percent", "percent": 10 }, "total_quantity": 5 }),
        )
        .await;
    let coupon = json_body(
        app.post_empty(&format!("/coupons/{}/issue", id(&campaign)), Some(&rider))
            .await,
        201,
    )
    .await;
    app.charge(&rider, 50_000).await;

    let body = json!({ "items": [{ "product_id": gloves["id"], "quantity": 1 }, { "product_id": jacket["id"], "quantity": 2 }],
        "coupon_id": coupon["id"] });
    let order = json_body(app.post("/orders", Some(&rider), &body).await, 201).await;

    assert_eq!(order["status"], "pending");
    assert_eq!(
        (
            order["subtotal"].as_i64(),
            order["discount"].as_i64(),
            order["total"].as_i64()
        ),
        (Some(27_000), Some(2_700), Some(24_300))
    );
    assert_eq!(order["coupon_id"], coupon["id"]);
    let mut lines: Vec<(Value, i64, i64, i64)> = order["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            (
                l["product_id"].clone(),
                l["unit_price"].as_i64().unwrap(),
                l["quantity"].as_i64().unwrap(),
                l["line_total"].as_i64().unwrap(),
            )
        })
        .collect();
    lines.sort_by_key(|l| l.1);
    assert_eq!(
        lines,
        [
            (gloves["id"].clone(), 3_000, 1, 3_000),
            (jacket["id"].clone(), 12_000, 2, 24_000)
        ]
    );
    assert!(
        order["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|l| l["product_name"] == jacket["name"])
    );
    assert_eq!(app.product_stock(&jacket["id"]).await, 8);
    assert_eq!(app.product_stock(&gloves["id"]).await, 4);
    assert_eq!(
        items(&json_body(app.get("/coupons", Some(&rider)).await, 200).await)[0]["status"],
        "used"
    );
    let listed = json_body(app.get("/orders", Some(&rider)).await, 200).await;
    assert_eq!(items(&listed).len(), 1);
    assert_eq!(items(&listed)[0]["id"], order["id"]);
    let order_path = format!("/orders/{}", id(&order));
    assert_eq!(json_body(app.get(&order_path, Some(&rider)).await, 200).await, order);

    let payment = json_body(app.pay(&rider, &order["id"], "pay-1").await, 200).await;
    assert_eq!(payment["order_id"], order["id"]);
    assert_eq!(
        (payment["amount"].as_i64(), payment["status"].as_str()),
        (Some(24_300), Some("succeeded"))
    );
    assert_eq!(app.balance(&rider).await, 25_700);
    let history = app.history(&rider).await;
    assert_eq!(history.len(), 2);
    assert_eq!(history[0]["kind"], "payment");
    assert_eq!(
        (history[0]["amount"].as_i64(), history[0]["balance_after"].as_i64()),
        (Some(-24_300), Some(25_700))
    );
    assert_eq!(history[0]["reference"], payment["id"]);
    assert_eq!(
        json_body(app.get(&order_path, Some(&rider)).await, 200).await["status"],
        "paid"
    );

    let popular = json_body(app.get("/products/popular", None).await, 200).await;
    let ranked: Vec<(Value, i64)> = items(&popular)
        .iter()
        .map(|p| (p["id"].clone(), p["units_sold"].as_i64().unwrap()))
        .collect();
    assert_eq!(ranked, [(jacket["id"].clone(), 2), (gloves["id"].clone(), 1)]);
    assert_eq!(items(&popular)[0]["stock"], 8);
}

#[tokio::test]
async fn an_order_beyond_the_stock_or_of_an_unknown_product_takes_nothing() {
    let app = spawn_app().await;
    let admin = app.staff(Role::Admin).await;
    let (_, rider) = app.rider().await;
    let plenty = app.create_product(&admin, 1_000, 50).await;
    let scarce = app.create_product(&admin, 1_000, 5).await;

    assert_problem(app.order(&rider, &scarce["id"], 6).await, 409, "order.out_of_stock").await;
    let mixed = json!({ "items": [{ "product_id": plenty["id"], "quantity": 3 }, { "product_id": scarce["id"], "quantity": 9 }] });
    assert_problem(
        app.post("/orders", Some(&rider), &mixed).await,
        409,
        "order.out_of_stock",
    )
    .await;
    let unknown = json!({ "items": [{ "product_id": plenty["id"], "quantity": 1 }, { "product_id": uuid::Uuid::now_v7(), "quantity": 1 }] });
    assert_problem(
        app.post("/orders", Some(&rider), &unknown).await,
        404,
        "product.not_found",
    )
    .await;

    assert_eq!(app.product_stock(&plenty["id"]).await, 50);
    assert_eq!(app.product_stock(&scarce["id"]).await, 5);
    assert_eq!(
        json_body(app.get("/orders", Some(&rider)).await, 200).await,
        json!({ "items": [], "next": null })
    );
}

#[tokio::test]
async fn orders_with_invalid_lines_name_the_fields() {
    let app = spawn_app().await;
    let admin = app.staff(Role::Admin).await;
    let (_, rider) = app.rider().await;
    let product = app.create_product(&admin, 1_000, 500).await;
    let line = |quantity: i64| json!({ "product_id": product["id"], "quantity": quantity });
    let many: Vec<Value> = (0..21)
        .map(|_| json!({ "product_id": uuid::Uuid::now_v7(), "quantity": 1 }))
        .collect();

    let cases = [
        (json!({ "items": [] }), vec!["items"]),
        (json!({ "items": [line(0)] }), vec!["items[0].quantity"]),
        (json!({ "items": [line(101)] }), vec!["items[0].quantity"]),
        (json!({ "items": [line(1), line(2)] }), vec!["items[1].product_id"]),
        (json!({ "items": many }), vec!["items"]),
    ];
    for (body, fields) in cases {
        let problem = assert_problem(app.post("/orders", Some(&rider), &body).await, 422, "validation.failed").await;
        assert_eq!(error_fields(&problem), fields, "{body}");
    }
    assert_eq!(app.product_stock(&product["id"]).await, 500);
}

#[tokio::test]
async fn an_order_refuses_a_coupon_that_is_unknown_someone_elses_or_used() {
    let app = spawn_app().await;
    let admin = app.staff(Role::Admin).await;
    let (_, rider) = app.rider().await;
    let (_, other) = app.rider().await;
    let product = app.create_product(&admin, 5_000, 10).await;
    let campaign = app.create_campaign(&admin, &fixed_campaign(1_000, 10)).await;
    let issue = format!("/coupons/{}/issue", id(&campaign));
    let mine = json_body(app.post_empty(&issue, Some(&rider)).await, 201).await;
    let theirs = json_body(app.post_empty(&issue, Some(&other)).await, 201).await;
    let with =
        |coupon: &Value| json!({ "items": [{ "product_id": product["id"], "quantity": 1 }], "coupon_id": coupon });

    let unknown = app
        .post("/orders", Some(&rider), &with(&json!(uuid::Uuid::now_v7())))
        .await;
    assert_problem(unknown, 404, "coupon.not_found").await;
    assert_problem(
        app.post("/orders", Some(&rider), &with(&theirs["id"])).await,
        404,
        "coupon.not_found",
    )
    .await;
    let used_once = json_body(app.post("/orders", Some(&rider), &with(&mine["id"])).await, 201).await;
    assert_eq!(
        (used_once["discount"].as_i64(), used_once["total"].as_i64()),
        (Some(1_000), Some(4_000))
    );
    assert_problem(
        app.post("/orders", Some(&rider), &with(&mine["id"])).await,
        409,
        "coupon.not_available",
    )
    .await;

    assert_eq!(app.product_stock(&product["id"]).await, 9);
}

#[tokio::test]
async fn an_order_is_visible_and_payable_only_by_its_member() {
    let app = spawn_app().await;
    let admin = app.staff(Role::Admin).await;
    let (_, owner) = app.rider().await;
    let (_, other) = app.rider().await;
    let product = app.create_product(&admin, 1_000, 10).await;
    let order = json_body(app.order(&owner, &product["id"], 1).await, 201).await;
    app.charge(&other, 10_000).await;

    assert_problem(
        app.get(&format!("/orders/{}", id(&order)), Some(&other)).await,
        404,
        "order.not_found",
    )
    .await;
    assert_problem(app.pay(&other, &order["id"], "k-1").await, 404, "order.not_found").await;
    assert_problem(
        app.get(&format!("/orders/{}", uuid::Uuid::now_v7()), Some(&owner))
            .await,
        404,
        "order.not_found",
    )
    .await;
    assert_eq!(
        json_body(app.get("/orders", Some(&other)).await, 200).await,
        json!({ "items": [], "next": null })
    );
    assert_eq!(app.balance(&other).await, 10_000);
}

#[tokio::test]
async fn payment_needs_a_valid_idempotency_key_enough_points_and_a_pending_order() {
    let app = spawn_app().await;
    let admin = app.staff(Role::Admin).await;
    let (_, rider) = app.rider().await;
    let product = app.create_product(&admin, 8_000, 10).await;
    let order = json_body(app.order(&rider, &product["id"], 1).await, 201).await;
    let other_order = json_body(app.order(&rider, &product["id"], 1).await, 201).await;
    let path = format!("/orders/{}/payment", id(&order));

    let no_key = app.send(app.request(Method::POST, &path, Some(&rider))).await;
    assert_problem(no_key, 400, "idempotency.key_required").await;
    let long_key = app.pay(&rider, &order["id"], &"k".repeat(256)).await;
    assert_eq!(
        error_fields(&assert_problem(long_key, 422, "validation.failed").await),
        ["Idempotency-Key"]
    );

    assert_problem(
        app.pay(&rider, &order["id"], "attempt-1").await,
        409,
        "points.insufficient",
    )
    .await;
    assert_eq!(
        json_body(app.get(&format!("/orders/{}", id(&order)), Some(&rider)).await, 200).await["status"],
        "pending"
    );
    // A failed attempt stores nothing: the same key succeeds once there are points.
    app.charge(&rider, 10_000).await;
    let payment = json_body(app.pay(&rider, &order["id"], "attempt-1").await, 200).await;
    assert_eq!(payment["amount"], 8_000);
    assert_eq!(app.balance(&rider).await, 2_000);

    assert_problem(
        app.pay(&rider, &order["id"], "attempt-2").await,
        409,
        "order.not_pending",
    )
    .await;
    let reused_for_another_order = app.pay(&rider, &other_order["id"], "attempt-1").await;
    assert_problem(reused_for_another_order, 422, "idempotency.key_mismatch").await;
    let other_body = app
        .send(
            app.request(Method::POST, &path, Some(&rider))
                .header("idempotency-key", "attempt-1")
                .json(&json!({ "note": "again" })),
        )
        .await;
    assert_problem(other_body, 422, "idempotency.key_mismatch").await;

    assert_eq!(app.balance(&rider).await, 2_000);
    let payments = app
        .history(&rider)
        .await
        .into_iter()
        .filter(|r| r["kind"] == "payment")
        .count();
    assert_eq!(payments, 1);
    assert_eq!(
        json_body(
            app.get(&format!("/orders/{}", id(&other_order)), Some(&rider)).await,
            200
        )
        .await["status"],
        "pending"
    );
}

#[tokio::test]
async fn the_stale_order_job_leaves_a_fresh_pending_order_and_its_stock_alone() {
    let app = spawn_app().await;
    let admin = app.staff(Role::Admin).await;
    let (_, rider) = app.rider().await;
    let product = app.create_product(&admin, 1_000, 10).await;
    let campaign = app.create_campaign(&admin, &fixed_campaign(100, 1)).await;
    let coupon = json_body(
        app.post_empty(&format!("/coupons/{}/issue", id(&campaign)), Some(&rider))
            .await,
        201,
    )
    .await;
    let body = json!({ "items": [{ "product_id": product["id"], "quantity": 2 }], "coupon_id": coupon["id"] });
    let order = json_body(app.post("/orders", Some(&rider), &body).await, 201).await;

    app_server::server::run_jobs(&app.runtime, &app.runtime.job_runner()).await;

    let after = json_body(app.get(&format!("/orders/{}", id(&order)), Some(&rider)).await, 200).await;
    assert_eq!(after["status"], "pending");
    assert_eq!(app.product_stock(&product["id"]).await, 8);
    assert_eq!(
        items(&json_body(app.get("/coupons", Some(&rider)).await, 200).await)[0]["status"],
        "used"
    );
}
