//! Read routing of the MySQL adapter against the project's MariaDB primary and GTID replica
//! (`scripts/infra.sh`): the shared routing suite ([`tests::routing`]) over [`MariaDbPair`],
//! and what only MySQL replication has (a stopped SQL thread: lag unknown).

use std::time::Duration;

use async_trait::async_trait;
use sqlx::{Connection, MySqlConnection};
use uuid::Uuid;

use adapters_mysql::{MysqlBackend, MysqlStore};
use ports::{CommitToken, Consistency, HealthCheck, HealthStatus};
use tests::routing::{Fixture, ReplicaPair, delta};
use tests::services::{self, MysqlDatabase};

/// The project's MariaDB primary and GTID replica, with a fresh database.
struct MariaDbPair(MysqlDatabase);

/// `Com_select` of the server at `url`: how many `select` statements it has run, all
/// sessions together.
async fn selects(url: &str) -> u64 {
    let mut conn = MySqlConnection::connect(url).await.expect("connect");
    let (_, value): (String, String) = sqlx::query_as("show global status like 'Com_select'")
        .fetch_one(&mut conn)
        .await
        .expect("Com_select");
    conn.close().await.ok();
    value.parse().expect("a count")
}

/// The server error number of a failed statement.
fn error_number<T: std::fmt::Debug>(result: Result<T, sqlx::Error>) -> u16 {
    match result {
        Err(sqlx::Error::Database(e)) => e
            .try_downcast_ref::<sqlx::mysql::MySqlDatabaseError>()
            .map(sqlx::mysql::MySqlDatabaseError::number)
            .unwrap_or_else(|| panic!("not a MySQL error: {e}")),
        other => panic!("a write on the replica must fail, got {other:?}"),
    }
}

const WRITE: &str = "insert into inbox (consumer, event_id, processed_at) values ('x', ?, utc_timestamp(6))";

#[async_trait]
impl ReplicaPair for MariaDbPair {
    type Backend = MysqlBackend;
    /// `Com_select` of the replica and of the primary.
    type Reads = (u64, u64);
    const SERVICE: &'static str = "mariadb";
    const REPLICA: &'static str = "mariadb-replica";

    async fn fresh() -> Option<Self> {
        let urls = services::mariadb_with_replica().await?;
        Some(Self(services::fresh_mariadb(&urls).await))
    }

    fn urls(&self) -> (String, String) {
        (self.0.primary_url.clone(), self.0.replica_url.clone())
    }

    async fn replica_has_applied(&self, token: &CommitToken) -> bool {
        let mut conn = MySqlConnection::connect(&self.0.replica_url)
            .await
            .expect("connect to the replica");
        // Timeout 0: only checks.
        let reached: Option<i64> = sqlx::query_scalar("select cast(master_gtid_wait(?, 0) as signed)")
            .bind(&token.0)
            .fetch_one(&mut conn)
            .await
            .expect("master_gtid_wait");
        conn.close().await.ok();
        reached == Some(0)
    }

    async fn server_reads(&self) -> (u64, u64) {
        (selects(&self.0.replica_url).await, selects(&self.0.primary_url).await)
    }

    async fn assert_reads_ran_on_the_replica(&self, (replica, primary): (u64, u64), reads: u64) {
        let (replica_now, primary_now) = self.server_reads().await;
        // The replica also ran its health checks' selects (two every 200 ms); the primary
        // only heartbeat writes.
        let on_replica = replica_now - replica;
        assert!(
            (reads..reads + 40).contains(&on_replica),
            "the replica ran the {reads} reads (and a few health checks): {on_replica} selects"
        );
        assert_eq!(primary_now - primary, 0, "the primary ran no select");
    }

    async fn assert_replica_sessions_refuse_writes(&self, store: &MysqlStore) {
        let replica = store.replica_pool(0).expect("replica pool");
        let mut conn = replica.acquire().await.expect("replica connection");
        let settings: (i64, String, f64, u64) = sqlx::query_as(
            "select @@session.tx_read_only, @@session.tx_isolation, @@session.max_statement_time, \
             @@session.lock_wait_timeout",
        )
        .fetch_one(&mut *conn)
        .await
        .expect("settings");
        assert_eq!(settings, (1, "READ-COMMITTED".to_owned(), 10.0, 10));
        // The session's read-only transactions refuse it first…
        let write = sqlx::query(WRITE).bind(Uuid::now_v7()).execute(&mut *conn).await;
        assert_eq!(error_number(write), 1792, "cannot execute in a read-only transaction");
        drop(conn);
        // …and the server itself (`read_only`, and the application's user holds no
        // READ_ONLY ADMIN) refuses a session that forgot to be read-only.
        let mut plain = MySqlConnection::connect(&self.0.replica_url)
            .await
            .expect("connect to the replica");
        let write = sqlx::query(WRITE).bind(Uuid::now_v7()).execute(&mut plain).await;
        assert_eq!(error_number(write), 1290, "the server runs with read_only");
        plain.close().await.ok();
    }
}

tests::routing_tests!(MariaDbPair);

/// `Seconds_Behind_Master` is NULL once a replication thread stops, and the heartbeat row
/// then only says when it stopped: the lag is unknown, and the replica gets no reads until
/// it applies again.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_replica_whose_sql_thread_stopped_has_unknown_lag_and_gets_no_reads() {
    let _serial = tests::routing::serial().await;
    let Some(f) = Fixture::<MariaDbPair>::new(|_| {}).await else {
        return;
    };
    let (product, token) = f.store_product("Boots").await;
    f.wait_applied(&token).await;
    let mut admin = MySqlConnection::connect(&services::mariadb_replica_admin_url(f.pair.0.name()))
        .await
        .expect("connect to the replica as its administrator");
    sqlx::query("stop slave sql_thread")
        .execute(&mut admin)
        .await
        .expect("stop the SQL thread");

    let stopped = f
        .wait_replica(
            Duration::from_secs(10),
            |r| {
                !r.healthy
                    && r.problem
                        .as_deref()
                        .unwrap_or_default()
                        .starts_with("replication stopped")
            },
            "skipped as stopped",
        )
        .await;
    assert_eq!(
        stopped.problem.as_deref(),
        Some("replication stopped (IO thread: Yes, SQL thread: No)"),
        "{stopped:?}"
    );
    assert_eq!(stopped.lag, None, "lag unknown, not zero: {stopped:?}");
    let health = f.store.health().await;
    assert_eq!(
        (health[1].status, health[1].detail.as_deref()),
        (HealthStatus::Degraded, stopped.problem.as_deref()),
        "{health:?}"
    );
    let before = f.stats();
    f.read_product(&product, &Consistency::Eventual, 10).await;
    let d = delta(before, f.stats());
    assert_eq!((d.primary, d.replica, d.no_healthy_replica), (10, 0, 10), "{d:?}");

    sqlx::query("start slave sql_thread")
        .execute(&mut admin)
        .await
        .expect("start the SQL thread");
    admin.close().await.ok();
    f.wait_healthy().await;
    let before = f.stats();
    f.read_product(&product, &Consistency::Eventual, 10).await;
    let d = delta(before, f.stats());
    assert_eq!((d.replica, d.primary), (10, 0), "back on the replica: {d:?}");
    f.store.close().await;
}
