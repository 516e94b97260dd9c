//! hexride's SQL store, written once for every database: the statements of each context
//! (`members`, `insurance`, `catalog`, `wallet`, `coupons`, `orders`, `idempotency`,
//! `events`, `tokens`) and the multi-step logic around them (the unit of work, orders with
//! their lines, token rotation with reuse detection, the outbox relay's claims, the inbox),
//! and the row mappers. [`SqlStore`] implements every store port over any [`Backend`].
//!
//! The statements and the logic know no driver; [`driver`] runs them over sqlx. A database
//! is a dialect crate that supplies what differs and nothing more:
//! - [`Dialect`]: its placeholders and lock clauses (the shared SQL is the common subset,
//!   with `?` placeholders and a `{lock}` marker);
//! - [`SqlxDialect`]: its sqlx driver, binding [`sql::Value`]s in its storage format and
//!   translating driver errors (unique, serialization, deadlock, connection lost);
//! - [`Columns`]: reading its rows back;
//! - [`Backend`]: pools, routing of reads, how a transaction begins, the commit token,
//!   relay wake-ups, health and migrations.
//!
//! A unit of work queues the writes whose results nobody reads and sends them with its next
//! statement ([`WorkConn`]); [`Dialect::batch`] says how several statements share a round
//! trip on each database.

use std::fmt::Display;
use std::str::FromStr;

use time::OffsetDateTime;
use uuid::Uuid;

use ports::StoreError;

pub mod backend;
mod batch;
pub mod catalog;
mod config;
pub mod coupons;
pub mod driver;
pub mod events;
pub mod idempotency;
pub mod insurance;
pub mod jobs;
pub mod licences;
pub mod members;
pub mod orders;
pub mod plans;
pub mod pool;
pub mod routing;
pub mod sql;
pub mod staff;
mod store;
pub mod tokens;
mod unit_of_work;
pub mod wallet;

pub use backend::{Backend, BackgroundTasks, ReadFuture, Transaction};
pub use batch::WorkConn;
pub use config::SqlConfig;
pub use driver::{SqlxConn, SqlxDialect, SqlxQuery, SqlxRow};
pub use pool::{Conns, Leased};
pub use sql::{Batch, Dialect, Lock, Outcome, Query, SqlConn, Statement, Value, Write};
pub use store::SqlStore;
pub use unit_of_work::SqlUnitOfWork;

/// One row, read column by column into Rust values. Each SQL adapter implements it over its
/// driver's row, decoding its own storage format (SQLite stores times as integer
/// microseconds and ids as text; PostgreSQL as `timestamptz` and `uuid`).
///
/// # Errors (every method)
/// MUST return [`StoreError::Other`] for a missing column, a `null` in a non-null read, or a
/// value that does not decode into the wanted type (corrupt data: see [`corrupt`]).
pub trait Columns {
    /// A non-null text column.
    fn text(&self, column: &str) -> Result<String, StoreError>;

    /// A nullable text column.
    fn opt_text(&self, column: &str) -> Result<Option<String>, StoreError>;

    /// A non-null 64-bit integer column: money, counts, versions.
    fn int(&self, column: &str) -> Result<i64, StoreError>;

    /// A non-null integer column the domain keeps as an `i32`.
    fn int32(&self, column: &str) -> Result<i32, StoreError>;

    /// A non-null time column, in UTC.
    fn time(&self, column: &str) -> Result<OffsetDateTime, StoreError>;

    /// A nullable time column, in UTC.
    fn opt_time(&self, column: &str) -> Result<Option<OffsetDateTime>, StoreError>;

    /// A non-null uuid column.
    fn uuid(&self, column: &str) -> Result<Uuid, StoreError>;

    /// A nullable uuid column.
    fn opt_uuid(&self, column: &str) -> Result<Option<Uuid>, StoreError>;

    /// A non-null uuid column as a typed id.
    fn id<T: From<Uuid>>(&self, column: &str) -> Result<T, StoreError> {
        self.uuid(column).map(T::from)
    }

    /// A nullable uuid column as a typed id.
    fn opt_id<T: From<Uuid>>(&self, column: &str) -> Result<Option<T>, StoreError> {
        Ok(self.opt_uuid(column)?.map(T::from))
    }

    /// A non-null column holding an enum's `as_str()` text (or another `FromStr` value's).
    fn parsed<T>(&self, column: &str) -> Result<T, StoreError>
    where
        T: FromStr,
        T::Err: Display,
    {
        self.text(column)?.parse().map_err(|e| corrupt(column, e))
    }

    /// A nullable column holding an enum's `as_str()` text.
    fn opt_parsed<T>(&self, column: &str) -> Result<Option<T>, StoreError>
    where
        T: FromStr,
        T::Err: Display,
    {
        self.opt_text(column)?
            .map(|raw| raw.parse().map_err(|e| corrupt(column, e)))
            .transpose()
    }
}

/// A stored value that does not decode: corrupt data, or a schema this code does not know.
pub fn corrupt(column: &str, detail: impl Display) -> StoreError {
    StoreError::other(format!("corrupt value in column `{column}`: {detail}"))
}

/// An update that matched no row (`rows_affected` is 0): the caller updated something that
/// does not exist, a bug rather than a race.
///
/// # Errors
/// [`StoreError::Other`] naming `what` and `id` when `rows_affected` is 0.
pub fn require_row(rows_affected: u64, what: &str, id: impl Display) -> Result<(), StoreError> {
    if rows_affected == 0 {
        Err(StoreError::other(format!("no {what} {id} to update")))
    } else {
        Ok(())
    }
}

/// A [`Columns`] over text values (integers and unix-second times written as text), for the
/// mappers' tests.
#[cfg(test)]
pub(crate) mod fake {
    use std::collections::HashMap;

    use time::OffsetDateTime;
    use uuid::Uuid;

    use ports::StoreError;

    use crate::{Columns, corrupt};

    #[derive(Debug, Clone, Default)]
    pub(crate) struct Row(HashMap<&'static str, Option<String>>);

    impl Row {
        pub(crate) fn with(mut self, column: &'static str, value: impl ToString) -> Self {
            self.0.insert(column, Some(value.to_string()));
            self
        }

        pub(crate) fn null(mut self, column: &'static str) -> Self {
            self.0.insert(column, None);
            self
        }

        fn read<T>(&self, column: &str, parse: impl FnOnce(&str) -> Option<T>) -> Result<Option<T>, StoreError> {
            let value = self
                .0
                .get(column)
                .ok_or_else(|| StoreError::other(format!("no column `{column}`")))?;
            value
                .as_deref()
                .map(|raw| parse(raw).ok_or_else(|| corrupt(column, raw)))
                .transpose()
        }
    }

    fn required<T>(column: &str, value: Option<T>) -> Result<T, StoreError> {
        value.ok_or_else(|| corrupt(column, "null"))
    }

    fn unix(raw: &str) -> Option<OffsetDateTime> {
        OffsetDateTime::from_unix_timestamp(raw.parse().ok()?).ok()
    }

    impl Columns for Row {
        fn text(&self, column: &str) -> Result<String, StoreError> {
            required(column, self.opt_text(column)?)
        }

        fn opt_text(&self, column: &str) -> Result<Option<String>, StoreError> {
            self.read(column, |raw| Some(raw.to_owned()))
        }

        fn int(&self, column: &str) -> Result<i64, StoreError> {
            required(column, self.read(column, |raw| raw.parse().ok())?)
        }

        fn int32(&self, column: &str) -> Result<i32, StoreError> {
            required(column, self.read(column, |raw| raw.parse().ok())?)
        }

        fn time(&self, column: &str) -> Result<OffsetDateTime, StoreError> {
            required(column, self.opt_time(column)?)
        }

        fn opt_time(&self, column: &str) -> Result<Option<OffsetDateTime>, StoreError> {
            self.read(column, unix)
        }

        fn uuid(&self, column: &str) -> Result<Uuid, StoreError> {
            required(column, self.opt_uuid(column)?)
        }

        fn opt_uuid(&self, column: &str) -> Result<Option<Uuid>, StoreError> {
            self.read(column, |raw| Uuid::parse_str(raw).ok())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fake::Row;

    #[test]
    fn an_unknown_enum_text_is_corrupt_data() {
        let row = Row::default().with("role", "emperor").null("status");
        let err = row.parsed::<core_domain::member::Role>("role").unwrap_err();
        assert!(
            matches!(&err, StoreError::Other(m) if m.starts_with("corrupt value in column `role`")),
            "{err:?}"
        );
        assert_eq!(
            row.opt_parsed::<core_domain::member::MemberStatus>("status").ok(),
            Some(None)
        );
    }

    #[test]
    fn an_update_of_nothing_is_an_error() {
        assert!(require_row(1, "member", 7).is_ok());
        assert!(matches!(require_row(0, "member", 7), Err(StoreError::Other(m)) if m == "no member 7 to update"));
    }
}
