//! Idempotency keys: new, then seen with the stored response; reserved together with the
//! member's lock.

use std::time::Duration;

use core_domain::MemberId;
use ports::{Claim, Consistency, IdempotencyRecord, IdempotencyStart, KeyClaim};

use super::{Stores, stored_rider};

fn completed() -> IdempotencyRecord {
    IdempotencyRecord {
        fingerprint: "fp-1".to_owned(),
        response: Some(r#"{"id":"p1"}"#.to_owned()),
    }
}

fn in_progress() -> IdempotencyRecord {
    IdempotencyRecord {
        fingerprint: "fp-2".to_owned(),
        response: None,
    }
}

pub async fn an_idempotency_key_is_new_then_seen_with_its_response(stores: Stores) {
    let mut uow = stores.db.begin().await.unwrap();
    assert_eq!(
        uow.idempotency().begin("payment", "key-1", "fp-1").await.unwrap(),
        IdempotencyStart::New
    );
    uow.idempotency()
        .complete("payment", "key-1", r#"{"id":"p1"}"#)
        .await
        .unwrap();
    // Reserved but never completed.
    assert_eq!(
        uow.idempotency().begin("payment", "key-2", "fp-2").await.unwrap(),
        IdempotencyStart::New
    );
    uow.commit().await.unwrap();

    let mut uow = stores.db.begin().await.unwrap();
    assert_eq!(
        uow.idempotency().begin("payment", "key-1", "fp-other").await.unwrap(),
        IdempotencyStart::Seen(completed())
    );
    assert_eq!(
        uow.idempotency().begin("payment", "key-2", "fp-2").await.unwrap(),
        IdempotencyStart::Seen(in_progress())
    );
    // Keys are per scope.
    assert_eq!(
        uow.idempotency().begin("refund", "key-1", "fp-1").await.unwrap(),
        IdempotencyStart::New
    );
    uow.rollback().await.unwrap();

    // A rolled-back reservation is gone.
    let mut uow = stores.db.begin().await.unwrap();
    assert_eq!(
        uow.idempotency().begin("refund", "key-1", "fp-1").await.unwrap(),
        IdempotencyStart::New
    );
}

pub async fn reads_see_committed_idempotency_keys_only(stores: Stores) {
    let read = |key: &'static str| {
        let stores = stores.clone();
        async move {
            stores
                .idempotency
                .idempotency_record("payment", key, Consistency::Strong)
                .await
                .unwrap()
        }
    };
    let mut uow = stores.db.begin().await.unwrap();
    uow.idempotency().begin("payment", "key-1", "fp-1").await.unwrap();
    uow.idempotency()
        .complete("payment", "key-1", r#"{"id":"p1"}"#)
        .await
        .unwrap();
    uow.idempotency().begin("payment", "key-2", "fp-2").await.unwrap();
    assert_eq!(read("key-1").await, None, "uncommitted keys are not visible");
    uow.commit().await.unwrap();

    assert_eq!(read("key-1").await, Some(completed()));
    assert_eq!(read("key-2").await, Some(in_progress()));
    assert_eq!(read("key-3").await, None);
    assert_eq!(
        stores
            .idempotency
            .idempotency_record("refund", "key-1", Consistency::Strong)
            .await
            .unwrap(),
        None,
        "keys are per scope"
    );
}

fn claim<'a>(key: &'a str, fingerprint: &'a str) -> Option<KeyClaim<'a>> {
    Some(KeyClaim {
        scope: "payment",
        key,
        fingerprint,
    })
}

pub async fn a_claim_reserves_the_key_and_locks_the_member(stores: Stores) {
    let member = stored_rider(&stores, "claim@example.com").await;
    let nobody = MemberId(uuid::Uuid::now_v7());

    let mut uow = stores.db.begin().await.unwrap();
    assert_eq!(
        uow.claim_for_member(claim("key-1", "fp-1"), member.id).await.unwrap(),
        Claim::Member(Some(member.clone()))
    );
    uow.idempotency()
        .complete("payment", "key-1", r#"{"id":"p1"}"#)
        .await
        .unwrap();
    // The key is reserved whether or not the member exists; without a key, only the member.
    assert_eq!(
        uow.claim_for_member(claim("key-2", "fp-2"), nobody).await.unwrap(),
        Claim::Member(None)
    );
    assert_eq!(
        uow.claim_for_member(None, member.id).await.unwrap(),
        Claim::Member(Some(member.clone()))
    );
    uow.commit().await.unwrap();

    let mut uow = stores.db.begin().await.unwrap();
    assert_eq!(
        uow.claim_for_member(claim("key-1", "fp-other"), member.id)
            .await
            .unwrap(),
        Claim::Seen(completed())
    );
    assert_eq!(
        uow.claim_for_member(claim("key-2", "fp-2"), member.id).await.unwrap(),
        Claim::Seen(in_progress())
    );
    uow.rollback().await.unwrap();

    // While one transaction holds the member, another's claim for that member (another key)
    // waits for it; a claim of the same key waits too, then finds the first one's response.
    let mut first = stores.db.begin().await.unwrap();
    assert_eq!(
        first.claim_for_member(claim("key-3", "fp-3"), member.id).await.unwrap(),
        Claim::Member(Some(member.clone()))
    );
    let contender = |key: &'static str| {
        let stores = stores.clone();
        tokio::spawn(async move {
            let mut uow = stores.db.begin().await.unwrap();
            let claimed = uow.claim_for_member(claim(key, "fp-3"), member.id).await.unwrap();
            uow.rollback().await.unwrap();
            claimed
        })
    };
    let other_key = contender("key-4");
    let same_key = contender("key-3");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!other_key.is_finished(), "the member's lock is held");
    assert!(!same_key.is_finished(), "the key is held");
    first
        .idempotency()
        .complete("payment", "key-3", r#"{"id":"p3"}"#)
        .await
        .unwrap();
    first.commit().await.unwrap();
    assert_eq!(other_key.await.unwrap(), Claim::Member(Some(member.clone())));
    assert_eq!(
        same_key.await.unwrap(),
        Claim::Seen(IdempotencyRecord {
            fingerprint: "fp-3".to_owned(),
            response: Some(r#"{"id":"p3"}"#.to_owned()),
        })
    );
}
