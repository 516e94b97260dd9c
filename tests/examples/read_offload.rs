//! Read offload at a 3:1 read:write mix (issue: primary/replica routing).
//!
//! Starts the real server twice on fresh databases of PostgreSQL (streaming replica) or
//! MariaDB (GTID replica) — once with the replica, once primary-only — and drives the API with members who each loop over three
//! reads of their own data (profile, balance, ledger) and one write (a points charge). Prints
//! requests/s and, from `db_reads_total{target}`, the share of database reads the replica
//! served. Reads of a member's own data go through read-your-writes, so they reach the
//! replica only once it has replayed that member's last write.
//!
//! ```sh
//! eval "$(scripts/infra.sh up)"
//! cargo run --release -p tests --example read_offload -- [postgres|mariadb] [seconds] [members]
//! ```

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::json;

use app_server::config::Config;
use app_server::server;

/// Counters of one run.
#[derive(Default)]
struct Tally {
    reads: AtomicU64,
    writes: AtomicU64,
    errors: AtomicU64,
}

fn counter(metrics: &str, name: &str, label: &str) -> f64 {
    metrics
        .lines()
        .filter(|l| l.starts_with(name) && l.contains(label))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Which server the benchmark runs on.
#[derive(Debug, Clone, Copy)]
enum Server {
    Postgres,
    MariaDb,
}

/// A fresh database on the server's primary and replica: `(primary, replica, guard)`; the
/// database is dropped with the guard.
async fn fresh(server: Server) -> (String, String, Box<dyn std::any::Any + Send>) {
    match server {
        Server::Postgres => {
            let pg = tests::services::postgres_with_replica()
                .await
                .expect("PostgreSQL with its replica (scripts/infra.sh up)");
            let db = tests::services::fresh_pg(&pg).await;
            (db.primary_url.clone(), db.replica_url.clone(), Box::new(db))
        }
        Server::MariaDb => {
            let urls = tests::services::mariadb_with_replica()
                .await
                .expect("MariaDB with its replica (scripts/infra.sh up)");
            let db = tests::services::fresh_mariadb(&urls).await;
            (db.primary_url.clone(), db.replica_url.clone(), Box::new(db))
        }
    }
}

async fn run(server: Server, label: &str, with_replica: bool, seconds: u64, members: usize) -> (f64, f64, f64, u64) {
    let (primary_url, replica_url, database) = fresh(server).await;
    let mut config = Config::defaults().expect("defaults");
    config.database.url = primary_url.into();
    config.database.replica_urls = if with_replica { vec![replica_url.into()] } else { vec![] };
    config.database.max_connections = 16;
    tests::cluster::for_load(&mut config);
    config.log.level = "error".into();
    let running = server::start(config).await.expect("server");
    let base = format!("http://{}/api/v1", running.addr.expect("listening"));
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(members)
        .build()
        .expect("client");

    let tokens: Vec<String> = tests::load::members(&client, &base, members)
        .await
        .into_iter()
        .map(|m| m.token)
        .collect();

    let metrics_url = format!("http://{}/metrics", running.admin_addr.expect("admin listener"));
    let before = client
        .get(&metrics_url)
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    let tally = Arc::new(Tally::default());
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let started = Instant::now();
    let workers: Vec<_> = tokens
        .into_iter()
        .map(|token| {
            let (client, base, tally) = (client.clone(), base.clone(), tally.clone());
            tokio::spawn(async move {
                while Instant::now() < deadline {
                    for path in ["/members/me", "/points", "/points/history"] {
                        let ok = client.get(format!("{base}{path}")).bearer_auth(&token).send().await;
                        match ok {
                            Ok(r) if r.status().is_success() => tally.reads.fetch_add(1, Ordering::Relaxed),
                            _ => tally.errors.fetch_add(1, Ordering::Relaxed),
                        };
                    }
                    let charge = client
                        .post(format!("{base}/points/charge"))
                        .bearer_auth(&token)
                        .json(&json!({"amount": 1}))
                        .send()
                        .await;
                    match charge {
                        Ok(r) if r.status().is_success() => tally.writes.fetch_add(1, Ordering::Relaxed),
                        _ => tally.errors.fetch_add(1, Ordering::Relaxed),
                    };
                }
            })
        })
        .collect();
    for worker in workers {
        worker.await.expect("worker");
    }
    let elapsed = started.elapsed().as_secs_f64();
    let after = client
        .get(&metrics_url)
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    running.shutdown().await;
    drop(database);

    let replica = counter(&after, "db_reads_total", "target=\"replica\"")
        - counter(&before, "db_reads_total", "target=\"replica\"");
    let primary = counter(&after, "db_reads_total", "target=\"primary\"")
        - counter(&before, "db_reads_total", "target=\"primary\"");
    let requests = (tally.reads.load(Ordering::Relaxed) + tally.writes.load(Ordering::Relaxed)) as f64;
    let share = if replica + primary > 0.0 {
        100.0 * replica / (replica + primary)
    } else {
        0.0
    };
    println!(
        "{label:<14} {:>9.0} req/s   reads on replica {:>5.1} %   (replica {replica:.0}, primary {primary:.0} db reads; {} writes; {} errors)",
        requests / elapsed,
        share,
        tally.writes.load(Ordering::Relaxed),
        tally.errors.load(Ordering::Relaxed)
    );
    (
        requests / elapsed,
        share,
        replica + primary,
        tally.errors.load(Ordering::Relaxed),
    )
}

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1).peekable();
    let server = match args.peek().map(String::as_str) {
        Some("mariadb" | "mysql") => {
            args.next();
            Server::MariaDb
        }
        Some("postgres") => {
            args.next();
            Server::Postgres
        }
        _ => Server::Postgres,
    };
    let seconds: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(15);
    let members: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(32);
    println!("{server:?}: 3:1 read:write through the API, {members} members, {seconds} s per configuration");
    run(server, "with replica", true, seconds, members).await;
    run(server, "primary only", false, seconds, members).await;
}
