//! `Idempotency-Key` on every money-moving POST besides payment (see `orders`): a point
//! charge, an order and a coupon issue retried with their key run once and replay their
//! first answer; the key with another request is refused; without a key each request runs.

use futures::future::join_all;
use reqwest::{Method, Response};
use serde_json::{Value, json};

use core_domain::CampaignId;
use core_domain::member::Role;
use ports::Consistency;

use crate::helpers::{TestApp, assert_problem, error_fields, fixed_campaign, id, items, json_body, spawn_app};

async fn keyed(app: &TestApp, token: &str, path: &str, key: &str, body: Option<&Value>) -> Response {
    let request = app
        .request(Method::POST, path, Some(token))
        .header("idempotency-key", key);
    app.send(match body {
        Some(body) => request.json(body),
        None => request,
    })
    .await
}

fn charges(history: &[Value]) -> usize {
    history.iter().filter(|row| row["kind"] == "charge").count()
}

#[tokio::test]
async fn a_charge_retried_with_its_key_charges_once_and_replays_its_balance() {
    let app = spawn_app().await;
    let (_, rider) = app.rider().await;
    let thousand = json!({ "amount": 1_000 });

    let first = json_body(
        keyed(&app, &rider, "/points/charge", "charge-1", Some(&thousand)).await,
        200,
    )
    .await;
    assert_eq!(first["balance"], 1_000);
    for _ in 0..3 {
        let retry = keyed(&app, &rider, "/points/charge", "charge-1", Some(&thousand)).await;
        assert_eq!(json_body(retry, 200).await, first);
    }
    assert_eq!(app.balance(&rider).await, 1_000);
    assert_eq!(charges(&app.history(&rider).await), 1);

    let other_amount = keyed(
        &app,
        &rider,
        "/points/charge",
        "charge-1",
        Some(&json!({ "amount": 2_000 })),
    )
    .await;
    assert_problem(other_amount, 422, "idempotency.key_mismatch").await;
    let bad_key = keyed(&app, &rider, "/points/charge", &"k".repeat(256), Some(&thousand)).await;
    assert_eq!(
        error_fields(&assert_problem(bad_key, 422, "validation.failed").await),
        ["Idempotency-Key"]
    );

    // Another key, or none, is another charge.
    let second = json_body(
        keyed(&app, &rider, "/points/charge", "charge-2", Some(&thousand)).await,
        200,
    )
    .await;
    assert_eq!(second["balance"], 2_000);
    assert_eq!(app.charge(&rider, 1_000).await["balance"], 3_000);
    assert_eq!(charges(&app.history(&rider).await), 3);

    // Keys are the member's own: another rider's "charge-1" is a new request.
    let (_, other) = app.rider().await;
    let theirs = json_body(
        keyed(&app, &other, "/points/charge", "charge-1", Some(&thousand)).await,
        200,
    )
    .await;
    assert_eq!(theirs["balance"], 1_000);
    assert_eq!(app.balance(&rider).await, 3_000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_concurrent_retries_of_one_charge_charge_exactly_once() {
    let app = spawn_app().await;
    let (_, rider) = app.rider().await;
    let body = json!({ "amount": 500 });

    let responses = join_all((0..20).map(|_| keyed(&app, &rider, "/points/charge", "burst", Some(&body)))).await;
    let bodies = join_all(responses.into_iter().map(|r| json_body(r, 200))).await;
    assert!(bodies.iter().all(|b| b["balance"] == 500), "{bodies:?}");
    assert_eq!(app.balance(&rider).await, 500);
    assert_eq!(charges(&app.history(&rider).await), 1);
}

#[tokio::test]
async fn an_order_retried_with_its_key_is_placed_once() {
    let app = spawn_app().await;
    let admin = app.staff(Role::Admin).await;
    let (_, rider) = app.rider().await;
    let product = app.create_product(&admin, 8_000, 10).await;
    let two = json!({ "items": [{ "product_id": product["id"], "quantity": 2 }] });

    let order = json_body(keyed(&app, &rider, "/orders", "order-1", Some(&two)).await, 201).await;
    let retry = json_body(keyed(&app, &rider, "/orders", "order-1", Some(&two)).await, 201).await;
    assert_eq!(retry["id"], order["id"]);
    assert_eq!(retry["total"], order["total"]);
    assert_eq!(app.product_stock(&product["id"]).await, 8);
    assert_eq!(
        items(&json_body(app.get("/orders", Some(&rider)).await, 200).await).len(),
        1
    );

    let three = json!({ "items": [{ "product_id": product["id"], "quantity": 3 }] });
    assert_problem(
        keyed(&app, &rider, "/orders", "order-1", Some(&three)).await,
        422,
        "idempotency.key_mismatch",
    )
    .await;
    // A failed attempt stores nothing: its key places the order once stock allows.
    let eleven = json!({ "items": [{ "product_id": product["id"], "quantity": 11 }] });
    assert_problem(
        keyed(&app, &rider, "/orders", "order-2", Some(&eleven)).await,
        409,
        "order.out_of_stock",
    )
    .await;
    let placed = json_body(keyed(&app, &rider, "/orders", "order-2", Some(&three)).await, 201).await;
    assert_ne!(placed["id"], order["id"]);
    assert_eq!(app.product_stock(&product["id"]).await, 5);
    assert_eq!(
        items(&json_body(app.get("/orders", Some(&rider)).await, 200).await).len(),
        2
    );
}

#[tokio::test]
async fn a_coupon_issue_retried_with_its_key_replays_its_coupon_even_once_sold_out() {
    let app = spawn_app().await;
    let admin = app.staff(Role::Admin).await;
    let (_, rider) = app.rider().await;
    let (_, late) = app.rider().await;
    let campaign = app.create_campaign(&admin, &fixed_campaign(1_000, 1)).await;
    let issue = format!("/coupons/{}/issue", id(&campaign));

    let coupon = json_body(keyed(&app, &rider, &issue, "coupon-1", None).await, 201).await;
    // The retry meets the gate's "already issued": the stored coupon is the answer.
    let retry = json_body(keyed(&app, &rider, &issue, "coupon-1", None).await, 201).await;
    assert_eq!(retry["id"], coupon["id"]);
    assert_problem(app.post_empty(&issue, Some(&late)).await, 409, "coupon.sold_out").await;
    // Sold out now, and turned away before the gate: still the stored coupon.
    let after = json_body(keyed(&app, &rider, &issue, "coupon-1", None).await, 201).await;
    assert_eq!(after["id"], coupon["id"]);

    // A new request is refused as before: without a key, with another key, or the late
    // rider's own key.
    assert_problem(app.post_empty(&issue, Some(&rider)).await, 409, "coupon.already_issued").await;
    assert_problem(
        keyed(&app, &rider, &issue, "coupon-2", None).await,
        409,
        "coupon.already_issued",
    )
    .await;
    assert_problem(
        keyed(&app, &late, &issue, "coupon-1", None).await,
        409,
        "coupon.sold_out",
    )
    .await;
    // The key for another campaign is another request.
    let other = app.create_campaign(&admin, &fixed_campaign(500, 5)).await;
    assert_problem(
        keyed(
            &app,
            &rider,
            &format!("/coupons/{}/issue", id(&other)),
            "coupon-1",
            None,
        )
        .await,
        422,
        "idempotency.key_mismatch",
    )
    .await;

    let mine = json_body(app.get("/coupons", Some(&rider)).await, 200).await;
    assert_eq!(items(&mine).len(), 1);
    let campaign_id = CampaignId(id(&campaign).parse().expect("a uuid"));
    let stored = app
        .runtime
        .ports
        .coupons
        .campaign(campaign_id, Consistency::Strong)
        .await
        .expect("the store answers")
        .expect("the campaign");
    assert_eq!(stored.issued_count, 1);
}
