//! Orders with their lines and payments, and the scan for stale orders.

use time::{Duration, OffsetDateTime};
use uuid::Uuid;

use core_domain::coupon::Coupon;
use core_domain::order::{Order, OrderLine, OrderStatus, Payment};
use core_domain::{CouponId, MemberId, OrderId, PaymentId};
use ports::{Consistency, PageRequest};

use super::catalog::stored_product;
use super::coupons::stored_campaign;
use super::{Stores, now, stored_rider};

/// A pending order of `lines` placed at `at` (not stored).
pub(super) fn order(member_id: MemberId, lines: Vec<OrderLine>, at: OffsetDateTime) -> Order {
    Order::place(OrderId(Uuid::now_v7()), member_id, lines, None, at)
}

pub(super) async fn insert_orders(stores: &Stores, orders: &[&Order]) {
    let mut uow = stores.db.begin().await.unwrap();
    for o in orders {
        uow.orders().insert_order(o).await.unwrap();
    }
    uow.commit().await.unwrap();
}

/// The order reads back as `order`, with `payment` as its payment.
pub(super) async fn assert_stored(stores: &Stores, order: &Order, payment: Option<&Payment>, consistency: Consistency) {
    assert_eq!(
        stores
            .orders
            .order(order.id, consistency.clone())
            .await
            .unwrap()
            .as_ref(),
        Some(order)
    );
    assert_eq!(
        stores
            .orders
            .payment_of_order(order.id, consistency)
            .await
            .unwrap()
            .as_ref(),
        payment
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
    uow.coupons().insert_coupon(&coupon).await.unwrap();
    uow.orders().insert_order(&earlier).await.unwrap();
    uow.orders().insert_order(&placed).await.unwrap();
    assert_eq!(uow.orders().order_by_id(placed.id).await.unwrap(), Some(placed.clone()));
    uow.commit().await.unwrap();
    assert_stored(&stores, &placed, None, Consistency::Eventual).await;

    let (payment, _event) = placed
        .pay(PaymentId(Uuid::now_v7()), now() + Duration::microseconds(3))
        .unwrap();
    let mut uow = stores.db.begin().await.unwrap();
    uow.orders().update_order(&placed).await.unwrap();
    uow.orders().insert_payment(&payment).await.unwrap();
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
            .orders_of_member(m.id, &PageRequest::first(10), Consistency::Strong)
            .await
            .unwrap()
            .items,
        vec![placed.clone(), earlier.clone()]
    );
    assert_eq!(
        stores
            .orders
            .orders_of_member(m.id, &PageRequest::first(1), Consistency::Strong)
            .await
            .unwrap()
            .items,
        vec![placed]
    );
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

    // The work list (a read): pending orders created by the cutoff, by id, after a key.
    let mut stale = vec![oldest.clone(), at_cutoff.clone()];
    stale.sort_by_key(|o| o.id);
    let ids: Vec<OrderId> = stale.iter().map(|o| o.id).collect();
    let list = |after, limit| stores.orders.stale_order_ids(cutoff, after, limit, Consistency::Strong);
    assert_eq!(list(None, 10).await.unwrap(), ids);
    assert_eq!(list(None, 1).await.unwrap(), ids[..1]);
    assert_eq!(list(Some(ids[0]), 10).await.unwrap(), ids[1..]);
    let count = |after| stores.orders.count_stale_orders(cutoff, after, Consistency::Strong);
    assert_eq!((count(None).await.unwrap(), count(Some(ids[0])).await.unwrap()), (2, 1));

    // The chunk's re-check (locked): of the ids given, only those still stale, with lines.
    let mut uow = stores.db.begin().await.unwrap();
    let all = [fresh.id, at_cutoff.id, paid.id, oldest.id, cancelled.id];
    assert_eq!(uow.orders().stale_orders(&all, cutoff).await.unwrap(), stale);
    assert_eq!(
        uow.orders().stale_orders(&[oldest.id], cutoff).await.unwrap(),
        vec![oldest]
    );
    assert!(uow.orders().stale_orders(&[], cutoff).await.unwrap().is_empty());
}
