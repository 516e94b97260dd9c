//! Time-based rider insurance: policies, their expiry, driving sessions and premium.
//!
//! Insurers report cancellations late, so an expiry may arrive after the fact and may move an
//! already-expired policy *earlier*. Premium is always recomputed from the sessions and the
//! current expiry, so premium for time after the effective expiry is never billed.

use std::fmt;
use std::str::FromStr;

use time::OffsetDateTime;

use crate::event::EventPayload;
use crate::validation::{UnknownValue, ValidationErrors, in_range, text};
use crate::{AuditId, EventId, Krw, MemberId, PlanId, PolicyId, SessionId};

pub const HOURLY_PREMIUM_MAX: Krw = 1_000_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PolicyStatus {
    Active,
    Expired,
}

impl PolicyStatus {
    pub fn as_str(&self) -> &'static str {
        match self {
            PolicyStatus::Active => "active",
            PolicyStatus::Expired => "expired",
        }
    }
}

impl FromStr for PolicyStatus {
    type Err = UnknownValue;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "active" => Ok(PolicyStatus::Active),
            "expired" => Ok(PolicyStatus::Expired),
            other => Err(UnknownValue::new("policy status", other)),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExpiryReason {
    MemberWithdrawn,
    InsurerCancellation,
    AdminRequest,
}

impl ExpiryReason {
    pub fn as_str(&self) -> &'static str {
        match self {
            ExpiryReason::MemberWithdrawn => "member_withdrawn",
            ExpiryReason::InsurerCancellation => "insurer_cancellation",
            ExpiryReason::AdminRequest => "admin_request",
        }
    }
}

impl FromStr for ExpiryReason {
    type Err = UnknownValue;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "member_withdrawn" => Ok(ExpiryReason::MemberWithdrawn),
            "insurer_cancellation" => Ok(ExpiryReason::InsurerCancellation),
            "admin_request" => Ok(ExpiryReason::AdminRequest),
            other => Err(UnknownValue::new("expiry reason", other)),
        }
    }
}

/// Who made a change, for the audit trail: `member:<id>`, `staff:<id>`, `insurer`, `system:<job>`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Actor {
    Member(MemberId),
    Staff(MemberId),
    Insurer,
    System(String),
}

impl fmt::Display for Actor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Actor::Member(id) => write!(f, "member:{id}"),
            Actor::Staff(id) => write!(f, "staff:{id}"),
            Actor::Insurer => f.write_str("insurer"),
            Actor::System(job) => write!(f, "system:{job}"),
        }
    }
}

impl FromStr for Actor {
    type Err = UnknownValue;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || UnknownValue::new("actor", s);
        match s.split_once(':') {
            None if s == "insurer" => Ok(Actor::Insurer),
            Some(("member", id)) => id.parse().map(Actor::Member).map_err(|_| bad()),
            Some(("staff", id)) => id.parse().map(Actor::Staff).map_err(|_| bad()),
            Some(("system", job)) => Ok(Actor::System(job.to_owned())),
            _ => Err(bad()),
        }
    }
}

impl serde::Serialize for Actor {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Actor {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(deserializer)?;
        raw.parse().map_err(serde::de::Error::custom)
    }
}

/// Whether riders can enrol in a plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PlanStatus {
    /// Offered: riders can enrol.
    Active,
    /// No longer offered; policies already written on it are unchanged.
    Retired,
}

impl PlanStatus {
    pub fn as_str(&self) -> &'static str {
        match self {
            PlanStatus::Active => "active",
            PlanStatus::Retired => "retired",
        }
    }
}

impl FromStr for PlanStatus {
    type Err = UnknownValue;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "active" => Ok(PlanStatus::Active),
            "retired" => Ok(PlanStatus::Retired),
            other => Err(UnknownValue::new("plan status", other)),
        }
    }
}

/// An insurance plan that staff manage: riders pick one, and its hourly premium is copied
/// into the policy at enrolment, so a later change of the plan never re-prices a policy.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct InsurancePlan {
    pub id: PlanId,
    pub name: String,
    pub hourly_premium: Krw,
    pub status: PlanStatus,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
}

/// A validated plan: a name of 1–100 characters and an hourly premium of 1–1,000,000 KRW.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewPlan {
    pub name: String,
    pub hourly_premium: Krw,
}

impl NewPlan {
    pub fn parse(name: &str, hourly_premium: i64) -> Result<Self, ValidationErrors> {
        let mut errors = ValidationErrors::new();
        let name = errors.check("name", text(name, 1, 100));
        errors.check("hourly_premium", in_range(hourly_premium, 1, HOURLY_PREMIUM_MAX));
        match name {
            Some(name) if errors.is_empty() => Ok(Self { name, hourly_premium }),
            _ => Err(errors),
        }
    }
}

/// A validated change of a plan: any of its name, premium (for enrolments from now on)
/// and status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanPatch {
    pub name: Option<String>,
    pub hourly_premium: Option<Krw>,
    pub status: Option<PlanStatus>,
}

impl PlanPatch {
    pub fn parse(
        name: Option<&str>,
        hourly_premium: Option<i64>,
        status: Option<&str>,
    ) -> Result<Self, ValidationErrors> {
        let mut errors = ValidationErrors::new();
        if name.is_none() && hourly_premium.is_none() && status.is_none() {
            errors.add("name", "give `name`, `hourly_premium`, `status` or several");
        }
        let name = name.and_then(|name| errors.check("name", text(name, 1, 100)));
        if let Some(premium) = hourly_premium {
            errors.check("hourly_premium", in_range(premium, 1, HOURLY_PREMIUM_MAX));
        }
        let status = match status.map(str::parse::<PlanStatus>) {
            None => None,
            Some(Ok(status)) => Some(status),
            Some(Err(_)) => {
                errors.add("status", "must be `active` or `retired`");
                None
            }
        };
        errors.into_result(|| Self {
            name,
            hourly_premium,
            status,
        })
    }
}

impl InsurancePlan {
    pub fn create(id: PlanId, new: NewPlan, now: OffsetDateTime) -> Self {
        Self {
            id,
            name: new.name,
            hourly_premium: new.hourly_premium,
            status: PlanStatus::Active,
            created_at: now,
            updated_at: now,
        }
    }

    /// Applies a change; `false` when it changes nothing.
    pub fn apply(&mut self, patch: PlanPatch, now: OffsetDateTime) -> bool {
        let before = (self.name.clone(), self.hourly_premium, self.status);
        if let Some(name) = patch.name {
            self.name = name;
        }
        if let Some(premium) = patch.hourly_premium {
            self.hourly_premium = premium;
        }
        if let Some(status) = patch.status {
            self.status = status;
        }
        let changed = before != (self.name.clone(), self.hourly_premium, self.status);
        if changed {
            self.updated_at = now;
        }
        changed
    }

    pub fn is_offered(&self) -> bool {
        self.status == PlanStatus::Active
    }
}

/// The policy number the server gives a policy enrolled without the insurer's: unique
/// because the policy id is (`HR-` and the id's 32 hex digits, upper case).
pub fn policy_number_for(id: PolicyId) -> String {
    format!("HR-{}", id.0.simple()).to_ascii_uppercase()
}

/// A validated enrolment: the insurer's policy number if the rider has one (1–64 letters,
/// digits, `-` or `_`; unique), else the server numbers the policy. The premium is never
/// the rider's: it comes from the plan.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NewPolicy {
    pub policy_number: Option<String>,
}

impl NewPolicy {
    pub fn parse(policy_number: Option<&str>) -> Result<Self, ValidationErrors> {
        let Some(raw) = policy_number else {
            return Ok(Self::default());
        };
        let number = raw;
        let number_ok = (1..=64).contains(&number.len())
            && number
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if number_ok {
            Ok(Self {
                policy_number: Some(number.to_owned()),
            })
        } else {
            Err(ValidationErrors::field(
                "policy_number",
                "must be 1 to 64 letters, digits, '-' or '_'",
            ))
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExpireError {
    #[error("the effective time is before the policy's coverage start")]
    BeforeCoverageStart,
    #[error("the effective time is in the future")]
    InFuture,
}

/// What an expiry did to a policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExpiryChange {
    /// An active policy became expired.
    Expired,
    /// An expired policy moved to an earlier effective time.
    MovedEarlier { previous: OffsetDateTime },
    /// Nothing changed: the policy already expired at or before that time.
    Unchanged,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Policy {
    pub id: PolicyId,
    pub member_id: MemberId,
    pub policy_number: String,
    /// The plan it was written on; `None` for a policy from before plans existed.
    #[serde(default)]
    pub plan_id: Option<PlanId>,
    /// The plan's premium at enrolment: later plan changes do not re-price the policy.
    pub hourly_premium: Krw,
    #[serde(with = "time::serde::rfc3339")]
    pub coverage_start: OffsetDateTime,
    pub status: PolicyStatus,
    #[serde(with = "time::serde::rfc3339::option")]
    pub expired_at: Option<OffsetDateTime>,
    pub expiry_reason: Option<ExpiryReason>,
    pub expired_by: Option<Actor>,
    /// Optimistic-concurrency version, bumped on every change.
    pub version: i64,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

/// One row of the audit trail: who changed a policy, how and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyAudit {
    pub id: AuditId,
    pub policy_id: PolicyId,
    pub actor: Actor,
    /// `enrolled`, `expired` or `expiry_moved_earlier`.
    pub action: &'static str,
    pub reason: Option<ExpiryReason>,
    pub previous_expired_at: Option<OffsetDateTime>,
    pub new_expired_at: Option<OffsetDateTime>,
    pub at: OffsetDateTime,
    /// What the staff member who made the change wrote about it ([`parse_note`]).
    pub note: Option<String>,
}

/// The longest note staff may attach to a change.
pub const NOTE_MAX_CHARS: usize = 1_000;

/// A staff note: trimmed, 1 to [`NOTE_MAX_CHARS`] characters; `None` stays `None`.
pub fn parse_note(raw: Option<&str>) -> Result<Option<String>, ValidationErrors> {
    let Some(raw) = raw else {
        return Ok(None);
    };
    let note = raw.trim();
    let chars = note.chars().count();
    if chars == 0 || chars > NOTE_MAX_CHARS {
        return Err(ValidationErrors::field(
            "note",
            format!("must be 1 to {NOTE_MAX_CHARS} characters"),
        ));
    }
    Ok(Some(note.to_owned()))
}

/// What an insurer callback did to its policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallbackOutcome {
    /// The policy expired.
    Expired,
    /// The policy's expiry moved earlier.
    MovedEarlier,
    /// The policy had already expired at or before that time.
    Unchanged,
}

impl CallbackOutcome {
    pub fn as_str(&self) -> &'static str {
        match self {
            CallbackOutcome::Expired => "expired",
            CallbackOutcome::MovedEarlier => "expiry_moved_earlier",
            CallbackOutcome::Unchanged => "unchanged",
        }
    }
}

impl From<&ExpiryChange> for CallbackOutcome {
    fn from(change: &ExpiryChange) -> Self {
        match change {
            ExpiryChange::Expired => CallbackOutcome::Expired,
            ExpiryChange::MovedEarlier { .. } => CallbackOutcome::MovedEarlier,
            ExpiryChange::Unchanged => CallbackOutcome::Unchanged,
        }
    }
}

impl FromStr for CallbackOutcome {
    type Err = UnknownValue;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "expired" => Ok(CallbackOutcome::Expired),
            "expiry_moved_earlier" => Ok(CallbackOutcome::MovedEarlier),
            "unchanged" => Ok(CallbackOutcome::Unchanged),
            other => Err(UnknownValue::new("callback outcome", other)),
        }
    }
}

/// An insurer's cancellation callback, recorded once (its id is the inbox's), with what it
/// did: CX can tell a rider which callback expired their policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InsurerCallback {
    /// The inbox id derived from the insurer's event id.
    pub id: EventId,
    /// The insurer's own event id.
    pub insurer_event_id: String,
    pub policy_id: PolicyId,
    /// The cancellation time the insurer reported.
    pub cancelled_at: OffsetDateTime,
    pub outcome: CallbackOutcome,
    pub received_at: OffsetDateTime,
}

impl Policy {
    /// A new active policy on `plan` whose coverage starts now, at the plan's premium.
    pub fn enrol(id: PolicyId, member_id: MemberId, plan: &InsurancePlan, new: NewPolicy, now: OffsetDateTime) -> Self {
        Self {
            id,
            member_id,
            policy_number: new.policy_number.unwrap_or_else(|| policy_number_for(id)),
            plan_id: Some(plan.id),
            hourly_premium: plan.hourly_premium,
            coverage_start: now,
            status: PolicyStatus::Active,
            expired_at: None,
            expiry_reason: None,
            expired_by: None,
            version: 1,
            created_at: now,
        }
    }

    pub fn is_active(&self) -> bool {
        self.status == PolicyStatus::Active
    }

    /// The audit row for this policy's enrolment.
    pub fn enrolment_audit(&self, id: AuditId, actor: Actor) -> PolicyAudit {
        PolicyAudit {
            id,
            policy_id: self.id,
            actor,
            action: "enrolled",
            reason: None,
            previous_expired_at: None,
            new_expired_at: None,
            at: self.created_at,
            note: None,
        }
    }

    /// Expires the policy effective `at` (`coverage_start <= at <= now`).
    ///
    /// An active policy becomes expired at `at`; an expired one moves to the earlier of its
    /// current and the new time, otherwise it is left as it is — so expiring is idempotent.
    /// The reason and actor recorded are those of the change that set the effective time.
    pub fn expire(
        &mut self,
        at: OffsetDateTime,
        reason: ExpiryReason,
        actor: Actor,
        now: OffsetDateTime,
    ) -> Result<ExpiryChange, ExpireError> {
        if at < self.coverage_start {
            return Err(ExpireError::BeforeCoverageStart);
        }
        if at > now {
            return Err(ExpireError::InFuture);
        }
        let change = match (self.status, self.expired_at) {
            (PolicyStatus::Active, _) | (PolicyStatus::Expired, None) => ExpiryChange::Expired,
            (PolicyStatus::Expired, Some(current)) if at < current => ExpiryChange::MovedEarlier { previous: current },
            (PolicyStatus::Expired, Some(_)) => return Ok(ExpiryChange::Unchanged),
        };
        self.status = PolicyStatus::Expired;
        self.expired_at = Some(at);
        self.expiry_reason = Some(reason);
        self.expired_by = Some(actor);
        self.version += 1;
        Ok(change)
    }

    /// The audit row and the `insurance.policy_expired` event for a change made by [`Policy::expire`].
    /// `None` when the change was [`ExpiryChange::Unchanged`].
    pub fn expiry_record(
        &self,
        change: &ExpiryChange,
        audit_id: AuditId,
        now: OffsetDateTime,
    ) -> Option<(PolicyAudit, EventPayload)> {
        let (action, previous) = match change {
            ExpiryChange::Unchanged => return None,
            ExpiryChange::Expired => ("expired", None),
            ExpiryChange::MovedEarlier { previous } => ("expiry_moved_earlier", Some(*previous)),
        };
        let (expired_at, reason, actor) = match (self.expired_at, self.expiry_reason, &self.expired_by) {
            (Some(at), Some(reason), Some(actor)) => (at, reason, actor.clone()),
            _ => return None,
        };
        let audit = PolicyAudit {
            id: audit_id,
            policy_id: self.id,
            actor: actor.clone(),
            action,
            reason: Some(reason),
            previous_expired_at: previous,
            new_expired_at: Some(expired_at),
            at: now,
            note: None,
        };
        let event = EventPayload::PolicyExpired {
            policy_id: self.id,
            member_id: self.member_id,
            policy_number: self.policy_number.clone(),
            expired_at,
            reason,
            expired_by: actor,
            previous_expired_at: previous,
        };
        Some((audit, event))
    }
}

/// Minutes of `[start, end)` that fall within `[coverage_start, expired_at)`, rounded down.
pub fn insured_minutes(
    start: OffsetDateTime,
    end: OffsetDateTime,
    coverage_start: OffsetDateTime,
    expired_at: Option<OffsetDateTime>,
) -> i64 {
    let from = start.max(coverage_start);
    let to = expired_at.map_or(end, |expired| end.min(expired));
    if to <= from { 0 } else { (to - from).whole_minutes() }
}

/// `hourly_premium * minutes / 60`, rounded down (never negative, saturating).
pub fn premium(hourly_premium: Krw, minutes: i64) -> Krw {
    let exact = i128::from(hourly_premium.max(0)) * i128::from(minutes.max(0)) / 60;
    Krw::try_from(exact).unwrap_or(Krw::MAX)
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DrivingError {
    #[error("the rider has no active insurance policy")]
    NoActivePolicy,
    #[error("the session has already ended")]
    AlreadyEnded,
}

/// A driving session (운행). Open while `ended_at` is `None`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DrivingSession {
    pub id: SessionId,
    pub member_id: MemberId,
    pub policy_id: PolicyId,
    #[serde(with = "time::serde::rfc3339")]
    pub started_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    pub ended_at: Option<OffsetDateTime>,
}

impl DrivingSession {
    /// Starts a session under the rider's active policy.
    pub fn start(id: SessionId, policy: &Policy, now: OffsetDateTime) -> Result<Self, DrivingError> {
        if !policy.is_active() {
            return Err(DrivingError::NoActivePolicy);
        }
        Ok(Self {
            id,
            member_id: policy.member_id,
            policy_id: policy.id,
            started_at: now,
            ended_at: None,
        })
    }

    pub fn end(&mut self, now: OffsetDateTime) -> Result<(), DrivingError> {
        if self.ended_at.is_some() {
            return Err(DrivingError::AlreadyEnded);
        }
        self.ended_at = Some(now.max(self.started_at));
        Ok(())
    }

    /// Insured minutes and premium of this session within `[from, to)` under `policy`'s
    /// current expiry; an open session counts up to `now`.
    pub fn billing(
        &self,
        policy: &Policy,
        from: OffsetDateTime,
        to: OffsetDateTime,
        now: OffsetDateTime,
    ) -> (i64, Krw) {
        let start = self.started_at.max(from);
        let end = self.ended_at.unwrap_or(now).min(to);
        let minutes = insured_minutes(start, end, policy.coverage_start, policy.expired_at);
        (minutes, premium(policy.hourly_premium, minutes))
    }
}

/// One session's line on a statement.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct StatementLine {
    pub session_id: SessionId,
    #[serde(with = "time::serde::rfc3339")]
    pub started_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    pub ended_at: Option<OffsetDateTime>,
    pub insured_minutes: i64,
    pub premium: Krw,
}

/// A premium statement for a policy and period, recomputed from sessions and the current expiry.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Statement {
    pub policy_id: PolicyId,
    #[serde(with = "time::serde::rfc3339")]
    pub from: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub to: OffsetDateTime,
    pub sessions: Vec<StatementLine>,
    pub insured_minutes: i64,
    pub premium: Krw,
}

impl Statement {
    /// Validates a statement period: `from < to`.
    pub fn period(
        from: OffsetDateTime,
        to: OffsetDateTime,
    ) -> Result<(OffsetDateTime, OffsetDateTime), ValidationErrors> {
        if from < to {
            Ok((from, to))
        } else {
            Err(ValidationErrors::field("to", "must be after `from`"))
        }
    }

    /// Each session is billed separately (rounded down), the total is their sum.
    pub fn compute(
        policy: &Policy,
        sessions: &[DrivingSession],
        from: OffsetDateTime,
        to: OffsetDateTime,
        now: OffsetDateTime,
    ) -> Self {
        let lines: Vec<StatementLine> = sessions
            .iter()
            .filter(|s| s.policy_id == policy.id)
            .map(|s| {
                let (insured_minutes, premium) = s.billing(policy, from, to, now);
                StatementLine {
                    session_id: s.id,
                    started_at: s.started_at,
                    ended_at: s.ended_at,
                    insured_minutes,
                    premium,
                }
            })
            .collect();
        Self {
            policy_id: policy.id,
            from,
            to,
            insured_minutes: lines.iter().map(|l| l.insured_minutes).sum(),
            premium: lines.iter().map(|l| l.premium).sum(),
            sessions: lines,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use time::Duration;
    use time::macros::datetime;
    use uuid::Uuid;

    const T0: OffsetDateTime = datetime!(2026-03-01 9:00 UTC);

    fn plan(hourly_premium: Krw) -> InsurancePlan {
        let new = NewPlan::parse("Hourly basic", hourly_premium).expect("valid");
        InsurancePlan::create(PlanId(Uuid::now_v7()), new, T0)
    }

    fn policy() -> Policy {
        Policy::enrol(
            PolicyId(Uuid::nil()),
            MemberId(Uuid::nil()),
            &plan(6_000),
            NewPolicy::default(),
            T0,
        )
    }

    #[test]
    fn a_policy_takes_the_plans_premium_and_the_insurers_number_or_one_of_its_own() {
        let plan = plan(6_000);
        let id = PolicyId(Uuid::now_v7());
        let policy = Policy::enrol(id, MemberId(Uuid::nil()), &plan, NewPolicy::default(), T0);
        assert_eq!((policy.plan_id, policy.hourly_premium), (Some(plan.id), 6_000));
        assert_eq!(policy.policy_number, format!("HR-{}", id.0.simple()).to_uppercase());
        assert_eq!(policy.policy_number.len(), 35);
        let other = Policy::enrol(
            PolicyId(Uuid::now_v7()),
            MemberId(Uuid::nil()),
            &plan,
            NewPolicy::default(),
            T0,
        );
        assert_ne!(other.policy_number, policy.policy_number);

        let insurers = NewPolicy::parse(Some("HX-0001")).expect("valid");
        let policy = Policy::enrol(id, MemberId(Uuid::nil()), &plan, insurers, T0);
        assert_eq!(policy.policy_number, "HX-0001");
        for bad in ["", " HX-0001 ", "no spaces!", &"x".repeat(65)] {
            assert!(NewPolicy::parse(Some(bad)).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn plans_are_validated_and_patched() {
        let errors = NewPlan::parse(" ", 0).expect_err("invalid");
        assert_eq!(errors.fields().keys().collect::<Vec<_>>(), ["hourly_premium", "name"]);
        assert!(NewPlan::parse("p", HOURLY_PREMIUM_MAX + 1).is_err());
        assert!(PlanPatch::parse(None, None, None).is_err());
        assert_eq!(
            PlanPatch::parse(None, None, Some("paused"))
                .expect_err("status")
                .fields()
                .keys()
                .collect::<Vec<_>>(),
            ["status"]
        );

        let mut plan = plan(6_000);
        let later = T0 + Duration::days(1);
        let patch = PlanPatch::parse(None, Some(7_000), Some("retired")).expect("valid");
        assert!(plan.apply(patch.clone(), later));
        assert_eq!(
            (plan.hourly_premium, plan.status, plan.updated_at),
            (7_000, PlanStatus::Retired, later)
        );
        assert!(!plan.is_offered());
        assert!(
            !plan.apply(patch, later + Duration::days(1)),
            "the same change again changes nothing"
        );
        assert_eq!(plan.updated_at, later);
    }

    fn session(policy: &Policy, start: OffsetDateTime, end: Option<OffsetDateTime>) -> DrivingSession {
        let mut s = DrivingSession::start(SessionId(Uuid::now_v7()), policy, start).expect("active");
        s.ended_at = end;
        s
    }

    #[test]
    fn expiring_an_active_policy_sets_time_reason_and_actor() {
        let mut p = policy();
        let at = T0 + Duration::hours(1);
        let change = p
            .expire(at, ExpiryReason::AdminRequest, Actor::Insurer, at)
            .expect("ok");
        assert_eq!(change, ExpiryChange::Expired);
        assert_eq!(p.status, PolicyStatus::Expired);
        assert_eq!(p.expired_at, Some(at));
        assert_eq!(p.expiry_reason, Some(ExpiryReason::AdminRequest));
        assert_eq!(p.version, 2);
    }

    #[test]
    fn expiring_an_expired_policy_earlier_moves_the_expiry() {
        let mut p = policy();
        let now = T0 + Duration::hours(5);
        p.expire(
            T0 + Duration::hours(4),
            ExpiryReason::MemberWithdrawn,
            Actor::System("x".into()),
            now,
        )
        .expect("ok");
        let change = p
            .expire(
                T0 + Duration::hours(2),
                ExpiryReason::InsurerCancellation,
                Actor::Insurer,
                now,
            )
            .expect("ok");
        assert_eq!(
            change,
            ExpiryChange::MovedEarlier {
                previous: T0 + Duration::hours(4)
            }
        );
        assert_eq!(p.expired_at, Some(T0 + Duration::hours(2)));
        assert_eq!(p.expiry_reason, Some(ExpiryReason::InsurerCancellation));
        let (audit, event) = p.expiry_record(&change, AuditId(Uuid::nil()), now).expect("changed");
        assert_eq!(audit.action, "expiry_moved_earlier");
        assert_eq!(event.event_type(), "insurance.policy_expired");
    }

    #[test]
    fn expiring_later_or_again_changes_nothing() {
        let mut p = policy();
        let now = T0 + Duration::hours(5);
        p.expire(T0 + Duration::hours(2), ExpiryReason::AdminRequest, Actor::Insurer, now)
            .expect("ok");
        let before = p.clone();
        for at in [T0 + Duration::hours(2), T0 + Duration::hours(3)] {
            let change = p
                .expire(at, ExpiryReason::MemberWithdrawn, Actor::Insurer, now)
                .expect("ok");
            assert_eq!(change, ExpiryChange::Unchanged);
            assert!(p.expiry_record(&change, AuditId(Uuid::nil()), now).is_none());
        }
        assert_eq!(p, before);
    }

    #[test]
    fn expiry_must_lie_between_coverage_start_and_now() {
        let mut p = policy();
        let now = T0 + Duration::hours(1);
        assert_eq!(
            p.expire(
                T0 - Duration::seconds(1),
                ExpiryReason::AdminRequest,
                Actor::Insurer,
                now
            ),
            Err(ExpireError::BeforeCoverageStart)
        );
        assert_eq!(
            p.expire(
                now + Duration::seconds(1),
                ExpiryReason::AdminRequest,
                Actor::Insurer,
                now
            ),
            Err(ExpireError::InFuture)
        );
        assert!(p.is_active());
    }

    #[test]
    fn sessions_need_an_active_policy_and_end_once() {
        let mut p = policy();
        let mut s = DrivingSession::start(SessionId(Uuid::nil()), &p, T0).expect("active");
        s.end(T0 + Duration::minutes(30)).expect("open");
        assert_eq!(s.end(T0 + Duration::minutes(31)), Err(DrivingError::AlreadyEnded));
        p.expire(T0, ExpiryReason::AdminRequest, Actor::Insurer, T0)
            .expect("ok");
        assert_eq!(
            DrivingSession::start(SessionId(Uuid::nil()), &p, T0),
            Err(DrivingError::NoActivePolicy)
        );
    }

    #[test]
    fn an_earlier_expiry_shrinks_the_statement() {
        let mut p = policy();
        let now = T0 + Duration::hours(10);
        let sessions = vec![
            session(&p, T0 + Duration::hours(1), Some(T0 + Duration::hours(3))),
            session(&p, T0 + Duration::hours(4), Some(T0 + Duration::hours(5))),
        ];
        let (from, to) = (T0, T0 + Duration::days(1));
        let full = Statement::compute(&p, &sessions, from, to, now);
        assert_eq!(full.insured_minutes, 180);
        assert_eq!(full.premium, 18_000);

        p.expire(
            T0 + Duration::hours(2),
            ExpiryReason::InsurerCancellation,
            Actor::Insurer,
            now,
        )
        .expect("ok");
        let shrunk = Statement::compute(&p, &sessions, from, to, now);
        assert_eq!(shrunk.insured_minutes, 60);
        assert_eq!(shrunk.premium, 6_000);
        assert_eq!(shrunk.sessions[1].premium, 0);
    }

    #[test]
    fn premium_rounds_down() {
        assert_eq!(premium(1_000, 1), 16);
        assert_eq!(premium(59, 1), 0);
        assert_eq!(premium(6_000, 90), 9_000);
    }

    #[test]
    fn statement_period_must_be_ordered() {
        assert!(Statement::period(T0, T0).is_err());
        assert!(Statement::period(T0, T0 + Duration::seconds(1)).is_ok());
    }

    fn at(minutes: i64) -> OffsetDateTime {
        T0 + Duration::seconds(minutes)
    }

    proptest! {
        // Times in seconds from T0, to exercise partial minutes.
        #[test]
        fn insured_minutes_is_the_overlap(s in 0i64..100_000, len in 0i64..100_000, c in 0i64..100_000, e in proptest::option::of(0i64..200_000)) {
            let minutes = insured_minutes(at(s), at(s + len), at(c), e.map(at));
            let lo = s.max(c);
            let hi = e.map_or(s + len, |e| (s + len).min(e));
            let expected = if hi > lo { (hi - lo) / 60 } else { 0 };
            prop_assert_eq!(minutes, expected);
            prop_assert!(minutes >= 0);
            prop_assert!(minutes <= len / 60);
        }

        #[test]
        fn an_earlier_expiry_never_bills_more(s in 0i64..100_000, len in 0i64..100_000, e1 in 0i64..200_000, e2 in 0i64..200_000) {
            let (early, late) = (e1.min(e2), e1.max(e2));
            let a = insured_minutes(at(s), at(s + len), T0, Some(at(early)));
            let b = insured_minutes(at(s), at(s + len), T0, Some(at(late)));
            prop_assert!(a <= b);
        }

        #[test]
        fn premium_is_floor_of_exact_amount(hourly in 0i64..=HOURLY_PREMIUM_MAX, minutes in 0i64..1_000_000) {
            let p = premium(hourly, minutes);
            prop_assert!(p * 60 <= hourly * minutes);
            prop_assert!((p + 1) * 60 > hourly * minutes);
        }

        #[test]
        fn premium_is_monotonic_in_minutes(hourly in 0i64..=HOURLY_PREMIUM_MAX, m in 0i64..1_000_000, extra in 0i64..1_000) {
            prop_assert!(premium(hourly, m) <= premium(hourly, m + extra));
        }
    }
}
