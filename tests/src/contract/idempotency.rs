//! Idempotency keys: new, then seen with the stored response.

use ports::IdempotencyStart;

use super::Stores;

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
        IdempotencyStart::Seen {
            fingerprint: "fp-1".to_owned(),
            response: Some(r#"{"id":"p1"}"#.to_owned()),
        }
    );
    assert_eq!(
        uow.idempotency().begin("payment", "key-2", "fp-2").await.unwrap(),
        IdempotencyStart::Seen {
            fingerprint: "fp-2".to_owned(),
            response: None,
        }
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
