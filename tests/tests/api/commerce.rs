//! Commerce: products, points, coupon campaigns, orders, payment and the stale-order job.

use reqwest::Method;
use serde_json::{Value, json};
use time::OffsetDateTime;

use core_domain::member::Role;

use crate::helpers::{assert_problem, error_fields, json_body, rfc3339, spawn_app, time_of};

fn id(value: &Value) -> &str {
    value["id"].as_str().expect("an id")
}

fn items(list: &Value) -> &Vec<Value> {
    list["items"].as_array().expect("a list body")
}

fn fixed(amount: i64, total_quantity: i64) -> Value {
    json!({ "name": "Spring helmets", "discount": { "kind": "fixed", "amount": amount }, "total_quantity": total_quantity })
}

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

#[tokio::test]
async fn points_are_charged_and_every_change_is_a_ledger_row() {
    let app = spawn_app().await;
    let (_, token) = app.rider().await;

    assert_eq!(
        json_body(app.get("/points", Some(&token)).await, 200).await,
        json!({ "balance": 0 })
    );
    assert_eq!(app.charge(&token, 5_000).await, json!({ "balance": 5_000 }));
    assert_eq!(app.charge(&token, 2_500).await, json!({ "balance": 7_500 }));
    assert_eq!(app.balance(&token).await, 7_500);

    let history = app.history(&token).await;
    let rows: Vec<(&str, i64, i64)> = history
        .iter()
        .map(|r| {
            (
                r["kind"].as_str().unwrap(),
                r["amount"].as_i64().unwrap(),
                r["balance_after"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(rows, [("charge", 2_500, 7_500), ("charge", 5_000, 5_000)]);
    for row in &history {
        assert!(row["reference"].is_null());
        time_of(&row["created_at"]);
    }
}

#[tokio::test]
async fn charges_outside_one_to_a_million_fail_validation() {
    let app = spawn_app().await;
    let (_, token) = app.rider().await;

    for amount in [0, -1, 1_000_001] {
        let response = app
            .post("/points/charge", Some(&token), &json!({ "amount": amount }))
            .await;
        assert_eq!(
            error_fields(&assert_problem(response, 422, "validation.failed").await),
            ["amount"],
            "{amount}"
        );
    }
    assert_eq!(app.balance(&token).await, 0);
}

#[tokio::test]
async fn a_charge_beyond_the_maximum_balance_is_refused_and_changes_nothing() {
    let app = spawn_app().await;
    let (_, token) = app.rider().await;
    for _ in 0..10 {
        app.charge(&token, 1_000_000).await;
    }

    let response = app.post("/points/charge", Some(&token), &json!({ "amount": 1 })).await;

    assert_problem(response, 409, "points.limit_exceeded").await;
    assert_eq!(app.balance(&token).await, 10_000_000);
    assert_eq!(app.history(&token).await.len(), 10);
}

#[tokio::test]
async fn coupons_are_issued_first_come_first_served_and_once_per_member() {
    let app = spawn_app().await;
    let admin = app.staff(Role::Admin).await;
    let (_, first) = app.rider().await;
    let (_, second) = app.rider().await;
    let (_, third) = app.rider().await;

    let campaign = app.create_campaign(&admin, &fixed(1_000, 2)).await;
    assert_eq!(campaign["name"], "Spring helmets");
    assert_eq!(campaign["discount"], json!({ "kind": "fixed", "amount": 1_000 }));
    assert_eq!(
        (campaign["total_quantity"].as_i64(), campaign["issued_count"].as_i64()),
        (Some(2), Some(0))
    );
    assert!(campaign["ends_at"].is_null());
    let starts_at = time_of(&campaign["starts_at"]);
    let issue = format!("/coupons/{}/issue", id(&campaign));

    let before = OffsetDateTime::now_utc();
    let coupon = json_body(app.post_empty(&issue, Some(&first)).await, 201).await;
    assert!(starts_at <= before);
    assert_eq!(coupon["campaign_id"], campaign["id"]);
    assert_eq!(coupon["status"], "available");
    assert_eq!(coupon["discount"], campaign["discount"]);
    let validity = time_of(&coupon["expires_at"]) - before;
    assert!(validity >= time::Duration::days(30) && validity < time::Duration::days(30) + time::Duration::minutes(1));

    assert_problem(app.post_empty(&issue, Some(&first)).await, 409, "coupon.already_issued").await;
    json_body(app.post_empty(&issue, Some(&second)).await, 201).await;
    assert_problem(app.post_empty(&issue, Some(&third)).await, 409, "coupon.sold_out").await;

    let mine = json_body(app.get("/coupons", Some(&first)).await, 200).await;
    assert_eq!(items(&mine).len(), 1);
    assert_eq!(items(&mine)[0]["id"], coupon["id"]);
    assert_eq!(
        json_body(app.get("/coupons", Some(&third)).await, 200).await,
        json!({ "items": [] })
    );

    let unknown = format!("/coupons/{}/issue", uuid::Uuid::now_v7());
    assert_problem(
        app.post_empty(&unknown, Some(&third)).await,
        404,
        "coupon.campaign_not_found",
    )
    .await;
}

#[tokio::test]
async fn campaign_creation_names_its_invalid_fields() {
    let app = spawn_app().await;
    let admin = app.staff(Role::Admin).await;
    let now = OffsetDateTime::now_utc();

    let values = json!({ "name": "", "discount": { "kind": "percent", "percent": 101 }, "total_quantity": 0 });
    let problem = assert_problem(
        app.post("/admin/coupons", Some(&admin), &values).await,
        422,
        "validation.failed",
    )
    .await;
    assert_eq!(error_fields(&problem), ["discount.percent", "name", "total_quantity"]);

    let window = json!({ "name": "W", "discount": { "kind": "fixed", "amount": 0 }, "total_quantity": 1,
        "starts_at": rfc3339(now + time::Duration::hours(2)), "ends_at": rfc3339(now + time::Duration::hours(1)) });
    let problem = assert_problem(
        app.post("/admin/coupons", Some(&admin), &window).await,
        422,
        "validation.failed",
    )
    .await;
    assert_eq!(error_fields(&problem), ["discount.amount", "ends_at"]);

    let bad_time =
        json!({ "name": "W", "discount": { "kind": "fixed", "amount": 1 }, "total_quantity": 1, "starts_at": "soon" });
    let problem = assert_problem(
        app.post("/admin/coupons", Some(&admin), &bad_time).await,
        422,
        "validation.failed",
    )
    .await;
    assert_eq!(error_fields(&problem), ["starts_at"]);

    let bad_kind = json!({ "name": "W", "discount": { "kind": "free", "amount": 1 }, "total_quantity": 1 });
    assert_problem(
        app.post("/admin/coupons", Some(&admin), &bad_kind).await,
        422,
        "validation.failed",
    )
    .await;
}

#[tokio::test]
async fn a_campaign_that_has_not_started_issues_nothing() {
    let app = spawn_app().await;
    let admin = app.staff(Role::Admin).await;
    let (_, rider) = app.rider().await;
    let starts_at = (OffsetDateTime::now_utc() + time::Duration::hours(1))
        .replace_nanosecond(0)
        .unwrap();
    let mut body = fixed(500, 10);
    body["starts_at"] = json!(rfc3339(starts_at));
    let campaign = app.create_campaign(&admin, &body).await;
    assert_eq!(time_of(&campaign["starts_at"]), starts_at);

    let response = app
        .post_empty(&format!("/coupons/{}/issue", id(&campaign)), Some(&rider))
        .await;

    assert_problem(response, 409, "coupon.not_started").await;
    assert_eq!(
        json_body(app.get("/coupons", Some(&rider)).await, 200).await,
        json!({ "items": [] })
    );
}

#[tokio::test]
async fn a_campaign_that_has_ended_issues_nothing_and_its_coupons_expire_with_it() {
    let app = spawn_app().await;
    let admin = app.staff(Role::Admin).await;
    let (_, early) = app.rider().await;
    let (_, late) = app.rider().await;
    let product = app.create_product(&admin, 10_000, 5).await;
    let ends_at = (OffsetDateTime::now_utc() + time::Duration::seconds(2))
        .replace_nanosecond(0)
        .unwrap();
    let mut body = fixed(1_000, 10);
    body["ends_at"] = json!(rfc3339(ends_at));
    let campaign = app.create_campaign(&admin, &body).await;
    let issue = format!("/coupons/{}/issue", id(&campaign));
    let coupon = json_body(app.post_empty(&issue, Some(&early)).await, 201).await;
    assert_eq!(time_of(&coupon["expires_at"]), ends_at);

    let wait = ends_at - OffsetDateTime::now_utc() + time::Duration::milliseconds(100);
    if wait.is_positive() {
        tokio::time::sleep(wait.unsigned_abs()).await;
    }

    assert_problem(app.post_empty(&issue, Some(&late)).await, 409, "coupon.ended").await;
    let mine = json_body(app.get("/coupons", Some(&early)).await, 200).await;
    assert_eq!(items(&mine)[0]["status"], "expired");
    let order = json!({ "items": [{ "product_id": product["id"], "quantity": 1 }], "coupon_id": coupon["id"] });
    assert_problem(app.post("/orders", Some(&early), &order).await, 409, "coupon.expired").await;
    assert_eq!(app.product_stock(&product["id"]).await, 5);
}

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
        json!({ "items": [] })
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
    let campaign = app.create_campaign(&admin, &fixed(1_000, 10)).await;
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
        json!({ "items": [] })
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
    let campaign = app.create_campaign(&admin, &fixed(100, 1)).await;
    let coupon = json_body(
        app.post_empty(&format!("/coupons/{}/issue", id(&campaign)), Some(&rider))
            .await,
        201,
    )
    .await;
    let body = json!({ "items": [{ "product_id": product["id"], "quantity": 2 }], "coupon_id": coupon["id"] });
    let order = json_body(app.post("/orders", Some(&rider), &body).await, 201).await;

    app_server::server::run_jobs(&app.runtime.services, 100).await;

    let after = json_body(app.get(&format!("/orders/{}", id(&order)), Some(&rider)).await, 200).await;
    assert_eq!(after["status"], "pending");
    assert_eq!(app.product_stock(&product["id"]).await, 8);
    assert_eq!(
        items(&json_body(app.get("/coupons", Some(&rider)).await, 200).await)[0]["status"],
        "used"
    );
}
