//! The cluster `scripts/cluster.sh` starts — nginx with `deploy/nginx/hexride.conf` in front
//! of two API instances and a worker, on the PostgreSQL primary and replica, Redis and the
//! Kafka broker of `scripts/infra.sh` — driven through nginx by the members mix (3 reads : 1
//! keyed point charge), while its instances are restarted and killed as real processes.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures::StreamExt;
use reqwest::Client;
use tests::load::{self, Charges, Member, Tally};
use tests::services;

/// Concurrent members (one connection each) in the mix.
const MEMBERS: usize = 16;
/// The admin account the cases make with `cluster.sh create-admin`.
const ADMIN_EMAIL: &str = "cluster-admin@hexride.test";
const ADMIN_PASSWORD: &str = "cluster admin password 0123456789";

/// One cluster case at a time: each runs several processes on the shared services.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The cluster of this test; `down --purge` when dropped, so a failed assertion leaves no
/// process, database or Redis key behind.
struct ClusterSh {
    env: Vec<(&'static str, String)>,
    port: u16,
    database: String,
}

impl ClusterSh {
    /// A cluster on nginx port `port` (away from a developer's on the default 18080, and 60
    /// from any other case's), with database `database`, `extra` settings for every node.
    fn new(port: u16, database: &str, extra: &[(&'static str, &str)]) -> Self {
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
        let bin = std::env::var("HEXRIDE_BIN")
            .map(PathBuf::from)
            .unwrap_or_else(|_| root.join("target/debug/app-server"));
        assert!(
            bin.exists(),
            "{} is missing: `cargo build -p app-server` first (scripts/test.sh does)",
            bin.display()
        );
        let dir = root.join(format!("target/cluster-test-{port}"));
        let mut env = vec![
            ("HEXRIDE_BIN", bin.display().to_string()),
            ("CLUSTER_DIR", dir.display().to_string()),
            ("CLUSTER_PORT", port.to_string()),
            ("CLUSTER_DATABASE", database.to_owned()),
            ("HEXRIDE_PASSWORD", ADMIN_PASSWORD.to_owned()),
            // The API suite's cheap hashing and open limits: every member comes from 127.0.0.1.
            ("APP__AUTH__ARGON2_MEMORY_KIB", "1024".to_owned()),
            ("APP__AUTH__ARGON2_ITERATIONS", "1".to_owned()),
            ("APP__AUTH__HASH_QUEUE", "100000".to_owned()),
            ("APP__AUTH__SIGN_UP_PER_IP_PER_MINUTE", "1000000".to_owned()),
            ("APP__AUTH__LOGIN_PER_IP_PER_MINUTE", "1000000".to_owned()),
            ("APP__AUTH__API_PER_MEMBER_PER_MINUTE", "1000000".to_owned()),
            (
                "APP__LOG__LEVEL",
                std::env::var("HEXRIDE_CLUSTER_LOG").unwrap_or_else(|_| "warn".to_owned()),
            ),
        ];
        env.extend(extra.iter().map(|(k, v)| (*k, (*v).to_owned())));
        let cluster = Self {
            env,
            port,
            database: database.to_owned(),
        };
        cluster.run(&["down", "--purge"]);
        cluster.run(&["up"]);
        cluster
    }

    /// A case's cluster, once the previous case's is gone; `None` when the services are
    /// missing and skipping is asked for.
    async fn for_case(
        port: u16,
        database: &str,
        extra: &[(&'static str, &str)],
    ) -> Option<(tokio::sync::MutexGuard<'static, ()>, Self)> {
        let serial = SERIAL.lock().await;
        let present = services::postgres_with_replica().await.is_some()
            && services::managed_redis().await.is_some()
            && services::managed_kafka().await.is_some();
        present.then(|| (serial, Self::new(port, database, extra)))
    }

    /// The API URL, a client, and [`MEMBERS`] members signed up through nginx.
    async fn mix_members(&self) -> (String, Client, Vec<Member>) {
        let api = self.api();
        let client = Client::builder()
            .pool_max_idle_per_host(MEMBERS)
            .timeout(Duration::from_secs(40))
            .build()
            .unwrap();
        let members = load::members(&client, &api, MEMBERS).await;
        (api, client, members)
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
        format!("http://127.0.0.1:{}/api/v1", self.port)
    }

    /// The cluster's database on the primary, for what only the database can tell.
    async fn database(&self) -> sqlx::PgPool {
        let primary = std::env::var("TEST_PG_PRIMARY_URL").expect("TEST_PG_PRIMARY_URL");
        sqlx::PgPool::connect(&services::with_database(&primary, &self.database))
            .await
            .expect("the cluster's database")
    }
}

impl Drop for ClusterSh {
    fn drop(&mut self) {
        if std::env::var_os("HEXRIDE_KEEP_CLUSTER").is_some() {
            eprintln!(
                "HEXRIDE_KEEP_CLUSTER: left running; scripts/cluster.sh down --purge with {:?}",
                self.env
            );
            return;
        }
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

/// Waits (up to 2 minutes) until `query` answers 0.
async fn wait_for_zero<F, Fut>(query: F, what: &str)
where
    F: Fn() -> Fut,
    Fut: Future<Output = i64>,
{
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    loop {
        let left = query().await;
        if left == 0 {
            return;
        }
        assert!(std::time::Instant::now() < deadline, "{left} {what} after two minutes");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nginx_in_front_of_two_instances_loses_nothing_on_a_rolling_restart_or_a_killed_instance() {
    let Some((_serial, cluster)) = ClusterSh::for_case(18180, "hexride_cluster_lb", &[]).await else {
        return;
    };
    let (api, client, members) = cluster.mix_members().await;

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_sigkilled_mid_stream_leaves_the_relay_to_the_other_and_every_event_applies_once() {
    // Two workers. Short leases and sessions so that the survivor takes over within seconds
    // (a relay's delivery timeout stays 2 s or more below its lease, as start-up demands).
    let Some((_serial, cluster)) = ClusterSh::for_case(
        18240,
        "hexride_cluster_workers",
        &[
            ("CLUSTER_WORKERS", "2"),
            ("APP__RELAY__LEASE_SECS", "6"),
            ("APP__KAFKA__DELIVERY_TIMEOUT_MS", "3000"),
            ("APP__KAFKA__REQUEST_TIMEOUT_MS", "2000"),
            ("APP__KAFKA__SESSION_TIMEOUT_MS", "6000"),
        ],
    )
    .await
    else {
        return;
    };
    cluster.call(&["create-admin", ADMIN_EMAIL]).await;
    let api = cluster.api();
    let client = Client::builder().timeout(Duration::from_secs(40)).build().unwrap();
    let admin = load::login(&client, &api, ADMIN_EMAIL, ADMIN_PASSWORD).await;
    let plan: serde_json::Value = client
        .post(format!("{api}/admin/insurance/plans"))
        .bearer_auth(&admin)
        .json(&serde_json::json!({"name": "Hourly", "hourly_premium": 6000}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let plan = plan["id"].as_str().expect("a plan id").to_owned();

    // Riders, each with an active policy.
    const RIDERS: usize = 200;
    let riders = load::members(&client, &api, RIDERS).await;
    for rider in &riders {
        let enrolled = client
            .post(format!("{api}/insurance/policies"))
            .bearer_auth(&rider.token)
            .json(&serde_json::json!({"plan_id": plan}))
            .send()
            .await
            .unwrap();
        assert_eq!(enrolled.status().as_u16(), 201);
    }

    // Every rider withdraws, 8 at a time; a third of the way in, worker-1 is SIGKILLed with
    // whatever relay leases and partitions it holds.
    let withdrawn = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let withdrawals = tokio::spawn({
        let (client, api, riders, withdrawn) = (client.clone(), api.clone(), riders.clone(), withdrawn.clone());
        async move {
            futures::stream::iter(riders)
                .for_each_concurrent(8, |rider| {
                    let (client, api, withdrawn) = (client.clone(), api.clone(), withdrawn.clone());
                    async move {
                        let response = client
                            .delete(format!("{api}/members/me"))
                            .bearer_auth(&rider.token)
                            .send()
                            .await
                            .unwrap();
                        assert_eq!(response.status().as_u16(), 204);
                        withdrawn.fetch_add(1, Ordering::Relaxed);
                    }
                })
                .await;
        }
    });
    while withdrawn.load(Ordering::Relaxed) < RIDERS / 3 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    cluster.call(&["kill", "worker-1"]).await;
    withdrawals.await.expect("the withdrawals");

    // worker-2 relays what worker-1 had claimed once the leases run out: every event is
    // published while worker-1 is still dead.
    let db = cluster.database().await;
    let count = |sql: &'static str| {
        let db = db.clone();
        async move { sqlx::query_scalar::<_, i64>(sql).fetch_one(&db).await.unwrap() }
    };
    let relayed = "select count(*) from outbox where status <> 'sent'";
    wait_for_zero(|| count(relayed), "events not yet relayed with worker-1 dead").await;

    // The consumer groups: worker-2 takes over worker-1's partitions while worker-1 is
    // still dead, and every policy expires. (tansu 0.6.0, the broker here, evicts the dead
    // member when its session expires but hands the survivor only its own partitions; the
    // consumer notices it is the only member holding part of the partitions and joins again.)
    let expired = "select count(*) from policies where status = 'expired'";
    wait_for_zero(
        || async { RIDERS as i64 - count(expired).await },
        "policies not yet expired with worker-1 dead",
    )
    .await;
    // worker-1 started again, as an orchestrator restarts a crashed process: the partitions
    // are shared again, and nothing is applied twice.
    cluster.call(&["start", "worker-1"]).await;
    assert_eq!(
        count("select count(*) from policies where expiry_reason = 'member_withdrawn' and expired_at = (select withdrawn_at from members m where m.id = member_id)").await,
        RIDERS as i64,
        "every policy expired at its rider's withdrawal"
    );
    assert_eq!(
        count("select count(*) from policy_audit where action = 'expired'").await,
        RIDERS as i64,
        "one expiry per policy"
    );
    assert_eq!(
        count("select count(*) from inbox where consumer = 'insurance-expiry' and event_id in (select id from outbox where event_type = 'member.withdrawn')").await,
        RIDERS as i64,
        "each withdrawal applied once by the expiry consumer"
    );
    assert_eq!(count(relayed).await, 0, "every event relayed, none dead");

    let status = cluster.call(&["status"]).await;
    assert_eq!(
        status.lines().filter(|l| l.contains("ready 200")).count(),
        4,
        "{status}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_postgresql_primary_sigkilled_and_restarted_fails_requests_fast_loses_no_acknowledged_write() {
    let Some((_serial, cluster)) = ClusterSh::for_case(18300, "hexride_cluster_primary", &[]).await else {
        return;
    };
    let (api, client, members) = cluster.mix_members().await;
    let _restart = RestartPrimary;

    // The primary SIGKILLed under the mix, and started again 8 s later (past the pools' 5 s
    // acquire timeout); the instances stay up throughout.
    let mut outage = mix_during(&client, &api, &members, Charges::Keyed, async {
        services::infra_await(&["kill", "pg-primary"]).await;
        tokio::time::sleep(Duration::from_secs(8)).await;
        services::infra_await(&["start", "pg-primary"]).await;
        // Time for the pools to find the primary again.
        tokio::time::sleep(Duration::from_secs(3)).await;
    })
    .await;
    assert!(!outage.failures.is_empty(), "the outage was felt");
    for failure in &outage.failures {
        // A problem+json 503 from the instance (reads may also be answered by the replicas),
        // within the pools' 5 s acquire timeout and a little: nothing waits for the 30 s
        // request timeout or nginx's 35 s.
        assert!(failure.what.starts_with("503 "), "{failure:?}");
        assert!(failure.after < Duration::from_secs(10), "{failure:?}");
    }
    let slowest = outage.quantile(&[], 1.0);
    assert!(slowest < Duration::from_secs(10), "an answer took {slowest:?}");
    eprintln!(
        "primary outage: {} answered, {} failed with 503 (slowest after {:?})",
        outage.ok,
        outage.failures.len(),
        outage.failures.iter().map(|f| f.after).max()
    );

    // Service is back without restarting an instance: the unanswered charges sent again
    // with their keys, and every balance holds exactly the charges acknowledged.
    load::retry_charges(&client, &api, &members, &mut outage, 20).await;
    assert_eq!(load::balances(&client, &api, &members).await, outage.charged);
    let after = mix_during(&client, &api, &members, Charges::Keyed, async {}).await;
    assert_no_failures("the mix after the primary came back", &after);
}

/// Starts the infra PostgreSQL primary again when dropped, whatever the case did.
struct RestartPrimary;

impl Drop for RestartPrimary {
    fn drop(&mut self) {
        if let Err(e) = services::infra(&["start", "pg-primary"]) {
            eprintln!("restarting the primary: {e}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_worker_running_the_licence_batch_sigkilled_leaves_the_run_to_the_other_which_resumes_it() {
    // Riders whose licences are all due, a provider that answers in 20 ms, and a paced batch
    // (40 licences/s in chunks of 10) on two workers, one of which holds the job's lease.
    const RIDERS: i64 = 300;
    let provider = tests::licence_provider::FakeProvider::start().await;
    provider.answer_others(tests::licence_provider::Answer::Slow(
        Duration::from_millis(20),
        Box::new(tests::licence_provider::Answer::Valid("2036-12-31".into())),
    ));
    let Some((_serial, cluster)) = ClusterSh::for_case(
        18360,
        "hexride_cluster_licences",
        &[
            ("CLUSTER_WORKERS", "2"),
            ("APP__LICENCE_PROVIDER__URL", provider.url.as_str()),
            ("APP__JOBS__INTERVAL_SECS", "1"),
            ("APP__JOBS__BATCH_SIZE", "10"),
            ("APP__JOBS__MAX_ROWS_PER_SECOND", "40"),
            ("APP__JOBS__LEASE_SECS", "3"),
        ],
    )
    .await
    else {
        return;
    };
    let db = cluster.database().await;
    tests::licence_provider::seed_licensed_riders(&db, RIDERS as u64, "cluster.example", "not a hash", 100).await;
    let count = |sql: &'static str| {
        let db = db.clone();
        async move { sqlx::query_scalar::<_, i64>(sql).fetch_one(&db).await.unwrap() }
    };
    let job = || {
        let db = db.clone();
        async move {
            sqlx::query_as::<_, (Option<String>, i64, Option<time::OffsetDateTime>)>(
                "select holder, rows_done, run_started_at from jobs where name = 'licence-reverification'",
            )
            .fetch_optional(&db)
            .await
            .unwrap()
        }
    };

    // A third of the way in, the holder's process is SIGKILLed mid-run.
    let waited = std::time::Instant::now();
    let (holder, run_started_at) = loop {
        if let Some((Some(holder), done, Some(started))) = job().await
            && done >= RIDERS / 3
        {
            break (holder, started);
        }
        assert!(
            waited.elapsed() < Duration::from_secs(60),
            "the batch never got a third of the way"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let pid = holder.split('-').nth(1).expect("jobs-<pid>-<id>").to_owned();
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let node = ["worker-1", "worker-2"]
        .into_iter()
        .find(|node| {
            let file = root.join(format!("target/cluster-test-18360/{node}/pid"));
            std::fs::read_to_string(file).is_ok_and(|p| p.trim() == pid)
        })
        .expect("the holder is a worker of this cluster");
    cluster.call(&["kill", node]).await;

    // The other worker takes the job over once the lease runs out, and goes on with the
    // same run (its start is kept) from the last committed chunk.
    let waited = std::time::Instant::now();
    loop {
        if let Some((Some(next), _, started)) = job().await
            && next != holder
        {
            assert_eq!(started, Some(run_started_at), "the run was resumed, not started again");
            break;
        }
        assert!(
            waited.elapsed() < Duration::from_secs(60),
            "no worker took the job over"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    wait_for_zero(
        || count("select count(*) from licences where last_verified_at < now() - interval '1 day'"),
        "licences not re-verified after the kill",
    )
    .await;

    // Each licence was re-verified exactly once in what was committed; at most the killed
    // worker's chunk in flight was asked about twice.
    assert_eq!(
        count("select count(*) from licence_checks").await,
        RIDERS,
        "one check per licence"
    );
    assert_eq!(
        count("select count(distinct member_id) from licence_checks").await,
        RIDERS
    );
    let asked = provider.requests() as i64;
    assert!(
        (RIDERS..=RIDERS + 10).contains(&asked),
        "the provider was asked {asked} times"
    );
}
