//! Insurance: policies, their uniqueness rules and version check, the audit trail and
//! driving sessions.

use time::{Duration, OffsetDateTime};
use uuid::Uuid;

use core_domain::insurance::{
    Actor, DrivingSession, ExpiryReason, InsurancePlan, NewPlan, NewPolicy, PlanPatch, Policy, PolicyStatus,
};
use core_domain::{AuditId, MemberId, PlanId, PolicyId, SessionId};
use ports::{Consistency, PageRequest, StoreError, Unique};

use super::{Stores, assert_store_error, now, stored_rider};

/// A plan (not stored) offering 3,000 KRW an hour.
pub fn plan(name: &str, at: OffsetDateTime) -> InsurancePlan {
    InsurancePlan::create(
        PlanId(Uuid::now_v7()),
        NewPlan::parse(name, 3_000).expect("valid plan"),
        at,
    )
}

/// An active policy (not stored) numbered `number` enrolled at `at`, on no stored plan (as
/// policies from before plans are).
pub fn policy(member_id: MemberId, number: &str, at: OffsetDateTime) -> Policy {
    let number = NewPolicy::parse(Some(number)).expect("a valid number");
    let mut policy = Policy::enrol(PolicyId(Uuid::now_v7()), member_id, &plan("Basic", at), number, at);
    policy.plan_id = None;
    policy
}

pub async fn plans_round_trip_list_by_name_and_change(stores: Stores) {
    let t0 = now() - Duration::hours(1);
    let night = plan("Night", t0);
    let day = plan("Day", t0 + Duration::microseconds(3));
    let mut uow = stores.db.begin().await.unwrap();
    uow.insurance().insert_plan(&night).await.unwrap();
    uow.insurance().insert_plan(&day).await.unwrap();
    uow.commit().await.unwrap();

    assert_eq!(
        stores.insurance.plan(day.id, Consistency::Strong).await.unwrap(),
        Some(day.clone())
    );
    assert_eq!(
        stores
            .insurance
            .plan(PlanId(Uuid::now_v7()), Consistency::Strong)
            .await
            .unwrap(),
        None
    );
    let offered = stores.insurance.plans(false, Consistency::Strong).await.unwrap();
    assert_eq!(offered, [day.clone(), night.clone()], "by name");

    let mut retired = night.clone();
    let patch = PlanPatch::parse(Some("Night owl"), Some(4_500), Some("retired")).unwrap();
    assert!(retired.apply(patch, now()));
    let mut uow = stores.db.begin().await.unwrap();
    assert_eq!(
        uow.insurance().plan_for_update(night.id).await.unwrap(),
        Some(night.clone())
    );
    uow.insurance().update_plan(&retired).await.unwrap();
    assert_eq!(
        uow.insurance().plan_by_id(night.id).await.unwrap(),
        Some(retired.clone())
    );
    uow.commit().await.unwrap();

    assert_eq!(
        stores.insurance.plans(false, Consistency::Strong).await.unwrap(),
        vec![day.clone()]
    );
    assert_eq!(
        stores.insurance.plans(true, Consistency::Strong).await.unwrap(),
        [day.clone(), retired.clone()]
    );

    // A policy written on a plan keeps its plan and its premium.
    let member = stored_rider(&stores, "planned@example.com").await;
    let policy = Policy::enrol(PolicyId(Uuid::now_v7()), member.id, &day, NewPolicy::default(), now());
    insert_policy(&stores, &policy).await;
    let stored = stores
        .insurance
        .policy(policy.id, Consistency::Strong)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((stored.plan_id, stored.hourly_premium), (Some(day.id), 3_000));
    assert_eq!(stored, policy);

    let mut uow = stores.db.begin().await.unwrap();
    let mut ghost = plan("Ghost", now());
    ghost.id = PlanId(Uuid::now_v7());
    assert!(matches!(
        uow.insurance().update_plan(&ghost).await,
        Err(StoreError::Other(_))
    ));
}

pub(crate) async fn insert_policy(stores: &Stores, policy: &Policy) {
    let mut uow = stores.db.begin().await.unwrap();
    uow.insurance().insert_policy(policy).await.unwrap();
    uow.commit().await.unwrap();
}

pub async fn a_policy_round_trips(stores: Stores) {
    let member = stored_rider(&stores, "policy@example.com").await;
    let t0 = now() - Duration::hours(5);
    let mut older = policy(member.id, "P-OLD", t0);
    older
        .expire(
            t0 + Duration::minutes(30) + Duration::microseconds(7),
            ExpiryReason::InsurerCancellation,
            Actor::Insurer,
            now(),
        )
        .unwrap();
    let newer = policy(member.id, "P-NEW", t0 + Duration::hours(1));

    let mut uow = stores.db.begin().await.unwrap();
    uow.insurance().insert_policy(&older).await.unwrap();
    uow.insurance().insert_policy(&newer).await.unwrap();
    assert_eq!(
        uow.insurance().policy_by_id(older.id).await.unwrap(),
        Some(older.clone())
    );
    assert_eq!(
        uow.insurance().policy_by_number("P-NEW").await.unwrap(),
        Some(newer.clone())
    );
    assert_eq!(uow.insurance().policy_by_number("P-NONE").await.unwrap(), None);
    assert_eq!(
        uow.insurance().policies_of_member(member.id).await.unwrap(),
        vec![newer.clone(), older.clone()]
    );
    uow.commit().await.unwrap();

    assert_eq!(
        stores.insurance.policy(older.id, Consistency::Eventual).await.unwrap(),
        Some(older.clone())
    );
    assert_eq!(
        stores
            .insurance
            .policies_of_member(member.id, &PageRequest::first(10), Consistency::Strong)
            .await
            .unwrap()
            .items,
        vec![newer, older]
    );
    assert_eq!(
        stores
            .insurance
            .policy(PolicyId(Uuid::now_v7()), Consistency::Strong)
            .await
            .unwrap(),
        None
    );
}

pub async fn a_second_active_policy_is_an_active_policy_conflict(stores: Stores) {
    let member = stored_rider(&stores, "active@example.com").await;
    let t0 = now() - Duration::hours(1);
    let mut first = policy(member.id, "P-1", t0);
    insert_policy(&stores, &first).await;

    let mut uow = stores.db.begin().await.unwrap();
    assert_store_error(
        uow.insurance().insert_policy(&policy(member.id, "P-2", t0)).await,
        StoreError::Conflict(Unique::ActivePolicy),
    );
    drop(uow);

    // Once the first has expired, a new active policy is allowed.
    first
        .expire(t0, ExpiryReason::AdminRequest, Actor::System("test".into()), now())
        .unwrap();
    let mut uow = stores.db.begin().await.unwrap();
    uow.insurance().update_policy(&first, 1).await.unwrap();
    uow.insurance()
        .insert_policy(&policy(member.id, "P-3", now()))
        .await
        .unwrap();
    uow.commit().await.unwrap();
    let statuses: Vec<PolicyStatus> = stores
        .insurance
        .policies_of_member(member.id, &PageRequest::first(10), Consistency::Strong)
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|p| p.status)
        .collect();
    assert_eq!(statuses, [PolicyStatus::Active, PolicyStatus::Expired]);
}

pub async fn a_duplicate_policy_number_is_a_policy_number_conflict(stores: Stores) {
    let a = stored_rider(&stores, "a@example.com").await;
    let b = stored_rider(&stores, "b@example.com").await;
    insert_policy(&stores, &policy(a.id, "P-SAME", now())).await;
    let mut uow = stores.db.begin().await.unwrap();
    assert_store_error(
        uow.insurance().insert_policy(&policy(b.id, "P-SAME", now())).await,
        StoreError::Conflict(Unique::PolicyNumber),
    );
}

pub async fn updating_a_policy_with_a_stale_version_is_a_concurrency_error(stores: Stores) {
    let member = stored_rider(&stores, "version@example.com").await;
    let t0 = now() - Duration::hours(2);
    let original = policy(member.id, "P-V", t0);
    insert_policy(&stores, &original).await;

    let mut by_cx = original.clone();
    by_cx
        .expire(
            t0 + Duration::hours(1),
            ExpiryReason::AdminRequest,
            Actor::Staff(MemberId(Uuid::now_v7())),
            now(),
        )
        .unwrap();
    let mut by_insurer = original.clone();
    by_insurer
        .expire(
            t0 + Duration::minutes(10),
            ExpiryReason::InsurerCancellation,
            Actor::Insurer,
            now(),
        )
        .unwrap();
    assert_eq!((by_cx.version, by_insurer.version), (2, 2));

    let mut uow = stores.db.begin().await.unwrap();
    uow.insurance().update_policy(&by_cx, 1).await.unwrap();
    uow.commit().await.unwrap();

    let mut uow = stores.db.begin().await.unwrap();
    assert_store_error(
        uow.insurance().update_policy(&by_insurer, 1).await,
        StoreError::Concurrency,
    );
    drop(uow);
    assert_eq!(
        stores.insurance.policy(original.id, Consistency::Strong).await.unwrap(),
        Some(by_cx)
    );
}

pub async fn the_audit_trail_reads_oldest_first(stores: Stores) {
    let member = stored_rider(&stores, "audit@example.com").await;
    let t0 = now() - Duration::hours(3);
    let mut p = policy(member.id, "P-AUDIT", t0);
    let enrolled = p.enrolment_audit(AuditId(Uuid::now_v7()), Actor::Member(member.id));
    let later = now();
    let change = p
        .expire(
            t0 + Duration::hours(2),
            ExpiryReason::AdminRequest,
            Actor::Staff(MemberId(Uuid::now_v7())),
            later,
        )
        .unwrap();
    let (mut expired, _) = p.expiry_record(&change, AuditId(Uuid::now_v7()), later).unwrap();
    // A staff change's note is kept with it.
    expired.note = Some("라이더가 보험사에 해지 요청 (상담 #1234)".to_owned());
    let change = p
        .expire(
            t0 + Duration::hours(1),
            ExpiryReason::InsurerCancellation,
            Actor::Insurer,
            later,
        )
        .unwrap();
    // Same instant as the previous row: insertion order breaks the tie.
    let (moved, _) = p.expiry_record(&change, AuditId(Uuid::now_v7()), later).unwrap();
    assert_eq!(moved.action, "expiry_moved_earlier");

    let mut uow = stores.db.begin().await.unwrap();
    uow.insurance().insert_policy(&p).await.unwrap();
    uow.insurance().insert_audit(&enrolled).await.unwrap();
    uow.insurance().insert_audit(&expired).await.unwrap();
    uow.insurance().insert_audit(&moved).await.unwrap();
    uow.commit().await.unwrap();

    assert_eq!(
        stores
            .insurance
            .policy_audit(p.id, Consistency::Eventual)
            .await
            .unwrap(),
        vec![enrolled, expired, moved]
    );
    assert!(
        stores
            .insurance
            .policy_audit(PolicyId(Uuid::now_v7()), Consistency::Eventual)
            .await
            .unwrap()
            .is_empty()
    );
}

pub async fn a_second_open_session_is_an_open_session_conflict(stores: Stores) {
    let member = stored_rider(&stores, "driver@example.com").await;
    let p = policy(member.id, "P-DRIVE", now() - Duration::hours(1));
    insert_policy(&stores, &p).await;
    let mut first = DrivingSession::start(SessionId(Uuid::now_v7()), &p, now()).unwrap();
    let mut uow = stores.db.begin().await.unwrap();
    uow.insurance().insert_session(&first).await.unwrap();
    assert_eq!(
        uow.insurance().session_by_id(first.id).await.unwrap(),
        Some(first.clone())
    );
    uow.commit().await.unwrap();

    let second = DrivingSession::start(SessionId(Uuid::now_v7()), &p, now()).unwrap();
    let mut uow = stores.db.begin().await.unwrap();
    assert_store_error(
        uow.insurance().insert_session(&second).await,
        StoreError::Conflict(Unique::OpenSession),
    );
    drop(uow);

    // Ended, the rider may start again.
    first.end(now() + Duration::microseconds(1)).unwrap();
    let mut uow = stores.db.begin().await.unwrap();
    uow.insurance().update_session(&first).await.unwrap();
    uow.insurance().insert_session(&second).await.unwrap();
    uow.commit().await.unwrap();
    assert_eq!(
        stores.insurance.session(first.id, Consistency::Strong).await.unwrap(),
        Some(first)
    );
    assert_eq!(
        stores.insurance.session(second.id, Consistency::Strong).await.unwrap(),
        Some(second)
    );
}

pub async fn sessions_of_policy_are_those_overlapping_the_period(stores: Stores) {
    let member = stored_rider(&stores, "overlap@example.com").await;
    let t = now();
    let h = Duration::hours(1);
    let p = policy(member.id, "P-OVERLAP", t - 10 * h);
    insert_policy(&stores, &p).await;
    let session = |start: OffsetDateTime, end: Option<OffsetDateTime>| {
        let mut s = DrivingSession::start(SessionId(Uuid::now_v7()), &p, start).unwrap();
        if let Some(end) = end {
            s.end(end).unwrap();
        }
        s
    };
    let s1 = session(t - 5 * h, Some(t - 4 * h));
    let s2 = session(t - 3 * h, Some(t - 2 * h));
    let open = session(t - h, None);

    // Another policy's session in the same hours is never returned.
    let other_member = stored_rider(&stores, "other.driver@example.com").await;
    let other_policy = policy(other_member.id, "P-OTHER", t - 10 * h);
    let other = DrivingSession::start(SessionId(Uuid::now_v7()), &other_policy, t - 3 * h).unwrap();

    let mut uow = stores.db.begin().await.unwrap();
    uow.insurance().insert_policy(&other_policy).await.unwrap();
    for s in [&s2, &open, &s1, &other] {
        uow.insurance().insert_session(s).await.unwrap();
    }
    uow.commit().await.unwrap();

    let overlapping = |from: OffsetDateTime, to: OffsetDateTime| {
        let stores = stores.clone();
        async move {
            stores
                .insurance
                .sessions_of_policy(p.id, from, to, Consistency::Eventual)
                .await
                .unwrap()
        }
    };
    assert_eq!(
        overlapping(t - 6 * h, t).await,
        vec![s1.clone(), s2.clone(), open.clone()]
    );
    // Half-open: a session ending at `from` or starting at `to` does not overlap.
    assert_eq!(overlapping(t - 4 * h, t - 3 * h).await, vec![]);
    assert_eq!(overlapping(t - 4 * h, t - 2 * h).await, vec![s2.clone()]);
    assert_eq!(
        overlapping(
            t - 4 * h - Duration::microseconds(1),
            t - 3 * h + Duration::microseconds(1)
        )
        .await,
        vec![s1, s2.clone()]
    );
    // An open session overlaps anything after its start.
    assert_eq!(overlapping(t + h, t + 2 * h).await, vec![open.clone()]);
    assert_eq!(overlapping(t - 150 * Duration::MINUTE, t).await, vec![s2, open]);
}
