//! The sqlx glue every dialect crate shares: a pooled sqlx connection as a [`SqlConn`] and
//! its rows as [`Columns`]. A dialect names its driver and says how it stores ids and times
//! and translates its errors ([`SqlxDialect`]); running statements, binding and reading
//! text and integers are written here once.

use std::fmt;
use std::marker::PhantomData;
use std::time::Duration;

use async_trait::async_trait;
use futures::TryStreamExt as _;
use sqlx::Either;
use sqlx::pool::PoolOptions;
use sqlx::{
    AssertSqlSafe, ColumnIndex, Connection as _, Database, Decode, Encode, Executor, IntoArguments, Row as _, Type,
};
use time::OffsetDateTime;
use tokio::sync::OwnedMutexGuard;
use uuid::Uuid;

use ports::{CommitToken, StoreError};

use crate::pool::Leased;
use crate::sql::{Dialect, Outcome, Query, SqlConn, Value};
use crate::{Columns, corrupt};

/// Runs `migrator`'s migrations not yet applied (sqlx serialises concurrent runs with a
/// lock) on a connection of their own from `pool`, closed afterwards, after `session_sql`,
/// which lifts the statement timeout the pool's sessions have: that is for requests, and a
/// migration may rewrite a big table. `translate` says what a database error means.
///
/// # Errors
/// The translated error of the statement that failed, or [`StoreError::Other`] for a
/// migration sqlx refuses (changed, or partly applied).
pub async fn migrate<DB>(
    pool: &sqlx::Pool<DB>,
    migrator: &sqlx::migrate::Migrator,
    session_sql: &'static str,
    translate: fn(sqlx::Error) -> StoreError,
) -> Result<(), StoreError>
where
    DB: Database,
    DB::Connection: sqlx::migrate::Migrate,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
{
    let mut conn = pool.acquire().await.map_err(translate)?.detach();
    sqlx::raw_sql(session_sql).execute(&mut conn).await.map_err(translate)?;
    // `run_direct` is `run` on a connection (`run` takes an `Acquire`, whose lifetime an
    // async trait's boxed future cannot name).
    let migrated = migrator.run_direct(None, &mut conn, false).await;
    conn.close().await.ok();
    migrated.map_err(|e| match e {
        sqlx::migrate::MigrateError::Execute(e) => translate(e),
        other => StoreError::other(format!("migration failed: {other}")),
    })
}

/// A statement of driver `DB` being bound.
pub type SqlxQuery<'q, DB> = sqlx::query::Query<'q, DB, <DB as Database>::Arguments>;

/// What a database's dialect crate supplies to run the shared statements over sqlx: how it
/// stores ids and times (SQLite: text and integer microseconds; PostgreSQL: `uuid` and
/// `timestamptz`), and what its errors mean.
pub trait SqlxDialect: Send + Sync + 'static {
    /// The sqlx driver.
    type Db: Database;

    /// Placeholders and lock clauses.
    const DIALECT: Dialect;

    /// Binds a nullable id.
    fn bind_uuid<'q>(query: SqlxQuery<'q, Self::Db>, value: Option<Uuid>) -> SqlxQuery<'q, Self::Db>;

    /// Binds a nullable time.
    fn bind_time<'q>(query: SqlxQuery<'q, Self::Db>, value: Option<OffsetDateTime>) -> SqlxQuery<'q, Self::Db>;

    /// Reads a nullable id column.
    ///
    /// # Errors
    /// As [`Columns`].
    fn uuid(row: &<Self::Db as Database>::Row, column: &str) -> Result<Option<Uuid>, StoreError>;

    /// Reads a nullable time column.
    ///
    /// # Errors
    /// As [`Columns`].
    fn time(row: &<Self::Db as Database>::Row, column: &str) -> Result<Option<OffsetDateTime>, StoreError>;

    /// Reads a column the domain keeps as an `i32`.
    ///
    /// # Errors
    /// As [`Columns`].
    fn int32(row: &<Self::Db as Database>::Row, column: &str) -> Result<i32, StoreError>;

    /// Translates a driver error into the port's error (see [`SqlConn`]'s contract).
    fn translate(error: sqlx::Error) -> StoreError;

    /// How many rows a statement changed (sqlx has no trait for it).
    fn rows_affected(result: &<Self::Db as Database>::QueryResult) -> u64;
}

/// A pooled connection idle for longer than this is pinged before it is handed out.
pub const IDLE_PING_AFTER: Duration = Duration::from_secs(1);

/// The options every pool of the store starts from: `max_connections` connections, callers
/// waiting up to `acquire_timeout` for one, and no ping before handing out a connection that
/// was in use a moment ago.
///
/// sqlx pings a connection when it comes back to the pool (it has no option to skip that)
/// and, by default, again when it is taken out: two extra round trips around every unit of
/// work and every read, a third of a replica read's. The first ping already proved the
/// connection alive, so the second is kept only for connections idle for longer than
/// [`IDLE_PING_AFTER`], which may have outlived their server; one that fails it is closed
/// and the caller gets another.
pub fn pool_options<DB: Database>(max_connections: u32, acquire_timeout: Duration) -> PoolOptions<DB> {
    PoolOptions::new()
        .max_connections(max_connections.max(1))
        .acquire_timeout(acquire_timeout)
        .test_before_acquire(false)
        .before_acquire(|conn: &mut DB::Connection, meta| {
            Box::pin(async move {
                if meta.idle_for >= IDLE_PING_AFTER {
                    conn.ping().await?;
                }
                Ok(true)
            })
        })
}

/// A connection of dialect `D`, in or out of a transaction: taken from a pool, or the one
/// connection of an exclusive holder (SQLite's writer).
pub struct SqlxConn<D: SqlxDialect> {
    conn: Held<D::Db>,
    dialect: PhantomData<D>,
}

/// How a [`SqlxConn`] holds its driver connection.
enum Held<DB: Database> {
    /// From a [`Conns`](crate::Conns): back on its stack when dropped in good order.
    Leased(Leased<DB>),
    /// Locked while held and free for the next waiter the moment it is dropped.
    Exclusive(OwnedMutexGuard<DB::Connection>),
}

impl<DB: Database> Held<DB> {
    /// See [`Leased::start`].
    fn start(&mut self) -> Result<&mut DB::Connection, sqlx::Error> {
        match self {
            Held::Leased(conn) => conn.start(),
            Held::Exclusive(conn) => Ok(conn),
        }
    }

    /// See [`Leased::settled`].
    fn settled(&mut self) {
        if let Held::Leased(conn) = self {
            conn.settled();
        }
    }
}

impl<D: SqlxDialect> fmt::Debug for SqlxConn<D> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqlxConn")
            .field("dialect", &D::DIALECT.name)
            .finish_non_exhaustive()
    }
}

impl<D: SqlxDialect> SqlxConn<D> {
    /// Wraps a connection taken from a [`Conns`](crate::Conns).
    pub fn new(conn: Leased<D::Db>) -> Self {
        Self {
            conn: Held::Leased(conn),
            dialect: PhantomData,
        }
    }

    /// Wraps the locked connection of an exclusive holder (a mutex around the only
    /// connection): dropped, it unlocks, with none of a pool's return trip.
    pub fn exclusive(conn: OwnedMutexGuard<<D::Db as Database>::Connection>) -> Self {
        Self {
            conn: Held::Exclusive(conn),
            dialect: PhantomData,
        }
    }

    /// The driver's connection, for a statement of the dialect's own (a ping). Its state is
    /// not followed: the connection goes back to its pool, not to the stack.
    ///
    /// # Errors
    /// [`StoreError::Other`] for a connection already handed back (which does not happen).
    pub fn inner(&mut self) -> Result<&mut <D::Db as Database>::Connection, StoreError> {
        self.conn.start().map_err(D::translate)
    }
}

impl<D> SqlxConn<D>
where
    D: SqlxDialect,
    for<'c> &'c mut <D::Db as Database>::Connection: Executor<'c, Database = D::Db>,
    for<'q> String: Decode<'q, D::Db> + Type<D::Db>,
    usize: ColumnIndex<<D::Db as Database>::Row>,
{
    /// Commits and reads the commit's position in one round trip, for
    /// [`Backend::commit`](crate::Backend::commit): `sql` is `commit` followed by a query of
    /// one text value (`commit; select …`), sent as one message of several statements, which
    /// the server stops at the first error. The token is that value when `is_position`
    /// accepts it. Past the commit nothing fails: a value that is missing, refused or not
    /// read (the connection broke) gives [`unknown_position`].
    ///
    /// # Errors
    /// The commit's failure, translated (then nothing committed).
    pub async fn commit_and_read(
        &mut self,
        sql: &'static str,
        is_position: impl Fn(&str) -> bool + Send,
    ) -> Result<CommitToken, StoreError> {
        let result = self.commit_and_read_on(sql, is_position).await;
        if result.is_ok() {
            self.conn.settled();
        }
        result
    }

    async fn commit_and_read_on(
        &mut self,
        sql: &'static str,
        is_position: impl Fn(&str) -> bool + Send,
    ) -> Result<CommitToken, StoreError> {
        let conn = self.conn.start().map_err(D::translate)?;
        let mut results = sqlx::raw_sql(sql).fetch_many(conn);
        // The first result is the `commit`'s.
        match results.try_next().await {
            Ok(Some(Either::Left(_))) => {}
            Ok(_) => return Err(StoreError::other(format!("no result for the commit of: {sql}"))),
            Err(e) => return Err(D::translate(e)),
        }
        let mut position: Option<Option<String>> = None;
        let read = loop {
            match results.try_next().await {
                Ok(Some(Either::Right(row))) if position.is_none() => match row.try_get(0usize) {
                    Ok(value) => position = Some(value),
                    Err(e) => break Err(e),
                },
                Ok(Some(_)) => {}
                Ok(None) => break Ok(position.flatten()),
                Err(e) => break Err(e),
            }
        };
        Ok(match read {
            Ok(Some(position)) if is_position(&position) => CommitToken(position),
            Ok(other) => {
                tracing::debug!(position = ?other, sql, "no commit position after a commit");
                unknown_position()
            }
            Err(e) => {
                tracing::warn!(error = %e, "committed, but could not read the commit position");
                unknown_position()
            }
        })
    }
}

/// The token of a commit whose position could not be read (MySQL without binary logging, or
/// the connection broke right after `COMMIT`). It parses as no position, so reads that carry
/// it go to the primary, which has the write.
const UNKNOWN_POSITION: &str = "unknown";

/// The token of a commit whose position is not known (`unknown`): one that
/// only the primary satisfies.
pub fn unknown_position() -> CommitToken {
    CommitToken(UNKNOWN_POSITION.to_owned())
}

/// The query with its values bound: integers, text and booleans as they are, ids and
/// times as the dialect stores them.
fn bound<D>(query: Query<'_>) -> SqlxQuery<'static, D::Db>
where
    D: SqlxDialect,
    for<'q> Option<i64>: Encode<'q, D::Db> + Type<D::Db>,
    for<'q> bool: Encode<'q, D::Db> + Type<D::Db>,
    for<'q> Option<&'q str>: Encode<'q, D::Db> + Type<D::Db>,
{
    let mut bound = sqlx::query(AssertSqlSafe(query.sql));
    for value in query.values {
        bound = match value {
            Value::Int(v) => bound.bind(v),
            Value::Text(v) => bound.bind(v.as_deref()),
            Value::Bool(v) => bound.bind(v),
            Value::Uuid(v) => D::bind_uuid(bound, v),
            Value::Time(v) => D::bind_time(bound, v),
        };
    }
    bound
}

#[async_trait]
impl<D> SqlConn for SqlxConn<D>
where
    D: SqlxDialect,
    for<'c> &'c mut <D::Db as Database>::Connection: Executor<'c, Database = D::Db>,
    <D::Db as Database>::Arguments: IntoArguments<D::Db>,
    for<'q> Option<i64>: Encode<'q, D::Db> + Type<D::Db>,
    for<'q> bool: Encode<'q, D::Db> + Type<D::Db>,
    for<'q> Option<&'q str>: Encode<'q, D::Db> + Type<D::Db>,
    for<'q> i64: Decode<'q, D::Db> + Type<D::Db>,
    for<'q> String: Decode<'q, D::Db> + Type<D::Db>,
    for<'q> &'q str: ColumnIndex<<D::Db as Database>::Row>,
{
    type Row = SqlxRow<D>;

    fn dialect(&self) -> &'static Dialect {
        &D::DIALECT
    }

    async fn execute(&mut self, query: Query<'_>) -> Result<u64, StoreError> {
        let conn = self.conn.start().map_err(D::translate)?;
        let done = bound::<D>(query).execute(conn).await.map_err(D::translate)?;
        self.conn.settled();
        Ok(D::rows_affected(&done))
    }

    async fn fetch_optional(&mut self, query: Query<'_>) -> Result<Option<SqlxRow<D>>, StoreError> {
        let conn = self.conn.start().map_err(D::translate)?;
        let row = bound::<D>(query).fetch_optional(conn).await.map_err(D::translate)?;
        self.conn.settled();
        Ok(row.map(SqlxRow::new))
    }

    async fn fetch_all(&mut self, query: Query<'_>) -> Result<Vec<SqlxRow<D>>, StoreError> {
        let conn = self.conn.start().map_err(D::translate)?;
        let rows = bound::<D>(query).fetch_all(conn).await.map_err(D::translate)?;
        self.conn.settled();
        Ok(rows.into_iter().map(SqlxRow::new).collect())
    }

    async fn raw(&mut self, sql: &'static str) -> Result<(), StoreError> {
        let conn = self.conn.start().map_err(D::translate)?;
        sqlx::query(sql).execute(conn).await.map_err(D::translate)?;
        self.conn.settled();
        Ok(())
    }

    /// Through the driver's `fetch_many`, whose stream ends each statement with its result
    /// (sqlx-sqlite prepares the statements one after the other and binds `?` arguments on
    /// across them; upstream calls that deprecated, launchbadge/sqlx#3108, so the SQL store's
    /// contract tests exercise it on every run). PostgreSQL and MySQL refuse such a query.
    async fn script(&mut self, query: Query<'_>) -> Result<Vec<Outcome<SqlxRow<D>>>, StoreError> {
        let conn = self.conn.start().map_err(D::translate)?;
        let mut results = conn.fetch_many(bound::<D>(query));
        let mut outcomes = Vec::new();
        let mut rows = Vec::new();
        while let Some(result) = results.try_next().await.map_err(D::translate)? {
            match result {
                Either::Left(done) => outcomes.push(Outcome {
                    changed: D::rows_affected(&done),
                    rows: std::mem::take(&mut rows),
                }),
                Either::Right(row) => rows.push(SqlxRow::new(row)),
            }
        }
        drop(results);
        self.conn.settled();
        Ok(outcomes)
    }

    fn close_on_drop(&mut self) {
        match &mut self.conn {
            Held::Leased(conn) => conn.spoil(),
            // The only connection stays: a later statement fails if it is broken.
            Held::Exclusive(_) => tracing::warn!("an exclusive connection in an unknown state stays in use"),
        }
    }
}

/// A returned row of dialect `D`, as the shared mappers read it.
pub struct SqlxRow<D: SqlxDialect> {
    row: <D::Db as Database>::Row,
    dialect: PhantomData<D>,
}

impl<D: SqlxDialect> SqlxRow<D> {
    fn new(row: <D::Db as Database>::Row) -> Self {
        Self {
            row,
            dialect: PhantomData,
        }
    }
}

fn required<T>(column: &str, value: Option<T>) -> Result<T, StoreError> {
    value.ok_or_else(|| corrupt(column, "null"))
}

impl<D> Columns for SqlxRow<D>
where
    D: SqlxDialect,
    for<'q> i64: Decode<'q, D::Db> + Type<D::Db>,
    for<'q> String: Decode<'q, D::Db> + Type<D::Db>,
    for<'q> &'q str: ColumnIndex<<D::Db as Database>::Row>,
{
    fn text(&self, column: &str) -> Result<String, StoreError> {
        required(column, self.opt_text(column)?)
    }

    fn opt_text(&self, column: &str) -> Result<Option<String>, StoreError> {
        self.row.try_get(column).map_err(D::translate)
    }

    fn int(&self, column: &str) -> Result<i64, StoreError> {
        let value: Option<i64> = self.row.try_get(column).map_err(D::translate)?;
        required(column, value)
    }

    fn int32(&self, column: &str) -> Result<i32, StoreError> {
        D::int32(&self.row, column)
    }

    fn time(&self, column: &str) -> Result<OffsetDateTime, StoreError> {
        required(column, self.opt_time(column)?)
    }

    fn opt_time(&self, column: &str) -> Result<Option<OffsetDateTime>, StoreError> {
        D::time(&self.row, column)
    }

    fn uuid(&self, column: &str) -> Result<Uuid, StoreError> {
        required(column, self.opt_uuid(column)?)
    }

    fn opt_uuid(&self, column: &str) -> Result<Option<Uuid>, StoreError> {
        D::uuid(&self.row, column)
    }
}
