//! Time-based insurance: enrolment, driving sessions, statements, and the three ways a
//! policy expires — a CX/admin request, an insurer's cancellation callback, and the
//! `member.withdrawn` event (the `insurance-expiry` consumer). All three go through
//! [`Policy::expire`], so an expiry only ever moves earlier and premium after the effective
//! expiry is never billed.

use async_trait::async_trait;
use time::OffsetDateTime;
use uuid::Uuid;

use core_domain::event::{DomainEvent, EventPayload, MEMBER_EVENTS};
use core_domain::insurance::{
    Actor, CallbackOutcome, DrivingError, DrivingSession, ExpireError, ExpiryChange, ExpiryReason, InsurancePlan,
    InsurerCallback, NewPlan, NewPolicy, PlanPatch, Policy, PolicyAudit, Statement, StatementLine, parse_note,
};
use core_domain::licence::{LicenceError, LicenceStatus};
use core_domain::member::Role;
use core_domain::{AuditId, EventId, Krw, MemberId, PlanId, PolicyId, SessionId, ValidationErrors};
use ports::{
    Consistency, EventHandler, Handled, HandlerError, Page, PolicyKey, StoreError, TimeKey, TrailEvent, Unique,
    UnitOfWork,
};

use crate::paging;

/// The sort key of a statement's lines: the session's start, its id.
pub type SessionKey = TimeKey<SessionId>;

use crate::Ports;
use crate::error::problem;
use crate::events::new_events;
use crate::freshness::Freshness;
use crate::retry;

/// Why an insurance use case failed.
#[derive(Debug, thiserror::Error)]
pub enum InsuranceError {
    /// The request's values are invalid.
    #[error(transparent)]
    Validation(#[from] ValidationErrors),
    /// The store failed or was unreachable.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The member already holds an active policy.
    #[error("the member already holds an active policy")]
    AlreadyActive,
    /// This policy number is already registered.
    #[error("this policy number is already registered")]
    PolicyNumberTaken,
    /// Insurance plan not found.
    #[error("insurance plan not found")]
    PlanNotFound,
    /// The plan is retired: riders can no longer enrol in it.
    #[error("the plan is retired: riders can no longer enrol in it")]
    PlanRetired,
    /// The member is not active.
    #[error("the member is not active")]
    MemberInactive,
    /// Policy not found.
    #[error("policy not found")]
    PolicyNotFound,
    /// Driving session not found.
    #[error("driving session not found")]
    SessionNotFound,
    /// The rider has no active insurance policy.
    #[error("the rider has no active insurance policy")]
    NoActivePolicy,
    /// The rider already has an open driving session.
    #[error("the rider already has an open driving session")]
    SessionOpen,
    /// The rider has registered no driving licence.
    #[error("register a driving licence before driving")]
    NoLicence,
    /// The rider's driving licence is not valid.
    #[error("the driving licence is {0}: register a valid one before driving")]
    LicenceNotValid(LicenceStatus),
    /// The driving session has already ended.
    #[error("the driving session has already ended")]
    SessionEnded,
    /// The effective time must lie between the coverage start and now.
    #[error("the effective time must lie between the coverage start and now")]
    InvalidEffectiveAt,
}

/// Expiries re-read the policy in each attempt, so a lost race is safe to run again.
impl retry::LostRace for InsuranceError {
    fn lost_race(&self) -> bool {
        matches!(self, InsuranceError::Store(e) if e.is_retryable())
    }
}

problem!(InsuranceError {
    AlreadyActive => Conflict, "insurance.already_active";
    PolicyNumberTaken => Conflict, "insurance.policy_number_taken";
    PlanNotFound => NotFound, "insurance.plan_not_found";
    PlanRetired => Conflict, "insurance.plan_retired";
    MemberInactive => Conflict, "member.inactive";
    PolicyNotFound => NotFound, "insurance.policy_not_found";
    SessionNotFound => NotFound, "driving.session_not_found";
    NoActivePolicy => Conflict, "driving.no_active_policy";
    SessionOpen => Conflict, "driving.session_open";
    NoLicence => Conflict, "driving.licence_required";
    LicenceNotValid(_) => Conflict, "driving.licence_not_valid";
    SessionEnded => Conflict, "driving.session_ended";
    InvalidEffectiveAt => Invalid, "insurance.invalid_effective_at";
});

impl From<DrivingError> for InsuranceError {
    fn from(e: DrivingError) -> Self {
        match e {
            DrivingError::NoActivePolicy => InsuranceError::NoActivePolicy,
            DrivingError::AlreadyEnded => InsuranceError::SessionEnded,
        }
    }
}

/// Who is asking, for ownership checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Caller {
    /// Who asks.
    pub member_id: MemberId,
    /// With which role.
    pub role: Role,
}

/// A session with what it insured and costs under the policy's current expiry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionBill {
    /// The ended session.
    pub session: DrivingSession,
    /// Its minutes inside the policy's coverage.
    pub insured_minutes: i64,
    /// What those minutes cost.
    pub premium: Krw,
}

/// What an expiry preview shows CX before they confirm.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpiryPreview {
    /// The policy now.
    pub before: Policy,
    /// The policy as the expiry would leave it.
    pub after: Policy,
    /// What the expiry would change (nothing, for a policy already expired earlier).
    pub change: ExpiryChange,
    /// The statement for the period now.
    pub statement_before: Statement,
    /// The statement after the expiry: premium after the effective time is no longer billed.
    pub statement_after: Statement,
}

/// One expiry as [`InsuranceService::apply_expiry`] applies it.
struct Expiry {
    at: OffsetDateTime,
    reason: ExpiryReason,
    actor: Actor,
    note: Option<String>,
}

fn expire_error(e: ExpireError) -> InsuranceError {
    match e {
        ExpireError::BeforeCoverageStart | ExpireError::InFuture => InsuranceError::InvalidEffectiveAt,
    }
}

/// The namespace for insurer event ids (any string) turned into inbox ids.
const INSURER_EVENTS: Uuid = Uuid::from_u128(0x5d1b_8a6e_3c2f_4e11_9a7b_2c4d_6e8f_0a1b);
/// Inbox consumer names.
pub const INSURANCE_EXPIRY: &str = "insurance-expiry";
const INSURER_CALLBACK: &str = "insurer-callback";

/// Time-based insurance: enrolment, driving sessions, statements and every kind of expiry.
#[derive(Clone)]
pub struct InsuranceService {
    ports: Ports,
    freshness: Freshness,
}

impl InsuranceService {
    /// The service over `ports`.
    pub fn new(ports: Ports) -> Self {
        let freshness = Freshness::new(ports.consistency.clone());
        Self { ports, freshness }
    }

    /// Admin: offers a new plan.
    pub async fn create_plan(&self, name: &str, hourly_premium: i64) -> Result<InsurancePlan, InsuranceError> {
        let new = NewPlan::parse(name, hourly_premium)?;
        let plan = InsurancePlan::create(PlanId(self.ports.ids.new_id()), new, self.ports.clock.now());
        let mut uow = self.ports.db.begin().await?;
        uow.insurance().insert_plan(&plan).await?;
        uow.commit().await?;
        Ok(plan)
    }

    /// Admin: renames, re-prices (for enrolments from now on) or retires a plan. Policies
    /// written on it keep the premium they were written at.
    pub async fn change_plan(&self, plan_id: PlanId, patch: PlanPatch) -> Result<InsurancePlan, InsuranceError> {
        let mut uow = self.ports.db.begin().await?;
        let mut plan = uow
            .insurance()
            .plan_for_update(plan_id)
            .await?
            .ok_or(InsuranceError::PlanNotFound)?;
        if plan.apply(patch, self.ports.clock.now()) {
            uow.insurance().update_plan(&plan).await?;
            uow.commit().await?;
        }
        Ok(plan)
    }

    /// The plans riders can enrol in, by name; with `with_retired` (staff), every plan.
    /// Staff act on what they see: their list comes from the primary.
    pub async fn plans(&self, with_retired: bool) -> Result<Vec<InsurancePlan>, InsuranceError> {
        let consistency = if with_retired {
            Consistency::Strong
        } else {
            Consistency::Eventual
        };
        Ok(self.ports.insurance.plans(with_retired, consistency).await?)
    }

    /// Enrols an active rider in an offered plan: the policy's coverage starts now, at the
    /// plan's hourly premium, under the insurer's policy number if the rider gives one, else
    /// one the server assigns.
    #[tracing::instrument(skip(self))]
    pub async fn enrol(
        &self,
        member_id: MemberId,
        plan_id: PlanId,
        policy_number: Option<&str>,
    ) -> Result<Policy, InsuranceError> {
        let new = NewPolicy::parse(policy_number)?;
        let now = self.ports.clock.now();
        let mut uow = self.ports.db.begin().await?;
        // Locks the member: a withdrawal cannot slip between this check and the insert.
        if !crate::members::is_active(uow.members(), member_id).await? {
            return Err(InsuranceError::MemberInactive);
        }
        let plan = uow
            .insurance()
            .plan_by_id(plan_id)
            .await?
            .ok_or(InsuranceError::PlanNotFound)?;
        if !plan.is_offered() {
            return Err(InsuranceError::PlanRetired);
        }
        let policy = Policy::enrol(PolicyId(self.ports.ids.new_id()), member_id, &plan, new, now);
        match uow.insurance().insert_policy(&policy).await {
            Err(StoreError::Conflict(Unique::ActivePolicy)) => {
                return Err(InsuranceError::AlreadyActive);
            }
            Err(StoreError::Conflict(Unique::PolicyNumber)) => {
                return Err(InsuranceError::PolicyNumberTaken);
            }
            other => other?,
        }
        uow.insurance()
            .insert_audit(&policy.enrolment_audit(AuditId(self.ports.ids.new_id()), Actor::Member(member_id)))
            .await?;
        self.freshness.commit(uow.as_mut(), member_id).await?;
        Ok(policy)
    }

    /// One page of the caller's own policies, newest first.
    pub async fn my_policies(
        &self,
        member_id: MemberId,
        after: Option<PolicyKey>,
        limit: Option<i64>,
    ) -> Result<Page<Policy, PolicyKey>, InsuranceError> {
        let consistency = self.freshness.for_member(member_id).await;
        self.policies_page(member_id, after, limit, consistency).await
    }

    /// One page of any member's policies, newest first, for CX. Staff act on what they see:
    /// read from the primary.
    pub async fn member_policies(
        &self,
        member_id: MemberId,
        after: Option<PolicyKey>,
        limit: Option<i64>,
    ) -> Result<Page<Policy, PolicyKey>, InsuranceError> {
        self.policies_page(member_id, after, limit, Consistency::Strong).await
    }

    async fn policies_page(
        &self,
        member_id: MemberId,
        after: Option<PolicyKey>,
        limit: Option<i64>,
        consistency: Consistency,
    ) -> Result<Page<Policy, PolicyKey>, InsuranceError> {
        let page = paging::page(after, limit)?;
        Ok(self
            .ports
            .insurance
            .policies_of_member(member_id, &page, consistency)
            .await?)
    }

    /// Every policy of the member, newest first, page after page, from the primary (the
    /// admin web's rider page).
    pub async fn every_policy(&self, member_id: MemberId) -> Result<Vec<Policy>, InsuranceError> {
        let (mut after, mut policies) = (None, Vec::new());
        loop {
            let found = self.member_policies(member_id, after, Some(paging::MAX_PAGE)).await?;
            policies.extend(found.items);
            match found.next {
                Some(next) => after = Some(next),
                None => return Ok(policies),
            }
        }
    }

    async fn readable_policy(&self, caller: Caller, policy_id: PolicyId) -> Result<Policy, InsuranceError> {
        let consistency = if caller.role.is_staff() {
            Consistency::Strong
        } else {
            self.freshness.for_member(caller.member_id).await
        };
        let policy = self.ports.insurance.policy(policy_id, consistency).await?;
        // A rider sees only their own; someone else's policy is "not found", not "forbidden",
        // so ids cannot be probed.
        policy
            .filter(|p| caller.role.is_staff() || p.member_id == caller.member_id)
            .ok_or(InsuranceError::PolicyNotFound)
    }

    /// The premium statement of a policy for `[from, to)`, from the sessions and the
    /// policy's current expiry.
    ///
    /// Its lines come a page at a time, oldest first (by start, then session id), after
    /// `after`, at most `limit`; its totals always cover every session of the period. With
    /// it, the key of the page's last line when more lines follow.
    pub async fn statement(
        &self,
        caller: Caller,
        policy_id: PolicyId,
        from: OffsetDateTime,
        to: OffsetDateTime,
        after: Option<SessionKey>,
        limit: Option<i64>,
    ) -> Result<(Statement, Option<SessionKey>), InsuranceError> {
        let page = paging::page(after, limit)?;
        let mut statement = self.policy_statement(caller, policy_id, from, to).await?.1;
        let key = |line: &StatementLine| TimeKey {
            at: line.started_at,
            tie: line.session_id,
        };
        let mut lines = std::mem::take(&mut statement.sessions);
        lines.sort_by_key(key);
        let rest: Vec<StatementLine> = lines
            .into_iter()
            .filter(|line| page.after.is_none_or(|after| key(line) > after))
            .take(usize::try_from(page.probe()).unwrap_or(usize::MAX))
            .collect();
        let lines = Page::keyed(rest, &page, key);
        statement.sessions = lines.items;
        Ok((statement, lines.next))
    }

    /// [`Self::statement`] with every line, and the policy it was computed from (the admin
    /// web shows both).
    pub async fn policy_statement(
        &self,
        caller: Caller,
        policy_id: PolicyId,
        from: OffsetDateTime,
        to: OffsetDateTime,
    ) -> Result<(Policy, Statement), InsuranceError> {
        let (policy, sessions, from, to) = self.policy_sessions(caller, policy_id, from, to).await?;
        let statement = Statement::compute(&policy, &sessions, from, to, self.ports.clock.now());
        Ok((policy, statement))
    }

    /// The policy and its sessions overlapping `[from, to)`, as `caller` may read them.
    async fn policy_sessions(
        &self,
        caller: Caller,
        policy_id: PolicyId,
        from: OffsetDateTime,
        to: OffsetDateTime,
    ) -> Result<(Policy, Vec<DrivingSession>, OffsetDateTime, OffsetDateTime), InsuranceError> {
        let (from, to) = Statement::period(from, to)?;
        let policy = self.readable_policy(caller, policy_id).await?;
        let consistency = if caller.role.is_staff() {
            Consistency::Strong
        } else {
            self.freshness.for_member(caller.member_id).await
        };
        let sessions = self
            .ports
            .insurance
            .sessions_of_policy(policy_id, from, to, consistency)
            .await?;
        Ok((policy, sessions, from, to))
    }

    /// What expiring the policy effective `at` for `reason` would change, written nowhere:
    /// the policy after it and the statement for `[from, to)` before and after (CX confirm
    /// from this).
    pub async fn preview_expiry(
        &self,
        staff: Caller,
        policy_id: PolicyId,
        (at, reason): (OffsetDateTime, ExpiryReason),
        from: OffsetDateTime,
        to: OffsetDateTime,
    ) -> Result<ExpiryPreview, InsuranceError> {
        if !staff.role.is_staff() {
            return Err(InsuranceError::PolicyNotFound);
        }
        let (policy, sessions, from, to) = self.policy_sessions(staff, policy_id, from, to).await?;
        let now = self.ports.clock.now();
        let mut after = policy.clone();
        let change = after
            .expire(at, reason, Actor::Staff(staff.member_id), now)
            .map_err(expire_error)?;
        Ok(ExpiryPreview {
            statement_before: Statement::compute(&policy, &sessions, from, to, now),
            statement_after: Statement::compute(&after, &sessions, from, to, now),
            before: policy,
            after,
            change,
        })
    }

    /// A policy for staff (read on the primary).
    pub async fn staff_policy(&self, staff: Caller, policy_id: PolicyId) -> Result<Policy, InsuranceError> {
        if !staff.role.is_staff() {
            return Err(InsuranceError::PolicyNotFound);
        }
        self.readable_policy(staff, policy_id).await
    }

    /// A policy's audit trail, oldest first (staff; on the primary).
    pub async fn audit_trail(&self, policy_id: PolicyId) -> Result<Vec<PolicyAudit>, InsuranceError> {
        Ok(self
            .ports
            .insurance
            .policy_audit(policy_id, Consistency::Strong)
            .await?)
    }

    /// The insurer callbacks a policy received, oldest first (staff; on the primary).
    pub async fn insurer_callbacks(&self, policy_id: PolicyId) -> Result<Vec<InsurerCallback>, InsuranceError> {
        Ok(self
            .ports
            .trail
            .insurer_callbacks(policy_id, Consistency::Strong)
            .await?)
    }

    /// The events written about a member and their policies, newest first, at most `limit`,
    /// with the consumers that applied each (staff; on the primary).
    pub async fn member_trail(&self, member_id: MemberId, limit: i64) -> Result<Vec<TrailEvent>, InsuranceError> {
        let policies = self.every_policy(member_id).await?;
        let aggregates: Vec<Uuid> = std::iter::once(member_id.0)
            .chain(policies.iter().map(|p| p.id.0))
            .collect();
        Ok(self
            .ports
            .trail
            .events_of(&aggregates, limit, Consistency::Strong)
            .await?)
    }

    /// Starts a driving session under the rider's active policy.
    pub async fn start_session(&self, member_id: MemberId) -> Result<DrivingSession, InsuranceError> {
        let now = self.ports.clock.now();
        let mut uow = self.ports.db.begin().await?;
        if !crate::members::is_active(uow.members(), member_id).await? {
            return Err(InsuranceError::MemberInactive);
        }
        // Locked: a suspension by the re-verification batch and a start are ordered.
        let licence = uow
            .licences()
            .licence_for_update(member_id)
            .await?
            .ok_or(InsuranceError::NoLicence)?;
        licence.permits_driving(now).map_err(|e| match e {
            LicenceError::NotValid(status) => InsuranceError::LicenceNotValid(status),
            LicenceError::Missing | LicenceError::Rejected(_) => InsuranceError::NoLicence,
        })?;
        let policies = uow.insurance().policies_of_member(member_id).await?;
        let policy = policies
            .iter()
            .find(|p| p.is_active())
            .ok_or(InsuranceError::NoActivePolicy)?;
        let session = DrivingSession::start(SessionId(self.ports.ids.new_id()), policy, now)?;
        match uow.insurance().insert_session(&session).await {
            Err(StoreError::Conflict(Unique::OpenSession)) => {
                return Err(InsuranceError::SessionOpen);
            }
            other => other?,
        }
        self.freshness.commit(uow.as_mut(), member_id).await?;
        Ok(session)
    }

    /// Ends the rider's session and bills it under the policy's current expiry.
    pub async fn end_session(&self, member_id: MemberId, session_id: SessionId) -> Result<SessionBill, InsuranceError> {
        let now = self.ports.clock.now();
        let mut uow = self.ports.db.begin().await?;
        let mut session = uow
            .insurance()
            .session_by_id(session_id)
            .await?
            .filter(|s| s.member_id == member_id)
            .ok_or(InsuranceError::SessionNotFound)?;
        session.end(now)?;
        uow.insurance().update_session(&session).await?;
        let policy = uow
            .insurance()
            .policy_by_id(session.policy_id)
            .await?
            .ok_or(InsuranceError::PolicyNotFound)?;
        self.freshness.commit(uow.as_mut(), member_id).await?;
        let (insured_minutes, premium) =
            session.billing(&policy, session.started_at, session.ended_at.unwrap_or(now), now);
        Ok(SessionBill {
            session,
            insured_minutes,
            premium,
        })
    }

    /// CX/admin: expires a policy effective `effective_at`, with an optional note for the
    /// audit trail ([`parse_note`]).
    #[tracing::instrument(skip(self, note))]
    pub async fn expire_by_staff(
        &self,
        staff_id: MemberId,
        policy_id: PolicyId,
        effective_at: OffsetDateTime,
        reason: ExpiryReason,
        note: Option<&str>,
    ) -> Result<Policy, InsuranceError> {
        let note = parse_note(note)?;
        retry::on_lost_race(|| async {
            let mut uow = self.ports.db.begin().await?;
            let mut policy = uow
                .insurance()
                .policy_by_id(policy_id)
                .await?
                .ok_or(InsuranceError::PolicyNotFound)?;
            let expiry = Expiry {
                at: effective_at,
                reason,
                actor: Actor::Staff(staff_id),
                note: note.clone(),
            };
            self.apply_expiry(uow.as_mut(), &mut policy, expiry).await?;
            // The rider's next reads (their statement) must show the new expiry.
            self.freshness.commit(uow.as_mut(), policy.member_id).await?;
            Ok(policy)
        })
        .await
    }

    /// An insurer reports a cancellation. Idempotent on the insurer's `event_id`; a
    /// cancellation dated before the coverage start expires the policy at its start.
    #[tracing::instrument(skip(self))]
    pub async fn insurer_cancellation(
        &self,
        event_id: &str,
        policy_number: &str,
        cancelled_at: OffsetDateTime,
    ) -> Result<Policy, InsuranceError> {
        if event_id.trim().is_empty() || event_id.len() > 200 {
            return Err(ValidationErrors::field("event_id", "must be 1 to 200 characters").into());
        }
        let inbox_id = EventId(Uuid::new_v5(&INSURER_EVENTS, event_id.as_bytes()));
        retry::on_lost_race(|| async {
            let mut uow = self.ports.db.begin().await?;
            let mut policy = uow
                .insurance()
                .policy_by_number(policy_number.trim())
                .await?
                .ok_or(InsuranceError::PolicyNotFound)?;
            if !uow.events().record_inbox(INSURER_CALLBACK, inbox_id).await? {
                uow.rollback().await?;
                return Ok(policy);
            }
            let expiry = Expiry {
                at: cancelled_at.max(policy.coverage_start),
                reason: ExpiryReason::InsurerCancellation,
                actor: Actor::Insurer,
                note: None,
            };
            let change = self.apply_expiry(uow.as_mut(), &mut policy, expiry).await?;
            uow.insurance()
                .insert_insurer_callback(&InsurerCallback {
                    id: inbox_id,
                    insurer_event_id: event_id.to_owned(),
                    policy_id: policy.id,
                    cancelled_at,
                    outcome: CallbackOutcome::from(&change),
                    received_at: self.ports.clock.now(),
                })
                .await?;
            // The rider's next reads (their statement) must show the new expiry.
            self.freshness.commit(uow.as_mut(), policy.member_id).await?;
            Ok(policy)
        })
        .await
    }

    /// Expires `policy` inside `uow`: the row, its audit entry and its event, or nothing if
    /// the expiry changes nothing. Returns what changed.
    async fn apply_expiry(
        &self,
        uow: &mut dyn UnitOfWork,
        policy: &mut Policy,
        expiry: Expiry,
    ) -> Result<ExpiryChange, InsuranceError> {
        let now = self.ports.clock.now();
        let expected_version = policy.version;
        let change = policy
            .expire(expiry.at, expiry.reason, expiry.actor, now)
            .map_err(expire_error)?;
        if let Some((mut audit, event)) = policy.expiry_record(&change, AuditId(self.ports.ids.new_id()), now) {
            audit.note = expiry.note;
            uow.insurance().update_policy(policy, expected_version).await?;
            uow.insurance().insert_audit(&audit).await?;
            uow.events().append(&new_events(&self.ports, now, [event])).await?;
        }
        Ok(change)
    }

    /// The `insurance-expiry` consumer's effect: expires every policy of a withdrawn member
    /// effective at the withdrawal, recording the event in the inbox in the same transaction.
    /// How many policies changed; `None` when the inbox already held the event.
    pub async fn expire_for_withdrawal(
        &self,
        event_id: EventId,
        member_id: MemberId,
        withdrawn_at: OffsetDateTime,
    ) -> Result<Option<usize>, InsuranceError> {
        retry::on_lost_race(|| async {
            let mut uow = self.ports.db.begin().await?;
            if !uow.events().record_inbox(INSURANCE_EXPIRY, event_id).await? {
                uow.rollback().await?;
                return Ok(None);
            }
            let mut changed = 0;
            for mut policy in uow.insurance().policies_of_member(member_id).await? {
                let before = policy.version;
                // A policy enrolled in a race after the withdrawal expires at its own start.
                let expiry = Expiry {
                    at: withdrawn_at.max(policy.coverage_start),
                    reason: ExpiryReason::MemberWithdrawn,
                    actor: Actor::System(INSURANCE_EXPIRY.to_owned()),
                    note: None,
                };
                self.apply_expiry(uow.as_mut(), &mut policy, expiry).await?;
                changed += usize::from(policy.version != before);
            }
            uow.commit().await?;
            Ok(Some(changed))
        })
        .await
    }
}

/// Consumes `member-events`: `member.withdrawn` → the member's policies expire.
pub struct InsuranceExpiryHandler {
    service: InsuranceService,
}

impl InsuranceExpiryHandler {
    /// The handler, expiring through `service`.
    pub fn new(service: InsuranceService) -> Self {
        Self { service }
    }
}

#[async_trait]
impl EventHandler for InsuranceExpiryHandler {
    fn name(&self) -> &'static str {
        INSURANCE_EXPIRY
    }

    fn topics(&self) -> Vec<&'static str> {
        vec![MEMBER_EVENTS]
    }

    async fn handle(&self, event: &DomainEvent) -> Result<Handled, HandlerError> {
        let EventPayload::MemberWithdrawn {
            member_id,
            withdrawn_at,
        } = event.payload
        else {
            return Ok(Handled::Ignored);
        };
        match self
            .service
            .expire_for_withdrawal(event.id, member_id, withdrawn_at)
            .await
        {
            Ok(Some(changed)) => {
                tracing::info!(%member_id, changed, event_id = %event.id, "policies expired for withdrawal");
                Ok(Handled::Applied)
            }
            Ok(None) => Ok(Handled::Duplicate),
            Err(InsuranceError::Store(e)) => Err(crate::events::transient(e)),
            // A withdrawal dated in the future of this clock: clocks differ, try again later.
            Err(InsuranceError::InvalidEffectiveAt) => {
                Err(HandlerError::Transient("withdrawal time is ahead of this clock".into()))
            }
            Err(other) => Err(HandlerError::Permanent(other.to_string())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Problem;
    use crate::testing::{TestPorts, member_fixture};
    use core_domain::insurance::PolicyStatus;
    use ports::CommitToken;
    use time::Duration;

    fn policy(member_id: MemberId, start: OffsetDateTime) -> Policy {
        Policy::enrol(
            PolicyId(Uuid::now_v7()),
            member_id,
            &InsurancePlan::create(
                PlanId(Uuid::now_v7()),
                NewPlan::parse("Basic", 6_000).expect("ok"),
                start,
            ),
            NewPolicy::default(),
            start,
        )
    }

    /// A unit of work for a staff expiry of `p` whose policy update fails with `update`.
    fn staff_expiry(p: &Policy, update: Result<(), StoreError>) -> ports::MockUnitOfWork {
        let mut uow = ports::MockUnitOfWork::new();
        let policy = p.clone();
        uow.insurance
            .expect_policy_by_id()
            .return_once(move |_| Ok(Some(policy)));
        let won = update.is_ok();
        uow.insurance
            .expect_update_policy()
            .times(1)
            .return_once(move |_, _| update);
        uow.insurance
            .expect_insert_audit()
            .withf(|audit| audit.note.as_deref() == Some("rider called the insurer"))
            .times(usize::from(won))
            .returning(|_| Ok(()));
        uow.events.expect_append().times(usize::from(won)).returning(|_| Ok(()));
        uow.end
            .expect_commit()
            .times(usize::from(won))
            .returning(|| Ok(CommitToken("1".into())));
        uow
    }

    /// A staff expiry, now, of a policy whose units of work are `attempts`, in order.
    async fn expire_with(attempts: impl Fn(&Policy) -> Vec<ports::MockUnitOfWork>) -> Result<Policy, InsuranceError> {
        let mut t = TestPorts::new();
        let p = policy(MemberId(Uuid::now_v7()), OffsetDateTime::now_utc() - Duration::hours(2));
        t.expect_uows(attempts(&p));
        // A commit remembers its token for the rider, whose statement must show the expiry.
        let rider = p.member_id;
        t.consistency
            .expect_remember()
            .withf(move |member, _| *member == rider)
            .times(0..=1)
            .returning(|_, _| Ok(()));
        InsuranceService::new(t.build())
            .expire_by_staff(
                MemberId(Uuid::now_v7()),
                p.id,
                OffsetDateTime::now_utc(),
                ExpiryReason::AdminRequest,
                // Stored trimmed.
                Some("  rider called the insurer\n"),
            )
            .await
    }

    #[tokio::test]
    async fn a_staff_expiry_with_an_empty_note_is_invalid_and_touches_nothing() {
        let t = TestPorts::new();
        let err = InsuranceService::new(t.build())
            .expire_by_staff(
                MemberId(Uuid::now_v7()),
                PolicyId(Uuid::now_v7()),
                OffsetDateTime::now_utc(),
                ExpiryReason::AdminRequest,
                Some("   "),
            )
            .await
            .expect_err("empty note");
        assert_eq!(err.code(), "validation.failed");
    }

    #[tokio::test]
    async fn a_staff_expiry_that_loses_a_race_runs_again_and_succeeds() {
        let expired = expire_with(|p| vec![staff_expiry(p, Err(StoreError::Concurrency)), staff_expiry(p, Ok(()))])
            .await
            .expect("the second attempt wins");
        assert_eq!(expired.status, PolicyStatus::Expired);
    }

    #[tokio::test]
    async fn a_unit_of_work_that_keeps_losing_races_gives_up_after_three_attempts() {
        let err = expire_with(|p| (0..3).map(|_| staff_expiry(p, Err(StoreError::Concurrency))).collect())
            .await
            .expect_err("three lost races");
        assert!(matches!(err, InsuranceError::Store(StoreError::Concurrency)), "{err:?}");
        assert_eq!(err.code(), "conflict.concurrent_update");
    }

    #[tokio::test]
    async fn a_failure_other_than_a_lost_race_is_not_run_again() {
        let err = expire_with(|p| vec![staff_expiry(p, Err(StoreError::unavailable("down")))])
            .await
            .expect_err("unavailable");
        assert_eq!(err.code(), "service.unavailable");
    }

    fn basic_plan() -> InsurancePlan {
        InsurancePlan::create(
            PlanId(Uuid::now_v7()),
            NewPlan::parse("Basic", 6_000).expect("ok"),
            OffsetDateTime::now_utc(),
        )
    }

    /// An active rider and an offered plan, and the unit of work that enrols one in the
    /// other, finished by `rest`.
    fn enrolment(rest: impl FnOnce(&mut ports::MockUnitOfWork) + Send + 'static) -> (TestPorts, MemberId, PlanId) {
        let mut t = TestPorts::new();
        let member = member_fixture(Role::Rider);
        let id = member.id;
        let plan = basic_plan();
        let plan_id = plan.id;
        t.expect_uow(move |uow| {
            uow.members.expect_by_id().return_once(move |_| Ok(Some(member)));
            uow.insurance.expect_plan_by_id().return_once(move |_| Ok(Some(plan)));
            rest(uow);
        });
        (t, id, plan_id)
    }

    #[tokio::test]
    async fn enrolment_writes_a_policy_at_the_plans_premium_with_its_audit() {
        let (mut t, id, plan_id) = enrolment(|uow| {
            uow.insurance
                .expect_insert_policy()
                .withf(|p| p.plan_id.is_some() && p.hourly_premium == 6_000 && p.policy_number.starts_with("HR-"))
                .times(1)
                .returning(|_| Ok(()));
            uow.insurance
                .expect_insert_audit()
                .withf(|a| a.action == "enrolled")
                .times(1)
                .returning(|_| Ok(()));
            uow.commits();
        });
        t.consistency.expect_remember().returning(|_, _| Ok(()));
        let policy = InsuranceService::new(t.build())
            .enrol(id, plan_id, None)
            .await
            .expect("enrolled");
        assert_eq!((policy.plan_id, policy.hourly_premium), (Some(plan_id), 6_000));
    }

    #[tokio::test]
    async fn a_retired_or_unknown_plan_takes_no_enrolment() {
        let mut t = TestPorts::new();
        let member = member_fixture(Role::Rider);
        let id = member.id;
        let mut retired = basic_plan();
        retired.status = core_domain::insurance::PlanStatus::Retired;
        let retired_id = retired.id;
        let uows = [Some(retired), None]
            .into_iter()
            .map(|plan| {
                let mut uow = ports::MockUnitOfWork::new();
                let member = member.clone();
                uow.members.expect_by_id().return_once(move |_| Ok(Some(member)));
                uow.insurance.expect_plan_by_id().return_once(move |_| Ok(plan));
                uow.insurance.expect_insert_policy().never();
                uow.end.expect_commit().never();
                uow
            })
            .collect();
        t.expect_uows(uows);
        let service = InsuranceService::new(t.build());
        let err = service.enrol(id, retired_id, None).await.expect_err("retired");
        assert_eq!(err.code(), "insurance.plan_retired");
        let err = service
            .enrol(id, PlanId(Uuid::now_v7()), None)
            .await
            .expect_err("unknown");
        assert_eq!(err.code(), "insurance.plan_not_found");
    }

    #[tokio::test]
    async fn enrolling_twice_is_a_conflict() {
        let (t, id, plan_id) = enrolment(|uow| {
            uow.insurance
                .expect_insert_policy()
                .return_once(|_| Err(StoreError::Conflict(Unique::ActivePolicy)));
            uow.end.expect_commit().never();
        });
        let err = InsuranceService::new(t.build())
            .enrol(id, plan_id, None)
            .await
            .expect_err("conflict");
        assert_eq!(err.code(), "insurance.already_active");
    }

    #[tokio::test]
    async fn a_withdrawn_member_cannot_enrol() {
        let mut t = TestPorts::new();
        let mut member = member_fixture(Role::Rider);
        member.withdraw(OffsetDateTime::now_utc()).expect("active");
        let id = member.id;
        t.expect_uow(move |uow| {
            uow.members.expect_by_id().return_once(move |_| Ok(Some(member)));
            uow.insurance.expect_insert_policy().never();
        });
        let err = InsuranceService::new(t.build())
            .enrol(id, PlanId(Uuid::now_v7()), None)
            .await
            .expect_err("inactive");
        assert_eq!(err.code(), "member.inactive");
    }

    #[tokio::test]
    async fn withdrawal_expires_every_policy_at_the_withdrawal_time_with_audit_and_event() {
        let mut t = TestPorts::new();
        let member_id = MemberId(Uuid::now_v7());
        let start = OffsetDateTime::now_utc() - Duration::hours(2);
        let withdrawn_at = OffsetDateTime::now_utc() - Duration::hours(1);
        let p = policy(member_id, start);
        t.expect_uow(move |uow| {
            uow.events
                .expect_record_inbox()
                .withf(|consumer, _| consumer == INSURANCE_EXPIRY)
                .return_once(|_, _| Ok(true));
            uow.insurance
                .expect_policies_of_member()
                .return_once(move |_| Ok(vec![p]));
            uow.insurance
                .expect_update_policy()
                .withf(move |p, expected| {
                    *expected == 1
                        && p.status == PolicyStatus::Expired
                        && p.expired_at == Some(withdrawn_at)
                        && p.expiry_reason == Some(ExpiryReason::MemberWithdrawn)
                })
                .times(1)
                .returning(|_, _| Ok(()));
            uow.insurance.expect_insert_audit().times(1).returning(|_| Ok(()));
            uow.emits(&["insurance.policy_expired"]);
            uow.commits();
        });
        let changed = InsuranceService::new(t.build())
            .expire_for_withdrawal(EventId(Uuid::now_v7()), member_id, withdrawn_at)
            .await
            .expect("ok");
        assert_eq!(changed, Some(1));
    }

    #[tokio::test]
    async fn a_redelivered_withdrawal_is_a_no_op() {
        let mut t = TestPorts::new();
        t.expect_uow(|uow| {
            uow.events.expect_record_inbox().return_once(|_, _| Ok(false));
            uow.insurance.expect_policies_of_member().never();
            uow.end.expect_rollback().times(1).returning(|| Ok(()));
        });
        let changed = InsuranceService::new(t.build())
            .expire_for_withdrawal(
                EventId(Uuid::now_v7()),
                MemberId(Uuid::now_v7()),
                OffsetDateTime::now_utc(),
            )
            .await
            .expect("ok");
        assert_eq!(changed, None, "the inbox held it: a duplicate");
    }

    #[tokio::test]
    async fn a_version_conflict_makes_the_handler_retry() {
        let mut t = TestPorts::new();
        let member_id = MemberId(Uuid::now_v7());
        let p = policy(member_id, OffsetDateTime::now_utc() - Duration::hours(2));
        // The use case runs the unit of work again itself (three attempts in all); a conflict
        // that outlasts them goes back to the consumer as transient, to be redelivered.
        let conflicting = |p: Policy| {
            let mut uow = ports::MockUnitOfWork::new();
            uow.events.expect_record_inbox().return_once(|_, _| Ok(true));
            uow.insurance
                .expect_policies_of_member()
                .return_once(move |_| Ok(vec![p]));
            uow.insurance
                .expect_update_policy()
                .return_once(|_, _| Err(StoreError::Concurrency));
            uow.end.expect_commit().never();
            uow
        };
        t.expect_uows((0..retry::MAX_ATTEMPTS).map(|_| conflicting(p.clone())).collect());
        let handler = InsuranceExpiryHandler::new(InsuranceService::new(t.build()));
        let event = DomainEvent::new(
            EventId(Uuid::now_v7()),
            OffsetDateTime::now_utc(),
            EventPayload::MemberWithdrawn {
                member_id,
                withdrawn_at: OffsetDateTime::now_utc() - Duration::hours(1),
            },
        );
        assert!(matches!(handler.handle(&event).await, Err(HandlerError::Transient(_))));
    }

    #[tokio::test]
    async fn an_insurer_cancellation_in_the_future_is_invalid() {
        let mut t = TestPorts::new();
        let p = policy(MemberId(Uuid::now_v7()), OffsetDateTime::now_utc() - Duration::hours(2));
        t.expect_uow(move |uow| {
            uow.insurance
                .expect_policy_by_number()
                .return_once(move |_| Ok(Some(p)));
            uow.events.expect_record_inbox().return_once(|_, _| Ok(true));
            uow.insurance.expect_update_policy().never();
        });
        let err = InsuranceService::new(t.build())
            .insurer_cancellation("ev-1", "P-1", OffsetDateTime::now_utc() + Duration::hours(1))
            .await
            .expect_err("future");
        assert_eq!(err.code(), "insurance.invalid_effective_at");
    }

    #[tokio::test]
    async fn an_insurer_cancellation_records_the_callback_with_what_it_did() {
        let mut t = TestPorts::new();
        let p = policy(MemberId(Uuid::now_v7()), OffsetDateTime::now_utc() - Duration::hours(2));
        let (id, rider) = (p.id, p.member_id);
        let cancelled_at = OffsetDateTime::now_utc() - Duration::hours(1);
        t.expect_uow(move |uow| {
            uow.insurance
                .expect_policy_by_number()
                .return_once(move |_| Ok(Some(p)));
            uow.events.expect_record_inbox().return_once(|_, _| Ok(true));
            uow.insurance.expect_update_policy().times(1).returning(|_, _| Ok(()));
            uow.insurance.expect_insert_audit().times(1).returning(|_| Ok(()));
            uow.emits(&["insurance.policy_expired"]);
            uow.insurance
                .expect_insert_insurer_callback()
                .withf(move |c| {
                    c.policy_id == id
                        && c.insurer_event_id == "ev-7"
                        && c.cancelled_at == cancelled_at
                        && c.outcome == CallbackOutcome::Expired
                        && c.id == EventId(Uuid::new_v5(&INSURER_EVENTS, b"ev-7"))
                })
                .times(1)
                .returning(|_| Ok(()));
            uow.commits();
        });
        t.consistency
            .expect_remember()
            .withf(move |member, _| *member == rider)
            .times(1)
            .returning(|_, _| Ok(()));
        let policy = InsuranceService::new(t.build())
            .insurer_cancellation("ev-7", "P-1", cancelled_at)
            .await
            .expect("applied");
        assert_eq!(policy.expired_at, Some(cancelled_at));
    }

    #[tokio::test]
    async fn an_expiry_preview_shows_the_statement_shrink_and_writes_nothing() {
        let mut t = TestPorts::new();
        let now = OffsetDateTime::now_utc();
        let p = policy(MemberId(Uuid::now_v7()), now - Duration::hours(3));
        let id = p.id;
        let mut session =
            DrivingSession::start(SessionId(Uuid::now_v7()), &p, now - Duration::hours(3)).expect("start");
        session.end(now - Duration::hours(1)).expect("end");
        t.insurance.expect_policy().times(2).returning(move |_, c| {
            assert_eq!(c, Consistency::Strong, "staff read the primary");
            Ok(Some(p.clone()))
        });
        t.insurance
            .expect_sessions_of_policy()
            .times(2)
            .returning(move |_, _, _, _| Ok(vec![session.clone()]));
        // No unit of work is expected: the strict mock database fails the test on `begin`.
        let service = InsuranceService::new(t.build());
        let staff = Caller {
            member_id: MemberId(Uuid::now_v7()),
            role: Role::Cx,
        };
        let at = now - Duration::hours(2);
        let preview = service
            .preview_expiry(
                staff,
                id,
                (at, ExpiryReason::InsurerCancellation),
                now - Duration::hours(4),
                now,
            )
            .await
            .expect("preview");
        assert_eq!(preview.after.expiry_reason, Some(ExpiryReason::InsurerCancellation));
        assert_eq!(preview.change, ExpiryChange::Expired);
        assert_eq!(preview.after.expired_at, Some(at));
        assert_eq!(preview.before.status, PolicyStatus::Active);
        assert_eq!(
            (
                preview.statement_before.insured_minutes,
                preview.statement_before.premium
            ),
            (120, 12_000)
        );
        assert_eq!(
            (preview.statement_after.insured_minutes, preview.statement_after.premium),
            (60, 6_000)
        );
        // Before the coverage start: the same error the expiry itself gives.
        let err = service
            .preview_expiry(
                staff,
                id,
                (now - Duration::hours(5), ExpiryReason::AdminRequest),
                now - Duration::hours(4),
                now,
            )
            .await
            .expect_err("before coverage");
        assert_eq!(err.code(), "insurance.invalid_effective_at");
        let rider = Caller {
            member_id: MemberId(Uuid::now_v7()),
            role: Role::Rider,
        };
        let err = service
            .preview_expiry(
                rider,
                id,
                (at, ExpiryReason::AdminRequest),
                now - Duration::hours(4),
                now,
            )
            .await;
        assert!(matches!(err, Err(InsuranceError::PolicyNotFound)), "{err:?}");
    }

    #[tokio::test]
    async fn a_statement_pages_its_lines_oldest_first_and_totals_every_session() {
        let mut t = TestPorts::new();
        let now = OffsetDateTime::now_utc();
        let p = policy(MemberId(Uuid::now_v7()), now - Duration::hours(10));
        let id = p.id;
        // Three ended sessions of 30, 60 and 90 minutes; two of them start at the same time.
        let start = now - Duration::hours(9);
        let sessions: Vec<DrivingSession> = [(start, 30), (start, 60), (start + Duration::hours(3), 90)]
            .into_iter()
            .map(|(at, minutes)| {
                let mut s = DrivingSession::start(SessionId(Uuid::now_v7()), &p, at).expect("start");
                s.end(at + Duration::minutes(minutes)).expect("end");
                s
            })
            .collect();
        let mut expected: Vec<(OffsetDateTime, SessionId)> = sessions.iter().map(|s| (s.started_at, s.id)).collect();
        expected.sort();
        t.insurance.expect_policy().returning(move |_, _| Ok(Some(p.clone())));
        // The store answers newest first here: the page's order is the service's own.
        t.insurance
            .expect_sessions_of_policy()
            .returning(move |_, _, _, _| Ok(sessions.iter().rev().cloned().collect()));
        let service = InsuranceService::new(t.build());
        let staff = Caller {
            member_id: MemberId(Uuid::now_v7()),
            role: Role::Cx,
        };
        let (from, to) = (now - Duration::days(1), now);
        let (first, next) = service
            .statement(staff, id, from, to, None, Some(2))
            .await
            .expect("first page");
        let next = next.expect("a second page follows");
        let (second, last) = service
            .statement(staff, id, from, to, Some(next), Some(2))
            .await
            .expect("second page");
        assert_eq!(last, None);
        let seen: Vec<(OffsetDateTime, SessionId)> = first
            .sessions
            .iter()
            .chain(&second.sessions)
            .map(|l| (l.started_at, l.session_id))
            .collect();
        assert_eq!(seen, expected, "every line once, oldest first");
        assert_eq!((first.sessions.len(), second.sessions.len()), (2, 1));
        for page in [&first, &second] {
            assert_eq!(page.insured_minutes, 180, "the totals cover every session");
        }
        assert_eq!(first.premium, second.premium);
    }

    #[tokio::test]
    async fn a_rider_cannot_read_someone_elses_statement() {
        let mut t = TestPorts::new();
        t.no_recent_writes();
        let p = policy(MemberId(Uuid::now_v7()), OffsetDateTime::now_utc() - Duration::hours(2));
        let id = p.id;
        t.insurance.expect_policy().return_once(move |_, _| Ok(Some(p)));
        let caller = Caller {
            member_id: MemberId(Uuid::now_v7()),
            role: Role::Rider,
        };
        let now = OffsetDateTime::now_utc();
        let err = InsuranceService::new(t.build())
            .statement(caller, id, now - Duration::days(1), now, None, None)
            .await
            .expect_err("not theirs");
        assert_eq!(err.code(), "insurance.policy_not_found");
    }
}
