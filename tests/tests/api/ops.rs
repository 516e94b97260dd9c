//! Outside `/api/v1`: health, metrics, the OpenAPI document and Swagger UI.

use serde_json::{Value, json};

use std::time::{Duration, Instant};

use crate::helpers::{json_body, spawn_app, spawn_app_with};

#[tokio::test]
async fn liveness_answers_up() {
    let app = spawn_app().await;

    let response = app.send(app.client.get(app.url("/health/live"))).await;

    assert_eq!(json_body(response, 200).await, json!({ "status": "up" }));
}

#[tokio::test]
async fn readiness_reports_status_and_every_database_component() {
    let app = spawn_app().await;

    let response = app.send(app.client.get(app.url("/health/ready"))).await;

    let mut components = json!({ "database": { "name": "database", "status": "up" } });
    for n in 1..=app.runtime.config.database.replica_urls.len() {
        components[format!("replica-{n}")] = json!({ "name": format!("replica-{n}"), "status": "up" });
    }
    if !secrecy::ExposeSecret::expose_secret(&app.runtime.config.redis.url).is_empty() {
        components["redis"] = json!({ "name": "redis", "status": "up" });
    }
    assert_eq!(
        json_body(response, 200).await,
        json!({ "status": "up", "components": components })
    );
}

#[tokio::test]
async fn metrics_count_http_requests_in_prometheus_text() {
    let app = spawn_app().await;
    app.send(app.client.get(app.url("/health/live"))).await;

    let response = app.send(app.client.get(app.admin_url("/metrics"))).await;

    assert_eq!(response.status().as_u16(), 200);
    let content_type = response.headers()["content-type"].to_str().unwrap().to_owned();
    assert!(content_type.starts_with("text/plain"), "{content_type}");
    let text = response.text().await.unwrap();
    assert!(
        text.lines()
            .any(|l| l.starts_with("http_requests_total{") && l.contains("route=\"/health/live\"")),
        "no http_requests_total for /health/live in:\n{text}"
    );
}

#[tokio::test]
async fn request_latency_is_a_histogram_with_buckets() {
    let app = spawn_app().await;
    app.send(app.client.get(app.url("/health/live"))).await;

    let text = app.metrics().await;

    // Buckets add up across instances; a summary's quantiles would not.
    let live = |l: &&str| l.contains("route=\"/health/live\"");
    let buckets: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("http_request_duration_seconds_bucket{"))
        .filter(live)
        .collect();
    assert!(buckets.iter().any(|l| l.contains("le=\"0.005\"")), "{text}");
    assert!(buckets.iter().any(|l| l.contains("le=\"+Inf\"")), "{text}");
    assert!(!text.contains("quantile=\""), "no summaries: {text}");
}

#[tokio::test]
async fn shutdown_drains_readiness_503_while_requests_are_still_served_then_closes() {
    let drain = Duration::from_millis(1500);
    let app = spawn_app_with(|c| c.server.drain = drain).await;
    let (public, admin, client) = (
        app.url("/health/ready"),
        app.admin_url("/health/ready"),
        app.client.clone(),
    );
    let live = app.url("/health/live");
    assert_eq!(client.get(&public).send().await.unwrap().status().as_u16(), 200);

    let started = Instant::now();
    let stopped = tokio::spawn(app.shutdown());
    tokio::time::sleep(Duration::from_millis(200)).await;

    // The load balancer is told to move on...
    let ready = client.get(&public).send().await.unwrap();
    assert_eq!(ready.status().as_u16(), 503);
    assert_eq!(ready.json::<Value>().await.unwrap()["draining"], json!(true));
    let details = client.get(&admin).send().await.unwrap();
    assert_eq!(details.status().as_u16(), 503);
    assert_eq!(details.json::<Value>().await.unwrap()["status"], json!("down"));
    // ...while requests are still answered, each closing its connection.
    let response = client.get(&live).send().await.unwrap();
    assert_eq!(response.status().as_u16(), 200);
    assert_eq!(response.headers()["connection"], "close");
    assert!(!stopped.is_finished(), "still serving during the drain");

    stopped.await.unwrap();
    assert!(
        started.elapsed() >= drain,
        "stopped after {:?}, before the drain ended",
        started.elapsed()
    );
    let refused = client.get(&live).send().await;
    assert!(
        refused.is_err_and(|e| e.is_connect()),
        "the listener is closed after the drain"
    );
}

#[tokio::test]
async fn unknown_methods_share_one_metrics_label() {
    let app = spawn_app().await;
    for token in ["RND123", "XYZZY"] {
        let method = reqwest::Method::from_bytes(token.as_bytes()).unwrap();
        app.send(app.client.request(method, app.url("/health/live"))).await;
    }
    let text = app.metrics().await;
    let series: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("http_requests_total{") && l.contains("route=\"/health/live\""))
        .collect();
    assert!(series.iter().any(|l| l.contains("method=\"OTHER\"")), "{series:?}");
    assert!(
        !text.contains("RND123") && !text.contains("XYZZY"),
        "a client's method token became a label value:\n{text}"
    );
}

#[tokio::test]
async fn the_openapi_document_describes_the_payment_route() {
    let app = spawn_app().await;

    let document: Value = json_body(app.send(app.client.get(app.url("/openapi.json"))).await, 200).await;

    let paths = document["paths"].as_object().expect("paths");
    let payment = &paths["/api/v1/orders/{id}/payment"];
    assert!(payment["post"].is_object(), "{payment}");
    for path in [
        "/api/v1/members",
        "/api/v1/auth/login",
        "/api/v1/insurance/insurer/cancellations",
        "/api/v1/admin/coupons",
    ] {
        assert!(paths.contains_key(path), "{path} missing from the OpenAPI paths");
    }
}

#[tokio::test]
async fn metrics_and_swagger_ui_are_only_on_the_admin_listener() {
    let app = spawn_app().await;
    for path in ["/metrics", "/docs/"] {
        let public = app.client.get(app.url(path)).send().await.unwrap();
        assert_eq!(public.status().as_u16(), 404, "{path} on the public listener");
        let admin = app.client.get(app.admin_url(path)).send().await.unwrap();
        assert_eq!(admin.status().as_u16(), 200, "{path} on the admin listener");
    }
    // API clients still find the document on the public listener; the admin one serves it
    // to its Swagger UI.
    for url in [app.url("/openapi.json"), app.admin_url("/openapi.json")] {
        let document: Value = json_body(app.send(app.client.get(url)).await, 200).await;
        assert!(document["paths"]["/api/v1/members"].is_object());
    }
    // The API is not on the admin listener.
    let api = app.client.get(app.admin_url("/api/v1/products")).send().await.unwrap();
    assert_eq!(api.status().as_u16(), 404);
}

#[tokio::test]
async fn swagger_ui_is_served_at_docs() {
    let app = spawn_app().await;

    let response = app.send(app.client.get(app.admin_url("/docs/"))).await;

    assert_eq!(response.status().as_u16(), 200);
    let html = response.text().await.unwrap();
    assert!(html.contains("swagger-ui"), "not the Swagger UI page");
}
