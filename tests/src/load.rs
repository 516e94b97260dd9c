//! The members mix through a load balancer, as the cluster tests and `cluster_load` drive it:
//! each member in turn reads their profile, balance and history, then charges points with an
//! `Idempotency-Key` (3 reads : 1 write). Every answer is tallied, every failure kept with
//! what the client saw, and every charge whose answer was lost can be sent again with the
//! same key, so the balances can be checked to the point.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use reqwest::{Client, Method};
use serde_json::{Value, json};

use crate::cluster::PASSWORD;

/// A member of the mix.
#[derive(Debug, Clone)]
pub struct Member {
    pub email: String,
    pub token: String,
}

/// A request of the mix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Op {
    Profile,
    Balance,
    History,
    Charge,
    /// A product read (`GET /products/{id}`), cached.
    Product,
    /// An order placed and paid (two keyed requests).
    OrderAndPay,
}

impl Op {
    const MIX: [Op; 4] = [Op::Profile, Op::Balance, Op::History, Op::Charge];

    fn path(self) -> &'static str {
        match self {
            Op::Profile => "/members/me",
            Op::Balance => "/points",
            Op::History => "/points/history",
            Op::Charge => "/points/charge",
            Op::Product => "/products",
            Op::OrderAndPay => "/orders",
        }
    }
}

/// Whether the mix's charges carry an `Idempotency-Key` (and may be sent again).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Charges {
    Keyed,
    Unkeyed,
}

/// A request the client saw fail: a transport error or an answer that is not 2xx.
#[derive(Debug, Clone)]
pub struct Failure {
    pub op: Op,
    /// The status, or the transport error.
    pub what: String,
    /// A keyed charge's member, key and amount, to send it again.
    pub charge: Option<(usize, String, i64)>,
    /// How long the client waited for the failure.
    pub after: Duration,
}

/// What one run of the mix did.
#[derive(Debug, Default)]
pub struct Tally {
    /// Requests answered 2xx.
    pub ok: u64,
    pub failures: Vec<Failure>,
    /// Points each member was acknowledged as charged.
    pub charged: Vec<i64>,
    /// Every answered request's latency, by op.
    pub latencies: Vec<(Op, Duration)>,
    pub elapsed: Duration,
}

impl Tally {
    /// One request's outcome, sent at `sent`; a failed keyed charge keeps what it takes to
    /// send it again.
    fn record(&mut self, op: Op, sent: Instant, answer: Result<(), String>, charge: Option<(usize, String, i64)>) {
        match answer {
            Ok(()) => {
                self.ok += 1;
                self.latencies.push((op, sent.elapsed()));
            }
            Err(what) => self.failures.push(Failure {
                op,
                what,
                charge,
                after: sent.elapsed(),
            }),
        }
    }

    /// Adds a task's requests to these (charges are per member: the caller places them).
    fn absorb(&mut self, other: Tally) {
        self.ok += other.ok;
        self.failures.extend(other.failures);
        self.latencies.extend(other.latencies);
    }

    /// Requests answered 2xx per second.
    pub fn rate(&self) -> f64 {
        self.ok as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// The `q` quantile (0–1) of the latencies of `ops` (every op when empty).
    pub fn quantile(&self, ops: &[Op], q: f64) -> Duration {
        let mut all: Vec<Duration> = self
            .latencies
            .iter()
            .filter(|(op, _)| ops.is_empty() || ops.contains(op))
            .map(|(_, d)| *d)
            .collect();
        if all.is_empty() {
            return Duration::ZERO;
        }
        all.sort_unstable();
        let index = ((all.len() as f64 * q).ceil() as usize).clamp(1, all.len()) - 1;
        all[index]
    }
}

/// The access token of `email`'s login through `api`.
pub async fn login(client: &Client, api: &str, email: &str, password: &str) -> String {
    let login: Value = client
        .post(format!("{api}/auth/login"))
        .json(&json!({"email": email, "password": password}))
        .send()
        .await
        .expect("login")
        .json()
        .await
        .expect("tokens");
    login["access_token"]
        .as_str()
        .unwrap_or_else(|| panic!("no access token for {email}: {login}"))
        .to_owned()
}

/// `n` members signed up and logged in through `api` (`…/api/v1`).
pub async fn members(client: &Client, api: &str, n: usize) -> Vec<Member> {
    let mut members = Vec::with_capacity(n);
    for i in 0..n {
        let email = format!("load-{i}-{}@example.com", uuid::Uuid::now_v7().simple());
        let body = json!({"email": email, "password": PASSWORD, "name": "Load", "phone": "01012345678"});
        let status = client
            .post(format!("{api}/members"))
            .json(&body)
            .send()
            .await
            .expect("sign up")
            .status();
        assert_eq!(status.as_u16(), 201, "sign up of {email}");
        let token = login(client, api, &email, PASSWORD).await;
        members.push(Member { email, token });
    }
    members
}

/// The mix, one connection's worth of requests per member at a time, until `stop` is set.
pub async fn run(client: &Client, api: &str, members: &[Member], charges: Charges, stop: Arc<AtomicBool>) -> Tally {
    let started = Instant::now();
    let tasks: Vec<_> = members
        .iter()
        .enumerate()
        .map(|(index, member)| {
            let (client, api, token, stop) = (client.clone(), api.to_owned(), member.token.clone(), stop.clone());
            tokio::spawn(async move {
                let mut tally = Tally::default();
                let mut charged = 0;
                let mut turn = 0usize;
                while !stop.load(Ordering::Relaxed) {
                    let op = Op::MIX[turn % Op::MIX.len()];
                    turn += 1;
                    let amount = (turn % 7 + 1) as i64;
                    let key = (op == Op::Charge && charges == Charges::Keyed).then(|| uuid::Uuid::now_v7().to_string());
                    let sent = Instant::now();
                    let answer = match op {
                        Op::Charge => charge(&client, &api, &token, key.as_deref(), amount).await,
                        _ => send(&client, Method::GET, &api, op.path(), &token).await,
                    };
                    if op == Op::Charge && answer.is_ok() {
                        charged += amount;
                    }
                    tally.record(op, sent, answer, key.map(|key| (index, key, amount)));
                }
                (index, charged, tally)
            })
        })
        .collect();
    let mut total = Tally {
        charged: vec![0; members.len()],
        ..Tally::default()
    };
    for task in tasks {
        let (index, charged, tally) = task.await.expect("a load task");
        total.absorb(tally);
        total.charged[index] = charged;
    }
    total.elapsed = started.elapsed();
    total
}

/// The mix for `duration`.
pub async fn run_for(client: &Client, api: &str, members: &[Member], charges: Charges, duration: Duration) -> Tally {
    let stop = Arc::new(AtomicBool::new(false));
    let timer = tokio::spawn({
        let stop = stop.clone();
        async move {
            tokio::time::sleep(duration).await;
            stop.store(true, Ordering::Relaxed);
        }
    });
    let tally = run(client, api, members, charges, stop).await;
    timer.await.expect("the mix's timer");
    tally
}

/// Each member in a loop for `duration`: an order of one unit of one of `products` (spread so
/// members rarely share one at a time), paid, each with a key of its own.
pub async fn orders_for(
    client: &Client,
    api: &str,
    members: &[Member],
    products: &[String],
    duration: Duration,
) -> Tally {
    let (client, api) = (client.clone(), api.to_owned());
    let tokens: Arc<Vec<String>> = Arc::new(members.iter().map(|m| m.token.clone()).collect());
    let products = Arc::new(products.to_vec());
    timed(tokens.len(), duration, Op::OrderAndPay, move |task, turn| {
        let (client, api, token) = (client.clone(), api.clone(), tokens[task].clone());
        let product = products[(task * 31 + turn * 7) % products.len()].clone();
        async move { order_and_pay(&client, &api, &token, &product).await }
    })
    .await
}

/// Sends every failed keyed charge of `tally` again, with its key, until it is answered (a lost
/// answer is a charge the client cannot know about: the key makes asking again safe), and
/// counts it as charged. Panics when one is still refused after `attempts`.
pub async fn retry_charges(client: &Client, api: &str, members: &[Member], tally: &mut Tally, attempts: u32) {
    for failure in &tally.failures {
        let Some((index, key, amount)) = &failure.charge else {
            continue;
        };
        let mut last = String::new();
        let mut answered = false;
        for _ in 0..attempts {
            match charge(client, api, &members[*index].token, Some(key), *amount).await {
                Ok(()) => {
                    answered = true;
                    break;
                }
                Err(what) => last = what,
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        assert!(answered, "charge {key} still failing after {attempts} attempts: {last}");
        tally.charged[*index] += amount;
    }
}

/// Each member's balance, read on the primary's terms (the member's own read-your-writes).
pub async fn balances(client: &Client, api: &str, members: &[Member]) -> Vec<i64> {
    let mut balances = Vec::with_capacity(members.len());
    for member in members {
        let body: Value = client
            .get(format!("{api}/points"))
            .bearer_auth(&member.token)
            .send()
            .await
            .expect("balance")
            .json()
            .await
            .expect("a balance body");
        balances.push(body["balance"].as_i64().expect("a balance"));
    }
    balances
}

/// `concurrency` tasks each running `op(task, turn)` again and again for `duration`; each
/// success counts as one `kind` with its latency.
pub async fn timed<F, Fut>(concurrency: usize, duration: Duration, kind: Op, op: F) -> Tally
where
    F: Fn(usize, usize) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), String>> + Send,
{
    let op = Arc::new(op);
    let started = Instant::now();
    let tasks: Vec<_> = (0..concurrency)
        .map(|task| {
            let op = op.clone();
            tokio::spawn(async move {
                let mut tally = Tally::default();
                let mut turn = 0;
                while started.elapsed() < duration {
                    let sent = Instant::now();
                    let answer = op(task, turn).await;
                    tally.record(kind, sent, answer, None);
                    turn += 1;
                }
                tally
            })
        })
        .collect();
    let mut total = Tally::default();
    for task in tasks {
        total.absorb(task.await.expect("a load task"));
    }
    total.elapsed = started.elapsed();
    total
}

/// `GET {api}/products/{id}`, anonymous.
pub async fn read_product(client: &Client, api: &str, id: &str) -> Result<(), String> {
    answer(client.get(format!("{api}{}/{id}", Op::Product.path()))).await
}

/// Places an order of one unit of `product` and pays it, each with a key of its own.
pub async fn order_and_pay(client: &Client, api: &str, token: &str, product: &str) -> Result<(), String> {
    let placed = client
        .post(format!("{api}{}", Op::OrderAndPay.path()))
        .bearer_auth(token)
        .header("Idempotency-Key", uuid::Uuid::now_v7().to_string())
        .json(&json!({"items": [{"product_id": product, "quantity": 1}]}))
        .timeout(Duration::from_secs(40))
        .send()
        .await
        .map_err(|e| format!("transport: {e}"))?;
    if !placed.status().is_success() {
        return Err(format!("order: {}", placed.status()));
    }
    let order: Value = placed.json().await.map_err(|e| format!("order body: {e}"))?;
    let id = order["id"].as_str().ok_or("order without an id")?;
    let paid = client
        .post(format!("{api}/orders/{id}/payment"))
        .bearer_auth(token)
        .header("Idempotency-Key", uuid::Uuid::now_v7().to_string());
    answer(paid).await
}

/// Charges `amount` points to the member behind `token` (a fresh key).
pub async fn charge_points(client: &Client, api: &str, token: &str, amount: i64) -> Result<(), String> {
    charge(client, api, token, Some(&uuid::Uuid::now_v7().to_string()), amount).await
}

async fn charge(client: &Client, api: &str, token: &str, key: Option<&str>, amount: i64) -> Result<(), String> {
    let mut request = client
        .post(format!("{api}{}", Op::Charge.path()))
        .bearer_auth(token)
        .json(&json!({"amount": amount}));
    if let Some(key) = key {
        request = request.header("Idempotency-Key", key);
    }
    answer(request).await
}

async fn send(client: &Client, method: Method, api: &str, path: &str, token: &str) -> Result<(), String> {
    answer(client.request(method, format!("{api}{path}")).bearer_auth(token)).await
}

async fn answer(request: reqwest::RequestBuilder) -> Result<(), String> {
    match request.timeout(Duration::from_secs(40)).send().await {
        Ok(response) if response.status().is_success() => {
            // Read the body: the connection goes back to the pool only once it is.
            response.bytes().await.map(|_| ()).map_err(|e| format!("body: {e}"))
        }
        Ok(response) => {
            let status = response.status();
            let body = response.text().await.unwrap_or_default();
            Err(format!("{status} {}", body.chars().take(200).collect::<String>()))
        }
        Err(e) => Err(format!("transport: {e}")),
    }
}
