//! What every route shares: request-shape problems, authentication and roles.

use reqwest::Method;
use serde_json::{Value, json};
use uuid::Uuid;

use core_domain::member::Role;

use crate::helpers::{assert_problem, error_fields, rfc3339, spawn_app};

/// Every route that needs a member, with a body that would otherwise be acceptable.
fn member_routes() -> Vec<(Method, String, Option<Value>)> {
    let id = Uuid::now_v7();
    let now = rfc3339(time::OffsetDateTime::now_utc());
    vec![
        (Method::POST, "/auth/logout".into(), None),
        (Method::GET, "/members/me".into(), None),
        (Method::DELETE, "/members/me".into(), None),
        (
            Method::POST,
            "/insurance/policies".into(),
            Some(json!({ "plan_id": id })),
        ),
        (Method::GET, "/insurance/policies".into(), None),
        (
            Method::GET,
            format!("/insurance/policies/{id}/statement?from={now}&to={now}"),
            None,
        ),
        (Method::POST, "/driving/sessions".into(), None),
        (Method::POST, format!("/driving/sessions/{id}/end"), None),
        (Method::GET, "/admin/members?email=a".into(), None),
        (Method::GET, format!("/admin/members/{id}/policies"), None),
        (
            Method::POST,
            format!("/admin/insurance/policies/{id}/expire"),
            Some(json!({ "effective_at": now })),
        ),
        (Method::GET, "/admin/insurance/plans".into(), None),
        (
            Method::POST,
            "/admin/insurance/plans".into(),
            Some(json!({ "name": "Hourly", "hourly_premium": 600 })),
        ),
        (
            Method::PATCH,
            format!("/admin/insurance/plans/{id}"),
            Some(json!({ "hourly_premium": 700 })),
        ),
        (
            Method::POST,
            "/admin/products".into(),
            Some(json!({ "name": "Helmet", "price": 1000, "stock": 1 })),
        ),
        (
            Method::PATCH,
            format!("/admin/products/{id}"),
            Some(json!({ "price": 1000 })),
        ),
        (
            Method::POST,
            "/admin/coupons".into(),
            Some(json!({ "name": "Spring", "discount": { "kind": "fixed", "amount": 100 }, "total_quantity": 1 })),
        ),
        (Method::GET, "/points".into(), None),
        (Method::POST, "/points/charge".into(), Some(json!({ "amount": 1 }))),
        (Method::GET, "/points/history".into(), None),
        (Method::POST, format!("/coupons/{id}/issue"), None),
        (Method::GET, "/coupons".into(), None),
        (
            Method::POST,
            "/orders".into(),
            Some(json!({ "items": [{ "product_id": id, "quantity": 1 }] })),
        ),
        (Method::GET, "/orders".into(), None),
        (Method::GET, format!("/orders/{id}"), None),
        (Method::POST, format!("/orders/{id}/payment"), None),
    ]
}

fn admin_routes() -> Vec<(Method, String, Option<Value>)> {
    member_routes()
        .into_iter()
        .filter(|(_, path, _)| path.starts_with("/admin/"))
        .collect()
}

#[tokio::test]
async fn every_member_route_without_a_token_is_unauthenticated_with_a_bearer_challenge() {
    let app = spawn_app().await;

    for (method, path, body) in member_routes() {
        let mut request = app.request(method.clone(), &path, None).header("idempotency-key", "k");
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = app.send(request).await;

        let challenge = response
            .headers()
            .get("www-authenticate")
            .map(|v| v.to_str().unwrap().to_owned());
        assert_eq!(challenge.as_deref(), Some("Bearer"), "{method} {path}");
        assert_problem(response, 401, "auth.unauthenticated").await;
    }
}

#[tokio::test]
async fn a_garbage_or_non_bearer_token_is_unauthenticated() {
    let app = spawn_app().await;

    for (method, path, _) in member_routes() {
        let garbage = app.send(app.request(method.clone(), &path, Some("not.a.jwt"))).await;
        assert_problem(garbage, 401, "auth.unauthenticated").await;
    }
    let basic = app
        .send(
            app.client
                .get(app.api("/members/me"))
                .header("authorization", "Basic dXNlcjpwYXNz"),
        )
        .await;
    assert_problem(basic, 401, "auth.unauthenticated").await;
}

#[tokio::test]
async fn a_token_signed_with_another_secret_is_unauthenticated() {
    let app = spawn_app().await;
    let other = spawn_app_with_other_secret().await;
    let (_, foreign_token) = other.rider().await;

    let response = app.get("/members/me", Some(&foreign_token)).await;

    assert_problem(response, 401, "auth.unauthenticated").await;
}

async fn spawn_app_with_other_secret() -> crate::helpers::TestApp {
    crate::helpers::spawn_app_with(|c| c.auth.jwt_secret = "a-completely-different-secret-0123456789".to_owned().into())
        .await
}

#[tokio::test]
async fn a_rider_is_forbidden_on_every_admin_route() {
    let app = spawn_app().await;
    let (_, rider) = app.rider().await;

    let routes = admin_routes();
    assert_eq!(routes.len(), 9);
    for (method, path, body) in routes {
        let mut request = app.request(method.clone(), &path, Some(&rider));
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = app.send(request).await;
        assert_eq!(response.status().as_u16(), 403, "{method} {path}");
        assert_problem(response, 403, "auth.forbidden").await;
    }
}

#[tokio::test]
async fn cx_is_forbidden_on_the_admin_only_plan_product_and_coupon_routes() {
    let app = spawn_app().await;
    let cx = app.staff(Role::Cx).await;

    // Every admin write but expiring a policy, which is CX's job.
    let product_and_coupon_routes: Vec<_> = admin_routes()
        .into_iter()
        .filter(|(method, path, _)| {
            path.contains("/products")
                || path.contains("/coupons")
                || (path.contains("/plans") && method != Method::GET)
        })
        .collect();
    assert_eq!(product_and_coupon_routes.len(), 5);
    for (method, path, body) in product_and_coupon_routes {
        let response = app
            .send(app.request(method.clone(), &path, Some(&cx)).json(&body.unwrap()))
            .await;
        assert_eq!(response.status().as_u16(), 403, "{method} {path}");
        assert_problem(response, 403, "auth.forbidden").await;
    }
}

#[tokio::test]
async fn staff_are_forbidden_on_the_rider_only_insurance_and_driving_routes() {
    let app = spawn_app().await;
    let session = Uuid::now_v7();

    for role in [Role::Cx, Role::Admin] {
        let staff = app.staff(role).await;
        let enrol = app
            .post(
                "/insurance/policies",
                Some(&staff),
                &json!({ "plan_id": Uuid::now_v7() }),
            )
            .await;
        assert_problem(enrol, 403, "auth.forbidden").await;
        assert_problem(
            app.get("/insurance/policies", Some(&staff)).await,
            403,
            "auth.forbidden",
        )
        .await;
        assert_problem(
            app.post_empty("/driving/sessions", Some(&staff)).await,
            403,
            "auth.forbidden",
        )
        .await;
        let end = app
            .post_empty(&format!("/driving/sessions/{session}/end"), Some(&staff))
            .await;
        assert_problem(end, 403, "auth.forbidden").await;
    }
}

#[tokio::test]
async fn malformed_json_is_a_bad_request() {
    let app = spawn_app().await;

    let response = app
        .send(
            app.request(Method::POST, "/members", None)
                .header("content-type", "application/json")
                .body(r#"{"email": "a@example.com", "#),
        )
        .await;

    assert_problem(response, 400, "request.malformed_json").await;
}

#[tokio::test]
async fn a_value_of_the_wrong_type_or_a_missing_field_fails_validation() {
    let app = spawn_app().await;
    let (_, rider) = app.rider().await;

    let wrong_type = app
        .post("/points/charge", Some(&rider), &json!({ "amount": "ten" }))
        .await;
    assert_problem(wrong_type, 422, "validation.failed").await;

    let missing = app.post("/members", None, &json!({ "email": "a@example.com" })).await;
    assert_problem(missing, 422, "validation.failed").await;

    let email_not_a_string = app
        .post(
            "/auth/login",
            None,
            &json!({ "email": ["not", "a", "string"], "password": "x" }),
        )
        .await;
    assert_problem(email_not_a_string, 422, "validation.failed").await;
}

#[tokio::test]
async fn a_body_without_a_json_content_type_is_unsupported() {
    let app = spawn_app().await;

    let response = app
        .send(
            app.request(Method::POST, "/auth/login", None)
                .body(r#"{"email":"a@example.com","password":"x"}"#),
        )
        .await;

    assert_problem(response, 415, "request.unsupported_media_type").await;
}

#[tokio::test]
async fn a_body_over_the_size_limit_is_too_large() {
    let app = spawn_app().await;
    let huge = "x".repeat(70_000);

    let response = app
        .post(
            "/members",
            None,
            &json!({ "email": "a@example.com", "password": huge, "name": "n", "phone": "0101234567" }),
        )
        .await;

    assert_problem(response, 413, "request.too_large").await;
}

#[tokio::test]
async fn an_unknown_route_is_not_found() {
    let app = spawn_app().await;

    assert_problem(app.get("/no-such-thing", None).await, 404, "resource.not_found").await;
    let outside = app.send(app.client.get(app.url("/no-such-thing"))).await;
    assert_problem(outside, 404, "resource.not_found").await;
}

#[tokio::test]
async fn a_malformed_id_in_the_path_is_not_found() {
    let app = spawn_app().await;
    let (_, rider) = app.rider().await;

    assert_problem(app.get("/products/not-a-uuid", None).await, 404, "resource.not_found").await;
    assert_problem(app.get("/orders/12345", Some(&rider)).await, 404, "resource.not_found").await;
    assert_problem(
        app.post_empty("/coupons/xyz/issue", Some(&rider)).await,
        404,
        "resource.not_found",
    )
    .await;
}

#[tokio::test]
async fn a_method_a_route_does_not_take_is_not_allowed() {
    let app = spawn_app().await;

    let delete_products = app.send(app.request(Method::DELETE, "/products", None)).await;
    assert_problem(delete_products, 405, "request.method_not_allowed").await;
    let put_me = app.send(app.request(Method::PUT, "/members/me", None)).await;
    assert_problem(put_me, 405, "request.method_not_allowed").await;
}

#[tokio::test]
async fn validation_problems_name_the_invalid_fields() {
    let app = spawn_app().await;

    let response = app
        .post(
            "/members",
            None,
            &json!({ "email": "not-an-email", "password": "short", "name": "", "phone": "12ab" }),
        )
        .await;

    let problem = assert_problem(response, 422, "validation.failed").await;
    assert_eq!(error_fields(&problem), ["email", "name", "password", "phone"]);
    for messages in problem["errors"].as_object().unwrap().values() {
        assert!(!messages.as_array().unwrap().is_empty(), "{problem}");
    }
}

#[tokio::test]
async fn numbers_out_of_range_and_trailing_garbage_are_client_errors() {
    let app = spawn_app().await;
    let (_, rider) = app.rider().await;
    let raw = |body: &'static str| {
        app.request(Method::POST, "/points/charge", Some(&rider))
            .header("content-type", "application/json")
            .body(body)
    };

    assert_problem(app.send(raw(r#"{"amount": 1e30}"#)).await, 422, "validation.failed").await;
    assert_problem(
        app.send(raw(r#"{"amount": 99999999999999999999}"#)).await,
        422,
        "validation.failed",
    )
    .await;
    assert_problem(
        app.send(raw(r#"{"amount": 1} and more"#)).await,
        400,
        "request.malformed_json",
    )
    .await;
    assert_eq!(app.balance(&rider).await, 0);
}

#[tokio::test]
async fn a_time_valid_in_its_offset_but_beyond_utc_is_invalid_not_a_crash() {
    // Year 9999 at -23:59 is year 10000 in UTC, which no field can hold.
    const BEYOND: &str = "9999-12-31T23:59:59-23:59";
    let app = spawn_app().await;
    let admin = app.staff(Role::Admin).await;
    let (_, rider) = app.rider().await;
    let policy = app.enrol(&rider, 600).await;
    let policy_id = policy["id"].as_str().unwrap();

    let campaign =
        json!({ "name": "Far", "discount": { "kind": "fixed", "amount": 1 }, "total_quantity": 1, "ends_at": BEYOND });
    let problem = assert_problem(
        app.post("/admin/coupons", Some(&admin), &campaign).await,
        422,
        "validation.failed",
    )
    .await;
    assert_eq!(error_fields(&problem), ["ends_at"]);

    let path = format!("/insurance/policies/{policy_id}/statement");
    let statement = app
        .get_query(&path, Some(&rider), &[("from", "2020-01-01T00:00:00Z"), ("to", BEYOND)])
        .await;
    assert_eq!(
        error_fields(&assert_problem(statement, 422, "validation.failed").await),
        ["to"]
    );

    let expire = app
        .post(
            &format!("/admin/insurance/policies/{policy_id}/expire"),
            Some(&admin),
            &json!({ "effective_at": BEYOND }),
        )
        .await;
    assert_eq!(
        error_fields(&assert_problem(expire, 422, "validation.failed").await),
        ["effective_at"]
    );

    let cancellation = json!({ "event_id": "far", "policy_number": policy["policy_number"], "cancelled_at": BEYOND });
    let problem = assert_problem(app.signed_cancellation(&cancellation).await, 422, "validation.failed").await;
    assert_eq!(error_fields(&problem), ["cancelled_at"]);
}

#[tokio::test]
async fn an_oversized_raw_body_is_too_large_like_an_oversized_json_body() {
    let app = spawn_app().await;
    let admin = app.staff(Role::Admin).await;
    let (_, rider) = app.rider().await;
    let product = app.create_product(&admin, 1_000, 1).await;
    let order = crate::helpers::json_body(app.order(&rider, &product["id"], 1).await, 201).await;
    let huge = "x".repeat(70_000);

    let payment = app
        .send(
            app.request(
                Method::POST,
                &format!("/orders/{}/payment", order["id"].as_str().unwrap()),
                Some(&rider),
            )
            .header("idempotency-key", "huge")
            .body(huge.clone()),
        )
        .await;
    assert_problem(payment, 413, "request.too_large").await;

    let callback = app
        .send(
            crate::helpers::insurer_signed(
                app.request(Method::POST, "/insurance/insurer/cancellations", None),
                huge.as_bytes(),
            )
            .body(huge),
        )
        .await;
    assert_problem(callback, 413, "request.too_large").await;
}

#[tokio::test]
async fn staff_tokens_lose_their_powers_when_the_account_is_withdrawn_or_demoted() {
    let app = spawn_app().await;
    let product = json!({ "name": "Helmet", "price": 1000, "stock": 1 });

    // An admin withdrawn since login: the still-valid token is refused (401).
    let admin = app.staff(Role::Admin).await;
    assert_eq!(
        app.post("/admin/products", Some(&admin), &product)
            .await
            .status()
            .as_u16(),
        201
    );
    assert_eq!(app.delete("/members/me", Some(&admin)).await.status().as_u16(), 204);
    assert_problem(
        app.post("/admin/products", Some(&admin), &product).await,
        401,
        "auth.unauthenticated",
    )
    .await;

    // A CX demoted to rider since login (the change made in the store, as an operator
    // would): staff routes refuse the token with 403.
    let cx = app.staff(Role::Cx).await;
    assert_eq!(
        app.get("/admin/members?email=a", Some(&cx)).await.status().as_u16(),
        200
    );
    let me: Value = app.get("/members/me", Some(&cx)).await.json().await.unwrap();
    let id = core_domain::MemberId(Uuid::parse_str(me["id"].as_str().unwrap()).unwrap());
    let mut uow = app.runtime.ports.db.begin().await.unwrap();
    let mut member = uow.members().by_id(id).await.unwrap().unwrap();
    member.role = Role::Rider;
    uow.members().update(&member).await.unwrap();
    uow.commit().await.unwrap();
    assert_problem(
        app.get("/admin/members?email=a", Some(&cx)).await,
        403,
        "auth.forbidden",
    )
    .await;
}
