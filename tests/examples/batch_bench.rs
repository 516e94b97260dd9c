//! Night batches against daytime traffic (issue 14): the members mix, login included, at a
//! fixed request rate on PostgreSQL with its streaming replica, in slices alone and slices
//! while the licence re-verification batch works through the riders' licences, in one run.
//!
//! The slices come in pairs, alone then with the batch, and the other way round in every
//! second pair, so a drift of the shared machine weighs on both sides alike; between its
//! slices the batch is stopped mid-chunk, as a killed instance would be, and the next one
//! resumes it. The verdict compares the login p99 over every slice with the batch to the one
//! over every slice alone: four times the logins of one slice, so one stall of the machine
//! moves it less.
//!
//! The riders (100,000 by default) and their licences, all due for re-verification, are
//! written server-side in one statement each (their password hash is the server's own
//! argon2id of one password, so logins verify it for real). The provider is
//! `tests::licence_provider::FakeProvider`, a real HTTP server in this process answering after
//! `BATCH_BENCH_PROVIDER_MS` (default 5 ms). Passwords are hashed at the default argon2id
//! cost. The batch runs with the configuration's `[jobs]` settings (chunks of 200, at most
//! 500 rows/s; `APP__JOBS__MAX_ROWS_PER_SECOND` changes the pace).
//!
//! Requests are sent open-loop: one every `1/RATE` s whatever the answers do, in the order
//! login (a random rider), profile, balance, history, keyed point charge (one in five each);
//! the profile, balance, history and charge go to 100 riders logged in beforehand.
//!
//! Then it prints each online query's time on the scale database (a million riders:
//! `tests::scale::print_query_times`, as `examples/query_times.rs`), filling it first when
//! it is missing (minutes); `BATCH_BENCH_QUERY_TIMES=0` leaves that out.
//!
//! ```sh
//! eval "$(scripts/infra.sh up)"
//! cargo run --release -p tests --example batch_bench -- [RIDERS] [RATE] [SECONDS] [PAIRS]
//! # defaults: 100000 riders, 100 requests/s, 30 s per slice, 4 pairs of slices
//! ```

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::Client;

use app_server::config::Config;
use app_server::server;
use application::jobs::RunOutcome;
use application::licences::ReverifyLicences;
use tests::licence_provider::{Answer, FakeProvider};
use tests::load;

const PASSWORD: &str = tests::cluster::PASSWORD;
/// Riders logged in beforehand for the reads and charges.
const SESSIONS: usize = 100;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Login,
    Other,
}

/// What one phase saw: each answered request's kind and latency, and the failures.
#[derive(Default)]
struct Phase {
    latencies: Vec<(Kind, Duration)>,
    errors: Vec<String>,
    sent: usize,
    elapsed: Duration,
}

impl Phase {
    /// Every slice's requests as one phase.
    fn pooled(slices: Vec<Phase>) -> Phase {
        slices.into_iter().fold(Phase::default(), |mut all, p| {
            all.latencies.extend(p.latencies);
            all.errors.extend(p.errors);
            all.sent += p.sent;
            all.elapsed += p.elapsed;
            all
        })
    }

    fn quantile(&self, kind: Option<Kind>, q: f64) -> Duration {
        let mut all: Vec<Duration> = self
            .latencies
            .iter()
            .filter(|(k, _)| kind.is_none_or(|kind| *k == kind))
            .map(|(_, d)| *d)
            .collect();
        if all.is_empty() {
            return Duration::ZERO;
        }
        all.sort_unstable();
        all[((all.len() as f64 * q).ceil() as usize).clamp(1, all.len()) - 1]
    }
}

fn arg(n: usize, default: u64) -> u64 {
    std::env::args().nth(n).and_then(|a| a.parse().ok()).unwrap_or(default)
}

async fn one(client: &Client, api: &str, op: usize, riders: u64, tokens: &[String]) -> (Kind, Result<(), String>) {
    let token = &tokens[op / 5 % tokens.len()];
    match op % 5 {
        0 => {
            // Spread over every rider (Knuth's multiplicative hash of the request number).
            let rider = (op as u64).wrapping_mul(2_654_435_761) % riders + 1;
            let answer = client
                .post(format!("{api}/auth/login"))
                .json(&serde_json::json!({"email": format!("rider{rider}@bench.example"), "password": PASSWORD}))
                .timeout(Duration::from_secs(30))
                .send()
                .await;
            let result = match answer {
                Ok(r) if r.status().is_success() => r.bytes().await.map(|_| ()).map_err(|e| e.to_string()),
                Ok(r) => Err(format!("login {}", r.status())),
                Err(e) => Err(format!("login: {e}")),
            };
            (Kind::Login, result)
        }
        4 => (Kind::Other, load::charge_points(client, api, token, 100).await),
        n => {
            let path = ["/members/me", "/points", "/points/history"][n - 1];
            let answer = client
                .get(format!("{api}{path}"))
                .bearer_auth(token)
                .timeout(Duration::from_secs(30))
                .send()
                .await;
            let result = match answer {
                Ok(r) if r.status().is_success() => r.bytes().await.map(|_| ()).map_err(|e| e.to_string()),
                Ok(r) => Err(format!("{path} {}", r.status())),
                Err(e) => Err(format!("{path}: {e}")),
            };
            (Kind::Other, result)
        }
    }
}

/// The mix at `rate` requests per second for `seconds`, open-loop, numbering its requests
/// from `first_op` (so every slice logs in other riders).
async fn phase(
    client: &Client,
    api: &str,
    rate: u64,
    seconds: u64,
    first_op: usize,
    riders: u64,
    tokens: &Arc<Vec<String>>,
) -> Phase {
    let seen = Arc::new(Mutex::new(Phase::default()));
    let started = Instant::now();
    let mut ticker = tokio::time::interval(Duration::from_secs_f64(1.0 / rate as f64));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let total = (rate * seconds) as usize;
    let mut tasks = Vec::with_capacity(total);
    for op in first_op..first_op + total {
        ticker.tick().await;
        let (client, api, tokens, seen) = (client.clone(), api.to_owned(), tokens.clone(), seen.clone());
        tasks.push(tokio::spawn(async move {
            let sent = Instant::now();
            let (kind, result) = one(&client, &api, op, riders, &tokens).await;
            let mut seen = seen.lock().unwrap();
            match result {
                Ok(()) => seen.latencies.push((kind, sent.elapsed())),
                Err(e) => seen.errors.push(e),
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let mut phase = std::mem::take(&mut *seen.lock().unwrap());
    phase.sent = total;
    phase.elapsed = started.elapsed();
    phase
}

fn ms(d: Duration) -> String {
    format!("{:.1}", d.as_secs_f64() * 1000.0)
}

#[tokio::main]
async fn main() {
    let riders = arg(1, 100_000);
    let rate = arg(2, 100);
    let seconds = arg(3, 30);
    let pairs = arg(4, 4);
    let provider_ms = std::env::var("BATCH_BENCH_PROVIDER_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5);

    let provider = FakeProvider::start().await;
    provider.answer_others(Answer::Slow(
        Duration::from_millis(provider_ms),
        Box::new(Answer::Valid("2036-12-31".into())),
    ));
    let pg = tests::services::postgres_with_replica()
        .await
        .expect("PostgreSQL with its replica (scripts/infra.sh up)");
    let db = tests::services::fresh_pg(&pg).await;
    let mut config = Config::load(None).expect("the configuration (defaults and APP__ variables)");
    config.database.url = db.primary_url.clone().into();
    config.database.replica_urls = vec![db.replica_url.clone().into()];
    config.licence_provider.url = provider.url.clone();
    tests::cluster::for_load(&mut config);
    // Logins are what is measured: at the real argon2id cost, not the load tests' cheap one.
    let defaults = Config::defaults().expect("defaults").auth;
    config.auth.argon2_memory_kib = defaults.argon2_memory_kib;
    config.auth.argon2_iterations = defaults.argon2_iterations;
    // The batch runs when this benchmark says, not on the scheduler's tick.
    config.jobs.interval = Duration::from_secs(24 * 3600);
    config.log.level = "error".into();
    let settings = config.jobs.settings();
    let running = server::start(config).await.expect("the server starts");
    let runtime = running.runtime.clone();
    let api = format!("http://{}/api/v1", running.addr.expect("listening"));

    let hash = runtime.ports.hasher.hash(PASSWORD).await.expect("a hash");
    let seeding = Instant::now();
    let pool = sqlx::PgPool::connect(&db.primary_url).await.expect("connect");
    tests::licence_provider::seed_licensed_riders(&pool, riders, "bench.example", &hash, 100).await;
    pool.close().await;
    println!(
        "seeded {riders} riders with due licences in {:.1} s",
        seeding.elapsed().as_secs_f64()
    );

    let client = Client::builder().pool_max_idle_per_host(64).build().expect("client");
    let mut tokens = Vec::with_capacity(SESSIONS);
    for i in 1..=SESSIONS {
        tokens.push(load::login(&client, &api, &format!("rider{i}@bench.example"), PASSWORD).await);
    }
    let tokens = Arc::new(tokens);

    let runner = Arc::new(runtime.job_runner());
    let job = Arc::new(ReverifyLicences::new(
        runtime.ports.clone(),
        runtime.config.licences.due_policy(),
    ));
    let mut alone = Vec::with_capacity(pairs as usize);
    let mut during = Vec::with_capacity(pairs as usize);
    let (mut batch_time, mut finished, mut first_op) = (Duration::ZERO, false, 0);
    println!("members mix at {rate} req/s, {pairs} pairs of {seconds}-second slices alone and with the licence batch");
    for pair in 0..pairs {
        // Alone first in even pairs, the batch first in odd ones (ABBA): a drift of the
        // machine over the run weighs on both sides alike.
        let order = if pair % 2 == 0 { [false, true] } else { [true, false] };
        for with_batch in order {
            let batch = with_batch.then(|| {
                let (runner, job) = (runner.clone(), job.clone());
                tokio::spawn(async move { runner.run(&*job).await })
            });
            let started = Instant::now();
            let slice = phase(&client, &api, rate, seconds, first_op, riders, &tokens).await;
            first_op += slice.sent;
            if let Some(batch) = batch {
                // Stopped mid-chunk like a killed instance: the next slice's run takes the
                // lease back (same holder) and resumes after the last committed chunk.
                batch_time += started.elapsed();
                batch.abort();
                finished |= matches!(batch.await, Ok(Ok(RunOutcome::Finished { .. })));
                during.push(slice);
            } else {
                alone.push(slice);
            }
        }
    }
    let states = runtime.ports.jobs.job_states().await.expect("job states");
    let done = states
        .iter()
        .find(|s| s.name == application::licences::REVERIFY_JOB)
        .map_or(0, |s| s.rows_done);

    println!();
    println!("| slice | sent | req/s | login p50 ms | login p99 ms | all p50 ms | all p99 ms | errors |");
    println!("|---|---|---|---|---|---|---|---|");
    let row = |name: String, p: &Phase| {
        println!(
            "| {name} | {} | {:.1} | {} | {} | {} | {} | {} |",
            p.sent,
            p.latencies.len() as f64 / p.elapsed.as_secs_f64(),
            ms(p.quantile(Some(Kind::Login), 0.5)),
            ms(p.quantile(Some(Kind::Login), 0.99)),
            ms(p.quantile(None, 0.5)),
            ms(p.quantile(None, 0.99)),
            p.errors.len()
        );
    };
    for (pair, (a, w)) in alone.iter().zip(&during).enumerate() {
        row(format!("pair {} alone", pair + 1), a);
        row(format!("pair {} with the batch", pair + 1), w);
    }
    let (alone, during) = (Phase::pooled(alone), Phase::pooled(during));
    row("all alone".into(), &alone);
    row("all with the batch".into(), &during);
    let ratio = during.quantile(Some(Kind::Login), 0.99).as_secs_f64()
        / alone.quantile(Some(Kind::Login), 0.99).as_secs_f64().max(1e-9);
    println!();
    println!(
        "batch: {done} licences re-verified in {:.1} s of running ({:.0} rows/s, limit {} rows/s){}; provider asked {} times",
        batch_time.as_secs_f64(),
        done as f64 / batch_time.as_secs_f64().max(1e-9),
        settings.max_rows_per_second,
        if finished {
            ", finished"
        } else {
            ", not finished (the slices ended first)"
        },
        provider.requests()
    );
    println!(
        "login p99 over every slice with the batch / alone: {ratio:.2} (goal: at most 1.20) — {}",
        if ratio <= 1.20 { "met" } else { "NOT met" }
    );
    for e in alone.errors.iter().chain(&during.errors).take(5) {
        println!("  error: {e}");
    }
    running.shutdown().await;
    drop(db);

    // The online queries' times on a million riders (issue 14), unless told not to.
    if std::env::var("BATCH_BENCH_QUERY_TIMES").as_deref() != Ok("0") {
        println!();
        println!("online queries on a million riders (tests::scale; filled first when missing: minutes)");
        tests::scale::print_query_times(200).await;
    }
}
