//! Members: the row, and every statement on `members`. One function per statement, taking
//! a connection, so the unit of work (a primary transaction) and the read port (a routed
//! connection) run the same SQL.

use async_trait::async_trait;
use time::OffsetDateTime;
use uuid::Uuid;

use core_domain::MemberId;
use core_domain::member::Member;
use ports::{Consistency, MemberPattern, MemberQuery, MemberReads, MemberWrites, StoreError};

use crate::SqlUnitOfWork;
use crate::backend::Backend;
use crate::sql::{Lock, SqlConn, Statement, sql};
use crate::{Columns, SqlStore, require_row};

/// A `members` row.
///
/// # Errors
/// [`StoreError::Other`] for a column that does not decode.
pub fn member(row: &impl Columns) -> Result<Member, StoreError> {
    Ok(Member {
        id: row.id("id")?,
        email: row.text("email")?,
        name: row.text("name")?,
        phone: row.text("phone")?,
        password_hash: row.text("password_hash")?,
        role: row.parsed("role")?,
        status: row.parsed("status")?,
        created_at: row.time("created_at")?,
        last_login_at: row.opt_time("last_login_at")?,
        withdrawn_at: row.opt_time("withdrawn_at")?,
        anonymised_at: row.opt_time("anonymised_at")?,
    })
}

/// Binds the columns insert and update both write, `email` to `anonymised_at`.
fn bind_member<'a>(statement: Statement<'a>, m: &'a Member) -> Statement<'a> {
    statement
        .text(&m.email)
        .text(&m.name)
        .text(&m.phone)
        .text(&m.password_hash)
        .text(m.role.as_str())
        .text(m.status.as_str())
        .opt_time(m.last_login_at)
        .opt_time(m.withdrawn_at)
        .opt_time(m.anonymised_at)
}

/// Conflict: [`ports::Unique::MemberEmail`].
pub(crate) async fn insert(conn: &mut impl SqlConn, m: &Member) -> Result<(), StoreError> {
    let statement = sql(
        "insert into members (id, email, name, phone, password_hash, role, status, \
         last_login_at, withdrawn_at, anonymised_at, created_at, updated_at) \
         values (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .id(m.id);
    bind_member(statement, m)
        .time(m.created_at)
        .time(m.created_at)
        .execute(conn)
        .await?;
    Ok(())
}

/// The member by id, for [`member`].
pub(crate) fn by_id_statement<'a>(id: MemberId, lock: Lock) -> Statement<'a> {
    sql("select * from members where id = ? {lock}").id(id).lock(lock)
}

pub(crate) async fn by_id(conn: &mut impl SqlConn, id: MemberId, lock: Lock) -> Result<Option<Member>, StoreError> {
    by_id_statement(id, lock).fetch_optional(conn, member).await
}

pub(crate) async fn by_email(conn: &mut impl SqlConn, email: &str, lock: Lock) -> Result<Option<Member>, StoreError> {
    sql("select * from members where email = ? {lock}")
        .text(email)
        .lock(lock)
        .fetch_optional(conn, member)
        .await
}

/// Members matching `query`, by e-mail, after `query.after_email` (`""`: from the start).
///
/// An e-mail prefix is the range `[prefix, prefix + U+10FFFF)` in byte order (every schema
/// compares e-mails byte-wise), which uses the e-mail index and needs no `like` escaping.
/// Text anywhere is a `like '%text%'` over the lower-cased e-mail and name (SQLite's `lower`
/// folds ASCII only) and, for digits, over the phone; `!` escapes the user's `%`, `_` and `!`.
pub(crate) async fn search(conn: &mut impl SqlConn, query: &MemberQuery) -> Result<Vec<Member>, StoreError> {
    let after = query.after_email.as_deref().unwrap_or("");
    match &query.pattern {
        MemberPattern::EmailPrefix(prefix) => {
            let end = format!("{prefix}\u{10FFFF}");
            sql("select * from members where email >= ? and email < ? and email > ? order by email limit ?")
                .text(prefix)
                .text(&end)
                .text(after)
                .limit(query.limit)
                .fetch_all(conn, member)
                .await
        }
        MemberPattern::Anywhere { text, digits } => {
            let text = format!("%{}%", like_literal(text));
            let phone = format!("%{}%", like_literal(digits));
            sql(
                "select * from members where (lower(email) like ? escape '!' or lower(name) like ? escape '!' \
                 or (? <> '' and phone like ? escape '!')) and email > ? order by email limit ?",
            )
            .text(&text)
            .text(&text)
            .text(digits)
            .text(&phone)
            .text(after)
            .limit(query.limit)
            .fetch_all(conn, member)
            .await
        }
    }
}

/// `raw` with `like`'s wildcards and the `!` escape escaped by `!`.
fn like_literal(raw: &str) -> String {
    let mut escaped = String::with_capacity(raw.len());
    for c in raw.chars() {
        if matches!(c, '%' | '_' | '!') {
            escaped.push('!');
        }
        escaped.push(c);
    }
    escaped
}

/// Saves every mutable field. Conflict: [`ports::Unique::MemberEmail`].
pub(crate) async fn update(conn: &mut impl SqlConn, m: &Member) -> Result<(), StoreError> {
    let statement = sql(
        "update members set email = ?, name = ?, phone = ?, password_hash = ?, role = ?, \
         status = ?, last_login_at = ?, withdrawn_at = ?, anonymised_at = ?, updated_at = ? \
         where id = ?",
    );
    let changed = bind_member(statement, m)
        .time(OffsetDateTime::now_utc())
        .id(m.id)
        .execute(conn)
        .await?;
    require_row(changed, "member", m.id)
}

/// Of the members `ids`, those withdrawn at or before `withdrawn_before` and not yet
/// anonymised, locked, by id.
pub(crate) async fn to_anonymise(
    conn: &mut impl SqlConn,
    ids: &[MemberId],
    withdrawn_before: OffsetDateTime,
) -> Result<Vec<Member>, StoreError> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    sql(
        "select * from members where id in (?) and status = 'withdrawn' and anonymised_at is null \
         and withdrawn_at <= ? order by id {lock}",
    )
    .ids(ids)
    .time(withdrawn_before)
    .lock(Lock::ForUpdate)
    .fetch_all(conn, member)
    .await
}

#[async_trait]
impl<B: Backend> MemberWrites for SqlUnitOfWork<B> {
    async fn insert(&mut self, member: &Member) -> Result<(), StoreError> {
        let result = insert(&mut self.conn()?, member).await;
        self.track(result)
    }

    async fn by_id(&mut self, id: MemberId) -> Result<Option<Member>, StoreError> {
        let result = by_id(&mut self.conn()?, id, Lock::ForUpdate).await;
        self.track(result)
    }

    async fn by_email(&mut self, email: &str) -> Result<Option<Member>, StoreError> {
        let result = by_email(&mut self.conn()?, email, Lock::ForUpdate).await;
        self.track(result)
    }

    async fn update(&mut self, member: &Member) -> Result<(), StoreError> {
        let result = update(&mut self.conn()?, member).await;
        self.track(result)
    }

    async fn to_anonymise(
        &mut self,
        ids: &[MemberId],
        withdrawn_before: OffsetDateTime,
    ) -> Result<Vec<Member>, StoreError> {
        let result = to_anonymise(&mut self.conn()?, ids, withdrawn_before).await;
        self.track(result)
    }
}

#[async_trait]
impl<B: Backend> MemberReads for SqlStore<B> {
    async fn members_to_anonymise(
        &self,
        withdrawn_before: OffsetDateTime,
        after: Option<MemberId>,
        limit: i64,
        consistency: Consistency,
    ) -> Result<Vec<MemberId>, StoreError> {
        self.read(
            &consistency,
            (withdrawn_before, after, limit),
            |conn, &(before, after, limit)| {
                Box::pin(
                    sql(
                        "select id from members where status = 'withdrawn' and anonymised_at is null \
                     and withdrawn_at <= ? and id > ? order by id limit ?",
                    )
                    .time(before)
                    .id(after.map_or(Uuid::nil(), |id| id.0))
                    .limit(limit)
                    .fetch_all(conn, |row| row.id("id")),
                )
            },
        )
        .await
    }

    async fn count_members_to_anonymise(
        &self,
        withdrawn_before: OffsetDateTime,
        after: Option<MemberId>,
        consistency: Consistency,
    ) -> Result<i64, StoreError> {
        self.read(&consistency, (withdrawn_before, after), |conn, &(before, after)| {
            Box::pin(
                sql(
                    "select count(*) as n from members where status = 'withdrawn' and anonymised_at is null \
                     and withdrawn_at <= ? and id > ?",
                )
                .time(before)
                .id(after.map_or(Uuid::nil(), |id| id.0))
                .fetch_one(conn, |row| row.int("n")),
            )
        })
        .await
    }

    async fn member(&self, id: MemberId, consistency: Consistency) -> Result<Option<Member>, StoreError> {
        self.read(&consistency, id, |conn, &id| Box::pin(by_id(conn, id, Lock::None)))
            .await
    }

    async fn member_by_email(&self, email: &str, consistency: Consistency) -> Result<Option<Member>, StoreError> {
        self.read(&consistency, email, |conn, email| {
            Box::pin(by_email(conn, email, Lock::None))
        })
        .await
    }

    async fn search_members(&self, query: &MemberQuery, consistency: Consistency) -> Result<Vec<Member>, StoreError> {
        self.read(&consistency, query, |conn, query| Box::pin(search(conn, query)))
            .await
    }
}

#[cfg(test)]
mod like_tests {
    use super::like_literal;

    #[test]
    fn wildcards_and_the_escape_are_escaped() {
        assert_eq!(like_literal("a_b%c!d"), "a!_b!%c!!d");
        assert_eq!(like_literal("김민수"), "김민수");
    }
}
