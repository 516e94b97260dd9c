//! Members' SQL. One function per query, taking a connection, so the unit of work (primary
//! transaction) and the read port (routed connection) run the same statement.

use async_trait::async_trait;
use sqlx::PgConnection;
use time::OffsetDateTime;

use core_domain::MemberId;
use core_domain::member::Member;
use ports::{Consistency, MemberReads, StoreError};
use sql_rows::members::member;

use crate::codec::{Lock, Query, Row, lockable};
use crate::{PgStore, translate};

/// Binds `$1`..`$10`, the columns insert and update both write.
fn bind_member<'q>(query: Query<'q>, m: &Member) -> Query<'q> {
    query
        .bind(m.id.0)
        .bind(&m.email)
        .bind(&m.name)
        .bind(&m.phone)
        .bind(&m.password_hash)
        .bind(m.role.as_str())
        .bind(m.status.as_str())
        .bind(m.last_login_at)
        .bind(m.withdrawn_at)
        .bind(m.anonymised_at)
}

/// Conflict: [`ports::Unique::MemberEmail`].
pub(crate) async fn insert(conn: &mut PgConnection, m: &Member) -> Result<(), StoreError> {
    let query = sqlx::query(
        "insert into members (id, email, name, phone, password_hash, role, status, \
         last_login_at, withdrawn_at, anonymised_at, created_at, updated_at) \
         values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $11)",
    );
    bind_member(query, m)
        .bind(m.created_at)
        .execute(conn)
        .await
        .map_err(translate)?;
    Ok(())
}

pub(crate) async fn by_id(conn: &mut PgConnection, id: MemberId, lock: Lock) -> Result<Option<Member>, StoreError> {
    sqlx::query(lockable!("select * from members where id = $1", lock))
        .bind(id.0)
        .fetch_optional(conn)
        .await
        .map_err(translate)?
        .map(|row| member(&Row(&row)))
        .transpose()
}

pub(crate) async fn by_email(conn: &mut PgConnection, email: &str, lock: Lock) -> Result<Option<Member>, StoreError> {
    sqlx::query(lockable!("select * from members where email = $1", lock))
        .bind(email)
        .fetch_optional(conn)
        .await
        .map_err(translate)?
        .map(|row| member(&Row(&row)))
        .transpose()
}

/// E-mails starting with `prefix`: the range `[prefix, prefix + U+10FFFF)` in byte order
/// (the column's collation is "C", as SQLite compares), which uses the e-mail index and
/// needs no `like` escaping.
pub(crate) async fn search(conn: &mut PgConnection, prefix: &str, limit: i64) -> Result<Vec<Member>, StoreError> {
    sqlx::query(
        "select * from members where email >= $1 and email < $2 \
         order by email collate \"C\" limit $3",
    )
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
pub(crate) async fn update(conn: &mut PgConnection, m: &Member) -> Result<(), StoreError> {
    let query = sqlx::query(
        "update members set email = $2, name = $3, phone = $4, password_hash = $5, role = $6, \
         status = $7, last_login_at = $8, withdrawn_at = $9, anonymised_at = $10, \
         updated_at = now() where id = $1",
    );
    let result = bind_member(query, m).execute(conn).await.map_err(translate)?;
    sql_rows::require_row(result.rows_affected(), "member", m.id)
}

/// Withdrawn, not yet anonymised, withdrawn at or before `withdrawn_before`; oldest first.
/// Locked, skipping rows another job instance is anonymising.
pub(crate) async fn to_anonymise(
    conn: &mut PgConnection,
    withdrawn_before: OffsetDateTime,
    limit: i64,
) -> Result<Vec<Member>, StoreError> {
    sqlx::query(
        "select * from members where status = 'withdrawn' and anonymised_at is null \
         and withdrawn_at <= $1 order by withdrawn_at, id limit $2 for no key update skip locked",
    )
    .bind(withdrawn_before)
    .bind(sql_rows::limit(limit))
    .fetch_all(conn)
    .await
    .map_err(translate)?
    .iter()
    .map(|row| member(&Row(row)))
    .collect()
}

#[async_trait]
impl MemberReads for PgStore {
    async fn member(&self, id: MemberId, consistency: Consistency) -> Result<Option<Member>, StoreError> {
        self.read(&consistency, |conn| Box::pin(by_id(conn, id, Lock::None)))
            .await
    }

    async fn member_by_email(&self, email: &str, consistency: Consistency) -> Result<Option<Member>, StoreError> {
        let email = email.to_owned();
        self.read(&consistency, |conn| {
            let email = email.clone();
            Box::pin(async move { by_email(conn, &email, Lock::None).await })
        })
        .await
    }

    async fn search_members(
        &self,
        prefix: &str,
        limit: i64,
        consistency: Consistency,
    ) -> Result<Vec<Member>, StoreError> {
        let prefix = prefix.to_owned();
        self.read(&consistency, |conn| {
            let prefix = prefix.clone();
            Box::pin(async move { search(conn, &prefix, limit).await })
        })
        .await
    }
}
