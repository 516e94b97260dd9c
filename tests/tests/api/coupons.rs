//! Coupon campaigns: first-come-first-served issue, once per member, and their time window.

use serde_json::json;
use time::OffsetDateTime;

use core_domain::member::Role;

use crate::helpers::{assert_problem, error_fields, fixed_campaign, id, items, json_body, rfc3339, spawn_app, time_of};

#[tokio::test]
async fn coupons_are_issued_first_come_first_served_and_once_per_member() {
    let app = spawn_app().await;
    let admin = app.staff(Role::Admin).await;
    let (_, first) = app.rider().await;
    let (_, second) = app.rider().await;
    let (_, third) = app.rider().await;

    let campaign = app.create_campaign(&admin, &fixed_campaign(1_000, 2)).await;
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
        json!({ "items": [], "next": null })
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
    let mut body = fixed_campaign(500, 10);
    body["starts_at"] = json!(rfc3339(starts_at));
    let campaign = app.create_campaign(&admin, &body).await;
    assert_eq!(time_of(&campaign["starts_at"]), starts_at);

    let response = app
        .post_empty(&format!("/coupons/{}/issue", id(&campaign)), Some(&rider))
        .await;

    assert_problem(response, 409, "coupon.not_started").await;
    assert_eq!(
        json_body(app.get("/coupons", Some(&rider)).await, 200).await,
        json!({ "items": [], "next": null })
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
    let mut body = fixed_campaign(1_000, 10);
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
async fn a_withdrawn_member_refused_a_coupon_leaves_the_slot_to_others() {
    let app = spawn_app().await;
    let admin = app.staff(Role::Admin).await;
    let campaign = json_body(
        app.post("/admin/coupons", Some(&admin), &fixed_campaign(10, 1)).await,
        201,
    )
    .await;
    let issue = format!("/coupons/{}/issue", id(&campaign));
    let (_, withdrawn) = app.rider().await;
    assert_eq!(app.delete("/members/me", Some(&withdrawn)).await.status().as_u16(), 204);
    // The access token is still valid; the member is not active.
    for _ in 0..3 {
        assert_problem(app.post_empty(&issue, Some(&withdrawn)).await, 409, "member.inactive").await;
    }
    let (_, rider) = app.rider().await;
    json_body(app.post_empty(&issue, Some(&rider)).await, 201).await;
    let (_, late) = app.rider().await;
    assert_problem(app.post_empty(&issue, Some(&late)).await, 409, "coupon.sold_out").await;
}
