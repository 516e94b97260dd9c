//! Wallets: credits, debits and the ledger. The concurrency case runs each credit in its own
//! unit of work on its own task and counts exact outcomes.

use std::collections::BTreeSet;

use futures::future::join_all;
use time::Duration;
use uuid::Uuid;

use core_domain::LedgerId;
use core_domain::wallet::{LedgerEntry, LedgerKind, MAX_BALANCE};
use ports::{Consistency, PageRequest};

use super::{Stores, now, stored_rider};

pub async fn credit_stops_at_the_maximum_and_debit_at_zero(stores: Stores) {
    let m = stored_rider(&stores, "wallet@example.com").await;
    let fresh = stored_rider(&stores, "fresh.wallet@example.com").await;
    assert_eq!(stores.wallet.balance(m.id, Consistency::Strong).await.unwrap(), 0);
    let mut uow = stores.db.begin().await.unwrap();
    // No wallet yet: nothing to debit.
    assert_eq!(uow.wallet().debit_points(m.id, 1).await.unwrap(), None);
    assert_eq!(uow.wallet().credit_points(m.id, 600, 1_000).await.unwrap(), Some(600));
    assert_eq!(uow.wallet().credit_points(m.id, 401, 1_000).await.unwrap(), None);
    assert_eq!(uow.wallet().credit_points(m.id, 400, 1_000).await.unwrap(), Some(1_000));
    assert_eq!(uow.wallet().debit_points(m.id, 1_001).await.unwrap(), None);
    assert_eq!(uow.wallet().debit_points(m.id, 999).await.unwrap(), Some(1));
    assert_eq!(uow.wallet().debit_points(m.id, 1).await.unwrap(), Some(0));
    assert_eq!(uow.wallet().debit_points(m.id, 1).await.unwrap(), None);
    // A first credit over the maximum creates nothing; one at the maximum creates the wallet.
    assert_eq!(uow.wallet().credit_points(fresh.id, 1_001, 1_000).await.unwrap(), None);
    assert_eq!(uow.wallet().debit_points(fresh.id, 0).await.unwrap(), None);
    assert_eq!(
        uow.wallet().credit_points(fresh.id, 1_000, 1_000).await.unwrap(),
        Some(1_000)
    );
    uow.commit().await.unwrap();
    assert_eq!(stores.wallet.balance(m.id, Consistency::Strong).await.unwrap(), 0);
    assert_eq!(
        stores.wallet.balance(fresh.id, Consistency::Strong).await.unwrap(),
        1_000
    );
}

pub async fn concurrent_credits_all_land_with_a_ledger_row_each(stores: Stores) {
    let m = stored_rider(&stores, "busy.wallet@example.com").await;
    let credits = (0..200).map(|_| {
        let db = stores.db.clone();
        tokio::spawn(async move {
            let mut uow = db.begin().await.unwrap();
            let after = uow.wallet().credit_points(m.id, 1, MAX_BALANCE).await.unwrap().unwrap();
            uow.wallet()
                .insert_ledger(&LedgerEntry {
                    id: LedgerId(Uuid::now_v7()),
                    member_id: m.id,
                    kind: LedgerKind::Charge,
                    amount: 1,
                    balance_after: after,
                    reference: None,
                    created_at: now(),
                })
                .await
                .unwrap();
            uow.commit().await.unwrap();
            after
        })
    });
    let afters: BTreeSet<i64> = join_all(credits).await.into_iter().map(Result::unwrap).collect();
    // Every credit saw a distinct balance: none was lost.
    assert_eq!(afters, (1..=200).collect::<BTreeSet<i64>>());
    assert_eq!(stores.wallet.balance(m.id, Consistency::Strong).await.unwrap(), 200);
    let ledger = stores
        .wallet
        .ledger(m.id, &PageRequest::first(1_000), Consistency::Strong)
        .await
        .unwrap()
        .items;
    assert_eq!(ledger.len(), 200);
    assert_eq!(ledger.iter().map(|e| e.balance_after).collect::<BTreeSet<_>>(), afters);
}

pub async fn ledger_reads_newest_first(stores: Stores) {
    let m = stored_rider(&stores, "ledger@example.com").await;
    let t0 = now() - Duration::minutes(5);
    let entry = |kind, amount, balance_after, minutes: i64, reference| LedgerEntry {
        id: LedgerId(Uuid::now_v7()),
        member_id: m.id,
        kind,
        amount,
        balance_after,
        reference,
        created_at: t0 + Duration::minutes(minutes),
    };
    let charge = entry(LedgerKind::Charge, 5_000, 5_000, 0, None);
    let payment = entry(LedgerKind::Payment, -3_000, 2_000, 1, Some(Uuid::now_v7()));
    let refund = entry(LedgerKind::Refund, 3_000, 5_000, 2, Some(Uuid::now_v7()));
    let mut uow = stores.db.begin().await.unwrap();
    for e in [&charge, &payment, &refund] {
        uow.wallet().insert_ledger(e).await.unwrap();
    }
    uow.commit().await.unwrap();
    let read = |limit| {
        let stores = stores.clone();
        async move {
            stores
                .wallet
                .ledger(m.id, &PageRequest::first(limit), Consistency::Eventual)
                .await
                .unwrap()
                .items
        }
    };
    assert_eq!(read(10).await, vec![refund.clone(), payment.clone(), charge]);
    assert_eq!(read(2).await, vec![refund, payment]);
}
