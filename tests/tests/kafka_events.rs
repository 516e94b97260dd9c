//! Events through a real Kafka-protocol broker (`scripts/infra.sh`: tansu on SQLite) and the
//! project's PostgreSQL (and MariaDB, for the two-instance relay): withdrawals expire policies exactly once, through a broker crash, a
//! consumer crash between its database commit and its offset commit, poison messages, two
//! instances relaying and consuming at once, and a data platform that fails and hangs.
//!
//! Each test runs the real server (`server::start`) on a fresh database, under a Kafka
//! namespace of its own (topics and groups), and they run one at a time: some kill the shared
//! broker, and a guard restarts it whatever the test did.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, HashMap, HashSet};
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex as StdMutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use futures::StreamExt;
use sqlx::{MySqlPool, PgPool};
use tokio::sync::{Mutex, Notify};
use uuid::Uuid;

use adapters_kafka::{
    CONSUMER_HEADER, ConsumerSettings, ERROR_HEADER, EVENT_ID_HEADER, KafkaConsumer, KafkaPublisher, KafkaSettings,
    ORIGINAL_OFFSET_HEADER, ORIGINAL_PARTITION_HEADER, ORIGINAL_TOPIC_HEADER,
};
use app_server::config::{Config, InstanceRole};
use app_server::server::{self, Running};
use application::Services;
use application::idempotency::IdempotencyKey;
use application::members::SignUp;
use core_domain::event::{DomainEvent, EventPayload, INSURANCE_EVENTS, MEMBER_EVENTS, PAYMENT_EVENTS};
use core_domain::{EventId, MemberId, PlanId, PolicyId};
use ports::{EventHandler, EventPublisher, Handled, HandlerError, OutboxRecord};
use tests::kafka::{TopicMessage, produce_raw, read_topic};
use tests::services;

/// One test at a time: some kill the shared broker.
static SERIAL: Mutex<()> = Mutex::const_new(());

const PASSWORD: &str = "correct horse battery staple";

/// Restarts the broker when dropped, whatever the test did (a no-op when it runs).
struct RestartBroker;

impl Drop for RestartBroker {
    fn drop(&mut self) {
        if let Err(e) = services::infra(&["start", "kafka"]) {
            eprintln!("restarting the broker: {e}");
        }
    }
}

/// The SQL server a test's instances share.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Server {
    Postgres,
    MariaDb,
}

/// The test's own pool on the fresh database, for the assertions.
enum Pool {
    Postgres(PgPool),
    MariaDb(MySqlPool),
}

/// A fresh database and a fresh Kafka namespace on the shared broker.
struct Env {
    primary_url: String,
    pool: Pool,
    brokers: String,
    namespace: String,
    /// Drops the database when the test ends.
    _db: Box<dyn std::any::Any + Send + Sync>,
}

async fn env(managed_broker: bool) -> Option<Env> {
    env_on(Server::Postgres, managed_broker).await
}

async fn env_on(server: Server, managed_broker: bool) -> Option<Env> {
    let brokers = if managed_broker {
        services::managed_kafka().await?
    } else {
        services::kafka().await?
    };
    let (primary_url, pool, db): (String, Pool, Box<dyn std::any::Any + Send + Sync>) = match server {
        Server::Postgres => {
            let db = services::fresh_pg(&services::postgres().await?).await;
            let pool = PgPool::connect(&db.primary_url)
                .await
                .expect("connect to the test database");
            (db.primary_url.clone(), Pool::Postgres(pool), Box::new(db))
        }
        Server::MariaDb => {
            let db = services::fresh_mariadb(&services::mariadb().await?).await;
            let pool = MySqlPool::connect(&db.primary_url)
                .await
                .expect("connect to the test database");
            (db.primary_url.clone(), Pool::MariaDb(pool), Box::new(db))
        }
    };
    Some(Env {
        primary_url,
        pool,
        brokers,
        namespace: services::kafka_namespace(),
        _db: db,
    })
}

impl Env {
    /// The server configuration of this environment: PostgreSQL, Kafka, fast retries.
    fn config(&self) -> Config {
        let mut config = Config::defaults().expect("defaults");
        config.database.url = self.primary_url.clone().into();
        config.database.max_connections = 10;
        config.server.listen = "127.0.0.1:0".to_owned();
        config.server.drain = Duration::ZERO;
        config.server.admin_listen = "127.0.0.1:0".to_owned();
        config.auth.jwt_secret = "kafka-test-jwt-secret-0123456789abcdef".to_owned().into();
        config.auth.argon2_memory_kib = 1024;
        config.auth.argon2_iterations = 1;
        // Hundreds of concurrent sign-ups wait for a hashing thread rather than being refused.
        config.auth.hash_queue = 100_000;
        config.log.level = "warn".to_owned();
        config.relay.idle_wait = Duration::from_millis(50);
        config.jobs.interval = Duration::from_secs(3600);
        let k = &mut config.kafka;
        k.brokers = self.brokers.clone();
        k.namespace = self.namespace.clone();
        k.partitions = 3;
        k.delivery_timeout = Duration::from_millis(5_000);
        k.consumer_max_attempts = 20;
        k.consumer_backoff = Duration::from_millis(100);
        k.consumer_max_backoff = Duration::from_millis(1_000);
        config
    }

    async fn start(&self, configure: impl FnOnce(&mut Config)) -> Running {
        let mut config = self.config();
        configure(&mut config);
        if std::env::var_os("HEXRIDE_TEST_LOG").is_some() {
            app_server::telemetry::init("pretty", &config.log.level);
        }
        server::start(config).await.expect("the server starts")
    }

    fn topic(&self, name: &str) -> String {
        format!("{}.{name}", self.namespace)
    }

    async fn count(&self, sql: &str) -> i64 {
        let query = sqlx::AssertSqlSafe(sql.to_owned());
        let counted = match &self.pool {
            Pool::Postgres(pool) => sqlx::query_scalar(query).fetch_one(pool).await,
            Pool::MariaDb(pool) => sqlx::query_scalar(query).fetch_one(pool).await,
        };
        counted.unwrap_or_else(|e| panic!("{sql}: {e}"))
    }

    /// `(id, aggregate_id, topic)` of every outbox row, in `seq` order, or only of those of
    /// `event_type`.
    async fn outbox(&self, event_type: Option<&str>) -> Vec<(Uuid, String, String)> {
        let rows = match &self.pool {
            Pool::Postgres(pool) => {
                sqlx::query_as(
                    "select id, aggregate_id, topic from outbox \
                     where event_type = coalesce($1::text, event_type) order by seq",
                )
                .bind(event_type)
                .fetch_all(pool)
                .await
            }
            Pool::MariaDb(pool) => {
                sqlx::query_as(
                    "select id, aggregate_id, topic from outbox \
                     where event_type = coalesce(?, event_type) order by seq",
                )
                .bind(event_type)
                .fetch_all(pool)
                .await
            }
        };
        rows.expect("outbox rows")
    }

    /// Waits until `sql` counts `expected`, failing after `within` with the last count.
    async fn wait_count(&self, sql: &str, expected: i64, within: Duration) {
        let deadline = Instant::now() + within;
        loop {
            let n = self.count(sql).await;
            if n == expected {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "after {within:?}: {n} instead of {expected} for {sql}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until `sql` counts at least `min`.
    async fn wait_at_least(&self, sql: &str, min: i64, within: Duration) {
        let deadline = Instant::now() + within;
        loop {
            let n = self.count(sql).await;
            if n >= min {
                return;
            }
            assert!(Instant::now() < deadline, "after {within:?}: {n} < {min} for {sql}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until the outbox holds `rows` rows, all sent.
    async fn wait_outbox_sent(&self, rows: i64, within: Duration) {
        self.wait_count("select count(*) from outbox where status = 'sent'", rows, within)
            .await;
        assert_eq!(self.count("select count(*) from outbox").await, rows, "outbox rows");
    }

    /// Every one of `n` policies expired once, for its member's withdrawal, at the withdrawal
    /// time: one audit entry and one `insurance.policy_expired` event each, one inbox row per
    /// withdrawal.
    async fn assert_expired_exactly_once(&self, n: i64) {
        let checks = [
            (
                "policies expired for the withdrawal, at withdrawn_at, by the consumer",
                "select count(*) from policies p join members m on m.id = p.member_id \
                 where p.status = 'expired' and p.expiry_reason = 'member_withdrawn' \
                   and p.expired_at = m.withdrawn_at and p.expired_by = 'system:insurance-expiry'",
            ),
            ("policies", "select count(*) from policies"),
            (
                "expiry audit entries",
                "select count(*) from policy_audit where action <> 'enrolled'",
            ),
            (
                "policies with an expiry audit entry",
                "select count(distinct policy_id) from policy_audit \
                 where action = 'expired' and reason = 'member_withdrawn'",
            ),
            (
                "policy_expired events",
                "select count(*) from outbox where event_type = 'insurance.policy_expired'",
            ),
            (
                "policies with a policy_expired event",
                "select count(distinct aggregate_id) from outbox where event_type = 'insurance.policy_expired'",
            ),
            (
                "insurance-expiry inbox rows",
                "select count(*) from inbox where consumer = 'insurance-expiry'",
            ),
        ];
        for (what, sql) in checks {
            assert_eq!(self.count(sql).await, n, "{what}");
        }
    }
}

fn sign_up(tag: &str) -> SignUp {
    SignUp {
        email: format!("{tag}-{}@example.com", Uuid::now_v7().simple()),
        password: PASSWORD.to_owned(),
        name: "Kafka Rider".to_owned(),
        phone: "010-1234-5678".to_owned(),
    }
}

/// A plan offering 6,000 KRW an hour, for riders to enrol in.
async fn plan(services: &Services) -> PlanId {
    let plan = services
        .insurance
        .create_plan("Kafka hourly", 6_000)
        .await
        .expect("a plan");
    plan.id
}

/// `n` riders, each with an active policy.
async fn riders_with_policies(services: &Services, n: usize) -> Vec<(MemberId, PolicyId)> {
    let plan_id = plan(services).await;
    futures::stream::iter(0..n)
        .map(|_| async move {
            let member = services.members.sign_up(sign_up("rider")).await.expect("sign-up");
            let policy = services.insurance.enrol(member.id, plan_id, None).await.expect("enrol");
            (member.id, policy.id)
        })
        .buffer_unordered(16)
        .collect()
        .await
}

async fn withdraw_all(services: &Services, members: &[MemberId]) {
    futures::stream::iter(members)
        .map(|id| async move { services.members.withdraw(*id).await.expect("withdraw") })
        .buffer_unordered(16)
        .collect::<Vec<_>>()
        .await;
}

fn key(key: &str) -> IdempotencyKey {
    IdempotencyKey::parse(key, "fingerprint").expect("a valid key")
}

fn members_of(riders: &[(MemberId, PolicyId)]) -> Vec<MemberId> {
    riders.iter().map(|(m, _)| *m).collect()
}

/// Waits until `check` holds, polling every 20 ms.
async fn eventually<F, Fut>(within: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + within;
    while !check().await {
        assert!(Instant::now() < deadline, "not within {within:?}: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

// --- withdrawals -------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_thousand_withdrawals_expire_every_policy_exactly_once() {
    let _serial = SERIAL.lock().await;
    let Some(env) = env(false).await else { return };
    let log = tests::log_capture::capture();
    let app = env.start(|_| {}).await;
    let services = app.runtime.services.clone();
    let riders = riders_with_policies(&services, 1_000).await;

    withdraw_all(&services, &members_of(&riders)).await;

    env.wait_count(
        "select count(*) from policies where status = 'expired'",
        1_000,
        Duration::from_secs(120),
    )
    .await;
    // registered + withdrawn per member, one policy_expired per policy.
    env.wait_outbox_sent(3_000, Duration::from_secs(60)).await;
    env.assert_expired_exactly_once(1_000).await;

    // The delivery log answers "was this member's withdrawal delivered?" for each of
    // them: produced once, and consumed once where it was produced, applied.
    let members: HashSet<String> = members_of(&riders).iter().map(ToString::to_string).collect();
    let withdrawals = |direction: &'static str| {
        let members = &members;
        move |line: &tests::log_capture::Line| {
            line["target"] == "hexride::delivery"
                && line.get("direction").map(String::as_str) == Some(direction)
                && line.get("event_type").map(String::as_str) == Some("member.withdrawn")
                && line.get("key").is_some_and(|k| members.contains(k))
        }
    };
    eventually(Duration::from_secs(30), "a consumed line per withdrawal", || async {
        log.lines(withdrawals("consumed")).len() >= 1_000
    })
    .await;
    let produced = log.lines(withdrawals("produced"));
    let consumed = log.lines(withdrawals("consumed"));
    assert_eq!((produced.len(), consumed.len()), (1_000, 1_000));
    let topic = env.topic(MEMBER_EVENTS);
    let group = app_server::kafka::settings(&app.runtime.config)
        .expect("kafka settings")
        .group("insurance-expiry");
    let at = |line: &tests::log_capture::Line| {
        (
            line["event_id"].clone(),
            line["partition"].clone(),
            line["offset"].clone(),
            line["key"].clone(),
        )
    };
    let produced_at: HashSet<_> = produced
        .iter()
        .inspect(|line| {
            assert_eq!(
                (line["outcome"].as_str(), line["topic"].as_str()),
                ("delivered", topic.as_str()),
                "{line:?}"
            );
        })
        .map(at)
        .collect();
    let consumed_at: HashSet<_> = consumed
        .iter()
        .inspect(|line| {
            assert_eq!(
                (
                    line["outcome"].as_str(),
                    line["topic"].as_str(),
                    line["consumer"].as_str()
                ),
                ("applied", topic.as_str(), group.as_str()),
                "{line:?}"
            );
        })
        .map(at)
        .collect();
    assert_eq!(produced_at.len(), 1_000, "one event id and offset per withdrawal");
    assert_eq!(consumed_at, produced_at, "each consumed where it was produced");
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn withdrawals_through_a_broker_crash_expire_every_policy_exactly_once() {
    let _serial = SERIAL.lock().await;
    let Some(env) = env(true).await else { return };
    let _restart = RestartBroker;
    // Records wait at most 2 s for their acknowledgement, and the broker stays down longer:
    // publishes fail and the relay retries them.
    let app = env
        .start(|c| c.kafka.delivery_timeout = Duration::from_millis(2_000))
        .await;
    let services = app.runtime.services.clone();
    let riders = riders_with_policies(&services, 1_000).await;
    let members = members_of(&riders);

    withdraw_all(&services, &members[..300]).await;
    // Mid-run: some withdrawals consumed, some published and not consumed, some not published.
    env.wait_at_least(
        "select count(*) from policies where status = 'expired'",
        100,
        Duration::from_secs(60),
    )
    .await;
    services::infra_await(&["kill", "kafka"]).await;
    withdraw_all(&services, &members[300..700]).await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    services::infra_await(&["start", "kafka"]).await;
    withdraw_all(&services, &members[700..]).await;

    env.wait_count(
        "select count(*) from policies where status = 'expired'",
        1_000,
        Duration::from_secs(180),
    )
    .await;
    env.wait_outbox_sent(3_000, Duration::from_secs(120)).await;
    assert_eq!(env.count("select count(*) from outbox where status = 'dead'").await, 0);
    assert!(
        env.count("select count(*) from outbox where attempts > 0").await > 0,
        "some publishes failed during the outage and were retried"
    );
    env.assert_expired_exactly_once(1_000).await;
    // Nothing reached the dead-letter topic: the crash only delayed delivery.
    assert!(
        read_topic(&env.brokers, &env.topic("member-events.dlt"))
            .await
            .is_empty()
    );
    app.shutdown().await;
}

// --- consumers ---------------------------------------------------------------------------

/// The real handler, but after it applied a withdrawal (effect and inbox row committed) it
/// signals and never returns: the consumer is then killed before it commits the offset.
struct CrashAfterApplying {
    inner: Arc<dyn EventHandler>,
    applied: Arc<Notify>,
}

#[async_trait]
impl EventHandler for CrashAfterApplying {
    fn name(&self) -> &'static str {
        self.inner.name()
    }

    fn topics(&self) -> Vec<&'static str> {
        self.inner.topics()
    }

    async fn handle(&self, event: &DomainEvent) -> Result<Handled, HandlerError> {
        let handled = self.inner.handle(event).await?;
        if matches!(event.payload, EventPayload::MemberWithdrawn { .. }) {
            self.applied.notify_one();
            std::future::pending::<()>().await;
        }
        Ok(handled)
    }
}

/// The real handler, recording each withdrawal it is given and what the handler answered.
struct Recording {
    inner: Arc<dyn EventHandler>,
    withdrawals: StdMutex<Vec<(EventId, Result<Handled, HandlerError>)>>,
}

#[async_trait]
impl EventHandler for Recording {
    fn name(&self) -> &'static str {
        self.inner.name()
    }

    fn topics(&self) -> Vec<&'static str> {
        self.inner.topics()
    }

    async fn handle(&self, event: &DomainEvent) -> Result<Handled, HandlerError> {
        let result = self.inner.handle(event).await;
        if matches!(event.payload, EventPayload::MemberWithdrawn { .. }) {
            self.withdrawals.lock().unwrap().push((event.id, result.clone()));
        }
        result
    }
}

fn expiry_handler(app: &Running) -> Arc<dyn EventHandler> {
    app.runtime
        .handlers
        .iter()
        .find(|h| h.name() == "insurance-expiry")
        .cloned()
        .expect("the insurance-expiry handler")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_withdrawal_redelivered_after_a_consumer_crash_is_a_no_op() {
    let _serial = SERIAL.lock().await;
    let Some(env) = env(false).await else { return };
    let log = tests::log_capture::capture();
    // API only: the test runs the relay and the consumers itself.
    let app = env.start(|c| c.server.role = InstanceRole::Api).await;
    let (stop_relay, relay_stopped) = server::Shutdown::new();
    let relay = app.runtime.relay("test-relay");
    let relay_task = tokio::spawn(async move { relay.run(relay_stopped.wait()).await });
    let settings = app_server::kafka::settings(&app.runtime.config).expect("kafka settings");
    let group = settings.group("insurance-expiry");
    let topic = env.topic(MEMBER_EVENTS);

    let applied = Arc::new(Notify::new());
    let crashing = KafkaConsumer::new(
        &settings,
        Arc::new(CrashAfterApplying {
            inner: expiry_handler(&app),
            applied: Arc::clone(&applied),
        }),
    )
    .expect("consumer");
    let crashing = tokio::spawn(crashing.run(std::future::pending()));
    let services = app.runtime.services.clone();
    let riders = riders_with_policies(&services, 1).await;
    services.members.withdraw(riders[0].0).await.expect("withdraw");

    tokio::time::timeout(Duration::from_secs(60), applied.notified())
        .await
        .expect("the consumer applies the withdrawal");
    // The effect and its inbox row are committed; the consumer dies before its offset commit.
    env.assert_expired_exactly_once(1).await;
    crashing.abort();
    assert!(crashing.await.expect_err("killed").is_cancelled());
    let committed = committed_withdrawal(&env, &group, &topic).await;

    let recording = Arc::new(Recording {
        inner: expiry_handler(&app),
        withdrawals: StdMutex::new(Vec::new()),
    });
    let (stop_consumer, consumer_stopped) = server::Shutdown::new();
    let consumer = KafkaConsumer::new(&settings, recording.clone()).expect("consumer");
    let consumer = tokio::spawn(consumer.run(consumer_stopped.wait()));
    eventually(Duration::from_secs(60), "the withdrawal is delivered again", || async {
        !recording.withdrawals.lock().unwrap().is_empty()
    })
    .await;

    let redelivered = recording.withdrawals.lock().unwrap().clone();
    assert_eq!(redelivered.len(), 1, "{redelivered:?}");
    assert_eq!(
        redelivered[0].1,
        Ok(Handled::Duplicate),
        "the redelivery is handled as a duplicate"
    );
    assert!(
        !committed,
        "the crashed consumer had not committed the withdrawal's offset"
    );
    env.assert_expired_exactly_once(1).await;

    // The delivery log: produced once; consumed once, where it was produced, as a
    // duplicate (the crashed consumer's handler never returned, so it logged nothing).
    let event_id = redelivered[0].0.to_string();
    let of_event = |direction: &'static str| {
        let event_id = event_id.clone();
        move |line: &tests::log_capture::Line| {
            line["target"] == "hexride::delivery"
                && line.get("event_id") == Some(&event_id)
                && line.get("direction").map(String::as_str) == Some(direction)
        }
    };
    eventually(Duration::from_secs(10), "the redelivery's consumed line", || async {
        !log.lines(of_event("consumed")).is_empty()
    })
    .await;
    let (produced, consumed) = (log.lines(of_event("produced")), log.lines(of_event("consumed")));
    assert_eq!(produced.len(), 1, "{produced:?}");
    let outcomes: Vec<&str> = consumed.iter().map(|l| l["outcome"].as_str()).collect();
    assert_eq!(outcomes, ["duplicate"], "{consumed:?}");
    for field in ["topic", "partition", "offset", "key"] {
        assert_eq!(consumed[0][field], produced[0][field], "{field}");
    }
    assert_eq!(consumed[0]["consumer"], group);

    // A graceful stop commits what was handled: the group is at the end of the topic.
    let _ = stop_consumer.send(true);
    consumer.await.expect("consumer task").expect("consumer ran");
    assert_eq!(
        tests::kafka::committed_offsets(&env.brokers, &group, &topic).await,
        non_empty(tests::kafka::end_offsets(&env.brokers, &topic).await)
    );
    let _ = stop_relay.send(true);
    relay_task.await.expect("relay task");
    app.shutdown().await;
}

/// Whether `group` has committed past every record of `topic` (the withdrawal included).
async fn committed_withdrawal(env: &Env, group: &str, topic: &str) -> bool {
    let committed = tests::kafka::committed_offsets(&env.brokers, group, topic).await;
    non_empty(tests::kafka::end_offsets(&env.brokers, topic).await)
        .iter()
        .all(|(p, end)| committed.get(p) == Some(end))
}

/// The partitions that hold records.
fn non_empty(ends: BTreeMap<i32, i64>) -> BTreeMap<i32, i64> {
    ends.into_iter().filter(|(_, end)| *end > 0).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn poison_messages_go_to_the_dead_letter_topic_and_the_partition_moves_on() {
    let _serial = SERIAL.lock().await;
    let Some(env) = env(false).await else { return };
    let app = env.start(|_| {}).await;
    let services = app.runtime.services.clone();
    let topic = env.topic(MEMBER_EVENTS);
    let riders = riders_with_policies(&services, 1).await;
    let member = riders[0].0;

    // Keyed like the member's events: the same partition, ahead of the withdrawal.
    let key = member.to_string();
    let garbage = produce_raw(&env.brokers, &topic, &key, b"{not json").await;
    let unknown_type = format!(
        r#"{{"id":"{}","type":"member.exploded","occurred_at":"2026-05-01T00:00:00Z","aggregate_id":"{member}","data":{{}}}}"#,
        Uuid::now_v7()
    );
    let unknown = produce_raw(&env.brokers, &topic, &key, unknown_type.as_bytes()).await;
    services.members.withdraw(member).await.expect("withdraw");

    env.wait_count(
        "select count(*) from policies where status = 'expired'",
        1,
        Duration::from_secs(60),
    )
    .await;
    env.assert_expired_exactly_once(1).await;
    let dlt_topic = format!("{topic}.dlt");
    let deadline = Instant::now() + Duration::from_secs(30);
    let dead = loop {
        let dead = read_topic(&env.brokers, &dlt_topic).await;
        if dead.len() >= 2 || Instant::now() > deadline {
            break dead;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(dead.len(), 2, "{dead:?}");
    for (message, (partition, offset), payload) in [
        (&dead[0], garbage, b"{not json".to_vec()),
        (&dead[1], unknown, unknown_type.clone().into_bytes()),
    ] {
        assert_eq!(message.payload.as_deref(), Some(payload.as_slice()));
        assert_eq!(message.key.as_deref(), Some(key.as_str()));
        assert!(
            message
                .header(ERROR_HEADER)
                .unwrap_or_default()
                .contains("unparsable event"),
            "{message:?}"
        );
        assert_eq!(message.header(ORIGINAL_TOPIC_HEADER), Some(topic.as_str()));
        assert_eq!(
            message.header(ORIGINAL_PARTITION_HEADER),
            Some(partition.to_string().as_str())
        );
        assert_eq!(
            message.header(ORIGINAL_OFFSET_HEADER),
            Some(offset.to_string().as_str())
        );
        assert_eq!(
            message.header(CONSUMER_HEADER),
            Some(format!("{}.insurance-expiry", env.namespace).as_str())
        );
    }
    app.shutdown().await;
}

/// Fails the first event transiently for good, the second permanently, accepts the rest.
struct Scripted {
    transient: EventId,
    permanent: EventId,
    calls: StdMutex<HashMap<EventId, usize>>,
}

#[async_trait]
impl EventHandler for Scripted {
    fn name(&self) -> &'static str {
        "scripted"
    }

    fn topics(&self) -> Vec<&'static str> {
        vec![MEMBER_EVENTS]
    }

    async fn handle(&self, event: &DomainEvent) -> Result<Handled, HandlerError> {
        *self.calls.lock().unwrap().entry(event.id).or_default() += 1;
        if event.id == self.transient {
            Err(HandlerError::Transient("database unavailable".into()))
        } else if event.id == self.permanent {
            Err(HandlerError::Permanent("member unknown to this system".into()))
        } else {
            Ok(Handled::Applied)
        }
    }
}

fn withdrawn_event() -> DomainEvent {
    let at = time::OffsetDateTime::now_utc();
    DomainEvent::new(
        EventId(Uuid::now_v7()),
        at,
        EventPayload::MemberWithdrawn {
            member_id: MemberId(Uuid::now_v7()),
            withdrawn_at: at,
        },
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn failing_handlers_are_retried_then_dead_lettered_and_the_partition_moves_on() {
    let _serial = SERIAL.lock().await;
    let Some(brokers) = services::kafka().await else { return };
    let settings = KafkaSettings {
        brokers,
        namespace: services::kafka_namespace(),
        // One partition: the three events are consumed strictly one after the other.
        partitions: 1,
        consumer: ConsumerSettings {
            max_attempts: 3,
            base_backoff: Duration::from_millis(20),
            max_backoff: Duration::from_millis(100),
            ..ConsumerSettings::default()
        },
        ..KafkaSettings::default()
    };
    adapters_kafka::ensure_topics(&settings, &[MEMBER_EVENTS], Duration::from_secs(30))
        .await
        .expect("topics");
    let (first, second, third) = (withdrawn_event(), withdrawn_event(), withdrawn_event());
    let handler = Arc::new(Scripted {
        transient: first.id,
        permanent: second.id,
        calls: StdMutex::new(HashMap::new()),
    });
    let publisher = KafkaPublisher::new(&settings).expect("publisher");
    let records: Vec<OutboxRecord> = [&first, &second, &third].map(OutboxRecord::of).to_vec();
    assert_eq!(publisher.publish(&records).await, vec![Ok(()), Ok(()), Ok(())]);

    let (stop, stopped) = server::Shutdown::new();
    let consumer = KafkaConsumer::new(&settings, handler.clone()).expect("consumer");
    let consumer = tokio::spawn(consumer.run(stopped.wait()));
    eventually(Duration::from_secs(60), "the third event is handled", || async {
        handler.calls.lock().unwrap().contains_key(&third.id)
    })
    .await;
    let _ = stop.send(true);
    consumer.await.expect("consumer task").expect("consumer ran");

    let calls = handler.calls.lock().unwrap().clone();
    assert_eq!(calls, HashMap::from([(first.id, 3), (second.id, 1), (third.id, 1)]));
    let topic = settings.topic(MEMBER_EVENTS);
    let dead = read_topic(&settings.brokers, &format!("{topic}.dlt")).await;
    assert_eq!(dead.len(), 2, "{dead:?}");
    assert_eq!(dead[0].header(EVENT_ID_HEADER), Some(first.id.to_string().as_str()));
    assert_eq!(dead[0].payload.as_deref(), Some(records[0].payload.as_bytes()));
    let error = dead[0].header(ERROR_HEADER).unwrap_or_default();
    assert!(
        error.contains("database unavailable") && error.contains("after 3 attempts"),
        "{error}"
    );
    assert_eq!(dead[1].header(EVENT_ID_HEADER), Some(second.id.to_string().as_str()));
    assert_eq!(dead[1].header(ERROR_HEADER), Some("member unknown to this system"));
    // All three are done: the group committed the end of the partition.
    assert_eq!(
        tests::kafka::committed_offsets(&settings.brokers, &settings.group("scripted"), &topic).await,
        BTreeMap::from([(0, 3)])
    );
    publisher.flush(Duration::from_secs(5)).await;
}

// --- several instances -------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_instances_publish_each_event_once_and_keep_each_members_order() {
    two_instances_publish_each_event_once_and_keep_each_members_order_on(Server::Postgres).await;
}

/// MariaDB has no LISTEN/NOTIFY: each instance's relay is woken by its own commits and polls
/// for the other's, and `for update skip locked` keeps their claims apart.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_instances_on_mariadb_publish_each_event_once_and_keep_each_members_order() {
    two_instances_publish_each_event_once_and_keep_each_members_order_on(Server::MariaDb).await;
}

async fn two_instances_publish_each_event_once_and_keep_each_members_order_on(server: Server) {
    let _serial = SERIAL.lock().await;
    let Some(env) = env_on(server, false).await else { return };
    let (a, b) = (env.start(|_| {}).await, env.start(|_| {}).await);
    let instances = [a.runtime.services.clone(), b.runtime.services.clone()];
    let plan_id = plan(&instances[0]).await;

    // Each member signs up and enrols on one instance and withdraws on the other at once,
    // so their `member.registered` is often still unsent when `member.withdrawn` commits.
    futures::stream::iter(0..300usize)
        .map(|i| {
            let (here, there) = (&instances[i % 2], &instances[(i + 1) % 2]);
            async move {
                let member = here.members.sign_up(sign_up("pair")).await.expect("sign-up");
                here.insurance.enrol(member.id, plan_id, None).await.expect("enrol");
                there.members.withdraw(member.id).await.expect("withdraw");
            }
        })
        .buffer_unordered(16)
        .collect::<Vec<_>>()
        .await;

    env.wait_count(
        "select count(*) from policies where status = 'expired'",
        300,
        Duration::from_secs(120),
    )
    .await;
    env.wait_outbox_sent(900, Duration::from_secs(60)).await;
    env.assert_expired_exactly_once(300).await;

    let outbox = env.outbox(None).await;
    let mut published: Vec<TopicMessage> = read_topic(&env.brokers, &env.topic(MEMBER_EVENTS)).await;
    published.extend(read_topic(&env.brokers, &env.topic(INSURANCE_EVENTS)).await);

    // Every event exactly once in Kafka.
    let mut copies: HashMap<String, usize> = HashMap::new();
    for message in &published {
        *copies
            .entry(message.header(EVENT_ID_HEADER).expect("event_id header").to_owned())
            .or_default() += 1;
    }
    assert_eq!(published.len(), outbox.len(), "records in Kafka");
    assert!(copies.values().all(|n| *n == 1), "an event was published twice");
    let ids: HashSet<String> = outbox.iter().map(|(id, _, _)| id.to_string()).collect();
    assert_eq!(copies.keys().cloned().collect::<HashSet<_>>(), ids);

    // Each aggregate's events in Kafka (one partition per key, offset order) in outbox order.
    let mut in_kafka: HashMap<(String, String), Vec<String>> = HashMap::new();
    for (topic, message) in published.iter().map(|m| (m.header("event_type"), m)) {
        let topic = topic.map(|t| t.split('.').next().unwrap_or_default().to_owned());
        in_kafka
            .entry((topic.unwrap_or_default(), message.key.clone().expect("key")))
            .or_default()
            .push(message.header(EVENT_ID_HEADER).expect("event_id").to_owned());
    }
    let mut in_outbox: HashMap<(String, String), Vec<String>> = HashMap::new();
    for (id, aggregate, topic) in &outbox {
        let context = if topic == MEMBER_EVENTS { "member" } else { "insurance" };
        in_outbox
            .entry((context.to_owned(), aggregate.clone()))
            .or_default()
            .push(id.to_string());
    }
    assert_eq!(in_kafka.len(), 600, "300 members and 300 policies");
    assert_eq!(in_kafka, in_outbox, "per-aggregate order");
    a.shutdown().await;
    b.shutdown().await;
}

// --- the data platform -------------------------------------------------------------------

/// How the fake data platform answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Accept,
    Fail,
    Hang,
}

#[derive(Clone)]
struct Platform {
    mode: Arc<StdMutex<Mode>>,
    /// Event id → how many times it was accepted (answered 2xx).
    accepted: Arc<StdMutex<HashMap<String, usize>>>,
    failed: Arc<AtomicUsize>,
    hung: Arc<AtomicUsize>,
}

async fn receive(State(platform): State<Platform>, headers: HeaderMap, body: String) -> StatusCode {
    let mode = *platform.mode.lock().unwrap();
    match mode {
        Mode::Accept => {
            let key = headers["idempotency-key"].to_str().expect("key").to_owned();
            let event = DomainEvent::from_json(body.as_bytes()).expect("an event envelope");
            assert_eq!(event.id.to_string(), key, "Idempotency-Key is the event id");
            *platform.accepted.lock().unwrap().entry(key).or_default() += 1;
            StatusCode::ACCEPTED
        }
        Mode::Fail => {
            platform.failed.fetch_add(1, Ordering::SeqCst);
            StatusCode::INTERNAL_SERVER_ERROR
        }
        Mode::Hang => {
            platform.hung.fetch_add(1, Ordering::SeqCst);
            // Longer than the client's timeout, which gives up and drops the request; a hung
            // request never counts as accepted.
            tokio::time::sleep(Duration::from_secs(30)).await;
            StatusCode::SERVICE_UNAVAILABLE
        }
    }
}

impl Platform {
    async fn start() -> (Self, String) {
        let platform = Platform {
            mode: Arc::new(StdMutex::new(Mode::Accept)),
            accepted: Arc::new(StdMutex::new(HashMap::new())),
            failed: Arc::new(AtomicUsize::new(0)),
            hung: Arc::new(AtomicUsize::new(0)),
        };
        let app = Router::new()
            .route("/events", post(receive))
            .with_state(platform.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("http://{}/events", listener.local_addr().expect("address"));
        tokio::spawn(async move { axum::serve(listener, app).await.expect("fake platform") });
        (platform, url)
    }

    fn set(&self, mode: Mode) {
        *self.mode.lock().unwrap() = mode;
    }

    fn accepted(&self) -> HashMap<String, usize> {
        self.accepted.lock().unwrap().clone()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn payments_reach_the_data_platform_exactly_once_through_errors_and_hangs() {
    let _serial = SERIAL.lock().await;
    let Some(env) = env(false).await else { return };
    let (platform, url) = Platform::start().await;
    let app = env
        .start(|c| {
            let dp = &mut c.data_platform;
            dp.url = url;
            dp.timeout = Duration::from_millis(300);
            dp.max_attempts = 2;
            dp.backoff = Duration::from_millis(20);
            dp.breaker_threshold = 3;
            dp.breaker_cooldown = Duration::from_secs(1);
            // Enough retries to outlast the outage below (about 40 × 0.5 s).
            c.kafka.consumer_max_attempts = 40;
            c.kafka.consumer_max_backoff = Duration::from_millis(500);
        })
        .await;
    let services = app.runtime.services.clone();
    let product = services.catalog.create("Helmet", 100, 1_000).await.expect("product");
    let mut buyers = Vec::new();
    for _ in 0..10 {
        let member = services.members.sign_up(sign_up("buyer")).await.expect("sign-up");
        services.wallet.charge(member.id, 10_000, None).await.expect("charge");
        buyers.push(member.id);
    }
    let pay = |count: usize| {
        let (services, buyers) = (services.clone(), buyers.clone());
        async move {
            futures::stream::iter(0..count)
                .map(|i| {
                    let (services, buyer) = (services.clone(), buyers[i % buyers.len()]);
                    async move {
                        let order = services
                            .orders
                            .place(buyer, vec![(product.id, 1)], None, None)
                            .await
                            .expect("order");
                        services
                            .orders
                            .pay(buyer, order.id, &key(&Uuid::now_v7().to_string()))
                            .await
                            .expect("payment");
                    }
                })
                .buffer_unordered(8)
                .collect::<Vec<_>>()
                .await;
        }
    };

    pay(150).await;
    platform.set(Mode::Fail);
    pay(150).await;
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    platform.set(Mode::Hang);
    pay(200).await;
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    platform.set(Mode::Accept);

    eventually(Duration::from_secs(120), "500 payments accepted", || async {
        platform.accepted().len() >= 500
    })
    .await;
    env.wait_count(
        "select count(*) from inbox where consumer = 'data-platform'",
        500,
        Duration::from_secs(30),
    )
    .await;
    let payments: Vec<Uuid> = env
        .outbox(Some("payment.succeeded"))
        .await
        .into_iter()
        .map(|(id, _, _)| id)
        .collect();
    let expected: HashMap<String, usize> = payments.iter().map(|id| (id.to_string(), 1)).collect();
    assert_eq!(expected.len(), 500);
    assert_eq!(platform.accepted(), expected, "each payment accepted exactly once");
    assert!(
        platform.failed.load(Ordering::SeqCst) > 0,
        "the platform failed some requests"
    );
    assert!(
        platform.hung.load(Ordering::SeqCst) > 0,
        "the platform hung on some requests"
    );
    assert!(
        read_topic(&env.brokers, &env.topic(&format!("{PAYMENT_EVENTS}.dlt")))
            .await
            .is_empty(),
        "nothing dead-lettered"
    );
    app.shutdown().await;
}
