//! Read routing of the PostgreSQL adapter against a real primary and streaming replica
//! (`scripts/infra.sh`): the shared routing suite ([`tests::routing`]) over [`PgPair`], and
//! what only PostgreSQL does (a commit's `NOTIFY` wakes relays on other instances).

use std::time::{Duration, Instant};

use async_trait::async_trait;
use sqlx::{Connection, PgConnection};
use uuid::Uuid;

use adapters_postgres::{PgBackend, PgConfig, PgStore};
use core_domain::event::{DomainEvent, EventPayload};
use core_domain::member::Role;
use core_domain::{EventId, MemberId};
use ports::{CommitToken, Database, OutboxStore};
use tests::routing::ReplicaPair;
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
