//! The cluster `scripts/cluster.sh` starts — nginx with `deploy/nginx/hexride.conf` in front
//! of two API instances and a worker, on the PostgreSQL primary and replica, Redis and the
//! Kafka broker of `scripts/infra.sh` — driven through nginx by the members mix (3 reads : 1
//! keyed point charge), while its instances are restarted and killed as real processes.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use reqwest::Client;
use tests::load::{self, Charges, Member, Tally};
use tests::services;

/// Concurrent members (one connection each) in the mix.
const MEMBERS: usize = 16;
/// nginx's port: away from a cluster a developer runs on the default 18080.
const PORT: &str = "18180";

/// The cluster of this test; `down --purge` when dropped, so a failed assertion leaves no
/// process, database or Redis key behind.
struct ClusterSh {
    env: Vec<(&'static str, String)>,
}

impl ClusterSh {
    fn new() -> Self {
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
        let bin = std::env::var("HEXRIDE_BIN")
            .map(PathBuf::from)
            .unwrap_or_else(|_| root.join("target/debug/app-server"));
        assert!(
            bin.exists(),
            "{} is missing: `cargo build -p app-server` first (scripts/test.sh does)",
            bin.display()
        );
        let dir = root.join("target/cluster-test");
        let env = vec![
            ("HEXRIDE_BIN", bin.display().to_string()),
            ("CLUSTER_DIR", dir.display().to_string()),
            ("CLUSTER_PORT", PORT.to_owned()),
            ("CLUSTER_DATABASE", "hexride_cluster_test".to_owned()),
            // The API suite's cheap hashing and open limits: every member comes from 127.0.0.1.
            ("APP__AUTH__ARGON2_MEMORY_KIB", "1024".to_owned()),
            ("APP__AUTH__ARGON2_ITERATIONS", "1".to_owned()),
            ("APP__AUTH__HASH_QUEUE", "100000".to_owned()),
            ("APP__AUTH__SIGN_UP_PER_IP_PER_MINUTE", "1000000".to_owned()),
            ("APP__AUTH__LOGIN_PER_IP_PER_MINUTE", "1000000".to_owned()),
            ("APP__AUTH__API_PER_MEMBER_PER_MINUTE", "1000000".to_owned()),
            ("APP__LOG__LEVEL", "warn".to_owned()),
        ];
        let cluster = Self { env };
        cluster.run(&["down", "--purge"]);
        cluster.run(&["up"]);
        cluster
    }

    /// `scripts/cluster.sh ARGS…`, off the async threads; panics with its output on failure.
    async fn call(&self, args: &[&str]) -> String {
        let env = self.env.clone();
        let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
        tokio::task::spawn_blocking(move || {
            let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            services::script("cluster.sh", &args, &env)
        })
        .await
        .expect("cluster.sh task")
        .unwrap_or_else(|e| panic!("{e}"))
    }

    fn run(&self, args: &[&str]) -> String {
        let env: Vec<(&str, &str)> = self.env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        services::script("cluster.sh", args, &env).unwrap_or_else(|e| panic!("{e}"))
    }

    fn api(&self) -> String {
        format!("http://127.0.0.1:{PORT}/api/v1")
    }
}

impl Drop for ClusterSh {
    fn drop(&mut self) {
        let env: Vec<(&str, &str)> = self.env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        if let Err(e) = services::script("cluster.sh", &["down", "--purge"], &env) {
            eprintln!("{e}");
        }
    }
}

/// Runs the mix while `during` runs, and a moment after it, so the restarted or surviving
/// instances carry load too.
async fn mix_during<F: Future<Output = ()>>(
    client: &Client,
    api: &str,
    members: &[Member],
    charges: Charges,
    during: F,
) -> Tally {
    let stop = Arc::new(AtomicBool::new(false));
    let mix = tokio::spawn({
        let (client, api, members, stop) = (client.clone(), api.to_owned(), members.to_vec(), stop.clone());
        async move { load::run(&client, &api, &members, charges, stop).await }
    });
    tokio::time::sleep(Duration::from_secs(1)).await;
    during.await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, Ordering::Relaxed);
    mix.await.expect("the mix")
}

fn assert_no_failures(phase: &str, tally: &Tally) {
    assert!(
        tally.failures.is_empty(),
        "{} of {} requests failed during {phase}: {:?}",
        tally.failures.len(),
        tally.ok + tally.failures.len() as u64,
        &tally.failures[..tally.failures.len().min(5)]
    );
    assert!(tally.ok > 200, "the mix ran during {phase}: {} requests", tally.ok);
    eprintln!("{phase}: {} requests, 0 failed, {:.0} req/s", tally.ok, tally.rate());
}

fn add(total: &mut [i64], charged: &[i64]) {
    for (total, charged) in total.iter_mut().zip(charged) {
        *total += charged;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nginx_in_front_of_two_instances_loses_nothing_on_a_rolling_restart_or_a_killed_instance() {
    if services::postgres_with_replica().await.is_none()
        || services::managed_redis().await.is_none()
        || services::managed_kafka().await.is_none()
    {
        return;
    }
    let cluster = ClusterSh::new();
    let api = cluster.api();
    let client = Client::builder()
        .pool_max_idle_per_host(MEMBERS)
        .timeout(Duration::from_secs(40))
        .build()
        .unwrap();
    let members = load::members(&client, &api, MEMBERS).await;

    // A request id given by the client comes back from the instance through nginx; one
    // without gets nginx's.
    let traced = client
        .get(format!("{api}/members/me"))
        .bearer_auth(&members[0].token)
        .header("X-Request-Id", "trace-me-0123")
        .send()
        .await
        .unwrap();
    assert_eq!(traced.status().as_u16(), 200);
    assert_eq!(traced.headers()["x-request-id"], "trace-me-0123");
    let untraced = client.get(format!("{api}/products")).send().await.unwrap();
    let given = untraced.headers()["x-request-id"].to_str().unwrap().to_owned();
    assert_eq!(given.len(), 32, "nginx's $request_id (32 hex digits): {given}");

    // Every API instance restarted in turn under load (SIGTERM: readiness 503, serving for
    // the drain with every answer closing its connection, the listener closed, in-flight
    // requests finished; started; ready). nginx learns of it only from refused connections,
    // which it retries elsewhere, as it does a reset for the reads and the keyed charges.
    // Not one request fails, and every charge is in the balances.
    let rolling = mix_during(&client, &api, &members, Charges::Keyed, async {
        cluster.call(&["rolling-restart"]).await;
    })
    .await;
    assert_no_failures("the rolling restart", &rolling);
    let mut expected = rolling.charged.clone();
    assert_eq!(load::balances(&client, &api, &members).await, expected);

    // One API instance SIGKILLed under load: at most the requests in flight on it fail (one
    // per member connection at most), each failed charge sent again with its key is charged
    // exactly once, and the instance started again takes its share.
    let mut killed = mix_during(&client, &api, &members, Charges::Keyed, async {
        tokio::time::sleep(Duration::from_secs(1)).await;
        cluster.call(&["kill", "api-1"]).await;
        tokio::time::sleep(Duration::from_secs(2)).await;
        cluster.call(&["start", "api-1"]).await;
    })
    .await;
    assert!(
        killed.failures.len() <= MEMBERS,
        "{} requests failed, more than were in flight: {:?}",
        killed.failures.len(),
        killed.failures
    );
    load::retry_charges(&client, &api, &members, &mut killed, 10).await;
    add(&mut expected, &killed.charged);
    assert_eq!(load::balances(&client, &api, &members).await, expected);
    eprintln!(
        "kill api-1: {} requests, {} failed ({} charges retried with their keys)",
        killed.ok,
        killed.failures.len(),
        killed.failures.iter().filter(|f| f.charge.is_some()).count()
    );

    let status = cluster.call(&["status"]).await;
    assert_eq!(
        status.lines().filter(|l| l.contains("ready 200")).count(),
        3,
        "{status}"
    );
}
