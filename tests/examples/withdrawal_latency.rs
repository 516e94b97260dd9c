//! Withdrawal → policy expiry latency (issue: Kafka adapter): how long after a withdrawal
//! commits its rider's policy is expired, end to end through the outbox relay and the
//! `insurance-expiry` consumer.
//!
//! Two set-ups, each with the real server: over Kafka (PostgreSQL and the broker of
//! `scripts/infra.sh`, default settings) and in process (the embedded SQLite default). Riders
//! withdraw one at a time; for each, the clock starts when `withdraw` returns (committed) and
//! stops when a read of the primary sees the policy expired (polled every millisecond).
//!
//! ```sh
//! eval "$(scripts/infra.sh up)"
//! cargo run --release -p tests --example withdrawal_latency -- [samples]
//! ```

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use futures::StreamExt;
use uuid::Uuid;

use app_server::config::Config;
use app_server::server;
use application::members::SignUp;
use core_domain::insurance::PolicyStatus;
use ports::Consistency;

fn base_config() -> Config {
    let mut config = Config::defaults().expect("defaults");
    config.server.listen = "127.0.0.1:0".to_owned();
    config.server.drain = Duration::ZERO;
    config.server.admin_listen = "127.0.0.1:0".to_owned();
    config.auth.jwt_secret = "latency-bench-jwt-secret-0123456789abcdef".to_owned().into();
    config.auth.argon2_memory_kib = 1024;
    config.auth.argon2_iterations = 1;
    // Hundreds of concurrent sign-ups wait for a hashing thread rather than being refused.
    config.auth.hash_queue = 100_000;
    config.log.level = "warn".to_owned();
    config.jobs.interval = Duration::from_secs(3600);
    config
}

/// Withdraws `samples` riders one by one and returns each withdrawal's commit → expiry time.
async fn measure(config: Config, samples: usize) -> Vec<Duration> {
    let running = server::start(config).await.expect("the server starts");
    let services = running.runtime.services.clone();
    let reads = running.runtime.ports.insurance.clone();
    let plan_id = services
        .insurance
        .create_plan("Bench hourly", 6_000)
        .await
        .expect("a plan")
        .id;
    let riders: Vec<_> = futures::stream::iter(0..samples)
        .map(|_| {
            let services = services.clone();
            async move {
                let member = services
                    .members
                    .sign_up(SignUp {
                        email: format!("bench-{}@example.com", Uuid::now_v7().simple()),
                        password: "correct horse battery staple".to_owned(),
                        name: "Bench Rider".to_owned(),
                        phone: "010-1234-5678".to_owned(),
                    })
                    .await
                    .expect("sign-up");
                let policy = services.insurance.enrol(member.id, plan_id, None).await.expect("enrol");
                (member.id, policy.id)
            }
        })
        .buffer_unordered(16)
        .collect()
        .await;
    // Let the sign-up events drain so that each withdrawal finds idle workers.
    tokio::time::sleep(Duration::from_secs(2)).await;

    let mut latencies = Vec::with_capacity(samples);
    for (member, policy) in riders {
        services.members.withdraw(member).await.expect("withdraw");
        let committed = Instant::now();
        let deadline = committed + Duration::from_secs(30);
        loop {
            let current = reads
                .policy(policy, Consistency::Strong)
                .await
                .expect("read the policy")
                .expect("the policy");
            if current.status == PolicyStatus::Expired {
                latencies.push(committed.elapsed());
                break;
            }
            assert!(Instant::now() < deadline, "policy {policy} not expired after 30 s");
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    running.shutdown().await;
    latencies
}

fn report(label: &str, mut latencies: Vec<Duration>) {
    latencies.sort();
    let at = |q: f64| {
        let rank = ((latencies.len() as f64) * q).ceil() as usize;
        latencies[rank.clamp(1, latencies.len()) - 1]
    };
    let mean = latencies.iter().sum::<Duration>() / u32::try_from(latencies.len()).expect("sample count");
    println!(
        "{label:<34} n={:<5} p50={:>7.1} ms  p99={:>7.1} ms  max={:>7.1} ms  mean={:>7.1} ms",
        latencies.len(),
        at(0.50).as_secs_f64() * 1e3,
        at(0.99).as_secs_f64() * 1e3,
        latencies.last().expect("samples").as_secs_f64() * 1e3,
        mean.as_secs_f64() * 1e3,
    );
}

#[tokio::main]
async fn main() {
    let samples: usize = std::env::args()
        .nth(1)
        .map(|s| s.parse().expect("samples: a number"))
        .unwrap_or(300);
    println!("withdrawal commit → policy expired, {samples} sequential withdrawals per set-up");

    match (
        std::env::var("TEST_KAFKA_BROKERS"),
        std::env::var("TEST_PG_PRIMARY_URL"),
    ) {
        (Ok(brokers), Ok(_)) => {
            let pg = tests::services::postgres().await.expect("PostgreSQL");
            let database = tests::services::fresh_pg(&pg).await;
            let mut config = base_config();
            config.database.url = database.primary_url.clone().into();
            config.kafka.brokers = brokers;
            config.kafka.namespace = tests::services::kafka_namespace();
            report("kafka (PostgreSQL, tansu)", measure(config, samples).await);
        }
        _ => println!("kafka: skipped (run `eval \"$(scripts/infra.sh up)\"` for TEST_KAFKA_BROKERS and PostgreSQL)"),
    }

    let dir = tempfile::tempdir().expect("temporary directory");
    let mut config = base_config();
    config.database.url = format!("sqlite://{}", dir.path().join("hexride.db").display()).into();
    report("in process (embedded SQLite)", measure(config, samples).await);
}
