//! Members' SQL. One function per query, taking a connection, so the unit of work (writer
//! transaction) and the read port (reader pool) run the same statement.

use async_trait::async_trait;
use sqlx::SqliteConnection;

use core_domain::MemberId;
use core_domain::member::Member;
use ports::{Consistency, MemberReads, StoreError};
use sql_rows::members::member;

use crate::codec::{Query, Row, micros, now_micros};
use crate::{SqliteStore, translate};

/// Binds `?1`..`?10`, the columns insert and update both write.
fn bind_member<'q>(query: Query<'q>, m: &Member) -> Query<'q> {
    query
        .bind(m.id.to_string())
        .bind(&m.email)
        .bind(&m.name)
        .bind(&m.phone)
        .bind(&m.password_hash)
        .bind(m.role.as_str())
        .bind(m.status.as_str())
        .bind(m.last_login_at.map(micros))
        .bind(m.withdrawn_at.map(micros))
        .bind(m.anonymised_at.map(micros))
}

/// Conflict: [`ports::Unique::MemberEmail`].
pub(crate) async fn insert(conn: &mut SqliteConnection, m: &Member) -> Result<(), StoreError> {
    let query = sqlx::query(
        "insert into members (id, email, name, phone, password_hash, role, status, \
         last_login_at, withdrawn_at, anonymised_at, created_at, updated_at) \
         values (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?11)",
    );
    bind_member(query, m)
        .bind(micros(m.created_at))
        .execute(conn)
        .await
        .map_err(translate)?;
    Ok(())
}

pub(crate) async fn by_id(conn: &mut SqliteConnection, id: MemberId) -> Result<Option<Member>, StoreError> {
    sqlx::query("select * from members where id = ?1")
        .bind(id.to_string())
        .fetch_optional(conn)
        .await
        .map_err(translate)?
        .map(|row| member(&Row(&row)))
        .transpose()
}

pub(crate) async fn by_email(conn: &mut SqliteConnection, email: &str) -> Result<Option<Member>, StoreError> {
    sqlx::query("select * from members where email = ?1")
        .bind(email)
        .fetch_optional(conn)
        .await
        .map_err(translate)?
        .map(|row| member(&Row(&row)))
        .transpose()
}

/// E-mails starting with `prefix`: the range `[prefix, prefix + U+10FFFF)`, which uses the
/// e-mail index and needs no `like` escaping.
pub(crate) async fn search(conn: &mut SqliteConnection, prefix: &str, limit: i64) -> Result<Vec<Member>, StoreError> {
    sqlx::query("select * from members where email >= ?1 and email < ?2 order by email limit ?3")
        .bind(prefix)
        .bind(format!("{prefix}\u{10FFFF}"))
        .bind(sql_rows::limit(limit))
        .fetch_all(conn)
        .await
        .map_err(translate)?
        .iter()
        .map(|row| member(&Row(row)))
        .collect()
}

/// Saves every mutable field. Conflict: [`ports::Unique::MemberEmail`].
pub(crate) async fn update(conn: &mut SqliteConnection, m: &Member) -> Result<(), StoreError> {
    let query = sqlx::query(
        "update members set email = ?2, name = ?3, phone = ?4, password_hash = ?5, role = ?6, \
         status = ?7, last_login_at = ?8, withdrawn_at = ?9, anonymised_at = ?10, \
         updated_at = ?11 where id = ?1",
    );
    let result = bind_member(query, m)
        .bind(now_micros())
        .execute(conn)
        .await
        .map_err(translate)?;
    sql_rows::require_row(result.rows_affected(), "member", m.id)
}

/// Withdrawn, not yet anonymised, withdrawn at or before `withdrawn_before`; oldest first.
pub(crate) async fn to_anonymise(
    conn: &mut SqliteConnection,
    withdrawn_before: time::OffsetDateTime,
    limit: i64,
) -> Result<Vec<Member>, StoreError> {
    sqlx::query(
        "select * from members where status = 'withdrawn' and anonymised_at is null \
         and withdrawn_at <= ?1 order by withdrawn_at, id limit ?2",
    )
    .bind(micros(withdrawn_before))
    .bind(sql_rows::limit(limit))
    .fetch_all(conn)
    .await
    .map_err(translate)?
    .iter()
    .map(|row| member(&Row(row)))
    .collect()
}

#[async_trait]
impl MemberReads for SqliteStore {
    async fn member(&self, id: MemberId, _consistency: Consistency) -> Result<Option<Member>, StoreError> {
        by_id(&mut *self.reader().await?, id).await
    }

    async fn member_by_email(&self, email: &str, _consistency: Consistency) -> Result<Option<Member>, StoreError> {
        by_email(&mut *self.reader().await?, email).await
    }

    async fn search_members(
        &self,
        prefix: &str,
        limit: i64,
        _consistency: Consistency,
    ) -> Result<Vec<Member>, StoreError> {
        search(&mut *self.reader().await?, prefix, limit).await
    }
}
