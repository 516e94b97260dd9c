//! SQLite's side of the shared statements: placeholders are `?` and there are no row locks
//! (the single writer holds the database lock for a whole transaction); times are stored as
//! INTEGER unix microseconds (so comparisons and `order by` are numeric), ids as hyphenated
//! uuid TEXT, enums as their `as_str()` text. A row that does not decode is corrupt data:
//! [`StoreError::Other`].

use async_trait::async_trait;
use sqlx::pool::PoolConnection;
use sqlx::sqlite::{SqliteArguments, SqliteRow};
use sqlx::{AssertSqlSafe, Row as _, Sqlite};
use time::OffsetDateTime;
use uuid::Uuid;

use ports::StoreError;
use sql_store::{Columns, Dialect, Query, SqlConn, Value, corrupt};

use crate::translate;

/// SQLite's dialect.
pub(crate) const DIALECT: Dialect = Dialect {
    name: "sqlite",
    numbered_placeholders: false,
    for_update: "",
    skip_locked: "",
};

/// Unix microseconds of `t`, truncated (floored) to the microsecond.
pub(crate) fn micros(t: OffsetDateTime) -> i64 {
    // ±9999 years in microseconds is far inside i64.
    i64::try_from(t.unix_timestamp_nanos().div_euclid(1_000)).unwrap_or(i64::MAX)
}

fn from_micros(column: &str, us: i64) -> Result<OffsetDateTime, StoreError> {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(us) * 1_000).map_err(|e| corrupt(column, e))
}

fn parse_uuid(column: &str, raw: &str) -> Result<Uuid, StoreError> {
    Uuid::parse_str(raw).map_err(|e| corrupt(column, e))
}

/// A pooled SQLite connection, in or out of a transaction.
pub struct SqliteConn(pub(crate) PoolConnection<Sqlite>);

impl std::fmt::Debug for SqliteConn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteConn").finish_non_exhaustive()
    }
}

type SqliteQuery<'q> = sqlx::query::Query<'q, Sqlite, SqliteArguments>;

/// The query with its values bound in SQLite's storage format.
fn bound<'q>(query: Query<'q>) -> SqliteQuery<'q> {
    let mut bound = sqlx::query(AssertSqlSafe(query.sql));
    for value in query.values {
        bound = match value {
            Value::Int(v) => bound.bind(v),
            Value::Text(v) => bound.bind(v),
            Value::Uuid(v) => bound.bind(v.map(|id| id.hyphenated().to_string())),
            Value::Time(v) => bound.bind(v.map(micros)),
            Value::Bool(v) => bound.bind(v),
        };
    }
    bound
}

#[async_trait]
impl SqlConn for SqliteConn {
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

/// A SQLite row as the shared mappers read it.
pub struct Row(SqliteRow);

impl Columns for Row {
    fn text(&self, column: &str) -> Result<String, StoreError> {
        self.0.try_get(column).map_err(translate)
    }

    fn opt_text(&self, column: &str) -> Result<Option<String>, StoreError> {
        self.0.try_get(column).map_err(translate)
    }

    fn int(&self, column: &str) -> Result<i64, StoreError> {
        self.0.try_get(column).map_err(translate)
    }

    /// SQLite integers are 64-bit: one out of `i32` range is corrupt.
    fn int32(&self, column: &str) -> Result<i32, StoreError> {
        i32::try_from(self.int(column)?).map_err(|e| corrupt(column, e))
    }

    fn time(&self, column: &str) -> Result<OffsetDateTime, StoreError> {
        from_micros(column, self.int(column)?)
    }

    fn opt_time(&self, column: &str) -> Result<Option<OffsetDateTime>, StoreError> {
        let us: Option<i64> = self.0.try_get(column).map_err(translate)?;
        us.map(|us| from_micros(column, us)).transpose()
    }

    fn uuid(&self, column: &str) -> Result<Uuid, StoreError> {
        parse_uuid(column, &self.text(column)?)
    }

    fn opt_uuid(&self, column: &str) -> Result<Option<Uuid>, StoreError> {
        self.opt_text(column)?.map(|raw| parse_uuid(column, &raw)).transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn times_are_floored_to_the_microsecond() {
        let t = datetime!(2026-05-01 0:00:00.123456789 UTC);
        assert_eq!(micros(t), 1_777_593_600_123_456);
        let before_epoch = datetime!(1969-12-31 23:59:59.9999995 UTC);
        assert_eq!(micros(before_epoch), -1);
        assert_eq!(
            from_micros("t", micros(t)).expect("in range"),
            datetime!(2026-05-01 0:00:00.123456 UTC)
        );
    }
}
