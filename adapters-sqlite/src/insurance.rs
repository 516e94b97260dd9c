//! Insurance SQL: policies (optimistic version check), their audit trail and driving
//! sessions. "One active policy" and "one open session" per member are partial unique
//! indexes, so the database refuses a second one even under concurrent enrolments.

use async_trait::async_trait;
use sqlx::SqliteConnection;
use time::OffsetDateTime;

use core_domain::insurance::{DrivingSession, Policy, PolicyAudit};
use core_domain::{MemberId, PolicyId, SessionId};
use ports::{Consistency, InsuranceReads, StoreError};
use sql_rows::insurance::{audit, policy, session};

use crate::codec::{Query, Row, micros, now_micros};
use crate::{SqliteStore, translate};

/// Binds the columns insert and update both write, `policy_number` to `version` (`?3`..`?10`).
fn bind_policy<'q>(query: Query<'q>, p: &Policy) -> Query<'q> {
    query
        .bind(&p.policy_number)
        .bind(p.hourly_premium)
        .bind(micros(p.coverage_start))
        .bind(p.status.as_str())
        .bind(p.expired_at.map(micros))
        .bind(p.expiry_reason.map(|r| r.as_str()))
        .bind(p.expired_by.as_ref().map(ToString::to_string))
        .bind(p.version)
}

/// Conflicts: [`ports::Unique::PolicyNumber`], [`ports::Unique::ActivePolicy`].
pub(crate) async fn insert_policy(conn: &mut SqliteConnection, p: &Policy) -> Result<(), StoreError> {
    let query = sqlx::query(
        "insert into policies (id, member_id, policy_number, hourly_premium, coverage_start, \
         status, expired_at, expiry_reason, expired_by, version, created_at, updated_at) \
         values (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?11)",
    )
    .bind(p.id.to_string())
    .bind(p.member_id.to_string());
    bind_policy(query, p)
        .bind(micros(p.created_at))
        .execute(conn)
        .await
        .map_err(translate)?;
    Ok(())
}

pub(crate) async fn policy_by_id(conn: &mut SqliteConnection, id: PolicyId) -> Result<Option<Policy>, StoreError> {
    sqlx::query("select * from policies where id = ?1")
        .bind(id.to_string())
        .fetch_optional(conn)
        .await
        .map_err(translate)?
        .map(|row| policy(&Row(&row)))
        .transpose()
}

pub(crate) async fn policy_by_number(
    conn: &mut SqliteConnection,
    policy_number: &str,
) -> Result<Option<Policy>, StoreError> {
    sqlx::query("select * from policies where policy_number = ?1")
        .bind(policy_number)
        .fetch_optional(conn)
        .await
        .map_err(translate)?
        .map(|row| policy(&Row(&row)))
        .transpose()
}

/// Newest first.
pub(crate) async fn policies_of_member(
    conn: &mut SqliteConnection,
    member_id: MemberId,
) -> Result<Vec<Policy>, StoreError> {
    sqlx::query("select * from policies where member_id = ?1 order by created_at desc, id desc")
        .bind(member_id.to_string())
        .fetch_all(conn)
        .await
        .map_err(translate)?
        .iter()
        .map(|row| policy(&Row(row)))
        .collect()
}

/// Saves `p` if the stored version is still `expected_version`, in one statement; no row
/// matched → [`StoreError::Concurrency`] (a concurrent change won).
pub(crate) async fn update_policy(
    conn: &mut SqliteConnection,
    p: &Policy,
    expected_version: i64,
) -> Result<(), StoreError> {
    let query = sqlx::query(
        "update policies set policy_number = ?3, hourly_premium = ?4, coverage_start = ?5, \
         status = ?6, expired_at = ?7, expiry_reason = ?8, expired_by = ?9, version = ?10, \
         updated_at = ?11 where id = ?1 and version = ?2",
    )
    .bind(p.id.to_string())
    .bind(expected_version);
    let result = bind_policy(query, p)
        .bind(now_micros())
        .execute(conn)
        .await
        .map_err(translate)?;
    if result.rows_affected() == 0 {
        return Err(StoreError::Concurrency);
    }
    Ok(())
}

pub(crate) async fn insert_audit(conn: &mut SqliteConnection, a: &PolicyAudit) -> Result<(), StoreError> {
    sqlx::query(
        "insert into policy_audit (id, policy_id, actor, action, reason, previous_expired_at, \
         new_expired_at, at, created_at) values (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
    )
    .bind(a.id.to_string())
    .bind(a.policy_id.to_string())
    .bind(a.actor.to_string())
    .bind(a.action)
    .bind(a.reason.map(|r| r.as_str()))
    .bind(a.previous_expired_at.map(micros))
    .bind(a.new_expired_at.map(micros))
    .bind(micros(a.at))
    .bind(now_micros())
    .execute(conn)
    .await
    .map_err(translate)?;
    Ok(())
}

/// Oldest first; rows of the same instant in insertion order.
pub(crate) async fn audit_of_policy(conn: &mut SqliteConnection, id: PolicyId) -> Result<Vec<PolicyAudit>, StoreError> {
    sqlx::query("select * from policy_audit where policy_id = ?1 order by at, rowid")
        .bind(id.to_string())
        .fetch_all(conn)
        .await
        .map_err(translate)?
        .iter()
        .map(|row| audit(&Row(row)))
        .collect()
}

/// Conflict: [`ports::Unique::OpenSession`].
pub(crate) async fn insert_session(conn: &mut SqliteConnection, s: &DrivingSession) -> Result<(), StoreError> {
    let now = now_micros();
    sqlx::query(
        "insert into driving_sessions (id, member_id, policy_id, started_at, ended_at, \
         created_at, updated_at) values (?1, ?2, ?3, ?4, ?5, ?6, ?6)",
    )
    .bind(s.id.to_string())
    .bind(s.member_id.to_string())
    .bind(s.policy_id.to_string())
    .bind(micros(s.started_at))
    .bind(s.ended_at.map(micros))
    .bind(now)
    .execute(conn)
    .await
    .map_err(translate)?;
    Ok(())
}

pub(crate) async fn session_by_id(
    conn: &mut SqliteConnection,
    id: SessionId,
) -> Result<Option<DrivingSession>, StoreError> {
    sqlx::query("select * from driving_sessions where id = ?1")
        .bind(id.to_string())
        .fetch_optional(conn)
        .await
        .map_err(translate)?
        .map(|row| session(&Row(&row)))
        .transpose()
}

/// Conflict: [`ports::Unique::OpenSession`] when reopening a session beside an open one.
pub(crate) async fn update_session(conn: &mut SqliteConnection, s: &DrivingSession) -> Result<(), StoreError> {
    let result = sqlx::query(
        "update driving_sessions set started_at = ?2, ended_at = ?3, updated_at = ?4 \
         where id = ?1",
    )
    .bind(s.id.to_string())
    .bind(micros(s.started_at))
    .bind(s.ended_at.map(micros))
    .bind(now_micros())
    .execute(conn)
    .await
    .map_err(translate)?;
    sql_rows::require_row(result.rows_affected(), "driving session", s.id)
}

/// Sessions overlapping `[from, to)`: started before `to` and not ended by `from` (an open
/// session has no end). Oldest first.
pub(crate) async fn sessions_of_policy(
    conn: &mut SqliteConnection,
    policy_id: PolicyId,
    from: OffsetDateTime,
    to: OffsetDateTime,
) -> Result<Vec<DrivingSession>, StoreError> {
    sqlx::query(
        "select * from driving_sessions where policy_id = ?1 and started_at < ?3 \
         and (ended_at is null or ended_at > ?2) order by started_at, id",
    )
    .bind(policy_id.to_string())
    .bind(micros(from))
    .bind(micros(to))
    .fetch_all(conn)
    .await
    .map_err(translate)?
    .iter()
    .map(|row| session(&Row(row)))
    .collect()
}

#[async_trait]
impl InsuranceReads for SqliteStore {
    async fn policy(&self, id: PolicyId, _consistency: Consistency) -> Result<Option<Policy>, StoreError> {
        policy_by_id(&mut *self.reader().await?, id).await
    }

    async fn policies_of_member(
        &self,
        member_id: MemberId,
        _consistency: Consistency,
    ) -> Result<Vec<Policy>, StoreError> {
        policies_of_member(&mut *self.reader().await?, member_id).await
    }

    async fn policy_audit(&self, id: PolicyId, _consistency: Consistency) -> Result<Vec<PolicyAudit>, StoreError> {
        audit_of_policy(&mut *self.reader().await?, id).await
    }

    async fn session(&self, id: SessionId, _consistency: Consistency) -> Result<Option<DrivingSession>, StoreError> {
        session_by_id(&mut *self.reader().await?, id).await
    }

    async fn sessions_of_policy(
        &self,
        policy_id: PolicyId,
        from: OffsetDateTime,
        to: OffsetDateTime,
        _consistency: Consistency,
    ) -> Result<Vec<DrivingSession>, StoreError> {
        sessions_of_policy(&mut *self.reader().await?, policy_id, from, to).await
    }
}
