//! What the admin web stores: staff sessions, insurer callbacks, and the event trail.

use time::Duration;
use uuid::Uuid;

use core_domain::insurance::{CallbackOutcome, InsurerCallback};
use core_domain::{EventId, MemberId, PolicyId};
use ports::{Consistency, StaffSession};

use super::events::registered;
use super::insurance::{insert_policy, policy};
use super::{Stores, now, stored_rider};

fn session(member_id: MemberId, hash: &str, at: time::OffsetDateTime) -> StaffSession {
    StaffSession {
        token_hash: hash.to_owned(),
        member_id,
        csrf_token: format!("csrf-{hash}"),
        created_at: at,
        last_seen_at: at,
    }
}

pub async fn staff_sessions_live_until_idle_and_end_on_logout_or_for_the_member(stores: Stores) {
    let cx = stored_rider(&stores, "cx.session@example.com").await;
    let other = stored_rider(&stores, "other.session@example.com").await;
    let t0 = now() - Duration::minutes(10);
    let sessions = &stores.staff_sessions;
    for (member, hash) in [(cx.id, "a"), (cx.id, "b"), (cx.id, "c"), (other.id, "d")] {
        sessions.create_session(&session(member, hash, t0)).await.unwrap();
    }
    let idle_since = t0 - Duration::minutes(30);

    // Seen within a minute of its last request: as it was, not written.
    let seen = sessions
        .touch_session("a", idle_since, t0 + Duration::seconds(30))
        .await
        .unwrap();
    assert_eq!(seen, Some(session(cx.id, "a", t0)));
    // A minute or more later: its last request moves.
    let later = t0 + Duration::minutes(2);
    let seen = sessions.touch_session("a", idle_since, later).await.unwrap().unwrap();
    assert_eq!(seen.last_seen_at, later);
    assert_eq!(
        sessions
            .touch_session("a", idle_since, later)
            .await
            .unwrap()
            .unwrap()
            .last_seen_at,
        later
    );
    // Idle since before the cut-off: gone, and gone for good.
    assert_eq!(sessions.touch_session("b", t0, now()).await.unwrap(), None);
    assert_eq!(sessions.touch_session("b", idle_since, now()).await.unwrap(), None);
    assert_eq!(sessions.touch_session("nope", idle_since, now()).await.unwrap(), None);
    // Logout.
    sessions.delete_session("c").await.unwrap();
    assert_eq!(sessions.touch_session("c", idle_since, now()).await.unwrap(), None);
    sessions.delete_session("c").await.unwrap();
    // Every session of one member ends, not another's.
    sessions.delete_sessions_of(cx.id).await.unwrap();
    assert_eq!(sessions.touch_session("a", idle_since, now()).await.unwrap(), None);
    assert_eq!(
        sessions
            .touch_session("d", idle_since, now())
            .await
            .unwrap()
            .map(|s| s.member_id),
        Some(other.id)
    );
}

pub async fn insurer_callbacks_round_trip_oldest_first_per_policy(stores: Stores) {
    let member = stored_rider(&stores, "callbacks@example.com").await;
    let t0 = now() - Duration::hours(3);
    let p = policy(member.id, "P-CALLBACK", t0);
    insert_policy(&stores, &p).await;
    let callback = |event: &str, received_at, outcome| InsurerCallback {
        id: EventId(Uuid::now_v7()),
        insurer_event_id: event.to_owned(),
        policy_id: p.id,
        cancelled_at: t0 + Duration::hours(1),
        outcome,
        received_at,
    };
    let first = callback("ins-1", t0 + Duration::hours(2), CallbackOutcome::Expired);
    let second = callback(
        "ins-2",
        t0 + Duration::hours(2) + Duration::seconds(1),
        CallbackOutcome::Unchanged,
    );
    let mut uow = stores.db.begin().await.unwrap();
    uow.insurance().insert_insurer_callback(&second).await.unwrap();
    uow.insurance().insert_insurer_callback(&first).await.unwrap();
    uow.commit().await.unwrap();
    assert_eq!(
        stores.trail.insurer_callbacks(p.id, Consistency::Strong).await.unwrap(),
        vec![first, second]
    );
    assert!(
        stores
            .trail
            .insurer_callbacks(PolicyId(Uuid::now_v7()), Consistency::Eventual)
            .await
            .unwrap()
            .is_empty()
    );
}

pub async fn the_trail_shows_an_aggregates_events_newest_first_with_their_consumers(stores: Stores) {
    let (a, b, c) = (
        MemberId(Uuid::now_v7()),
        MemberId(Uuid::now_v7()),
        MemberId(Uuid::now_v7()),
    );
    let t = now();
    let (a1, a2, b1, c1) = (registered(a, t), registered(a, t), registered(b, t), registered(c, t));
    let mut uow = stores.db.begin().await.unwrap();
    uow.events()
        .append(&[a1.clone(), b1.clone(), a2.clone(), c1])
        .await
        .unwrap();
    assert!(uow.events().record_inbox("insurance-expiry", a1.id).await.unwrap());
    assert!(uow.events().record_inbox("audit-log", a1.id).await.unwrap());
    uow.commit().await.unwrap();

    let trail = stores
        .trail
        .events_of(&[a.0, b.0], 10, Consistency::Strong)
        .await
        .unwrap();
    assert_eq!(trail.iter().map(|e| e.id).collect::<Vec<_>>(), [a2.id, b1.id, a1.id]);
    let consumers = |i: usize| {
        trail[i]
            .consumed
            .iter()
            .map(|c| c.consumer.as_str())
            .collect::<Vec<_>>()
    };
    assert!(consumers(0).is_empty() && consumers(1).is_empty());
    let mut applied = consumers(2);
    applied.sort_unstable();
    assert_eq!(applied, ["audit-log", "insurance-expiry"]);
    let first = &trail[2];
    assert_eq!(
        (
            first.event_type.as_str(),
            first.topic.as_str(),
            first.status.as_str(),
            first.attempts
        ),
        ("member.registered", "member-events", "pending", 0)
    );
    assert_eq!(first.aggregate_id, a.0);
    assert!(first.payload.contains(&a.0.to_string()));
    assert_eq!(first.sent_at, None);

    assert_eq!(
        stores
            .trail
            .events_of(&[a.0, b.0], 2, Consistency::Strong)
            .await
            .unwrap()
            .len(),
        2
    );
    assert!(
        stores
            .trail
            .events_of(&[Uuid::now_v7()], 10, Consistency::Strong)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        stores
            .trail
            .events_of(&[], 10, Consistency::Strong)
            .await
            .unwrap()
            .is_empty()
    );
}
