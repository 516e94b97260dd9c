//! Read routing of the PostgreSQL adapter against a real primary and streaming replica
//! (`scripts/infra.sh`): reads land on the replica, read-your-writes falls back to the primary
//! while the replica lags, a replica killed under load fails no read, and a lagging replica
//! is reported degraded and skipped.
//!
//! These tests lag and kill the shared replica, so they run one at a time (a global lock) and
//! always leave it started and without lag (a guard that runs `scripts/infra.sh` on drop,
//! even when the test fails).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use sqlx::{Connection, PgConnection};
use tokio::sync::Mutex;
use uuid::Uuid;

use adapters_postgres::{PgConfig, PgStore, ReadStats};
use core_domain::ProductId;
use core_domain::catalog::{NewProduct, Product};
use core_domain::event::{DomainEvent, EventPayload};
use core_domain::member::Role;
use core_domain::{EventId, MemberId};
use ports::{CatalogReads, CommitToken, Consistency, Database, HealthCheck, HealthStatus, OutboxStore};
use tests::services::{self, PgDatabase};

/// One routing test at a time: they change the shared replica.
static SERIAL: Mutex<()> = Mutex::const_new(());

/// Puts the replica back (started, no replay delay) when dropped, whatever the test did.
/// Made once a test has its fixture, so a skipped test leaves the infrastructure alone.
struct RestoreReplica;

impl Drop for RestoreReplica {
    fn drop(&mut self) {
        for args in [&["start", "pg-replica"][..], &["lag", "0"][..]] {
            if let Err(e) = services::infra(args) {
                eprintln!("restoring the replica: {e}");
            }
        }
    }
}

/// Runs `scripts/infra.sh` off the async threads (it waits for the servers).
async fn infra(args: &'static [&'static str]) {
    tokio::task::spawn_blocking(move || services::infra(args))
        .await
        .expect("infra.sh task")
        .unwrap_or_else(|e| panic!("{e}"));
}

struct Fixture {
    store: PgStore,
    db: PgDatabase,
}

/// A migrated store over a fresh database with the replica, once the replica has the schema.
async fn fixture(tune: impl FnOnce(&mut PgConfig)) -> Option<Fixture> {
    let pg = services::postgres_with_replica().await?;
    let db = services::fresh_pg(&pg).await;
    let mut config = PgConfig {
        primary_url: db.primary_url.clone(),
        replica_urls: vec![db.replica_url.clone()],
        health_interval: Duration::from_millis(200),
        ..PgConfig::default()
    };
    tune(&mut config);
    let store = PgStore::connect(&config).await.expect("connect");
    store.migrate().await.expect("migrate");
    let fixture = Fixture { store, db };
    let token = fixture.store_product("warm-up").await.1;
    fixture.wait_replayed(&token).await;
    fixture.wait_healthy().await;
    Some(fixture)
}

impl Fixture {
    async fn store_product(&self, name: &str) -> (Product, CommitToken) {
        let product = Product::create(
            ProductId(Uuid::now_v7()),
            NewProduct::parse(name, 1_000, 10).expect("valid product"),
            // What the database keeps: microseconds.
            tests::contract::now(),
        );
        let mut uow = self.store.begin().await.expect("begin");
        uow.catalog().insert(&product).await.expect("insert product");
        let token = uow.commit().await.expect("commit");
        (product, token)
    }

    /// Waits until the replica has replayed `token` (asking it directly).
    async fn wait_replayed(&self, token: &CommitToken) {
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut conn = PgConnection::connect(&self.db.replica_url)
            .await
            .expect("connect to the replica");
        loop {
            let replayed: Option<bool> = sqlx::query_scalar("select pg_last_wal_replay_lsn() >= $1::pg_lsn")
                .bind(&token.0)
                .fetch_one(&mut conn)
                .await
                .expect("replay position");
            if replayed == Some(true) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the replica did not replay {} in 30 s",
                token.0
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits until the store's health checks call the replica healthy.
    async fn wait_healthy(&self) {
        self.wait_replica(Duration::from_secs(60), |r| r.healthy, "healthy")
            .await;
    }

    async fn wait_replica(
        &self,
        within: Duration,
        wanted: impl Fn(&adapters_postgres::ReplicaState) -> bool,
        what: &str,
    ) -> adapters_postgres::ReplicaState {
        let deadline = Instant::now() + within;
        loop {
            let state = self.store.backend().replicas().remove(0);
            if wanted(&state) {
                return state;
            }
            assert!(
                Instant::now() < deadline,
                "the replica was not {what} within {within:?}: {state:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn stats(&self) -> ReadStats {
        self.store.backend().read_stats()
    }
}

/// The change from `before` to `after`, field by field.
fn delta(before: ReadStats, after: ReadStats) -> ReadStats {
    ReadStats {
        primary: after.primary - before.primary,
        replica: after.replica - before.replica,
        no_healthy_replica: after.no_healthy_replica - before.no_healthy_replica,
        not_caught_up: after.not_caught_up - before.not_caught_up,
        replica_error: after.replica_error - before.replica_error,
    }
}

/// `checkpoint` on a standby: an immediate restartpoint (best effort: needs a superuser).
async fn restartpoint(replica_url: &str) {
    let result = async {
        let mut conn = PgConnection::connect(replica_url).await?;
        sqlx::query("checkpoint").execute(&mut conn).await
    }
    .await;
    if let Err(e) = result {
        eprintln!("no restartpoint before the kill: {e}");
    }
}

async fn connections_named(url: &str, application_name: &str) -> i64 {
    let mut conn = PgConnection::connect(url).await.expect("connect");
    sqlx::query_scalar(
        "select count(*) from pg_stat_activity where datname = current_database() and application_name = $1",
    )
    .bind(application_name)
    .fetch_one(&mut conn)
    .await
    .expect("pg_stat_activity")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn eventual_reads_land_on_the_replica_and_strong_reads_on_the_primary() {
    let _serial = SERIAL.lock().await;
    let Some(f) = fixture(|_| {}).await else { return };
    let _restore = RestoreReplica;
    let (product, token) = f.store_product("Helmet").await;
    f.wait_replayed(&token).await;

    let before = f.stats();
    for _ in 0..50 {
        let read = f.store.product(product.id, Consistency::Eventual).await.expect("read");
        assert_eq!(read.as_ref(), Some(&product));
    }
    let d = delta(before, f.stats());
    assert_eq!((d.replica, d.primary), (50, 0), "{d:?}");
    // The replica's own view: the store's replica pool is connected to it, by name.
    assert!(connections_named(&f.db.replica_url, "hexride-replica-1").await >= 1);

    let before = f.stats();
    for _ in 0..10 {
        assert!(
            f.store
                .product(product.id, Consistency::Strong)
                .await
                .expect("read")
                .is_some()
        );
    }
    // A token the replica has replayed is served by the replica.
    assert!(
        f.store
            .product(product.id, Consistency::ReadYourWrites(token))
            .await
            .expect("read")
            .is_some()
    );
    let d = delta(before, f.stats());
    assert_eq!((d.primary, d.replica), (10, 1), "{d:?}");
    assert_eq!(d.not_caught_up + d.no_healthy_replica + d.replica_error, 0, "{d:?}");

    let health = f.store.health().await;
    assert_eq!(
        health.iter().map(|c| (c.name.as_str(), c.status)).collect::<Vec<_>>(),
        [("database", HealthStatus::Up), ("replica-1", HealthStatus::Up)]
    );
    f.store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_lagging_replica_sends_read_your_writes_to_the_primary_but_keeps_eventual_reads() {
    let _serial = SERIAL.lock().await;
    let Some(f) = fixture(|_| {}).await else { return };
    let _restore = RestoreReplica;
    let (old, token) = f.store_product("Old").await;
    f.wait_replayed(&token).await;

    infra(&["lag", "2"]).await;
    let (new, token) = f.store_product("New").await;
    let before = f.stats();
    let started = Instant::now();
    let read = f
        .store
        .product(new.id, Consistency::ReadYourWrites(token.clone()))
        .await
        .expect("read your write");
    let waited = started.elapsed();
    assert_eq!(read, Some(new.clone()), "the writer sees its write at once");
    let d = delta(before, f.stats());
    assert_eq!((d.not_caught_up, d.primary, d.replica), (1, 1, 0), "{d:?}");
    // It waited `read_your_writes_wait` (200 ms) for the replica, not the 2 s of lag.
    assert!(
        waited >= Duration::from_millis(180) && waited < Duration::from_millis(1_500),
        "{waited:?}"
    );

    // Eventual reads still go to the (healthy, within 5 s) replica, which has not seen the
    // new row yet but has the old one.
    let before = f.stats();
    assert_eq!(
        f.store.product(old.id, Consistency::Eventual).await.expect("read"),
        Some(old.clone())
    );
    assert_eq!(
        f.store.product(new.id, Consistency::Eventual).await.expect("read"),
        None
    );
    let d = delta(before, f.stats());
    assert_eq!((d.replica, d.primary), (2, 0), "{d:?}");

    // Once replayed, the same token is served by the replica.
    f.wait_replayed(&token).await;
    let before = f.stats();
    assert_eq!(
        f.store
            .product(new.id, Consistency::ReadYourWrites(token))
            .await
            .expect("read"),
        Some(new)
    );
    let d = delta(before, f.stats());
    assert_eq!((d.replica, d.primary), (1, 0), "{d:?}");

    infra(&["lag", "0"]).await;
    f.store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_replica_killed_under_load_fails_no_read_and_is_used_again_once_back() {
    let _serial = SERIAL.lock().await;
    let Some(f) = fixture(|_| {}).await else { return };
    let _restore = RestoreReplica;
    let (product, token) = f.store_product("Gloves").await;
    f.wait_replayed(&token).await;
    let store = f.store.clone();

    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let readers: Vec<_> = (0..8)
        .map(|n| {
            let (store, stop, ok, failed) = (store.clone(), stop.clone(), ok.clone(), failed.clone());
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    let result = if n % 2 == 0 {
                        store
                            .product(product.id, Consistency::Eventual)
                            .await
                            .map(|p| p.is_some())
                    } else {
                        store
                            .products(None, 10, Consistency::Eventual)
                            .await
                            .map(|p| !p.is_empty())
                    };
                    match result {
                        Ok(true) => ok.fetch_add(1, Ordering::Relaxed),
                        Ok(false) | Err(_) => {
                            eprintln!("read failed: {result:?}");
                            failed.fetch_add(1, Ordering::Relaxed)
                        }
                    };
                }
            })
        })
        .collect();

    tokio::time::sleep(Duration::from_secs(1)).await;
    let before_kill = f.stats();
    assert!(
        before_kill.replica > 0,
        "reads were landing on the replica: {before_kill:?}"
    );
    // A restartpoint first, so the killed replica's crash recovery replays seconds of WAL,
    // not everything since its last (spread, often unfinished) restartpoint: this test is
    // about routing, not about how long a standby takes to recover.
    restartpoint(&f.db.replica_url).await;
    infra(&["kill", "pg-replica"]).await;
    let down = f
        .wait_replica(Duration::from_secs(10), |r| !r.healthy, "marked unhealthy")
        .await;
    assert!(
        down.problem.as_deref().unwrap_or_default().starts_with("down"),
        "{down:?}"
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    let health = f.store.health().await;
    assert_eq!(health[0].status, HealthStatus::Up, "{health:?}");
    assert_eq!(health[1].status, HealthStatus::Degraded, "{health:?}");

    stop.store(true, Ordering::Relaxed);
    for reader in readers {
        reader.await.expect("reader");
    }
    let d = delta(before_kill, f.stats());
    eprintln!(
        "replica killed under load: {} reads, {} failed; since the kill: {d:?}",
        ok.load(Ordering::Relaxed),
        failed.load(Ordering::Relaxed)
    );
    assert_eq!(failed.load(Ordering::Relaxed), 0, "no read failed");
    assert!(ok.load(Ordering::Relaxed) > 100, "{} reads", ok.load(Ordering::Relaxed));
    assert!(
        d.replica_error + d.no_healthy_replica > 0,
        "fallbacks were counted: {d:?}"
    );
    assert!(d.primary > 0, "{d:?}");

    infra(&["start", "pg-replica"]).await;
    f.wait_healthy().await;
    let before = f.stats();
    for _ in 0..20 {
        assert!(
            f.store
                .product(product.id, Consistency::Eventual)
                .await
                .expect("read")
                .is_some()
        );
    }
    let d = delta(before, f.stats());
    assert_eq!((d.replica, d.primary), (20, 0), "reads are back on the replica: {d:?}");
    f.store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_replica_lagging_past_the_limit_is_degraded_and_skipped_and_refuses_writes() {
    let _serial = SERIAL.lock().await;
    let Some(f) = fixture(|c| c.max_replica_lag = Duration::from_millis(500)).await else {
        return;
    };
    let _restore = RestoreReplica;
    let (product, token) = f.store_product("Jacket").await;
    f.wait_replayed(&token).await;

    infra(&["lag", "2"]).await;
    // A steady trickle of commits: replay stays ~2 s behind them.
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (store, stop) = (f.store.clone(), stop.clone());
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let mut uow = store.begin().await.expect("begin");
                let p = Product::create(
                    ProductId(Uuid::now_v7()),
                    NewProduct::parse("Trickle", 1_000, 1).expect("valid"),
                    tests::contract::now(),
                );
                uow.catalog().insert(&p).await.expect("insert");
                uow.commit().await.expect("commit");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };

    let lagging = f
        .wait_replica(
            Duration::from_secs(15),
            |r| !r.healthy && r.problem.as_deref().unwrap_or_default().starts_with("lag"),
            "degraded by lag",
        )
        .await;
    assert!(
        lagging.problem.as_deref().unwrap_or_default().ends_with("> 0.5s"),
        "{lagging:?}"
    );
    let health = f.store.health().await;
    assert_eq!(health[0].status, HealthStatus::Up, "{health:?}");
    assert_eq!(health[1].name, "replica-1");
    assert_eq!(health[1].status, HealthStatus::Degraded, "{health:?}");
    assert!(
        health[1].detail.as_deref().unwrap_or_default().starts_with("lag "),
        "{health:?}"
    );

    let before = f.stats();
    for _ in 0..20 {
        assert!(
            f.store
                .product(product.id, Consistency::Eventual)
                .await
                .expect("read")
                .is_some()
        );
    }
    let d = delta(before, f.stats());
    assert_eq!((d.primary, d.replica, d.no_healthy_replica), (20, 0, 20), "{d:?}");

    // The replica pool's connections are read-only by default, named and time-limited.
    let replica = f.store.backend().replica_pool(0).expect("replica pool");
    let mut conn = replica.acquire().await.expect("replica connection");
    let settings: (String, String, String) = sqlx::query_as(
        "select current_setting('default_transaction_read_only'), current_setting('application_name'), \
         current_setting('statement_timeout')",
    )
    .fetch_one(&mut *conn)
    .await
    .expect("settings");
    assert_eq!(
        settings,
        ("on".to_owned(), "hexride-replica-1".to_owned(), "10s".to_owned())
    );
    let write = sqlx::query("insert into inbox (consumer, event_id, processed_at) values ('x', $1, now())")
        .bind(Uuid::now_v7())
        .execute(&mut *conn)
        .await;
    match write {
        Err(sqlx::Error::Database(e)) => assert_eq!(e.code().as_deref(), Some("25006"), "{e}"),
        other => panic!("a write on a replica connection must fail as read-only, got {other:?}"),
    }
    drop(conn);

    stop.store(true, Ordering::Relaxed);
    writer.await.expect("writer");
    infra(&["lag", "0"]).await;
    f.wait_healthy().await;
    f.store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_commit_that_appends_events_wakes_relays_on_other_instances() {
    let Some(pg) = services::postgres().await else { return };
    let db = services::fresh_pg(&pg).await;
    let config = PgConfig {
        primary_url: db.primary_url.clone(),
        ..PgConfig::default()
    };
    let writer = PgStore::connect(&config).await.expect("connect");
    writer.migrate().await.expect("migrate");
    let relay = PgStore::connect(&config).await.expect("connect");

    let waiting = {
        let relay = relay.clone();
        tokio::spawn(async move {
            let started = Instant::now();
            relay.wait_for_events(Duration::from_secs(20)).await;
            started.elapsed()
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let member = MemberId(Uuid::now_v7());
    let at = tests::contract::now();
    let event = DomainEvent::new(
        EventId(Uuid::now_v7()),
        at,
        EventPayload::MemberRegistered {
            member_id: member,
            role: Role::Rider,
            registered_at: at,
        },
    );
    let mut uow = writer.begin().await.expect("begin");
    uow.events().append(&[event]).await.expect("append");
    uow.commit().await.expect("commit");
    let waited = waiting.await.expect("relay");
    assert!(
        waited < Duration::from_secs(5),
        "woken by the notification, not the timeout: {waited:?}"
    );
    assert_eq!(
        relay
            .claim("relay", 10, Duration::from_secs(30))
            .await
            .expect("claim")
            .len(),
        1
    );
    writer.close().await;
    relay.close().await;
}
