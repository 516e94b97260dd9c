//! hexride's HTTP API mounted into an existing axum application, next to the application's
//! own routes: one server, one port, one `Router`. hexride is wired from a `Config` (the
//! embedded default, on SQLite in a temporary directory); the example serves on a free
//! loopback port, calls both its own route and hexride's, and checks the answers.
//!
//! ```sh
//! cargo run -p tests --example embed_router
//! ```

#![allow(clippy::unwrap_used, clippy::expect_used)]

use axum::Router;
use axum::routing::get;
use serde_json::{Value, json};

use app_server::config::Config;
use app_server::runtime::Runtime;
use app_server::{http, server};

#[tokio::main]
async fn main() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let mut config = Config::defaults().expect("defaults");
    config.database.url = format!("sqlite://{}", dir.path().join("embedded.db").display()).into();
    let runtime = Runtime::build(config).await.expect("hexride's runtime");

    // The embedding application's own routes, and hexride's beside them.
    let app = Router::new()
        .route("/hello", get(|| async { "hello from the embedding application" }))
        .merge(http::router(server::app_state(&runtime)));

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("address"));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async {
                let _ = stopped.await;
            })
            .await
    });

    let client = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(10))
        .build()
        .expect("client");
    let hello = client.get(format!("{base}/hello")).send().await.expect("GET /hello");
    assert_eq!(hello.status(), 200);
    println!("GET /hello → {}", hello.text().await.expect("body"));

    let signed_up = client
        .post(format!("{base}/api/v1/members"))
        .json(&json!({
            "email": "embedded.rider@example.com",
            "password": "correct horse battery",
            "name": "Kim Embedded",
            "phone": "010-1234-5678",
        }))
        .send()
        .await
        .expect("POST /api/v1/members");
    assert_eq!(signed_up.status(), 201);
    let member: Value = signed_up.json().await.expect("member");
    println!("POST /api/v1/members → 201 {}", member["email"]);

    let ready = client
        .get(format!("{base}/health/ready"))
        .send()
        .await
        .expect("GET /health/ready");
    assert_eq!(ready.status(), 200);
    println!("GET /health/ready → 200 {}", ready.text().await.expect("body"));

    let _ = stop.send(());
    serving.await.expect("server task").expect("server");
    runtime.close().await;
}
