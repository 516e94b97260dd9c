//! Commerce: products and stock, wallets, coupons, orders, payments, popular products and
//! idempotency keys. The concurrency cases run each attempt in its own unit of work on its
//! own task and count exact outcomes.

use std::collections::BTreeSet;

use futures::future::join_all;
use time::{Duration, OffsetDateTime};
use uuid::Uuid;

use core_domain::catalog::{NewProduct, Product, ProductPatch};
use core_domain::coupon::{Coupon, CouponCampaign, CouponStatus, Discount, NewCampaign};
use core_domain::order::{Order, OrderLine, OrderStatus};
use core_domain::wallet::{LedgerEntry, LedgerKind, MAX_BALANCE};
use core_domain::{CampaignId, CouponId, LedgerId, MemberId, OrderId, PaymentId, ProductId};
use ports::{Consistency, IdempotencyStart, StoreError, Unique};

use super::{Stores, assert_store_error, now, stored_rider};

/// A product (not stored).
pub fn product(name: &str, price: i64, stock: i64, at: OffsetDateTime) -> Product {
    Product::create(
        ProductId(Uuid::now_v7()),
        NewProduct::parse(name, price, stock).expect("valid product"),
        at,
    )
}

async fn stored_product(stores: &Stores, name: &str, price: i64, stock: i64) -> Product {
    let p = product(name, price, stock, now());
    let mut uow = stores.db.begin().await.unwrap();
    uow.insert_product(&p).await.unwrap();
    uow.commit().await.unwrap();
    p
}

/// A campaign (not stored).
pub fn campaign(total_quantity: i64, discount: Discount, at: OffsetDateTime) -> CouponCampaign {
    CouponCampaign::create(
        CampaignId(Uuid::now_v7()),
        NewCampaign::parse("Spring", discount, total_quantity, None, Some(at + Duration::days(7)))
            .expect("valid campaign"),
        at,
    )
}

async fn stored_campaign(stores: &Stores, total_quantity: i64) -> CouponCampaign {
    let c = campaign(total_quantity, Discount::Fixed { amount: 1_000 }, now());
    let mut uow = stores.db.begin().await.unwrap();
    uow.insert_campaign(&c).await.unwrap();
    uow.commit().await.unwrap();
    c
}

async fn stock_of(stores: &Stores, id: ProductId) -> i64 {
    stores
        .catalog
        .product(id, Consistency::Strong)
        .await
        .unwrap()
        .unwrap()
        .stock
}

/// A pending order of `lines` placed at `at` (not stored).
fn order(member_id: MemberId, lines: Vec<OrderLine>, at: OffsetDateTime) -> Order {
    Order::place(OrderId(Uuid::now_v7()), member_id, lines, None, at)
}

async fn insert_orders(stores: &Stores, orders: &[&Order]) {
    let mut uow = stores.db.begin().await.unwrap();
    for o in orders {
        uow.insert_order(o).await.unwrap();
    }
    uow.commit().await.unwrap();
}

pub async fn products_round_trip_and_page_by_id(stores: Stores) {
    let t0 = now() - Duration::hours(1);
    let a = product("Helmet", 30_000, 5, t0);
    let b = product("Gloves", 12_000, 0, t0 + Duration::microseconds(1));
    let mut c = product("Jacket", 99_000, 2, t0 + Duration::microseconds(2));
    let mut uow = stores.db.begin().await.unwrap();
    for p in [&c, &a, &b] {
        uow.insert_product(p).await.unwrap();
    }
    assert_eq!(uow.product(a.id).await.unwrap(), Some(a.clone()));
    c.apply(ProductPatch::parse(Some(95_000), Some(7)).unwrap(), now());
    uow.update_product(&c).await.unwrap();
    uow.commit().await.unwrap();

    let mut all = vec![a.clone(), b.clone(), c.clone()];
    all.sort_by_key(|p| p.id);
    let page = |after: Option<ProductId>, limit: i64| {
        let stores = stores.clone();
        async move {
            stores
                .catalog
                .products(after, limit, Consistency::Eventual)
                .await
                .unwrap()
        }
    };
    assert_eq!(page(None, 10).await, all);
    assert_eq!(page(None, 2).await, all[..2].to_vec());
    assert_eq!(page(Some(all[1].id), 10).await, all[2..].to_vec());
    assert_eq!(page(Some(all[2].id), 10).await, vec![]);
    assert_eq!(
        stores.catalog.product(c.id, Consistency::Eventual).await.unwrap(),
        Some(c)
    );
    assert_eq!(
        stores
            .catalog
            .product(ProductId(Uuid::now_v7()), Consistency::Eventual)
            .await
            .unwrap(),
        None
    );
}

pub async fn take_stock_never_goes_below_zero(stores: Stores) {
    let p = stored_product(&stores, "Helmet", 30_000, 3).await;
    let mut uow = stores.db.begin().await.unwrap();
    assert!(!uow.take_stock(p.id, 4).await.unwrap());
    assert!(uow.take_stock(p.id, 2).await.unwrap());
    assert!(!uow.take_stock(p.id, 2).await.unwrap());
    assert!(uow.take_stock(p.id, 1).await.unwrap());
    assert!(!uow.take_stock(p.id, 1).await.unwrap());
    uow.commit().await.unwrap();
    assert_eq!(stock_of(&stores, p.id).await, 0);

    let mut uow = stores.db.begin().await.unwrap();
    uow.return_stock(p.id, 2).await.unwrap();
    uow.commit().await.unwrap();
    assert_eq!(stock_of(&stores, p.id).await, 2);
}

pub async fn concurrent_stock_takes_succeed_exactly_as_often_as_there_is_stock(stores: Stores) {
    let p = stored_product(&stores, "Limited", 1_000, 5).await;
    let attempts = (0..20).map(|_| {
        let db = stores.db.clone();
        tokio::spawn(async move {
            let mut uow = db.begin().await.unwrap();
            let taken = uow.take_stock(p.id, 1).await.unwrap();
            uow.commit().await.unwrap();
            taken
        })
    });
    let taken = join_all(attempts)
        .await
        .into_iter()
        .filter(|r| *r.as_ref().unwrap())
        .count();
    assert_eq!(taken, 5);
    assert_eq!(stock_of(&stores, p.id).await, 0);
}

pub async fn credit_stops_at_the_maximum_and_debit_at_zero(stores: Stores) {
    let m = stored_rider(&stores, "wallet@example.com").await;
    assert_eq!(stores.wallet.balance(m.id, Consistency::Strong).await.unwrap(), 0);
    let mut uow = stores.db.begin().await.unwrap();
    // No wallet yet: nothing to debit.
    assert_eq!(uow.debit_points(m.id, 1).await.unwrap(), None);
    assert_eq!(uow.credit_points(m.id, 600, 1_000).await.unwrap(), Some(600));
    assert_eq!(uow.credit_points(m.id, 401, 1_000).await.unwrap(), None);
    assert_eq!(uow.credit_points(m.id, 400, 1_000).await.unwrap(), Some(1_000));
    assert_eq!(uow.debit_points(m.id, 1_001).await.unwrap(), None);
    assert_eq!(uow.debit_points(m.id, 999).await.unwrap(), Some(1));
    assert_eq!(uow.debit_points(m.id, 1).await.unwrap(), Some(0));
    assert_eq!(uow.debit_points(m.id, 1).await.unwrap(), None);
    uow.commit().await.unwrap();
    assert_eq!(stores.wallet.balance(m.id, Consistency::Strong).await.unwrap(), 0);
}

pub async fn concurrent_credits_all_land_with_a_ledger_row_each(stores: Stores) {
    let m = stored_rider(&stores, "busy.wallet@example.com").await;
    let credits = (0..200).map(|_| {
        let db = stores.db.clone();
        tokio::spawn(async move {
            let mut uow = db.begin().await.unwrap();
            let after = uow.credit_points(m.id, 1, MAX_BALANCE).await.unwrap().unwrap();
            uow.insert_ledger(&LedgerEntry {
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
    let ledger = stores.wallet.ledger(m.id, 1_000, Consistency::Strong).await.unwrap();
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
        uow.insert_ledger(e).await.unwrap();
    }
    uow.commit().await.unwrap();
    let read = |limit| {
        let stores = stores.clone();
        async move { stores.wallet.ledger(m.id, limit, Consistency::Eventual).await.unwrap() }
    };
    assert_eq!(read(10).await, vec![refund.clone(), payment.clone(), charge]);
    assert_eq!(read(2).await, vec![refund, payment]);
}

pub async fn coupon_slots_never_exceed_the_total_quantity_under_concurrent_claims(stores: Stores) {
    let c = stored_campaign(&stores, 10).await;
    let claims = (0..50).map(|_| {
        let db = stores.db.clone();
        tokio::spawn(async move {
            let mut uow = db.begin().await.unwrap();
            let won = uow.claim_coupon_slot(c.id).await.unwrap();
            uow.commit().await.unwrap();
            won
        })
    });
    let won = join_all(claims)
        .await
        .into_iter()
        .filter(|r| *r.as_ref().unwrap())
        .count();
    assert_eq!(won, 10);
    let stored = stores
        .coupons
        .campaign(c.id, Consistency::Strong)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((stored.issued_count, stored.total_quantity), (10, 10));
    assert!(stored.is_sold_out());
}

pub async fn a_second_coupon_of_a_campaign_is_a_coupon_per_member_conflict(stores: Stores) {
    let m = stored_rider(&stores, "coupons@example.com").await;
    let spring = stored_campaign(&stores, 100).await;
    let percent = campaign(5, Discount::Percent { percent: 15 }, now());
    let mut uow = stores.db.begin().await.unwrap();
    uow.insert_campaign(&percent).await.unwrap();
    assert_eq!(uow.campaign(percent.id).await.unwrap(), Some(percent.clone()));
    let first = Coupon::issue(CouponId(Uuid::now_v7()), &spring, m.id, now());
    let other = Coupon::issue(
        CouponId(Uuid::now_v7()),
        &percent,
        m.id,
        now() + Duration::microseconds(1),
    );
    uow.insert_coupon(&first).await.unwrap();
    uow.insert_coupon(&other).await.unwrap();
    uow.commit().await.unwrap();

    let mut uow = stores.db.begin().await.unwrap();
    let again = Coupon::issue(CouponId(Uuid::now_v7()), &spring, m.id, now());
    assert_store_error(
        uow.insert_coupon(&again).await,
        StoreError::Conflict(Unique::CouponPerMember),
    );
    drop(uow);

    // Round trip, including a status change.
    let mut used = first.clone();
    used.use_for(m.id, OrderId(Uuid::now_v7()), now()).unwrap();
    let mut uow = stores.db.begin().await.unwrap();
    assert_eq!(uow.coupon(first.id).await.unwrap(), Some(first));
    uow.update_coupon(&used).await.unwrap();
    assert_eq!(uow.coupon(used.id).await.unwrap(), Some(used.clone()));
    uow.commit().await.unwrap();
    assert_eq!(used.status, CouponStatus::Used);
    assert_eq!(
        stores
            .coupons
            .coupons_of_member(m.id, Consistency::Eventual)
            .await
            .unwrap(),
        vec![other, used]
    );
    assert_eq!(
        stores
            .coupons
            .campaign(percent.id, Consistency::Eventual)
            .await
            .unwrap(),
        Some(percent)
    );
}

pub async fn an_order_with_lines_round_trips_with_its_payment(stores: Stores) {
    let m = stored_rider(&stores, "buyer@example.com").await;
    let helmet = stored_product(&stores, "Helmet", 30_000, 10).await;
    let gloves = stored_product(&stores, "Gloves", 12_000, 10).await;
    let c = stored_campaign(&stores, 10).await;
    let mut coupon = Coupon::issue(CouponId(Uuid::now_v7()), &c, m.id, now());
    let order_id = OrderId(Uuid::now_v7());
    coupon.use_for(m.id, order_id, now()).unwrap();
    // Lines in placement order, not product-id order.
    let lines = vec![OrderLine::of(&gloves, 3), OrderLine::of(&helmet, 1)];
    let mut placed = Order::place(order_id, m.id, lines, Some(&coupon), now());
    assert_eq!(
        (placed.subtotal, placed.discount, placed.total),
        (66_000, 1_000, 65_000)
    );
    let earlier = order(m.id, vec![OrderLine::of(&helmet, 2)], now() - Duration::minutes(1));

    let mut uow = stores.db.begin().await.unwrap();
    uow.insert_coupon(&coupon).await.unwrap();
    uow.insert_order(&earlier).await.unwrap();
    uow.insert_order(&placed).await.unwrap();
    assert_eq!(uow.order(placed.id).await.unwrap(), Some(placed.clone()));
    uow.commit().await.unwrap();
    assert_eq!(
        stores.orders.order(placed.id, Consistency::Eventual).await.unwrap(),
        Some(placed.clone())
    );
    assert_eq!(
        stores
            .orders
            .payment_of_order(placed.id, Consistency::Eventual)
            .await
            .unwrap(),
        None
    );

    let (payment, _event) = placed
        .pay(PaymentId(Uuid::now_v7()), now() + Duration::microseconds(3))
        .unwrap();
    let mut uow = stores.db.begin().await.unwrap();
    uow.update_order(&placed).await.unwrap();
    uow.insert_payment(&payment).await.unwrap();
    uow.commit().await.unwrap();

    let stored = stores
        .orders
        .order(placed.id, Consistency::Strong)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored, placed);
    assert_eq!(stored.status, OrderStatus::Paid);
    assert_eq!(
        stores
            .orders
            .payment_of_order(placed.id, Consistency::Strong)
            .await
            .unwrap(),
        Some(payment)
    );
    assert_eq!(
        stores
            .orders
            .orders_of_member(m.id, 10, Consistency::Strong)
            .await
            .unwrap(),
        vec![placed.clone(), earlier.clone()]
    );
    assert_eq!(
        stores
            .orders
            .orders_of_member(m.id, 1, Consistency::Strong)
            .await
            .unwrap(),
        vec![placed]
    );
}

pub async fn popular_products_rank_units_of_recently_paid_orders(stores: Stores) {
    let m = stored_rider(&stores, "popular@example.com").await;
    let t = now();
    let since = t - Duration::days(3);
    let p1 = stored_product(&stores, "P1", 1_000, 1_000).await;
    let p2 = stored_product(&stores, "P2", 1_000, 1_000).await;
    let p3 = stored_product(&stores, "P3", 1_000, 1_000).await;
    let p4 = stored_product(&stores, "P4", 1_000, 1_000).await;
    assert!(p1.id < p2.id);

    let paid = |lines: Vec<OrderLine>, paid_at: OffsetDateTime| {
        let mut o = order(m.id, lines, paid_at - Duration::minutes(1));
        o.pay(PaymentId(Uuid::now_v7()), paid_at).unwrap();
        o
    };
    let o1 = paid(
        vec![OrderLine::of(&p2, 1), OrderLine::of(&p1, 3)],
        t - Duration::hours(1),
    );
    let o2 = paid(vec![OrderLine::of(&p2, 2), OrderLine::of(&p3, 2)], since);
    let too_old = paid(vec![OrderLine::of(&p4, 50)], since - Duration::microseconds(1));
    let pending = order(m.id, vec![OrderLine::of(&p4, 10)], t);
    let mut cancelled = order(m.id, vec![OrderLine::of(&p4, 10)], t);
    cancelled.cancel(t).unwrap();
    insert_orders(&stores, &[&o1, &o2, &too_old, &pending, &cancelled]).await;

    let top = |limit| {
        let stores = stores.clone();
        async move {
            stores
                .catalog
                .popular_products(since, limit, Consistency::Eventual)
                .await
                .unwrap()
                .into_iter()
                .map(|p| (p.product.name, p.units_sold))
                .collect::<Vec<_>>()
        }
    };
    // P1 and P2 tie at 3 units: by product id.
    assert_eq!(
        top(5).await,
        [("P1".to_owned(), 3), ("P2".to_owned(), 3), ("P3".to_owned(), 2)]
    );
    assert_eq!(top(2).await, [("P1".to_owned(), 3), ("P2".to_owned(), 3)]);
    let first = stores
        .catalog
        .popular_products(since, 1, Consistency::Eventual)
        .await
        .unwrap();
    assert_eq!(first[0].product, p1);
}

pub async fn stale_orders_are_pending_orders_created_by_the_cutoff(stores: Stores) {
    let m = stored_rider(&stores, "stale@example.com").await;
    let p = stored_product(&stores, "P", 1_000, 100).await;
    let t = now();
    let cutoff = t - Duration::minutes(15);
    let line = || vec![OrderLine::of(&p, 1)];
    let oldest = order(m.id, line(), t - Duration::minutes(20));
    let at_cutoff = order(m.id, line(), cutoff);
    let fresh = order(m.id, line(), cutoff + Duration::microseconds(1));
    let mut paid = order(m.id, line(), t - Duration::minutes(30));
    paid.pay(PaymentId(Uuid::now_v7()), t - Duration::minutes(29)).unwrap();
    let mut cancelled = order(m.id, line(), t - Duration::minutes(40));
    cancelled.cancel(t - Duration::minutes(20)).unwrap();
    insert_orders(&stores, &[&fresh, &at_cutoff, &paid, &oldest, &cancelled]).await;

    let mut uow = stores.db.begin().await.unwrap();
    assert_eq!(
        uow.stale_orders(cutoff, 10).await.unwrap(),
        vec![oldest.clone(), at_cutoff]
    );
    assert_eq!(uow.stale_orders(cutoff, 1).await.unwrap(), vec![oldest]);
}

pub async fn an_idempotency_key_is_new_then_seen_with_its_response(stores: Stores) {
    let mut uow = stores.db.begin().await.unwrap();
    assert_eq!(
        uow.begin_idempotent("payment", "key-1", "fp-1").await.unwrap(),
        IdempotencyStart::New
    );
    uow.complete_idempotent("payment", "key-1", r#"{"id":"p1"}"#)
        .await
        .unwrap();
    // Reserved but never completed.
    assert_eq!(
        uow.begin_idempotent("payment", "key-2", "fp-2").await.unwrap(),
        IdempotencyStart::New
    );
    uow.commit().await.unwrap();

    let mut uow = stores.db.begin().await.unwrap();
    assert_eq!(
        uow.begin_idempotent("payment", "key-1", "fp-other").await.unwrap(),
        IdempotencyStart::Seen {
            fingerprint: "fp-1".to_owned(),
            response: Some(r#"{"id":"p1"}"#.to_owned()),
        }
    );
    assert_eq!(
        uow.begin_idempotent("payment", "key-2", "fp-2").await.unwrap(),
        IdempotencyStart::Seen {
            fingerprint: "fp-2".to_owned(),
            response: None,
        }
    );
    // Keys are per scope.
    assert_eq!(
        uow.begin_idempotent("refund", "key-1", "fp-1").await.unwrap(),
        IdempotencyStart::New
    );
    uow.rollback().await.unwrap();

    // A rolled-back reservation is gone.
    let mut uow = stores.db.begin().await.unwrap();
    assert_eq!(
        uow.begin_idempotent("refund", "key-1", "fp-1").await.unwrap(),
        IdempotencyStart::New
    );
}
