//! The real services integration tests run against, and how a test gets them.
//!
//! PostgreSQL comes from `TEST_PG_PRIMARY_URL` / `TEST_PG_REPLICA_URL` (what
//! `scripts/infra.sh up && eval "$(scripts/infra.sh env)"` exports: a primary and a streaming
//! replica); without them, from a testcontainers PostgreSQL when a Docker daemon is reachable
//! (one container: the "replica" is the primary itself); without either, a test panics with
//! how to provide them, unless `HEXRIDE_SKIP_INTEGRATION=1`, which makes it skip. Redis
//! comes the same way from `TEST_REDIS_URL` or a testcontainers Redis ([`redis()`]), and Kafka
//! from `TEST_KAFKA_BROKERS` or a testcontainers Kafka ([`kafka`]):
//!
//! ```ignore
//! let Some(pg) = tests::services::postgres().await else { return };
//! let db = tests::services::fresh_pg(&pg).await;
//! ```

use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use sqlx::{Connection, MySqlConnection, PgConnection};
use testcontainers_modules::postgres::Postgres;
use testcontainers_modules::testcontainers::runners::AsyncRunner;
use testcontainers_modules::testcontainers::{ContainerAsync, ImageExt};
use tokio::sync::OnceCell;
use uuid::Uuid;

/// Set to `1` to skip integration tests whose services are missing instead of failing them.
pub const SKIP_VAR: &str = "HEXRIDE_SKIP_INTEGRATION";

/// Where a PostgreSQL primary and a replica of it answer (maintenance database URLs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PgUrls {
    pub primary: String,
    /// A streaming replica of `primary`, or `primary` itself when there is none.
    pub replica: String,
}

impl PgUrls {
    /// Whether `replica` is a real replica (not the primary again).
    pub fn has_replica(&self) -> bool {
        self.replica != self.primary
    }
}

const HOW_TO: &str = "no PostgreSQL for the integration tests: run \
     `scripts/infra.sh up && eval \"$(scripts/infra.sh env)\"` (a primary and a streaming replica), \
     or make a Docker daemon reachable (testcontainers), \
     or set HEXRIDE_SKIP_INTEGRATION=1 to skip these tests";

fn skipping() -> bool {
    std::env::var(SKIP_VAR).is_ok_and(|v| v == "1")
}

fn env_url(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

/// Whether a Docker daemon looks reachable (`DOCKER_HOST`, or the default socket).
fn docker_reachable() -> bool {
    env_url("DOCKER_HOST").is_some() || Path::new("/var/run/docker.sock").exists()
}

/// One container per test binary, shared by its tests (testcontainers' reaper removes it
/// when the process ends).
static CONTAINER: OnceCell<(ContainerAsync<Postgres>, String)> = OnceCell::const_new();

async fn container_url() -> String {
    let (_, url) = CONTAINER
        .get_or_init(|| async {
            let container = Postgres::default()
                .with_tag("15-alpine")
                .start()
                .await
                .unwrap_or_else(|e| panic!("starting a PostgreSQL container failed ({e}); {HOW_TO}"));
            let host = container.get_host().await.expect("container host");
            let port = container.get_host_port_ipv4(5432).await.expect("container port");
            (
                container,
                format!("postgres://postgres:postgres@{host}:{port}/postgres"),
            )
        })
        .await;
    url.clone()
}

/// The PostgreSQL to test against (see the module header), or `None` (after a notice) when it
/// is missing and `HEXRIDE_SKIP_INTEGRATION=1`.
///
/// # Panics
/// When there is no PostgreSQL and skipping is not asked for, with how to provide one.
pub async fn postgres() -> Option<PgUrls> {
    if let Some(primary) = env_url("TEST_PG_PRIMARY_URL") {
        let replica = env_url("TEST_PG_REPLICA_URL").unwrap_or_else(|| primary.clone());
        return Some(PgUrls { primary, replica });
    }
    if docker_reachable() {
        let primary = container_url().await;
        return Some(PgUrls {
            replica: primary.clone(),
            primary,
        });
    }
    if skipping() {
        eprintln!("skipped: no PostgreSQL ({SKIP_VAR}=1)");
        return None;
    }
    panic!("{HOW_TO}");
}

/// Like [`postgres`], but only with a real streaming replica (for routing and failover
/// tests); with the primary alone (testcontainers) the test is skipped with a notice.
pub async fn postgres_with_replica() -> Option<PgUrls> {
    let pg = postgres().await?;
    if pg.has_replica() {
        Some(pg)
    } else {
        eprintln!(
            "skipped: needs a streaming replica (TEST_PG_REPLICA_URL from `scripts/infra.sh env`), \
             and the testcontainers PostgreSQL has none"
        );
        None
    }
}

/// The second PostgreSQL replica of `scripts/infra.sh` (`TEST_PG_REPLICA2_URL`), for the
/// cases about several replicas; `None` (after a notice) when it is missing and skipping is
/// asked for.
///
/// # Panics
/// When it is missing and skipping is not asked for.
pub fn pg_replica2() -> Option<String> {
    if let Some(url) = env_url("TEST_PG_REPLICA2_URL") {
        return Some(url);
    }
    if skipping() {
        eprintln!("skipped: no second PostgreSQL replica ({SKIP_VAR}=1)");
        return None;
    }
    panic!("TEST_PG_REPLICA2_URL is not set: run `eval \"$(scripts/infra.sh up)\"` first");
}

/// `url` with its database (path) replaced by `database`, keeping any query string.
pub fn with_database(url: &str, database: &str) -> String {
    let authority_start = url.find("://").map_or(0, |i| i + 3);
    let (base, query) = match url.find('?') {
        Some(q) => (&url[..q], &url[q..]),
        None => (url, ""),
    };
    let path_start = base[authority_start..]
        .find('/')
        .map_or(base.len(), |i| authority_start + i);
    format!("{}/{database}{query}", &base[..path_start])
}

/// Creates an empty, uniquely named database (`hx_<uuid>`) on the primary, waits until the
/// replica has it too, and returns its URLs on both `(primary, replica)`. The database is
/// left behind; [`fresh_pg`] drops it when the test ends.
pub async fn fresh_pg_database(pg: &PgUrls) -> (String, String) {
    let name = format!("hx_{}", Uuid::now_v7().simple());
    let mut admin = PgConnection::connect(&pg.primary)
        .await
        .expect("connect to the primary");
    // `file_copy` writes a few hundred bytes of WAL where the default (`wal_log`) writes the
    // whole template, megabytes per test: the replica would have that much more to replay,
    // and after a kill (the failover tests) to recover. Before PostgreSQL 15 (no `strategy`)
    // copying files was the only way anyway.
    let created = sqlx::query(sqlx::AssertSqlSafe(format!(
        "create database \"{name}\" strategy file_copy"
    )))
    .execute(&mut admin)
    .await;
    if let Err(sqlx::Error::Database(e)) = &created
        && e.code().as_deref() == Some("42601")
    {
        sqlx::query(sqlx::AssertSqlSafe(format!("create database \"{name}\"")))
            .execute(&mut admin)
            .await
            .expect("create database");
    } else {
        created.expect("create database");
    }
    admin.close().await.ok();
    if pg.has_replica() {
        wait_for_database_on_replica::<sqlx::Postgres>(
            &pg.replica,
            "select count(*) from pg_database where datname = $1",
            &name,
        )
        .await;
    }
    (with_database(&pg.primary, &name), with_database(&pg.replica, &name))
}

/// Polls the replica at `url` every 50 ms until `count_sql` (which takes the database name
/// and counts it) finds database `name`, failing the test after 60 s.
async fn wait_for_database_on_replica<DB>(url: &str, count_sql: &'static str, name: &str)
where
    DB: sqlx::Database,
    for<'c> &'c mut DB::Connection: sqlx::Executor<'c, Database = DB>,
    DB::Arguments: sqlx::IntoArguments<DB>,
    for<'q> &'q str: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    (i64,): for<'r> sqlx::FromRow<'r, DB::Row>,
{
    let exists = || async {
        let mut conn = DB::Connection::connect(url).await?;
        let (found,): (i64,) = sqlx::query_as(count_sql).bind(name).fetch_one(&mut conn).await?;
        conn.close().await.ok();
        Ok::<_, sqlx::Error>(found > 0)
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while !exists().await.unwrap_or(false) {
        assert!(
            Instant::now() < deadline,
            "database {name} did not reach the replica within 60 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A fresh database (see [`fresh_pg_database`]) that is dropped (connections and all) when
/// this value is.
#[derive(Debug)]
pub struct PgDatabase {
    pub primary_url: String,
    pub replica_url: String,
    name: String,
    admin_url: String,
}

impl PgDatabase {
    /// The database's name (the same on the primary and its replicas).
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl Drop for PgDatabase {
    fn drop(&mut self) {
        let (admin_url, name) = (self.admin_url.clone(), self.name.clone());
        drop_database_on_thread(&self.name, async move {
            let mut admin = PgConnection::connect(&admin_url).await?;
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "drop database if exists \"{name}\" with (force)"
            )))
            .execute(&mut admin)
            .await?;
            admin.close().await.ok();
            Ok(())
        });
    }
}

/// Runs `drop` to completion on a thread of its own (a `Drop` runs inside the test's
/// runtime, which cannot be blocked on), reporting a failure without failing the test.
fn drop_database_on_thread(name: &str, drop: impl Future<Output = Result<(), sqlx::Error>> + Send + 'static) {
    let dropped = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        runtime.block_on(drop).map_err(std::io::Error::other)
    })
    .join();
    if !matches!(dropped, Ok(Ok(()))) {
        eprintln!("could not drop test database {name}: {dropped:?}");
    }
}

/// The last path segment of a database URL: its database name.
fn database_of(url: &str) -> String {
    url.rsplit('/')
        .next()
        .unwrap_or_default()
        .split('?')
        .next()
        .unwrap_or_default()
        .to_owned()
}

/// [`fresh_pg_database`], dropped again when the returned value is.
pub async fn fresh_pg(pg: &PgUrls) -> PgDatabase {
    let (primary_url, replica_url) = fresh_pg_database(pg).await;
    let name = database_of(&primary_url);
    PgDatabase {
        primary_url,
        replica_url,
        name,
        admin_url: pg.primary.clone(),
    }
}

const MARIADB_HOW_TO: &str = "no MariaDB for the integration tests: run \
     `scripts/infra.sh up && eval \"$(scripts/infra.sh env)\"` (a primary and a GTID replica: \
     TEST_MARIADB_PRIMARY_URL, TEST_MARIADB_REPLICA_URL), \
     or set HEXRIDE_SKIP_INTEGRATION=1 to skip these tests";

/// Where a MariaDB (or MySQL) primary and a replica of it answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MysqlUrls {
    pub primary: String,
    /// A GTID replica of `primary`, or `primary` itself when there is none.
    pub replica: String,
}

impl MysqlUrls {
    /// Whether `replica` is a real replica (not the primary again).
    pub fn has_replica(&self) -> bool {
        self.replica != self.primary
    }
}

/// The MariaDB to test against: `TEST_MARIADB_PRIMARY_URL` / `TEST_MARIADB_REPLICA_URL`
/// (what `scripts/infra.sh env` exports), or `None` (after a notice) when they are missing and
/// `HEXRIDE_SKIP_INTEGRATION=1`.
///
/// # Panics
/// When there is no MariaDB and skipping is not asked for, with how to provide one.
pub async fn mariadb() -> Option<MysqlUrls> {
    if let Some(primary) = env_url("TEST_MARIADB_PRIMARY_URL") {
        let replica = env_url("TEST_MARIADB_REPLICA_URL").unwrap_or_else(|| primary.clone());
        return Some(MysqlUrls { primary, replica });
    }
    if skipping() {
        eprintln!("skipped: no MariaDB ({SKIP_VAR}=1)");
        return None;
    }
    panic!("{MARIADB_HOW_TO}");
}

/// Like [`mariadb`], but only with a real replica (for routing tests); without one the
/// test is skipped with a notice.
pub async fn mariadb_with_replica() -> Option<MysqlUrls> {
    let urls = mariadb().await?;
    if urls.has_replica() {
        Some(urls)
    } else {
        eprintln!("skipped: needs a GTID replica (TEST_MARIADB_REPLICA_URL from `scripts/infra.sh env`)");
        None
    }
}

/// The administrator's URL of the MariaDB replica (`TEST_MARIADB_REPLICA_ADMIN_URL`: a
/// user that may stop and start replication), with its database replaced by `database`.
///
/// # Panics
/// When it is not set.
pub fn mariadb_replica_admin_url(database: &str) -> String {
    let url = env_url("TEST_MARIADB_REPLICA_ADMIN_URL")
        .unwrap_or_else(|| panic!("TEST_MARIADB_REPLICA_ADMIN_URL is not set; {MARIADB_HOW_TO}"));
    with_database(&url, database)
}

/// A fresh, empty, uniquely named MariaDB database (`hx_<uuid>`), created on the primary and
/// dropped when this value is.
#[derive(Debug)]
pub struct MysqlDatabase {
    pub primary_url: String,
    pub replica_url: String,
    name: String,
    admin_url: String,
}

impl MysqlDatabase {
    /// The database's name (the same on the primary and the replica).
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl Drop for MysqlDatabase {
    fn drop(&mut self) {
        let (admin_url, name) = (self.admin_url.clone(), self.name.clone());
        drop_database_on_thread(&self.name, async move {
            let mut admin = MySqlConnection::connect(&admin_url).await?;
            // As PostgreSQL's `with (force)`: a connection the test left open (an app's pool)
            // would otherwise hold the drop up on its metadata locks.
            let sessions: Vec<i64> = sqlx::query_scalar(
                "select id from information_schema.processlist where db = ? and id <> connection_id()",
            )
            .bind(&name)
            .fetch_all(&mut admin)
            .await?;
            for id in sessions {
                // Gone already is fine.
                let _ = sqlx::query(sqlx::AssertSqlSafe(format!("kill connection {id}")))
                    .execute(&mut admin)
                    .await;
            }
            sqlx::query(sqlx::AssertSqlSafe(format!("drop database if exists `{name}`")))
                .execute(&mut admin)
                .await?;
            admin.close().await.ok();
            Ok(())
        });
    }
}

/// Creates a fresh database on the primary and waits until the replica has it too (see
/// [`MysqlDatabase`]).
pub async fn fresh_mariadb(urls: &MysqlUrls) -> MysqlDatabase {
    let name = format!("hx_{}", Uuid::now_v7().simple());
    let mut admin = MySqlConnection::connect(&urls.primary)
        .await
        .expect("connect to the MariaDB primary");
    sqlx::query(sqlx::AssertSqlSafe(format!("create database `{name}`")))
        .execute(&mut admin)
        .await
        .expect("create database");
    admin.close().await.ok();
    if urls.has_replica() {
        wait_for_database_on_replica::<sqlx::MySql>(
            &urls.replica,
            "select count(*) from information_schema.schemata where schema_name = ?",
            &name,
        )
        .await;
    }
    MysqlDatabase {
        primary_url: with_database(&urls.primary, &name),
        replica_url: with_database(&urls.replica, &name),
        name,
        admin_url: urls.primary.clone(),
    }
}

const REDIS_HOW_TO: &str = "no Redis for the integration tests: run \
     `scripts/infra.sh up && eval \"$(scripts/infra.sh env)\"` (TEST_REDIS_URL), \
     or make a Docker daemon reachable (testcontainers), \
     or set HEXRIDE_SKIP_INTEGRATION=1 to skip these tests";

/// One Redis container per test binary, like [`CONTAINER`].
static REDIS_CONTAINER: OnceCell<(ContainerAsync<testcontainers_modules::redis::Redis>, String)> =
    OnceCell::const_new();

/// The Redis to test against: `TEST_REDIS_URL` (what `scripts/infra.sh env` exports), else a
/// testcontainers Redis 7 when a Docker daemon is reachable, else `None` (after a notice)
/// when `HEXRIDE_SKIP_INTEGRATION=1`. Tests share it: each uses keys under its own prefix
/// ([`redis_prefix`]).
///
/// # Panics
/// When there is no Redis and skipping is not asked for, with how to provide one.
pub async fn redis() -> Option<String> {
    if let Some(url) = env_url("TEST_REDIS_URL") {
        return Some(url);
    }
    if docker_reachable() {
        let (_, url) = REDIS_CONTAINER
            .get_or_init(|| async {
                let container = testcontainers_modules::redis::Redis::default()
                    .with_tag("7-alpine")
                    .start()
                    .await
                    .unwrap_or_else(|e| panic!("starting a Redis container failed ({e}); {REDIS_HOW_TO}"));
                let host = container.get_host().await.expect("container host");
                let port = container
                    .get_host_port_ipv4(testcontainers_modules::redis::REDIS_PORT)
                    .await
                    .expect("container port");
                (container, format!("redis://{host}:{port}"))
            })
            .await;
        return Some(url.clone());
    }
    if skipping() {
        eprintln!("skipped: no Redis ({SKIP_VAR}=1)");
        return None;
    }
    panic!("{REDIS_HOW_TO}");
}

/// Like [`redis()`], but only the Redis of `scripts/infra.sh` (`TEST_REDIS_URL`), which fault
/// tests kill and restart with `scripts/infra.sh kill redis` / `start redis`; with a
/// testcontainers Redis the test is skipped with a notice.
pub async fn managed_redis() -> Option<String> {
    let url = redis().await?;
    if env_url("TEST_REDIS_URL").is_some() {
        Some(url)
    } else {
        eprintln!("skipped: kills Redis through scripts/infra.sh, and the testcontainers Redis is not its");
        None
    }
}

const REDIS_CLUSTER_HOW_TO: &str = "no Redis Cluster for the integration tests: run \
     `scripts/infra.sh up && eval \"$(scripts/infra.sh env)\"` (TEST_REDIS_CLUSTER_URL: six nodes, \
     three masters with a replica each), or set HEXRIDE_SKIP_INTEGRATION=1 to skip these tests";

/// The Redis Cluster of `scripts/infra.sh` (`TEST_REDIS_CLUSTER_URL`, a `redis+cluster://`
/// URL), else `None` (after a notice) when `HEXRIDE_SKIP_INTEGRATION=1`. There is no
/// testcontainers fallback: a cluster is six processes that must reach each other.
///
/// # Panics
/// When there is no cluster and skipping is not asked for, with how to provide one.
pub fn redis_cluster() -> Option<String> {
    if let Some(url) = env_url("TEST_REDIS_CLUSTER_URL") {
        return Some(url);
    }
    if skipping() {
        eprintln!("skipped: no Redis Cluster ({SKIP_VAR}=1)");
        return None;
    }
    panic!("{REDIS_CLUSTER_HOW_TO}");
}

/// A key prefix no other test uses (`hxt:<uuid>:`).
pub fn redis_prefix() -> String {
    format!("hxt:{}:", Uuid::now_v7().simple())
}

const KAFKA_HOW_TO: &str = "no Kafka for the integration tests: run \
     `scripts/infra.sh up && eval \"$(scripts/infra.sh env)\"` (TEST_KAFKA_BROKERS: the project's tansu broker), \
     or make a Docker daemon reachable (testcontainers), \
     or set HEXRIDE_SKIP_INTEGRATION=1 to skip these tests";

/// One Kafka container per test binary, like [`CONTAINER`].
static KAFKA_CONTAINER: OnceCell<(ContainerAsync<testcontainers_modules::kafka::apache::Kafka>, String)> =
    OnceCell::const_new();

/// The Kafka brokers to test against: `TEST_KAFKA_BROKERS` (what `scripts/infra.sh env`
/// exports: its tansu broker), else a testcontainers Apache Kafka when a Docker daemon is
/// reachable, else `None` (after a notice) when `HEXRIDE_SKIP_INTEGRATION=1`. Tests share the
/// broker: each names its topics and groups under its own namespace ([`kafka_namespace`]).
///
/// # Panics
/// When there is no broker and skipping is not asked for, with how to provide one.
pub async fn kafka() -> Option<String> {
    if let Some(brokers) = env_url("TEST_KAFKA_BROKERS") {
        return Some(brokers);
    }
    if docker_reachable() {
        let (_, brokers) = KAFKA_CONTAINER
            .get_or_init(|| async {
                let container = testcontainers_modules::kafka::apache::Kafka::default()
                    .start()
                    .await
                    .unwrap_or_else(|e| panic!("starting a Kafka container failed ({e}); {KAFKA_HOW_TO}"));
                let host = container.get_host().await.expect("container host");
                let port = container
                    .get_host_port_ipv4(testcontainers_modules::kafka::apache::KAFKA_PORT)
                    .await
                    .expect("container port");
                (container, format!("{host}:{port}"))
            })
            .await;
        return Some(brokers.clone());
    }
    if skipping() {
        eprintln!("skipped: no Kafka ({SKIP_VAR}=1)");
        return None;
    }
    panic!("{KAFKA_HOW_TO}");
}

/// Like [`kafka`], but only the broker of `scripts/infra.sh` (`TEST_KAFKA_BROKERS`), which
/// fault tests kill and restart with `scripts/infra.sh kill kafka` / `start kafka`; with a
/// testcontainers Kafka the test is skipped with a notice.
pub async fn managed_kafka() -> Option<String> {
    let brokers = kafka().await?;
    if env_url("TEST_KAFKA_BROKERS").is_some() {
        Some(brokers)
    } else {
        eprintln!("skipped: kills the broker through scripts/infra.sh, and the testcontainers Kafka is not its");
        None
    }
}

/// A topic and consumer-group namespace no other test uses (`hxt-<uuid>`).
pub fn kafka_namespace() -> String {
    format!("hxt-{}", Uuid::now_v7().simple())
}

/// `scripts/infra.sh` at the repository root.
pub fn infra_script() -> PathBuf {
    script_path("infra.sh")
}

/// `scripts/NAME` at the repository root.
pub fn script_path(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts").join(name)
}

/// Runs `scripts/infra.sh ARGS…` to completion; `Err` with its output when it fails.
pub fn infra(args: &[&str]) -> Result<(), String> {
    script("infra.sh", args, &[]).map(drop)
}

/// Runs `scripts/NAME ARGS…` with `env` added to the environment, to completion: its
/// standard output, or `Err` with all its output when it fails.
pub fn script(name: &str, args: &[&str], env: &[(&str, &str)]) -> Result<String, String> {
    let output = Command::new("bash")
        .arg(script_path(name))
        .args(args)
        .envs(env.iter().copied())
        .output()
        .map_err(|e| format!("cannot run scripts/{name}: {e}"))?;
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    } else {
        Err(format!(
            "scripts/{name} {} failed ({}): {}{}",
            args.join(" "),
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ))
    }
}

/// [`infra`] off the async threads (it waits for the servers), for async tests.
///
/// # Panics
/// When the script fails.
pub async fn infra_await(args: &[&str]) {
    let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        infra(&args)
    })
    .await
    .expect("infra.sh task")
    .unwrap_or_else(|e| panic!("{e}"));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_database_of_a_url_is_replaced() {
        assert_eq!(
            with_database("postgres://postgres@127.0.0.1:55432/hexride", "hx_1"),
            "postgres://postgres@127.0.0.1:55432/hx_1"
        );
        assert_eq!(
            with_database("postgres://u:p@h:1/db?sslmode=disable", "x"),
            "postgres://u:p@h:1/x?sslmode=disable"
        );
        assert_eq!(with_database("postgres://h:1", "x"), "postgres://h:1/x");
        assert_eq!(with_database("postgres://h:1?a=b", "x"), "postgres://h:1/x?a=b");
    }
}
