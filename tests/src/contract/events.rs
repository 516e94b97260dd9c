//! Events: the inbox, and the outbox as a relay sees it (claim order, per-aggregate order,
//! leases, retries, dead rows, stats, wake-ups).

use std::collections::HashSet;
use std::time::Duration as StdDuration;

use futures::future::join_all;
use time::{Duration, OffsetDateTime};
use uuid::Uuid;

use core_domain::event::{DomainEvent, EventPayload};
use core_domain::member::Role;
use core_domain::{EventId, MemberId};
use ports::{Consistency, OutboxRecord, OutboxStats};

use super::{Stores, now};

/// A `member.registered` event of `member` (its aggregate) that occurred at `at`.
pub fn registered(member: MemberId, at: OffsetDateTime) -> DomainEvent {
    DomainEvent::new(
        EventId(Uuid::now_v7()),
        at,
        EventPayload::MemberRegistered {
            member_id: member,
            role: Role::Rider,
            registered_at: at,
        },
    )
}

async fn append(stores: &Stores, events: &[DomainEvent]) {
    let mut uow = stores.db.begin().await.unwrap();
    uow.events().append(events).await.unwrap();
    uow.commit().await.unwrap();
}

fn ids(records: &[OutboxRecord]) -> Vec<EventId> {
    records.iter().map(|r| r.id).collect()
}

const LONG: StdDuration = StdDuration::from_secs(60);

pub async fn the_inbox_records_an_event_once_per_consumer(stores: Stores) {
    let event = EventId(Uuid::now_v7());
    let mut uow = stores.db.begin().await.unwrap();
    assert!(uow.events().record_inbox("insurance-expiry", event).await.unwrap());
    assert!(!uow.events().record_inbox("insurance-expiry", event).await.unwrap());
    uow.commit().await.unwrap();

    let mut uow = stores.db.begin().await.unwrap();
    assert!(!uow.events().record_inbox("insurance-expiry", event).await.unwrap());
    assert!(uow.events().record_inbox("data-platform", event).await.unwrap());
    uow.rollback().await.unwrap();
    let consumed = |consumer: &'static str| stores.trail.consumed(consumer, event, Consistency::Strong);
    assert!(consumed("insurance-expiry").await.unwrap());
    assert!(!consumed("data-platform").await.unwrap(), "its record was rolled back");

    // A rolled-back record is gone, so the redelivery is applied.
    let mut uow = stores.db.begin().await.unwrap();
    assert!(uow.events().record_inbox("data-platform", event).await.unwrap());
    uow.commit().await.unwrap();
    assert!(consumed("data-platform").await.unwrap());
    assert!(
        !stores
            .trail
            .consumed("data-platform", EventId(Uuid::now_v7()), Consistency::Strong)
            .await
            .unwrap()
    );

    // A delivery recorded on its own (possibly one statement, without a transaction).
    let delivered = EventId(Uuid::now_v7());
    let record = || async {
        let mut uow = stores.db.begin().await?;
        uow.events().record_delivery("data-platform", delivered).await?;
        uow.commit().await
    };
    record().await.unwrap();
    let delivered_to = |consumer: &'static str| stores.trail.consumed(consumer, delivered, Consistency::Strong);
    assert!(delivered_to("data-platform").await.unwrap());
    assert!(!delivered_to("insurance-expiry").await.unwrap());
    // Again: nothing changes, or the duplicate is a conflict.
    match record().await {
        Ok(_) | Err(ports::StoreError::Conflict(_)) => {}
        Err(e) => panic!("a second record of a delivery: {e:?}"),
    }
    assert!(delivered_to("data-platform").await.unwrap());
    // Rolled back with other work, it is not recorded.
    let undone = EventId(Uuid::now_v7());
    let mut uow = stores.db.begin().await.unwrap();
    uow.events().record_delivery("data-platform", undone).await.unwrap();
    assert!(uow.events().record_inbox("insurance-expiry", undone).await.unwrap());
    uow.rollback().await.unwrap();
    assert!(
        !stores
            .trail
            .consumed("data-platform", undone, Consistency::Strong)
            .await
            .unwrap()
    );
}

pub async fn the_outbox_is_claimed_in_seq_order(stores: Stores) {
    let t = now();
    let events: Vec<DomainEvent> = (0..5)
        .map(|i| registered(MemberId(Uuid::now_v7()), t - Duration::seconds(10 - i)))
        .collect();
    append(&stores, &events[..3]).await;
    append(&stores, &events[3..]).await;

    let first = stores.outbox.claim("relay-1", 3, LONG).await.unwrap();
    assert_eq!(ids(&first), ids_of(&events[..3]));
    let r = &first[0];
    assert_eq!(r.topic, "member-events");
    assert_eq!(r.event_type, "member.registered");
    assert_eq!(r.key, events[0].aggregate_id.to_string());
    assert_eq!(r.payload, events[0].to_json());
    assert_eq!(r.attempts, 0);
    assert_eq!(r.created_at, events[0].occurred_at);
    assert!(first.windows(2).all(|w| w[0].seq < w[1].seq));

    let rest = stores.outbox.claim("relay-1", 10, LONG).await.unwrap();
    assert_eq!(ids(&rest), ids_of(&events[3..]));
    assert!(rest[0].seq > first[2].seq);
    assert!(stores.outbox.claim("relay-1", 10, LONG).await.unwrap().is_empty());
}

fn ids_of(events: &[DomainEvent]) -> Vec<EventId> {
    events.iter().map(|e| e.id).collect()
}

pub async fn a_later_event_of_an_aggregate_waits_for_the_earlier_one(stores: Stores) {
    let x = MemberId(Uuid::now_v7());
    let y = MemberId(Uuid::now_v7());
    let t = now();
    let x1 = registered(x, t);
    let y1 = registered(y, t);
    let x2 = DomainEvent::new(
        EventId(Uuid::now_v7()),
        t,
        EventPayload::MemberWithdrawn {
            member_id: x,
            withdrawn_at: t,
        },
    );
    append(&stores, &[x1.clone(), x2.clone(), y1.clone()]).await;

    // One row per aggregate per batch: x2 waits behind x1.
    let batch = stores.outbox.claim("relay", 10, LONG).await.unwrap();
    assert_eq!(ids(&batch), vec![x1.id, y1.id]);
    // x1 is claimed but still unsent: x2 keeps waiting.
    assert!(stores.outbox.claim("relay", 10, LONG).await.unwrap().is_empty());
    stores.outbox.mark_sent(&[y1.id]).await.unwrap();
    assert!(stores.outbox.claim("relay", 10, LONG).await.unwrap().is_empty());
    stores.outbox.mark_sent(&[x1.id]).await.unwrap();
    let next = stores.outbox.claim("relay", 10, LONG).await.unwrap();
    assert_eq!(ids(&next), vec![x2.id]);
    assert_eq!(next[0].event_type, "member.withdrawn");
}

pub async fn concurrent_claimers_never_get_the_same_row(stores: Stores) {
    let events: Vec<DomainEvent> = (0..100).map(|_| registered(MemberId(Uuid::now_v7()), now())).collect();
    append(&stores, &events).await;

    let relays = (0..4).map(|n| {
        let outbox = stores.outbox.clone();
        tokio::spawn(async move {
            let mut mine = Vec::new();
            loop {
                let batch = outbox.claim(&format!("relay-{n}"), 7, LONG).await.unwrap();
                if batch.is_empty() {
                    return mine;
                }
                mine.extend(ids(&batch));
                tokio::task::yield_now().await;
            }
        })
    });
    let claimed: Vec<EventId> = join_all(relays).await.into_iter().flat_map(Result::unwrap).collect();
    let unique: HashSet<EventId> = claimed.iter().copied().collect();
    assert_eq!(claimed.len(), 100, "every row claimed exactly once");
    assert_eq!(unique, events.iter().map(|e| e.id).collect::<HashSet<_>>());
}

pub async fn an_expired_lease_makes_a_row_claimable_again(stores: Stores) {
    let event = registered(MemberId(Uuid::now_v7()), now());
    append(&stores, std::slice::from_ref(&event)).await;
    let lease = StdDuration::from_millis(200);
    assert_eq!(
        ids(&stores.outbox.claim("crashed", 10, lease).await.unwrap()),
        vec![event.id]
    );
    assert!(stores.outbox.claim("other", 10, lease).await.unwrap().is_empty());
    tokio::time::sleep(lease + StdDuration::from_millis(100)).await;
    let again = stores.outbox.claim("other", 10, LONG).await.unwrap();
    assert_eq!(ids(&again), vec![event.id]);
    assert_eq!(again[0].attempts, 0);
}

pub async fn a_failed_row_is_hidden_until_its_retry_time(stores: Stores) {
    let event = registered(MemberId(Uuid::now_v7()), now());
    append(&stores, std::slice::from_ref(&event)).await;
    assert_eq!(stores.outbox.claim("relay", 10, LONG).await.unwrap().len(), 1);
    let retry_at = OffsetDateTime::now_utc() + Duration::milliseconds(300);
    stores
        .outbox
        .mark_failed(event.id, "broker down", retry_at, false)
        .await
        .unwrap();
    // The claim is released but the row is not due yet.
    assert!(stores.outbox.claim("relay", 10, LONG).await.unwrap().is_empty());
    assert_eq!(stores.outbox.stats().await.unwrap().backlog, 1);
    tokio::time::sleep(StdDuration::from_millis(400)).await;
    let again = stores.outbox.claim("relay", 10, LONG).await.unwrap();
    assert_eq!(ids(&again), vec![event.id]);
    assert_eq!(again[0].attempts, 1);

    // A failure due at once is claimable at once (the lease was released).
    stores
        .outbox
        .mark_failed(
            event.id,
            "again",
            OffsetDateTime::now_utc() - Duration::seconds(1),
            false,
        )
        .await
        .unwrap();
    let third = stores.outbox.claim("relay", 10, LONG).await.unwrap();
    assert_eq!(third[0].attempts, 2);
}

pub async fn dead_rows_are_not_claimed_and_are_counted(stores: Stores) {
    let member = MemberId(Uuid::now_v7());
    let doomed = registered(member, now());
    let follower = DomainEvent::new(
        EventId(Uuid::now_v7()),
        now(),
        EventPayload::MemberWithdrawn {
            member_id: member,
            withdrawn_at: now(),
        },
    );
    append(&stores, &[doomed.clone(), follower.clone()]).await;
    assert_eq!(
        ids(&stores.outbox.claim("relay", 10, LONG).await.unwrap()),
        vec![doomed.id]
    );
    stores
        .outbox
        .mark_failed(
            doomed.id,
            "rejected",
            OffsetDateTime::now_utc() - Duration::seconds(1),
            true,
        )
        .await
        .unwrap();
    // The dead row is never claimed again; it no longer holds back its aggregate.
    let next = stores.outbox.claim("relay", 10, LONG).await.unwrap();
    assert_eq!(ids(&next), vec![follower.id]);
    stores.outbox.mark_sent(&[follower.id]).await.unwrap();
    assert!(stores.outbox.claim("relay", 10, LONG).await.unwrap().is_empty());
    assert_eq!(
        stores.outbox.stats().await.unwrap(),
        OutboxStats {
            backlog: 0,
            oldest_created_at: None,
            dead: 1,
        }
    );
}

pub async fn outbox_stats_report_the_backlog_and_its_oldest_row(stores: Stores) {
    assert_eq!(stores.outbox.stats().await.unwrap(), OutboxStats::default());
    let t = now();
    let oldest = registered(MemberId(Uuid::now_v7()), t - Duration::minutes(3));
    let middle = registered(MemberId(Uuid::now_v7()), t - Duration::minutes(2));
    let newest = registered(MemberId(Uuid::now_v7()), t - Duration::minutes(1));
    append(&stores, &[middle.clone(), oldest.clone(), newest.clone()]).await;
    assert_eq!(
        stores.outbox.stats().await.unwrap(),
        OutboxStats {
            backlog: 3,
            oldest_created_at: Some(oldest.occurred_at),
            dead: 0,
        }
    );
    // Claimed rows are still backlog until sent.
    assert_eq!(stores.outbox.claim("relay", 10, LONG).await.unwrap().len(), 3);
    assert_eq!(stores.outbox.stats().await.unwrap().backlog, 3);
    stores.outbox.mark_sent(&[oldest.id, middle.id]).await.unwrap();
    assert_eq!(
        stores.outbox.stats().await.unwrap(),
        OutboxStats {
            backlog: 1,
            oldest_created_at: Some(newest.occurred_at),
            dead: 0,
        }
    );
}

pub async fn waiting_for_events_wakes_after_a_commit_that_appended_some(stores: Stores) {
    // Nothing appended: waits out `max_wait`.
    let started = std::time::Instant::now();
    stores.outbox.wait_for_events(StdDuration::from_millis(100)).await;
    assert!(started.elapsed() >= StdDuration::from_millis(90));

    let writer = {
        let stores = stores.clone();
        tokio::spawn(async move {
            tokio::time::sleep(StdDuration::from_millis(100)).await;
            append(&stores, &[registered(MemberId(Uuid::now_v7()), now())]).await;
        })
    };
    let started = std::time::Instant::now();
    stores.outbox.wait_for_events(StdDuration::from_secs(20)).await;
    assert!(
        started.elapsed() < StdDuration::from_secs(10),
        "woken by the commit, not by the timeout"
    );
    writer.await.unwrap();
}
