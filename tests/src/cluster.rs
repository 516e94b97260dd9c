//! Several real `app-server` instances sharing one PostgreSQL database (with its replica)
//! and one Redis, as they run behind a load balancer, and the load the fault tests put on
//! them (coupon rushes, background reads). The multi-instance tests, the Redis outage and
//! failover tests and the Redis benchmark start them here.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use futures::StreamExt;
use reqwest::StatusCode;
use serde_json::Value;
use time::OffsetDateTime;
use uuid::Uuid;

use app_server::config::Config;
use app_server::runtime::Runtime;
use app_server::server::{self, Running};
use application::coupons::CampaignRequest;
use application::members::SignUp;
use core_domain::coupon::Discount;
use core_domain::member::Role;
use core_domain::{CampaignId, MemberId, TokenFamilyId};
use ports::AccessClaims;

use crate::services::{self, PgDatabase};

/// Every instance signs and accepts access tokens with this secret.
pub const JWT_SECRET: &str = "cluster-test-jwt-secret-0123456789abcdef";
/// Every account made here has this password.
pub const PASSWORD: &str = "correct horse battery staple";

/// One running instance.
pub struct Instance {
    /// `http://127.0.0.1:<port>`.
    pub address: String,
    running: Running,
}

impl Instance {
    pub fn runtime(&self) -> &Runtime {
        &self.running.runtime
    }

    /// A URL under `/api/v1`.
    pub fn api(&self, path: &str) -> String {
        format!("{}/api/v1{path}", self.address)
    }
}

/// Instances on one fresh PostgreSQL database and one Redis key prefix.
pub struct Cluster {
    pub instances: Vec<Instance>,
    pub redis_url: String,
    /// The Redis key prefix every instance uses (fresh per cluster).
    pub redis_prefix: String,
    /// Dropped (with the database) after the instances stop.
    pub database: PgDatabase,
}

/// The configuration of an instance on `database` and `redis_url`: the API test suite's
/// defaults (cheap argon2, generous limits, prompt relay).
pub fn config(database: &PgDatabase, with_replica: bool, redis_url: &str, redis_prefix: &str) -> Config {
    let mut config = Config::defaults().expect("default configuration");
    for_load(&mut config);
    config.database.url = database.primary_url.clone().into();
    config.database.replica_urls = if with_replica {
        vec![database.replica_url.clone().into()]
    } else {
        vec![]
    };
    config.redis.url = redis_url.to_owned().into();
    config.redis.key_prefix = redis_prefix.to_owned();
    config.relay.idle_wait = Duration::from_millis(20);
    config.log.level = "warn".to_owned();
    config
}

/// What every instance under test load shares: listeners on free local ports, no drain, one
/// signing secret, cheap password hashing and per-client limits open (every member of a load
/// comes from 127.0.0.1; sign-ups and logins are set-up, not what is measured).
pub fn for_load(config: &mut Config) {
    config.server.listen = "127.0.0.1:0".to_owned();
    config.server.drain = Duration::ZERO;
    config.server.admin_listen = "127.0.0.1:0".to_owned();
    config.auth.jwt_secret = JWT_SECRET.to_owned().into();
    config.auth.argon2_memory_kib = 1024;
    config.auth.argon2_iterations = 1;
    // Hundreds of concurrent sign-ups wait for a hashing thread rather than being refused.
    config.auth.hash_queue = 100_000;
    config.auth.login_per_email_per_hour = 10_000;
    config.auth.login_per_ip_and_email_per_minute = 10_000;
    config.auth.login_per_ip_per_minute = 1_000_000;
    config.auth.sign_up_per_ip_per_minute = 1_000_000;
    config.auth.api_per_member_per_minute = 1_000_000;
}

/// Starts `n` instances on a fresh database of the test PostgreSQL and a fresh key prefix
/// on the test Redis (`redis_url`), each configured by `configure` after the defaults of
/// [`config`]. `None` when PostgreSQL is missing and skipping was asked for.
pub async fn start(n: usize, redis_url: &str, configure: impl Fn(&mut Config)) -> Option<Cluster> {
    let pg = services::postgres().await?;
    let database = services::fresh_pg(&pg).await;
    let redis_prefix = services::redis_prefix();
    let mut instances = Vec::with_capacity(n);
    for _ in 0..n {
        let mut config = config(&database, pg.has_replica(), redis_url, &redis_prefix);
        configure(&mut config);
        // Every instance migrates on start; they start one after the other, so the
        // migrations run once and the others find them applied.
        let running = server::start(config).await.expect("the instance starts");
        let addr = running.addr.expect("the instance listens");
        instances.push(Instance {
            address: format!("http://{addr}"),
            running,
        });
    }
    Some(Cluster {
        instances,
        redis_url: redis_url.to_owned(),
        redis_prefix,
        database,
    })
}

impl Cluster {
    pub fn instance(&self, i: usize) -> &Instance {
        &self.instances[i % self.instances.len()]
    }

    /// `n` riders, made as the CLI makes accounts, each with an access token minted the way
    /// login mints them (accepted by every instance).
    pub async fn riders(&self, n: usize) -> Vec<(MemberId, String)> {
        let runtime = self.instances[0].runtime();
        futures::stream::iter(0..n)
            .map(|_| async move {
                let member = runtime
                    .services
                    .members
                    .create_account(
                        SignUp {
                            email: format!("rider-{}@example.com", Uuid::new_v4()),
                            password: PASSWORD.to_owned(),
                            name: "Kim Rider".to_owned(),
                            phone: "010-1234-5678".to_owned(),
                        },
                        Role::Rider,
                    )
                    .await
                    .expect("rider created");
                let token = runtime
                    .ports
                    .access_tokens
                    .issue(&AccessClaims {
                        member_id: member.id,
                        role: Role::Rider,
                        family_id: TokenFamilyId(Uuid::now_v7()),
                        expires_at: OffsetDateTime::now_utc() + time::Duration::hours(2),
                    })
                    .expect("token issued");
                (member.id, token)
            })
            .buffer_unordered(8)
            .collect()
            .await
    }

    /// A running campaign of `total` coupons.
    pub async fn campaign(&self, total: i64) -> CampaignId {
        self.instances[0]
            .runtime()
            .services
            .coupons
            .create_campaign(CampaignRequest {
                name: "first come, first served".to_owned(),
                discount: Discount::Fixed { amount: 1_000 },
                total_quantity: total,
                starts_at: None,
                ends_at: None,
            })
            .await
            .expect("campaign created")
            .id
    }

    /// `(coupons, distinct members, issued_count)` of the campaign, from the primary.
    pub async fn issued(&self, campaign: CampaignId) -> (i64, i64, i64) {
        let pool = sqlx::PgPool::connect(&self.database.primary_url)
            .await
            .expect("connect");
        let (coupons, members): (i64, i64) =
            sqlx::query_as("select count(*), count(distinct member_id) from coupons where campaign_id = $1")
                .bind(campaign.0)
                .fetch_one(&pool)
                .await
                .expect("count coupons");
        let issued: i64 = sqlx::query_scalar("select issued_count from coupon_campaigns where id = $1")
            .bind(campaign.0)
            .fetch_one(&pool)
            .await
            .expect("issued_count");
        pool.close().await;
        (coupons, members, issued)
    }

    /// Stops every instance gracefully, then drops the database.
    pub async fn shutdown(self) {
        for instance in self.instances {
            tokio::time::timeout(Duration::from_secs(30), instance.running.shutdown())
                .await
                .expect("the instance stops");
        }
    }
}

// --- load on the instances: coupon rushes, background reads, readiness -------------------

pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .pool_max_idle_per_host(64)
        .timeout(Duration::from_secs(10))
        .build()
        .expect("HTTP client")
}

/// Issues one coupon of `campaign` to each rider (16 in flight, alternating instances);
/// `(status, code)` counts, with `progress` counting answers as they come.
pub async fn issue(
    cluster: &Cluster,
    client: &reqwest::Client,
    campaign: CampaignId,
    riders: &[(MemberId, String)],
    progress: &AtomicUsize,
) -> BTreeMap<(u16, String), usize> {
    let answers: Vec<(u16, String)> = futures::stream::iter(riders.iter().enumerate())
        .map(|(i, (_, token))| {
            let request = client
                .post(cluster.instance(i).api(&format!("/coupons/{campaign}/issue")))
                .bearer_auth(token);
            async move {
                let response = request.send().await.expect("the instance answers");
                let status = response.status().as_u16();
                let body: Value = response.json().await.unwrap_or(Value::Null);
                progress.fetch_add(1, Ordering::SeqCst);
                let code = body["code"].as_str().unwrap_or_default().to_owned();
                (status, code)
            }
        })
        .buffer_unordered(16)
        .collect()
        .await;
    let mut counts = BTreeMap::new();
    for answer in answers {
        *counts.entry(answer).or_default() += 1;
    }
    counts
}

/// How many answers are 409 `coupon.sold_out` or `coupon.already_issued` (which one depends
/// on whether the replica has seen the campaign sell out yet).
pub fn refused(counts: &BTreeMap<(u16, String), usize>) -> usize {
    counts
        .iter()
        .filter(|((status, code), _)| *status == 409 && (code == "coupon.sold_out" || code == "coupon.already_issued"))
        .map(|(_, n)| n)
        .sum()
}

pub fn counts(entries: &[(u16, &str, usize)]) -> BTreeMap<(u16, String), usize> {
    entries
        .iter()
        .map(|(status, code, n)| ((*status, (*code).to_owned()), *n))
        .collect()
}

/// `(HTTP status, overall status, redis status)` of `/health/ready` on every instance.
pub async fn readiness(cluster: &Cluster, client: &reqwest::Client) -> Vec<(u16, String, String)> {
    let mut all = Vec::new();
    for instance in &cluster.instances {
        let response = client
            .get(format!("{}/health/ready", instance.address))
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        let body: Value = response.json().await.unwrap();
        all.push((
            status,
            body["status"].as_str().unwrap_or_default().to_owned(),
            body["components"]["redis"]["status"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
        ));
    }
    all
}

/// Reads that must always succeed, on both instances, until `stop`: a cached product and
/// each member's own balance (the API rate limit and read-your-writes lookups go to Redis).
pub fn background_reads(
    cluster: &Arc<Cluster>,
    product_path: String,
    riders: Vec<(MemberId, String)>,
    stop: Arc<AtomicBool>,
) -> Vec<tokio::task::JoinHandle<(usize, Vec<String>)>> {
    (0..8)
        .map(|worker| {
            let (cluster, product_path, riders, stop) = (
                Arc::clone(cluster),
                product_path.clone(),
                riders.clone(),
                Arc::clone(&stop),
            );
            tokio::spawn(async move {
                let client = client();
                let (mut served, mut failures) = (0, Vec::new());
                let mut i = worker;
                while !stop.load(Ordering::SeqCst) {
                    let instance = cluster.instance(i);
                    for request in [
                        client.get(instance.api(&product_path)),
                        client
                            .get(instance.api("/points"))
                            .bearer_auth(&riders[i % riders.len()].1),
                    ] {
                        match request.send().await {
                            Ok(response) if response.status() == StatusCode::OK => served += 1,
                            Ok(response) => {
                                let status = response.status();
                                failures.push(format!("{status}: {}", response.text().await.unwrap_or_default()));
                            }
                            Err(error) => failures.push(error.to_string()),
                        }
                    }
                    i += 8;
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
                (served, failures)
            })
        })
        .collect()
}

/// Stops the reads of [`background_reads`] and asserts that none failed and that they ran
/// (more than 100 served).
pub async fn stop_reads(stop: &AtomicBool, readers: Vec<tokio::task::JoinHandle<(usize, Vec<String>)>>) {
    stop.store(true, Ordering::SeqCst);
    let mut served = 0;
    for reader in readers {
        let (n, failures) = reader.await.expect("a reader");
        assert!(failures.is_empty(), "reads failed: {failures:?}");
        served += n;
    }
    assert!(served > 100, "only {served} background reads");
}
