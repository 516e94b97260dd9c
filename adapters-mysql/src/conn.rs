//! MySQL's and MariaDB's side of the shared statements: `?` placeholders, `for update` row
//! locks; ids are `binary(16)` (sqlx's encoding of a `Uuid`, chosen over `char(36)` for
//! index size, and over MariaDB's native `uuid` type, which sqlx cannot read), times
//! `datetime(6)` in UTC (the connection's time zone is `+00:00`), money and counts `bigint`,
//! enums their `as_str()` text. A row that does not decode is corrupt data:
//! [`StoreError::Other`].

use sqlx::mysql::MySqlRow;
use sqlx::{MySql, Row as _};
use time::OffsetDateTime;
use uuid::Uuid;

use ports::StoreError;
use sql_store::{Batch, Dialect, SqlxConn, SqlxDialect, SqlxQuery};

use crate::translate;

/// MySQL's and MariaDB's side of the shared statements, for [`SqlxConn`].
#[derive(Debug, Clone, Copy)]
pub struct MysqlDialect;

/// A pooled connection, in or out of a transaction.
pub type MysqlConn = SqlxConn<MysqlDialect>;

impl SqlxDialect for MysqlDialect {
    type Db = MySql;

    /// Every connection runs at `read committed` (set when it connects: `start transaction`
    /// cannot name an isolation level on MariaDB), as on PostgreSQL: a row read `for update`
    /// is its latest committed version, and plain reads in a unit of work see other
    /// transactions' commits.
    const DIALECT: Dialect = Dialect {
        name: "mysql",
        numbered_placeholders: false,
        begin: "start transaction",
        for_update: "for update",
        skip_locked: "for update skip locked",
        skip_duplicate: "",
        keep_existing: "on duplicate key update updated_at = updated_at",
        bigint: "signed",
        update_returning: false,
        batch: Batch::OneByOne,
        row_guard: "",
        member_trigrams: true,
    };

    fn bind_uuid<'q>(query: SqlxQuery<'q, MySql>, value: Option<Uuid>) -> SqlxQuery<'q, MySql> {
        query.bind(value)
    }

    /// In UTC, as a `DATETIME`: the columns have no time zone, and sqlx would send an
    /// `OffsetDateTime` as a `TIMESTAMP`, which MariaDB turns into `NULL` after 2038-01-19
    /// (a licence's expiry can be later).
    fn bind_time<'q>(query: SqlxQuery<'q, MySql>, value: Option<OffsetDateTime>) -> SqlxQuery<'q, MySql> {
        query.bind(value.map(|t| {
            let utc = t.to_offset(time::UtcOffset::UTC);
            time::PrimitiveDateTime::new(utc.date(), utc.time())
        }))
    }

    fn uuid(row: &MySqlRow, column: &str) -> Result<Option<Uuid>, StoreError> {
        row.try_get(column).map_err(translate)
    }

    /// A `datetime(6)` column, read as UTC.
    fn time(row: &MySqlRow, column: &str) -> Result<Option<OffsetDateTime>, StoreError> {
        row.try_get(column).map_err(translate)
    }

    /// An `int` column.
    fn int32(row: &MySqlRow, column: &str) -> Result<i32, StoreError> {
        row.try_get(column).map_err(translate)
    }

    fn translate(error: sqlx::Error) -> StoreError {
        translate(error)
    }

    fn rows_affected(result: &sqlx::mysql::MySqlQueryResult) -> u64 {
        result.rows_affected()
    }
}
