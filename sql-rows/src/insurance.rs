//! Insurance rows: policies, their audit trail, driving sessions.

use core_domain::insurance::{Actor, DrivingSession, Policy, PolicyAudit};
use ports::StoreError;

use crate::{Columns, corrupt};

/// A `policies` row.
///
/// # Errors
/// [`StoreError::Other`] for a column that does not decode.
pub fn policy(row: &impl Columns) -> Result<Policy, StoreError> {
    Ok(Policy {
        id: row.id("id")?,
        member_id: row.id("member_id")?,
        policy_number: row.text("policy_number")?,
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
            .with("at", 0);
        let err = audit(&row).unwrap_err();
        assert!(
            matches!(&err, StoreError::Other(m) if m == "corrupt value in column `action`: unknown audit action `renamed`"),
            "{err:?}"
        );
        let row = row.with("action", "expiry_moved_earlier");
        assert_eq!(audit(&row).map(|a| a.action).ok(), Some("expiry_moved_earlier"));
    }
}
