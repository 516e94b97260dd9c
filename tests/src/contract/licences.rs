//! Contract cases: driving licences, their checks, and batch jobs' leases.

use time::Duration;
use time::macros::date;
use uuid::Uuid;

use core_domain::insurance::Actor;
use core_domain::licence::{DuePolicy, Licence, LicenceCheck, LicenceNumber, LicenceStatus, Verdict};
use core_domain::{AuditId, MemberId};
use ports::{Consistency, JobProgress};

use super::{Stores, now, stored_rider};

async fn stored_licence(
    stores: &Stores,
    email: &str,
    expires_on: time::Date,
    verified_at: time::OffsetDateTime,
) -> Licence {
    let member = stored_rider(stores, email).await;
    let licence = Licence::register(
        member.id,
        LicenceNumber::parse("11-22-333333-44").unwrap(),
        Verdict::Valid { expires_on },
        verified_at,
    )
    .unwrap();
    let mut uow = stores.db.begin().await.unwrap();
    uow.licences().save_licence(&licence).await.unwrap();
    uow.commit().await.unwrap();
    licence
}

pub async fn a_licence_and_its_checks_round_trip(stores: Stores) {
    let t = now();
    let mut licence = stored_licence(&stores, "licensed@example.com", date!(2031 - 02 - 28), t).await;
    let member_id = licence.member_id;
    assert_eq!(
        stores.licences.licence(member_id, Consistency::Strong).await.unwrap(),
        Some(licence.clone())
    );
    assert_eq!(
        stores
            .licences
            .licence(MemberId(Uuid::now_v7()), Consistency::Strong)
            .await
            .unwrap(),
        None
    );

    // A suspension replaces the row; its check joins the trail.
    let (check, event) = licence.reverify(
        Verdict::Rejected {
            reason: "revoked".into(),
        },
        AuditId(Uuid::now_v7()),
        Actor::System("licence-reverification".into()),
        t + Duration::seconds(1),
    );
    assert!(event.is_some());
    let first = LicenceCheck {
        id: AuditId(Uuid::now_v7()),
        checked_at: t,
        status: LicenceStatus::Valid,
        reason: None,
        actor: Actor::Member(member_id),
        ..check.clone()
    };
    let mut uow = stores.db.begin().await.unwrap();
    let locked = uow.licences().licence_for_update(member_id).await.unwrap();
    assert_eq!(locked.map(|l| l.status), Some(LicenceStatus::Valid));
    uow.licences().save_licence(&licence).await.unwrap();
    uow.licences().insert_check(&first).await.unwrap();
    uow.licences().insert_check(&check).await.unwrap();
    uow.commit().await.unwrap();

    let stored = stores
        .licences
        .licence(member_id, Consistency::Strong)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored, licence);
    assert_eq!(
        (stored.status, stored.status_reason.as_deref()),
        (LicenceStatus::Suspended, Some("revoked"))
    );
    let checks = stores
        .licences
        .licence_checks(member_id, 10, Consistency::Strong)
        .await
        .unwrap();
    assert_eq!(checks, vec![check.clone(), first]);
    assert_eq!(
        stores
            .licences
            .licence_checks(member_id, 1, Consistency::Strong)
            .await
            .unwrap(),
        vec![check]
    );
}

pub async fn due_licences_are_listed_by_member_after_a_key_and_counted(stores: Stores) {
    let t = now();
    let policy = DuePolicy::default();
    let cutoffs = policy.cutoffs(t);
    let far = date!(2040 - 01 - 01);
    let expiring = stored_licence(&stores, "expiring@example.com", cutoffs.expires_by, t).await;
    let stale = stored_licence(&stores, "stale@example.com", far, cutoffs.verified_before).await;
    let fresh = stored_licence(
        &stores,
        "fresh@example.com",
        far,
        cutoffs.verified_before + Duration::microseconds(1),
    )
    .await;
    let later = stored_licence(&stores, "later@example.com", cutoffs.expires_by.next_day().unwrap(), t).await;
    let mut suspended = stored_licence(
        &stores,
        "suspended@example.com",
        cutoffs.expires_by,
        cutoffs.verified_before,
    )
    .await;
    suspended.status = LicenceStatus::Suspended;
    let mut uow = stores.db.begin().await.unwrap();
    uow.licences().save_licence(&suspended).await.unwrap();
    uow.commit().await.unwrap();
    for not_due in [&fresh, &later, &suspended] {
        assert!(!not_due.is_due(&cutoffs));
    }

    let mut due = vec![expiring.clone(), stale.clone()];
    due.sort_by_key(|l| l.member_id);
    let all = stores
        .licences
        .due_licences(&cutoffs, None, 10, Consistency::Strong)
        .await
        .unwrap();
    assert_eq!(all, due);
    assert_eq!(
        stores
            .licences
            .count_due_licences(&cutoffs, None, Consistency::Strong)
            .await
            .unwrap(),
        2
    );
    let first = stores
        .licences
        .due_licences(&cutoffs, None, 1, Consistency::Strong)
        .await
        .unwrap();
    assert_eq!(first, due[..1]);
    let rest = stores
        .licences
        .due_licences(&cutoffs, Some(due[0].member_id), 10, Consistency::Strong)
        .await
        .unwrap();
    assert_eq!(rest, due[1..]);
    assert_eq!(
        stores
            .licences
            .count_due_licences(&cutoffs, Some(due[0].member_id), Consistency::Strong)
            .await
            .unwrap(),
        1
    );

    let mut uow = stores.db.begin().await.unwrap();
    let ids = [stale.member_id, fresh.member_id, MemberId(Uuid::now_v7())];
    let locked = uow.licences().licences_for_update(&ids).await.unwrap();
    let mut expected = vec![stale, fresh];
    expected.sort_by_key(|l| l.member_id);
    assert_eq!(locked, expected);
    assert!(uow.licences().licences_for_update(&[]).await.unwrap().is_empty());
}

pub async fn one_holder_at_a_time_holds_a_job_and_its_progress_survives_it(stores: Stores) {
    let t = now();
    let lease = Duration::seconds(30);
    let first = stores
        .jobs
        .acquire("job", "a", t, t + lease)
        .await
        .unwrap()
        .expect("a free job");
    assert_eq!((first.cursor, first.run_started_at), (None, t));
    assert_eq!(
        stores.jobs.acquire("job", "b", t, t + lease).await.unwrap(),
        None,
        "held by a"
    );
    assert!(
        stores.jobs.acquire("other", "b", t, t + lease).await.unwrap().is_some(),
        "jobs are leased apart"
    );

    // a commits a chunk; b cannot record one.
    let progress = |holder, cursor| JobProgress {
        job: "job",
        holder,
        cursor,
        done: 3,
        failed: 1,
        lease_until: t + lease + lease,
    };
    let mut uow = stores.db.begin().await.unwrap();
    assert!(uow.jobs().advance(&progress("a", "k1")).await.unwrap());
    uow.commit().await.unwrap();
    let mut uow = stores.db.begin().await.unwrap();
    assert!(!uow.jobs().advance(&progress("b", "k9")).await.unwrap());
    uow.rollback().await.unwrap();
    // A rolled-back chunk records nothing.
    let mut uow = stores.db.begin().await.unwrap();
    assert!(uow.jobs().advance(&progress("a", "k2")).await.unwrap());
    uow.rollback().await.unwrap();

    let state = |states: Vec<ports::JobState>| states.into_iter().find(|s| s.name == "job").unwrap();
    let row = state(stores.jobs.job_states().await.unwrap());
    assert_eq!(
        (
            row.holder.as_deref(),
            row.cursor.as_deref(),
            row.rows_done,
            row.rows_failed,
            row.lease_until
        ),
        (Some("a"), Some("k1"), 3, 1, Some(t + lease + lease))
    );

    // a dies: until its extended lease runs out, b waits; then b resumes after k1.
    let later = t + lease + lease;
    assert_eq!(
        stores
            .jobs
            .acquire("job", "b", later - Duration::seconds(1), later + lease)
            .await
            .unwrap(),
        None
    );
    let resumed = stores
        .jobs
        .acquire("job", "b", later, later + lease)
        .await
        .unwrap()
        .expect("taken over");
    assert_eq!((resumed.cursor.as_deref(), resumed.run_started_at), (Some("k1"), t));
    let mut uow = stores.db.begin().await.unwrap();
    assert!(
        !uow.jobs().advance(&progress("a", "k2")).await.unwrap(),
        "a lost its lease"
    );
    uow.rollback().await.unwrap();
    assert!(!stores.jobs.finish("job", "a", later).await.unwrap());

    // b finishes: the next run starts afresh, for anyone.
    assert!(stores.jobs.finish("job", "b", later).await.unwrap());
    let row = state(stores.jobs.job_states().await.unwrap());
    assert_eq!(
        (row.holder, row.cursor, row.last_finished_at),
        (None, None, Some(later))
    );
    let next = stores
        .jobs
        .acquire("job", "c", later, later + lease)
        .await
        .unwrap()
        .expect("free");
    assert_eq!((next.cursor, next.run_started_at), (None, later));
    let row = state(stores.jobs.job_states().await.unwrap());
    assert_eq!((row.rows_done, row.rows_failed), (0, 0), "a new run counts afresh");

    // Released (not finished): the cursor stays for whoever runs it next.
    let mut uow = stores.db.begin().await.unwrap();
    assert!(uow.jobs().advance(&progress("c", "k5")).await.unwrap());
    uow.commit().await.unwrap();
    stores.jobs.release("job", "c").await.unwrap();
    let again = stores
        .jobs
        .acquire("job", "d", later, later + lease)
        .await
        .unwrap()
        .expect("released");
    assert_eq!(again.cursor.as_deref(), Some("k5"));
}
