//! Units of work: nothing is visible before commit, rollback and drop undo everything, and a
//! spent unit of work refuses to be used.

use ports::{Consistency, StoreError, Unique};

use super::{Stores, assert_store_error, now, rider, stored_rider};

pub async fn a_rollback_leaves_nothing(stores: Stores) {
    let member = rider("rolled.back@example.com", now());
    let mut uow = stores.db.begin().await.unwrap();
    uow.members().insert(&member).await.unwrap();
    // Not visible to readers before commit.
    assert_eq!(
        stores.members.member(member.id, Consistency::Strong).await.unwrap(),
        None
    );
    uow.rollback().await.unwrap();
    assert_eq!(
        stores.members.member(member.id, Consistency::Strong).await.unwrap(),
        None
    );
    let mut uow = stores.db.begin().await.unwrap();
    assert_eq!(uow.members().by_id(member.id).await.unwrap(), None);
    // The e-mail is free again.
    uow.members()
        .insert(&rider("rolled.back@example.com", now()))
        .await
        .unwrap();
    uow.commit().await.unwrap();
}

pub async fn dropping_a_unit_of_work_without_commit_leaves_nothing(stores: Stores) {
    let member = rider("dropped@example.com", now());
    {
        let mut uow = stores.db.begin().await.unwrap();
        uow.members().insert(&member).await.unwrap();
    }
    // The next unit of work gets a connection (the dropped one was rolled back and returned).
    let mut uow = stores.db.begin().await.unwrap();
    assert_eq!(uow.members().by_id(member.id).await.unwrap(), None);
    uow.commit().await.unwrap();
    assert_eq!(
        stores.members.member(member.id, Consistency::Strong).await.unwrap(),
        None
    );
}

pub async fn a_spent_unit_of_work_refuses_work(stores: Stores) {
    let mut uow = stores.db.begin().await.unwrap();
    uow.commit().await.unwrap();
    assert!(matches!(uow.commit().await, Err(StoreError::Other(_))));
    assert!(matches!(uow.rollback().await, Err(StoreError::Other(_))));
    assert!(matches!(
        uow.members().insert(&rider("late@example.com", now())).await,
        Err(StoreError::Other(_))
    ));
    let mut uow = stores.db.begin().await.unwrap();
    uow.rollback().await.unwrap();
    assert!(matches!(uow.commit().await, Err(StoreError::Other(_))));
}

pub async fn a_failed_statement_leaves_the_unit_of_work_unable_to_commit(stores: Stores) {
    stored_rider(&stores, "taken@example.com").await;
    let first = rider("first.of.two@example.com", now());
    let mut uow = stores.db.begin().await.unwrap();
    uow.members().insert(&first).await.unwrap();
    // A statement that fails: PostgreSQL aborts the transaction, and no store may commit the
    // half of the work that went before it.
    assert_store_error(
        uow.members().insert(&rider("taken@example.com", now())).await,
        StoreError::Conflict(Unique::MemberEmail),
    );
    assert!(matches!(uow.commit().await, Err(StoreError::Other(_))));
    assert_eq!(
        stores.members.member(first.id, Consistency::Strong).await.unwrap(),
        None
    );
    // The connection went back clean: the next unit of work commits.
    let mut uow = stores.db.begin().await.unwrap();
    uow.members().insert(&first).await.unwrap();
    uow.commit().await.unwrap();
    assert_eq!(
        stores
            .members
            .member(first.id, Consistency::Strong)
            .await
            .unwrap()
            .map(|m| m.id),
        Some(first.id)
    );
}
