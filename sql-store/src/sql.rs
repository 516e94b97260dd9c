//! Statements written once for every dialect, and the one trait a dialect implements to run
//! them. The shared SQL is the common subset of SQLite, PostgreSQL and MySQL, with `?`
//! placeholders and a few markers (`{lock}` where a row lock goes, `{skip_duplicate}` and
//! `{keep_existing}` at the end of an insert that may meet a duplicate key, `{bigint}` in
//! casts); a [`Dialect`] says
//! what its placeholders and
//! markers become, and [`SqlConn`] binds [`Value`]s in its own
//! storage format (SQLite: ids as text, times as integer microseconds; PostgreSQL: `uuid`,
//! `timestamptz`). A reader sees the SQL a use case runs in the shared modules, as it is
//! sent, but for those substitutions.

use std::borrow::Cow;
use std::fmt::Write as _;

use async_trait::async_trait;
use time::OffsetDateTime;
use uuid::Uuid;

use ports::{StoreError, TimeKey};

use crate::Columns;

/// A time after every row's: where a newest-first page with no key starts.
const END_OF_TIME: OffsetDateTime = time::macros::datetime!(9999-01-01 0:00 UTC);

/// What differs in the text of a statement between databases. Everything else is written
/// once in the shared statements.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dialect {
    /// For messages and metrics: `sqlite`, `postgres`, `mysql`.
    pub name: &'static str,
    /// `$1, $2, …` (PostgreSQL) instead of `?` (SQLite, MySQL).
    pub numbered_placeholders: bool,
    /// The statement that begins a unit of work's transaction (its isolation, its locks).
    pub begin: &'static str,
    /// What `{lock}` becomes for [`Lock::ForUpdate`]: the lock a row read for change takes.
    pub for_update: &'static str,
    /// What `{lock}` becomes for [`Lock::SkipLocked`]: the same, skipping rows other
    /// transactions hold (batch jobs, the outbox relay).
    pub skip_locked: &'static str,
    /// What `{skip_duplicate}` at the end of an insert becomes: the clause that makes a
    /// duplicate of a unique key insert nothing (`on conflict do nothing`). Empty where the
    /// database has none that leaves errors alone (MySQL's `insert ignore` also downgrades
    /// truncation to warnings): there the insert fails with a duplicate key, which fails only
    /// that statement, and [`Statement::insert_unless_duplicate`] reads it as "nothing".
    pub skip_duplicate: &'static str,
    /// What `{keep_existing}` at the end of an insert becomes: a duplicate keeps the row
    /// that is there, and the insert succeeds, changing nothing (`on conflict do nothing`;
    /// MySQL: `on duplicate key update updated_at = updated_at`, which locks the existing
    /// row for update rather than sharing it, so concurrent inserts that then update it
    /// cannot deadlock). For tables with `updated_at`, where nobody needs to know whether the
    /// row was new.
    pub keep_existing: &'static str,
    /// What `{bigint}` becomes, the type a `cast` to a 64-bit integer names (`bigint`;
    /// MySQL's `signed`): aggregates such as `sum` over `bigint` are `numeric` or `decimal`
    /// otherwise, which no integer reads.
    pub bigint: &'static str,
    /// Whether an `update` can return the rows it changed (`update … returning`: PostgreSQL,
    /// SQLite). Where it cannot (MySQL, MariaDB), [`Statement::update_returning`] reads the
    /// row back with a second statement.
    pub update_returning: bool,
    /// How several statements of a transaction can share one round trip (see [`Batch`]).
    pub batch: Batch,
    /// In a [`Batch::Script`], a statement that fails the script when the statement before
    /// it changed no row, so a queued write that must change a row can go in one script with
    /// the `commit` (SQLite: an insert into a temporary view whose trigger raises). Empty
    /// where there is none: the queue is then sent before the `commit`.
    pub row_guard: &'static str,
    /// Whether the staff search for text anywhere finds its candidates in `member_trigrams`,
    /// a table of the three-character substrings of each member's lower-cased e-mail, name
    /// and phone that the store rewrites with the member (MariaDB, which has no index for
    /// `like '%text%'`). Elsewhere the search is the `like` alone: PostgreSQL answers it from
    /// its `pg_trgm` indexes, SQLite (embedded, small) scans.
    pub member_trigrams: bool,
}

/// How writes whose results nobody reads yet (queued with [`Statement::defer`] in a unit of
/// work) go to the database together.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Batch {
    /// One statement per round trip (MySQL: a prepared statement is one statement).
    OneByOne,
    /// Statements joined by `;` in one message, run in order, `?` arguments bound across them
    /// (SQLite through sqlx). The queued writes go in front of the next statement, `begin`
    /// included, and in front of the `commit`.
    Script,
    /// Data-modifying common table expressions: the queued writes become one statement,
    /// `with w1 as (… returning 1), … select count(*) …`, sent before the next statement
    /// (PostgreSQL). The writes of one such statement share a snapshot and do not see each
    /// other's rows, so a write to a table already written in it, other than another
    /// insert, starts the next one.
    WriteCtes,
}

/// Whether a `select` locks the rows it returns (`{lock}` in its text). A unit of work locks
/// the rows it reads for change, so two transactions cannot both act on the same state; the
/// read ports never lock (replicas could not).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Lock {
    /// `{lock}` is left out.
    #[default]
    None,
    /// The dialect's [`Dialect::for_update`].
    ForUpdate,
    /// The dialect's [`Dialect::skip_locked`].
    SkipLocked,
}

/// A value bound to a placeholder. The dialect decides how each kind is stored.
#[derive(Debug, Clone, PartialEq)]
pub enum Value<'a> {
    Int(Option<i64>),
    Text(Option<Cow<'a, str>>),
    Uuid(Option<Uuid>),
    Time(Option<OffsetDateTime>),
    Bool(bool),
}

impl Value<'_> {
    /// The same value, owning its text.
    pub fn into_owned(self) -> Value<'static> {
        match self {
            Value::Int(v) => Value::Int(v),
            Value::Text(v) => Value::Text(v.map(|text| Cow::Owned(text.into_owned()))),
            Value::Uuid(v) => Value::Uuid(v),
            Value::Time(v) => Value::Time(v),
            Value::Bool(v) => Value::Bool(v),
        }
    }
}

/// One placeholder's argument: a value, or a list that an `in (?)` expands into.
#[derive(Debug, Clone, PartialEq)]
enum Arg<'a> {
    One(Value<'a>),
    List(Vec<Value<'a>>),
}

/// A statement of the shared SQL with its arguments, in placeholder order.
#[derive(Debug, Clone, PartialEq)]
#[must_use = "a statement does nothing until it is executed or fetched"]
pub struct Statement<'a> {
    sql: &'static str,
    args: Vec<Arg<'a>>,
    lock: Lock,
    /// Columns an `update` returns (` returning …` appended when rendered).
    returning: Option<&'static str>,
}

/// A statement as one dialect sends it: its text, and its values in placeholder order.
#[derive(Debug, Clone, PartialEq)]
pub struct Query<'a> {
    pub sql: String,
    pub values: Vec<Value<'a>>,
}

/// `Statement::new(sql)`: the start of every statement in the shared modules.
pub fn sql<'a>(sql: &'static str) -> Statement<'a> {
    Statement::new(sql)
}

impl<'a> Statement<'a> {
    /// A statement with `?` placeholders and, where rows may be locked, a `{lock}` marker.
    pub fn new(sql: &'static str) -> Self {
        Self {
            sql,
            args: Vec::new(),
            lock: Lock::None,
            returning: None,
        }
    }

    fn arg(mut self, value: Value<'a>) -> Self {
        self.args.push(Arg::One(value));
        self
    }

    /// Binds a 64-bit integer (money, counts, versions, limits).
    pub fn int(self, value: i64) -> Self {
        self.arg(Value::Int(Some(value)))
    }

    /// Binds text.
    pub fn text(self, value: &'a str) -> Self {
        self.arg(Value::Text(Some(Cow::Borrowed(value))))
    }

    /// Binds nullable text.
    pub fn opt_text(self, value: Option<&'a str>) -> Self {
        self.arg(Value::Text(value.map(Cow::Borrowed)))
    }

    /// Binds an id.
    pub fn id(self, value: impl Into<Uuid>) -> Self {
        self.arg(Value::Uuid(Some(value.into())))
    }

    /// Binds a nullable id.
    pub fn opt_id(self, value: Option<impl Into<Uuid>>) -> Self {
        self.arg(Value::Uuid(value.map(Into::into)))
    }

    /// Binds the id a keyset page starts after: the nil id, which sorts before every id,
    /// when it starts from the beginning.
    pub fn after_id(self, after: Option<impl Into<Uuid>>) -> Self {
        self.id(after.map_or(Uuid::nil(), Into::into))
    }

    /// Binds where a newest-first keyset page starts, for `(t < ? or (t = ? and id < ?))`:
    /// the previous page's last key, or on the first page a time after every row's.
    pub fn before_id_key<I: Into<Uuid> + Copy>(self, key: Option<&TimeKey<I>>) -> Self {
        let (at, tie) = key.map_or((END_OF_TIME, Uuid::nil()), |k| (k.at, k.tie.into()));
        self.time(at).time(at).id(tie)
    }

    /// [`Self::before_id_key`] for a key whose tie-breaker is an insertion sequence.
    pub fn before_seq_key(self, key: Option<&TimeKey<i64>>) -> Self {
        let (at, tie) = key.map_or((END_OF_TIME, 0), |k| (k.at, k.tie));
        self.time(at).time(at).int(tie)
    }

    /// Binds a time.
    pub fn time(self, value: OffsetDateTime) -> Self {
        self.arg(Value::Time(Some(value)))
    }

    /// Binds a nullable time.
    pub fn opt_time(self, value: Option<OffsetDateTime>) -> Self {
        self.arg(Value::Time(value))
    }

    /// Binds a boolean.
    pub fn bool(self, value: bool) -> Self {
        self.arg(Value::Bool(value))
    }

    /// Binds a port's `limit`: a negative one means no rows (SQLite would read it as "no
    /// limit", PostgreSQL would refuse it).
    pub fn limit(self, limit: i64) -> Self {
        self.int(limit.max(0))
    }

    /// Binds a list of ids to the `?` of an `in (?)`, which becomes one placeholder per id.
    /// The list must not be empty (`in ()` is not SQL): callers return early instead.
    pub fn ids<T: Into<Uuid> + Copy>(mut self, ids: &[T]) -> Self {
        self.args
            .push(Arg::List(ids.iter().map(|&id| Value::Uuid(Some(id.into()))).collect()));
        self
    }

    /// Binds a list of texts to the `?` of an `in (?)`, like [`Self::ids`]; not empty either.
    pub fn texts(mut self, values: &'a [String]) -> Self {
        self.args.push(Arg::List(
            values
                .iter()
                .map(|v| Value::Text(Some(Cow::Borrowed(v.as_str()))))
                .collect(),
        ));
        self
    }

    /// Sets what the `{lock}` marker becomes.
    pub fn lock(mut self, lock: Lock) -> Self {
        self.lock = lock;
        self
    }

    /// The statement as `dialect` sends it.
    ///
    /// # Errors
    /// [`StoreError::Other`] when the placeholders and the arguments do not match in number
    /// (a bug in the shared SQL, caught by every test that runs the statement).
    pub fn render(&self, dialect: &Dialect) -> Result<Query<'a>, StoreError> {
        let mut query = Query {
            sql: String::with_capacity(self.sql.len() + 32),
            values: Vec::with_capacity(self.args.len()),
        };
        self.render_onto(dialect, &mut query)?;
        Ok(query)
    }

    /// Appends the statement as `dialect` sends it to `query`: its text to the text, its
    /// values after the values already there (numbered placeholders go on from theirs), so
    /// several statements can make one query.
    ///
    /// # Errors
    /// As [`render`](Self::render).
    pub fn render_onto(&self, dialect: &Dialect, query: &mut Query<'a>) -> Result<(), StoreError> {
        let lock = match self.lock {
            Lock::None => "",
            Lock::ForUpdate => dialect.for_update,
            Lock::SkipLocked => dialect.skip_locked,
        };
        let Query { sql, values } = query;
        let mut args = self.args.iter();
        let mut rest = self.sql;
        while let Some(at) = rest.find(['?', '{']) {
            sql.push_str(&rest[..at]);
            if rest[at..].starts_with('?') {
                let arg = args.next().ok_or_else(|| self.mismatch())?;
                let items: &[Value<'a>] = match arg {
                    Arg::One(value) => std::slice::from_ref(value),
                    Arg::List(list) => list,
                };
                for (n, value) in items.iter().enumerate() {
                    if n > 0 {
                        sql.push_str(", ");
                    }
                    values.push(value.clone());
                    if dialect.numbered_placeholders {
                        let _ = write!(sql, "${}", values.len());
                    } else {
                        sql.push('?');
                    }
                }
                rest = &rest[at + 1..];
            } else if let Some(after) = rest[at..].strip_prefix("{lock}") {
                sql.push_str(lock);
                rest = after;
            } else if let Some(after) = rest[at..].strip_prefix("{bigint}") {
                sql.push_str(dialect.bigint);
                rest = after;
            } else if let Some(after) = rest[at..].strip_prefix("{keep_existing}") {
                sql.push_str(dialect.keep_existing);
                rest = after;
            } else if let Some(after) = rest[at..].strip_prefix("{skip_duplicate}") {
                sql.push_str(dialect.skip_duplicate);
                rest = after;
            } else {
                sql.push('{');
                rest = &rest[at + 1..];
            }
        }
        sql.push_str(rest);
        if let Some(columns) = self.returning {
            sql.push_str(" returning ");
            sql.push_str(columns);
        }
        if args.next().is_some() {
            return Err(self.mismatch());
        }
        Ok(())
    }

    /// The statement's text as written in the shared SQL, before rendering.
    pub fn text_as_written(&self) -> &'static str {
        self.sql
    }

    /// The same statement, owning its text arguments (to be kept past the borrow).
    pub fn into_owned(self) -> Statement<'static> {
        Statement {
            sql: self.sql,
            args: self
                .args
                .into_iter()
                .map(|arg| match arg {
                    Arg::One(value) => Arg::One(value.into_owned()),
                    Arg::List(list) => Arg::List(list.into_iter().map(Value::into_owned).collect()),
                })
                .collect(),
            lock: self.lock,
            returning: self.returning,
        }
    }

    fn mismatch(&self) -> StoreError {
        StoreError::other(format!(
            "statement and arguments do not match ({} arguments): {}",
            self.args.len(),
            self.sql
        ))
    }

    /// Runs the statement; the number of rows it changed.
    ///
    /// # Errors
    /// The port errors the dialect translated the driver's error into.
    pub async fn execute<C: SqlConn + ?Sized>(self, conn: &mut C) -> Result<u64, StoreError> {
        let query = self.render(conn.dialect())?;
        conn.execute(query).await
    }

    /// Runs a write whose only result is whether it changed a row: at once, or, in a unit of
    /// work, together with the unit's next statement (at the latest its commit), so that
    /// several writes share a round trip ([`Batch`]). Its error, a uniqueness conflict
    /// included, then surfaces from that statement, which fails the unit of work the same
    /// way. `must_change` names what it updates when changing no row is an error (see
    /// [`require_row`](crate::require_row)).
    ///
    /// # Errors
    /// As [`Statement::execute`], and [`StoreError::Other`] when `must_change` is set and
    /// no row changed: here or from the statement it went with.
    pub async fn defer<C: SqlConn + ?Sized>(self, conn: &mut C, must_change: Option<String>) -> Result<(), StoreError> {
        conn.defer(Write {
            statement: self.into_owned(),
            must_change,
        })
        .await
    }

    /// Runs an insert that ends in `{skip_duplicate}`: `true` when it inserted its row,
    /// `false` when a row with the same unique key was there (then nothing changed, and the
    /// transaction goes on).
    ///
    /// # Errors
    /// As [`Statement::execute`], except the duplicate.
    pub async fn insert_unless_duplicate<C: SqlConn + ?Sized>(self, conn: &mut C) -> Result<bool, StoreError> {
        let dialect = conn.dialect();
        let query = self.render(dialect)?;
        match conn.execute(query).await {
            Ok(inserted) => Ok(inserted > 0),
            Err(StoreError::Conflict(_)) if dialect.skip_duplicate.is_empty() => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Runs an insert that ends in `{skip_duplicate}`, as
    /// [`insert_unless_duplicate`](Self::insert_unless_duplicate), and then `read`, a
    /// `select` of at most one row that does not depend on the insert, mapped: in one round
    /// trip where the dialect can. PostgreSQL: one statement, `with w as (insert … returning
    /// 1), r as (read) select …`, which runs the insert before the read (the read cannot see
    /// the row, which is why it must not depend on it); SQLite: one script; MySQL: one after
    /// the other.
    ///
    /// # Errors
    /// As [`insert_unless_duplicate`](Self::insert_unless_duplicate) and
    /// [`fetch_optional`](Self::fetch_optional).
    pub async fn insert_unless_duplicate_then<C, T>(
        self,
        conn: &mut C,
        read: Statement<'a>,
        map: impl Fn(&C::Row) -> Result<T, StoreError> + Send,
    ) -> Result<(bool, Option<T>), StoreError>
    where
        C: SqlConn + ?Sized,
    {
        let dialect = conn.dialect();
        match dialect.batch {
            Batch::OneByOne => {
                let inserted = self.insert_unless_duplicate(&mut *conn).await?;
                Ok((inserted, read.fetch_optional(conn, map).await?))
            }
            Batch::Script => {
                let mut query = self.render(dialect)?;
                query.sql.push_str(";\n");
                read.render_onto(dialect, &mut query)?;
                match &conn.script(query).await?[..] {
                    [insert, read] => Ok((insert.changed > 0, read.rows.first().map(map).transpose()?)),
                    other => Err(StoreError::other(format!(
                        "an insert and a read in one script gave {} results",
                        other.len()
                    ))),
                }
            }
            Batch::WriteCtes => {
                // The left join's outer side, the insert's count, runs first; the read's row
                // comes beside it, or nulls (then `read_rows` is 0).
                let mut query = Query {
                    sql: String::from("with w as ("),
                    values: Vec::new(),
                };
                self.render_onto(dialect, &mut query)?;
                query.sql.push_str(" returning 1), r as (");
                read.render_onto(dialect, &mut query)?;
                query.sql.push_str(
                    ") select i.inserted_rows, (select count(*) from r) as read_rows, r.* \
                     from (select count(*) as inserted_rows from w) as i left join r on true",
                );
                let row = conn.fetch_optional(query).await?.ok_or_else(|| {
                    StoreError::other("an insert and a read in one statement returned no row".to_owned())
                })?;
                let found = row.int("read_rows")? > 0;
                Ok((row.int("inserted_rows")? > 0, found.then(|| map(&row)).transpose()?))
            }
        }
    }

    /// Runs an `update` that changes at most one row and maps that row as it is after the
    /// update: one statement, `update … returning columns`, where the dialect has it;
    /// elsewhere the update, then `read_back` (which must select `columns` of the same row),
    /// in the same transaction, which holds the row's lock since the update. `None` when the
    /// update changed nothing.
    ///
    /// # Errors
    /// As [`fetch_optional`](Self::fetch_optional).
    pub async fn update_returning<C, T>(
        mut self,
        conn: &mut C,
        columns: &'static str,
        read_back: Statement<'a>,
        map: impl Fn(&C::Row) -> Result<T, StoreError> + Send,
    ) -> Result<Option<T>, StoreError>
    where
        C: SqlConn + ?Sized,
    {
        if conn.dialect().update_returning {
            self.returning = Some(columns);
            return self.fetch_optional(conn, map).await;
        }
        if self.execute(&mut *conn).await? == 0 {
            return Ok(None);
        }
        read_back.fetch_one(conn, map).await.map(Some)
    }

    /// Runs the statement and maps the row it returns, if any.
    ///
    /// # Errors
    /// The port errors the dialect translated the driver's error into, or the mapper's.
    pub async fn fetch_optional<C, T>(
        self,
        conn: &mut C,
        map: impl Fn(&C::Row) -> Result<T, StoreError> + Send,
    ) -> Result<Option<T>, StoreError>
    where
        C: SqlConn + ?Sized,
    {
        let query = self.render(conn.dialect())?;
        conn.fetch_optional(query).await?.as_ref().map(map).transpose()
    }

    /// Runs the statement and maps the one row it must return.
    ///
    /// # Errors
    /// [`StoreError::Other`] when it returns no row; otherwise as
    /// [`fetch_optional`](Self::fetch_optional).
    pub async fn fetch_one<C, T>(
        self,
        conn: &mut C,
        map: impl Fn(&C::Row) -> Result<T, StoreError> + Send,
    ) -> Result<T, StoreError>
    where
        C: SqlConn + ?Sized,
    {
        let what = self.sql;
        self.fetch_optional(conn, map)
            .await?
            .ok_or_else(|| StoreError::other(format!("no row returned by: {what}")))
    }

    /// Runs the statement and maps every row it returns, in order.
    ///
    /// # Errors
    /// As [`fetch_optional`](Self::fetch_optional).
    pub async fn fetch_all<C, T>(
        self,
        conn: &mut C,
        map: impl Fn(&C::Row) -> Result<T, StoreError> + Send,
    ) -> Result<Vec<T>, StoreError>
    where
        C: SqlConn + ?Sized,
    {
        let query = self.render(conn.dialect())?;
        conn.fetch_all(query).await?.iter().map(map).collect()
    }
}

/// A write queued by [`Statement::defer`].
#[derive(Debug, Clone)]
pub struct Write {
    pub(crate) statement: Statement<'static>,
    /// What it updates (`order 0190…`), when changing no row is an error.
    pub(crate) must_change: Option<String>,
}

impl Write {
    /// A write of `statement` that may change any number of rows.
    #[cfg(test)]
    pub(crate) fn any(statement: Statement<'static>) -> Self {
        Self {
            statement,
            must_change: None,
        }
    }

    /// The statement that follows this write in a script to fail it when it changed no row:
    /// the dialect's [`Dialect::row_guard`], for a write that must change one.
    pub(crate) fn guard(&self, dialect: &Dialect) -> Option<&'static str> {
        (self.must_change.is_some() && !dialect.row_guard.is_empty()).then_some(dialect.row_guard)
    }

    /// Whether `changed` rows is what the write needed.
    ///
    /// # Errors
    /// [`StoreError::Other`] as [`require_row`](crate::require_row) words it.
    pub(crate) fn check(&self, changed: u64) -> Result<(), StoreError> {
        match &self.must_change {
            Some(what) if changed == 0 => Err(StoreError::other(format!("no {what} to update"))),
            _ => Ok(()),
        }
    }
}

/// One statement's result in a [`SqlConn::script`].
#[derive(Debug)]
pub struct Outcome<R> {
    /// Rows it inserted, updated or deleted.
    pub changed: u64,
    /// Rows it returned.
    pub rows: Vec<R>,
}

/// A connection of one database: binds [`Value`]s in the dialect's storage format, runs a
/// rendered [`Query`] and translates the driver's errors. The only code a new database
/// writes for the shared statements.
///
/// # Errors (every method)
/// - MUST return [`StoreError::Conflict`] naming the rule when a uniqueness rule is violated;
/// - MUST return [`StoreError::Concurrency`] on serialization failures, deadlocks and lock
///   timeouts;
/// - MUST return [`StoreError::Unavailable`] when the connection is lost or times out.
#[async_trait]
pub trait SqlConn: Send {
    /// A returned row, read by the shared mappers.
    type Row: Columns + Send + Sync;

    /// How this database writes what differs.
    fn dialect(&self) -> &'static Dialect;

    /// Runs a statement; the number of rows it changed.
    async fn execute(&mut self, query: Query<'_>) -> Result<u64, StoreError>;

    /// Runs a statement; its first row, if any.
    async fn fetch_optional(&mut self, query: Query<'_>) -> Result<Option<Self::Row>, StoreError>;

    /// Runs a statement; every row.
    async fn fetch_all(&mut self, query: Query<'_>) -> Result<Vec<Self::Row>, StoreError>;

    /// Runs a statement of fixed text without arguments (`begin`, `commit`, `rollback`).
    async fn raw(&mut self, sql: &'static str) -> Result<(), StoreError>;

    /// Runs `write` now, or queues it to go with the next statement ([`Statement::defer`]).
    /// Outside a unit of work it runs now.
    async fn defer(&mut self, write: Write) -> Result<(), StoreError> {
        let query = write.statement.render(self.dialect())?;
        let changed = self.execute(query).await?;
        write.check(changed)
    }

    /// Runs a query of several statements joined by `;` ([`Batch::Script`]), in order,
    /// stopping at the first that fails: each statement's rows changed and rows returned.
    ///
    /// # Errors
    /// As [`execute`](Self::execute); [`StoreError::Other`] where the dialect cannot.
    async fn script(&mut self, query: Query<'_>) -> Result<Vec<Outcome<Self::Row>>, StoreError>;

    /// Closes the connection when it is dropped instead of returning it to its pool (its
    /// state is unknown: a rollback failed).
    fn close_on_drop(&mut self);
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// PostgreSQL's shape: numbered placeholders, write CTEs.
    pub(crate) const NUMBERED: Dialect = Dialect {
        name: "numbered",
        numbered_placeholders: true,
        begin: "begin",
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
    const QUESTION: Dialect = Dialect {
        name: "question",
        numbered_placeholders: false,
        begin: "begin",
        for_update: "",
        skip_locked: "",
        skip_duplicate: "on conflict do nothing",
        keep_existing: "on conflict do nothing",
        bigint: "bigint",
        update_returning: false,
        batch: Batch::Script,
        row_guard: "",
        member_trigrams: false,
    };

    #[test]
    fn placeholders_are_numbered_and_lists_expand() {
        let ids = [Uuid::from_u128(1), Uuid::from_u128(2), Uuid::from_u128(3)];
        let statement = sql("select * from t where a = ? and id in (?) and b = ? {lock}")
            .int(7)
            .ids(&ids)
            .text("x")
            .lock(Lock::ForUpdate);
        let query = statement.render(&NUMBERED).unwrap();
        assert_eq!(
            query.sql,
            "select * from t where a = $1 and id in ($2, $3, $4) and b = $5 for no key update"
        );
        assert_eq!(query.values.len(), 5);
        assert_eq!(query.values[3], Value::Uuid(Some(ids[2])));
        let query = statement.render(&QUESTION).unwrap();
        assert_eq!(query.sql, "select * from t where a = ? and id in (?, ?, ?) and b = ? ");
    }

    #[test]
    fn the_lock_marker_follows_the_lock_and_other_braces_stay() {
        let plain = sql("select '{x}' from t {lock}").render(&NUMBERED).unwrap();
        assert_eq!(plain.sql, "select '{x}' from t ");
        let skip = sql("select 1 from t {lock}")
            .lock(Lock::SkipLocked)
            .render(&NUMBERED)
            .unwrap();
        assert_eq!(skip.sql, "select 1 from t for no key update skip locked");
    }

    #[test]
    fn a_missing_or_extra_argument_is_an_error_not_a_query() {
        assert!(matches!(
            sql("select ? + ?").int(1).render(&QUESTION),
            Err(StoreError::Other(_))
        ));
        assert!(matches!(
            sql("select ?").int(1).int(2).render(&QUESTION),
            Err(StoreError::Other(_))
        ));
        assert_eq!(
            sql("select ?").limit(-3).render(&QUESTION).unwrap().values,
            [Value::Int(Some(0))]
        );
    }
}
