//! How domain values are stored: times as INTEGER unix microseconds (so comparisons and
//! `order by` are numeric), ids as hyphenated uuid TEXT, enums as their `as_str()` text.
//! Rows are read through [`Row`], which decodes that format for the shared mappers of
//! [`sql_rows`]; a row that does not decode is corrupt data: [`StoreError::Other`].

use std::fmt::Display;
use std::time::Duration;

use sqlx::Row as _;
use sqlx::Sqlite;
use sqlx::sqlite::{SqliteArguments, SqliteRow};
use time::OffsetDateTime;
use uuid::Uuid;

use ports::StoreError;
use sql_rows::{Columns, corrupt};

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

fn from_micros(column: &str, us: i64) -> Result<OffsetDateTime, StoreError> {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(us) * 1_000).map_err(|e| corrupt(column, e))
}

fn parse_uuid(column: &str, raw: &str) -> Result<Uuid, StoreError> {
    Uuid::parse_str(raw).map_err(|e| corrupt(column, e))
}

/// A SQLite row as the shared mappers of [`sql_rows`] read it.
pub(crate) struct Row<'r>(pub(crate) &'r SqliteRow);

impl Columns for Row<'_> {
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

/// A statement being bound, for the helpers that bind the columns two statements share.
pub(crate) type Query<'q> = sqlx::query::Query<'q, Sqlite, SqliteArguments>;

/// A JSON array of ids, bound as one parameter and read with `json_each` (an `in` list
/// without building SQL text).
pub(crate) fn json_ids<T: Display>(ids: &[T]) -> Result<String, StoreError> {
    let ids: Vec<String> = ids.iter().map(ToString::to_string).collect();
    serde_json::to_string(&ids).map_err(|e| StoreError::Other(e.to_string()))
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
