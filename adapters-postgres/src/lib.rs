//! hexride's PostgreSQL dialect (sqlx): one primary and any number of streaming replicas.
//! The statements and the store logic are `sql-store`'s; this crate supplies PostgreSQL's
//! placeholders, locks and types ([`PgDialect`]), its errors, and its routing.
//!
//! Units of work, and every read that asks for [`Consistency::Strong`], run on the primary.
//! Other reads are routed by the router: to a healthy replica, to one that has replayed the
//! caller's commit, or back to the primary. A commit returns the primary's WAL position as
//! its token, so a later read can ask for a replica that has it.

mod conn;
mod listener;
mod replication;

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::Postgres;
use sqlx::postgres::PgConnectOptions;
use tokio::sync::Notify;

use ports::{Cause, CommitToken, ComponentHealth, Consistency, StoreError, Unique};
use sql_store::{Backend, BackgroundTasks, Conns, ReadFuture, SqlConfig, SqlStore, WorkConn};

pub use conn::{PgConn, PgDialect};
pub use replication::{Lsn, PgReplication};
pub use sql_store::routing::{ReadStats, ReplicaState};

use sql_store::routing::{Replica, Routed, Router};

/// The PostgreSQL store: every store port (see [`SqlStore`]), routed between the primary
/// and the replicas. Its own diagnostics are on [`SqlStore::backend`].
pub type PgStore = SqlStore<PgBackend>;

/// The channel an instance notifies after commits that appended outbox rows, so relays on
/// every instance wake.
const OUTBOX_CHANNEL: &str = "hexride_outbox";

/// Where the primary and the replicas are, and how connections and reads behave.
pub type PgConfig = SqlConfig;

/// PostgreSQL's pools, routing and background tasks behind [`PgStore`]. The background
/// tasks (replica health checks, the outbox listener) stop when it is dropped or closed.
pub struct PgBackend {
    primary: Conns<Postgres>,
    router: Router<PgReplication>,
    /// Woken by the outbox listener (any instance's commit) and by this instance's commits.
    events: Arc<Notify>,
    /// Woken by this instance's commits that appended outbox rows, for the announcer.
    appended: Arc<Notify>,
    tasks: BackgroundTasks,
}

impl std::fmt::Debug for PgBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgBackend")
            .field("replicas", &self.router.replica_count())
            .finish_non_exhaustive()
    }
}

/// Connection options shared by every connection: the server-side statement timeout, a
/// name that shows in `pg_stat_activity`, and for replicas read-only transactions, so a
/// write routed to a replica by mistake fails loudly instead of breaking replication.
fn connect_options(
    url: &str,
    application_name: &str,
    statement_timeout: Duration,
    read_only: bool,
) -> Result<PgConnectOptions, StoreError> {
    if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
        return Err(StoreError::other(format!(
            "not a PostgreSQL URL (postgres://…): `{}`",
            ports::redact_url(url)
        )));
    }
    let timeout_ms = statement_timeout.as_millis().max(1).to_string();
    let mut settings = vec![("statement_timeout", timeout_ms)];
    if read_only {
        settings.push(("default_transaction_read_only", "on".to_owned()));
    }
    Ok(PgConnectOptions::from_str(url)
        .map_err(|e| StoreError::other(format!("invalid PostgreSQL URL `{}`: {e}", ports::redact_url(url))))?
        .application_name(application_name)
        .options(settings))
}

impl Routed for PgBackend {
    type Replication = PgReplication;

    fn router(&self) -> &Router<PgReplication> {
        &self.router
    }
}

/// `commit`, then the commit's position, sent in one round trip
/// ([`SqlxConn::commit_and_read`](sql_store::SqlxConn::commit_and_read)). The position is
/// the end of the WAL the primary has written. With `synchronous_commit` on (or `local`,
/// `remote_write`, `remote_apply`), `COMMIT` returns only once the commit record is
/// flushed, so the write position (`pg_current_wal_lsn()`), read after it, is at or past it.
/// With `synchronous_commit = off` the record may still sit in WAL buffers, so the insert
/// position is used instead: it is always past every record already inserted, but may not
/// have reached the replicas yet, so it costs reads a short wait, never a stale result.
const COMMIT_AND_POSITION_SQL: &str = "commit; select (case when current_setting('synchronous_commit') = 'off' \
     then pg_current_wal_insert_lsn() else pg_current_wal_lsn() end)::text";

#[async_trait]
impl Backend for PgBackend {
    type Config = PgConfig;
    type Conn = PgConn;

    /// Connects to the primary (failing if it cannot be reached) and prepares a lazily
    /// connected pool per replica. Checks each replica once before returning, then keeps
    /// checking every `health_interval` in the background; a replica that is down at start
    /// is only skipped. Must run inside a Tokio runtime.
    ///
    /// # Errors
    /// [`StoreError::Other`] for a malformed URL; [`StoreError::Unavailable`] when the
    /// primary cannot be reached within `acquire_timeout`.
    async fn connect(config: &PgConfig) -> Result<Self, StoreError> {
        let primary_options = connect_options(&config.primary_url, "hexride-primary", config.statement_timeout, false)?;
        let primary = Conns::new(
            sql_store::driver::pool_options(config.max_connections, config.acquire_timeout)
                .connect_with(primary_options.clone())
                .await
                .map_err(translate)?,
        );

        let mut replicas = Vec::with_capacity(config.replica_urls.len());
        for (n, url) in (1..).zip(&config.replica_urls) {
            let name = format!("replica-{n}");
            let options = connect_options(url, &format!("hexride-{name}"), config.statement_timeout, true)?;
            let health_options = options.clone().application_name(&format!("hexride-{name}-health"));
            replicas.push(Replica::new(name, |pool| pool, options, health_options, config));
        }
        let router = Router::new(PgReplication, primary.clone(), replicas, config);
        router.check_replicas_once().await;

        let tasks = BackgroundTasks::new();
        let events = Arc::new(Notify::new());
        tasks.add(router.spawn_health_checks(tasks.signal()));
        let appended = Arc::new(Notify::new());
        tasks.add([
            tokio::spawn(listener::listen(
                primary_options.application_name("hexride-listener"),
                Arc::clone(&events),
                tasks.signal().subscribe(),
            )),
            tokio::spawn(listener::announce(
                primary.clone(),
                Arc::clone(&appended),
                tasks.signal().subscribe(),
            )),
        ]);

        Ok(Self {
            primary,
            router,
            events,
            appended,
            tasks,
        })
    }

    /// Runs the embedded migrations (`adapters-postgres/migrations`) not yet applied, on the
    /// primary. Several instances may call it at once: sqlx serialises them with an advisory
    /// lock. Then waits (up to 30 s) until every healthy replica has
    /// replayed the migrations, so eventual reads do not meet a schema the replica lacks.
    async fn migrate(&self) -> Result<(), StoreError> {
        // Without the statement timeout, which is for requests: a migration may rewrite a
        // big table.
        sql_store::driver::migrate(
            self.primary.pool(),
            &sqlx::migrate!("./migrations"),
            "set statement_timeout = 0",
            translate,
        )
        .await?;
        let lsn: String = sqlx::query_scalar("select pg_current_wal_lsn()::text")
            .fetch_one(self.primary.pool())
            .await
            .map_err(translate)?;
        if let Some(lsn) = Lsn::parse(&lsn) {
            self.router.wait_for_replicas(&lsn, MIGRATION_REPLAY_WAIT).await;
        }
        Ok(())
    }

    /// Stops the background tasks and closes every pool, waiting for connections in use to
    /// be returned.
    async fn close(&self) {
        self.tasks.stop().await;
        self.router.close().await;
    }

    async fn read<A, T, F>(&self, consistency: &Consistency, args: A, query: F) -> Result<T, StoreError>
    where
        A: Send + Sync,
        T: Send,
        F: for<'c> Fn(&'c mut PgConn, &'c A) -> ReadFuture<'c, T> + Send + Sync,
    {
        self.router.read(consistency, args, query).await
    }

    async fn primary(&self) -> Result<PgConn, StoreError> {
        Ok(PgConn::new(self.primary.acquire().await.map_err(translate)?))
    }

    /// The queued writes (one statement of write CTEs), then `commit` and the position in
    /// one round trip ([`SqlxConn::commit_and_read`](sql_store::SqlxConn::commit_and_read)).
    /// A unit of work of queued writes alone is that one statement without a transaction
    /// ([`WorkConn::commit_alone`]), whose position is not read: its token sends that
    /// member's reads to the primary.
    async fn commit(&self, conn: &mut WorkConn<'_, PgConn>) -> Result<CommitToken, StoreError> {
        if conn.commit_alone().await? {
            return Ok(sql_store::driver::unknown_position());
        }
        conn.flush().await?;
        conn.inner()
            .commit_and_read(COMMIT_AND_POSITION_SQL, |lsn| Lsn::parse(lsn).is_some())
            .await
    }

    /// Wakes this instance's relay at once, and the others through the announcer's
    /// `pg_notify` (one for every commit since its last).
    fn wake_relay(&self) {
        self.events.notify_one();
        self.appended.notify_one();
    }

    /// Woken by any instance's commit that appended events (through the listener), and by
    /// this instance's at once. With the listener down, other instances' events are found
    /// after `max_wait`.
    async fn wait_for_events(&self, max_wait: Duration) {
        let _ = tokio::time::timeout(max_wait, self.events.notified()).await;
    }

    /// `database` is the primary (`Down` when it does not answer); each replica is `Up` or
    /// `Degraded` (reads go elsewhere), never `Down`: the service still works without it.
    async fn health(&self) -> Vec<ComponentHealth> {
        self.router.health().await
    }
}

/// SQLSTATE codes the adapter acts on, <https://www.postgresql.org/docs/current/errcodes-appendix.html>.
mod sqlstate {
    pub const UNIQUE_VIOLATION: &str = "23505";
    pub const SERIALIZATION_FAILURE: &str = "40001";
    pub const DEADLOCK_DETECTED: &str = "40P01";
    pub const QUERY_CANCELED: &str = "57014";
    pub const READ_ONLY_SQL_TRANSACTION: &str = "25006";
    pub const TOO_MANY_CONNECTIONS: &str = "53300";
    /// 42P01 undefined table, 3D000 unknown database: on a replica, schema it has not
    /// replayed yet (right after a migration).
    pub const UNDEFINED_TABLE: &str = "42P01";
    pub const INVALID_CATALOG_NAME: &str = "3D000";
    /// Class 08: connection exceptions.
    pub const CONNECTION_EXCEPTION_CLASS: &str = "08";
    /// 57P01 admin shutdown, 57P02 crash shutdown, 57P03 cannot connect now (starting up).
    pub const SHUTTING_DOWN_PREFIX: &str = "57P0";
}

/// How long `migrate` waits for replicas to replay the migrations.
const MIGRATION_REPLAY_WAIT: Duration = Duration::from_secs(30);

/// Translates a driver error into the port's error, keeping it as the cause. The one place
/// that reads PostgreSQL errors: by SQLSTATE, and for unique violations by constraint name
/// (never by message).
pub(crate) fn translate(err: sqlx::Error) -> StoreError {
    let unavailable = |what: &str, err| StoreError::Unavailable(Cause::caused_by(what, err));
    let code = match &err {
        sqlx::Error::Database(db) => db.code().unwrap_or_default().into_owned(),
        sqlx::Error::PoolTimedOut => return unavailable("no PostgreSQL connection free in time", err),
        sqlx::Error::PoolClosed => return unavailable("the PostgreSQL pool is closed", err),
        sqlx::Error::Io(_) | sqlx::Error::Tls(_) | sqlx::Error::WorkerCrashed => {
            return unavailable("the PostgreSQL connection failed", err);
        }
        _ => return StoreError::Other(Cause::caused_by("PostgreSQL driver error", err)),
    };
    match code.as_str() {
        sqlstate::UNIQUE_VIOLATION => {
            let constraint = match &err {
                sqlx::Error::Database(db) => db.constraint().unwrap_or_default(),
                _ => "",
            };
            StoreError::Conflict(unique_rule(constraint))
        }
        sqlstate::SERIALIZATION_FAILURE | sqlstate::DEADLOCK_DETECTED => StoreError::Concurrency,
        sqlstate::QUERY_CANCELED => unavailable("a PostgreSQL statement ran out of time", err),
        sqlstate::TOO_MANY_CONNECTIONS => unavailable("PostgreSQL has no connection slot left", err),
        sqlstate::UNDEFINED_TABLE | sqlstate::INVALID_CATALOG_NAME => {
            StoreError::SchemaMissing(Cause::caused_by("a table or database is missing", err))
        }
        sqlstate::READ_ONLY_SQL_TRANSACTION => StoreError::Other(Cause::caused_by(
            "a write reached a read-only connection (a replica?)",
            err,
        )),
        code if code.starts_with(sqlstate::CONNECTION_EXCEPTION_CLASS)
            || code.starts_with(sqlstate::SHUTTING_DOWN_PREFIX) =>
        {
            unavailable("the PostgreSQL server went away", err)
        }
        _ => StoreError::Other(Cause::caused_by("PostgreSQL refused a statement", err)),
    }
}

/// The uniqueness rule behind a constraint or unique index name (see the migrations).
fn unique_rule(constraint: &str) -> Unique {
    match constraint {
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
    fn constraint_names_name_the_rule() {
        assert_eq!(unique_rule("members_email_key"), Unique::MemberEmail);
        assert_eq!(unique_rule("policies_one_active_key"), Unique::ActivePolicy);
        assert_eq!(unique_rule("coupons_campaign_member_key"), Unique::CouponPerMember);
        assert_eq!(unique_rule("members_pkey"), Unique::Other("members_pkey".to_owned()));
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
    fn a_printed_configuration_shows_no_password() {
        let config = PgConfig {
            primary_url: "postgres://app:s3cret@primary/hexride".to_owned(),
            replica_urls: vec!["postgres://app:s3cret@replica/hexride".to_owned()],
            ..PgConfig::default()
        };
        let printed = format!("{config:?}");
        assert!(!printed.contains("s3cret"), "{printed}");
        assert!(printed.contains("postgres://app@replica/hexride"), "{printed}");
    }

    #[test]
    fn replica_connections_are_read_only_and_named() {
        let options = connect_options(
            "postgres://postgres@127.0.0.1:5433/hexride",
            "hexride-replica-1",
            Duration::from_secs(10),
            true,
        )
        .expect("valid URL");
        assert_eq!(options.get_application_name(), Some("hexride-replica-1"));
        let rendered = options.get_options().unwrap_or_default().to_owned();
        assert!(rendered.contains("statement_timeout=10000"), "{rendered}");
        assert!(rendered.contains("default_transaction_read_only=on"), "{rendered}");
        assert!(matches!(
            connect_options("mysql://nope", "x", Duration::from_secs(1), false),
            Err(StoreError::Other(_))
        ));
    }
}
