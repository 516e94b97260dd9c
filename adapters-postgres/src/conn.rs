//! PostgreSQL's side of the shared statements: `$n` placeholders, `for no key update` row
//! locks; ids are `uuid`, times `timestamptz` (microseconds, read back in UTC), money and
//! counts `bigint`, enums their `as_str()` text (checked by the schema). A row that does not
//! decode is corrupt data: [`StoreError::Other`].

use sqlx::postgres::PgRow;
use sqlx::{Postgres, Row as _};
use time::OffsetDateTime;
use uuid::Uuid;

use ports::StoreError;
use sql_store::{Batch, Dialect, SqlxConn, SqlxDialect, SqlxQuery};

use crate::translate;

/// PostgreSQL's side of the shared statements, for [`SqlxConn`].
#[derive(Debug, Clone, Copy)]
pub struct PgDialect;

/// A pooled connection, in or out of a transaction.
pub type PgConn = SqlxConn<PgDialect>;

impl SqlxDialect for PgDialect {
    type Db = Postgres;

    /// PostgreSQL's dialect. The row lock is `for no key update`, what an `update` of non-key
    /// columns takes anyway: it excludes other writers of the row but not the `for key share`
    /// locks that foreign-key checks take, so inserting an order for a member whose row another
    /// transaction holds neither waits for it nor deadlocks with it.
    const DIALECT: Dialect = Dialect {
        name: "postgres",
        numbered_placeholders: true,
        begin: "begin isolation level read committed",
        for_update: "for no key update",
        skip_locked: "for no key update skip locked",
        skip_duplicate: "on conflict do nothing",
        keep_existing: "on conflict do nothing",
        bigint: "bigint",
        update_returning: true,
        batch: Batch::WriteCtes,
        row_guard: "",
        member_trigrams: false,
    };

    fn bind_uuid<'q>(query: SqlxQuery<'q, Postgres>, value: Option<Uuid>) -> SqlxQuery<'q, Postgres> {
        query.bind(value)
    }

    fn bind_time<'q>(query: SqlxQuery<'q, Postgres>, value: Option<OffsetDateTime>) -> SqlxQuery<'q, Postgres> {
        query.bind(value)
    }

    fn uuid(row: &PgRow, column: &str) -> Result<Option<Uuid>, StoreError> {
        row.try_get(column).map_err(translate)
    }

    /// A `timestamptz` column.
    fn time(row: &PgRow, column: &str) -> Result<Option<OffsetDateTime>, StoreError> {
        row.try_get(column).map_err(translate)
    }

    /// An `integer` column.
    fn int32(row: &PgRow, column: &str) -> Result<i32, StoreError> {
        row.try_get(column).map_err(translate)
    }

    fn translate(error: sqlx::Error) -> StoreError {
        translate(error)
    }

    fn rows_affected(result: &sqlx::postgres::PgQueryResult) -> u64 {
        result.rows_affected()
    }
}
