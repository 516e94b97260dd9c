//! Idempotency keys: new, then seen with the stored response.

use ports::{Consistency, IdempotencyRecord, IdempotencyStart};

use super::Stores;

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
