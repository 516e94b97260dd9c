//! PostgreSQL's side of the shared statements: `$n` placeholders, `for no key update` row
//! locks; ids are `uuid`, times `timestamptz` (microseconds, read back in UTC), money and
//! counts `bigint`, enums their `as_str()` text (checked by the schema). A row that does not
//! decode is corrupt data: [`StoreError::Other`].

use async_trait::async_trait;
use sqlx::pool::PoolConnection;
use sqlx::postgres::{PgArguments, PgRow};
use sqlx::{AssertSqlSafe, Postgres, Row as _};
use time::OffsetDateTime;
use uuid::Uuid;

use ports::StoreError;
use sql_store::{Columns, Dialect, Query, SqlConn, Value};

use crate::translate;

/// PostgreSQL's dialect. The row lock is `for no key update`, what an `update` of non-key
/// columns takes anyway: it excludes other writers of the row but not the `for key share`
/// locks that foreign-key checks take, so inserting an order for a member whose row another
/// transaction holds neither waits for it nor deadlocks with it.
pub(crate) const DIALECT: Dialect = Dialect {
    name: "postgres",
    numbered_placeholders: true,
    for_update: "for no key update",
    skip_locked: "for no key update skip locked",
};

/// A pooled PostgreSQL connection (the primary's or a replica's), in or out of a
/// transaction.
pub struct PgConn(pub(crate) PoolConnection<Postgres>);

impl std::fmt::Debug for PgConn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgConn").finish_non_exhaustive()
    }
}

type PgQuery<'q> = sqlx::query::Query<'q, Postgres, PgArguments>;

/// The query with its values bound as PostgreSQL types.
fn bound<'q>(query: Query<'q>) -> PgQuery<'q> {
    let mut bound = sqlx::query(AssertSqlSafe(query.sql));
    for value in query.values {
        bound = match value {
            Value::Int(v) => bound.bind(v),
            Value::Text(v) => bound.bind(v),
            Value::Uuid(v) => bound.bind(v),
            Value::Time(v) => bound.bind(v),
            Value::Bool(v) => bound.bind(v),
        };
    }
    bound
}

#[async_trait]
impl SqlConn for PgConn {
    type Row = Row;

    fn dialect(&self) -> &'static Dialect {
        &DIALECT
    }

    async fn execute(&mut self, query: Query<'_>) -> Result<u64, StoreError> {
        let done = bound(query).execute(&mut *self.0).await.map_err(translate)?;
        Ok(done.rows_affected())
    }

    async fn fetch_optional(&mut self, query: Query<'_>) -> Result<Option<Row>, StoreError> {
        let row = bound(query).fetch_optional(&mut *self.0).await.map_err(translate)?;
        Ok(row.map(Row))
    }

    async fn fetch_all(&mut self, query: Query<'_>) -> Result<Vec<Row>, StoreError> {
        let rows = bound(query).fetch_all(&mut *self.0).await.map_err(translate)?;
        Ok(rows.into_iter().map(Row).collect())
    }

    async fn raw(&mut self, sql: &'static str) -> Result<(), StoreError> {
        sqlx::query(sql).execute(&mut *self.0).await.map_err(translate)?;
        Ok(())
    }

    fn close_on_drop(&mut self) {
        self.0.close_on_drop();
    }
}

/// A PostgreSQL row as the shared mappers read it.
pub struct Row(PgRow);

impl Columns for Row {
    fn text(&self, column: &str) -> Result<String, StoreError> {
        self.0.try_get(column).map_err(translate)
    }

    fn opt_text(&self, column: &str) -> Result<Option<String>, StoreError> {
        self.0.try_get(column).map_err(translate)
    }

    /// A `bigint` column.
    fn int(&self, column: &str) -> Result<i64, StoreError> {
        self.0.try_get(column).map_err(translate)
    }

    /// An `integer` column.
    fn int32(&self, column: &str) -> Result<i32, StoreError> {
        self.0.try_get(column).map_err(translate)
    }

    /// A `timestamptz` column.
    fn time(&self, column: &str) -> Result<OffsetDateTime, StoreError> {
        self.0.try_get(column).map_err(translate)
    }

    fn opt_time(&self, column: &str) -> Result<Option<OffsetDateTime>, StoreError> {
        self.0.try_get(column).map_err(translate)
    }

    fn uuid(&self, column: &str) -> Result<Uuid, StoreError> {
        self.0.try_get(column).map_err(translate)
    }

    fn opt_uuid(&self, column: &str) -> Result<Option<Uuid>, StoreError> {
        self.0.try_get(column).map_err(translate)
    }
}
