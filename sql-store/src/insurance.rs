//! Insurance: policies (optimistic version check), their audit trail and driving sessions.
//! "One active policy" and "one open session" per member are partial unique indexes, so the
//! database refuses a second one even under concurrent enrolments.

use async_trait::async_trait;
use time::OffsetDateTime;

use core_domain::insurance::{Actor, DrivingSession, InsurancePlan, InsurerCallback, Policy, PolicyAudit};
use core_domain::{MemberId, PlanId, PolicyId, SessionId};
use ports::{Consistency, InsuranceReads, InsuranceWrites, Page, PageRequest, PolicyKey, StoreError, TimeKey};

use crate::SqlUnitOfWork;
use crate::backend::Backend;
use crate::sql::{Lock, SqlConn, Statement, sql};
use crate::{Columns, SqlStore, corrupt, require_row};

/// A `policies` row.
///
/// # Errors
/// [`StoreError::Other`] for a column that does not decode.
pub fn policy(row: &impl Columns) -> Result<Policy, StoreError> {
    Ok(Policy {
        id: row.id("id")?,
        member_id: row.id("member_id")?,
        policy_number: row.text("policy_number")?,
        plan_id: row.opt_id("plan_id")?,
        hourly_premium: row.int("hourly_premium")?,
        coverage_start: row.time("coverage_start")?,
        status: row.parsed("status")?,
        expired_at: row.opt_time("expired_at")?,
        expiry_reason: row.opt_parsed("expiry_reason")?,
        expired_by: row.opt_parsed::<Actor>("expired_by")?,
        version: row.int("version")?,
        created_at: row.time("created_at")?,
    })
}

/// An `insurance_plans` row.
///
/// # Errors
/// [`StoreError::Other`] for a column that does not decode.
pub fn plan(row: &impl Columns) -> Result<InsurancePlan, StoreError> {
    Ok(InsurancePlan {
        id: row.id("id")?,
        name: row.text("name")?,
        hourly_premium: row.int("hourly_premium")?,
        status: row.parsed("status")?,
        created_at: row.time("created_at")?,
        updated_at: row.time("updated_at")?,
    })
}

/// The domain keeps audit actions as `&'static str`; map the stored text back onto them.
fn audit_action(raw: &str) -> Result<&'static str, StoreError> {
    match raw {
        "enrolled" => Ok("enrolled"),
        "expired" => Ok("expired"),
        "expiry_moved_earlier" => Ok("expiry_moved_earlier"),
        other => Err(corrupt("action", format_args!("unknown audit action `{other}`"))),
    }
}

/// A `policy_audit` row.
///
/// # Errors
/// [`StoreError::Other`] for a column that does not decode, or an unknown `action`.
pub fn audit(row: &impl Columns) -> Result<PolicyAudit, StoreError> {
    Ok(PolicyAudit {
        id: row.id("id")?,
        policy_id: row.id("policy_id")?,
        actor: row.parsed("actor")?,
        action: audit_action(&row.text("action")?)?,
        reason: row.opt_parsed("reason")?,
        previous_expired_at: row.opt_time("previous_expired_at")?,
        new_expired_at: row.opt_time("new_expired_at")?,
        at: row.time("at")?,
        note: row.opt_text("note")?,
    })
}

/// An `insurer_callbacks` row.
///
/// # Errors
/// [`StoreError::Other`] for a column that does not decode.
pub fn insurer_callback(row: &impl Columns) -> Result<InsurerCallback, StoreError> {
    Ok(InsurerCallback {
        id: row.id("id")?,
        insurer_event_id: row.text("insurer_event_id")?,
        policy_id: row.id("policy_id")?,
        cancelled_at: row.time("cancelled_at")?,
        outcome: row.parsed("outcome")?,
        received_at: row.time("received_at")?,
    })
}

/// A `driving_sessions` row.
///
/// # Errors
/// [`StoreError::Other`] for a column that does not decode.
pub fn session(row: &impl Columns) -> Result<DrivingSession, StoreError> {
    Ok(DrivingSession {
        id: row.id("id")?,
        member_id: row.id("member_id")?,
        policy_id: row.id("policy_id")?,
        started_at: row.time("started_at")?,
        ended_at: row.opt_time("ended_at")?,
    })
}

/// Binds the columns insert and update both write, `policy_number` to `version`.
fn bind_policy<'a>(statement: Statement<'a>, p: &'a Policy, expired_by: Option<&'a str>) -> Statement<'a> {
    statement
        .text(&p.policy_number)
        .int(p.hourly_premium)
        .time(p.coverage_start)
        .text(p.status.as_str())
        .opt_time(p.expired_at)
        .opt_text(p.expiry_reason.map(|r| r.as_str()))
        .opt_text(expired_by)
        .int(p.version)
}

/// Conflicts: [`ports::Unique::PolicyNumber`], [`ports::Unique::ActivePolicy`].
pub(crate) async fn insert_policy(conn: &mut impl SqlConn, p: &Policy) -> Result<(), StoreError> {
    let expired_by = p.expired_by.as_ref().map(ToString::to_string);
    let statement = sql(
        "insert into policies (id, member_id, plan_id, policy_number, hourly_premium, coverage_start, \
         status, expired_at, expiry_reason, expired_by, version, created_at, updated_at) \
         values (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .id(p.id)
    .id(p.member_id)
    .opt_id(p.plan_id);
    bind_policy(statement, p, expired_by.as_deref())
        .time(p.created_at)
        .time(p.created_at)
        .execute(conn)
        .await?;
    Ok(())
}

pub(crate) async fn policy_by_id(
    conn: &mut impl SqlConn,
    id: PolicyId,
    lock: Lock,
) -> Result<Option<Policy>, StoreError> {
    sql("select * from policies where id = ? {lock}")
        .id(id)
        .lock(lock)
        .fetch_optional(conn, policy)
        .await
}

pub(crate) async fn policy_by_number(
    conn: &mut impl SqlConn,
    policy_number: &str,
    lock: Lock,
) -> Result<Option<Policy>, StoreError> {
    sql("select * from policies where policy_number = ? {lock}")
        .text(policy_number)
        .lock(lock)
        .fetch_optional(conn, policy)
        .await
}

/// Every policy of the member, newest first, locked (a transaction's).
async fn policies_of_member(conn: &mut impl SqlConn, member_id: MemberId) -> Result<Vec<Policy>, StoreError> {
    sql("select * from policies where member_id = ? order by created_at desc, id desc {lock}")
        .id(member_id)
        .lock(Lock::ForUpdate)
        .fetch_all(conn, policy)
        .await
}

/// One page of the member's policies, newest first, with one row more than the page to
/// tell whether another follows; for [`policy`].
pub(crate) fn policies_page_statement<'a>(member_id: MemberId, page: &PageRequest<PolicyKey>) -> Statement<'a> {
    sql(
        "select * from policies where member_id = ? and (created_at < ? or (created_at = ? and id < ?)) \
         order by created_at desc, id desc limit ?",
    )
    .id(member_id)
    .before_id_key(page.after.as_ref())
    .limit(page.probe())
}

/// See [`policies_page_statement`].
async fn policies_page(
    conn: &mut impl SqlConn,
    member_id: MemberId,
    page: &PageRequest<PolicyKey>,
) -> Result<Page<Policy, PolicyKey>, StoreError> {
    let policies = policies_page_statement(member_id, page).fetch_all(conn, policy).await?;
    Ok(Page::keyed(policies, page, |p| TimeKey {
        at: p.created_at,
        tie: p.id,
    }))
}

/// Saves `p` if the stored version is still `expected_version`, in one statement; no row
/// matched → [`StoreError::Concurrency`] (a concurrent change won).
pub(crate) async fn update_policy(
    conn: &mut impl SqlConn,
    p: &Policy,
    expected_version: i64,
) -> Result<(), StoreError> {
    let expired_by = p.expired_by.as_ref().map(ToString::to_string);
    let statement = sql(
        "update policies set policy_number = ?, hourly_premium = ?, coverage_start = ?, \
         status = ?, expired_at = ?, expiry_reason = ?, expired_by = ?, version = ?, \
         updated_at = ? where id = ? and version = ?",
    );
    let changed = bind_policy(statement, p, expired_by.as_deref())
        .time(OffsetDateTime::now_utc())
        .id(p.id)
        .int(expected_version)
        .execute(conn)
        .await?;
    if changed == 0 {
        return Err(StoreError::Concurrency);
    }
    Ok(())
}

/// Appends to the audit trail (`seq` keeps the insertion order of rows of one instant).
pub(crate) async fn insert_audit(conn: &mut impl SqlConn, a: &PolicyAudit) -> Result<(), StoreError> {
    let actor = a.actor.to_string();
    sql(
        "insert into policy_audit (id, policy_id, actor, action, reason, previous_expired_at, \
         new_expired_at, at, created_at, note) values (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .id(a.id)
    .id(a.policy_id)
    .text(&actor)
    .text(a.action)
    .opt_text(a.reason.map(|r| r.as_str()))
    .opt_time(a.previous_expired_at)
    .opt_time(a.new_expired_at)
    .time(a.at)
    .time(OffsetDateTime::now_utc())
    .opt_text(a.note.as_deref())
    .execute(conn)
    .await?;
    Ok(())
}

pub(crate) async fn insert_insurer_callback(conn: &mut impl SqlConn, c: &InsurerCallback) -> Result<(), StoreError> {
    sql(
        "insert into insurer_callbacks (id, insurer_event_id, policy_id, cancelled_at, outcome, \
         received_at, created_at) values (?, ?, ?, ?, ?, ?, ?)",
    )
    .id(c.id)
    .text(&c.insurer_event_id)
    .id(c.policy_id)
    .time(c.cancelled_at)
    .text(c.outcome.as_str())
    .time(c.received_at)
    .time(OffsetDateTime::now_utc())
    .execute(conn)
    .await?;
    Ok(())
}

/// Oldest first.
pub(crate) async fn callbacks_of_policy(
    conn: &mut impl SqlConn,
    id: PolicyId,
) -> Result<Vec<InsurerCallback>, StoreError> {
    sql("select * from insurer_callbacks where policy_id = ? order by received_at, id")
        .id(id)
        .fetch_all(conn, insurer_callback)
        .await
}

/// Oldest first; rows of the same instant in insertion order.
pub(crate) async fn audit_of_policy(conn: &mut impl SqlConn, id: PolicyId) -> Result<Vec<PolicyAudit>, StoreError> {
    sql("select * from policy_audit where policy_id = ? order by at, seq")
        .id(id)
        .fetch_all(conn, audit)
        .await
}

pub(crate) async fn insert_plan(conn: &mut impl SqlConn, p: &InsurancePlan) -> Result<(), StoreError> {
    sql(
        "insert into insurance_plans (id, name, hourly_premium, status, created_at, updated_at) \
         values (?, ?, ?, ?, ?, ?)",
    )
    .id(p.id)
    .text(&p.name)
    .int(p.hourly_premium)
    .text(p.status.as_str())
    .time(p.created_at)
    .time(p.updated_at)
    .execute(conn)
    .await?;
    Ok(())
}

pub(crate) async fn plan_by_id(
    conn: &mut impl SqlConn,
    id: PlanId,
    lock: Lock,
) -> Result<Option<InsurancePlan>, StoreError> {
    sql("select * from insurance_plans where id = ? {lock}")
        .id(id)
        .lock(lock)
        .fetch_optional(conn, plan)
        .await
}

/// By name (then id, for plans of one name).
pub(crate) async fn plans(conn: &mut impl SqlConn, with_retired: bool) -> Result<Vec<InsurancePlan>, StoreError> {
    let statement = if with_retired {
        sql("select * from insurance_plans order by name, id")
    } else {
        sql("select * from insurance_plans where status = 'active' order by name, id")
    };
    statement.fetch_all(conn, plan).await
}

pub(crate) async fn update_plan(conn: &mut impl SqlConn, p: &InsurancePlan) -> Result<(), StoreError> {
    let changed =
        sql("update insurance_plans set name = ?, hourly_premium = ?, status = ?, updated_at = ? where id = ?")
            .text(&p.name)
            .int(p.hourly_premium)
            .text(p.status.as_str())
            .time(p.updated_at)
            .id(p.id)
            .execute(conn)
            .await?;
    require_row(changed, "insurance plan", p.id)
}

/// Conflict: [`ports::Unique::OpenSession`].
pub(crate) async fn insert_session(conn: &mut impl SqlConn, s: &DrivingSession) -> Result<(), StoreError> {
    let now = OffsetDateTime::now_utc();
    sql(
        "insert into driving_sessions (id, member_id, policy_id, started_at, ended_at, \
         created_at, updated_at) values (?, ?, ?, ?, ?, ?, ?)",
    )
    .id(s.id)
    .id(s.member_id)
    .id(s.policy_id)
    .time(s.started_at)
    .opt_time(s.ended_at)
    .time(now)
    .time(now)
    .execute(conn)
    .await?;
    Ok(())
}

pub(crate) async fn session_by_id(
    conn: &mut impl SqlConn,
    id: SessionId,
    lock: Lock,
) -> Result<Option<DrivingSession>, StoreError> {
    sql("select * from driving_sessions where id = ? {lock}")
        .id(id)
        .lock(lock)
        .fetch_optional(conn, session)
        .await
}

/// Conflict: [`ports::Unique::OpenSession`] when reopening a session beside an open one.
pub(crate) async fn update_session(conn: &mut impl SqlConn, s: &DrivingSession) -> Result<(), StoreError> {
    let changed = sql("update driving_sessions set started_at = ?, ended_at = ?, updated_at = ? where id = ?")
        .time(s.started_at)
        .opt_time(s.ended_at)
        .time(OffsetDateTime::now_utc())
        .id(s.id)
        .execute(conn)
        .await?;
    require_row(changed, "driving session", s.id)
}

/// The policy's sessions overlapping `[from, to)` (a premium statement's), for [`session`]:
/// started before `to` and not ended by `from` (an open session has no end). Oldest first.
pub(crate) fn sessions_of_policy_statement<'a>(
    policy_id: PolicyId,
    from: OffsetDateTime,
    to: OffsetDateTime,
) -> Statement<'a> {
    sql("select * from driving_sessions where policy_id = ? and started_at < ? \
         and (ended_at is null or ended_at > ?) order by started_at, id")
    .id(policy_id)
    .time(to)
    .time(from)
}

/// See [`sessions_of_policy_statement`].
pub(crate) async fn sessions_of_policy(
    conn: &mut impl SqlConn,
    policy_id: PolicyId,
    from: OffsetDateTime,
    to: OffsetDateTime,
) -> Result<Vec<DrivingSession>, StoreError> {
    sessions_of_policy_statement(policy_id, from, to)
        .fetch_all(conn, session)
        .await
}

#[async_trait]
impl<B: Backend> InsuranceWrites for SqlUnitOfWork<B> {
    async fn insert_policy(&mut self, policy: &Policy) -> Result<(), StoreError> {
        let result = insert_policy(&mut self.conn()?, policy).await;
        self.track(result)
    }

    async fn policy_by_id(&mut self, id: PolicyId) -> Result<Option<Policy>, StoreError> {
        let result = policy_by_id(&mut self.conn()?, id, Lock::ForUpdate).await;
        self.track(result)
    }

    async fn policy_by_number(&mut self, policy_number: &str) -> Result<Option<Policy>, StoreError> {
        let result = policy_by_number(&mut self.conn()?, policy_number, Lock::ForUpdate).await;
        self.track(result)
    }

    async fn policies_of_member(&mut self, member_id: MemberId) -> Result<Vec<Policy>, StoreError> {
        let result = policies_of_member(&mut self.conn()?, member_id).await;
        self.track(result)
    }

    async fn update_policy(&mut self, policy: &Policy, expected_version: i64) -> Result<(), StoreError> {
        let result = update_policy(&mut self.conn()?, policy, expected_version).await;
        self.track(result)
    }

    async fn insert_insurer_callback(&mut self, callback: &InsurerCallback) -> Result<(), StoreError> {
        let result = insert_insurer_callback(&mut self.conn()?, callback).await;
        self.track(result)
    }

    async fn insert_audit(&mut self, audit: &PolicyAudit) -> Result<(), StoreError> {
        let result = insert_audit(&mut self.conn()?, audit).await;
        self.track(result)
    }

    async fn insert_session(&mut self, session: &DrivingSession) -> Result<(), StoreError> {
        let result = insert_session(&mut self.conn()?, session).await;
        self.track(result)
    }

    async fn session_by_id(&mut self, id: SessionId) -> Result<Option<DrivingSession>, StoreError> {
        let result = session_by_id(&mut self.conn()?, id, Lock::ForUpdate).await;
        self.track(result)
    }

    async fn update_session(&mut self, session: &DrivingSession) -> Result<(), StoreError> {
        let result = update_session(&mut self.conn()?, session).await;
        self.track(result)
    }

    async fn insert_plan(&mut self, plan: &InsurancePlan) -> Result<(), StoreError> {
        let result = insert_plan(&mut self.conn()?, plan).await;
        self.track(result)
    }

    async fn plan_by_id(&mut self, id: PlanId) -> Result<Option<InsurancePlan>, StoreError> {
        let result = plan_by_id(&mut self.conn()?, id, Lock::None).await;
        self.track(result)
    }

    async fn plan_for_update(&mut self, id: PlanId) -> Result<Option<InsurancePlan>, StoreError> {
        let result = plan_by_id(&mut self.conn()?, id, Lock::ForUpdate).await;
        self.track(result)
    }

    async fn update_plan(&mut self, plan: &InsurancePlan) -> Result<(), StoreError> {
        let result = update_plan(&mut self.conn()?, plan).await;
        self.track(result)
    }
}

#[async_trait]
impl<B: Backend> InsuranceReads for SqlStore<B> {
    async fn policy(&self, id: PolicyId, consistency: Consistency) -> Result<Option<Policy>, StoreError> {
        self.read(&consistency, id, |conn, &id| {
            Box::pin(policy_by_id(conn, id, Lock::None))
        })
        .await
    }

    async fn policies_of_member(
        &self,
        member_id: MemberId,
        page: &PageRequest<PolicyKey>,
        consistency: Consistency,
    ) -> Result<Page<Policy, PolicyKey>, StoreError> {
        self.read(&consistency, (member_id, page.clone()), |conn, (member_id, page)| {
            Box::pin(policies_page(conn, *member_id, page))
        })
        .await
    }

    async fn policy_audit(&self, id: PolicyId, consistency: Consistency) -> Result<Vec<PolicyAudit>, StoreError> {
        self.read(&consistency, id, |conn, &id| Box::pin(audit_of_policy(conn, id)))
            .await
    }

    async fn session(&self, id: SessionId, consistency: Consistency) -> Result<Option<DrivingSession>, StoreError> {
        self.read(&consistency, id, |conn, &id| {
            Box::pin(session_by_id(conn, id, Lock::None))
        })
        .await
    }

    async fn sessions_of_policy(
        &self,
        policy_id: PolicyId,
        from: OffsetDateTime,
        to: OffsetDateTime,
        consistency: Consistency,
    ) -> Result<Vec<DrivingSession>, StoreError> {
        self.read(&consistency, (policy_id, from, to), |conn, &(policy_id, from, to)| {
            Box::pin(sessions_of_policy(conn, policy_id, from, to))
        })
        .await
    }

    async fn plan(&self, id: PlanId, consistency: Consistency) -> Result<Option<InsurancePlan>, StoreError> {
        self.read(&consistency, id, |conn, &id| Box::pin(plan_by_id(conn, id, Lock::None)))
            .await
    }

    async fn plans(&self, with_retired: bool, consistency: Consistency) -> Result<Vec<InsurancePlan>, StoreError> {
        self.read(&consistency, with_retired, |conn, &with_retired| {
            Box::pin(plans(conn, with_retired))
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fake::Row;

    #[test]
    fn an_unknown_audit_action_is_corrupt_data() {
        let row = Row::default()
            .with("id", uuid::Uuid::nil())
            .with("policy_id", uuid::Uuid::nil())
            .with("actor", "insurer")
            .with("action", "renamed")
            .null("reason")
            .null("previous_expired_at")
            .null("new_expired_at")
            .with("at", 0)
            .null("note");
        let err = audit(&row).unwrap_err();
        assert!(
            matches!(&err, StoreError::Other(m) if m == "corrupt value in column `action`: unknown audit action `renamed`"),
            "{err:?}"
        );
        let row = row.with("action", "expiry_moved_earlier");
        assert_eq!(audit(&row).map(|a| a.action).ok(), Some("expiry_moved_earlier"));
    }
}
