//! Members: the row, and every statement on `members`. One function per statement, taking
//! a connection, so the unit of work (a primary transaction) and the read port (a routed
//! connection) run the same SQL.

use async_trait::async_trait;
use time::OffsetDateTime;

use core_domain::MemberId;
use core_domain::member::Member;
use ports::{Consistency, MemberPattern, MemberQuery, MemberReads, MemberWrites, Page, StoreError};

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

/// The distinct 4-digit substrings (`gram`) of member `?`'s e-mail, name and phone (`?` the
/// member's id three times), with its id.
macro_rules! digit_grams {
    () => {
        "with recursive n (i) as (select 1 union all select i + 1 from n where i < 318) \
         select distinct substring(f.v, n.i, 4) as gram, f.id \
         from (select id, email as v from members where id = ? \
               union all select id, name from members where id = ? \
               union all select id, phone from members where id = ?) f \
         join n on n.i <= char_length(f.v) - 3 \
         where substring(f.v, n.i, 4) regexp '^[0-9]{4}$'"
    };
}
/// The three-character substrings (trigrams) of the member's lower-cased e-mail, name and
/// phone, each once, as the rows of `member_trigrams`, and their four-digit ones as the rows
/// of `member_digit_grams` (see [`Dialect::member_trigrams`]), computed from the stored row
/// by the database, whose `lower` the search's `like` uses.
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
    .execute(&mut *conn)
    .await?;
    sql(concat!(
        "insert into member_digit_grams (gram, member_id) ",
        digit_grams!()
    ))
    .id(id)
    .id(id)
    .id(id)
    .execute(conn)
    .await?;
    Ok(())
}

/// Before `m` is saved with a changed e-mail, name or phone: deletes the
/// `member_digit_grams` rows of the stored ones, by their primary key.
async fn delete_digit_grams(conn: &mut impl SqlConn, m: &Member) -> Result<(), StoreError> {
    sql(concat!(
        "delete g from member_digit_grams g join (",
        digit_grams!(),
        ") stored on g.gram = stored.gram and g.member_id = stored.id"
    ))
    .id(m.id)
    .id(m.id)
    .id(m.id)
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

/// The length of a `member_digit_grams` row: digits this many or more are narrowed by two of
/// them (the first and the last), a few hundred members each at a million, where a trigram of
/// digits has some ten thousand.
pub(crate) const DIGIT_GRAM: usize = 4;

/// One page of the members matching `query`, by e-mail, after `query.page.after` (from the
/// start when there is none).
pub(crate) async fn search(conn: &mut impl SqlConn, query: &MemberQuery) -> Result<Page<Member, String>, StoreError> {
    let search = Search::new(query);
    let members = search.statement(conn.dialect()).fetch_all(conn, member).await?;
    Ok(Page::keyed(members, &query.page, |m| m.email.clone()))
}

/// The members whose id `found` lists (`select … member_id …`), that match the `like` of
/// text anywhere: the `?`s after `found`'s are the text's pattern twice, the digits, the
/// digits' pattern, the e-mail to start after, and the limit.
macro_rules! found_members {
    ($found:expr) => {
        concat!(
            "select m.* from members m join (",
            $found,
            ") found on found.member_id = m.id \
             where (lower(m.email) like ? escape '!' or lower(m.name) like ? escape '!' \
             or (? <> '' and m.phone like ? escape '!')) and m.email > ? order by m.email limit ?"
        )
    };
}

/// The members having three trigrams (`?` b, c, then a). `distinct` keeps it a derived table
/// of its own, which MariaDB builds before reading any member (merged into the outer query,
/// its plan read members between the trigrams).
macro_rules! three_trigrams {
    () => {
        "select distinct a.member_id from member_trigrams a \
         join member_trigrams b on b.member_id = a.member_id and b.trigram = ? \
         join member_trigrams c on c.member_id = a.member_id and c.trigram = ? \
         where a.trigram = ?"
    };
}

/// Text of one distinct trigram (`?` a): its members, without joining the trigram to itself.
const BY_ONE_TRIGRAM: &str = found_members!("select member_id from member_trigrams where trigram = ?");
/// Text alone.
const BY_TRIGRAMS: &str = found_members!(three_trigrams!());
/// Text, or three digits (`?` the text's b, c, a, then the digits' b, c, a).
const BY_TRIGRAMS_OR_DIGITS: &str = found_members!(concat!(three_trigrams!(), " union ", three_trigrams!()));
/// The members having two 4-digit grams (`?` b, then a), a derived table of its own like
/// [`three_trigrams`]'s.
macro_rules! two_digit_grams {
    () => {
        "select distinct a.member_id from member_digit_grams a \
         join member_digit_grams b on b.member_id = a.member_id and b.gram = ? \
         where a.gram = ?"
    };
}
/// Text, or four digits or more (`?` the text's b, c, a, then the digits' last and first
/// 4-digit gram).
const BY_TRIGRAMS_OR_DIGIT_GRAMS: &str = found_members!(concat!(three_trigrams!(), " union ", two_digit_grams!()));
/// Text of four digits or more and nothing else (`?` its last and first 4-digit gram): every
/// e-mail, name or phone containing it has both.
const BY_DIGIT_GRAMS: &str = found_members!(two_digit_grams!());

/// A [`MemberQuery`] with the texts its statement binds, which the statement borrows.
///
/// An e-mail prefix is the range `[prefix, prefix + U+10FFFF)` in byte order (every schema
/// compares e-mails byte-wise), which uses the e-mail index and needs no `like` escaping.
/// Text anywhere is a `like '%text%'` over the lower-cased e-mail and name (SQLite's `lower`
/// folds ASCII only) and, for digits, over the phone; `!` escapes the user's `%`, `_` and `!`.
/// Where the dialect keeps `member_trigrams`, the members it reads are first narrowed to
/// those having three of the text's trigrams (the first, the middle and the last: the
/// database starts from the rarest; one when the text has only one), or, for phones, two of
/// the digits' 4-digit grams (`member_digit_grams`: the first and the last), or three of
/// their trigrams when there are only three digits; text of digits alone needs only the
/// grams. The `like` then decides, so the result is the same.
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
    /// The first and the last 4-digit gram of the digits (`""` when there are fewer).
    digit_grams: [String; 2],
}

impl<'q> Search<'q> {
    pub(crate) fn new(query: &'q MemberQuery) -> Self {
        let after = query.page.after.as_deref().unwrap_or("");
        let (pattern, phone, trigrams, digit_grams) = match &query.pattern {
            MemberPattern::EmailPrefix(prefix) => (
                format!("{prefix}\u{10FFFF}"),
                String::new(),
                Default::default(),
                Default::default(),
            ),
            MemberPattern::Anywhere { text, digits } => {
                let [a, b, c] = three_grams(text, TRIGRAM);
                let [d, e, f] = three_grams(digits, TRIGRAM);
                let [first, _, last] = three_grams(digits, DIGIT_GRAM);
                (
                    format!("%{}%", like_literal(text)),
                    format!("%{}%", like_literal(digits)),
                    [a, b, c, d, e, f],
                    [first, last],
                )
            }
        };
        Self {
            query,
            after,
            pattern,
            phone,
            trigrams,
            digit_grams,
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
        let (text, digits) = match &query.pattern {
            MemberPattern::EmailPrefix(prefix) => {
                return sql(
                    "select * from members where email >= ? and email < ? and email > ? order by email limit ?",
                )
                .text(prefix)
                .text(&self.pattern)
                .text(self.after)
                .limit(query.page.probe());
            }
            MemberPattern::Anywhere { text, digits } => (text, digits),
        };
        let statement = if dialect.member_trigrams && self.by_trigrams() {
            let [a, b, c, d, e, f] = &self.trigrams;
            let [first, last] = &self.digit_grams;
            if digits.len() >= DIGIT_GRAM && text == digits {
                sql(BY_DIGIT_GRAMS).text(last).text(first)
            } else if digits.len() >= DIGIT_GRAM {
                sql(BY_TRIGRAMS_OR_DIGIT_GRAMS)
                    .text(b)
                    .text(c)
                    .text(a)
                    .text(last)
                    .text(first)
            } else if !digits.is_empty() {
                sql(BY_TRIGRAMS_OR_DIGITS)
                    .text(b)
                    .text(c)
                    .text(a)
                    .text(e)
                    .text(f)
                    .text(d)
            } else if a == b && b == c {
                sql(BY_ONE_TRIGRAM).text(a)
            } else {
                sql(BY_TRIGRAMS).text(b).text(c).text(a)
            }
        } else {
            sql(
                "select * from members where (lower(email) like ? escape '!' or lower(name) like ? escape '!' \
                 or (? <> '' and phone like ? escape '!')) and email > ? order by email limit ?",
            )
        };
        statement
            .text(&self.pattern)
            .text(&self.pattern)
            .text(digits)
            .text(&self.phone)
            .text(self.after)
            .limit(query.page.probe())
    }
}

/// The first, middle and last of the distinct `n`-character substrings of `text`; `""` for
/// each when it is shorter than `n`.
fn three_grams(text: &str, n: usize) -> [String; 3] {
    let chars: Vec<char> = text.chars().collect();
    let mut grams: Vec<String> = Vec::new();
    for window in chars.windows(n) {
        let gram: String = window.iter().collect();
        if !grams.contains(&gram) {
            grams.push(gram);
        }
    }
    match grams.as_slice() {
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
    if trigrams {
        delete_digit_grams(conn, m).await?;
    }
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

    async fn search_members(
        &self,
        query: &MemberQuery,
        consistency: Consistency,
    ) -> Result<Page<Member, String>, StoreError> {
        self.read(&consistency, query, |conn, query| Box::pin(search(conn, query)))
            .await
    }
}

#[cfg(test)]
mod like_tests {
    use super::{DIGIT_GRAM, TRIGRAM, like_literal, three_grams};

    #[test]
    fn the_first_middle_and_last_distinct_grams_stand_for_the_text() {
        assert_eq!(three_grams("kim0123", TRIGRAM), ["kim", "m01", "123"]);
        assert_eq!(three_grams("김민수", TRIGRAM), ["김민수", "김민수", "김민수"]);
        assert_eq!(three_grams("aaaa", TRIGRAM), ["aaa", "aaa", "aaa"]);
        assert_eq!(three_grams("민수", TRIGRAM), ["", "", ""]);
        assert_eq!(three_grams("595723", DIGIT_GRAM), ["5957", "9572", "5723"]);
        assert_eq!(three_grams("777", DIGIT_GRAM), ["", "", ""]);
    }

    #[test]
    fn wildcards_and_the_escape_are_escaped() {
        assert_eq!(like_literal("a_b%c!d"), "a!_b!%c!!d");
        assert_eq!(like_literal("김민수"), "김민수");
    }
}
