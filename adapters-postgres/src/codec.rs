//! How rows decode into domain values: ids are `uuid`, times `timestamptz` (microseconds,
//! read back in UTC), money and counts `bigint`, enums their `as_str()` text (checked by the
//! schema). Rows are read through [`Row`] by the shared mappers of [`sql_rows`]; a row that
//! does not decode is corrupt data: [`StoreError::Other`].

use sqlx::Postgres;
use sqlx::Row as _;
use sqlx::postgres::{PgArguments, PgRow};
use time::OffsetDateTime;
use uuid::Uuid;

use ports::StoreError;
use sql_rows::Columns;

use crate::translate;

/// A PostgreSQL row as the shared mappers of [`sql_rows`] read it.
pub(crate) struct Row<'r>(pub(crate) &'r PgRow);

impl Columns for Row<'_> {
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

/// A statement being bound, for the helpers that bind the columns two statements share.
pub(crate) type Query<'q> = sqlx::query::Query<'q, Postgres, PgArguments>;

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
