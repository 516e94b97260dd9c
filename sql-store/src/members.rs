//! Members: the row, and every statement on `members`. One function per statement, taking
//! a connection, so the unit of work (a primary transaction) and the read port (a routed
//! connection) run the same SQL.

use async_trait::async_trait;
use time::OffsetDateTime;

use core_domain::MemberId;
use core_domain::member::Member;
use ports::{Consistency, MemberPattern, MemberQuery, MemberReads, MemberWrites, StoreError};

use crate::SqlUnitOfWork;
use crate::backend::Backend;
use crate::sql::{Dialect, Lock, SqlConn, Statement, sql};
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
        .execute(&mut *conn)
        .await?;
    if conn.dialect().member_trigrams {
        insert_trigrams(conn, m.id).await?;
    }
    Ok(())
}

/// The three-character substrings (trigrams) of the member's lower-cased e-mail, name and
/// phone, each once, as the rows of `member_trigrams` (see [`Dialect::member_trigrams`]),
/// computed from the stored row by the database, whose `lower` the search's `like` uses.
///
/// [`Dialect::member_trigrams`]: crate::Dialect::member_trigrams
async fn insert_trigrams(conn: &mut impl SqlConn, id: MemberId) -> Result<(), StoreError> {
    sql("insert into member_trigrams (trigram, member_id) \
         with recursive n (i) as (select 1 union all select i + 1 from n where i < 318) \
         select distinct substring(f.v, n.i, 3), f.id \
         from (select id, lower(email) as v from members where id = ? \
               union all select id, lower(name) from members where id = ? \
               union all select id, lower(phone) from members where id = ?) f \
         join n on n.i <= char_length(f.v) - 2")
    .id(id)
    .id(id)
    .id(id)
    .execute(conn)
    .await?;
    Ok(())
}

/// Before `m` is saved: deletes the `member_trigrams` rows of the stored e-mail, name and
/// phone when `m` changes one of them (a login, which changes none, deletes nothing), by
/// their primary key. Whether it deleted any says whether to insert the new ones.
async fn delete_changed_trigrams(conn: &mut impl SqlConn, m: &Member) -> Result<bool, StoreError> {
    let deleted = sql("delete t from member_trigrams t join ( \
             with recursive n (i) as (select 1 union all select i + 1 from n where i < 318) \
             select distinct substring(f.v, n.i, 3) as trigram \
             from (select lower(email) as v, email, name, phone from members where id = ? \
                   union all select lower(name), email, name, phone from members where id = ? \
                   union all select lower(phone), email, name, phone from members where id = ?) f \
             join n on n.i <= char_length(f.v) - 2 \
             where not (f.email = ? and f.name = ? and f.phone = ?) \
         ) stored on t.trigram = stored.trigram and t.member_id = ?")
    .id(m.id)
    .id(m.id)
    .id(m.id)
    .text(&m.email)
    .text(&m.name)
    .text(&m.phone)
    .id(m.id)
    .execute(conn)
    .await?;
    Ok(deleted > 0)
}

/// The member by id, for [`member`].
pub(crate) fn by_id_statement<'a>(id: MemberId, lock: Lock) -> Statement<'a> {
    sql("select * from members where id = ? {lock}").id(id).lock(lock)
}

pub(crate) async fn by_id(conn: &mut impl SqlConn, id: MemberId, lock: Lock) -> Result<Option<Member>, StoreError> {
    by_id_statement(id, lock).fetch_optional(conn, member).await
}

/// The member by e-mail (login), for [`member`].
pub(crate) fn by_email_statement(email: &str, lock: Lock) -> Statement<'_> {
    sql("select * from members where email = ? {lock}")
        .text(email)
        .lock(lock)
}

pub(crate) async fn by_email(conn: &mut impl SqlConn, email: &str, lock: Lock) -> Result<Option<Member>, StoreError> {
    by_email_statement(email, lock).fetch_optional(conn, member).await
}

/// The fewest characters of text anywhere that `member_trigrams` can answer for (a
/// trigram); shorter text, or fewer digits, is searched by the `like` alone.
pub(crate) const TRIGRAM: usize = 3;

/// Members matching `query`, by e-mail, after `query.after_email` (`""`: from the start).
pub(crate) async fn search(conn: &mut impl SqlConn, query: &MemberQuery) -> Result<Vec<Member>, StoreError> {
    let search = Search::new(query);
    search.statement(conn.dialect()).fetch_all(conn, member).await
}

/// A [`MemberQuery`] with the texts its statement binds, which the statement borrows.
///
/// An e-mail prefix is the range `[prefix, prefix + U+10FFFF)` in byte order (every schema
/// compares e-mails byte-wise), which uses the e-mail index and needs no `like` escaping.
/// Text anywhere is a `like '%text%'` over the lower-cased e-mail and name (SQLite's `lower`
/// folds ASCII only) and, for digits, over the phone; `!` escapes the user's `%`, `_` and `!`.
/// Where the dialect keeps `member_trigrams`, the members it reads are first narrowed to
/// those having three of the text's trigrams (the first, the middle and the last: the
/// database starts from the rarest), or three of the digits' for phones; the `like` then
/// decides, so the result is the same.
#[derive(Debug)]
pub(crate) struct Search<'q> {
    query: &'q MemberQuery,
    after: &'q str,
    /// The prefix's end, or the text's `like` pattern.
    pattern: String,
    /// The digits' `like` pattern.
    phone: String,
    /// Three trigrams of the text, then three of the digits (`""`, which no row has, for
    /// none).
    trigrams: [String; 6],
}

impl<'q> Search<'q> {
    pub(crate) fn new(query: &'q MemberQuery) -> Self {
        let after = query.after_email.as_deref().unwrap_or("");
        let (pattern, phone, trigrams) = match &query.pattern {
            MemberPattern::EmailPrefix(prefix) => (format!("{prefix}\u{10FFFF}"), String::new(), Default::default()),
            MemberPattern::Anywhere { text, digits } => {
                let [a, b, c] = three_trigrams(text);
                let [d, e, f] = three_trigrams(digits);
                (
                    format!("%{}%", like_literal(text)),
                    format!("%{}%", like_literal(digits)),
                    [a, b, c, d, e, f],
                )
            }
        };
        Self {
            query,
            after,
            pattern,
            phone,
            trigrams,
        }
    }

    /// Whether `member_trigrams` can narrow this search: text anywhere of at least
    /// [`TRIGRAM`] characters, and digits, if any, of at least as many.
    fn by_trigrams(&self) -> bool {
        match &self.query.pattern {
            MemberPattern::EmailPrefix(_) => false,
            MemberPattern::Anywhere { text, digits } => {
                text.chars().count() >= TRIGRAM && (digits.is_empty() || digits.len() >= TRIGRAM)
            }
        }
    }

    /// The statement the search runs on `dialect`.
    pub(crate) fn statement(&self, dialect: &Dialect) -> Statement<'_> {
        let query = self.query;
        match &query.pattern {
            MemberPattern::EmailPrefix(prefix) => {
                sql("select * from members where email >= ? and email < ? and email > ? order by email limit ?")
                    .text(prefix)
                    .text(&self.pattern)
                    .text(self.after)
                    .limit(query.limit)
            }
            MemberPattern::Anywhere { digits, .. } if dialect.member_trigrams && self.by_trigrams() => {
                let [a, b, c, d, e, f] = &self.trigrams;
                sql("select m.* from members m join ( \
                         select a.member_id from member_trigrams a \
                         join member_trigrams b on b.member_id = a.member_id and b.trigram = ? \
                         join member_trigrams c on c.member_id = a.member_id and c.trigram = ? \
                         where a.trigram = ? \
                         union \
                         select a.member_id from member_trigrams a \
                         join member_trigrams b on b.member_id = a.member_id and b.trigram = ? \
                         join member_trigrams c on c.member_id = a.member_id and c.trigram = ? \
                         where a.trigram = ? \
                     ) found on found.member_id = m.id \
                     where (lower(m.email) like ? escape '!' or lower(m.name) like ? escape '!' \
                     or (? <> '' and m.phone like ? escape '!')) and m.email > ? order by m.email limit ?")
                .text(b)
                .text(c)
                .text(a)
                .text(e)
                .text(f)
                .text(d)
                .text(&self.pattern)
                .text(&self.pattern)
                .text(digits)
                .text(&self.phone)
                .text(self.after)
                .limit(query.limit)
            }
            MemberPattern::Anywhere { digits, .. } => sql(
                "select * from members where (lower(email) like ? escape '!' or lower(name) like ? escape '!' \
                 or (? <> '' and phone like ? escape '!')) and email > ? order by email limit ?",
            )
            .text(&self.pattern)
            .text(&self.pattern)
            .text(digits)
            .text(&self.phone)
            .text(self.after)
            .limit(query.limit),
        }
    }
}

/// The first, middle and last of the distinct trigrams of `text`; `""` for each when it is
/// shorter than a trigram.
fn three_trigrams(text: &str) -> [String; 3] {
    let chars: Vec<char> = text.chars().collect();
    let mut trigrams: Vec<String> = Vec::new();
    for window in chars.windows(TRIGRAM) {
        let trigram: String = window.iter().collect();
        if !trigrams.contains(&trigram) {
            trigrams.push(trigram);
        }
    }
    match trigrams.as_slice() {
        [] => Default::default(),
        all => [all[0].clone(), all[all.len() / 2].clone(), all[all.len() - 1].clone()],
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
    let trigrams = conn.dialect().member_trigrams && delete_changed_trigrams(conn, m).await?;
    let changed = bind_member(statement, m)
        .time(OffsetDateTime::now_utc())
        .id(m.id)
        .execute(&mut *conn)
        .await?;
    require_row(changed, "member", m.id)?;
    if trigrams {
        insert_trigrams(conn, m.id).await?;
    }
    Ok(())
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
                    .after_id(after)
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
                .after_id(after)
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
    use super::{like_literal, three_trigrams};

    #[test]
    fn the_first_middle_and_last_distinct_trigrams_stand_for_the_text() {
        assert_eq!(three_trigrams("kim0123"), ["kim", "m01", "123"]);
        assert_eq!(three_trigrams("김민수"), ["김민수", "김민수", "김민수"]);
        assert_eq!(three_trigrams("aaaa"), ["aaa", "aaa", "aaa"]);
        assert_eq!(three_trigrams("민수"), ["", "", ""]);
    }

    #[test]
    fn wildcards_and_the_escape_are_escaped() {
        assert_eq!(like_literal("a_b%c!d"), "a!_b!%c!!d");
        assert_eq!(like_literal("김민수"), "김민수");
    }
}
