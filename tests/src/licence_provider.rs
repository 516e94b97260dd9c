//! A licence-verification provider for tests: a real HTTP server on a free port, speaking
//! the provider's contract (`app_server::licence_provider`), whose answer for each licence
//! number the test sets, and which counts what it was asked.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::{Value, json};

/// What the provider answers about one licence number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// `{"status": "valid", "expires_on": <date>}`.
    Valid(String),
    /// `{"status": "rejected", "reason": <reason>}`.
    Rejected(String),
    /// This HTTP status, no verdict.
    Status(u16),
    /// A 200 whose body is not an answer.
    Garbled,
    /// An answer after this long.
    Slow(Duration, Box<Answer>),
}

#[derive(Default)]
struct Book {
    answers: HashMap<String, Answer>,
    otherwise: Option<Answer>,
    asked: HashMap<String, usize>,
}

/// The running provider. Numbers without an answer set ([`Self::answer`],
/// [`Self::answer_others`]) are valid until 2036-12-31.
#[derive(Clone)]
pub struct FakeProvider {
    book: Arc<Mutex<Book>>,
    pub url: String,
}

impl FakeProvider {
    /// Starts one on a free port of 127.0.0.1; it stops with the test's runtime.
    pub async fn start() -> Self {
        let book = Arc::new(Mutex::new(Book::default()));
        let app = Router::new().route("/verify", post(verify)).with_state(book.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("a free port");
        let addr: SocketAddr = listener.local_addr().expect("its address");
        tokio::spawn(async move { axum::serve(listener, app).await.expect("the fake provider serves") });
        Self {
            book,
            url: format!("http://{addr}/verify"),
        }
    }

    /// From now on, `number` is answered with `answer`.
    pub fn answer(&self, number: &str, answer: Answer) {
        self.book.lock().unwrap().answers.insert(number.to_owned(), answer);
    }

    /// From now on, numbers without their own answer are answered with `answer`.
    pub fn answer_others(&self, answer: Answer) {
        self.book.lock().unwrap().otherwise = Some(answer);
    }

    /// How many times `number` was asked about.
    pub fn asked(&self, number: &str) -> usize {
        self.book.lock().unwrap().asked.get(number).copied().unwrap_or(0)
    }

    /// How many requests were made in all.
    pub fn requests(&self) -> usize {
        self.book.lock().unwrap().asked.values().sum()
    }
}

async fn verify(State(book): State<Arc<Mutex<Book>>>, axum::Json(body): axum::Json<Value>) -> Response {
    let number = body["number"].as_str().unwrap_or_default().to_owned();
    let answer = {
        let mut book = book.lock().unwrap();
        *book.asked.entry(number.clone()).or_default() += 1;
        book.answers.get(&number).or(book.otherwise.as_ref()).cloned()
    };
    respond(answer.unwrap_or_else(|| Answer::Valid("2036-12-31".into()))).await
}

async fn respond(mut answer: Answer) -> Response {
    loop {
        return match answer {
            Answer::Valid(expires_on) => {
                axum::Json(json!({"status": "valid", "expires_on": expires_on})).into_response()
            }
            Answer::Rejected(reason) => axum::Json(json!({"status": "rejected", "reason": reason})).into_response(),
            Answer::Status(code) => StatusCode::from_u16(code)
                .unwrap_or(StatusCode::IM_A_TEAPOT)
                .into_response(),
            Answer::Garbled => axum::Json(json!({"status": "perhaps"})).into_response(),
            Answer::Slow(pause, then) => {
                tokio::time::sleep(pause).await;
                answer = *then;
                continue;
            }
        };
    }
}

/// Writes `n` active riders, `rider<i>@<domain>` with `password_hash`, each with a valid
/// licence (`BL-<i>`, to 2035-05-31) last verified `verified_days_ago` days ago, on a
/// PostgreSQL database of hexride's schema: server-side, in one statement each.
pub async fn seed_licensed_riders(
    pool: &sqlx::PgPool,
    n: u64,
    domain: &str,
    password_hash: &str,
    verified_days_ago: i32,
) {
    sqlx::query(
        "insert into members (id, email, name, phone, password_hash, role, status, created_at, updated_at) \
         select md5($3 || i)::uuid, 'rider' || i || '@' || $3, 'Rider ' || i, \
                '010' || lpad(i::text, 8, '0'), $1, 'rider', 'active', now(), now() \
         from generate_series(1, $2) i",
    )
    .bind(password_hash)
    .bind(i64::try_from(n).expect("a count"))
    .bind(domain)
    .execute(pool)
    .await
    .expect("riders");
    sqlx::query(
        "insert into licences (member_id, number, expires_on, status, last_verified_at, registered_at, \
                               created_at, updated_at) \
         select md5($2 || i)::uuid, 'BL-' || lpad(i::text, 8, '0'), '2035-05-31', 'valid', \
                now() - make_interval(days => $3), now() - make_interval(days => $3), now(), now() \
         from generate_series(1, $1) i",
    )
    .bind(i64::try_from(n).expect("a count"))
    .bind(domain)
    .bind(verified_days_ago)
    .execute(pool)
    .await
    .expect("licences");
    sqlx::query("analyze members, licences")
        .execute(pool)
        .await
        .expect("analyze");
}
