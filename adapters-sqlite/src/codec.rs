//! How domain values are stored: times as INTEGER unix microseconds (so comparisons and
//! `order by` are numeric), ids as hyphenated uuid TEXT, enums as their `as_str()` text.
//! A row that does not decode is corrupt data: [`StoreError::Other`].

use std::fmt::Display;
use std::str::FromStr;
use std::time::Duration;

use sqlx::Row;
use sqlx::sqlite::SqliteRow;
use time::OffsetDateTime;
use uuid::Uuid;

use ports::StoreError;

use crate::translate;

/// Unix microseconds of `t`, truncated (floored) to the microsecond.
pub(crate) fn micros(t: OffsetDateTime) -> i64 {
    // ±9999 years in microseconds is far inside i64.
    i64::try_from(t.unix_timestamp_nanos().div_euclid(1_000)).unwrap_or(i64::MAX)
}

/// A duration in microseconds, saturating.
pub(crate) fn duration_micros(d: Duration) -> i64 {
    i64::try_from(d.as_micros()).unwrap_or(i64::MAX)
}

/// The system time, for bookkeeping columns (`updated_at`, `sent_at`, leases).
pub(crate) fn now_micros() -> i64 {
    micros(OffsetDateTime::now_utc())
}

fn corrupt(column: &str, detail: impl Display) -> StoreError {
    StoreError::Other(format!("corrupt value in column `{column}`: {detail}"))
}

fn from_micros(column: &str, us: i64) -> Result<OffsetDateTime, StoreError> {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(us) * 1_000).map_err(|e| corrupt(column, e))
}

/// A non-null integer column.
pub(crate) fn int(row: &SqliteRow, column: &str) -> Result<i64, StoreError> {
    row.try_get(column).map_err(translate)
}

/// A non-null text column.
pub(crate) fn text(row: &SqliteRow, column: &str) -> Result<String, StoreError> {
    row.try_get(column).map_err(translate)
}

/// A nullable text column.
pub(crate) fn opt_text(row: &SqliteRow, column: &str) -> Result<Option<String>, StoreError> {
    row.try_get(column).map_err(translate)
}

/// A non-null time column.
pub(crate) fn time(row: &SqliteRow, column: &str) -> Result<OffsetDateTime, StoreError> {
    from_micros(column, int(row, column)?)
}

/// A nullable time column.
pub(crate) fn opt_time(row: &SqliteRow, column: &str) -> Result<Option<OffsetDateTime>, StoreError> {
    let us: Option<i64> = row.try_get(column).map_err(translate)?;
    us.map(|us| from_micros(column, us)).transpose()
}

/// A non-null uuid column as a typed id.
pub(crate) fn id<T: From<Uuid>>(row: &SqliteRow, column: &str) -> Result<T, StoreError> {
    let raw = text(row, column)?;
    Uuid::parse_str(&raw).map(T::from).map_err(|e| corrupt(column, e))
}

/// A nullable uuid column as a typed id.
pub(crate) fn opt_id<T: From<Uuid>>(row: &SqliteRow, column: &str) -> Result<Option<T>, StoreError> {
    opt_text(row, column)?
        .map(|raw| Uuid::parse_str(&raw).map(T::from).map_err(|e| corrupt(column, e)))
        .transpose()
}

/// A non-null column holding an enum's (or other `FromStr` value's) text.
pub(crate) fn parsed<T>(row: &SqliteRow, column: &str) -> Result<T, StoreError>
where
    T: FromStr,
    T::Err: Display,
{
    text(row, column)?.parse().map_err(|e| corrupt(column, e))
}

/// A nullable column holding an enum's text.
pub(crate) fn opt_parsed<T>(row: &SqliteRow, column: &str) -> Result<Option<T>, StoreError>
where
    T: FromStr,
    T::Err: Display,
{
    opt_text(row, column)?
        .map(|raw| raw.parse().map_err(|e| corrupt(column, e)))
        .transpose()
}

/// The `limit` of a query: SQLite reads a negative limit as "no limit".
pub(crate) fn limit(limit: i64) -> i64 {
    limit.max(0)
}

/// A JSON array of ids, bound as one parameter and read with `json_each` (an `in` list
/// without building SQL text).
pub(crate) fn json_ids<T: Display>(ids: &[T]) -> Result<String, StoreError> {
    let ids: Vec<String> = ids.iter().map(ToString::to_string).collect();
    serde_json::to_string(&ids).map_err(|e| StoreError::Other(e.to_string()))
}

/// An update that matched no row: the caller updated something that does not exist.
pub(crate) fn require_row(
    result: &sqlx::sqlite::SqliteQueryResult,
    what: &str,
    id: impl Display,
) -> Result<(), StoreError> {
    if result.rows_affected() == 0 {
        Err(StoreError::Other(format!("no {what} {id} to update")))
    } else {
        Ok(())
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
