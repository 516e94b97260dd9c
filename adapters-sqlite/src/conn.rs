//! SQLite's side of the shared statements: placeholders are `?` and there are no row locks
//! (the single writer holds the database lock for a whole transaction); times are stored as
//! INTEGER unix microseconds (so comparisons and `order by` are numeric), ids as hyphenated
//! uuid TEXT, enums as their `as_str()` text. A value that does not decode is corrupt data:
//! [`StoreError::Other`].

use sqlx::sqlite::SqliteRow;
use sqlx::{Row as _, Sqlite};
use time::OffsetDateTime;
use uuid::Uuid;

use ports::StoreError;
use sql_store::{Batch, Dialect, SqlxConn, SqlxDialect, SqlxQuery, corrupt};

use crate::translate;

/// Unix microseconds of `t`, truncated (floored) to the microsecond.
pub(crate) fn micros(t: OffsetDateTime) -> i64 {
    // ±9999 years in microseconds is far inside i64.
    i64::try_from(t.unix_timestamp_nanos().div_euclid(1_000)).unwrap_or(i64::MAX)
}

fn from_micros(column: &str, us: i64) -> Result<OffsetDateTime, StoreError> {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(us) * 1_000).map_err(|e| corrupt(column, e))
}

/// The statement that fails a script when the one before it changed no row (see
/// [`Dialect::row_guard`]): inserting `changes()` into the writer's temporary view
/// `must_change` ([`ROW_GUARD_SCHEMA`]), whose trigger raises for a 0.
const ROW_GUARD: &str = "insert into temp.must_change (changed) values (changes())";

/// Created on the writer connection when it opens (temporary objects live as long as it).
pub(crate) const ROW_GUARD_SCHEMA: &str = "\
    create temp view if not exists must_change as select 0 as changed;
    create temp trigger if not exists must_change_guard instead of insert on must_change
    when new.changed = 0 begin select raise(abort, 'a queued write changed no row'); end";

/// SQLite's side of the shared statements, for [`SqlxConn`].
#[derive(Debug, Clone, Copy)]
pub struct SqliteDialect;

/// A pooled connection, in or out of a transaction.
pub type SqliteConn = SqlxConn<SqliteDialect>;

impl SqlxDialect for SqliteDialect {
    type Db = Sqlite;

    /// `?` placeholders and no row locks: `begin immediate` gives a transaction the whole
    /// database.
    const DIALECT: Dialect = Dialect {
        name: "sqlite",
        numbered_placeholders: false,
        // Takes the write lock at `begin`, not at the first write: a transaction that reads
        // then writes can then never fail to upgrade its lock (another process may hold the
        // file).
        begin: "begin immediate",
        for_update: "",
        skip_locked: "",
        skip_duplicate: "on conflict do nothing",
        keep_existing: "on conflict do nothing",
        bigint: "bigint",
        update_returning: true,
        batch: Batch::Script,
        row_guard: ROW_GUARD,
        member_trigrams: false,
    };

    fn bind_uuid<'q>(query: SqlxQuery<'q, Sqlite>, value: Option<Uuid>) -> SqlxQuery<'q, Sqlite> {
        query.bind(value.map(|id| id.hyphenated().to_string()))
    }

    fn bind_time<'q>(query: SqlxQuery<'q, Sqlite>, value: Option<OffsetDateTime>) -> SqlxQuery<'q, Sqlite> {
        query.bind(value.map(micros))
    }

    fn uuid(row: &SqliteRow, column: &str) -> Result<Option<Uuid>, StoreError> {
        let raw: Option<String> = row.try_get(column).map_err(translate)?;
        raw.map(|raw| Uuid::parse_str(&raw).map_err(|e| corrupt(column, e)))
            .transpose()
    }

    fn time(row: &SqliteRow, column: &str) -> Result<Option<OffsetDateTime>, StoreError> {
        let us: Option<i64> = row.try_get(column).map_err(translate)?;
        us.map(|us| from_micros(column, us)).transpose()
    }

    /// SQLite integers are 64-bit: one out of `i32` range is corrupt.
    fn int32(row: &SqliteRow, column: &str) -> Result<i32, StoreError> {
        let value: i64 = row.try_get(column).map_err(translate)?;
        i32::try_from(value).map_err(|e| corrupt(column, e))
    }

    fn translate(error: sqlx::Error) -> StoreError {
        translate(error)
    }

    fn rows_affected(result: &sqlx::sqlite::SqliteQueryResult) -> u64 {
        result.rows_affected()
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
