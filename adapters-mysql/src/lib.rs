//! hexride's MySQL/MariaDB dialect (sqlx): MariaDB 10.6+ and MySQL 8.0+. The statements and
//! the store logic are `sql-store`'s; this crate supplies their placeholders, locks and
//! types ([`MysqlDialect`]), their errors, and the commit token: the GTID of the unit of
//! work's own commit, read on the same connection right after `COMMIT` (sqlx exposes no
//! session-state tracking).
//!
//! Units of work, and every read that asks for [`Consistency::Strong`], run on the primary.
//! Other reads are routed by the shared router (`sql_store::routing`) with
//! [`MysqlReplication`]: to a healthy replica, to one that has applied the caller's commit
//! (asked with `master_gtid_wait` / `wait_for_executed_gtid_set`, waiting server-side), or
//! back to the primary. Replica lag is the age of a heartbeat row every instance writes on
//! the primary each `health_interval`.
//!
//! There is no LISTEN/NOTIFY: the instance that committed wakes its own relay at once, and
//! relays on other instances find new events at their next poll.

mod conn;
pub mod gtid;
mod replication;

use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::mysql::{MySqlConnectOptions, MySqlPoolOptions};
use sqlx::{Connection as _, Executor as _, MySql};
use tokio::sync::{Notify, watch};
use tokio::time::MissedTickBehavior;

use ports::{Cause, CommitToken, ComponentHealth, Consistency, StoreError, Unique};
use sql_store::routing::{Replica, Routed, Router};
use sql_store::{Backend, BackgroundTasks, Conns, ReadFuture, SqlConfig, SqlConn as _, SqlStore, WorkConn};

pub use conn::{MysqlConn, MysqlDialect};
pub use gtid::{Flavour, Position};
pub use replication::MysqlReplication;
pub use sql_store::routing::{ReadStats, ReplicaState};

/// The MySQL/MariaDB store: every store port (see [`SqlStore`]).
pub type MysqlStore = SqlStore<MysqlBackend>;

/// Where the primary and the replicas are, and how connections and reads behave.
pub type MysqlConfig = SqlConfig;

/// The pools, routing and background tasks behind [`MysqlStore`]. The background tasks
/// (replica health checks, the heartbeat) stop when it is dropped or closed.
pub struct MysqlBackend {
    primary: Conns<MySql>,
    flavour: Flavour,
    router: Router<MysqlReplication>,
    /// Woken by this instance's commits that appended events.
    events: Notify,
    tasks: BackgroundTasks,
}

impl std::fmt::Debug for MysqlBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MysqlBackend")
            .field("flavour", &self.flavour)
            .finish_non_exhaustive()
    }
}

/// The connection options of `url`, with the UTC session time zone sqlx sets by default
/// (times are stored as `datetime(6)` in UTC).
fn connect_options(url: &str) -> Result<MySqlConnectOptions, StoreError> {
    let url = match url.strip_prefix("mariadb://") {
        Some(rest) => format!("mysql://{rest}"),
        None if url.starts_with("mysql://") => url.to_owned(),
        None => {
            return Err(StoreError::other(format!(
                "not a MySQL/MariaDB URL (mysql://…): `{}`",
                ports::redact_url(url)
            )));
        }
    };
    Ok(MySqlConnectOptions::from_str(&url)
        .map_err(|e| StoreError::other(format!("invalid MySQL URL `{}`: {e}", ports::redact_url(&url))))?
        .timezone(Some("+00:00".to_owned())))
}

/// `pool` whose every connection runs the flavour's session settings first (read committed,
/// the statement timeout, and for replicas read-only transactions, so a write routed to a
/// replica by mistake fails loudly instead of breaking replication).
fn with_session(pool: MySqlPoolOptions, flavour: Flavour, config: &MysqlConfig, read_only: bool) -> MySqlPoolOptions {
    let session = flavour.session_sql(config.statement_timeout.as_millis().max(1), read_only);
    pool.after_connect(move |conn, _| {
        let session = session.clone();
        Box::pin(async move {
            conn.execute(sqlx::raw_sql(sqlx::AssertSqlSafe(session))).await?;
            Ok(())
        })
    })
}

/// The primary's connections, connected lazily (the caller has just reached the server).
fn pool(options: MySqlConnectOptions, flavour: Flavour, config: &MysqlConfig, read_only: bool) -> Conns<MySql> {
    let pool = sql_store::driver::pool_options(config.max_connections, config.acquire_timeout);
    Conns::new(with_session(pool, flavour, config, read_only).connect_lazy_with(options))
}

impl MysqlBackend {
    /// Which server this is.
    pub fn flavour(&self) -> Flavour {
        self.flavour
    }
}

impl Routed for MysqlBackend {
    type Replication = MysqlReplication;

    fn router(&self) -> &Router<MysqlReplication> {
        &self.router
    }
}

/// Writes the primary's clock into the heartbeat row every `interval`, until `shutdown`. A
/// failure (the table is not migrated yet, the primary is away) is logged at debug: the
/// replicas' lag then grows, and they are skipped if it passes the limit.
async fn heartbeat(primary: Conns<MySql>, interval: Duration, mut shutdown: watch::Receiver<bool>) {
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticker.tick() => {
                let beat = async {
                    let mut conn = MysqlConn::new(primary.acquire().await.map_err(translate)?);
                    conn.raw(replication::HEARTBEAT_SQL).await
                };
                match tokio::time::timeout(interval.max(Duration::from_secs(1)), beat).await {
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) => tracing::debug!(error = %e, "heartbeat write failed"),
                    Err(_) => tracing::debug!("heartbeat write timed out"),
                }
            }
            _ = shutdown.changed() => return,
        }
    }
}

#[async_trait]
impl Backend for MysqlBackend {
    type Config = MysqlConfig;
    type Conn = MysqlConn;

    /// Connects to the primary (failing if it cannot be reached) and learns which server
    /// it is. Must run inside a Tokio runtime.
    ///
    /// # Errors
    /// [`StoreError::Other`] for a malformed URL; [`StoreError::Unavailable`] when the
    /// primary cannot be reached within `acquire_timeout`.
    async fn connect(config: &MysqlConfig) -> Result<Self, StoreError> {
        let options = connect_options(&config.primary_url)?;
        let probe = async {
            let mut conn = sqlx::MySqlConnection::connect_with(&options).await?;
            let version: String = sqlx::query_scalar("select version()").fetch_one(&mut conn).await?;
            conn.close().await?;
            Ok::<_, sqlx::Error>(version)
        };
        let version = tokio::time::timeout(config.acquire_timeout, probe)
            .await
            .map_err(|_| StoreError::unavailable("the MySQL primary did not answer in time"))?
            .map_err(translate)?;
        let flavour = Flavour::from_version(&version);
        tracing::info!(%version, ?flavour, "connected to the MySQL/MariaDB primary");
        let primary = pool(options, flavour, config, false);

        let mut replicas = Vec::with_capacity(config.replica_urls.len());
        for (n, url) in (1..).zip(&config.replica_urls) {
            let options = connect_options(url)?;
            replicas.push(Replica::new(
                format!("replica-{n}"),
                |pool| with_session(pool, flavour, config, true),
                options.clone(),
                options,
                config,
            ));
        }
        let router = Router::new(MysqlReplication::new(flavour), primary.clone(), replicas, config);
        let tasks = BackgroundTasks::new();
        if router.replica_count() > 0 {
            tasks.add([tokio::spawn(heartbeat(
                primary.clone(),
                config.health_interval.max(Duration::from_millis(10)),
                tasks.signal().subscribe(),
            ))]);
            router.check_replicas_once().await;
            tasks.add(router.spawn_health_checks(tasks.signal()));
        }
        Ok(Self {
            primary,
            flavour,
            router,
            events: Notify::new(),
            tasks,
        })
    }

    /// Runs the embedded migrations (`adapters-mysql/migrations`) not yet applied, on the
    /// primary (sqlx serialises concurrent runs with a named lock), then waits (up to 30 s)
    /// until every healthy replica has applied them. They run on a connection of their own
    /// without the statement timeout, which is for requests: a migration may rewrite a big
    /// table (lock waits keep their bound).
    async fn migrate(&self) -> Result<(), StoreError> {
        sql_store::driver::migrate(
            self.primary.pool(),
            &sqlx::migrate!("./migrations"),
            self.flavour.no_statement_timeout_sql(),
            translate,
        )
        .await?;
        if self.router.replica_count() > 0 {
            sqlx::query(replication::HEARTBEAT_SQL)
                .execute(self.primary.pool())
                .await
                .map_err(translate)?;
            let sql = match self.flavour {
                Flavour::MariaDb => "select @@gtid_binlog_pos",
                Flavour::MySql => "select @@global.gtid_executed",
            };
            let position: String = sqlx::query_scalar(sql)
                .fetch_one(self.primary.pool())
                .await
                .map_err(translate)?;
            if let Some(position) = self.flavour.parse(&position) {
                self.router.wait_for_replicas(&position, MIGRATION_APPLY_WAIT).await;
            }
            // The checks made at connect time found no heartbeat table yet: judge the
            // replicas again now that they have it (and a first beat), rather than at the
            // next interval.
            self.router.check_replicas_once().await;
        }
        Ok(())
    }

    /// Stops the background tasks and closes every pool.
    async fn close(&self) {
        self.tasks.stop().await;
        self.router.close().await;
    }

    async fn read<A, T, F>(&self, consistency: &Consistency, args: A, query: F) -> Result<T, StoreError>
    where
        A: Send + Sync,
        T: Send,
        F: for<'c> Fn(&'c mut MysqlConn, &'c A) -> ReadFuture<'c, T> + Send + Sync,
    {
        self.router.read(consistency, args, query).await
    }

    async fn primary(&self) -> Result<MysqlConn, StoreError> {
        Ok(MysqlConn::new(self.primary.acquire().await.map_err(translate)?))
    }

    /// The queued writes (one by one), then `commit` and the commit's GTID in one round trip
    /// ([`SqlxConn::commit_and_read`](sql_store::SqlxConn::commit_and_read)).
    /// A unit of work of one queued write alone is that statement without a transaction
    /// ([`WorkConn::commit_alone`]), whose position is not read.
    async fn commit(&self, conn: &mut WorkConn<'_, MysqlConn>) -> Result<CommitToken, StoreError> {
        if conn.commit_alone().await? {
            return Ok(sql_store::driver::unknown_position());
        }
        conn.flush().await?;
        let flavour = self.flavour;
        conn.inner()
            .commit_and_read(flavour.commit_and_position_sql(), move |gtid| {
                flavour.parse(gtid).is_some()
            })
            .await
    }

    fn wake_relay(&self) {
        self.events.notify_one();
    }

    /// Woken by this instance's commits that appended events; other instances' events are
    /// found after `max_wait` (there is no cross-instance notification).
    async fn wait_for_events(&self, max_wait: Duration) {
        let _ = tokio::time::timeout(max_wait, self.events.notified()).await;
    }

    /// `database` is the primary (`Down` when it does not answer); each replica is `Up` or
    /// `Degraded` (reads go elsewhere), never `Down`.
    async fn health(&self) -> Vec<ComponentHealth> {
        self.router.health().await
    }
}

/// How long `migrate` waits for replicas to apply the migrations.
const MIGRATION_APPLY_WAIT: Duration = Duration::from_secs(30);

/// Server error numbers the adapter acts on (MariaDB and MySQL share them), from the
/// servers' error references.
mod code {
    pub const DUP_ENTRY: u16 = 1062;
    pub const DUP_KEY: u16 = 1022;
    pub const LOCK_DEADLOCK: u16 = 1213;
    /// Only the statement is rolled back (by default), and the unit of work then refuses to
    /// commit: the whole unit of work may be retried.
    pub const LOCK_WAIT_TIMEOUT: u16 = 1205;
    /// MariaDB: "record has changed since last read" (snapshot isolation checks).
    pub const CHECKREAD: u16 = 1020;
    pub const NO_SUCH_TABLE: u16 = 1146;
    pub const BAD_DB: u16 = 1049;
    /// `read_only` refused a write (a mis-routed write on a replica).
    pub const OPTION_PREVENTS_STATEMENT: u16 = 1290;
    pub const READ_ONLY_TRANSACTION: u16 = 1792;
    pub const TOO_MANY_CONNECTIONS: u16 = 1040;
    /// MariaDB `max_statement_time` exceeded.
    pub const STATEMENT_TIMEOUT: u16 = 1969;
    /// MySQL `max_execution_time` exceeded.
    pub const QUERY_TIMEOUT: u16 = 3024;
    pub const QUERY_INTERRUPTED: u16 = 1317;
    pub const SERVER_SHUTDOWN: u16 = 1053;
    pub const CONNECTION_KILLED: u16 = 1927;
}

/// Translates a driver error into the port's error, keeping it as the cause. The one place
/// that reads MySQL errors: by error number, and for duplicate keys by the key name the
/// message quotes (the server reports it nowhere else).
pub(crate) fn translate(err: sqlx::Error) -> StoreError {
    let unavailable = |what: &str, err| StoreError::Unavailable(Cause::caused_by(what, err));
    let (number, message) = match &err {
        sqlx::Error::Database(db) => match db.try_downcast_ref::<sqlx::mysql::MySqlDatabaseError>() {
            Some(mysql) => (mysql.number(), mysql.message().to_owned()),
            None => return StoreError::Other(Cause::caused_by("MySQL driver error", err)),
        },
        sqlx::Error::PoolTimedOut => return unavailable("no MySQL connection free in time", err),
        sqlx::Error::PoolClosed => return unavailable("the MySQL pool is closed", err),
        sqlx::Error::Io(_) | sqlx::Error::Tls(_) | sqlx::Error::WorkerCrashed => {
            return unavailable("the MySQL connection failed", err);
        }
        _ => return StoreError::Other(Cause::caused_by("MySQL driver error", err)),
    };
    match number {
        code::DUP_ENTRY | code::DUP_KEY => StoreError::Conflict(unique_rule(duplicate_key(&message))),
        code::LOCK_DEADLOCK | code::LOCK_WAIT_TIMEOUT | code::CHECKREAD => StoreError::Concurrency,
        code::NO_SUCH_TABLE | code::BAD_DB => {
            StoreError::SchemaMissing(Cause::caused_by("a table or database is missing", err))
        }
        code::OPTION_PREVENTS_STATEMENT | code::READ_ONLY_TRANSACTION => StoreError::Other(Cause::caused_by(
            "a write reached a read-only connection (a replica?)",
            err,
        )),
        code::TOO_MANY_CONNECTIONS => unavailable("MySQL has no connection slot left", err),
        code::STATEMENT_TIMEOUT | code::QUERY_TIMEOUT | code::QUERY_INTERRUPTED => {
            unavailable("a MySQL statement ran out of time", err)
        }
        code::SERVER_SHUTDOWN | code::CONNECTION_KILLED => unavailable("the MySQL server went away", err),
        _ => StoreError::Other(Cause::caused_by("MySQL refused a statement", err)),
    }
}

/// The key a duplicate-entry message names: MariaDB says `… for key 'members_email_key'`,
/// MySQL 8 `… for key 'members.members_email_key'`.
fn duplicate_key(message: &str) -> &str {
    let Some((_, key)) = message.rsplit_once("for key '") else {
        return "";
    };
    let key = key.trim_end_matches('\'');
    key.rsplit_once('.').map_or(key, |(_, index)| index)
}

/// The uniqueness rule behind a unique index name (see the migrations).
fn unique_rule(key: &str) -> Unique {
    match key {
        "members_email_key" => Unique::MemberEmail,
        "policies_policy_number_key" => Unique::PolicyNumber,
        "policies_one_active_key" => Unique::ActivePolicy,
        "driving_sessions_one_open_key" => Unique::OpenSession,
        "coupons_campaign_member_key" => Unique::CouponPerMember,
        other => Unique::Other(other.to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duplicate_entry_messages_name_the_rule_on_both_servers() {
        let maria = "Duplicate entry 'a@example.com' for key 'members_email_key'";
        let mysql = "Duplicate entry 'a@example.com' for key 'members.members_email_key'";
        assert_eq!(unique_rule(duplicate_key(maria)), Unique::MemberEmail);
        assert_eq!(unique_rule(duplicate_key(mysql)), Unique::MemberEmail);
        assert_eq!(
            unique_rule(duplicate_key("Duplicate entry 'x' for key 'PRIMARY'")),
            Unique::Other("PRIMARY".to_owned())
        );
        assert_eq!(
            unique_rule(duplicate_key("something else")),
            Unique::Other(String::new())
        );
    }

    #[test]
    fn pool_and_io_errors_are_unavailable() {
        assert!(matches!(
            translate(sqlx::Error::PoolTimedOut),
            StoreError::Unavailable(_)
        ));
        let refused = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        assert!(matches!(
            translate(sqlx::Error::Io(refused)),
            StoreError::Unavailable(_)
        ));
        assert!(matches!(translate(sqlx::Error::RowNotFound), StoreError::Other(_)));
    }

    #[test]
    fn urls_must_be_mysql_and_print_without_passwords() {
        assert!(connect_options("mysql://app:pw@127.0.0.1:3306/hexride").is_ok());
        assert!(connect_options("mariadb://app:pw@127.0.0.1:3306/hexride").is_ok());
        assert!(matches!(connect_options("postgres://x/y"), Err(StoreError::Other(_))));
        let config = MysqlConfig {
            primary_url: "mysql://app:s3cret@db/hexride".to_owned(),
            ..MysqlConfig::default()
        };
        let printed = format!("{config:?}");
        assert!(!printed.contains("s3cret"), "{printed}");
    }
}
