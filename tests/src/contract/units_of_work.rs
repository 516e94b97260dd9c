//! Units of work: nothing is visible before commit, rollback and drop undo everything, and a
//! spent unit of work refuses to be used.

use uuid::Uuid;

use core_domain::PaymentId;
use core_domain::order::OrderLine;
use ports::{Consistency, StoreError, Unique};

use super::catalog::stored_product;
use super::orders::{assert_stored, order};
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

/// Writes nobody reads the result of may wait for the unit of work's next statement or its
/// commit (one round trip for several): a read still sees them, and one that fails, wherever
/// its error surfaces, leaves nothing of the unit of work and the connection usable.
pub async fn a_queued_write_is_seen_by_later_reads_and_its_failure_fails_the_commit(stores: Stores) {
    let m = stored_rider(&stores, "queued.writes@example.com").await;
    let helmet = stored_product(&stores, "Helmet", 30_000, 10).await;
    let mut placed = order(m.id, vec![OrderLine::of(&helmet, 1)], now());

    let mut uow = stores.db.begin().await.unwrap();
    uow.orders().insert_order(&placed).await.unwrap();
    assert_eq!(uow.orders().order_by_id(placed.id).await.unwrap(), Some(placed.clone()));
    let (payment, _event) = placed.pay(PaymentId(Uuid::now_v7()), now()).unwrap();
    uow.orders().update_order(&placed).await.unwrap();
    uow.orders().insert_payment(&payment).await.unwrap();
    uow.commit().await.unwrap();
    assert_stored(&stores, &placed, Some(&payment), Consistency::Strong).await;

    // Behind a valid insert, a queued write that fails: an update of an order that does not
    // exist, then a duplicate key (the same payment again).
    let other = order(m.id, vec![OrderLine::of(&helmet, 2)], now());
    let missing = order(m.id, vec![OrderLine::of(&helmet, 3)], now());
    for duplicate in [false, true] {
        let mut uow = stores.db.begin().await.unwrap();
        uow.orders().insert_order(&other).await.unwrap();
        let failing = if duplicate {
            uow.orders().insert_payment(&payment).await
        } else {
            uow.orders().update_order(&missing).await
        };
        let outcome = match failing {
            Ok(()) => uow.commit().await,
            Err(e) => Err(e),
        };
        if duplicate {
            assert!(matches!(outcome, Err(StoreError::Conflict(_))), "{outcome:?}");
        } else {
            assert!(matches!(outcome, Err(StoreError::Other(_))), "{outcome:?}");
        }
        drop(uow);
        assert_eq!(stores.orders.order(other.id, Consistency::Strong).await.unwrap(), None);
    }

    // The connection went back clean: the same work commits now.
    let mut uow = stores.db.begin().await.unwrap();
    uow.orders().insert_order(&other).await.unwrap();
    uow.commit().await.unwrap();
    assert_eq!(
        stores.orders.order(other.id, Consistency::Strong).await.unwrap(),
        Some(other)
    );
}
