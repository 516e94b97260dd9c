//! One real server per test on a fresh database — a SQLite file in a temporary directory
//! (the `api` test binary) or a PostgreSQL database with its streaming replica
//! (`api_postgres`; `api_redis` adds Redis under a fresh key prefix) — HTTP on a free port,
//! driven through `reqwest` as a client would.

use std::any::Any;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use hmac::{Hmac, KeyInit, Mac};
use reqwest::{Method, RequestBuilder, Response};
use serde_json::{Value, json};
use sha2::Sha256;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use app_server::config::Config;
use app_server::runtime::Runtime;
use app_server::server::{self, Running};
use application::members::SignUp;
use core_domain::member::Role;

/// Every test account uses this password.
pub const PASSWORD: &str = "correct horse battery staple";
pub const JWT_SECRET: &str = "api-test-jwt-secret-0123456789abcdef";
pub const INSURER_SECRET: &str = "api-test-insurer-secret-0123456789abcdef";

/// The database a test binary runs the suite on (each binary's `main.rs` sets `BACKEND`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    /// The project's PostgreSQL primary, with its replica for eventual reads.
    Postgres,
    /// PostgreSQL as above, with the cache, limits, coupon gate and tokens in Redis.
    PostgresRedis,
    /// The same with a Redis Cluster instead of one Redis server.
    PostgresRedisCluster,
    /// The project's MariaDB primary, with its GTID replica for eventual reads.
    Mysql,
}

pub struct TestApp {
    /// `http://127.0.0.1:<port>`.
    pub address: String,
    /// The admin listener's `http://127.0.0.1:<port>`.
    pub admin_address: String,
    pub client: reqwest::Client,
    pub runtime: Arc<Runtime>,
    running: Running,
    /// Keeps the database alive (a temporary directory, or a PostgreSQL database dropped at
    /// the end).
    _database: Box<dyn Any + Send + Sync>,
}

/// Points `config` at a fresh SQLite file.
fn sqlite(config: &mut Config) -> Box<dyn Any + Send + Sync> {
    let db_dir = tempfile::tempdir().expect("temporary directory");
    config.database.url = format!("sqlite://{}", db_dir.path().join("hexride.db").display()).into();
    Box::new(db_dir)
}

/// Points `config` at a fresh PostgreSQL database and its replica. With no PostgreSQL and
/// `HEXRIDE_SKIP_INTEGRATION=1` (a notice is printed) the test runs on SQLite instead.
async fn postgres(config: &mut Config) -> Box<dyn Any + Send + Sync> {
    let Some(pg) = tests::services::postgres().await else {
        return sqlite(config);
    };
    let database = tests::services::fresh_pg(&pg).await;
    config.database.url = database.primary_url.clone().into();
    config.database.replica_urls = if pg.has_replica() {
        vec![database.replica_url.clone().into()]
    } else {
        vec![]
    };
    Box::new(database)
}

/// Points `config` at a fresh MariaDB database and its replica. With no MariaDB and
/// `HEXRIDE_SKIP_INTEGRATION=1` (a notice is printed) the test runs on SQLite instead.
async fn mariadb(config: &mut Config) -> Box<dyn Any + Send + Sync> {
    let Some(urls) = tests::services::mariadb().await else {
        return sqlite(config);
    };
    let database = tests::services::fresh_mariadb(&urls).await;
    config.database.url = database.primary_url.clone().into();
    config.database.replica_urls = if urls.replica != urls.primary {
        vec![database.replica_url.clone().into()]
    } else {
        vec![]
    };
    Box::new(database)
}

/// A login's token pair.
#[derive(Debug, Clone)]
pub struct Tokens {
    pub access: String,
    pub refresh: String,
}

/// A server with the test defaults.
pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

/// A server with the test defaults, then `configure` applied.
pub async fn spawn_app_with(configure: impl FnOnce(&mut Config)) -> TestApp {
    let mut config = Config::defaults().expect("default configuration");
    let database = match crate::BACKEND {
        Backend::Sqlite => sqlite(&mut config),
        Backend::Postgres => postgres(&mut config).await,
        Backend::Mysql => mariadb(&mut config).await,
        Backend::PostgresRedis | Backend::PostgresRedisCluster => {
            let database = postgres(&mut config).await;
            let target = if crate::BACKEND == Backend::PostgresRedis {
                tests::redis::RedisTarget::Single
            } else {
                tests::redis::RedisTarget::Cluster
            };
            // Without Redis (and HEXRIDE_SKIP_INTEGRATION=1) the in-process adapters stand in.
            if let Some(redis) = target.url().await {
                config.redis.url = redis.into();
                config.redis.key_prefix = tests::services::redis_prefix();
                // Dozens of servers share two loaded cores here: a Redis answer slower than
                // the default 250 ms is the machine, not the code (the outage tests keep it).
                config.redis.command_timeout = Duration::from_secs(2);
            }
            database
        }
    };
    config.server.listen = "127.0.0.1:0".to_owned();
    config.server.drain = Duration::ZERO;
    config.server.admin_listen = "127.0.0.1:0".to_owned();
    config.auth.jwt_secret = JWT_SECRET.to_owned().into();
    config.insurer.webhook_secret = INSURER_SECRET.to_owned().into();
    // Cheap hashing: hundreds of sign-ups per test.
    config.auth.argon2_memory_kib = 1024;
    config.auth.argon2_iterations = 1;
    // Hundreds of concurrent sign-ups wait for a hashing thread rather than being refused.
    config.auth.hash_queue = 100_000;
    // Every request comes from 127.0.0.1: limits high unless a test lowers them.
    config.auth.login_per_email_per_hour = 10_000;
    config.auth.login_per_ip_and_email_per_minute = 10_000;
    config.auth.login_per_ip_per_minute = 1_000_000;
    config.auth.sign_up_per_ip_per_minute = 1_000_000;
    config.auth.api_per_member_per_minute = 1_000_000;
    // Events reach their in-process handlers promptly.
    config.relay.idle_wait = Duration::from_millis(20);
    config.log.level = "warn".to_owned();
    configure(&mut config);
    if std::env::var_os("HEXRIDE_TEST_LOG").is_some() {
        app_server::telemetry::init("pretty", &config.log.level);
    }

    let running = server::start(config).await.expect("the server starts");
    let addr = running.addr.expect("the server listens");
    let admin = running.admin_addr.expect("the admin listener listens");
    TestApp {
        address: format!("http://{addr}"),
        admin_address: format!("http://{admin}"),
        client: reqwest::Client::new(),
        runtime: running.runtime.clone(),
        running,
        _database: database,
    }
}

/// A fresh, valid e-mail address.
pub fn unique_email(prefix: &str) -> String {
    format!("{prefix}-{}@example.com", uuid::Uuid::new_v4())
}

pub fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).expect("formattable time")
}

/// The RFC 3339 time in `value`.
pub fn time_of(value: &Value) -> OffsetDateTime {
    let raw = value
        .as_str()
        .unwrap_or_else(|| panic!("expected an RFC 3339 string, got {value}"));
    OffsetDateTime::parse(raw, &Rfc3339).unwrap_or_else(|e| panic!("`{raw}` is not RFC 3339: {e}"))
}

/// Whole minutes of `[start, end)` within `[coverage_start, expired_at)`: the billing rule,
/// restated independently of the server.
pub fn overlap_minutes(
    start: OffsetDateTime,
    end: OffsetDateTime,
    coverage_start: OffsetDateTime,
    expired_at: Option<OffsetDateTime>,
) -> i64 {
    let from = start.max(coverage_start);
    let to = expired_at.map_or(end, |e| end.min(e));
    if to <= from { 0 } else { (to - from).whole_minutes() }
}

/// `sha256=<hex HMAC-SHA256 of "<at>.<body>">` under the insurer secret.
pub fn insurer_signature_at(at: i64, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(INSURER_SECRET.as_bytes()).expect("any key length");
    mac.update(format!("{at}.").as_bytes());
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// `request` with the insurer's headers for `body`, signed now.
pub fn insurer_signed(request: RequestBuilder, body: &[u8]) -> RequestBuilder {
    let now = OffsetDateTime::now_utc().unix_timestamp();
    request
        .header("x-insurer-timestamp", now.to_string())
        .header("x-insurer-signature", insurer_signature_at(now, body))
}

/// Checks a problem+json answer and returns its body.
pub async fn assert_problem(response: Response, status: u16, code: &str) -> Value {
    let actual = response.status();
    let content_type = response
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let body: Value = response.json().await.expect("a JSON problem body");
    assert_eq!(actual.as_u16(), status, "status of {body}");
    assert_eq!(content_type, "application/problem+json", "content type of {body}");
    assert_eq!(body["code"], code, "code of {body}");
    assert_eq!(body["status"], status, "status field of {body}");
    assert_eq!(body["type"], format!("urn:hexride:{code}"), "type of {body}");
    assert!(
        body["title"].is_string() && body["detail"].is_string(),
        "title and detail in {body}"
    );
    body
}

/// Checks the status of a JSON answer and returns its body.
pub async fn json_body(response: Response, status: u16) -> Value {
    let actual = response.status();
    let text = response.text().await.expect("a body");
    assert_eq!(actual.as_u16(), status, "unexpected status; body: {text}");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

/// The field names of a validation problem's `errors` map.
pub fn error_fields(problem: &Value) -> Vec<String> {
    let mut fields: Vec<String> = problem["errors"]
        .as_object()
        .unwrap_or_else(|| panic!("no `errors` map in {problem}"))
        .keys()
        .cloned()
        .collect();
    fields.sort();
    fields
}

/// Polls `check` every 20 ms until it holds or `timeout` passes; whether it held.
pub async fn wait_until<F, Fut>(timeout: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if check().await {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.address)
    }

    /// A URL on the admin listener.
    pub fn admin_url(&self, path: &str) -> String {
        format!("{}{path}", self.admin_address)
    }

    /// A URL under `/api/v1`.
    pub fn api(&self, path: &str) -> String {
        format!("{}/api/v1{path}", self.address)
    }

    /// A request under `/api/v1`, with the bearer token if given.
    pub fn request(&self, method: Method, path: &str, token: Option<&str>) -> RequestBuilder {
        let builder = self.client.request(method, self.api(path));
        match token {
            Some(token) => builder.bearer_auth(token),
            None => builder,
        }
    }

    /// Sends a request. The server must never fail with a 5xx, whatever it is sent.
    pub async fn send(&self, request: RequestBuilder) -> Response {
        let response = request.send().await.expect("the server answers");
        if response.status().is_server_error() {
            let (status, url) = (response.status(), response.url().clone());
            let body = response.text().await.unwrap_or_default();
            panic!("server error {status} for {url}: {body}");
        }
        response
    }

    /// The admin listener's `/metrics` text.
    pub async fn metrics(&self) -> String {
        self.send(self.client.get(self.admin_url("/metrics")))
            .await
            .text()
            .await
            .expect("metrics text")
    }

    /// Stops the server as SIGTERM does (drain, then close), returning once it has stopped.
    pub async fn shutdown(self) {
        self.running.shutdown().await;
    }

    pub async fn get(&self, path: &str, token: Option<&str>) -> Response {
        self.send(self.request(Method::GET, path, token)).await
    }

    pub async fn post(&self, path: &str, token: Option<&str>, body: &Value) -> Response {
        self.send(self.request(Method::POST, path, token).json(body)).await
    }

    pub async fn post_empty(&self, path: &str, token: Option<&str>) -> Response {
        self.send(self.request(Method::POST, path, token)).await
    }

    pub async fn patch(&self, path: &str, token: Option<&str>, body: &Value) -> Response {
        self.send(self.request(Method::PATCH, path, token).json(body)).await
    }

    pub async fn put(&self, path: &str, token: Option<&str>, body: &Value) -> Response {
        self.send(self.request(Method::PUT, path, token).json(body)).await
    }

    pub async fn delete(&self, path: &str, token: Option<&str>) -> Response {
        self.send(self.request(Method::DELETE, path, token)).await
    }

    /// `GET` with query parameters (encoded).
    pub async fn get_query(&self, path: &str, token: Option<&str>, query: &[(&str, &str)]) -> Response {
        let mut url = reqwest::Url::parse(&self.api(path)).expect("a valid URL");
        url.query_pairs_mut().extend_pairs(query);
        let builder = self.client.get(url);
        let builder = match token {
            Some(token) => builder.bearer_auth(token),
            None => builder,
        };
        self.send(builder).await
    }

    // --- members ---------------------------------------------------------------------

    pub async fn sign_up(&self, email: &str) -> Response {
        let body = json!({ "email": email, "password": PASSWORD, "name": "Kim Rider", "phone": "010-1234-5678" });
        self.post("/members", None, &body).await
    }

    pub async fn try_login(&self, email: &str, password: &str) -> Response {
        self.post("/auth/login", None, &json!({ "email": email, "password": password }))
            .await
    }

    pub async fn login(&self, email: &str) -> Tokens {
        let body = json_body(self.try_login(email, PASSWORD).await, 200).await;
        tokens_of(&body)
    }

    /// A new rider: their member body and an access token.
    pub async fn rider(&self) -> (Value, String) {
        let (member, tokens) = self.rider_with_tokens().await;
        (member, tokens.access)
    }

    pub async fn rider_with_tokens(&self) -> (Value, Tokens) {
        let email = unique_email("rider");
        let member = json_body(self.sign_up(&email).await, 201).await;
        let tokens = self.login(&email).await;
        (member, tokens)
    }

    /// A staff account made as the CLI makes it, logged in: its access token.
    pub async fn staff(&self, role: Role) -> String {
        let email = unique_email(role.as_str());
        self.runtime
            .services
            .members
            .create_account(
                SignUp {
                    email: email.clone(),
                    password: PASSWORD.to_owned(),
                    name: "Staff".to_owned(),
                    phone: "02-1234-5678".to_owned(),
                },
                role,
            )
            .await
            .expect("staff account created");
        self.login(&email).await.access
    }

    // --- insurance -------------------------------------------------------------------

    /// A new plan at `hourly_premium`, made as staff would (through the use case: the HTTP
    /// route has its own tests). Its id.
    pub async fn plan(&self, hourly_premium: i64) -> String {
        let plan = self
            .runtime
            .services
            .insurance
            .create_plan(&format!("Plan {}", uuid::Uuid::new_v4()), hourly_premium)
            .await
            .expect("a plan");
        plan.id.to_string()
    }

    /// Enrols the rider in a new plan at `hourly_premium`.
    pub async fn enrol(&self, token: &str, hourly_premium: i64) -> Value {
        let body = json!({ "plan_id": self.plan(hourly_premium).await });
        json_body(self.post("/insurance/policies", Some(token), &body).await, 201).await
    }

    /// Registers a driving licence for the rider (valid until 2035): riders drive only with one.
    pub async fn register_licence(&self, token: &str) -> Value {
        let body = json!({ "number": "11-22-333333-44", "expires_on": "2035-05-31" });
        json_body(self.put("/members/me/licence", Some(token), &body).await, 200).await
    }

    /// The insurer's callback, signed correctly.
    pub async fn signed_cancellation(&self, body: &Value) -> Response {
        let raw = serde_json::to_vec(body).expect("serialisable body");
        let request = self
            .request(Method::POST, "/insurance/insurer/cancellations", None)
            .header("content-type", "application/json");
        self.send(insurer_signed(request, &raw).body(raw)).await
    }

    pub async fn statement(&self, token: &str, policy_id: &str, from: OffsetDateTime, to: OffsetDateTime) -> Response {
        let (from, to) = (rfc3339(from), rfc3339(to));
        self.get_query(
            &format!("/insurance/policies/{policy_id}/statement"),
            Some(token),
            &[("from", &from), ("to", &to)],
        )
        .await
    }

    /// A policy as staff see it, from `GET /admin/members/{id}/policies`.
    pub async fn policy_as_staff(&self, staff: &str, member_id: &str, policy_id: &str) -> Value {
        let list = json_body(
            self.get(&format!("/admin/members/{member_id}/policies"), Some(staff))
                .await,
            200,
        )
        .await;
        list["items"]
            .as_array()
            .expect("items")
            .iter()
            .find(|p| p["id"] == policy_id)
            .cloned()
            .unwrap_or_else(|| panic!("policy {policy_id} not among {list}"))
    }

    // --- commerce --------------------------------------------------------------------

    pub async fn create_product(&self, admin: &str, price: i64, stock: i64) -> Value {
        let body = json!({ "name": format!("Helmet {}", uuid::Uuid::new_v4()), "price": price, "stock": stock });
        json_body(self.post("/admin/products", Some(admin), &body).await, 201).await
    }

    pub async fn create_campaign(&self, admin: &str, body: &Value) -> Value {
        json_body(self.post("/admin/coupons", Some(admin), body).await, 201).await
    }

    pub async fn charge(&self, token: &str, amount: i64) -> Value {
        json_body(
            self.post("/points/charge", Some(token), &json!({ "amount": amount }))
                .await,
            200,
        )
        .await
    }

    pub async fn balance(&self, token: &str) -> i64 {
        json_body(self.get("/points", Some(token)).await, 200).await["balance"]
            .as_i64()
            .expect("balance")
    }

    /// The newest 100 rows of the member's ledger (the largest page).
    pub async fn history(&self, token: &str) -> Vec<Value> {
        let page = self.get_query("/points/history", Some(token), &[("limit", "100")]);
        json_body(page.await, 200).await["items"]
            .as_array()
            .expect("items")
            .clone()
    }

    /// Places an order of `quantity` units of one product.
    pub async fn order(&self, token: &str, product_id: &Value, quantity: i64) -> Response {
        let body = json!({ "items": [{ "product_id": product_id, "quantity": quantity }] });
        self.post("/orders", Some(token), &body).await
    }

    pub async fn pay(&self, token: &str, order_id: &Value, key: &str) -> Response {
        let path = format!("/orders/{}/payment", order_id.as_str().expect("an order id"));
        self.send(
            self.request(Method::POST, &path, Some(token))
                .header("idempotency-key", key),
        )
        .await
    }

    pub async fn product_stock(&self, product_id: &Value) -> i64 {
        let path = format!("/products/{}", product_id.as_str().expect("a product id"));
        json_body(self.get(&path, None).await, 200).await["stock"]
            .as_i64()
            .expect("stock")
    }
}

pub fn tokens_of(body: &Value) -> Tokens {
    Tokens {
        access: body["access_token"].as_str().expect("access_token").to_owned(),
        refresh: body["refresh_token"].as_str().expect("refresh_token").to_owned(),
    }
}

/// The `id` of a JSON body.
pub fn id(value: &Value) -> &str {
    value["id"].as_str().expect("an id")
}

/// The `items` of a JSON list body.
pub fn items(list: &Value) -> &Vec<Value> {
    list["items"].as_array().expect("a list body")
}

/// A coupon campaign request with a fixed discount.
pub fn fixed_campaign(amount: i64, total_quantity: i64) -> Value {
    json!({ "name": "Spring helmets", "discount": { "kind": "fixed", "amount": amount }, "total_quantity": total_quantity })
}
