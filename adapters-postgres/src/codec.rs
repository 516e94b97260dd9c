//! How rows decode into domain values: ids are `uuid`, times `timestamptz` (microseconds,
//! read back in UTC), money and counts `bigint`, enums their `as_str()` text (checked by the
//! schema). A row that does not decode is corrupt data: [`StoreError::Other`].

use std::fmt::Display;
use std::str::FromStr;

use sqlx::Row;
use sqlx::postgres::{PgQueryResult, PgRow};
use time::OffsetDateTime;
use uuid::Uuid;

use ports::StoreError;

use crate::translate;

fn corrupt(column: &str, detail: impl Display) -> StoreError {
    StoreError::Other(format!("corrupt value in column `{column}`: {detail}"))
}

/// A non-null `bigint` column.
pub(crate) fn int(row: &PgRow, column: &str) -> Result<i64, StoreError> {
    row.try_get(column).map_err(translate)
}

/// A non-null `integer` column.
pub(crate) fn int4(row: &PgRow, column: &str) -> Result<i32, StoreError> {
    row.try_get(column).map_err(translate)
}

/// A non-null text column.
pub(crate) fn text(row: &PgRow, column: &str) -> Result<String, StoreError> {
    row.try_get(column).map_err(translate)
}

/// A nullable text column.
pub(crate) fn opt_text(row: &PgRow, column: &str) -> Result<Option<String>, StoreError> {
    row.try_get(column).map_err(translate)
}

/// A non-null `timestamptz` column.
pub(crate) fn time(row: &PgRow, column: &str) -> Result<OffsetDateTime, StoreError> {
    row.try_get(column).map_err(translate)
}

/// A nullable `timestamptz` column.
pub(crate) fn opt_time(row: &PgRow, column: &str) -> Result<Option<OffsetDateTime>, StoreError> {
    row.try_get(column).map_err(translate)
}

/// A non-null `uuid` column as a typed id.
pub(crate) fn id<T: From<Uuid>>(row: &PgRow, column: &str) -> Result<T, StoreError> {
    row.try_get::<Uuid, _>(column).map(T::from).map_err(translate)
}

/// A nullable `uuid` column as a typed id.
pub(crate) fn opt_id<T: From<Uuid>>(row: &PgRow, column: &str) -> Result<Option<T>, StoreError> {
    row.try_get::<Option<Uuid>, _>(column)
        .map(|id| id.map(T::from))
        .map_err(translate)
}

/// A non-null column holding an enum's (or other `FromStr` value's) text.
pub(crate) fn parsed<T>(row: &PgRow, column: &str) -> Result<T, StoreError>
where
    T: FromStr,
    T::Err: Display,
{
    text(row, column)?.parse().map_err(|e| corrupt(column, e))
}

/// A nullable column holding an enum's text.
pub(crate) fn opt_parsed<T>(row: &PgRow, column: &str) -> Result<Option<T>, StoreError>
where
    T: FromStr,
    T::Err: Display,
{
    opt_text(row, column)?
        .map(|raw| raw.parse().map_err(|e| corrupt(column, e)))
        .transpose()
}

/// The `limit` of a query: PostgreSQL refuses a negative limit; none means no rows.
pub(crate) fn limit(limit: i64) -> i64 {
    limit.max(0)
}

/// An update that matched no row: the caller updated something that does not exist.
pub(crate) fn require_row(result: &PgQueryResult, what: &str, id: impl Display) -> Result<(), StoreError> {
    if result.rows_affected() == 0 {
        Err(StoreError::Other(format!("no {what} {id} to update")))
    } else {
        Ok(())
    }
}

/// Whether a select locks the rows it returns: a unit of work locks rows it reads for change,
/// so two transactions cannot both act on the same state; the read ports never lock
/// (replicas could not).
///
/// The lock is `for no key update`, what an `update` of non-key columns takes anyway: it
/// excludes other writers of the row but not the `for key share` locks that foreign-key checks
/// take, so inserting an order for a member whose row another transaction holds neither waits
/// for it nor deadlocks with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Lock {
    None,
    ForUpdate,
}

/// One statement for both: `$sql` as is, or with ` for no key update` appended.
macro_rules! lockable {
    ($sql:literal, $lock:expr) => {
        match $lock {
            $crate::codec::Lock::None => $sql,
            $crate::codec::Lock::ForUpdate => concat!($sql, " for no key update"),
        }
    };
}
pub(crate) use lockable;
