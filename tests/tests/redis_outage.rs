//! Redis killed mid-run under two instances (`scripts/infra.sh kill redis`, then `start
//! redis`, which comes back empty): no request that should succeed fails, no coupon is
//! over-issued, readiness says degraded and then up, login fails closed, and each instance
//! warns once per outage. Its own test binary: killing the shared Redis would disturb the
//! tests of any other binary running at the same time.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;
use uuid::Uuid;

use application::members::SignUp;
use core_domain::member::Role;
use tests::cluster::{
    self, Cluster, PASSWORD, background_reads, client, counts, issue, readiness, refused, stop_reads,
};

/// Counts warnings by target and message, and the adapters' recovery notices.
#[derive(Default)]
struct LogCounts {
    warnings: Mutex<BTreeMap<String, usize>>,
    recoveries: AtomicUsize,
}

struct Counting(Arc<LogCounts>);

struct Message(String);

impl Visit for Message {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            self.0 = format!("{value:?}");
        }
    }
}

impl<S: Subscriber> Layer<S> for Counting {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let level = *event.metadata().level();
        if level > Level::INFO {
            return;
        }
        let mut message = Message(String::new());
        event.record(&mut message);
        let target = event.metadata().target();
        if level == Level::WARN {
            *self
                .0
                .warnings
                .lock()
                .unwrap()
                .entry(format!("{target}: {}", message.0))
                .or_default() += 1;
        } else if target.starts_with("adapters_redis") && message.0.contains("reachable again") {
            self.0.recoveries.fetch_add(1, Ordering::SeqCst);
        }
    }
}

async fn login(cluster: &Cluster, client: &reqwest::Client, instance: usize, email: &str) -> (StatusCode, Value) {
    let response = client
        .post(cluster.instance(instance).api("/auth/login"))
        .json(&json!({ "email": email, "password": PASSWORD }))
        .send()
        .await
        .unwrap();
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn killing_redis_mid_run_fails_no_request_that_should_succeed_and_over_issues_no_coupon() {
    let Some(redis) = tests::services::managed_redis().await else {
        return;
    };
    let logs = Arc::new(LogCounts::default());
    tracing_subscriber::registry()
        .with(Counting(Arc::clone(&logs)).with_filter(LevelFilter::INFO))
        .init();
    // A run that failed half-way may have left it down.
    tests::services::infra_await(&["start", "redis"]).await;

    let Some(cluster) = cluster::start(2, &redis, |_| {}).await else {
        return;
    };
    let cluster = Arc::new(cluster);
    let client = client();
    let runtime = cluster.instances[0].runtime();
    let product = runtime.services.catalog.create("Helmet", 30_000, 100).await.unwrap();
    let campaign = cluster.campaign(200).await;
    let riders = cluster.riders(500).await;
    let email = format!("login-{}@example.com", Uuid::new_v4());
    runtime
        .services
        .members
        .create_account(
            SignUp {
                email: email.clone(),
                password: PASSWORD.to_owned(),
                name: "Kim Rider".to_owned(),
                phone: "010-1234-5678".to_owned(),
            },
            Role::Rider,
        )
        .await
        .unwrap();
    assert_eq!(login(&cluster, &client, 0, &email).await.0, StatusCode::OK);

    let stop = Arc::new(AtomicBool::new(false));
    let readers = background_reads(
        &cluster,
        format!("/products/{}", product.id),
        riders.clone(),
        Arc::clone(&stop),
    );

    // Phase 1: 150 members race for coupons; Redis dies a third of the way through.
    let progress = AtomicUsize::new(0);
    let (phase1, ()) = tokio::join!(issue(&cluster, &client, campaign, &riders[..150], &progress), async {
        while progress.load(Ordering::SeqCst) < 50 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        tests::services::infra_await(&["kill", "redis"]).await;
    });
    assert_eq!(phase1, counts(&[(201, "", 150)]));
    assert_eq!(
        readiness(&cluster, &client).await,
        vec![(200, "degraded".into(), "degraded".into()); 2]
    );

    // Phase 2, Redis down: the database alone issues the remaining 50 and refuses the rest
    // and every second attempt; login fails closed.
    let phase2 = issue(&cluster, &client, campaign, &riders[150..250], &progress).await;
    assert_eq!(phase2, counts(&[(201, "", 50), (409, "coupon.sold_out", 50)]));
    let retries = issue(&cluster, &client, campaign, &riders[..20], &progress).await;
    assert_eq!(refused(&retries), 20, "{retries:?}");
    for instance in 0..2 {
        let (status, body) = login(&cluster, &client, instance, &email).await;
        assert_eq!(
            (status, body["code"].as_str()),
            (StatusCode::SERVICE_UNAVAILABLE, Some("auth.rate_limiter_unavailable"))
        );
    }
    tokio::time::sleep(Duration::from_millis(500)).await;

    // Phase 3: Redis is back, empty: the gate admits again, the database refuses.
    tests::services::infra_await(&["start", "redis"]).await;
    let mut up = false;
    for _ in 0..100 {
        if readiness(&cluster, &client).await == vec![(200, "up".into(), "up".into()); 2] {
            up = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(up, "{:?}", readiness(&cluster, &client).await);
    let phase3 = issue(&cluster, &client, campaign, &riders[250..], &progress).await;
    assert_eq!(phase3, counts(&[(409, "coupon.sold_out", 250)]));
    for instance in 0..2 {
        assert_eq!(login(&cluster, &client, instance, &email).await.0, StatusCode::OK);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;

    stop_reads(&stop, readers).await;
    assert_eq!(cluster.issued(campaign).await, (200, 200, 200));

    // Each instance warned once that Redis was gone and noted once that it was back. (The
    // HTTP layer's per-response warning of each refused login is not about the outage.)
    let warnings = logs.warnings.lock().unwrap().clone();
    let redis_warnings: usize = warnings
        .iter()
        .filter(|(key, _)| key.starts_with("adapters_redis"))
        .map(|(_, n)| n)
        .sum();
    assert_eq!(redis_warnings, 2, "{warnings:#?}");
    assert_eq!(logs.recoveries.load(Ordering::SeqCst), 2);
    for (key, n) in &warnings {
        assert!(
            *n <= 2 || key.contains("dependency unavailable"),
            "logged {n} times, more than once per instance: {key}"
        );
    }
    Arc::into_inner(cluster).expect("readers stopped").shutdown().await;
}
