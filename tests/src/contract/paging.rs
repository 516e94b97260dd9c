//! Paging of a member's lists (orders, ledger, coupons, policies): a walk page by page, with
//! rows of the same time and a newer row added between pages, sees exactly the rows of one
//! unpaged read, in its order, each once; the last page says there is no next one.

use futures::future::BoxFuture;
use time::{Duration, OffsetDateTime};
use uuid::Uuid;

use core_domain::coupon::Coupon;
use core_domain::insurance::{Actor, ExpiryReason};
use core_domain::order::OrderLine;
use core_domain::wallet::{LedgerEntry, LedgerKind};
use core_domain::{CouponId, LedgerId, MemberId};
use ports::{Consistency, Page, PageRequest};

use super::catalog::stored_product;
use super::coupons::stored_campaign;
use super::insurance::policy;
use super::orders::{insert_orders, order};
use super::{Stores, now, stored_rider};

/// Seven rows' times, newest last: three of one instant, two of another.
fn times(t0: OffsetDateTime) -> [OffsetDateTime; 7] {
    let s = Duration::seconds;
    [t0, t0, t0, t0 + s(1), t0 + s(2), t0 + s(2), t0 + s(3)]
}

type Read<T, K> = Box<dyn Fn(PageRequest<K>) -> BoxFuture<'static, Page<T, K>> + Send + Sync>;
type Add = Box<dyn Fn() -> BoxFuture<'static, ()> + Send + Sync>;

/// Walks `read` three rows at a time, calling `add` (a row newer than any) between pages,
/// and checks the walk against one read of every row made before it.
async fn check_walk<T, K>(list: &str, rows: usize, read: Read<T, K>, add: Add)
where
    T: PartialEq + std::fmt::Debug,
    K: Clone,
{
    let whole = read(PageRequest::first(100)).await;
    assert_eq!(whole.items.len(), rows, "{list}: every row in one page");
    assert!(whole.next.is_none(), "{list}: one page holds them all");
    let exact = read(PageRequest::first(rows as i64)).await;
    assert!(
        exact.next.is_none(),
        "{list}: a page of exactly the rows left is the last"
    );

    let (mut request, mut walked, mut pages) = (PageRequest::first(3), Vec::new(), 0);
    loop {
        let page = read(request.clone()).await;
        pages += 1;
        assert!(page.items.len() <= 3, "{list}: at most the limit");
        walked.extend(page.items);
        match page.next {
            Some(next) => {
                add().await;
                request.after = Some(next);
            }
            None => break,
        }
    }
    assert_eq!(pages, rows.div_ceil(3), "{list}: pages of three");
    assert_eq!(
        walked, whole.items,
        "{list}: the walk is the unpaged list, each row once"
    );
    let after = read(PageRequest::first(100)).await;
    assert_eq!(
        after.items.len(),
        rows + pages - 1,
        "{list}: the rows added while walking were there, newer than the walk"
    );
}

pub async fn a_members_lists_page_by_their_keys_through_ties_and_additions(stores: Stores) {
    let m = stored_rider(&stores, "pages@example.com").await;
    let t0 = now() - Duration::hours(1);
    let later = || now() + Duration::hours(1);

    // Orders.
    let helmet = stored_product(&stores, "Helmet", 30_000, 1_000).await;
    let orders: Vec<_> = times(t0)
        .into_iter()
        .map(|at| order(m.id, vec![OrderLine::of(&helmet, 1)], at))
        .collect();
    insert_orders(&stores, &orders.iter().collect::<Vec<_>>()).await;
    let (s, id) = (stores.clone(), m.id);
    let read: Read<_, _> = Box::new(move |page| {
        let s = s.clone();
        Box::pin(async move { s.orders.orders_of_member(id, &page, Consistency::Strong).await.unwrap() })
    });
    let s = stores.clone();
    let add: Add = Box::new(move || {
        let (s, helmet) = (s.clone(), helmet.clone());
        Box::pin(async move {
            insert_orders(&s, &[&order(id, vec![OrderLine::of(&helmet, 1)], later())]).await;
        })
    });
    check_walk("orders", 7, read, add).await;

    // The ledger: the same instant's rows in insertion order.
    let entry = move |member_id: MemberId, at| LedgerEntry {
        id: LedgerId(Uuid::now_v7()),
        member_id,
        kind: LedgerKind::Charge,
        amount: 100,
        balance_after: 100,
        reference: None,
        created_at: at,
    };
    let insert_entries = |s: Stores, entries: Vec<LedgerEntry>| async move {
        let mut uow = s.db.begin().await.unwrap();
        for e in &entries {
            uow.wallet().insert_ledger(e).await.unwrap();
        }
        uow.commit().await.unwrap();
    };
    insert_entries(stores.clone(), times(t0).into_iter().map(|at| entry(id, at)).collect()).await;
    let s = stores.clone();
    let read: Read<_, _> = Box::new(move |page| {
        let s = s.clone();
        Box::pin(async move { s.wallet.ledger(id, &page, Consistency::Strong).await.unwrap() })
    });
    let s = stores.clone();
    let add: Add = Box::new(move || Box::pin(insert_entries(s.clone(), vec![entry(id, later())])));
    check_walk("ledger", 7, read, add).await;

    // Coupons: one per campaign.
    let mut campaigns = Vec::new();
    for _ in 0..10 {
        campaigns.push(stored_campaign(&stores, 10).await);
    }
    let mut uow = stores.db.begin().await.unwrap();
    for (c, at) in campaigns.iter().zip(times(t0)) {
        uow.coupons()
            .insert_coupon(&Coupon::issue(CouponId(Uuid::now_v7()), c, id, at))
            .await
            .unwrap();
    }
    uow.commit().await.unwrap();
    let spare = std::sync::Arc::new(std::sync::Mutex::new(campaigns.split_off(7)));
    let s = stores.clone();
    let read: Read<_, _> = Box::new(move |page| {
        let s = s.clone();
        Box::pin(async move {
            s.coupons
                .coupons_of_member(id, &page, Consistency::Strong)
                .await
                .unwrap()
        })
    });
    let s = stores.clone();
    let add: Add = Box::new(move || {
        let (s, c) = (s.clone(), spare.lock().unwrap().pop().expect("a spare campaign"));
        Box::pin(async move {
            let mut uow = s.db.begin().await.unwrap();
            uow.coupons()
                .insert_coupon(&Coupon::issue(CouponId(Uuid::now_v7()), &c, id, later()))
                .await
                .unwrap();
            uow.commit().await.unwrap();
        })
    });
    check_walk("coupons", 7, read, add).await;

    // Policies: expired ones (a member has one active policy at most).
    let insert_expired = move |s: Stores, number: String, at: OffsetDateTime| async move {
        let mut p = policy(id, &number, at);
        p.expire(at, ExpiryReason::AdminRequest, Actor::System("test".into()), at)
            .unwrap();
        let mut uow = s.db.begin().await.unwrap();
        uow.insurance().insert_policy(&p).await.unwrap();
        uow.commit().await.unwrap();
    };
    for (i, at) in times(t0).into_iter().enumerate() {
        insert_expired(stores.clone(), format!("PG-{i}"), at).await;
    }
    let s = stores.clone();
    let read: Read<_, _> = Box::new(move |page| {
        let s = s.clone();
        Box::pin(async move {
            s.insurance
                .policies_of_member(id, &page, Consistency::Strong)
                .await
                .unwrap()
        })
    });
    let s = stores.clone();
    let add: Add = Box::new(move || {
        Box::pin(insert_expired(
            s.clone(),
            format!("PG-{}", Uuid::now_v7().simple()),
            later(),
        ))
    });
    check_walk("policies", 7, read, add).await;
}
