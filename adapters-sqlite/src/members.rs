//! Members' SQL. One function per query, taking a connection, so the unit of work (writer
//! transaction) and the read port (reader pool) run the same statement.

use async_trait::async_trait;
use sqlx::SqliteConnection;
use sqlx::sqlite::SqliteRow;

use core_domain::MemberId;
use core_domain::member::Member;
use ports::{Consistency, MemberReads, StoreError};

use crate::codec::{self, micros, now_micros};
use crate::{SqliteStore, translate};

fn member(row: &SqliteRow) -> Result<Member, StoreError> {
    Ok(Member {
        id: codec::id(row, "id")?,
        email: codec::text(row, "email")?,
        name: codec::text(row, "name")?,
        phone: codec::text(row, "phone")?,
        password_hash: codec::text(row, "password_hash")?,
        role: codec::parsed(row, "role")?,
        status: codec::parsed(row, "status")?,
        created_at: codec::time(row, "created_at")?,
        last_login_at: codec::opt_time(row, "last_login_at")?,
        withdrawn_at: codec::opt_time(row, "withdrawn_at")?,
        anonymised_at: codec::opt_time(row, "anonymised_at")?,
    })
}

/// Conflict: [`ports::Unique::MemberEmail`].
pub(crate) async fn insert(conn: &mut SqliteConnection, m: &Member) -> Result<(), StoreError> {
    sqlx::query(
        "insert into members (id, email, name, phone, password_hash, role, status, \
         last_login_at, withdrawn_at, anonymised_at, created_at, updated_at) \
         values (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?11)",
    )
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
        .as_ref()
        .map(member)
        .transpose()
}

pub(crate) async fn by_email(conn: &mut SqliteConnection, email: &str) -> Result<Option<Member>, StoreError> {
    sqlx::query("select * from members where email = ?1")
        .bind(email)
        .fetch_optional(conn)
        .await
        .map_err(translate)?
        .as_ref()
        .map(member)
        .transpose()
}

/// E-mails starting with `prefix`: the range `[prefix, prefix + U+10FFFF)`, which uses the
/// e-mail index and needs no `like` escaping.
pub(crate) async fn search(conn: &mut SqliteConnection, prefix: &str, limit: i64) -> Result<Vec<Member>, StoreError> {
    sqlx::query("select * from members where email >= ?1 and email < ?2 order by email limit ?3")
        .bind(prefix)
        .bind(format!("{prefix}\u{10FFFF}"))
        .bind(codec::limit(limit))
        .fetch_all(conn)
        .await
        .map_err(translate)?
        .iter()
        .map(member)
        .collect()
}

/// Saves every mutable field. Conflict: [`ports::Unique::MemberEmail`].
pub(crate) async fn update(conn: &mut SqliteConnection, m: &Member) -> Result<(), StoreError> {
    let result = sqlx::query(
        "update members set email = ?2, name = ?3, phone = ?4, password_hash = ?5, role = ?6, \
         status = ?7, last_login_at = ?8, withdrawn_at = ?9, anonymised_at = ?10, \
         updated_at = ?11 where id = ?1",
    )
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
    .bind(now_micros())
    .execute(conn)
    .await
    .map_err(translate)?;
    codec::require_row(&result, "member", m.id)
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
    .bind(codec::limit(limit))
    .fetch_all(conn)
    .await
    .map_err(translate)?
    .iter()
    .map(member)
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
