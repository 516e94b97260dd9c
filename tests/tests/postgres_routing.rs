//! Read routing of the PostgreSQL adapter against a real primary and streaming replica
//! (`scripts/infra.sh`): the shared routing suite ([`tests::routing`]) over [`PgPair`], and
//! what only PostgreSQL does (a commit's `NOTIFY` wakes relays on other instances).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use sqlx::{Connection, PgConnection};
use uuid::Uuid;

use adapters_postgres::{Lsn, PgBackend, PgConfig, PgStore};
use core_domain::catalog::Product;
use core_domain::event::{DomainEvent, EventPayload};
use core_domain::member::Role;
use core_domain::{EventId, MemberId};
use ports::{CatalogReads, CommitToken, Consistency, Database, OutboxStore};
use sql_store::routing::ReplicaState;
use tests::routing::{ReplicaPair, Trickle};
use tests::services::{self, PgDatabase};

/// The project's PostgreSQL primary and streaming replica, with a fresh database.
struct PgPair(PgDatabase);

/// The last statement of each connection named `application_name` to `url`'s database.
async fn last_statements(url: &str, application_name: &str) -> Vec<String> {
    let mut conn = PgConnection::connect(url).await.expect("connect");
    sqlx::query_scalar(
        "select query from pg_stat_activity where datname = current_database() and application_name = $1",
    )
    .bind(application_name)
    .fetch_all(&mut conn)
    .await
    .expect("pg_stat_activity")
}

#[async_trait]
impl ReplicaPair for PgPair {
    type Backend = PgBackend;
    type Reads = ();
    const SERVICE: &'static str = "pg";
    const REPLICA: &'static str = "pg-replica";

    async fn fresh() -> Option<Self> {
        let pg = services::postgres_with_replica().await?;
        Some(Self(services::fresh_pg(&pg).await))
    }

    fn urls(&self) -> (String, String) {
        (self.0.primary_url.clone(), self.0.replica_url.clone())
    }

    async fn replica_has_applied(&self, token: &CommitToken) -> bool {
        let mut conn = PgConnection::connect(&self.0.replica_url)
            .await
            .expect("connect to the replica");
        let replayed: Option<bool> = sqlx::query_scalar("select pg_last_wal_replay_lsn() >= $1::pg_lsn")
            .bind(&token.0)
            .fetch_one(&mut conn)
            .await
            .expect("replay position");
        conn.close().await.ok();
        replayed == Some(true)
    }

    /// PostgreSQL's per-table counters reach its statistics views only a while after the
    /// transaction (and a standby's are its own): the evidence is `pg_stat_activity`
    /// instead, read in [`Self::assert_reads_ran_on_the_replica`].
    async fn server_reads(&self) {}

    async fn assert_reads_ran_on_the_replica(&self, (): (), _reads: u64) {
        let reads_products = |q: &String| q.starts_with("select") && q.contains("from products");
        let on_replica = last_statements(&self.0.replica_url, "hexride-replica-1").await;
        assert!(
            on_replica.iter().any(reads_products),
            "the replica's sessions (named by the store) read products: {on_replica:?}"
        );
        let on_primary = last_statements(&self.0.primary_url, "hexride-primary").await;
        assert!(
            !on_primary.iter().any(reads_products),
            "the primary's sessions read no product: {on_primary:?}"
        );
    }

    /// `checkpoint` on a standby is an immediate restartpoint, so the killed replica's crash
    /// recovery replays seconds of WAL, not everything since its last (spread, often
    /// unfinished) restartpoint. Best effort: it needs a superuser.
    async fn before_replica_kill(&self) {
        let result = async {
            let mut conn = PgConnection::connect(&self.0.replica_url).await?;
            sqlx::query("checkpoint").execute(&mut conn).await
        }
        .await;
        if let Err(e) = result {
            eprintln!("no restartpoint before the kill: {e}");
        }
    }

    async fn assert_replica_sessions_refuse_writes(&self, store: &PgStore) {
        let replica = store.replica_pool(0).expect("replica pool");
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
    }
}

tests::routing_tests!(PgPair);

/// Starts both replicas and takes their delay away when dropped, whatever the case did.
struct RestoreBothReplicas;

impl Drop for RestoreBothReplicas {
    fn drop(&mut self) {
        for args in [
            &["start", "pg-replica"][..],
            &["start", "pg-replica2"],
            &["lag", "0", "pg"],
        ] {
            if let Err(e) = services::infra(args) {
                eprintln!("restoring the replicas: {e}");
            }
        }
    }
}

/// Reads `product` `n` times, eventually consistent, each finding it: how many each replica
/// answered (in configuration order) and how many the primary did.
async fn read_split(store: &PgStore, product: &Product, n: usize) -> (Vec<u64>, u64) {
    let replica_reads = || store.replicas().iter().map(|r| r.reads).collect::<Vec<_>>();
    let (before, primary) = (replica_reads(), store.read_stats().primary);
    for _ in 0..n {
        let found = store
            .product(product.id, Consistency::Eventual)
            .await
            .expect("a read never fails");
        assert_eq!(found.map(|p| p.id), Some(product.id));
    }
    let after = replica_reads();
    let replicas = after.iter().zip(&before).map(|(a, b)| a - b).collect();
    (replicas, store.read_stats().primary - primary)
}

/// Waits until the store's view of its replicas passes `wanted`.
async fn wait_replicas(store: &PgStore, what: &str, wanted: impl Fn(&[ReplicaState]) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let replicas = store.replicas();
        if wanted(&replicas) {
            return;
        }
        assert!(Instant::now() < deadline, "replicas not {what} in 30 s: {replicas:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_replicas_share_the_reads_cover_for_each_other_and_leave_them_to_the_primary_when_both_are_gone() {
    let _serial = tests::routing::serial().await;
    let Some(pg) = services::postgres_with_replica().await else {
        return;
    };
    let Some(replica2) = services::pg_replica2() else {
        return;
    };
    let db = services::fresh_pg(&pg).await;
    let replica2_url = services::with_database(&replica2, db.name());
    let deadline = Instant::now() + Duration::from_secs(30);
    while PgConnection::connect(&replica2_url).await.is_err() {
        assert!(Instant::now() < deadline, "the second replica never had the database");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let config = PgConfig {
        replica_urls: vec![db.replica_url.clone(), replica2_url],
        health_interval: Duration::from_millis(200),
        max_replica_lag: Duration::from_millis(500),
        ..PgConfig::primary(db.primary_url.clone())
    };
    let store = PgStore::connect(&config).await.expect("connect");
    store.migrate().await.expect("migrate");
    let _restore = RestoreBothReplicas;
    let (product, token) = tests::routing::store_product(&store, "Helmet").await;
    let token = Lsn::parse(&token.0).expect("a commit LSN");
    let applied = |r: &ReplicaState| r.healthy && r.position.as_deref().and_then(Lsn::parse) >= Some(token);
    wait_replicas(&store, "healthy with the product", |rs| rs.iter().all(applied)).await;

    // Round robin: every eventual read on a replica, half on each.
    assert_eq!(read_split(&store, &product, 40).await, (vec![20, 20], 0));

    // The second replica falls behind (a steady trickle of commits keeps it 2 s behind):
    // it is skipped, and the first takes all its reads.
    services::infra_await(&["lag", "2", "pg-replica2"]).await;
    let trickle = Trickle::start(&store);
    wait_replicas(&store, "one lagging", |rs| rs[0].healthy && !rs[1].healthy).await;
    assert_eq!(read_split(&store, &product, 20).await, (vec![20, 0], 0));
    trickle.stop().await;

    // Both replicas SIGKILLed while readers read: not one read fails; the primary answers.
    let stop = Arc::new(AtomicBool::new(false));
    let readers: Vec<_> = (0..4)
        .map(|_| {
            let (store, stop) = (store.clone(), stop.clone());
            tokio::spawn(async move {
                let mut reads = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let found = store.product(product.id, Consistency::Eventual).await;
                    assert_eq!(found.expect("a read never fails").map(|p| p.id), Some(product.id));
                    reads += 1;
                }
                reads
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    services::infra_await(&["kill", "pg-replica"]).await;
    services::infra_await(&["kill", "pg-replica2"]).await;
    wait_replicas(&store, "both down", |rs| rs.iter().all(|r| !r.healthy)).await;
    let stats = store.read_stats();
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::Relaxed);
    let mut reads = 0;
    for reader in readers {
        reads += reader.await.expect("a reader");
    }
    assert!(reads > 0);
    let now = store.read_stats();
    assert!(now.primary > stats.primary, "the primary answers: {now:?}");
    assert_eq!(
        now.replica, stats.replica,
        "no replica answered once both were down: {now:?}"
    );
    drop(_restore);
    store.close().await;
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
