//! Redis-backed hot paths through the real server (issue: Redis adapter), measured against a
//! ceiling taken in the same run:
//!
//! - (a) the cached product read, `GET /api/v1/products/{id}` (the Redis cache, with its
//!   in-process near cache kept coherent by Redis invalidations);
//! - (b) the first-come-first-served coupon issue, `POST /api/v1/coupons/{id}/issue` by many
//!   members (rate-limit script, cached campaign, gate script; the database for the admitted
//!   only), checked at the end: exactly the configured number issued, nobody twice;
//! - (c) a bare axum handler answering (a)'s JSON from memory: the HTTP ceiling of this
//!   machine with this load generator.
//!
//! The load generator is in this file: 64 connections, each one HTTP/1.1 keep-alive
//! connection driven by a bare hyper client. (a) and (c) alternate in rounds of equal length,
//! so that whatever else runs on the machine weighs on both alike; (b) runs once, from a
//! fresh campaign. The client shares the cores with the server, PostgreSQL and Redis.
//!
//! ```sh
//! eval "$(scripts/infra.sh up)"
//! cargo run --release -p tests --example redis_bench -- [seconds=10] [coupons=1000] [members=5000] [near=10000]
//! ```
//!
//! `near` is `redis.near_cache_entries`: 0 makes every cached read a Redis round trip.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper::{Method, Request, StatusCode, header};
use hyper_util::rt::TokioIo;

use tests::cluster;

const CONNECTIONS: usize = 64;
const WARM_UP: Duration = Duration::from_secs(2);
/// Rounds in which (a) and (c) alternate.
const ROUNDS: u32 = 5;

/// What one scenario sends: a method and path, and for each request a bearer token (or none).
#[derive(Clone)]
struct Scenario {
    method: Method,
    path: String,
    tokens: Arc<Vec<String>>,
}

/// The answers within a measured window (of one connection, or merged).
#[derive(Default)]
struct Sample {
    latencies_us: Vec<u32>,
    by_status: BTreeMap<u16, u64>,
    failed: u64,
    seconds: f64,
    /// Seconds from the start of the window to the last `201 Created`.
    last_created_s: Option<f64>,
}

impl Sample {
    fn merge(&mut self, other: Sample) {
        self.latencies_us.extend(other.latencies_us);
        for (status, n) in other.by_status {
            *self.by_status.entry(status).or_default() += n;
        }
        self.failed += other.failed;
        self.seconds += other.seconds;
        if let Some(t) = other.last_created_s {
            self.last_created_s = Some(self.last_created_s.map_or(t, |s| s.max(t)));
        }
    }
}

/// Drives one keep-alive connection until `until`, recording what is sent from
/// `measure_from` on.
async fn connection(
    addr: SocketAddr,
    scenario: Scenario,
    first: usize,
    measure_from: Instant,
    until: Instant,
) -> Sample {
    let mut sample = Sample::default();
    let stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    stream.set_nodelay(true).expect("nodelay");
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .expect("handshake");
    tokio::spawn(conn);
    let host = addr.to_string();
    let mut next = first;
    while Instant::now() < until {
        let mut request = Request::builder()
            .method(scenario.method.clone())
            .uri(&scenario.path)
            .header(header::HOST, &host);
        if !scenario.tokens.is_empty() {
            let token = &scenario.tokens[next % scenario.tokens.len()];
            request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
            next += CONNECTIONS;
        }
        let request = request.body(Empty::<Bytes>::new()).expect("request");
        let started = Instant::now();
        let answer = async {
            sender.ready().await?;
            let response = sender.send_request(request).await?;
            let status = response.status();
            response.into_body().collect().await?;
            Ok::<StatusCode, hyper::Error>(status)
        }
        .await;
        match answer {
            Ok(_) if started < measure_from => {}
            Ok(status) => {
                let latency = u32::try_from(started.elapsed().as_micros()).unwrap_or(u32::MAX);
                sample.latencies_us.push(latency);
                *sample.by_status.entry(status.as_u16()).or_default() += 1;
                if status == StatusCode::CREATED {
                    sample.last_created_s = Some(measure_from.elapsed().as_secs_f64());
                }
            }
            Err(_) => {
                sample.failed += 1;
                break;
            }
        }
    }
    sample
}

/// `scenario` on 64 connections for `warm_up` (not recorded) and then `window`.
async fn run(addr: SocketAddr, scenario: &Scenario, window: Duration, warm_up: Duration) -> Sample {
    let measure_from = Instant::now() + warm_up;
    let until = measure_from + window;
    let tasks: Vec<_> = (0..CONNECTIONS)
        .map(|i| tokio::spawn(connection(addr, scenario.clone(), i, measure_from, until)))
        .collect();
    let mut merged = Sample::default();
    for task in tasks {
        merged.merge(task.await.expect("connection task"));
    }
    merged.seconds = window.as_secs_f64();
    merged
}

/// Prints a line for `sample` and returns its requests/s.
fn report(label: &str, mut sample: Sample) -> (f64, BTreeMap<u16, u64>) {
    sample.latencies_us.sort_unstable();
    let latencies = &sample.latencies_us;
    let percentile = |p: f64| {
        let i = ((latencies.len() as f64 * p).ceil() as usize).clamp(1, latencies.len().max(1)) - 1;
        f64::from(latencies.get(i).copied().unwrap_or_default()) / 1000.0
    };
    let rate = latencies.len() as f64 / sample.seconds;
    println!(
        "{label:<34} {rate:>9.0} req/s   p50 {:>6.2} ms   p99 {:>6.2} ms   statuses {:?}{}",
        percentile(0.50),
        percentile(0.99),
        sample.by_status,
        if sample.failed > 0 {
            format!("   {} connection failures", sample.failed)
        } else {
            String::new()
        }
    );
    if let Some(at) = sample.last_created_s {
        println!("{:<34} the last 201 came {at:.2} s into the window", "");
    }
    (rate, sample.by_status)
}

/// An axum server answering `GET /api/v1/products/{id}` with `body` from memory.
async fn bare_server(body: Bytes) -> SocketAddr {
    let app = axum::Router::new().route(
        "/api/v1/products/{id}",
        axum::routing::get(move || {
            let body = body.clone();
            async move { ([(header::CONTENT_TYPE, "application/json")], body) }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("address");
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let seconds: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(10);
    let coupons: i64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(1_000);
    let members: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(5_000);
    let near: Option<usize> = args.next().and_then(|a| a.parse().ok());

    let redis = tests::services::redis().await.expect("Redis (scripts/infra.sh up)");
    let cluster = cluster::start(1, &redis, |config| {
        config.log.level = "error".to_owned();
        config.database.max_connections = 16;
        if let Some(near) = near {
            config.redis.near_cache_entries = near;
        }
    })
    .await
    .expect("PostgreSQL (scripts/infra.sh up)");
    let instance = &cluster.instances[0];
    let addr: SocketAddr = instance.address.trim_start_matches("http://").parse().expect("address");

    let product = instance
        .runtime()
        .services
        .catalog
        .create("Helmet", 30_000, 100)
        .await
        .expect("product");
    let product_path = format!("/api/v1/products/{}", product.id);
    let product_json = reqwest::get(instance.api(&format!("/products/{}", product.id)))
        .await
        .expect("product read")
        .bytes()
        .await
        .expect("product body");
    println!("setting up: {members} members, a campaign of {coupons} coupons …");
    let riders = cluster.riders(members).await;
    let campaign = cluster.campaign(coupons).await;
    let bare = bare_server(product_json).await;

    println!(
        "\n{CONNECTIONS} connections, {seconds} s measured per scenario ((a) and (c) alternating in {ROUNDS} rounds \
         after a {} s warm-up each), {} cores",
        WARM_UP.as_secs(),
        std::thread::available_parallelism().map_or(0, usize::from)
    );
    let read = Scenario {
        method: Method::GET,
        path: product_path,
        tokens: Arc::new(Vec::new()),
    };
    let round = Duration::from_secs(seconds) / ROUNDS;
    let (mut ceiling, mut cached) = (Sample::default(), Sample::default());
    run(bare, &read, Duration::ZERO, WARM_UP).await;
    run(addr, &read, Duration::ZERO, WARM_UP).await;
    for _ in 0..ROUNDS {
        ceiling.merge(run(bare, &read, round, Duration::ZERO).await);
        cached.merge(run(addr, &read, round, Duration::ZERO).await);
    }
    let (ceiling, _) = report("(c) bare axum handler (ceiling)", ceiling);
    let (cached, _) = report("(a) cached product read", cached);
    // No warm-up: the crowd arrives at a fresh campaign, and every request counts.
    let issue = Scenario {
        method: Method::POST,
        path: format!("/api/v1/coupons/{campaign}/issue"),
        tokens: Arc::new(riders.into_iter().map(|(_, token)| token).collect()),
    };
    let (issue_rate, statuses) = report(
        "(b) coupon issue",
        run(addr, &issue, Duration::from_secs(seconds), Duration::ZERO).await,
    );

    let (issued, distinct, counter) = cluster.issued(campaign).await;
    let created = statuses.get(&201).copied().unwrap_or_default();
    let exact = issued == coupons && distinct == coupons && counter == coupons && created == coupons.unsigned_abs();
    println!(
        "\ncached read / ceiling: {:.0} %   (goal ≥ 50 %)",
        100.0 * cached / ceiling
    );
    println!(
        "coupon issue: {issue_rate:.0} req/s (goal ≥ 5,000); {issued} coupons issued to {distinct} members, campaign \
         counter {counter}, {created} answers 201, configured {coupons}: {}",
        if exact { "exact" } else { "MISMATCH" }
    );
    cluster.shutdown().await;
}
