//! hexride's SQLite dialect (sqlx): the embedded default, one database file, zero setup.
//! The statements and the store logic are `sql-store`'s; this crate supplies SQLite's
//! placeholders and storage format ([`SqliteDialect`]), its pools, and its errors.
//!
//! SQLite has a single writer, so every write goes through exactly one connection behind an
//! async mutex (write transactions queue in-process instead of failing with `SQLITE_BUSY`,
//! and the next one starts the moment the last ends: no pool's return trip), while reads go
//! to a pool of read-only connections that WAL mode lets run beside the writer. `begin
//! immediate` takes the write lock at once, which is also why the shared statements need no
//! row locks here: a transaction has the whole database to itself.
//!
//! Durability: WAL with `synchronous = NORMAL` by default ([`Synchronous`]). A commit survives
//! a crash of the process; a power loss may lose the last commits but never corrupts the
//! file. `FULL` also survives the power loss, for an fsync of the WAL at every commit.

mod conn;

use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqliteSynchronous};
use sqlx::{ConnectOptions as _, Sqlite, SqliteConnection};
use tokio::sync::{Mutex, Notify};

use ports::{Cause, CommitToken, ComponentHealth, Consistency, HealthStatus, StoreError, Unique};
use sql_store::{Backend, Conns, ReadFuture, SqlConn as _, SqlStore, WorkConn};

pub use conn::{SqliteConn, SqliteDialect};

/// The SQLite store: every store port (see [`SqlStore`]).
pub type SqliteStore = SqlStore<SqliteBackend>;

/// Where the database lives and how many connections may use it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SqliteConfig {
    /// `sqlite://path/to/file.db`. The file and its directory are created if missing;
    /// in-memory databases are refused (the reader pool could not see the writer's data).
    pub url: String,
    /// Size of the read-only pool behind the read ports.
    pub max_readers: u32,
    /// How long a statement waits for a lock held by another process before `SQLITE_BUSY`.
    pub busy_timeout: Duration,
    /// How long a caller waits for the writer or a pooled reader before
    /// [`StoreError::Unavailable`].
    pub acquire_timeout: Duration,
    /// When a commit reaches the disk.
    pub synchronous: Synchronous,
}

/// When a commit reaches the disk (SQLite's `synchronous`, in WAL mode); configured as
/// `normal` or `full` (`database.sqlite_synchronous`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Synchronous {
    /// The WAL is synced at checkpoints, not at every commit: a commit survives a crash of
    /// the process, and a power loss or OS crash may lose the last ones (never the file).
    #[default]
    Normal,
    /// The WAL is synced at every commit: a commit also survives a power loss.
    Full,
}

impl Default for SqliteConfig {
    fn default() -> Self {
        Self {
            url: "sqlite://data/hexride.db".to_owned(),
            max_readers: 4,
            busy_timeout: Duration::from_secs(5),
            acquire_timeout: Duration::from_secs(10),
            synchronous: Synchronous::Normal,
        }
    }
}

/// SQLite's pools and bookkeeping behind [`SqliteStore`].
pub struct SqliteBackend {
    /// SQLite's single writer, serialised in-process (locked for a unit of work).
    writer: Arc<Mutex<SqliteConnection>>,
    /// How long a unit of work waits for the writer.
    acquire_timeout: Duration,
    /// Set by [`Backend::close`]: the writer then refuses work.
    closed: AtomicBool,
    /// Read-only connections for the read ports.
    readers: Conns<Sqlite>,
    /// Woken after a commit that appended outbox rows.
    events: Notify,
    /// Commits so far: the commit token (SQLite has no replicas, it only has to be well-formed).
    commits: AtomicU64,
}

impl std::fmt::Debug for SqliteBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteBackend").finish_non_exhaustive()
    }
}

#[async_trait]
impl Backend for SqliteBackend {
    type Config = SqliteConfig;
    type Conn = SqliteConn;

    /// Opens (creating if needed) the database file in WAL mode, with a one-connection writer
    /// pool and a pool of `max_readers` read-only connections.
    ///
    /// # Errors
    /// [`StoreError::Other`] for a malformed or in-memory URL; [`StoreError::Unavailable`]
    /// when the directory or file cannot be created or opened.
    async fn connect(config: &SqliteConfig) -> Result<Self, StoreError> {
        let url = config.url.as_str();
        if url.contains(":memory:") || url.contains("mode=memory") {
            return Err(StoreError::other(
                "in-memory SQLite databases are not supported: use a file".to_owned(),
            ));
        }
        let base = SqliteConnectOptions::from_str(url)
            .map_err(|e| StoreError::other(format!("invalid SQLite URL `{url}`: {e}")))?
            .foreign_keys(true)
            .busy_timeout(config.busy_timeout);

        if let Some(dir) = base.get_filename().parent()
            && !dir.as_os_str().is_empty()
        {
            tokio::fs::create_dir_all(dir)
                .await
                .map_err(|e| StoreError::unavailable(format!("cannot create {}: {e}", dir.display())))?;
        }

        // The writer connection is kept open for the life of the store: it owns the WAL and
        // shared-memory files the read-only connections need.
        let mut writer = base
            .clone()
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(match config.synchronous {
                Synchronous::Normal => SqliteSynchronous::Normal,
                Synchronous::Full => SqliteSynchronous::Full,
            })
            .connect()
            .await
            .map_err(translate)?;
        sqlx::raw_sql(conn::ROW_GUARD_SCHEMA)
            .execute(&mut writer)
            .await
            .map_err(translate)?;

        let readers = Conns::new(
            sql_store::driver::pool_options::<Sqlite>(config.max_readers, config.acquire_timeout)
                .connect_with(base.read_only(true))
                .await
                .map_err(translate)?,
        );

        Ok(Self {
            writer: Arc::new(Mutex::new(writer)),
            acquire_timeout: config.acquire_timeout,
            closed: AtomicBool::new(false),
            readers,
            events: Notify::new(),
            commits: AtomicU64::new(0),
        })
    }

    /// Runs the embedded migrations (`adapters-sqlite/migrations`) not yet applied.
    async fn migrate(&self) -> Result<(), StoreError> {
        let mut writer = self.writer.lock().await;
        sqlx::migrate!("./migrations")
            .run_direct(None, &mut *writer, false)
            .await
            .map_err(|e| match e {
                sqlx::migrate::MigrateError::Execute(e) => translate(e),
                other => StoreError::other(format!("migration failed: {other}")),
            })
    }

    /// Closes the readers' pool, waiting for connections in use to be returned, and waits
    /// for the unit of work holding the writer, which then refuses work (the connection
    /// closes with the store).
    async fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.readers.close().await;
        let _writer = self.writer.lock().await;
    }

    /// On a read-only connection whatever the consistency: there is one file.
    async fn read<A, T, F>(&self, _consistency: &Consistency, args: A, query: F) -> Result<T, StoreError>
    where
        A: Send + Sync,
        T: Send,
        F: for<'c> Fn(&'c mut SqliteConn, &'c A) -> ReadFuture<'c, T> + Send + Sync,
    {
        let mut conn = SqliteConn::new(self.readers.acquire().await.map_err(translate)?);
        query(&mut conn, &args).await
    }

    async fn primary(&self) -> Result<SqliteConn, StoreError> {
        let closed = || StoreError::unavailable("the SQLite store is closed".to_owned());
        if self.closed.load(Ordering::Acquire) {
            return Err(closed());
        }
        let writer = tokio::time::timeout(self.acquire_timeout, Arc::clone(&self.writer).lock_owned())
            .await
            .map_err(|_| StoreError::unavailable("the SQLite writer was not free in time".to_owned()))?;
        if self.closed.load(Ordering::Acquire) {
            return Err(closed());
        }
        Ok(SqliteConn::exclusive(writer))
    }

    /// The queued writes and `commit` as one script, one hand-off to the writer's thread
    /// (two when a queued write must change a row: [`WorkConn::commit_after_queue`]).
    async fn commit(&self, conn: &mut WorkConn<'_, SqliteConn>) -> Result<CommitToken, StoreError> {
        conn.commit_after_queue("commit").await?;
        let seq = self.commits.fetch_add(1, Ordering::Relaxed) + 1;
        Ok(CommitToken(seq.to_string()))
    }

    fn wake_relay(&self) {
        self.events.notify_one();
    }

    /// A commit that appended events stores a wake-up permit, so a call made after that
    /// commit returns at once even if nobody was waiting when it happened.
    async fn wait_for_events(&self, max_wait: Duration) {
        let _ = tokio::time::timeout(max_wait, self.events.notified()).await;
    }

    async fn health(&self) -> Vec<ComponentHealth> {
        let probe = async {
            let mut conn = SqliteConn::new(self.readers.acquire().await.map_err(translate)?);
            conn.raw("select 1").await
        };
        let entry = match probe.await {
            Ok(()) => ComponentHealth::new("database", HealthStatus::Up, None),
            Err(e) => ComponentHealth::new("database", HealthStatus::Down, Some(e.to_string())),
        };
        vec![entry]
    }
}

/// Primary result codes (the low byte of an extended code), <https://www.sqlite.org/rescode.html>.
mod result_code {
    pub const BUSY: i32 = 5;
    pub const LOCKED: i32 = 6;
    pub const IOERR: i32 = 10;
    pub const FULL: i32 = 13;
    pub const CANTOPEN: i32 = 14;
}

/// Translates a driver error into the port's error, keeping it as the cause. The one place
/// that reads SQLite errors.
pub(crate) fn translate(err: sqlx::Error) -> StoreError {
    let unavailable = |what: &str, err| StoreError::Unavailable(Cause::caused_by(what, err));
    let primary = match &err {
        sqlx::Error::Database(db) => {
            if db.is_unique_violation() {
                return StoreError::Conflict(unique_rule(db.message()));
            }
            db.code()
                .and_then(|code| code.parse::<i32>().ok())
                .map(|code| code & 0xff)
        }
        sqlx::Error::PoolTimedOut => return unavailable("no SQLite connection free in time", err),
        sqlx::Error::PoolClosed | sqlx::Error::Io(_) | sqlx::Error::WorkerCrashed => {
            return unavailable("the SQLite database cannot be used", err);
        }
        _ => return StoreError::Other(Cause::caused_by("SQLite driver error", err)),
    };
    match primary {
        Some(result_code::BUSY | result_code::LOCKED) => StoreError::Concurrency,
        Some(result_code::IOERR | result_code::FULL | result_code::CANTOPEN) => {
            unavailable("the SQLite file cannot be read or written", err)
        }
        _ => StoreError::Other(Cause::caused_by("SQLite refused a statement", err)),
    }
}

/// Names the uniqueness rule from SQLite's message, `UNIQUE constraint failed: t.c[, t.c…]`
/// (the indexed columns; a partial index reports its columns, not its name).
fn unique_rule(message: &str) -> Unique {
    let columns = message.strip_prefix("UNIQUE constraint failed: ").unwrap_or(message);
    match columns {
        "members.email" => Unique::MemberEmail,
        "policies.policy_number" => Unique::PolicyNumber,
        // The partial index `where status = 'active'`.
        "policies.member_id" => Unique::ActivePolicy,
        // The partial index `where ended_at is null`.
        "driving_sessions.member_id" => Unique::OpenSession,
        "coupons.campaign_id, coupons.member_id" => Unique::CouponPerMember,
        other => Unique::Other(other.to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ports::{Database, HealthCheck};

    #[test]
    fn unique_messages_name_the_rule() {
        assert_eq!(
            unique_rule("UNIQUE constraint failed: members.email"),
            Unique::MemberEmail
        );
        assert_eq!(
            unique_rule("UNIQUE constraint failed: coupons.campaign_id, coupons.member_id"),
            Unique::CouponPerMember
        );
        assert_eq!(
            unique_rule("UNIQUE constraint failed: members.id"),
            Unique::Other("members.id".to_owned())
        );
    }

    #[tokio::test]
    async fn connect_creates_the_directory_and_refuses_memory() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("nested/deeper/app.db");
        let config = SqliteConfig {
            url: format!("sqlite://{}", path.display()),
            ..SqliteConfig::default()
        };
        let store = SqliteStore::connect(&config).await.expect("connect");
        store.migrate().await.expect("migrate");
        store.migrate().await.expect("migrating twice is a no-op");
        assert!(path.exists());
        let health = store.health().await;
        assert_eq!(health.len(), 1);
        assert_eq!(health[0].status, HealthStatus::Up);
        store.close().await;
        let health = store.health().await;
        assert_eq!(health[0].status, HealthStatus::Down);

        let memory = SqliteConfig {
            url: "sqlite::memory:".to_owned(),
            ..SqliteConfig::default()
        };
        assert!(matches!(SqliteStore::connect(&memory).await, Err(StoreError::Other(_))));
    }

    #[tokio::test]
    async fn the_writer_syncs_as_configured() {
        let dir = tempfile::tempdir().expect("tempdir");
        for (synchronous, pragma) in [(Synchronous::Normal, 1_i64), (Synchronous::Full, 2)] {
            let config = SqliteConfig {
                url: format!("sqlite://{}", dir.path().join(format!("{pragma}.db")).display()),
                synchronous,
                ..SqliteConfig::default()
            };
            let store = SqliteStore::connect(&config).await.expect("connect");
            let mut writer = store.backend().writer.lock().await;
            let value: i64 = sqlx::query_scalar("pragma synchronous")
                .fetch_one(&mut *writer)
                .await
                .expect("pragma");
            assert_eq!(value, pragma, "{synchronous:?}");
        }
    }

    #[tokio::test]
    async fn a_spent_unit_of_work_refuses_work() {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = SqliteConfig {
            url: format!("sqlite://{}", dir.path().join("a.db").display()),
            ..SqliteConfig::default()
        };
        let store = SqliteStore::connect(&config).await.expect("connect");
        store.migrate().await.expect("migrate");
        let mut uow = store.begin().await.expect("begin");
        let first = uow.commit().await.expect("commit");
        assert!(first.0.parse::<u64>().is_ok());
        assert!(matches!(uow.commit().await, Err(StoreError::Other(_))));
        assert!(matches!(uow.rollback().await, Err(StoreError::Other(_))));
        assert!(matches!(
            uow.catalog()
                .take_stock(core_domain::ProductId(uuid::Uuid::nil()), 1)
                .await,
            Err(StoreError::Other(_))
        ));
    }
}
