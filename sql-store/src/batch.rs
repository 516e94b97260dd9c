//! Writes that share round trips. A unit of work queues the writes whose results nobody
//! reads ([`Statement::defer`](crate::Statement::defer)) and sends them with its next
//! statement, at the latest with its commit, as the dialect's [`Batch`] allows: in front of
//! that statement in one script (SQLite, where the `begin` waits for the first statement
//! too), as one statement of write CTEs before it (PostgreSQL), or one by one (MySQL).
//! Statements still run in the order the unit of work issued them, so a read sees every
//! write before it.

use std::mem;

use async_trait::async_trait;

use ports::StoreError;

use crate::Columns as _;
use crate::sql::{Batch, Outcome, Query, SqlConn, Write};

/// What a unit of work has not sent yet.
#[derive(Debug, Default)]
pub(crate) struct Queue {
    /// The `begin` of the transaction, where the dialect sends it with the first statement
    /// ([`Batch::Script`]): while it is here, nothing has reached the database.
    pub(crate) begin: Option<&'static str>,
    pub(crate) writes: Vec<Write>,
}

impl Queue {
    fn is_empty(&self) -> bool {
        self.begin.is_none() && self.writes.is_empty()
    }
}

/// A unit of work's connection: a [`SqlConn`] whose statements first send what the unit of
/// work has queued. A [`Backend`](crate::Backend) commits through it.
pub struct WorkConn<'u, C: SqlConn> {
    conn: &'u mut C,
    queue: &'u mut Queue,
}

impl<C: SqlConn> std::fmt::Debug for WorkConn<'_, C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkConn")
            .field("queue", &self.queue)
            .finish_non_exhaustive()
    }
}

impl<'u, C: SqlConn> WorkConn<'u, C> {
    pub(crate) fn new(conn: &'u mut C, queue: &'u mut Queue) -> Self {
        Self { conn, queue }
    }

    /// The connection itself, for the dialect's own statements once [`flush`](Self::flush)
    /// has sent the queue (the commit and its position).
    pub fn inner(&mut self) -> &mut C {
        self.conn
    }

    /// Sends whatever is queued now.
    ///
    /// # Errors
    /// The first failure of a queued write (the transaction is then spoilt).
    pub async fn flush(&mut self) -> Result<(), StoreError> {
        if self.queue.is_empty() {
            return Ok(());
        }
        match self.conn.dialect().batch {
            Batch::Script => self.script_ahead_of(None).await.map(drop),
            Batch::WriteCtes => self.send_ctes().await,
            Batch::OneByOne => self.send_one_by_one().await,
        }
    }

    /// Sends the queue and then `commit`: in one script where the dialect can, unless a
    /// queued write must change a row and the dialect has no
    /// [`row_guard`](crate::Dialect::row_guard) (the count is only known once the script has
    /// run, and by then the commit would have too), in which case the queue goes first.
    ///
    /// # Errors
    /// As [`flush`](Self::flush), then as the `commit` fails.
    pub async fn commit_after_queue(&mut self, commit: &'static str) -> Result<(), StoreError> {
        let dialect = self.conn.dialect();
        let unchecked = |write: &Write| write.must_change.is_some() && write.guard(dialect).is_none();
        if self.queue.writes.iter().any(unchecked) {
            self.flush().await?;
        }
        self.raw(commit).await
    }

    /// Where nothing of the transaction has gone out yet and the queue fits in one statement
    /// (one write, or writes that make one statement of write CTEs), sends that statement on
    /// its own, with neither `begin` nor `commit`: one statement commits atomically by
    /// itself. `true` if it did (or there was nothing at all to send): the transaction is
    /// then over. `false` leaves the queue as it was. ([`Batch::Script`] dialects send
    /// `begin`, the queue and `commit` in one script anyway.)
    ///
    /// # Errors
    /// As the statement fails (then nothing changed).
    pub async fn commit_alone(&mut self) -> Result<bool, StoreError> {
        if self.queue.begin.is_none() {
            return Ok(false);
        }
        let alone = match self.conn.dialect().batch {
            Batch::Script => false,
            Batch::WriteCtes => groups(&self.queue.writes).len() <= 1,
            Batch::OneByOne => self.queue.writes.len() <= 1,
        };
        if !alone {
            return Ok(false);
        }
        self.queue.begin = None;
        self.flush().await?;
        Ok(true)
    }

    /// The queue in one script, then `next` (one or more statements) in the same script: the
    /// outcomes of `next`'s statements (none without `next`).
    async fn script_ahead_of(&mut self, next: Option<Query<'_>>) -> Result<Vec<Outcome<C::Row>>, StoreError> {
        let begin = self.queue.begin.take();
        let writes = mem::take(&mut self.queue.writes);
        let dialect = self.conn.dialect();
        let mut script = Query {
            sql: String::new(),
            values: Vec::new(),
        };
        if let Some(begin) = begin {
            script.sql.push_str(begin);
        }
        let mut guards = 0;
        for write in &writes {
            if !script.sql.is_empty() {
                script.sql.push_str(";\n");
            }
            write.statement.render_onto(dialect, &mut script)?;
            if let Some(guard) = write.guard(dialect) {
                script.sql.push_str(";\n");
                script.sql.push_str(guard);
                guards += 1;
            }
        }
        let queued = usize::from(begin.is_some()) + writes.len() + guards;
        let has_next = next.is_some();
        if let Some(next) = next {
            script.sql.push_str(";\n");
            script.sql.push_str(&next.sql);
            script.values.extend(next.values);
        }
        let mut outcomes = self.conn.script(script).await?;
        if outcomes.len() < queued + usize::from(has_next) {
            return Err(StoreError::other(format!(
                "a script of {queued} queued statements and {} more gave {} results",
                usize::from(has_next),
                outcomes.len()
            )));
        }
        let next_outcomes = outcomes.split_off(queued);
        let mut results = outcomes.iter().skip(usize::from(begin.is_some()));
        for write in &writes {
            let changed = results.next().map_or(0, |o| o.changed);
            write.check(changed)?;
            if write.guard(dialect).is_some() {
                let _guard = results.next();
            }
        }
        Ok(next_outcomes)
    }

    /// Each run of writes that may share a statement as one statement of CTEs.
    async fn send_ctes(&mut self) -> Result<(), StoreError> {
        self.send_begin().await?;
        let writes = mem::take(&mut self.queue.writes);
        let dialect = self.conn.dialect();
        for group in groups(&writes) {
            let group = &writes[group];
            if let [write] = group {
                let changed = self.conn.execute(write.statement.render(dialect)?).await?;
                write.check(changed)?;
                continue;
            }
            let query = write_ctes(dialect, group)?;
            let rows = self.conn.fetch_all(query).await?;
            let row = rows
                .first()
                .ok_or_else(|| StoreError::other("a statement of write CTEs returned no row".to_owned()))?;
            for (n, write) in group.iter().enumerate() {
                let changed = row.int(&format!("w{}", n + 1))?;
                write.check(u64::try_from(changed).unwrap_or(0))?;
            }
        }
        Ok(())
    }

    async fn send_one_by_one(&mut self) -> Result<(), StoreError> {
        self.send_begin().await?;
        let dialect = self.conn.dialect();
        for write in mem::take(&mut self.queue.writes) {
            let changed = self.conn.execute(write.statement.render(dialect)?).await?;
            write.check(changed)?;
        }
        Ok(())
    }

    async fn send_begin(&mut self) -> Result<(), StoreError> {
        match self.queue.begin.take() {
            Some(begin) => self.conn.raw(begin).await,
            None => Ok(()),
        }
    }

    /// Whether `query` goes in one script with the queue.
    fn scripts_ahead(&self) -> bool {
        self.conn.dialect().batch == Batch::Script && !self.queue.is_empty()
    }

    /// `query`, one statement, at the end of a script of the queue.
    async fn after_queue(&mut self, query: Query<'_>) -> Result<Outcome<C::Row>, StoreError> {
        let mut outcomes = self.script_ahead_of(Some(query)).await?;
        match (outcomes.pop(), outcomes.is_empty()) {
            (Some(outcome), true) => Ok(outcome),
            _ => Err(StoreError::other(
                "one statement after the queue gave other than one result".to_owned(),
            )),
        }
    }
}

/// Consecutive runs of writes that one statement of write CTEs can hold: a run ends before a
/// write to a table the run has already written, unless both are inserts (a CTE does not see
/// its siblings' rows, so an update there could miss a row inserted beside it), and a write
/// whose table cannot be told goes alone.
fn groups(writes: &[Write]) -> Vec<std::ops::Range<usize>> {
    let mut groups = Vec::new();
    let mut start = 0;
    let mut seen: Vec<Target<'_>> = Vec::new();
    for (n, write) in writes.iter().enumerate() {
        let target = target(write.statement.text_as_written());
        let clashes = match target {
            None => true,
            Some(t) => seen.iter().any(|s| s.table == t.table && !(s.insert && t.insert)),
        };
        if clashes && n > start {
            groups.push(start..n);
            start = n;
            seen.clear();
        }
        match target {
            Some(t) => seen.push(t),
            None => {
                groups.push(start..n + 1);
                start = n + 1;
                seen.clear();
            }
        }
    }
    if start < writes.len() {
        groups.push(start..writes.len());
    }
    groups
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Target<'s> {
    table: &'s str,
    insert: bool,
}

/// The table an `insert into t …`, `update t …` or `delete from t …` writes.
fn target(sql: &str) -> Option<Target<'_>> {
    let mut words = sql.split_whitespace();
    let verb = words.next()?;
    let is = |word: &str| verb.eq_ignore_ascii_case(word);
    let insert = is("insert");
    let table = if insert || is("delete") {
        let _into_or_from = words.next()?;
        words.next()?
    } else if is("update") {
        words.next()?
    } else {
        return None;
    };
    let table = table.split('(').next().filter(|t| !t.is_empty())?;
    Some(Target { table, insert })
}

/// `with w1 as (<write> returning 1), … select (select count(*) from w1) as w1, …`: the writes
/// as one statement that returns how many rows each changed.
fn write_ctes(dialect: &crate::Dialect, writes: &[Write]) -> Result<Query<'static>, StoreError> {
    let mut query = Query {
        sql: String::from("with "),
        values: Vec::new(),
    };
    let mut counts = String::from(" select ");
    for (n, write) in writes.iter().enumerate() {
        let name = n + 1;
        if n > 0 {
            query.sql.push_str(", ");
            counts.push_str(", ");
        }
        query.sql.push_str(&format!("w{name} as ("));
        write.statement.render_onto(dialect, &mut query)?;
        query.sql.push_str(" returning 1)");
        counts.push_str(&format!("(select count(*) from w{name}) as w{name}"));
    }
    query.sql.push_str(&counts);
    Ok(query)
}

#[async_trait]
impl<C: SqlConn> SqlConn for WorkConn<'_, C> {
    type Row = C::Row;

    fn dialect(&self) -> &'static crate::Dialect {
        self.conn.dialect()
    }

    async fn execute(&mut self, query: Query<'_>) -> Result<u64, StoreError> {
        if self.scripts_ahead() {
            return Ok(self.after_queue(query).await?.changed);
        }
        self.flush().await?;
        self.conn.execute(query).await
    }

    async fn fetch_optional(&mut self, query: Query<'_>) -> Result<Option<Self::Row>, StoreError> {
        if self.scripts_ahead() {
            return Ok(self.after_queue(query).await?.rows.into_iter().next());
        }
        self.flush().await?;
        self.conn.fetch_optional(query).await
    }

    async fn fetch_all(&mut self, query: Query<'_>) -> Result<Vec<Self::Row>, StoreError> {
        if self.scripts_ahead() {
            return Ok(self.after_queue(query).await?.rows);
        }
        self.flush().await?;
        self.conn.fetch_all(query).await
    }

    async fn raw(&mut self, sql: &'static str) -> Result<(), StoreError> {
        if self.scripts_ahead() {
            let query = Query {
                sql: sql.to_owned(),
                values: Vec::new(),
            };
            return self.after_queue(query).await.map(drop);
        }
        self.flush().await?;
        self.conn.raw(sql).await
    }

    async fn defer(&mut self, write: Write) -> Result<(), StoreError> {
        self.queue.writes.push(write);
        Ok(())
    }

    async fn script(&mut self, query: Query<'_>) -> Result<Vec<Outcome<Self::Row>>, StoreError> {
        if self.scripts_ahead() {
            return self.script_ahead_of(Some(query)).await;
        }
        self.flush().await?;
        self.conn.script(query).await
    }

    fn close_on_drop(&mut self) {
        self.conn.close_on_drop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sql::sql;
    use crate::sql::tests::NUMBERED as PG;

    fn write(text: &'static str) -> Write {
        Write::any(sql(text).int(1))
    }

    #[test]
    fn the_target_table_is_read_from_the_statement() {
        assert_eq!(
            target("insert into order_items (a) values (?)"),
            Some(Target {
                table: "order_items",
                insert: true
            })
        );
        assert_eq!(
            target("  update orders set a = ?"),
            Some(Target {
                table: "orders",
                insert: false
            })
        );
        assert_eq!(
            target("delete from outbox where id = ?"),
            Some(Target {
                table: "outbox",
                insert: false
            })
        );
        assert_eq!(target("insert into t(a) values (?)").map(|t| t.table), Some("t"));
        assert_eq!(target("select 1"), None);
    }

    #[test]
    fn writes_share_a_statement_until_a_table_is_written_again() {
        let writes = [
            write("insert into orders (a) values (?)"),
            write("insert into order_items (a) values (?)"),
            write("insert into order_items (a) values (?)"),
            write("update idempotency_keys set a = ?"),
            write("update orders set a = ?"),
            write("insert into orders (a) values (?)"),
            write("select ?"),
            write("insert into outbox (a) values (?)"),
        ];
        assert_eq!(groups(&writes), [0..4, 4..5, 5..6, 6..7, 7..8]);
        assert_eq!(groups(&writes[..3]), vec![(0..3)]);
        assert!(groups(&[]).is_empty());
    }

    #[test]
    fn write_ctes_number_the_placeholders_on_and_count_each_write() {
        let writes = [
            Write::any(sql("insert into a (x, y) values (?, ?)").int(1).int(2)),
            Write::any(sql("update b set x = ? where id = ?").int(3).int(4)),
        ];
        let query = write_ctes(&PG, &writes).unwrap();
        assert_eq!(
            query.sql,
            "with w1 as (insert into a (x, y) values ($1, $2) returning 1), \
             w2 as (update b set x = $3 where id = $4 returning 1) \
             select (select count(*) from w1) as w1, (select count(*) from w2) as w2"
        );
        assert_eq!(query.values.len(), 4);
    }
}
