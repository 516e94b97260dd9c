//! Insurance SQL: policies (optimistic version check), their audit trail and driving
//! sessions. "One active policy" and "one open session" per member are partial unique
//! indexes, so the database refuses a second one even under concurrent enrolments.

use async_trait::async_trait;
use sqlx::PgConnection;
use time::OffsetDateTime;

use core_domain::insurance::{DrivingSession, Policy, PolicyAudit};
use core_domain::{MemberId, PolicyId, SessionId};
use ports::{Consistency, InsuranceReads, StoreError};
use sql_rows::insurance::{audit, policy, session};

use crate::codec::{Lock, Query, Row, lockable};
use crate::{PgStore, translate};

/// Binds the columns insert and update both write, `policy_number` to `version` (`$3`..`$10`).
fn bind_policy<'q>(query: Query<'q>, p: &Policy) -> Query<'q> {
    query
        .bind(&p.policy_number)
        .bind(p.hourly_premium)
        .bind(p.coverage_start)
        .bind(p.status.as_str())
        .bind(p.expired_at)
        .bind(p.expiry_reason.map(|r| r.as_str()))
        .bind(p.expired_by.as_ref().map(ToString::to_string))
        .bind(p.version)
}

/// Conflicts: [`ports::Unique::PolicyNumber`], [`ports::Unique::ActivePolicy`].
pub(crate) async fn insert_policy(conn: &mut PgConnection, p: &Policy) -> Result<(), StoreError> {
    let query = sqlx::query(
        "insert into policies (id, member_id, policy_number, hourly_premium, coverage_start, \
         status, expired_at, expiry_reason, expired_by, version, created_at, updated_at) \
         values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $11)",
    )
    .bind(p.id.0)
    .bind(p.member_id.0);
    bind_policy(query, p)
        .bind(p.created_at)
        .execute(conn)
        .await
        .map_err(translate)?;
    Ok(())
}

pub(crate) async fn policy_by_id(
    conn: &mut PgConnection,
    id: PolicyId,
    lock: Lock,
) -> Result<Option<Policy>, StoreError> {
    sqlx::query(lockable!("select * from policies where id = $1", lock))
        .bind(id.0)
        .fetch_optional(conn)
        .await
        .map_err(translate)?
        .map(|row| policy(&Row(&row)))
        .transpose()
}

pub(crate) async fn policy_by_number(
    conn: &mut PgConnection,
    policy_number: &str,
    lock: Lock,
) -> Result<Option<Policy>, StoreError> {
    sqlx::query(lockable!("select * from policies where policy_number = $1", lock))
        .bind(policy_number)
        .fetch_optional(conn)
        .await
        .map_err(translate)?
        .map(|row| policy(&Row(&row)))
        .transpose()
}

/// Newest first.
pub(crate) async fn policies_of_member(
    conn: &mut PgConnection,
    member_id: MemberId,
    lock: Lock,
) -> Result<Vec<Policy>, StoreError> {
    sqlx::query(lockable!(
        "select * from policies where member_id = $1 order by created_at desc, id desc",
        lock
    ))
    .bind(member_id.0)
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
    conn: &mut PgConnection,
    p: &Policy,
    expected_version: i64,
) -> Result<(), StoreError> {
    let query = sqlx::query(
        "update policies set policy_number = $3, hourly_premium = $4, coverage_start = $5, \
         status = $6, expired_at = $7, expiry_reason = $8, expired_by = $9, version = $10, \
         updated_at = now() where id = $1 and version = $2",
    )
    .bind(p.id.0)
    .bind(expected_version);
    let result = bind_policy(query, p).execute(conn).await.map_err(translate)?;
    if result.rows_affected() == 0 {
        return Err(StoreError::Concurrency);
    }
    Ok(())
}

pub(crate) async fn insert_audit(conn: &mut PgConnection, a: &PolicyAudit) -> Result<(), StoreError> {
    sqlx::query(
        "insert into policy_audit (id, policy_id, actor, action, reason, previous_expired_at, \
         new_expired_at, at, created_at) values ($1, $2, $3, $4, $5, $6, $7, $8, now())",
    )
    .bind(a.id.0)
    .bind(a.policy_id.0)
    .bind(a.actor.to_string())
    .bind(a.action)
    .bind(a.reason.map(|r| r.as_str()))
    .bind(a.previous_expired_at)
    .bind(a.new_expired_at)
    .bind(a.at)
    .execute(conn)
    .await
    .map_err(translate)?;
    Ok(())
}

/// Oldest first; rows of the same instant in insertion order.
pub(crate) async fn audit_of_policy(conn: &mut PgConnection, id: PolicyId) -> Result<Vec<PolicyAudit>, StoreError> {
    sqlx::query("select * from policy_audit where policy_id = $1 order by at, seq")
        .bind(id.0)
        .fetch_all(conn)
        .await
        .map_err(translate)?
        .iter()
        .map(|row| audit(&Row(row)))
        .collect()
}

/// Conflict: [`ports::Unique::OpenSession`].
pub(crate) async fn insert_session(conn: &mut PgConnection, s: &DrivingSession) -> Result<(), StoreError> {
    sqlx::query(
        "insert into driving_sessions (id, member_id, policy_id, started_at, ended_at, \
         created_at, updated_at) values ($1, $2, $3, $4, $5, now(), now())",
    )
    .bind(s.id.0)
    .bind(s.member_id.0)
    .bind(s.policy_id.0)
    .bind(s.started_at)
    .bind(s.ended_at)
    .execute(conn)
    .await
    .map_err(translate)?;
    Ok(())
}

pub(crate) async fn session_by_id(
    conn: &mut PgConnection,
    id: SessionId,
    lock: Lock,
) -> Result<Option<DrivingSession>, StoreError> {
    sqlx::query(lockable!("select * from driving_sessions where id = $1", lock))
        .bind(id.0)
        .fetch_optional(conn)
        .await
        .map_err(translate)?
        .map(|row| session(&Row(&row)))
        .transpose()
}

/// Conflict: [`ports::Unique::OpenSession`] when reopening a session beside an open one.
pub(crate) async fn update_session(conn: &mut PgConnection, s: &DrivingSession) -> Result<(), StoreError> {
    let result = sqlx::query(
        "update driving_sessions set started_at = $2, ended_at = $3, updated_at = now() \
         where id = $1",
    )
    .bind(s.id.0)
    .bind(s.started_at)
    .bind(s.ended_at)
    .execute(conn)
    .await
    .map_err(translate)?;
    sql_rows::require_row(result.rows_affected(), "driving session", s.id)
}

/// Sessions overlapping `[from, to)`: started before `to` and not ended by `from` (an open
/// session has no end). Oldest first.
pub(crate) async fn sessions_of_policy(
    conn: &mut PgConnection,
    policy_id: PolicyId,
    from: OffsetDateTime,
    to: OffsetDateTime,
) -> Result<Vec<DrivingSession>, StoreError> {
    sqlx::query(
        "select * from driving_sessions where policy_id = $1 and started_at < $3 \
         and (ended_at is null or ended_at > $2) order by started_at, id",
    )
    .bind(policy_id.0)
    .bind(from)
    .bind(to)
    .fetch_all(conn)
    .await
    .map_err(translate)?
    .iter()
    .map(|row| session(&Row(row)))
    .collect()
}

#[async_trait]
impl InsuranceReads for PgStore {
    async fn policy(&self, id: PolicyId, consistency: Consistency) -> Result<Option<Policy>, StoreError> {
        self.read(&consistency, |conn| Box::pin(policy_by_id(conn, id, Lock::None)))
            .await
    }

    async fn policies_of_member(
        &self,
        member_id: MemberId,
        consistency: Consistency,
    ) -> Result<Vec<Policy>, StoreError> {
        self.read(&consistency, |conn| {
            Box::pin(policies_of_member(conn, member_id, Lock::None))
        })
        .await
    }

    async fn policy_audit(&self, id: PolicyId, consistency: Consistency) -> Result<Vec<PolicyAudit>, StoreError> {
        self.read(&consistency, |conn| Box::pin(audit_of_policy(conn, id)))
            .await
    }

    async fn session(&self, id: SessionId, consistency: Consistency) -> Result<Option<DrivingSession>, StoreError> {
        self.read(&consistency, |conn| Box::pin(session_by_id(conn, id, Lock::None)))
            .await
    }

    async fn sessions_of_policy(
        &self,
        policy_id: PolicyId,
        from: OffsetDateTime,
        to: OffsetDateTime,
        consistency: Consistency,
    ) -> Result<Vec<DrivingSession>, StoreError> {
        self.read(&consistency, |conn| {
            Box::pin(sessions_of_policy(conn, policy_id, from, to))
        })
        .await
    }
}
